//! Cloud model cache: one directory per cloud zoo (`<enc-netloc>.<org>.<zoo>`, the naming of
//! PySDK's native cache) holding one directory per model plus a `<m>.lock` file whose mtime
//! is the last use (LRU key).
//!
//! Locking (advisory file locks, released by the OS when a process dies, so a killed process
//! never leaves a stale lock):
//! * `<m>.lock` shared = "this model is in use"; exclusive only for the instant a new copy is
//!   renamed into place, and by eviction (which skips models it cannot lock).
//! * `<m>.dl.lock` exclusive = "downloading": one downloader per model across processes; a
//!   second process waits, then finds the model cached. Leftover partial files of a killed
//!   downloader are removed by the next one holding this lock.
//! * `__cleanup.lock__` exclusive while evicting.
//!
//! Downloads stream to a temp file, are verified (Content-Length, archive safety, checksum of
//! the model config against the zoo's, SHA-256 of the binary when the checksum is one), then
//! extracted into a temp directory and renamed into place.
pub mod archive;

/// Names of the cache's metrics (recorded through the `metrics` facade: counted only when the
/// embedder installed a recorder, e.g. the servers' `/metrics`; otherwise a no-op).
pub mod metric {
    /// Loads served by a current cached copy (no download).
    pub const HITS: &str = "dgzoo_cache_hits_total";
    /// Loads that had to download the model.
    pub const MISSES: &str = "dgzoo_cache_misses_total";
    /// Models evicted by the size limit.
    pub const EVICTIONS: &str = "dgzoo_cache_evictions_total";
    /// Archive bytes received from the cloud (resumed parts count once).
    pub const DOWNLOADED_BYTES: &str = "dgzoo_cache_downloaded_bytes_total";
}

use crate::address::CloudZoo;
use crate::cloud::CloudClient;
use crate::error::{Code, Error, Result};
use crate::params::ModelParams;
use fs4::fs_std::FileExt;
use serde_json::{json, Value};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Default size cap: 1 GiB, as PySDK's native cache.
pub const DEFAULT_LIMIT: u64 = 1 << 30;
const PARTIAL_DIR: &str = ".partial";
const CLEANUP_LOCK: &str = "__cleanup.lock__";
/// Name part of a model's resumable download in the partial directory (`<m>.dl-resume.zip`).
const RESUME_SUFFIX: &str = ".dl-resume";
/// How long `prune` keeps an interrupted download for resuming.
const RESUME_KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long installing a new copy waits for the old one to be free. Users of a model hold it
/// for their lifetime, so only brief holders (lookups) are worth waiting for.
const INSTALL_WAIT: Duration = Duration::from_secs(3);
/// How long a waiting process tolerates another downloader making no progress.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the cache lives and how it behaves.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub root: PathBuf,
    /// Size cap in bytes; eviction runs after each download.
    pub limit: u64,
    /// Never contact the cloud: a cached model is used as is; a missing one is an error.
    pub offline: bool,
}

impl CacheConfig {
    /// `DGZOO_CACHE_DIR` (else `<os appdata>/dgzoo/cloud_zoo_cache`), `DGZOO_CACHE_LIMIT`
    /// (bytes, else 1 GiB), `DGZOO_OFFLINE=1`, from settings already read.
    pub fn from_settings(s: &crate::settings::Settings) -> Self {
        CacheConfig { root: s.cache_root(), limit: s.cache_limit.unwrap_or(DEFAULT_LIMIT), offline: s.offline }
    }
}

/// A model held in the cache: its directory stays as long as this value lives (shared lock).
#[derive(Debug)]
pub struct CachedModel {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub downloaded: bool,
    _lock: File,
}

/// One cached model, as listed by `entries`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `<enc-netloc>.<org>.<zoo>`
    pub zoo_key: String,
    pub model: String,
    pub dir: PathBuf,
    pub size: u64,
    pub last_used: SystemTime,
    pub checksum: String,
}

impl Entry {
    pub fn to_json(&self) -> Value {
        let t = self.last_used.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        json!({"zoo": self.zoo_key, "model": self.model, "path": self.dir, "size": self.size, "last_used": t, "checksum": self.checksum})
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    cfg: CacheConfig,
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} '{}': {e}", p.display()))
}

fn open_lock(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p).map_err(|e| io_err("Cannot open lock file", p, e))
}

/// Whether the locked handle `f` is still the file at `p`: lock files are removed while held
/// exclusively, so a process that opened one before it was removed must open it again.
fn lock_is_current(f: &File, p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (f.metadata(), std::fs::metadata(p)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (f, p);
        true
    }
}

/// A fresh temp name for `model` in the partial directory: `<model>.dl-<pid>-<ns>-<n>`.
fn unique(model: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{model}.dl-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The model a temp name of `unique` belongs to.
fn partial_owner(name: &str) -> Option<&str> {
    name.rsplit_once(".dl-").map(|(m, _)| m)
}

/// Recursive size of a directory (symlinks not followed).
fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Checksum in a model config, or "" when unreadable.
fn config_checksum(config: &Path) -> String {
    ModelParams::from_file(config).map(|p| p.str("Checksum", 0)).unwrap_or_default()
}

impl Cache {
    pub fn new(cfg: CacheConfig) -> Self {
        Cache { cfg }
    }
    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// `<enc-netloc>.<org>.<zoo>` for a zoo; the netloc is percent-encoded so it is one safe
    /// path segment (`127.0.0.1%3A8878`).
    pub fn zoo_key(zoo: &CloudZoo) -> Result<String> {
        for s in [&zoo.org, &zoo.zoo] {
            if !archive::is_safe_segment(s) {
                return Err(Error::invalid(format!("Cloud zoo path '{}/{}' is not usable as a cache directory name", zoo.org, zoo.zoo)));
            }
        }
        // As PySDK's native cache: the netloc URL-quoted (`127.0.0.1%3A8878`).
        let host = crate::cloud::quote_all(&zoo.host);
        Ok(format!("{host}.{}.{}", zoo.org, zoo.zoo))
    }

    pub fn zoo_dir(&self, zoo: &CloudZoo) -> Result<PathBuf> {
        Ok(self.cfg.root.join(Self::zoo_key(zoo)?))
    }

    fn prepare_zoo_dir(&self, zoo: &CloudZoo) -> Result<PathBuf> {
        let d = self.zoo_dir(zoo)?;
        std::fs::create_dir_all(d.join(PARTIAL_DIR)).map_err(|e| io_err("Cannot create cache directory", &d, e))?;
        Ok(d)
    }

    /// Take the model's in-use lock and return it if a valid copy is cached (config present and,
    /// when `expected` is given, with that checksum).
    fn try_hold(&self, zdir: &Path, model: &str, expected: Option<&str>) -> Result<Option<CachedModel>> {
        // No lock file is made for a model that is not there (it would outlive a failed load).
        if !zdir.join(model).join(format!("{model}.json")).is_file() {
            return Ok(None);
        }
        let lock_path = zdir.join(format!("{model}.lock"));
        let lock = match open_lock(&lock_path) {
            Ok(l) => l,
            // A read-only cache (read-only mount or someone else's files) still serves what it
            // holds: the shared lock is taken on a read-only handle (flock needs no write access).
            Err(e) => File::open(&lock_path).or_else(|_| File::open(zdir)).map_err(|_| e)?,
        };
        FileExt::lock_shared(&lock).map_err(|e| Error::io(format!("Cannot lock cached model '{model}': {e}")))?;
        if !lock_is_current(&lock, &lock_path) {
            // Removed with its model while we waited: look again.
            drop(lock);
            return self.try_hold(zdir, model, expected);
        }
        let dir = zdir.join(model);
        let config = dir.join(format!("{model}.json"));
        if config.is_file() && expected.is_none_or(|want| config_checksum(&config) == want) {
            // Mark as recently used for LRU eviction.
            let _ = lock.set_modified(SystemTime::now());
            metrics::counter!(metric::HITS).increment(1);
            return Ok(Some(CachedModel { dir, config, downloaded: false, _lock: lock }));
        }
        Ok(None)
    }

    /// Offline lookup: the cached copy or a clear error; never touches the network.
    pub fn get_offline(&self, zoo: &CloudZoo, model: &str) -> Result<CachedModel> {
        archive::check_model_name(model)?;
        let zdir = self.zoo_dir(zoo)?;
        let not_cached = || {
            Error::new(
                Code::NotFound,
                format!("Cloud model '{}/{}/{model}' is not in the model cache '{}' and dgzoo is offline (DGZOO_OFFLINE / offline option): connect online once to download it", zoo.org, zoo.zoo, self.cfg.root.display()),
            )
        };
        if !zdir.join(model).join(format!("{model}.json")).is_file() {
            return Err(not_cached());
        }
        self.try_hold(&zdir, model, None)?.ok_or_else(not_cached)
    }

    /// Models cached for one zoo (offline listing): (name, config path).
    pub fn cached_models(&self, zoo: &CloudZoo) -> Vec<(String, PathBuf)> {
        let Ok(zdir) = self.zoo_dir(zoo) else { return Vec::new() };
        let Ok(rd) = std::fs::read_dir(&zdir) else { return Vec::new() };
        let mut out: Vec<(String, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let cfg = e.path().join(format!("{name}.json"));
                (archive::is_safe_segment(&name) && cfg.is_file()).then_some((name, cfg))
            })
            .collect();
        out.sort();
        out
    }

    /// The cached copy of `model`, held, when the cloud confirms it is current (one request:
    /// the checksum check) or cannot be reached (5xx / transport error: the copy is used as is,
    /// like PySDK's native cache). `None` when nothing is cached or the cloud has a newer copy.
    pub fn hold_if_current(&self, client: &CloudClient, model: &str) -> Result<Option<CachedModel>> {
        archive::check_model_name(model)?;
        let zdir = self.zoo_dir(client.zoo())?;
        let cfg = zdir.join(model).join(format!("{model}.json"));
        if !cfg.is_file() {
            return Ok(None);
        }
        let have = config_checksum(&cfg);
        if have.is_empty() {
            return Ok(None);
        }
        match client.check(model, &have) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if matches!(e.code, Code::Network) => {}
            Err(e) => return Err(e),
        }
        self.try_hold(&zdir, model, Some(&have))
    }

    /// Bring `model` into the cache and hold it, with the fewest requests: a current cached
    /// copy costs the checksum check; otherwise the model info (for the zoo's checksum) and the
    /// download. Offline: the cached copy or an error, no request.
    pub fn fetch(&self, client: &CloudClient, model: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<CachedModel> {
        if self.cfg.offline {
            return self.get_offline(client.zoo(), model);
        }
        if let Some(held) = self.hold_if_current(client, model)? {
            return Ok(held);
        }
        let info = client.model_info(model)?;
        let sum = info["model_params"]["Checksum"].as_str().unwrap_or_default().to_string();
        self.ensure(client, model, (!sum.is_empty()).then_some(sum.as_str()), progress)
    }

    /// Make `model` of the client's zoo available locally and hold it.
    ///
    /// `expected` is the zoo's current checksum when the caller already knows it (from the
    /// model info); otherwise a cached copy is checked with the `check` endpoint, and kept if
    /// the cloud cannot be reached (5xx / transport error), like PySDK's native cache. In
    /// offline mode this is `get_offline`.
    pub fn ensure(&self, client: &CloudClient, model: &str, expected: Option<&str>, progress: &mut dyn FnMut(u64, u64)) -> Result<CachedModel> {
        let zoo = client.zoo();
        if self.cfg.offline {
            return self.get_offline(zoo, model);
        }
        archive::check_model_name(model)?;
        let zdir = self.prepare_zoo_dir(zoo)?;
        let expected = match expected {
            Some(e) => Some(e.to_string()),
            None => {
                let cfg = zdir.join(model).join(format!("{model}.json"));
                if cfg.is_file() {
                    let have = config_checksum(&cfg);
                    match client.check(model, &have) {
                        Ok(true) => Some(have),
                        Ok(false) => None,
                        Err(e) if matches!(e.code, Code::Network) => Some(have),
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                }
            }
        };
        if let Some(want) = expected.as_deref() {
            if let Some(h) = self.try_hold(&zdir, model, Some(want))? {
                return Ok(h);
            }
        }
        // One downloader per model across processes.
        let cfg_path = zdir.join(model).join(format!("{model}.json"));
        let seen = config_checksum(&cfg_path);
        let dl = self.lock_download(&zdir, model)?;
        let result = (|| {
            // Someone else may have installed it while we waited: the wanted checksum, or
            // (when we do not know it) a copy other than the one we saw before waiting.
            let now = config_checksum(&cfg_path);
            let fresh = match expected.as_deref() {
                Some(want) => Some(want),
                None => (!now.is_empty() && now != seen).then_some(now.as_str()),
            };
            if let Some(want) = fresh {
                if let Some(h) = self.try_hold(&zdir, model, Some(want))? {
                    return Ok(h);
                }
            }
            self.clear_partials(&zdir, model, RESUME_KEEP);
            let held = self.download_install(client, &zdir, model, expected.as_deref(), progress)?;
            Ok(held)
        })();
        // The download lock file goes with the download, whatever its outcome (removed while
        // held; a waiter then sees it is not current and locks a new one).
        let _ = std::fs::remove_file(zdir.join(format!("{model}.dl.lock")));
        let _ = FileExt::unlock(&dl);
        let held = result?;
        self.evict(Some(self.cfg.limit));
        Ok(held)
    }

    /// Take the download lock of `model`. While another process holds it we wait as long as its
    /// partial download keeps growing; a downloader that makes no progress for
    /// `STALL_TIMEOUT` (hung, not dead: a dead one releases its lock) is an error.
    fn lock_download(&self, zdir: &Path, model: &str) -> Result<File> {
        let path = zdir.join(format!("{model}.dl.lock"));
        let mut dl = open_lock(&path)?;
        let mut last = (self.partial_size(zdir, model), Instant::now());
        loop {
            match FileExt::try_lock_exclusive(&dl) {
                Ok(true) if lock_is_current(&dl, &path) => return Ok(dl),
                // The previous holder removed the file when it was done: lock the new one.
                Ok(true) => {
                    let _ = FileExt::unlock(&dl);
                    dl = open_lock(&path)?;
                    continue;
                }
                Ok(false) => {}
                Err(e) => return Err(Error::io(format!("Cannot lock cached model '{model}' for download: {e}"))),
            }
            std::thread::sleep(Duration::from_millis(100));
            let size = self.partial_size(zdir, model);
            if size != last.0 {
                last = (size, Instant::now());
            } else if last.1.elapsed() > STALL_TIMEOUT {
                return Err(Error::new(
                    Code::Timeout,
                    format!("Cloud model '{model}': another process has been downloading it without progress for {} s", STALL_TIMEOUT.as_secs()),
                ));
            }
        }
    }

    /// Bytes of partial downloads of `model`.
    fn partial_size(&self, zdir: &Path, model: &str) -> u64 {
        std::fs::read_dir(zdir.join(PARTIAL_DIR))
            .map(|rd| {
                rd.flatten().filter(|e| e.file_name().to_str().and_then(partial_owner) == Some(model)).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
            })
            .unwrap_or(0)
    }

    /// Remove partial files of every model nobody is downloading (left by killed processes).
    pub fn clear_stale_partials(&self) {
        let Ok(zoos) = std::fs::read_dir(&self.cfg.root) else { return };
        for z in zoos.flatten() {
            let zdir = z.path();
            let Ok(rd) = std::fs::read_dir(zdir.join(PARTIAL_DIR)) else { continue };
            let mut models: Vec<String> = rd.flatten().filter_map(|e| e.file_name().to_str().and_then(partial_owner).map(str::to_string)).collect();
            models.sort();
            models.dedup();
            for m in models {
                let Ok(dl) = open_lock(&zdir.join(format!("{m}.dl.lock"))) else { continue };
                if let Ok(true) = FileExt::try_lock_exclusive(&dl) {
                    self.clear_partials(&zdir, &m, RESUME_KEEP);
                    let _ = FileExt::unlock(&dl);
                }
            }
            self.clear_orphan_locks(&zdir);
        }
    }

    /// Remove lock files of models that are not cached (left by failed downloads and loads of
    /// older versions) and not locked by anyone, so the cache holds only what `entries` lists.
    fn clear_orphan_locks(&self, zdir: &Path) {
        let Ok(rd) = std::fs::read_dir(zdir) else { return };
        for e in rd.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            let Some(model) = name.strip_suffix(".dl.lock").or_else(|| name.strip_suffix(".lock")) else { continue };
            if zdir.join(model).exists() && !name.ends_with(".dl.lock") {
                continue;
            }
            let path = e.path();
            let Ok(f) = File::open(&path) else { continue };
            if let Ok(true) = FileExt::try_lock_exclusive(&f) {
                if lock_is_current(&f, &path) && (name.ends_with(".dl.lock") || !zdir.join(model).exists()) {
                    let _ = std::fs::remove_file(&path);
                }
                let _ = FileExt::unlock(&f);
            }
        }
    }

    /// Remove what a killed downloader of `model` left (we hold its download lock), except a
    /// resumable archive download younger than `keep_resume`.
    fn clear_partials(&self, zdir: &Path, model: &str, keep_resume: Duration) {
        let Ok(rd) = std::fs::read_dir(zdir.join(PARTIAL_DIR)) else { return };
        for e in rd.flatten() {
            let resumable = e.file_name().to_str().is_some_and(|n| n.starts_with(&format!("{model}{RESUME_SUFFIX}.")));
            let young = || e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age < keep_resume);
            if resumable && young() {
                continue;
            }
            if e.file_name().to_str().and_then(partial_owner) == Some(model) {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }

    fn download_install(
        &self,
        client: &CloudClient,
        zdir: &Path,
        model: &str,
        expected: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CachedModel> {
        metrics::counter!(metric::MISSES).increment(1);
        let partial = zdir.join(PARTIAL_DIR);
        let part = ResumableArchive::of(&partial, model);
        let tmp_dir = partial.join(unique(model) + ".d");
        // Unpacking is bounded by the cache's own size cap, not only the archive limit.
        let max_bytes = self.cfg.limit.min(archive::Limits::default().max_total_bytes);
        let r =
            part.fetch(client, model, expected, true, progress).and_then(|resumed| match unpack_verified(&part.zip, model, &tmp_dir, expected, max_bytes) {
                // The part kept from before may belong to another copy of the archive (a server
                // without ETag, a model replaced in between): start again once, from zero.
                Err(_) if resumed => {
                    let _ = std::fs::remove_dir_all(&tmp_dir);
                    part.fetch(client, model, expected, false, progress)?;
                    unpack_verified(&part.zip, model, &tmp_dir, expected, max_bytes)
                }
                r => r,
            });
        let r = r.and_then(|()| self.install(zdir, model, &tmp_dir));
        // An interrupted transfer keeps its bytes for the next attempt; anything else starts over.
        if !matches!(&r, Err(e) if e.code == Code::Network) {
            part.remove();
        }
        let _ = std::fs::remove_dir_all(&tmp_dir);
        r
    }

    /// Rename the verified copy into place once no one uses the old one; return it held.
    fn install(&self, zdir: &Path, model: &str, tmp_dir: &Path) -> Result<CachedModel> {
        let lock_path = zdir.join(format!("{model}.lock"));
        let mut lock = open_lock(&lock_path)?;
        let start = Instant::now();
        loop {
            match FileExt::try_lock_exclusive(&lock) {
                Ok(true) if lock_is_current(&lock, &lock_path) => break,
                Ok(true) => {
                    let _ = FileExt::unlock(&lock);
                    lock = open_lock(&lock_path)?;
                }
                Ok(false) if start.elapsed() < INSTALL_WAIT => std::thread::sleep(Duration::from_millis(50)),
                Ok(false) => {
                    return Err(Error::new(
                        Code::Io,
                        format!("Cannot update cached model '{model}': an older copy is still in use (by this or another process); release the models using it and load it again"),
                    ))
                }
                Err(e) => return Err(Error::io(format!("Cannot lock cached model '{model}': {e}"))),
            }
        }
        let dir = zdir.join(model);
        let r = (|| {
            if dir.exists() {
                let old = zdir.join(PARTIAL_DIR).join(unique(model) + ".old");
                std::fs::rename(&dir, &old).map_err(|e| io_err("Cannot move aside", &dir, e))?;
                let _ = std::fs::remove_dir_all(&old);
            }
            std::fs::rename(tmp_dir, &dir).map_err(|e| io_err("Cannot install", &dir, e))
        })();
        // Downgrade to "in use" (shared) before anyone else can evict it.
        FileExt::lock_shared(&lock).map_err(|e| Error::io(format!("Cannot lock cached model '{model}': {e}")))?;
        r?;
        let _ = lock.set_modified(SystemTime::now());
        let config = dir.join(format!("{model}.json"));
        Ok(CachedModel { dir, config, downloaded: true, _lock: lock })
    }

    /// All cached models, least recently used first.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let Ok(zoos) = std::fs::read_dir(&self.cfg.root) else { return out };
        for z in zoos.flatten() {
            let Some(zoo_key) = z.file_name().to_str().map(str::to_string) else { continue };
            if !z.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(models) = std::fs::read_dir(z.path()) else { continue };
            for m in models.flatten() {
                let Some(model) = m.file_name().to_str().map(str::to_string) else { continue };
                if !archive::is_safe_segment(&model) || !m.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let lock = z.path().join(format!("{model}.lock"));
                let last_used = std::fs::metadata(&lock).or_else(|_| m.metadata()).and_then(|md| md.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                let dir = m.path();
                let checksum = config_checksum(&dir.join(format!("{model}.json")));
                out.push(Entry { zoo_key: zoo_key.clone(), model, size: dir_size(&dir), dir, last_used, checksum });
            }
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.dir.cmp(&b.dir)));
        out
    }

    /// Remove one cached model unless it is in use. `Ok(false)` when not cached.
    pub fn remove(&self, e: &Entry) -> Result<bool> {
        self.remove_key(&e.zoo_key, &e.model)
    }

    /// Remove the cached copy of `model` of `zoo` (a damaged one: the next `ensure`
    /// downloads it again) unless it is in use. `Ok(false)` when not cached.
    pub fn remove_model(&self, zoo: &CloudZoo, model: &str) -> Result<bool> {
        archive::check_model_name(model)?;
        self.remove_key(&Cache::zoo_key(zoo)?, model)
    }

    fn remove_key(&self, zoo_key: &str, model: &str) -> Result<bool> {
        let e = (zoo_key, model);
        let zdir = self.cfg.root.join(zoo_key);
        if !zdir.join(model).exists() {
            return Ok(false);
        }
        let lock = open_lock(&zdir.join(format!("{model}.lock")))?;
        if !FileExt::try_lock_exclusive(&lock).map_err(|err| Error::io(err.to_string()))? {
            return Err(Error::new(Code::Io, format!("Cached model '{}/{}' is in use; not removed", e.0, e.1)));
        }
        let dir = zdir.join(model);
        if !dir.exists() {
            return Ok(false);
        }
        let _ = std::fs::create_dir_all(zdir.join(PARTIAL_DIR));
        let old = zdir.join(PARTIAL_DIR).join(unique(model) + ".old");
        std::fs::rename(&dir, &old).map_err(|err| io_err("Cannot remove", &dir, err))?;
        let _ = std::fs::remove_dir_all(&old);
        // Its lock file goes too (removed while held exclusively: see `lock_is_current`).
        let _ = std::fs::remove_file(zdir.join(format!("{model}.lock")));
        Ok(true)
    }

    /// Evict least recently used models until the total size is at most `limit` (default:
    /// the configured cap), skipping models in use. Returns the evicted entries.
    pub fn evict(&self, limit: Option<u64>) -> Vec<Entry> {
        self.prune(limit).unwrap_or_default()
    }

    /// [`Cache::evict`] that reports failures (`dgzoo cache prune`): a cache that cannot be
    /// changed (read-only, permissions) is an error naming the path, not an empty success.
    /// Models in use are skipped, as in `evict`.
    pub fn prune(&self, limit: Option<u64>) -> Result<Vec<Entry>> {
        let limit = limit.unwrap_or(self.cfg.limit);
        let mut evicted = Vec::new();
        std::fs::create_dir_all(&self.cfg.root).map_err(|e| io_err("Cannot create the model cache", &self.cfg.root, e))?;
        let cl = open_lock(&self.cfg.root.join(CLEANUP_LOCK))?;
        FileExt::lock_exclusive(&cl).map_err(|e| io_err("Cannot lock", &self.cfg.root.join(CLEANUP_LOCK), e))?;
        self.clear_stale_partials();
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut failure = None;
        for e in entries {
            if total <= limit {
                break;
            }
            match self.remove(&e) {
                Ok(true) => {
                    total = total.saturating_sub(e.size);
                    evicted.push(e);
                }
                Ok(false) => {}
                Err(err) if err.message.contains("is in use") => {}
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        let _ = FileExt::unlock(&cl);
        metrics::counter!(metric::EVICTIONS).increment(evicted.len() as u64);
        match failure {
            Some(e) if evicted.is_empty() => Err(e),
            _ => Ok(evicted),
        }
    }

    /// Re-check every cached model: config parses, its binary matches the checksum, and the
    /// labels file it names is there and is a JSON object.
    pub fn verify(&self) -> Vec<(Entry, Result<()>)> {
        self.entries()
            .into_iter()
            .map(|e| {
                let r = verify_model_dir(&e.dir, &e.model, None).and_then(|()| verify_labels(&e.dir, &e.model));
                (e, r)
            })
            .collect()
    }
}

/// Stream the archive of `model` to `zip_path`, then unpack and verify it (`unpack_verified`).
/// On error the caller removes both paths.
pub fn download_verified(
    client: &CloudClient,
    model: &str,
    zip_path: &Path,
    unpack_dir: &Path,
    expected: Option<&str>,
    max_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    {
        let f = File::create(zip_path).map_err(|e| io_err("Cannot create", zip_path, e))?;
        let mut w = std::io::BufWriter::new(f);
        client.download(model, &mut w, progress)?;
        use std::io::Write;
        w.flush().map_err(|e| io_err("Cannot write", zip_path, e))?;
    }
    unpack_verified(zip_path, model, unpack_dir, expected, max_bytes)?;
    let _ = std::fs::remove_file(zip_path);
    Ok(())
}

/// Check a downloaded archive's config checksum and model binary inside the archive
/// (`archive::precheck_model`: the SHA-256 of the whole binary, before anything is written),
/// extract its `<model>/` directory into `unpack_dir` (which must not exist) with the archive
/// checks and at most `max_bytes`, and verify the result (`verify_model_dir`).
pub fn unpack_verified(zip_path: &Path, model: &str, unpack_dir: &Path, expected: Option<&str>, max_bytes: u64) -> Result<()> {
    let limits = archive::Limits { max_total_bytes: max_bytes, ..archive::Limits::default() };
    archive::precheck_model(zip_path, model, expected, limits)?;
    archive::extract_model(zip_path, model, unpack_dir, limits)?;
    verify_model_dir(unpack_dir, model, expected)
}

/// The archive download of one model that survives an interruption: `<m>.dl-resume.zip` in
/// the partial directory and, beside it, `<m>.dl-resume.json` with the reply's `ETag` and the
/// checksum the zoo announced. Only the holder of the model's download lock touches them.
struct ResumableArchive {
    zip: PathBuf,
    meta: PathBuf,
}

impl ResumableArchive {
    fn of(partial: &Path, model: &str) -> Self {
        ResumableArchive { zip: partial.join(format!("{model}{RESUME_SUFFIX}.zip")), meta: partial.join(format!("{model}{RESUME_SUFFIX}.json")) }
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.zip);
        let _ = std::fs::remove_file(&self.meta);
    }

    /// Bytes kept from an earlier attempt that may be continued, with their `ETag`: only when
    /// they were fetched for the same announced checksum.
    fn kept(&self, expected: Option<&str>) -> Option<(u64, Option<String>)> {
        let meta: Value = serde_json::from_slice(&std::fs::read(&self.meta).ok()?).ok()?;
        if meta.get("checksum").and_then(Value::as_str).unwrap_or_default() != expected.unwrap_or_default() {
            return None;
        }
        let len = std::fs::metadata(&self.zip).ok()?.len();
        Some((len, meta.get("etag").and_then(Value::as_str).map(str::to_string))).filter(|(n, _)| *n > 0)
    }

    /// Download the archive into `zip`, continuing kept bytes when `resume` allows and the
    /// server agrees (206 for the same `ETag`); otherwise from zero. Returns whether bytes
    /// from before were kept.
    fn fetch(&self, client: &CloudClient, model: &str, expected: Option<&str>, resume: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<bool> {
        use std::io::{Seek, Write};
        let kept = if resume { self.kept(expected) } else { None };
        if kept.is_none() {
            self.remove();
        }
        let r = kept.as_ref().map(|(n, tag)| crate::cloud::Resume { offset: *n, etag: tag.as_deref() });
        let (reply, body) = client.open_download(model, r)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(reply.start == 0)
            .open(&self.zip)
            .map_err(|e| io_err("Cannot create", &self.zip, e))?;
        if reply.start > 0 {
            f.seek(std::io::SeekFrom::End(0)).map_err(|e| io_err("Cannot write", &self.zip, e))?;
        }
        // Written before the body, so a process killed mid-body leaves what resuming needs.
        let meta = json!({"etag": reply.etag, "checksum": expected.unwrap_or_default(), "total": reply.total});
        std::fs::write(&self.meta, meta.to_string()).map_err(|e| io_err("Cannot write", &self.meta, e))?;
        let mut w = std::io::BufWriter::new(f);
        let copied = client.copy_body(model, &reply, body, &mut w, progress);
        let flushed = w.flush().map_err(|e| io_err("Cannot write", &self.zip, e));
        // What this attempt received, also when it was cut short (the bytes stay for resuming).
        if let Ok(m) = std::fs::metadata(&self.zip) {
            metrics::counter!(metric::DOWNLOADED_BYTES).increment(m.len().saturating_sub(reply.start));
        }
        copied?;
        flushed?;
        Ok(reply.start > 0)
    }
}

/// The labels file `LabelsPath` names (if any) is inside the model directory, present and a
/// JSON object.
fn verify_labels(dir: &Path, model: &str) -> Result<()> {
    let params = ModelParams::from_file(&dir.join(format!("{model}.json")))
        .map_err(|e| Error::bad_model(format!("Cloud model '{model}': bad configuration: {}", e.message)))?;
    let rel = params.str("LabelsPath", 0);
    if rel.is_empty() {
        return Ok(());
    }
    let relp = Path::new(&rel);
    if relp.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(Error::bad_model(format!("Cloud model '{model}': LabelsPath '{rel}' leaves the model directory")));
    }
    let text =
        std::fs::read_to_string(dir.join(relp)).map_err(|e| Error::bad_model(format!("Cloud model '{model}': labels file '{rel}' cannot be read: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(Error::bad_model(format!("Cloud model '{model}': labels file '{rel}' is not a JSON object"))),
    }
}

/// Check an extracted model: `<m>.json` parses as a model config, its `Checksum` is the zoo's
/// (when known), `ModelPath` names a file inside the directory, and that file's SHA-256 equals
/// the checksum when the checksum is a SHA-256.
pub fn verify_model_dir(dir: &Path, model: &str, expected: Option<&str>) -> Result<()> {
    let config = dir.join(format!("{model}.json"));
    let params = ModelParams::from_file(&config).map_err(|e| Error::bad_model(format!("Cloud model '{model}': bad configuration: {}", e.message)))?;
    let have = params.str("Checksum", 0);
    if let Some(want) = expected {
        if have != want {
            return Err(Error::bad_model(format!(
                "Cloud model '{model}': the downloaded archive has checksum '{have}' but the zoo announced '{want}' (the model changed during the download?)"
            )));
        }
    }
    let rel = params.str("ModelPath", 0);
    if rel.is_empty() {
        return Ok(());
    }
    let relp = Path::new(&rel);
    if relp.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(Error::bad_model(format!("Cloud model '{model}': ModelPath '{rel}' leaves the model directory")));
    }
    let bin = dir.join(relp);
    let meta =
        std::fs::symlink_metadata(&bin).map_err(|e| Error::bad_model(format!("Cloud model '{model}': model file '{rel}' missing from the archive: {e}")))?;
    if !meta.is_file() {
        return Err(Error::bad_model(format!("Cloud model '{model}': model file '{rel}' is not a regular file")));
    }
    let want = have.to_ascii_lowercase();
    if want.len() == 64 && want.bytes().all(|b| b.is_ascii_hexdigit()) && crate::settings::Settings::process().verify_checksums() {
        use sha2::{Digest, Sha256};
        let mut f = File::open(&bin).map_err(|e| io_err("Cannot read", &bin, e))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| io_err("Cannot read", &bin, e))?;
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != want {
            return Err(Error::bad_model(format!("Cloud model '{model}': SHA-256 of '{rel}' is {got}, its configuration says {want} (corrupt download?)")));
        }
    }
    Ok(())
}
