//! Faults on purpose against the cloud model cache (issue #14): `dgzoo cache fetch` killed
//! with SIGKILL at random points of download, extraction and install, many times over (the
//! cache stays consistent and never serves a partial model); the cache's disk full and
//! read-only while an older copy is cached (a clear error naming the path, the old copy kept
//! and loadable offline); a hub that stalls mid-body, trickles, announces the wrong length or
//! serves a corrupt archive (a deliberately broken HTTP peer on 127.0.0.1).
//!
//! `DGZOO_CACHE_FAULT_ITERATIONS` (default 15) sets the number of kills;
//! `scripts/cache-faults.sh` runs 100. `DGZOO_CACHE_FAULT_SEED` repeats a run.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::cache::{Cache, CacheConfig};
use dgzoo::cloud::CloudClient;
use dgzoo::zoo::address::parse_cloud_url;
use dgzoo::zoo::{ConnectOptions, Zoo};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fetch_cmd(url: &str, cache_dir: &Path, model: &str) -> Command {
    let mut c = Command::new(dgzoo_bin());
    c.args(["cache", "fetch", "--url", url, "--token", TOKEN, model]).env("DGZOO_CACHE_DIR", cache_dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn must(out: Output, what: &str) -> Value {
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// xorshift64*: the tests need reproducible random points, not a crypto generator.
struct Rng(u64);
impl Rng {
    fn from_env() -> Self {
        let seed = std::env::var("DGZOO_CACHE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
        eprintln!("DGZOO_CACHE_FAULT_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a killed fetch left in the zoo's cache directory: the phase it was killed in.
fn phase_left(zoo_cache: &Path, model: &str) -> &'static str {
    let partial: Vec<String> =
        std::fs::read_dir(zoo_cache.join(".partial")).map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect()).unwrap_or_default();
    if partial.iter().any(|n| n.ends_with(".old")) || (!zoo_cache.join(model).exists() && partial.iter().any(|n| n.ends_with(".d"))) {
        "install"
    } else if partial.iter().any(|n| n.ends_with(".d")) {
        "extract"
    } else if partial.iter().any(|n| n.contains(".dl-resume.")) {
        "download"
    } else {
        "before-download-or-after-install"
    }
}

/// The cached copy, loaded offline, predicts `want` on the cat image: a partial model can
/// never be what gets loaded.
fn offline_predict(cache_dir: &Path, url: &str, model: &str) -> Option<Value> {
    let cfg = CacheConfig { root: cache_dir.to_path_buf(), limit: dgzoo::cache::DEFAULT_LIMIT, offline: true };
    let zoo = Zoo::connect_with("@local", url, TOKEN, &ConnectOptions { cache: Some(cfg), offline: Some(true), ..Default::default() }).unwrap();
    let m = match zoo.load_model(model, &Value::Null) {
        Ok(m) => m,
        Err(e) if e.code == dgzoo::Code::NotFound => return None,
        Err(e) => panic!("the cached copy of {model} does not load: {}", e.message),
    };
    let r = dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&image("cat_224.jpg"))]).unwrap_or_else(|e| panic!("predict: {}", e.message));
    Some(serde_json::to_value(&r.results).unwrap())
}

#[test]
fn sigkill_at_random_points_of_fetch_leaves_a_consistent_cache() {
    let iterations: usize = std::env::var("DGZOO_CACHE_FAULT_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let mut rng = Rng::from_env();
    let root = hub_root(&[EFF_Q]);
    // Two versions that alternate on the hub, so every fetch replaces the cached copy (and the
    // install step, moving the old copy aside, is exercised).
    let v1 = std::fs::read(zoo_dir(root.path()).join(format!("{EFF_Q}.zip"))).unwrap();
    publish_new_version(root.path(), EFF_Q, 1 << 20);
    let v2 = std::fs::read(zoo_dir(root.path()).join(format!("{EFF_Q}.zip"))).unwrap();
    let versions = [v1, v2];
    let set_version = |i: usize| {
        let tmp = zoo_dir(root.path()).join("swap.tmp");
        std::fs::write(&tmp, &versions[i % 2]).unwrap();
        std::fs::rename(&tmp, zoo_dir(root.path()).join(format!("{EFF_Q}.zip"))).unwrap();
    };
    let hub = start_hub(root.path());
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let zoo_cache = Cache::new(cache_cfg(cdir.path())).zoo_dir(&parse_cloud_url(&url).unwrap()).unwrap();

    // One uninterrupted fetch: its duration bounds the random kill points; its result is the
    // reference (padding the binary with zeros does not change the model's output).
    set_version(0);
    let t = Instant::now();
    must(fetch_cmd(&url, cdir.path(), EFF_Q).output().unwrap(), "first fetch");
    let full = t.elapsed();
    let want = offline_predict(cdir.path(), &url, EFF_Q).expect("cached after the first fetch");
    eprintln!("one full fetch of {EFF_Q}: {full:?}");

    let mut phases: std::collections::BTreeMap<&str, usize> = Default::default();
    for i in 1..=iterations {
        set_version(i);
        let mut child = ChildGuard(fetch_cmd(&url, cdir.path(), EFF_Q).spawn().unwrap());
        // Half the kills anywhere in (and just past) a full fetch's time, half in its last
        // part, where extraction and the install rename are.
        let us = full.as_micros() as u64;
        let delay = Duration::from_micros(if i % 2 == 0 { rng.below(us * 6 / 5) } else { us * 3 / 5 + rng.below(us / 2) });
        std::thread::sleep(delay);
        let finished = child.0.try_wait().unwrap().is_some();
        let _ = child.0.kill(); // SIGKILL
        child.0.wait().unwrap();
        let phase = if finished { "finished-before-kill" } else { phase_left(&zoo_cache, EFF_Q) };
        *phases.entry(phase).or_default() += 1;
        // The cache is consistent: verify is clean and what is cached is a whole model.
        let out = Command::new(dgzoo_bin()).args(["cache", "verify", "--json"]).env("DGZOO_CACHE_DIR", cdir.path()).output().unwrap();
        let report = must(out, &format!("cache verify after a kill at {delay:?} ({phase})"));
        assert!(report.as_array().is_some_and(|a| a.iter().all(|e| e["ok"] == true)), "after a kill at {delay:?} ({phase}): {report}");
        if let Some(got) = offline_predict(cdir.path(), &url, EFF_Q) {
            assert_eq!(got, want, "after a kill at {delay:?} ({phase}) the cached model predicts differently");
        }
        // The next fetch succeeds and installs the hub's current version.
        let v = must(fetch_cmd(&url, cdir.path(), EFF_Q).output().unwrap(), &format!("fetch after a kill at {delay:?} ({phase})"));
        let dir = PathBuf::from(v["path"].as_str().unwrap());
        let bin = std::fs::read(dir.join(format!("{EFF_Q}.tflite"))).unwrap();
        assert_eq!(bin.len() > 6 << 20, i % 2 == 1, "iteration {i}: the fetch did not install the hub's current version");
        assert_eq!(offline_predict(cdir.path(), &url, EFF_Q).as_ref(), Some(&want));
    }
    eprintln!("{iterations} kills by phase: {phases:?}");
    // Nothing is left behind once no one is downloading: prune clears stale partials.
    must(Command::new(dgzoo_bin()).args(["cache", "prune", "--json"]).env("DGZOO_CACHE_DIR", cdir.path()).output().unwrap(), "prune");
    let left: Vec<String> = std::fs::read_dir(zoo_cache.join(".partial")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|n| n.contains(".dl-resume.")), "left in .partial: {left:?}");
}

/// `sh -c SCRIPT` in a private mount namespace (`unshare -rm`), with `$CACHE` mounted as the
/// script says; `None` (after printing why) when namespaces are not available here.
fn in_namespace(script: &str, cache: &Path, env: &[(&str, &str)]) -> Option<Output> {
    if !Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success()) {
        if std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1") {
            panic!("unshare -rm is not available and DGZOO_REQUIRE_PEER=1");
        }
        eprintln!("SKIP: unshare -rm is not available");
        return None;
    }
    let mut c = Command::new("unshare");
    c.args(["-rm", "sh", "-c", script]).env("CACHE", cache).env("DGZOO", dgzoo_bin()).env("DGZOO_CACHE_DIR", cache);
    for (k, v) in env {
        c.env(k, v);
    }
    Some(c.output().unwrap())
}

/// The cache disk fills up while a new version replaces a cached one: the error says "no
/// space" and names the path, the old copy stays, and it is still served offline and verifies.
#[test]
fn a_full_disk_during_an_update_keeps_the_old_copy() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let url = hub_url(&hub);
    // The new version: 12 MiB of zeros appended (a small archive that extracts to more than
    // the 8 MiB file system holds).
    let staged = tempfile::tempdir().unwrap();
    let old_zip = zoo_dir(root.path()).join(format!("{BLAZE}.zip"));
    let keep = staged.path().join("old.zip");
    std::fs::copy(&old_zip, &keep).unwrap();
    publish_new_version(root.path(), BLAZE, 12 << 20);
    let new_zip = staged.path().join("new.zip");
    std::fs::rename(&old_zip, &new_zip).unwrap();
    std::fs::rename(&keep, &old_zip).unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let script = r#"mount -t tmpfs -o size=8m none "$CACHE" || exit 90
"$DGZOO" cache fetch --url "$URL" --token "$TOKEN" "$MODEL" > "$OUT/1.json" 2> "$OUT/1.err" || exit 91
cp "$NEW" "$HUBZIP.tmp" && mv "$HUBZIP.tmp" "$HUBZIP"
"$DGZOO" cache fetch --url "$URL" --token "$TOKEN" "$MODEL" > "$OUT/2.json" 2> "$OUT/2.err"; echo $? > "$OUT/2.rc"
DGZOO_OFFLINE=1 "$DGZOO" cache fetch --url "$URL" --token "$TOKEN" "$MODEL" > "$OUT/3.json" 2> "$OUT/3.err" || exit 93
"$DGZOO" cache verify --json > "$OUT/4.json" 2> "$OUT/4.err" || exit 94
df -k "$CACHE" | tail -1 > "$OUT/df"
"#;
    let out_dir = tempfile::tempdir().unwrap();
    let env = [
        ("URL", url.as_str()),
        ("TOKEN", TOKEN),
        ("MODEL", BLAZE),
        ("OUT", out_dir.path().to_str().unwrap()),
        ("NEW", new_zip.to_str().unwrap()),
        ("HUBZIP", old_zip.to_str().unwrap()),
    ];
    let Some(out) = in_namespace(script, cdir.path(), &env) else { return };
    let read = |f: &str| std::fs::read_to_string(out_dir.path().join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "status {:?}: {}\n1: {}\n3: {}\n4: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        read("1.err"),
        read("3.err"),
        read("4.err")
    );
    let err = read("2.err");
    eprintln!("full disk during an update: {}", err.trim());
    assert_ne!(read("2.rc").trim(), "0", "the update on a full disk succeeded: {}", read("2.json"));
    assert!(err.to_lowercase().contains("no space left on device"), "{err}");
    assert!(err.contains(cdir.path().to_str().unwrap()), "the error names the path: {err}");
    let first: Value = serde_json::from_str(&read("1.json")).unwrap();
    let offline: Value = serde_json::from_str(&read("3.json")).unwrap();
    assert_eq!(offline["path"], first["path"], "the old copy is served offline");
    assert_eq!(offline["downloaded"], false);
    let verify: Value = serde_json::from_str(&read("4.json")).unwrap();
    assert_eq!(verify.as_array().map(Vec::len), Some(1), "{verify}");
    assert_eq!(verify[0]["ok"], true, "{verify}");
    eprintln!("tmpfs after the failed update (KiB: size used avail): {}", read("df").trim());
}

/// A read-only cache (read-only bind mount) when the hub has a newer version: the fetch fails
/// with an error naming the path; offline, the old copy is served.
#[test]
fn a_read_only_cache_with_a_newer_version_upstream_keeps_the_old_copy() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let first = must(fetch_cmd(&url, cdir.path(), BLAZE).output().unwrap(), "first fetch");
    publish_new_version(root.path(), BLAZE, 4096);
    let ro =
        r#"mount --bind "$CACHE" "$CACHE" && mount -o remount,ro,bind "$CACHE" || exit 90; exec "$DGZOO" cache fetch --url "$URL" --token "$TOKEN" "$MODEL""#;
    let env = [("URL", url.as_str()), ("TOKEN", TOKEN), ("MODEL", BLAZE)];
    let Some(out) = in_namespace(ro, cdir.path(), &env) else { return };
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("read-only cache, newer version upstream: {}", err.trim());
    assert!(!out.status.success(), "updating a read-only cache succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("Read-only file system") && err.contains(cdir.path().to_str().unwrap()), "{err}");
    let env = [("URL", url.as_str()), ("TOKEN", TOKEN), ("MODEL", BLAZE), ("DGZOO_OFFLINE", "1")];
    let out = in_namespace(ro, cdir.path(), &env).unwrap();
    let v = must(out, "offline fetch from the read-only cache");
    assert_eq!(v["path"], first["path"]);
    assert_eq!(v["downloaded"], false);
    for (e, r) in Cache::new(cache_cfg(cdir.path())).verify() {
        assert!(r.is_ok(), "{}: {:?}", e.model, r);
    }
}

/// How the broken hub sends an archive.
#[derive(Clone, Copy, Debug)]
enum Broken {
    /// Headers and half the body, then nothing (the connection stays open).
    Stall,
    /// Headers and half the body, then one byte every two seconds.
    Trickle,
    /// A `Content-Length` of half the archive, then the whole archive.
    ShortLength,
    /// The right length, with bytes in the middle of the archive flipped.
    Corrupt,
}

/// A deliberately broken hub on 127.0.0.1: `.../info` answers `info`, every other path gets
/// `archive` sent the `how` way.
fn broken_hub(info: Value, archive: Vec<u8>, how: Broken) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (info, archive) = (info.clone(), archive.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut s = s;
                if first.split_whitespace().nth(1).unwrap_or("").ends_with("/info") {
                    let b = info.to_string();
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len());
                    return;
                }
                let n = archive.len();
                let head =
                    |len: usize| format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
                match how {
                    Broken::Stall => {
                        let _ = s.write_all(head(n).as_bytes());
                        let _ = s.write_all(&archive[..n / 2]);
                        // Nothing more; hold the connection until the client gives up.
                        let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
                    }
                    Broken::Trickle => {
                        let _ = s.write_all(head(n).as_bytes());
                        let _ = s.write_all(&archive[..n / 2]);
                        for b in &archive[n / 2..] {
                            std::thread::sleep(Duration::from_secs(2));
                            if s.write_all(std::slice::from_ref(b)).is_err() {
                                return;
                            }
                        }
                    }
                    Broken::ShortLength => {
                        let _ = s.write_all(head(n / 2).as_bytes());
                        let _ = s.write_all(&archive);
                    }
                    Broken::Corrupt => {
                        let mut bad = archive;
                        for b in &mut bad[n / 3..n / 3 + 64] {
                            *b ^= 0x5a;
                        }
                        let _ = s.write_all(head(n).as_bytes());
                        let _ = s.write_all(&bad);
                    }
                }
            });
        }
    });
    port
}

/// Each way of serving an archive wrong: a clear error within a bound time, the old copy kept
/// (intact and served offline), no lock file and no extracted leftovers.
fn broken_download_keeps_the_old_copy(how: Broken, within: Duration, expect: &[&str]) {
    let root = hub_root(&[BLAZE]);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let hub = start_hub(root.path());
    let good = CloudClient::new(&parse_cloud_url(&hub_url(&hub)).unwrap(), TOKEN);
    let old_sum = good.model_info(BLAZE).unwrap()["model_params"]["Checksum"].as_str().unwrap().to_string();
    drop(cache.ensure(&good, BLAZE, Some(&old_sum), &mut |_, _| {}).unwrap());
    publish_new_version(root.path(), BLAZE, 64 << 10);
    let new_info = good.model_info(BLAZE).unwrap();
    let new_sum = new_info["model_params"]["Checksum"].as_str().unwrap().to_string();
    let archive = std::fs::read(zoo_dir(root.path()).join(format!("{BLAZE}.zip"))).unwrap();
    let port = broken_hub(new_info, archive, how);
    let broken = CloudClient::new(&parse_cloud_url(&format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}")).unwrap(), TOKEN);
    // The cache key is host:port: the broken hub's directory gets the cached copy.
    let broken_dir = cache.zoo_dir(broken.zoo()).unwrap();
    std::fs::rename(cache.zoo_dir(good.zoo()).unwrap(), &broken_dir).unwrap();

    let t = Instant::now();
    let e = cache.ensure(&broken, BLAZE, Some(&new_sum), &mut |_, _| {}).unwrap_err();
    let took = t.elapsed();
    eprintln!("{how:?}: {:?} after {took:.1?}: {}", e.code, e.message);
    assert!(took < within, "{how:?}: the error took {took:?}");
    assert!(expect.iter().any(|w| e.message.contains(w)), "{how:?}: unclear error: {}", e.message);
    assert!(e.message.contains(BLAZE), "{how:?}: the error names the model: {}", e.message);
    let old = cache.get_offline(broken.zoo(), BLAZE).unwrap();
    dgzoo::cache::verify_model_dir(&old.dir, BLAZE, Some(&old_sum)).unwrap();
    drop(old);
    assert!(!broken_dir.join(format!("{BLAZE}.dl.lock")).exists(), "{how:?}: a lock file was left");
    let left: Vec<String> = std::fs::read_dir(broken_dir.join(".partial")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|n| n.contains(".dl-resume.")), "{how:?}: left in .partial: {left:?}");
}

#[test]
fn a_hub_that_stalls_mid_body_times_out_clearly() {
    broken_download_keeps_the_old_copy(Broken::Stall, Duration::from_secs(60), &["timed out", "stalled"]);
}

#[test]
fn a_hub_that_trickles_mid_body_times_out_clearly() {
    broken_download_keeps_the_old_copy(Broken::Trickle, Duration::from_secs(45), &["stalled"]);
}

#[test]
fn a_wrong_content_length_is_refused() {
    broken_download_keeps_the_old_copy(Broken::ShortLength, Duration::from_secs(20), &["not a ZIP archive", "invalid model archive", "corrupt"]);
}

#[test]
fn a_corrupt_archive_is_refused() {
    broken_download_keeps_the_old_copy(Broken::Corrupt, Duration::from_secs(20), &["corrupt", "invalid model archive", "SHA-256"]);
}
