//! The cloud model cache against our hub: checksum change → re-download, LRU eviction that
//! spares models in use, offline mode without any request, a download killed with SIGKILL then
//! retried, two processes racing for one model, malicious archives, the `cache` CLI.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::cache::archive::{extract_model, Limits};
use dgzoo::cache::{Cache, CachedModel};
use dgzoo::cloud::CloudClient;
use dgzoo::zoo::address::parse_cloud_url;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::{ConnectOptions, Zoo};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn client(hub: &dgzoo_server::hub::Hub) -> CloudClient {
    CloudClient::new(&parse_cloud_url(&hub_url(hub)).unwrap(), TOKEN)
}

/// What the accessor does: the zoo's checksum from `.../info`, then `ensure`.
fn fetch(cache: &Cache, c: &CloudClient, m: &str) -> dgzoo::Result<CachedModel> {
    let info = c.model_info(m)?;
    let sum = info["model_params"]["Checksum"].as_str().unwrap().to_string();
    cache.ensure(c, m, Some(&sum), &mut |_, _| {})
}

#[test]
fn checksum_change_triggers_redownload() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let c = client(&hub);
    assert!(fetch(&cache, &c, BLAZE).unwrap().downloaded);
    let again = fetch(&cache, &c, BLAZE).unwrap();
    assert!(!again.downloaded, "same checksum: cached copy used");
    drop(again);

    let new_bin = publish_new_version(root.path(), BLAZE, 16);
    let held = fetch(&cache, &c, BLAZE).unwrap();
    assert!(held.downloaded, "checksum changed: downloaded again");
    assert_eq!(std::fs::read(held.dir.join(format!("{BLAZE}.tflite"))).unwrap(), new_bin);
    drop(held);

    // Without a known checksum the cached copy is checked with the `check` endpoint.
    assert!(!cache.ensure(&c, BLAZE, None, &mut |_, _| {}).unwrap().downloaded);
    publish_new_version(root.path(), BLAZE, 32);
    assert!(cache.ensure(&c, BLAZE, None, &mut |_, _| {}).unwrap().downloaded);

    // Through the zoo API: the model loads and runs from the new copy.
    let zoo = connect(&hub_url(&hub), TOKEN, &cache_cfg(cdir.path())).unwrap();
    let m = zoo.load_model(BLAZE, &Value::Null).unwrap();
    assert!(m.state().params.str("ModelPath", 0).starts_with(cdir.path().to_str().unwrap()));
    dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&image("girls_256.jpg"))]).unwrap();
}

#[test]
fn lru_eviction_spares_models_in_use() {
    let root = hub_root(&[BLAZE, EFF_Q, YOLO]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let c = client(&hub);
    let cache = Cache::new(cache_cfg(cdir.path()));
    let mut sizes = std::collections::HashMap::new();
    for m in [BLAZE, EFF_Q, YOLO] {
        let h = fetch(&cache, &c, m).unwrap();
        sizes.insert(m, cache.entries().into_iter().find(|e| e.model == m).unwrap().size);
        drop(h);
        std::thread::sleep(Duration::from_millis(30));
    }
    drop(fetch(&cache, &c, BLAZE).unwrap()); // BLAZE is now the most recently used
    let order: Vec<String> = cache.entries().into_iter().map(|e| e.model).collect();
    assert_eq!(order, vec![EFF_Q, YOLO, BLAZE]);

    let evicted: Vec<String> = cache.evict(Some(sizes[BLAZE] + sizes[YOLO])).into_iter().map(|e| e.model).collect();
    assert_eq!(evicted, vec![EFF_Q]);

    // A model in use is never evicted, even with a zero limit.
    let held = fetch(&cache, &c, YOLO).unwrap();
    let evicted: Vec<String> = cache.evict(Some(0)).into_iter().map(|e| e.model).collect();
    assert_eq!(evicted, vec![BLAZE]);
    assert!(held.config.is_file());
    drop(held);

    // The cap applies after each download: the least recently used model goes.
    let cdir2 = tempfile::tempdir().unwrap();
    let mut cfg = cache_cfg(cdir2.path());
    cfg.limit = sizes[YOLO] + sizes[BLAZE] + 1000;
    let cache2 = Cache::new(cfg);
    for m in [EFF_Q, BLAZE, YOLO] {
        drop(fetch(&cache2, &c, m).unwrap());
        std::thread::sleep(Duration::from_millis(30));
    }
    let left: Vec<String> = cache2.entries().into_iter().map(|e| e.model).collect();
    assert_eq!(left, vec![BLAZE, YOLO]);
}

/// Round trips (#13): connect makes one request (the zoo check; the model list is fetched only
/// when listed), a cold load two (info + archive), a cached load one (the checksum check), and a
/// fresh `dgzoo predict --model` process with the model cached exactly one.
#[test]
fn cached_load_makes_one_request() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cdir.path());
    let n0 = hub.request_count();
    let zoo = connect(&hub_url(&hub), TOKEN, &cfg).unwrap();
    assert_eq!(hub.request_count() - n0, 1, "connect: the zoo check only");
    let n1 = hub.request_count();
    let want = predict(&zoo, EFF_F, "cat_224.jpg");
    assert_eq!(hub.request_count() - n1, 2, "cold load: info + download");
    let n2 = hub.request_count();
    assert_eq!(predict(&zoo, EFF_F, "cat_224.jpg"), want);
    assert_eq!(hub.request_count() - n2, 1, "cached load: the checksum check only");
    let n3 = hub.request_count();
    assert_eq!(zoo.list_names(&Filters::default()).unwrap(), vec![EFF_F.to_string()]);
    assert_eq!(zoo.list_names(&Filters::default()).unwrap(), vec![EFF_F.to_string()]);
    assert_eq!(hub.request_count() - n3, 1, "the list is fetched once, when first needed");

    // A fresh CLI process naming its model: one request in all on a cache hit.
    let n4 = hub.request_count();
    let out = Command::new(dgzoo_bin())
        .args(["predict", "--zoo", &hub_url(&hub), "--token", TOKEN, "--model", EFF_F, &format!("{ZOO}/images/cat_224.jpg")])
        .env("DGZOO_CACHE_DIR", cdir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hub.request_count() - n4, 1, "fresh process, cached model: one request");
    // ... and a bad token is still refused by that one request.
    let out = Command::new(dgzoo_bin())
        .args(["predict", "--zoo", &hub_url(&hub), "--token", "wrong", "--model", EFF_F, &format!("{ZOO}/images/cat_224.jpg")])
        .env("DGZOO_CACHE_DIR", cdir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to connect to server"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn offline_mode_makes_no_request() {
    let root = hub_root(&[BLAZE, EFF_F]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cdir.path());
    let online = connect(&hub_url(&hub), TOKEN, &cfg).unwrap();
    let want = predict(&online, EFF_F, "cat_224.jpg");

    let before = hub.request_count();
    let opts = ConnectOptions { cache: Some(cfg.clone()), offline: Some(true), ..Default::default() };
    let zoo = Zoo::connect_with("@local", &hub_url(&hub), TOKEN, &opts).unwrap();
    assert_eq!(zoo.list_names(&Filters::default()).unwrap(), vec![EFF_F.to_string()], "offline list = cached models");
    assert_eq!(zoo.model_info(EFF_F).unwrap()["Checksum"], online.model_info(EFF_F).unwrap()["Checksum"]);
    let before_info = hub.request_count();
    assert_eq!(predict(&zoo, EFF_F, "cat_224.jpg"), want);
    let e = zoo.load_model(BLAZE, &Value::Null).unwrap_err();
    assert_eq!(e.code, dgzoo::Code::NotFound);
    assert!(e.message.contains(&format!("Cloud model '{ORG}/{ZOONAME}/{BLAZE}' is not in the model cache")) && e.message.contains("offline"), "{}", e.message);
    // The only requests in this block were the online model_info used for comparison.
    assert_eq!(before_info - before, 1);
    assert_eq!(hub.request_count(), before_info, "offline: zero requests");

    // DGZOO_OFFLINE=1 for the CLI: served from the cache, no request.
    let n = hub.request_count();
    let out = Command::new(dgzoo_bin())
        .args(["cache", "fetch", "--url", &hub_url(&hub), "--token", TOKEN, EFF_F])
        .env("DGZOO_CACHE_DIR", cdir.path())
        .env("DGZOO_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hub.request_count(), n);
}

fn fetch_cmd(url: &str, cache_dir: &Path, model: &str) -> Command {
    let mut c = Command::new(dgzoo_bin());
    c.args(["cache", "fetch", "--url", url, "--token", TOKEN, model]).env("DGZOO_CACHE_DIR", cache_dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn partial_bytes(zoo_cache: &Path) -> u64 {
    std::fs::read_dir(zoo_cache.join(".partial"))
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn slow_hub(root: &Path, rate: u64) -> dgzoo_server::hub::Hub {
    let mut cfg = dgzoo_server::hub::HubConfig::new(root);
    cfg.port = 0;
    cfg.rate_limit = Some(rate);
    dgzoo_server::hub::Hub::start(&cfg).unwrap()
}

#[test]
fn killed_download_then_retry() {
    let root = hub_root(&[YOLO]);
    let hub = slow_hub(root.path(), 3 << 20);
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let zoo_cache = Cache::new(cache_cfg(cdir.path())).zoo_dir(&parse_cloud_url(&url).unwrap()).unwrap();
    let kill_mid_download = || {
        let mut child = ChildGuard(fetch_cmd(&url, cdir.path(), YOLO).spawn().unwrap());
        let t = Instant::now();
        while partial_bytes(&zoo_cache) < 1 << 20 {
            assert!(t.elapsed() < Duration::from_secs(30), "download did not start");
            assert!(child.0.try_wait().unwrap().is_none(), "child ended before it was killed");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        assert!(!zoo_cache.join(YOLO).exists(), "no half model installed");
        assert!(partial_bytes(&zoo_cache) > 0, "the killed download left its partial file");
    };
    kill_mid_download();
    // Stale partials (their download lock is free) go with a prune, except the archive bytes
    // kept for resuming (`<m>.dl-resume.zip`, kept a day).
    let kept: u64 = ["zip", "json"].iter().map(|x| std::fs::metadata(zoo_cache.join(format!(".partial/{YOLO}.dl-resume.{x}"))).unwrap().len()).sum();
    std::fs::create_dir(zoo_cache.join(format!(".partial/{YOLO}.dl-1-2-3.d"))).unwrap();
    std::fs::write(zoo_cache.join(format!(".partial/{YOLO}.dl-1-2-3.d/x")), b"stale").unwrap();
    Cache::new(cache_cfg(cdir.path())).clear_stale_partials();
    assert_eq!(partial_bytes(&zoo_cache), kept);
    assert!(!zoo_cache.join(format!(".partial/{YOLO}.dl-1-2-3.d")).exists());
    kill_mid_download();

    let out = fetch_cmd(&url, cdir.path(), YOLO).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["downloaded"], true);
    assert_eq!(partial_bytes(&zoo_cache), 0, "leftovers cleaned");
    assert!(std::fs::read_dir(zoo_cache.join(".partial")).unwrap().next().is_none(), "nothing left in .partial");
    assert!(!zoo_cache.join(format!("{YOLO}.dl.lock")).exists(), "the download lock file goes with the download");
    for (e, r) in Cache::new(cache_cfg(cdir.path())).verify() {
        assert!(r.is_ok(), "{}: {:?}", e.model, r);
    }
}

/// Start `dgzoo cache fetch` of `model` and SIGKILL it once `at_least` bytes are on disk;
/// returns the bytes kept for resuming.
fn kill_fetch_after(url: &str, cdir: &Path, zoo_cache: &Path, model: &str, at_least: u64) -> u64 {
    let mut child = ChildGuard(fetch_cmd(url, cdir, model).spawn().unwrap());
    let t = Instant::now();
    while partial_bytes(zoo_cache) < at_least {
        assert!(t.elapsed() < Duration::from_secs(30), "download did not start");
        assert!(child.0.try_wait().unwrap().is_none(), "child ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    std::fs::metadata(zoo_cache.join(format!(".partial/{model}.dl-resume.zip"))).unwrap().len()
}

/// #13: an interrupted download continues where it stopped (`Range` + `If-Range` with the hub's
/// ETag): the next fetch's first progress report is past the kept bytes, and the hub sends only
/// the rest. The whole archive is verified before it is installed.
#[test]
fn interrupted_download_resumes_where_it_stopped() {
    let root = hub_root(&[YOLO]);
    let hub = slow_hub(root.path(), 3 << 20);
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let zoo_cache = cache.zoo_dir(&parse_cloud_url(&url).unwrap()).unwrap();
    let kept = kill_fetch_after(&url, cdir.path(), &zoo_cache, YOLO, 1 << 20);
    let size = std::fs::metadata(zoo_dir(root.path()).join(format!("{YOLO}.zip"))).unwrap().len();
    assert!(kept >= 1 << 20 && kept < size, "kept {kept} of {size}");
    let mut first = None;
    let held = cache.fetch(&client(&hub), YOLO, &mut |got, total| {
        first.get_or_insert((got, total));
    });
    let held = held.unwrap();
    assert!(held.downloaded);
    let (got, total) = first.unwrap();
    assert_eq!(total, size);
    assert!(got > kept, "resumed: first report {got} bytes, {kept} were kept");
    assert!(dgzoo::cache::verify_model_dir(&held.dir, YOLO, None).is_ok());
    assert!(std::fs::read_dir(zoo_cache.join(".partial")).unwrap().next().is_none(), "nothing left in .partial");
}

/// #13: when the model changed between the interruption and the retry, the kept bytes are
/// dropped and the new copy is downloaded whole: by checksum (the zoo announces another one)
/// and by ETag alone (same content, the archive file rewritten: `If-Range` no longer matches).
#[test]
fn resume_restarts_when_the_model_changed() {
    let root = hub_root(&[YOLO]);
    let hub = slow_hub(root.path(), 3 << 20);
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let zoo_cache = cache.zoo_dir(&parse_cloud_url(&url).unwrap()).unwrap();

    kill_fetch_after(&url, cdir.path(), &zoo_cache, YOLO, 1 << 20);
    let bytes = publish_new_version(root.path(), YOLO, 1000);
    let mut first = None;
    let held = cache.fetch(&client(&hub), YOLO, &mut |got, _| {
        first.get_or_insert(got);
    });
    let held = held.unwrap();
    assert!(first.unwrap() <= 256 * 1024, "started from zero");
    assert_eq!(std::fs::read(held.dir.join(format!("{YOLO}.tflite"))).unwrap(), bytes);
    drop(held);

    // Same checksum, new ETag: the archive rewritten with other bytes (a different zip
    // timestamp) but the same model.
    assert!(cache.remove_model(&parse_cloud_url(&url).unwrap(), YOLO).unwrap());
    kill_fetch_after(&url, cdir.path(), &zoo_cache, YOLO, 1 << 20);
    let zip = zoo_dir(root.path()).join(format!("{YOLO}.zip"));
    let mut z = std::fs::read(&zip).unwrap();
    // Flip the first local header's modification time (bytes 10..12): same entries and checksum,
    // a different archive.
    z[10] ^= 0x01;
    std::fs::write(&zip, &z).unwrap();
    let mut first = None;
    let held = cache.fetch(&client(&hub), YOLO, &mut |got, _| {
        first.get_or_insert(got);
    });
    let held = held.unwrap();
    assert!(first.unwrap() <= 256 * 1024, "a new ETag: started from zero");
    assert_eq!(std::fs::read(held.dir.join(format!("{YOLO}.tflite"))).unwrap(), bytes);
}

#[test]
fn two_processes_race_for_one_model() {
    let root = hub_root(&[EFF_Q]);
    let hub = slow_hub(root.path(), 8 << 20);
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let a = fetch_cmd(&url, cdir.path(), EFF_Q).spawn().unwrap();
    let b = fetch_cmd(&url, cdir.path(), EFF_Q).spawn().unwrap();
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut downloaded = 0;
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        downloaded += v["downloaded"].as_bool().unwrap() as usize;
    }
    assert_eq!(downloaded, 1, "downloaded once, the other process waited and used it");
    let entries = Cache::new(cache_cfg(cdir.path())).entries();
    assert_eq!(entries.len(), 1);
    assert!(dgzoo::cache::verify_model_dir(&entries[0].dir, EFF_Q, None).is_ok());
}

/// A hub archive `<name>.zip` with a valid `<name>/<name>.json` plus `extra` entries.
fn evil_archive(root: &Path, name: &str, extra: &dyn Fn(&mut zip::ZipWriter<std::fs::File>)) {
    let f = std::fs::File::create(zoo_dir(root).join(format!("{name}.zip"))).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let o = zip::write::SimpleFileOptions::default();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap()).unwrap();
    cfg["MODEL_PARAMETERS"][0]["ModelPath"] = Value::String("model.tflite".into());
    z.start_file(format!("{name}/{name}.json"), o).unwrap();
    z.write_all(cfg.to_string().as_bytes()).unwrap();
    extra(&mut z);
    z.finish().unwrap();
}

fn add(z: &mut zip::ZipWriter<std::fs::File>, name: &str, data: &[u8]) {
    z.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
    z.write_all(data).unwrap();
}

#[test]
fn malicious_archives_are_rejected() {
    let root = hub_root(&[]);
    let outside = root.path().parent().unwrap().join(format!("dgzoo_evil_{}.txt", std::process::id()));
    let abs = format!("/tmp/dgzoo_abs_evil_{}.txt", std::process::id());
    type Extra = Box<dyn Fn(&mut zip::ZipWriter<std::fs::File>)>;
    let cases: Vec<(&str, Extra)> = vec![
        ("dotdot", Box::new(move |z| add(z, &format!("../dgzoo_evil_{}.txt", std::process::id()), b"x"))),
        ("nested_dotdot", Box::new(|z| add(z, "nested_dotdot/../../../evil.txt", b"x"))),
        ("absolute", Box::new(move |z| add(z, &abs.clone(), b"x"))),
        ("drive", Box::new(|z| add(z, "C:/evil.txt", b"x"))),
        ("backslash", Box::new(|z| add(z, "backslash\\..\\..\\evil.txt", b"x"))),
        ("dots_trick", Box::new(|z| add(z, "dots_trick/..././evil.txt", b"x"))),
        ("outside_dir", Box::new(|z| add(z, "other/evil.txt", b"x"))),
        ("symlink", Box::new(|z| z.add_symlink("symlink/model.tflite", "/etc/passwd", zip::write::SimpleFileOptions::default()).unwrap())),
        (
            "many_entries",
            Box::new(|z| {
                for i in 0..10_050 {
                    add(z, &format!("many_entries/f{i}"), b"");
                }
            }),
        ),
    ];
    for (name, extra) in &cases {
        evil_archive(root.path(), name, extra.as_ref());
    }
    // A flat archive (no top-level directory) and a non-ZIP.
    {
        let f = std::fs::File::create(zoo_dir(root.path()).join("flat.zip")).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let cfg = std::fs::read(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap();
        add(&mut z, "flat.json", &cfg);
        z.finish().unwrap();
    }
    let hub = start_hub(root.path());
    let c = client(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let zoo_cache = cache.zoo_dir(c.zoo()).unwrap();
    for name in cases.iter().map(|c| c.0).chain(["flat"]) {
        // The hub does not serve archives with entries outside their model folder; the cache
        // refuses the rest, and each of them on its own (extracted directly below).
        let e = fetch(&cache, &c, name).unwrap_err();
        let unserved = format!("Model {name} is not found in model zoo");
        assert!(e.message.contains("Unsafe or invalid model archive") || e.message.contains(&unserved), "{name}: {}", e.message);
        assert!(!zoo_cache.join(name).exists(), "{name}: installed");
        let out = cdir.path().join(format!("direct_{name}"));
        let e = extract_model(&zoo_dir(root.path()).join(format!("{name}.zip")), name, &out, Limits::default()).unwrap_err();
        assert!(e.message.contains("Unsafe or invalid model archive"), "{name}: {}", e.message);
        assert!(!out.exists(), "{name}: extracted");
    }
    assert_eq!(partial_bytes(&zoo_cache), 0, "temp files removed");
    assert!(std::fs::read_dir(zoo_cache.join(".partial")).unwrap().next().is_none(), "temp dirs removed");
    assert!(!outside.exists() && !Path::new(&format!("/tmp/dgzoo_abs_evil_{}.txt", std::process::id())).exists());
    assert!(!root.path().parent().unwrap().join("evil.txt").exists());
    assert!(cache.entries().is_empty());
}

#[test]
fn zip_bombs_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        add(&mut z, "bomb/bomb.json", b"{}");
        z.start_file("bomb/zeros", o).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            z.write_all(&chunk).unwrap();
        }
        z.finish().unwrap();
    }
    assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20, "a real bomb: small archive");
    let limits = Limits { max_entries: 100, max_total_bytes: 16 << 20 };
    let e = extract_model(&p, "bomb", &dir.path().join("out"), limits).unwrap_err();
    assert!(e.message.contains("exceeds the limit"), "{}", e.message);
    // Under a larger limit the same archive extracts.
    let n = extract_model(&p, "bomb", &dir.path().join("out2"), Limits { max_entries: 100, max_total_bytes: 128 << 20 }).unwrap();
    assert_eq!(n, (64 << 20) + 2);
}

/// A server that answers `.../info` properly but sends only half of the archive it announces.
fn lying_server(info: Value, archive: Vec<u8>) -> u16 {
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut s = s;
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            if path.ends_with("/info") {
                let b = info.to_string();
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len());
            } else {
                let _ =
                    write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", archive.len());
                let _ = s.write_all(&archive[..archive.len() / 2]);
            }
        }
    });
    port
}

#[test]
fn truncated_and_corrupt_downloads_keep_the_old_copy() {
    let root = hub_root(&[BLAZE]);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    // The old copy, from a proper hub... (the cache key is host:port, so the lying server
    // gets its copy by moving the directory over.)
    let hub = start_hub(root.path());
    let c = client(&hub);
    let info = c.model_info(BLAZE).unwrap();
    drop(fetch(&cache, &c, BLAZE).unwrap());
    let good_dir = cache.zoo_dir(c.zoo()).unwrap();

    publish_new_version(root.path(), BLAZE, 16);
    let new_info = c.model_info(BLAZE).unwrap();
    let archive = std::fs::read(zoo_dir(root.path()).join(format!("{BLAZE}.zip"))).unwrap();
    let port = lying_server(new_info, archive);
    let liar = CloudClient::new(&parse_cloud_url(&format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}")).unwrap(), TOKEN);
    let liar_dir = cache.zoo_dir(liar.zoo()).unwrap();
    std::fs::rename(&good_dir, &liar_dir).unwrap();

    let e = fetch(&cache, &liar, BLAZE).unwrap_err();
    assert_eq!(e.code, dgzoo::Code::Network);
    assert!(e.message.contains("truncated") || e.message.contains("interrupted"), "{}", e.message);
    // The old copy is still there, intact, with its old checksum; no leftovers.
    let old = cache.get_offline(liar.zoo(), BLAZE).unwrap();
    assert!(dgzoo::cache::verify_model_dir(&old.dir, BLAZE, info["model_params"]["Checksum"].as_str()).is_ok());
    drop(old);
    // What arrived is kept for resuming, nothing else; no lock file is left (#14 item 9).
    let mut left: Vec<String> = std::fs::read_dir(liar_dir.join(".partial")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, vec![format!("{BLAZE}.dl-resume.json"), format!("{BLAZE}.dl-resume.zip")]);
    assert!(!liar_dir.join(format!("{BLAZE}.dl.lock")).exists(), "a failed download leaves no lock file");

    // An archive whose config does not carry the announced checksum is refused too, and
    // leaves nothing behind.
    let e = cache.ensure(&c, BLAZE, Some(&"0".repeat(64)), &mut |_, _| {}).unwrap_err();
    assert!(e.message.contains("the zoo announced"), "{}", e.message);
    assert_eq!(partial_bytes(&good_dir), 0);
    assert!(!good_dir.join(format!("{BLAZE}.dl.lock")).exists() && !good_dir.join(format!("{BLAZE}.lock")).exists());
}

/// #14 item 9: a cloud-model open that fails (a model this machine cannot run, a model the
/// zoo does not have, a corrupt archive) leaves no file that `cache ls` / `prune` would not see;
/// lock files left by older versions are removed by `prune`.
#[test]
fn failed_opens_leave_nothing_behind() {
    let root = hub_root(&[BLAZE]);
    evil_archive(root.path(), "corrupt_model", &|z| add(z, "corrupt_model/../../x", b"evil"));
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cdir.path());
    let zoo = connect(&hub_url(&hub), TOKEN, &cfg).unwrap();
    assert!(zoo.load_model("no_such_model", &Value::Null).is_err());
    assert!(zoo.load_model("corrupt_model", &Value::Null).is_err());
    let cache = Cache::new(cfg.clone());
    let zdir = cache.zoo_dir(&parse_cloud_url(&hub_url(&hub)).unwrap()).unwrap();
    let files = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| e.file_name().into_string().unwrap()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    assert!(files(&zdir).iter().all(|f| f == ".partial"), "{:?}", files(&zdir));
    assert!(files(&zdir.join(".partial")).is_empty(), "{:?}", files(&zdir.join(".partial")));
    assert!(cache.entries().is_empty());

    // Lock files without a model (as older versions left them) go with a prune.
    drop(fetch(&cache, &client(&hub), BLAZE).unwrap());
    std::fs::write(zdir.join("gone.lock"), b"").unwrap();
    std::fs::write(zdir.join("gone.dl.lock"), b"").unwrap();
    cache.prune(None).unwrap();
    assert_eq!(files(&zdir), vec![".partial".to_string(), BLAZE.to_string(), format!("{BLAZE}.lock")]);
}

#[test]
fn cache_cli_ls_verify_rm_prune() {
    let root = hub_root(&[BLAZE, EFF_Q]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(dgzoo_bin()).args(args).env("DGZOO_CACHE_DIR", cdir.path()).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for m in [BLAZE, EFF_Q] {
        let (ok, _, err) = run(&["cache", "fetch", "--url", &hub_url(&hub), "--token", TOKEN, m]);
        assert!(ok, "{err}");
    }
    let (ok, out, _) = run(&["cache", "ls", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    let models: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["model"].as_str().unwrap()).collect();
    assert_eq!(models, vec![BLAZE, EFF_Q]);
    assert!(run(&["cache", "verify"]).0);
    // Corrupt one binary: verify fails and names it.
    let bin = Path::new(v[0]["path"].as_str().unwrap()).join(format!("{BLAZE}.tflite"));
    let mut b = std::fs::read(&bin).unwrap();
    b[100] ^= 0xff;
    std::fs::write(&bin, b).unwrap();
    let (ok, out, _) = run(&["cache", "verify", "--json"]);
    assert!(!ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["ok"], false);
    assert!(v[0]["error"].as_str().unwrap().contains("SHA-256"));
    assert_eq!(v[1]["ok"], true);
    // A missing or broken labels file is reported too.
    let eff_dir = Path::new(v[1]["path"].as_str().unwrap()).to_path_buf();
    let labels = std::fs::read_dir(&eff_dir).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains("labels")).expect("a labels file");
    let saved = std::fs::read(&labels).unwrap();
    for damage in [None, Some(&b"[1, 2"[..])] {
        match damage {
            None => std::fs::remove_file(&labels).unwrap(),
            Some(b) => std::fs::write(&labels, b).unwrap(),
        }
        let (ok, out, _) = run(&["cache", "verify", "--json"]);
        assert!(!ok);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[1]["ok"], false, "{v}");
        assert!(v[1]["error"].as_str().unwrap().contains("labels file"), "{v}");
    }
    std::fs::write(&labels, saved).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&run(&["cache", "verify", "--json"]).1).unwrap()[1]["ok"], true);
    assert!(run(&["cache", "rm", BLAZE]).0);
    let (_, out, _) = run(&["cache", "ls"]);
    assert!(!out.contains(BLAZE) && out.contains(EFF_Q));
    assert!(!run(&["cache", "rm", "nosuchmodel"]).0);
    let (ok, out, _) = run(&["cache", "prune", "--limit", "0", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()[0]["model"], EFF_Q);
    assert!(run(&["cache", "ls"]).1.trim().is_empty());
}

/// When the cloud goes away after `connect`, a cached model still loads (PySDK's native cache
/// does the same); an uncached one fails with the transport error.
#[test]
fn unreachable_cloud_falls_back_to_cached_copy() {
    let root = hub_root(&[BLAZE, EFF_Q]);
    // A separate process, so that killing it closes its connections as a real outage would.
    let (hub, addr) = start_hub_process(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let zoo = connect(&format!("http://{addr}/{ORG}/{ZOONAME}"), TOKEN, &cache_cfg(cdir.path())).unwrap();
    let want = predict(&zoo, EFF_Q, "cat_224.jpg");
    drop(hub);
    assert_eq!(predict(&zoo, EFF_Q, "cat_224.jpg"), want);
    let e = zoo.load_model(BLAZE, &Value::Null).unwrap_err();
    assert!(e.message.starts_with(&format!("Unable to access server {addr}: ")), "{}", e.message);
}

/// Without DGZOO_CACHE_DIR the cache lives under the OS app-data root
/// (`$XDG_DATA_HOME` or `~/.local/share` here), and DGZOO_CACHE_LIMIT caps it.
#[cfg(target_os = "linux")]
#[test]
fn default_location_and_env_limit() {
    let root = hub_root(&[BLAZE, EFF_Q]);
    let hub = start_hub(root.path());
    let home = tempfile::tempdir().unwrap();
    let run = |m: &str, limit: &str| {
        let o = Command::new(dgzoo_bin())
            .args(["cache", "fetch", "--url", &hub_url(&hub), "--token", TOKEN, m])
            .env_remove("DGZOO_CACHE_DIR")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home.path())
            .env("DGZOO_CACHE_LIMIT", limit)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let v = run(EFF_Q, "1000000000");
    let base = home.path().join(".local/share/dgzoo/cloud_zoo_cache");
    assert!(Path::new(v["path"].as_str().unwrap()).starts_with(&base), "{v}");
    // A 1 MB cap: fetching BLAZE (0.2 MB) evicts the 5 MB EFF_Q, not the model just fetched.
    run(BLAZE, "1000000");
    let left: Vec<String> = Cache::new(dgzoo::cache::CacheConfig { root: base, limit: 0, offline: true }).entries().into_iter().map(|e| e.model).collect();
    assert_eq!(left, vec![BLAZE]);
}

/// A new version cannot replace a copy that is in use: a clear error, the old copy intact;
/// once released, the update goes through.
#[test]
fn update_waits_for_models_in_use() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let c = client(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let old = fetch(&cache, &c, BLAZE).unwrap();
    let new_bin = publish_new_version(root.path(), BLAZE, 16);
    let e = fetch(&cache, &c, BLAZE).unwrap_err();
    assert!(e.message.contains("still in use"), "{}", e.message);
    assert!(dgzoo::cache::verify_model_dir(&old.dir, BLAZE, None).is_ok());
    drop(old);
    let h = fetch(&cache, &c, BLAZE).unwrap();
    assert!(h.downloaded);
    assert_eq!(std::fs::read(h.dir.join(format!("{BLAZE}.tflite"))).unwrap(), new_bin);
}

/// Two threads racing without a known checksum (the `check` path): one downloads, the other
/// waits and takes the fresh copy instead of downloading again.
#[test]
fn racing_without_known_checksum_downloads_once() {
    let root = hub_root(&[EFF_Q]);
    let hub = slow_hub(root.path(), 8 << 20);
    let c = client(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let flags: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| cache.ensure(&c, EFF_Q, None, &mut |_, _| {}).unwrap().downloaded)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(flags.iter().filter(|&&d| d).count(), 1, "{flags:?}");
}

/// Bytes this thread has passed to write(2) so far (`/proc/thread-self/io` wchar; the cache
/// downloads and extracts in the calling thread).
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).unwrap().trim().parse().unwrap()
}

/// A hub archive `<name>.zip`: BLAZE's config with `checksum` and a deflated `model.tflite`.
fn archive_with_binary(root: &Path, name: &str, checksum: &str, binary: &[u8]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(zoo_dir(root).join(format!("{name}.zip"))).unwrap());
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap()).unwrap();
    cfg["MODEL_PARAMETERS"][0]["ModelPath"] = Value::String("model.tflite".into());
    cfg["Checksum"] = Value::String(checksum.into());
    z.start_file(format!("{name}/{name}.json"), o).unwrap();
    z.write_all(cfg.to_string().as_bytes()).unwrap();
    z.start_file(format!("{name}/model.tflite"), o).unwrap();
    z.write_all(binary).unwrap();
    z.finish().unwrap();
}

#[test]
fn archives_are_verified_before_extracting_and_unpacking_is_bounded_by_the_cache_cap() {
    let root = hub_root(&[]);
    let zeros = vec![0u8; 64 << 20];
    // A 64 MiB binary that does not match its configuration's SHA-256.
    archive_with_binary(root.path(), "corrupt", &sha256_hex(b"something else"), &zeros);
    // A correct model whose 64 MiB binary is larger than the cache's 16 MiB cap.
    archive_with_binary(root.path(), "huge", &sha256_hex(&zeros), &zeros);
    drop(zeros);
    let hub = start_hub(root.path());
    let c = client(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let w0 = bytes_written();
    let e = fetch(&cache, &c, "corrupt").unwrap_err();
    assert!(e.message.contains("SHA-256 of 'model.tflite' is"), "{}", e.message);
    let w1 = bytes_written();
    let cache = Cache::new(dgzoo::cache::CacheConfig { limit: 16 << 20, ..cache_cfg(cdir.path()) });
    let e = fetch(&cache, &c, "huge").unwrap_err();
    assert!(e.message.contains("uncompressed size exceeds the limit of 16777216 bytes"), "{}", e.message);
    let w2 = bytes_written();
    eprintln!("bytes written: corrupt archive {} KiB, oversized archive {} KiB", (w1 - w0) >> 10, (w2 - w1) >> 10);
    // Only the (small) downloads were written, never the 64 MiB binaries.
    assert!(w1 - w0 < 4 << 20, "the corrupt archive wrote {} bytes", w1 - w0);
    assert!(w2 - w1 < 4 << 20, "the oversized archive wrote {} bytes", w2 - w1);
    assert!(cache.entries().is_empty());
    let zoo_cache = cache.zoo_dir(c.zoo()).unwrap();
    assert_eq!(partial_bytes(&zoo_cache), 0, "temp files removed");
}

#[test]
fn a_damaged_cached_binary_is_downloaded_again() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cdir.path());
    let zoo = connect(&hub_url(&hub), TOKEN, &cfg).unwrap();
    let want = predict(&zoo, BLAZE, "girls_256.jpg");
    // The cached binary is cut in half on disk (a crash, a full disk, a careless hand).
    let cache = Cache::new(cfg.clone());
    let entry = cache.entries().into_iter().find(|e| e.model == BLAZE).unwrap();
    let bin = entry.dir.join(format!("{BLAZE}.tflite"));
    let good = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &good[..good.len() / 2]).unwrap();
    // The next load notices (checksum), downloads it again and runs; the file is whole again.
    let zoo = connect(&hub_url(&hub), TOKEN, &cfg).unwrap();
    assert_eq!(predict(&zoo, BLAZE, "girls_256.jpg"), want);
    assert_eq!(std::fs::read(&bin).unwrap(), good);
    // Offline, a damaged copy is reported, not replaced.
    std::fs::write(&bin, &good[..good.len() / 2]).unwrap();
    let opts = ConnectOptions { cache: Some(cfg.clone()), offline: Some(true), ..Default::default() };
    let offline = Zoo::connect_with("@local", &hub_url(&hub), TOKEN, &opts).unwrap();
    let e = offline.load_model(BLAZE, &Value::Null).unwrap_err();
    assert!(e.message.contains("Checksum mismatch"), "{}", e.message);
}

/// `dgzoo cache fetch` with the cache on an 8 MiB tmpfs of its own (a private mount namespace
/// through `unshare`), so the 5 MiB archive fits but its extracted copy does not.
#[test]
fn a_full_disk_is_reported_as_such() {
    if !Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: unshare -rm is not available");
        return;
    }
    let root = hub_root(&[EFF_Q]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", r#"mount -t tmpfs -o size=8m none "$0" && exec "$@""#])
        .arg(cdir.path())
        .arg(dgzoo_bin())
        .args(["cache", "fetch", "--url", &hub_url(&hub), "--token", TOKEN, EFF_Q])
        .env("DGZOO_CACHE_DIR", cdir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("full disk: {}", err.trim());
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no space left on device") || err.contains("No space left on device"), "{err}");
    assert!(err.contains(cdir.path().to_str().unwrap()), "the error names the path: {err}");
    assert!(!err.contains("Unsafe or invalid model archive"), "a full disk reported as a bad archive: {err}");
}

/// A cache on a read-only file system (a read-only bind mount in a private mount namespace)
/// still serves its models offline.
#[test]
fn a_read_only_cache_is_usable_offline() {
    if !Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: unshare -rm is not available");
        return;
    }
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    let fetch = |extra_env: &[(&str, &str)], ro: bool| {
        let mut c = Command::new("unshare");
        let script = if ro { r#"mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@""# } else { r#"exec "$@""# };
        c.args(["-rm", "sh", "-c", script]).arg(cdir.path()).arg(dgzoo_bin());
        c.args(["cache", "fetch", "--url", &hub_url(&hub), "--token", TOKEN, BLAZE]).env("DGZOO_CACHE_DIR", cdir.path());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = fetch(&[], false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = fetch(&[("DGZOO_OFFLINE", "1")], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "read-only cache, offline: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["downloaded"], false);
    assert!(v["path"].as_str().unwrap().starts_with(cdir.path().to_str().unwrap()));
    // Pruning it is an error naming the path, not an empty success.
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", r#"mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@""#])
        .arg(cdir.path())
        .arg(dgzoo_bin())
        .args(["cache", "prune", "--limit", "0"])
        .env("DGZOO_CACHE_DIR", cdir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "prune of a read-only cache succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("Read-only file system") && err.contains(cdir.path().to_str().unwrap()), "{err}");
}
