//! #13: the hub over S3-compatible object storage, against a real SeaweedFS (one `weed server
//! -s3` for this test binary, tests/support/seaweedfs.rs): the real PySDK lists, loads and
//! predicts (cloud inference) from a hub backed by a bucket; our cache downloads through it and
//! resumes an interrupted download with `Range`; two replicas over one bucket see a model
//! published by a plain S3 PUT, by the other replica's upload and a `tokens.json` change without
//! a restart; a missing bucket and wrong credentials stop the hub at start with the reason;
//! `download-zoo --to s3://` writes a zoo the hub serves; serving a 200+ MB object keeps the
//! hub's memory flat.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
#[path = "../../../tests/support/seaweedfs.rs"]
mod seaweedfs;
use cloud_common::*;
use dgzoo::cache::Cache;
use dgzoo::cloud::CloudClient;
use dgzoo::zoo::address::parse_cloud_url;
use dgzoo_server::hub::s3::S3Zoo;
use dgzoo_server::hub::store::Storage;
use dgzoo_server::hub::{Hub, HubConfig};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A bucket holding what `hub_root(models)` holds on disk (tokens.json, myorg/myzoo/<m>.zip),
/// under the prefix `zoo`; returns its `s3://` URL.
fn bucket_zoo(sw: &seaweedfs::Seaweed, bucket: &str, models: &[&str]) -> String {
    sw.create_bucket(bucket);
    let url = format!("s3://{bucket}/zoo");
    let local = hub_root(models);
    let s3 = S3Zoo::open(&url, Duration::ZERO).unwrap_or_else(|e| panic!("{e}\n{}", sw.log()));
    s3.put_file(&["tokens.json"], &local.path().join("tokens.json")).unwrap();
    for m in models {
        s3.put_file(&[ORG, ZOONAME, &format!("{m}.zip")], &zoo_dir(local.path()).join(format!("{m}.zip"))).unwrap();
    }
    url
}

fn s3_hub(url: &str, ttl: Duration, rate: Option<u64>) -> Hub {
    let mut cfg = HubConfig::new(Path::new("/nonexistent-unused"));
    cfg.s3 = Some(url.to_string());
    cfg.listing_ttl = ttl;
    cfg.port = 0;
    cfg.rate_limit = rate;
    Hub::start(&cfg).unwrap_or_else(|e| panic!("hub over {url}: {}", e.message))
}

fn get_json(hub: &Hub, path: &str, token: &str) -> (u16, Value) {
    let r = ureq::get(&format!("http://{}{path}", hub.addr())).set("token", token).call();
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    (r.status(), serde_json::from_str(&r.into_string().unwrap()).unwrap())
}

fn model_names(hub: &Hub, token: &str) -> Vec<String> {
    let (st, v) = get_json(hub, &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}?short=true"), token);
    assert_eq!(st, 200, "{v}");
    v.as_object().unwrap().keys().cloned().collect()
}

/// Poll `cond` for up to `limit`; returns how long it took.
fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}: not seen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

const PYSDK_CLOUD: &str = r#"
import sys, json, faulthandler, degirum as dg
faulthandler.dump_traceback_later(240, exit=True)
url, tok, model, image = sys.argv[1:5]
zoo = dg.connect(dg.CLOUD, url, tok)
out = {"list": zoo.list_models()}
m = zoo.load_model(model, input_image_format="RAW")
out["results"] = m.predict(image).results
print("JSON" + json.dumps(out), flush=True)
import os
os._exit(0)
"#;

#[test]
fn pysdk_lists_loads_and_predicts_through_a_hub_on_seaweedfs() {
    let Some(peer) = peer() else { return };
    let Some(sw) = seaweedfs::shared() else { return };
    let url = bucket_zoo(sw, "pysdk", &[EFF_F, YOLO]);
    let hub = s3_hub(&url, Duration::from_secs(2), None);
    let home = tempfile::tempdir().unwrap();
    let img = format!("{ZOO}/images/cat_224.jpg");
    let (ok, out, err) = run_pysdk(&peer, home.path(), PYSDK_CLOUD, &[&hub_url(&hub), TOKEN, EFF_F, &img]);
    assert!(ok, "PySDK failed:\n{out}\n{err}");
    let line = out.lines().find_map(|l| l.strip_prefix("JSON")).unwrap_or_else(|| panic!("no result in {out}\n{err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let mut want = vec![EFF_F, YOLO];
    want.sort();
    assert_eq!(v["list"], serde_json::json!(want));
    assert_close(&v["results"], &golden(EFF_F, "cat_224.jpg"), 1e-4, "PySDK cloud inference from a SeaweedFS zoo");
}

fn fetch_cmd(url: &str, cache_dir: &Path, model: &str) -> Command {
    let mut c = Command::new(dgzoo_bin());
    c.args(["cache", "fetch", "--url", url, "--token", TOKEN, model]).env("DGZOO_CACHE_DIR", cache_dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn resume_bytes(zoo_cache: &Path, model: &str) -> u64 {
    std::fs::metadata(zoo_cache.join(format!(".partial/{model}.dl-resume.zip"))).map(|m| m.len()).unwrap_or(0)
}

/// Our client's cache downloads from the S3-backed hub; a download killed half-way resumes
/// with `Range`/`If-Range` on the object's ETag (the first progress report is past the kept
/// bytes) and the installed model verifies.
#[test]
fn cache_download_through_an_s3_hub_resumes_after_an_interruption() {
    let Some(sw) = seaweedfs::shared() else { return };
    let url = bucket_zoo(sw, "cache", &[YOLO]);
    let hub = s3_hub(&url, Duration::from_secs(2), Some(3 << 20));
    let zurl = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_cfg(cdir.path()));
    let zoo_cache = cache.zoo_dir(&parse_cloud_url(&zurl).unwrap()).unwrap();
    let mut child = ChildGuard(fetch_cmd(&zurl, cdir.path(), YOLO).spawn().unwrap());
    let t = Instant::now();
    while resume_bytes(&zoo_cache, YOLO) < 1 << 20 {
        assert!(t.elapsed() < Duration::from_secs(30), "download did not start");
        assert!(child.0.try_wait().unwrap().is_none(), "fetch ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let kept = resume_bytes(&zoo_cache, YOLO);
    let client = CloudClient::new(&parse_cloud_url(&zurl).unwrap(), TOKEN);
    let mut first = None;
    let held = cache
        .fetch(&client, YOLO, &mut |got, total| {
            first.get_or_insert((got, total));
        })
        .unwrap_or_else(|e| panic!("resumed fetch: {}", e.message));
    assert!(held.downloaded);
    let (got, total) = first.unwrap();
    assert!(kept > 0 && kept < total, "kept {kept} of {total}");
    assert!(got >= kept, "resumed at {got}, {kept} bytes were kept (a restart from 0 reports less)");
    for (e, r) in cache.verify() {
        assert!(r.is_ok(), "{}: {:?}", e.model, r);
    }
}

/// Two replicas over one bucket: a model PUT straight into the bucket, a model uploaded
/// through one replica's admin route and a new token in `tokens.json` all show on both within
/// the listing TTL, without a restart; a deleted model goes from both.
#[test]
fn two_replicas_see_changes_to_the_bucket_without_restart() {
    let Some(sw) = seaweedfs::shared() else { return };
    let url = bucket_zoo(sw, "replicas", &[EFF_F]);
    let ttl = Duration::from_millis(500);
    let (a, b) = (s3_hub(&url, ttl, None), s3_hub(&url, ttl, None));
    assert_eq!(model_names(&a, TOKEN), vec![EFF_F]);
    assert_eq!(model_names(&b, TOKEN), vec![EFF_F]);
    // A plain S3 PUT (no hub involved).
    let local = hub_root(&[BLAZE, YOLO]);
    let bucket = S3Zoo::open(&url, Duration::ZERO).unwrap();
    bucket.put_file(&[ORG, ZOONAME, &format!("{BLAZE}.zip")], &zoo_dir(local.path()).join(format!("{BLAZE}.zip"))).unwrap();
    for h in [&a, &b] {
        let took = eventually(Duration::from_secs(5), "PUT model on a replica", || model_names(h, TOKEN).contains(&BLAZE.to_string()));
        assert!(took <= ttl + Duration::from_secs(2), "took {took:?}");
    }
    // A new admin token written into the bucket's tokens.json: both accept it.
    let admin = "dg_admin_token_for_s3";
    let tokens = format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}, "{admin}": {{"is_admin": true, "zoos": []}}}}"#);
    bucket.write_file("tokens.json", tokens.as_bytes()).unwrap();
    for h in [&a, &b] {
        eventually(Duration::from_secs(5), "new token on a replica", || get_json(h, "/zoo/v1/public/tokens", admin).0 == 200);
    }
    // An upload through replica A lands in the bucket and shows on replica B.
    let archive = std::fs::read(zoo_dir(local.path()).join(format!("{YOLO}.zip"))).unwrap();
    let r = ureq::post(&format!("http://{}/zoo/v1/public/models/{ORG}/{ZOONAME}", a.addr()))
        .set("token", admin)
        .set("Content-Type", "multipart/form-data; boundary=dgzooBOUNDARY")
        .send_bytes(&multipart(&format!("{YOLO}.zip"), &archive))
        .unwrap_or_else(|e| panic!("upload: {e}"));
    assert_eq!(r.status(), 201);
    assert!(model_names(&a, TOKEN).contains(&YOLO.to_string()), "the uploading replica sees its upload at once");
    assert!(bucket.archive_version(ORG, ZOONAME, YOLO).is_some_and(|v| v.len == archive.len() as u64), "the upload is in the bucket");
    eventually(Duration::from_secs(5), "uploaded model on the other replica", || model_names(&b, TOKEN).contains(&YOLO.to_string()));
    // The same download (bytes and ETag) from both replicas.
    let dl = |h: &Hub| {
        let r = ureq::get(&format!("http://{}/zoo/v1/public/models/{ORG}/{ZOONAME}/{YOLO}", h.addr())).set("token", TOKEN).call().unwrap();
        let tag = r.header("ETag").unwrap().to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        (tag, body)
    };
    let (ta, ba) = dl(&a);
    let (tb, bb) = dl(&b);
    assert_eq!(ta, tb, "one ETag for one object");
    assert!(ba == archive && bb == archive, "both replicas serve the uploaded bytes");
    // A delete through the bucket goes from both.
    let r = ureq::delete(&format!("http://{}/zoo/v1/public/models/{ORG}/{ZOONAME}/{BLAZE}", b.addr())).set("token", admin).call().unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(5), "deleted model gone from the other replica", || !model_names(&a, TOKEN).contains(&BLAZE.to_string()));
}

fn hub_start_error(sw: &seaweedfs::Seaweed, zoo: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new(dgzoo_bin());
    c.args(["hub", "--port", "0", "--zoo", zoo]);
    for (k, v) in sw.env() {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success(), "the hub started over {zoo}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_bucket_or_wrong_credentials_stop_the_hub_at_start() {
    let Some(sw) = seaweedfs::shared() else { return };
    bucket_zoo(sw, "creds", &[]);
    let err = hub_start_error(sw, "s3://no-such-bucket/zoo", &[]);
    assert!(err.contains("bucket 'no-such-bucket' does not exist"), "{err}");
    let err = hub_start_error(sw, "s3://creds/zoo", &[("AWS_SECRET_ACCESS_KEY", "wrong-secret")]);
    assert!(err.contains("access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{err}");
    let err = hub_start_error(sw, "s3://creds/zoo", &[("AWS_ACCESS_KEY_ID", "nobody")]);
    assert!(err.contains("access denied"), "{err}");
    let err = hub_start_error(sw, "s3:///zoo", &[]);
    assert!(err.contains("has no bucket name"), "{err}");
}

/// `dgzoo download-zoo --to s3://...` copies a cloud zoo (our disk hub here) into the bucket in
/// the hub's layout; a hub over that bucket lists the same models with the same checksums.
#[test]
fn download_zoo_writes_a_zoo_into_a_bucket() {
    let Some(sw) = seaweedfs::shared() else { return };
    sw.create_bucket("dlzoo");
    let root = hub_root(&[EFF_F, BLAZE]);
    let src = start_hub(root.path());
    let out =
        Command::new(dgzoo_bin()).args(["download-zoo", "--url", &hub_url(&src), "--token", TOKEN, "--to", "s3://dlzoo/copy"]).envs(sw.env()).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bucket = S3Zoo::open("s3://dlzoo/copy", Duration::ZERO).unwrap();
    bucket.write_file("tokens.json", &std::fs::read(root.path().join("tokens.json")).unwrap()).unwrap();
    let hub = s3_hub("s3://dlzoo/copy", Duration::from_secs(2), None);
    let (st, got) = get_json(&hub, &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}"), TOKEN);
    assert_eq!(st, 200);
    let (_, want) = get_json(&src, &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}"), TOKEN);
    let sums = |v: &Value| v.as_object().unwrap().iter().map(|(k, p)| (k.clone(), p["Checksum"].clone())).collect::<Vec<_>>();
    assert_eq!(sums(&got), sums(&want));
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap()
}

/// A model archive of about `mb` MB (a stored, incompressible member) with a valid config.
fn big_archive(path: &Path, model: &str, mb: usize) {
    use std::io::Write;
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    z.start_file(format!("{model}/{model}.json"), stored).unwrap();
    z.write_all(br#"{"ConfigVersion": 10, "Checksum": "big-1", "DEVICE": [{"DeviceType": "CPU", "RuntimeAgent": "ONNX"}], "MODEL_PARAMETERS": [{"ModelPath": "big.onnx"}]}"#).unwrap();
    z.start_file(format!("{model}/big.onnx"), stored).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for _ in 0..mb {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        z.write_all(&block).unwrap();
    }
    z.finish().unwrap();
}

/// A 210 MB archive served from the bucket by a `dgzoo hub` process: its peak resident memory
/// grows by far less than the archive while two clients download it whole.
#[test]
fn serving_a_large_object_from_s3_keeps_memory_flat() {
    let Some(sw) = seaweedfs::shared() else { return };
    let url = bucket_zoo(sw, "big", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("big.zip");
    big_archive(&zip, "big", 210);
    let size = std::fs::metadata(&zip).unwrap().len();
    S3Zoo::open(&url, Duration::ZERO).unwrap().put_file(&[ORG, ZOONAME, "big.zip"], &zip).unwrap();
    std::fs::remove_file(&zip).unwrap();
    let mut child =
        Command::new(dgzoo_bin()).args(["hub", "--port", "0", "--zoo", &url]).envs(sw.env()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let pid = child.id();
    let _guard = ChildGuard(child);
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    let dl_url = format!("http://{addr}/zoo/v1/public/models/{ORG}/{ZOONAME}/big");
    // Warm up (the listing, the archive's directory read, the S3 client's pool), then measure.
    let r = ureq::get(&format!("http://{addr}/zoo/v1/public/models/{ORG}/{ZOONAME}/big/info")).set("token", TOKEN).call().unwrap();
    assert_eq!(r.status(), 200);
    let before = vm_hwm_kib(pid);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let u = dl_url.clone();
            std::thread::spawn(move || {
                let r = ureq::get(&u).set("token", TOKEN).call().unwrap();
                std::io::copy(&mut r.into_reader(), &mut std::io::sink()).unwrap()
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), size);
    }
    let after = vm_hwm_kib(pid);
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "hub over S3: peak RSS {:.1} MiB before, {:.1} MiB after 2 x {} MB downloads (+{grown_mib:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        size >> 20
    );
    assert!(grown_mib < 48.0, "peak RSS grew by {grown_mib:.1} MiB serving a {} MB object", size >> 20);
}
