//! The hub's zoo root, laid out as dg-zoo-server 0.3.0's: `<root>/tokens.json`
//! (`{"<token>": {"is_admin": bool, "zoos": ["org/zoo", ...]}}`) and `<root>/<org>/<zoo>/<m>.zip`,
//! or a model folder `<root>/<org>/<zoo>/<m>/` served as the same archive ([`super::folder`]).
//! The root lives behind one trait, [`Storage`], with two implementations: [`LocalDir`] (a
//! directory) and [`super::s3::S3Zoo`] (`s3://BUCKET/PREFIX`); [`Store`] and the routes above it
//! do not know which one they use. Unlike dg-zoo-server, which scans once at start, archives and
//! tokens are re-read when their [`Version`] changes, so a replaced archive is served (with its
//! new checksum) at once.
use super::folder::{FolderFile, Folders};
use dgzoo::cache::archive::is_safe_segment;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// dg-zoo-server's temporary directory under the root; never a zoo.
pub const TEMP_SUBDIR: &str = "__dg_zoo_server_temp__";
/// Largest config/labels/readme member read from an archive.
const MAX_MEMBER: u64 = 64 << 20;

/// What the hub knows about one archive.
#[derive(Debug)]
pub struct ModelInfo {
    pub params: Value,
    pub labels: Value,
    pub readme: String,
    pub checksum: String,
}

/// A token's rights.
#[derive(Debug, Clone)]
pub struct TokenRights {
    pub is_admin: bool,
    pub zoos: Vec<String>,
}

/// One version of a stored object: equal versions mean equal bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    /// The strong `ETag` the hub sends (quoted).
    pub etag: String,
    pub modified: Option<SystemTime>,
}

/// A model archive opened at one version: its bytes are streamed from that version only.
pub struct Archive {
    pub version: Version,
    body: Box<dyn FnOnce(u64, u64) -> std::io::Result<AsyncBody> + Send>,
}

/// An archive's bytes as the download body reads them.
pub type AsyncBody = Pin<Box<dyn AsyncRead + Send>>;

/// A synchronous random-access reader (ZIP parsing).
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

impl Archive {
    pub fn new(version: Version, body: impl FnOnce(u64, u64) -> std::io::Result<AsyncBody> + Send + 'static) -> Self {
        Archive { version, body: Box::new(body) }
    }

    /// `count` bytes from `start`, streamed (never held whole in memory).
    pub fn stream(self, start: u64, count: u64) -> std::io::Result<AsyncBody> {
        (self.body)(start, count)
    }
}

/// Why an archive could not be stored.
#[derive(Debug)]
pub enum PutError {
    AlreadyExists,
    Other(String),
}

/// Where a zoo root lives. Every method is synchronous: the routes call them on the blocking
/// pool (`net::blocking`), and the S3 implementation waits there for its async client.
/// Names passed in are already checked safe path segments ([`is_safe_segment`]).
pub trait Storage: Send + Sync {
    /// The root as users name it (a directory, `s3://bucket/prefix`), for messages.
    fn describe(&self) -> String;
    /// The current version of a top-level file (`tokens.json`); `None` if it does not exist.
    /// May be cached for a short time (see the implementation).
    fn file_version(&self, name: &str) -> Option<Version>;
    /// A top-level file's bytes now (never cached); `None` if it does not exist.
    fn read_file(&self, name: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Replace a top-level file atomically (readers see the old or the new bytes), readable by
    /// the hub only where the storage has such a notion.
    fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// Organizations (`[]`) or zoos of an organization (`[org]`), unsorted.
    fn subdirs(&self, dir: &[&str]) -> Vec<String>;
    /// Whether the zoo `org/zoo` exists.
    fn zoo_exists(&self, org: &str, zoo: &str) -> bool;
    /// The `.zip` archives of a zoo: model name and version.
    fn archives(&self, org: &str, zoo: &str) -> Vec<(String, Version)>;
    /// The current version of one archive.
    fn archive_version(&self, org: &str, zoo: &str, model: &str) -> Option<Version>;
    /// A random-access reader of the archive at `version` (ZIP parsing of config, labels, readme).
    fn archive_reader(&self, org: &str, zoo: &str, model: &str, version: &Version) -> std::io::Result<Box<dyn ReadSeek>>;
    /// The archive opened for a download; `None` if it does not exist.
    fn open_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Archive>>;
    /// The archive as a local file, for extracting it: the file itself, or a copy written to
    /// `scratch` (which the caller deletes).
    fn local_archive(&self, org: &str, zoo: &str, model: &str, scratch: &Path) -> std::io::Result<PathBuf>;
    /// A directory where an upload to `org/zoo` is staged before [`Storage::put_archive`].
    fn staging_dir(&self, org: &str, zoo: &str) -> PathBuf;
    /// Publish a staged, validated archive as `org/zoo/<model>.zip`.
    fn put_archive(&self, org: &str, zoo: &str, model: &str, staged: tempfile::NamedTempFile, overwrite: bool) -> Result<(), PutError>;
    fn delete_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<()>;
    /// Candidate model folders of a zoo (its sub-directories); [`super::folder`] serves those
    /// holding `<m>/<m>.json`.
    fn folders(&self, org: &str, zoo: &str) -> Vec<String>;
    /// The files of folder `org/zoo/model` (any order; names of safe segments only, files that
    /// resolve outside the folder left out); `None` if there is no such folder.
    fn folder_files(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Vec<FolderFile>>>;
    /// One listed file of a folder, for packing it.
    fn folder_file(&self, org: &str, zoo: &str, model: &str, file: &FolderFile) -> std::io::Result<Box<dyn Read + Send>>;
}

fn file_version(p: &Path) -> Option<Version> {
    let m = std::fs::metadata(p).ok()?;
    let modified = m.modified().ok();
    Some(Version { len: m.len(), etag: super::archive_etag(m.len(), modified), modified })
}

/// A zoo root on the local file system (dg-zoo-server's layout). Changes are noticed by
/// `stat`ing the files on every request (size and mtime).
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: &Path) -> Self {
        LocalDir { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn archive_path(&self, org: &str, zoo: &str, model: &str) -> PathBuf {
        self.root.join(org).join(zoo).join(format!("{model}.zip"))
    }
}

impl Storage for LocalDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn file_version(&self, name: &str) -> Option<Version> {
        file_version(&self.root.join(name))
    }

    fn read_file(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.root.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.root.join(format!("{name}.tmp"));
        {
            // Tokens are secrets: readable by the hub's user only.
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.root.join(name))
    }

    fn subdirs(&self, dir: &[&str]) -> Vec<String> {
        let path = dir.iter().fold(self.root.clone(), |p, d| p.join(d));
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    fn zoo_exists(&self, org: &str, zoo: &str) -> bool {
        self.root.join(org).join(zoo).is_dir()
    }

    fn archives(&self, org: &str, zoo: &str) -> Vec<(String, Version)> {
        std::fs::read_dir(self.root.join(org).join(zoo))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| {
                        let model = e.file_name().to_str()?.strip_suffix(".zip")?.to_string();
                        Some((model, file_version(&e.path())?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn archive_version(&self, org: &str, zoo: &str, model: &str) -> Option<Version> {
        file_version(&self.archive_path(org, zoo, model))
    }

    fn archive_reader(&self, org: &str, zoo: &str, model: &str, _version: &Version) -> std::io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(std::fs::File::open(self.archive_path(org, zoo, model))?))
    }

    fn open_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Archive>> {
        let f = match std::fs::File::open(self.archive_path(org, zoo, model)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // One open file: the length, the tag and the bytes all come from it even if it is replaced.
        let meta = f.metadata()?;
        let modified = meta.modified().ok();
        Ok(Some(file_archive(f, Version { len: meta.len(), etag: super::archive_etag(meta.len(), modified), modified })))
    }

    fn local_archive(&self, org: &str, zoo: &str, model: &str, _scratch: &Path) -> std::io::Result<PathBuf> {
        Ok(self.archive_path(org, zoo, model))
    }

    fn staging_dir(&self, org: &str, zoo: &str) -> PathBuf {
        // Beside the archives, so the final rename stays on one file system.
        self.root.join(org).join(zoo)
    }

    fn put_archive(&self, org: &str, zoo: &str, model: &str, staged: tempfile::NamedTempFile, overwrite: bool) -> Result<(), PutError> {
        let target = self.archive_path(org, zoo, model);
        let persisted = if overwrite { staged.persist(&target).map(|_| ()) } else { staged.persist_noclobber(&target).map(|_| ()) };
        match persisted {
            Ok(()) => Ok(()),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Err(PutError::AlreadyExists),
            Err(e) => Err(PutError::Other(e.error.to_string())),
        }
    }

    fn delete_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.archive_path(org, zoo, model))
    }

    fn folders(&self, org: &str, zoo: &str) -> Vec<String> {
        self.subdirs(&[org, zoo])
    }

    fn folder_files(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Vec<FolderFile>>> {
        let dir = self.root.join(org).join(zoo).join(model);
        let real = match dir.canonicalize() {
            Ok(r) if r.is_dir() => r,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        walk_folder(&real, &real, "", 0, &mut out)?;
        Ok(Some(out))
    }

    fn folder_file(&self, org: &str, zoo: &str, model: &str, file: &FolderFile) -> std::io::Result<Box<dyn Read + Send>> {
        let dir = self.root.join(org).join(zoo).join(model).canonicalize()?;
        // Resolved again: a symlink swapped in since the listing must not escape either.
        let path = dir.join(&file.name).canonicalize()?;
        if !path.starts_with(&dir) {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{model}/{} resolves outside its model folder", file.name)));
        }
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// Deepest sub-directory of a model folder that is packed.
const MAX_FOLDER_DEPTH: usize = 8;

/// The regular files under `real/rel` (`real` canonical): names that are not safe segments
/// (hidden files, ...) and entries resolving outside `real` (symlinks out) are skipped.
fn walk_folder(real: &Path, dir: &Path, rel: &str, depth: usize, out: &mut Vec<FolderFile>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string).filter(|n| is_safe_segment(n)) else { continue };
        let Ok(target) = e.path().canonicalize() else { continue };
        if !target.starts_with(real) {
            tracing::warn!("dgzoo hub: {} resolves outside its model folder; not served", e.path().display());
            continue;
        }
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let meta = std::fs::metadata(&target)?;
        if meta.is_dir() && depth < MAX_FOLDER_DEPTH {
            walk_folder(real, &target, &rel, depth + 1, out)?;
        } else if meta.is_file() {
            let ns = meta.modified().ok().and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            out.push(FolderFile { name: rel, len: meta.len(), tag: format!("{ns:x}") });
        }
    }
    Ok(())
}

/// An open file served as an archive at `version`.
fn file_archive(f: std::fs::File, version: Version) -> Archive {
    Archive::new(version, move |start, count| {
        use tokio::io::AsyncReadExt;
        let mut f = f;
        if start > 0 {
            f.seek(std::io::SeekFrom::Start(start))?;
        }
        Ok(Box::pin(tokio::fs::File::from_std(f).take(count)) as AsyncBody)
    })
}

/// A zoo of the store, found by [`Store::zoo`].
#[derive(Debug, Clone)]
pub struct Zoo {
    pub org: String,
    pub zoo: String,
}

/// How an entry of `tokens.json` is shown in error texts: its first characters only (the
/// token is a secret, and the message goes to logs).
fn entry_name(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    if head.len() < token.len() {
        format!("\"{head}…\"")
    } else {
        format!("\"{head}\"")
    }
}

/// Parse `tokens.json` strictly: a JSON object of `{"is_admin": bool, "zoos": ["org/zoo", ...]}`
/// entries. Anything else is an error naming the file and the entry (a token file that does
/// not parse must never be taken as "no tokens").
pub fn parse_tokens(text: &str, path: &Path) -> Result<HashMap<String, TokenRights>, String> {
    let bad = |what: String| format!("Invalid token file '{}': {what}", path.display());
    let m: Map<String, Value> = serde_json::from_str(text).map_err(|e| bad(format!("not a JSON object of tokens ({e})")))?;
    let mut out = HashMap::with_capacity(m.len());
    for (k, v) in m {
        let name = entry_name(&k);
        if k.is_empty() {
            return Err(bad("an entry has an empty token".into()));
        }
        let o = v.as_object().ok_or_else(|| bad(format!("entry {name} is not an object")))?;
        let is_admin = match o.get("is_admin") {
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad(format!("entry {name}: \"is_admin\" is not true or false"))),
            None => return Err(bad(format!("entry {name} has no \"is_admin\""))),
        };
        let zoos = match o.get("zoos") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|z| z.as_str().map(str::to_string).ok_or_else(|| bad(format!("entry {name}: \"zoos\" holds a non-string {z}"))))
                .collect::<Result<Vec<String>, String>>()?,
            Some(_) => return Err(bad(format!("entry {name}: \"zoos\" is not a list"))),
            None => return Err(bad(format!("entry {name} has no \"zoos\""))),
        };
        out.insert(k, TokenRights { is_admin, zoos });
    }
    Ok(out)
}

type TokenTable = Arc<HashMap<String, TokenRights>>;
/// `(org, zoo, model)`.
pub(crate) type ModelKey = (String, String, String);

#[derive(Default)]
struct Caches {
    /// The last token table that parsed, with the version of the file it was last checked at.
    tokens: Option<(Option<Version>, TokenTable)>,
    models: HashMap<ModelKey, (Version, Option<Arc<ModelInfo>>)>,
}

pub struct Store {
    storage: Box<dyn Storage>,
    caches: Mutex<Caches>,
    folders: Folders,
}

fn read_member<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, idx: usize) -> Option<Vec<u8>> {
    let e = zip.by_index(idx).ok()?;
    let mut buf = Vec::new();
    e.take(MAX_MEMBER).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn base_name(n: &str) -> &str {
    n.rsplit(['/', '\\']).next().unwrap_or(n)
}

/// Read config, labels and readme from an archive file; `None` if it is not a model archive
/// (not a ZIP, no `<m>.json`, or no `Checksum`), which is then not listed.
pub fn read_model_info(path: &Path, model: &str) -> Option<ModelInfo> {
    model_info_from(std::fs::File::open(path).ok()?, model)
}

/// [`read_model_info`] from any random-access reader.
pub fn model_info_from<R: Read + Seek>(reader: R, model: &str) -> Option<ModelInfo> {
    let mut zip = zip::ZipArchive::new(reader).ok()?;
    // An archive with entries escaping its model folder is never listed or served.
    if dgzoo::cache::archive::unsafe_entry(&mut zip, model).is_some() {
        return None;
    }
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let json_name = format!("{model}.json");
    let preferred = format!("{model}/{json_name}");
    let idx = names.iter().position(|n| *n == preferred).or_else(|| names.iter().position(|n| base_name(n) == json_name))?;
    let params: Value = serde_json::from_slice(&read_member(&mut zip, idx)?).ok()?;
    let checksum = match params.get("Checksum")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let labels_name = params.pointer("/POST_PROCESS/0/LabelsPath").and_then(Value::as_str).map(str::to_string);
    let labels = labels_name
        .and_then(|ln| names.iter().position(|n| base_name(n) == ln))
        .and_then(|i| read_member(&mut zip, i))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let readme = names
        .iter()
        .position(|n| base_name(n).eq_ignore_ascii_case("readme.md"))
        .and_then(|i| read_member(&mut zip, i))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Some(ModelInfo { params, labels, readme, checksum })
}

const TOKENS: &str = "tokens.json";

impl Store {
    /// A store over a local zoo root directory.
    pub fn new(root: &Path) -> Self {
        Self::with_storage(Box::new(LocalDir::new(root)))
    }

    pub fn with_storage(storage: Box<dyn Storage>) -> Self {
        Store { storage, caches: Mutex::new(Caches::default()), folders: Folders::default() }
    }

    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Where `tokens.json` is, for messages.
    pub fn tokens_location(&self) -> String {
        format!("{}/{TOKENS}", self.storage.describe().trim_end_matches('/'))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `tokens.json` read now, strictly ([`parse_tokens`]); a missing file is an empty table.
    /// The hub refuses to start when this fails, and token changes refuse to write over a file
    /// that does not parse.
    pub fn load_tokens(&self) -> Result<Arc<HashMap<String, TokenRights>>, String> {
        let location = self.tokens_location();
        let version = self.storage.file_version(TOKENS);
        let text = match self.storage.read_file(TOKENS) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(None) => String::from("{}"),
            Err(e) => return Err(format!("Cannot read token file '{location}': {e}")),
        };
        let t = Arc::new(parse_tokens(&text, Path::new(&location))?);
        self.lock().tokens = Some((version, t.clone()));
        Ok(t)
    }

    /// The token table, re-read when `tokens.json` changes. A file that stops parsing while
    /// the hub runs keeps the last table that did (reported on stderr), never an empty one.
    pub fn tokens(&self) -> Arc<HashMap<String, TokenRights>> {
        let version = self.storage.file_version(TOKENS);
        if let Some((v, t)) = &self.lock().tokens {
            if *v == version {
                return t.clone();
            }
        }
        match self.load_tokens() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("dgzoo hub: {e}; keeping the previous tokens");
                let mut c = self.lock();
                let t = c.tokens.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                c.tokens = Some((version, t.clone()));
                t
            }
        }
    }

    /// Write the token table (atomically).
    pub fn save_tokens(&self, tokens: &HashMap<String, TokenRights>) -> std::io::Result<()> {
        let mut names: Vec<&String> = tokens.keys().collect();
        names.sort();
        let m: Map<String, Value> =
            names.into_iter().map(|k| (k.clone(), serde_json::json!({"is_admin": tokens[k].is_admin, "zoos": tokens[k].zoos}))).collect();
        self.storage.write_file(TOKENS, serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default().as_bytes())?;
        // Forget the cached table: a same-size rewrite within the mtime granularity must not be missed.
        self.lock().tokens = None;
        Ok(())
    }

    /// Zoo `org/zoo` if it exists.
    pub fn zoo(&self, org: &str, zoo: &str) -> Option<Zoo> {
        if !is_safe_segment(org) || !is_safe_segment(zoo) || org == TEMP_SUBDIR {
            return None;
        }
        self.storage.zoo_exists(org, zoo).then(|| Zoo { org: org.to_string(), zoo: zoo.to_string() })
    }

    /// Organizations, sorted.
    pub fn orgs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.storage.subdirs(&[]).into_iter().filter(|o| is_safe_segment(o) && o != TEMP_SUBDIR).collect();
        v.sort();
        v
    }

    /// Zoos of an organization.
    pub fn zoos(&self, org: &str) -> Vec<String> {
        if !is_safe_segment(org) || org == TEMP_SUBDIR {
            return Vec::new();
        }
        let mut v = self.storage.subdirs(&[org]);
        v.sort();
        v
    }

    /// Model info at `version`, parsed from `reader` (opened only when that version is new).
    fn info_at(&self, zoo: &Zoo, model: &str, version: Version, reader: impl FnOnce() -> std::io::Result<Box<dyn ReadSeek>>) -> Option<Arc<ModelInfo>> {
        let key = (zoo.org.clone(), zoo.zoo.clone(), model.to_string());
        if let Some((v, info)) = self.lock().models.get(&key) {
            if *v == version {
                return info.clone();
            }
        }
        // Parse outside the lock: archives can be large (and remote).
        let info = reader().ok().and_then(|r| model_info_from(r, model)).map(Arc::new);
        self.lock().models.insert(key, (version, info.clone()));
        info
    }

    /// The current build of folder model `model` (see [`super::folder`]); a folder that cannot
    /// be packed is reported and not served.
    fn folder(&self, zoo: &Zoo, model: &str) -> Option<super::folder::Built> {
        match self.folders.built(&*self.storage, &zoo.org, &zoo.zoo, model) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("dgzoo hub: model folder {}/{}/{model} is not served: {e}", zoo.org, zoo.zoo);
                None
            }
        }
    }

    /// Model info of one model, re-read when it changed. A `<m>.zip` and a folder `<m>/` of
    /// the same name: the zip wins (it is what dg-zoo-server serves), the folder is ignored.
    pub fn model(&self, zoo: &Zoo, model: &str) -> Option<Arc<ModelInfo>> {
        if !is_safe_segment(model) {
            return None;
        }
        if let Some(version) = self.storage.archive_version(&zoo.org, &zoo.zoo, model) {
            let v = version.clone();
            return self.info_at(zoo, model, version, || self.storage.archive_reader(&zoo.org, &zoo.zoo, model, &v));
        }
        let built = self.folder(zoo, model)?;
        self.info_at(zoo, model, built.version, || Ok(Box::new(std::fs::File::open(&built.path)?) as Box<dyn ReadSeek>))
    }

    /// All models of a zoo (archives and folders), sorted by name.
    pub fn models(&self, zoo: &Zoo) -> Vec<(String, Arc<ModelInfo>)> {
        let archives: Vec<(String, Version)> = self.storage.archives(&zoo.org, &zoo.zoo).into_iter().filter(|(m, _)| is_safe_segment(m)).collect();
        let names: Vec<String> = archives.iter().map(|(m, _)| m.clone()).collect();
        let mut list: Vec<(String, Arc<ModelInfo>)> = archives
            .into_iter()
            .filter_map(|(n, v)| {
                let at = v.clone();
                self.info_at(zoo, &n, v, || self.storage.archive_reader(&zoo.org, &zoo.zoo, &n, &at)).map(|i| (n, i))
            })
            .collect();
        // Folders whose name an archive already has are not models of their own (the zip wins).
        let folders: Vec<String> = self.storage.folders(&zoo.org, &zoo.zoo).into_iter().filter(|m| is_safe_segment(m) && !names.contains(m)).collect();
        for m in folders {
            if let Some(i) = self.model(zoo, &m) {
                list.push((m, i));
            }
        }
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// A model's archive opened for a download.
    pub fn open_archive(&self, zoo: &Zoo, model: &str) -> std::io::Result<Option<Archive>> {
        if let Some(a) = self.storage.open_archive(&zoo.org, &zoo.zoo, model)? {
            return Ok(Some(a));
        }
        // Twice: a newer build may remove this one between the build and the open.
        for _ in 0..2 {
            let Some(built) = self.folder(zoo, model) else { return Ok(None) };
            match std::fs::File::open(&built.path) {
                Ok(f) => return Ok(Some(file_archive(f, built.version))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// A model's archive as a local file for extracting it ([`Storage::local_archive`]); a
    /// folder model's is its build.
    pub fn local_archive(&self, zoo: &Zoo, model: &str, scratch: &Path) -> std::io::Result<PathBuf> {
        if self.storage.archive_version(&zoo.org, &zoo.zoo, model).is_some() {
            return self.storage.local_archive(&zoo.org, &zoo.zoo, model, scratch);
        }
        match self.folder(zoo, model) {
            Some(b) => Ok(b.path),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("model {model} is neither an archive nor a model folder"))),
        }
    }
}
