//! #13: the hub serves model *folders* (`<org>/<zoo>/<m>/` holding `<m>.json` and its files,
//! copied from the shared zoo) beside `.zip` archives, on local disk and in S3 (a real
//! SeaweedFS): listing, `/info`, `/dictionary`, `/check`, downloads (one top-level `<m>/`,
//! Content-Length, ETag, Range/If-Range) as for archives; the real PySDK 1.5.0 and our client
//! load and predict a folder model through the hub with golden results; a changed file is served
//! (new checksum and ETag) without a restart; a zip wins over a folder of the same name;
//! symlinks out of a folder and hidden files are not served; the zoo root is left untouched.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
#[path = "../../../tests/support/seaweedfs.rs"]
mod seaweedfs;
use cloud_common::*;
use dgzoo_server::hub::s3::S3Zoo;
use dgzoo_server::hub::{Hub, HubConfig};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A response: status, `ETag`, `Content-Length`, `Content-Range`, body.
struct Got {
    status: u16,
    etag: Option<String>,
    len: Option<String>,
    range: Option<String>,
    body: Vec<u8>,
}

fn get(hub: &Hub, path: &str, headers: &[(&str, &str)]) -> Got {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let mut req = agent.get(&format!("http://{}{path}", hub.addr())).set("token", TOKEN);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let h = |n: &str| resp.header(n).map(str::to_string);
    let (status, etag, len, range) = (resp.status(), h("ETag"), h("Content-Length"), h("Content-Range"));
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    Got { status, etag, len, range, body }
}

fn get_json(hub: &Hub, path: &str) -> Value {
    let g = get(hub, path, &[]);
    assert_eq!(g.status, 200, "{path}: {}", String::from_utf8_lossy(&g.body));
    serde_json::from_slice(&g.body).unwrap()
}

fn models_path(rest: &str) -> String {
    format!("/zoo/v1/public/models/{ORG}/{ZOONAME}{rest}")
}

/// The shared zoo's files of `model`: (name, bytes), sorted.
fn source_files(model: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(Path::new(ZOO).join(model))
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

fn read_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

/// The model JSON of `model` with its `Checksum` replaced (a new version of the folder).
fn changed_json(model: &str, checksum: &str) -> Vec<u8> {
    let (_, b) = source_files(model).into_iter().find(|(n, _)| *n == format!("{model}.json")).unwrap();
    let mut v = read_json(&b);
    v["Checksum"] = Value::String(checksum.into());
    serde_json::to_vec_pretty(&v).unwrap()
}

/// A downloaded archive's entries: (name, bytes), in archive order.
fn entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            (e.name().to_string(), b)
        })
        .collect()
}

/// Everything both storages must do for folder model `folder` beside archive model `zip`;
/// `change` writes `folder`'s JSON with a new checksum, `settle` is how long the hub may take
/// to notice (the S3 listing TTL).
fn folder_served_like_an_archive(hub: &Hub, folder: &str, zip: &str, change: &dyn Fn(&[u8]), settle: Duration) {
    let src = source_files(folder);
    let json_src = read_json(&src.iter().find(|(n, _)| *n == format!("{folder}.json")).unwrap().1);
    let sum = json_src["Checksum"].as_str().unwrap().to_string();
    // Listing: both models, the folder's entry its JSON.
    let list = get_json(hub, &models_path(""));
    let mut names: Vec<&String> = list.as_object().unwrap().keys().collect();
    names.sort();
    let mut want = vec![folder, zip];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(list[folder], json_src);
    // info, dictionary, check.
    let info = get_json(hub, &models_path(&format!("/{folder}/info")));
    assert_eq!(info["model_params"], json_src);
    assert_eq!(info["crc"], sum.as_str());
    let labels = json_src.pointer("/POST_PROCESS/0/LabelsPath").and_then(Value::as_str);
    let want_labels = labels.map_or(serde_json::json!({}), |l| read_json(&src.iter().find(|(n, _)| n == l).unwrap().1));
    assert_eq!(info["model_labels"], want_labels);
    assert_eq!(get_json(hub, &models_path(&format!("/{folder}/dictionary"))), want_labels);
    assert_eq!(get_json(hub, &models_path(&format!("/{folder}/check?checksum={sum}"))), serde_json::json!({"status": true}));
    assert_eq!(get_json(hub, &models_path(&format!("/{folder}/check?checksum=x"))), serde_json::json!({"status": false}));
    // The download: one top-level folder with exactly the source files (nothing hidden, no
    // escaping symlink), Content-Length and a strong ETag; the same bytes every time, also
    // to parallel requests.
    let dl = models_path(&format!("/{folder}"));
    let full = get(hub, &dl, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.len, Some(full.body.len().to_string()));
    let etag = full.etag.clone().expect("ETag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let mut want_entries: Vec<(String, Vec<u8>)> = vec![(format!("{folder}/"), Vec::new())];
    want_entries.extend(src.iter().map(|(n, b)| (format!("{folder}/{n}"), b.clone())));
    let got_entries = entries(&full.body);
    let got_names: Vec<&String> = got_entries.iter().map(|(n, _)| n).collect();
    assert_eq!(got_names, want_entries.iter().map(|(n, _)| n).collect::<Vec<_>>());
    assert!(got_entries == want_entries, "entry bytes differ");
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| get(hub, &dl, &[]))).collect();
        for h in hs {
            let g = h.join().unwrap();
            assert_eq!((g.status, g.etag.as_deref()), (200, Some(etag.as_str())));
            assert!(g.body == full.body, "parallel download differs");
        }
    });
    // A resumed download (Range + If-Range on the ETag) gets the rest of the same bytes.
    let part = get(hub, &dl, &[("Range", "bytes=1000-"), ("If-Range", &etag)]);
    assert_eq!(part.status, 206);
    assert_eq!(part.range, Some(format!("bytes 1000-{}/{}", full.body.len() - 1, full.body.len())));
    assert!(part.body == full.body[1000..], "resumed bytes differ");
    // The zip model is still served as it is.
    let z = get(hub, &models_path(&format!("/{zip}")), &[]);
    assert_eq!(z.status, 200);
    assert_eq!(entries(&z.body).iter().filter(|(n, _)| !n.ends_with('/')).count(), source_files(zip).len());

    // A changed file: new checksum and ETag without a restart; a resume against the old
    // ETag gets the whole new archive.
    change(&changed_json(folder, "changed-checksum"));
    let t = Instant::now();
    let fresh = || get_json(hub, &models_path(&format!("/{folder}/check?checksum=changed-checksum"))) == serde_json::json!({"status": true});
    while !fresh() {
        assert!(t.elapsed() < settle + Duration::from_secs(10), "the changed folder was not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_json(hub, &models_path(&format!("/{folder}/check?checksum={sum}"))), serde_json::json!({"status": false}));
    let stale = get(hub, &dl, &[("Range", "bytes=1000-"), ("If-Range", &etag)]);
    assert_eq!(stale.status, 200, "a stale If-Range must get the whole archive");
    assert_ne!(stale.etag.as_deref(), Some(etag.as_str()));
    let json_entry = entries(&stale.body).into_iter().find(|(n, _)| *n == format!("{folder}/{folder}.json")).unwrap();
    assert_eq!(read_json(&json_entry.1)["Checksum"], "changed-checksum");
    assert_eq!(get_json(hub, &models_path(""))[folder]["Checksum"], "changed-checksum");
}

/// Copy the shared zoo's `model` folder to `dest/<model>` as writable files.
fn copy_folder(model: &str, dest: &Path) -> PathBuf {
    let d = dest.join(model);
    std::fs::create_dir_all(&d).unwrap();
    for (n, b) in source_files(model) {
        std::fs::write(d.join(n), b).unwrap();
    }
    d
}

/// Every path under `root` with its length and mtime.
fn tree(root: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

const PYSDK_LOCAL: &str = r#"
import sys, json, faulthandler, degirum as dg
faulthandler.dump_traceback_later(240, exit=True)
url, tok, image = sys.argv[1:4]
zoo = dg.connect(dg.LOCAL, url, tok)
out = {"list": zoo.list_models(), "results": {}}
for name in sys.argv[4:]:
    out["results"][name] = zoo.load_model(name).predict(image).results
print("JSON" + json.dumps(out), flush=True)
import os
os._exit(0)
"#;

/// The real PySDK lists both models and predicts with each through the hub (cloud zoo, local
/// inference): golden results.
fn pysdk_predicts(hub: &Hub, models: &[&str]) {
    let Some(peer) = peer() else { return };
    let home = tempfile::tempdir().unwrap();
    let img = format!("{ZOO}/images/cat_224.jpg");
    let mut args = vec![hub_url(hub), TOKEN.to_string(), img];
    args.extend(models.iter().map(|m| m.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = run_pysdk(&peer, home.path(), PYSDK_LOCAL, &args);
    assert!(ok, "PySDK failed:\n{out}\n{err}");
    let v: Value = serde_json::from_str(out.lines().find_map(|l| l.strip_prefix("JSON")).unwrap_or_else(|| panic!("{out}\n{err}"))).unwrap();
    let mut want: Vec<&str> = models.to_vec();
    want.sort();
    assert_eq!(v["list"], serde_json::json!(want));
    for m in models {
        assert_close(&v["results"][m], &golden(m, "cat_224.jpg"), 1e-4, &format!("PySDK {m} through the hub"));
    }
}

/// Our client: the folder model downloaded into our cache, verified and run; and run by the
/// hub itself (`@cloud`: the hub unpacks the folder's build for its cloud inference).
fn our_client_predicts(hub: &Hub, model: &str) {
    let cdir = tempfile::tempdir().unwrap();
    let want = golden(model, "cat_224.jpg");
    let zoo = connect(&hub_url(hub), TOKEN, &cache_cfg(cdir.path())).unwrap_or_else(|e| panic!("{}", e.message));
    assert_close(&predict(&zoo, model, "cat_224.jpg"), &want, 1e-4, "our client, folder model, local inference");
    let opts = dgzoo::zoo::ConnectOptions { cache: Some(cache_cfg(cdir.path())), offline: None, ..Default::default() };
    let cloud = dgzoo::zoo::Zoo::connect_with("@cloud", &hub_url(hub), TOKEN, &opts).unwrap_or_else(|e| panic!("{}", e.message));
    // RAW frames: JPEG ones (the cloud default) would not give the goldens' scores.
    let m = cloud.load_model(model, &serde_json::json!({"input_image_format": "RAW"})).unwrap_or_else(|e| panic!("{}", e.message));
    let r = dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&image("cat_224.jpg"))]).unwrap_or_else(|e| panic!("{}", e.message));
    assert_close(&serde_json::to_value(&r.results).unwrap(), &want, 1e-4, "our client, folder model, the hub's cloud inference");
}

#[test]
fn local_folder_models_are_served_like_archives() {
    // Folder EFF_F beside zip EFF_ONNX; a folder EFF_ONNX too, which the zip hides.
    let root = hub_root(&[EFF_ONNX]);
    let zdir = zoo_dir(root.path());
    let folder = copy_folder(EFF_F, &zdir);
    let hidden = copy_folder(EFF_ONNX, &zdir);
    std::fs::write(hidden.join(format!("{EFF_ONNX}.json")), changed_json(EFF_ONNX, "the-folder-loses")).unwrap();
    // Not served: a symlink out of the folder, a hidden file, a folder without its JSON.
    std::os::unix::fs::symlink(root.path().join("tokens.json"), folder.join("secret.json")).unwrap();
    std::fs::write(folder.join(".DS_Store"), b"x").unwrap();
    std::fs::create_dir_all(zdir.join("not_a_model")).unwrap();
    std::fs::write(zdir.join("not_a_model/other.json"), b"{}").unwrap();
    std::fs::write(
        root.path().join("tokens.json"),
        format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}, "admin": {{"is_admin": true, "zoos": []}}}}"#),
    )
    .unwrap();
    // The zoo root is read-only: builds go to the hub's own directory.
    let before = tree(root.path());
    let dirs = [root.path().to_path_buf(), zdir.clone(), folder.clone()];
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    for d in &dirs {
        mode(d, 0o555);
    }
    let hub = start_hub(root.path());
    assert_eq!(
        get_json(&hub, &models_path(&format!("/{EFF_ONNX}/info")))["crc"],
        read_json(&source_files(EFF_ONNX).iter().find(|(n, _)| n.ends_with(".json")).unwrap().1)["Checksum"]
    );
    pysdk_predicts(&hub, &[EFF_F, EFF_ONNX]);
    our_client_predicts(&hub, EFF_F);
    let json_path = folder.join(format!("{EFF_F}.json"));
    let change = |b: &[u8]| {
        mode(&folder, 0o755);
        std::fs::write(&json_path, b).unwrap();
        mode(&folder, 0o555);
    };
    // The admin endpoints delete archives only: a folder model gets a clear refusal.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let refused = agent.delete(&format!("http://{}{}", hub.addr(), models_path(&format!("/{EFF_F}")))).set("token", "admin").call();
    let Err(ureq::Error::Status(400, r)) = refused else { panic!("deleting a folder model: {refused:?}") };
    let detail = read_json(r.into_string().unwrap().as_bytes())["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("is a model folder: the hub deletes archives only"), "{detail}");
    // `tree` before the change: the hub wrote nothing under the root.
    assert_eq!(tree(root.path()), before, "the hub wrote into the zoo root");
    folder_served_like_an_archive(&hub, EFF_F, EFF_ONNX, &change, Duration::ZERO);
    for d in &dirs {
        mode(d, 0o755);
    }
}

#[test]
fn folder_models_in_a_bucket_are_served_like_archives() {
    let Some(sw) = seaweedfs::shared() else { return };
    sw.create_bucket("folders");
    let url = "s3://folders/zoo";
    let local = hub_root(&[EFF_ONNX]);
    let s3 = S3Zoo::open(url, Duration::ZERO).unwrap_or_else(|e| panic!("{e}\n{}", sw.log()));
    s3.put_file(&["tokens.json"], &local.path().join("tokens.json")).unwrap();
    s3.put_file(&[ORG, ZOONAME, &format!("{EFF_ONNX}.zip")], &zoo_dir(local.path()).join(format!("{EFF_ONNX}.zip"))).unwrap();
    let copy = copy_folder(EFF_F, local.path());
    for (n, _) in source_files(EFF_F) {
        s3.put_file(&[ORG, ZOONAME, EFF_F, &n], &copy.join(&n)).unwrap();
    }
    // A key that is not a safe path is not served.
    s3.put_file(&[ORG, ZOONAME, EFF_F, ".hidden"], &copy.join(format!("{EFF_F}.json"))).unwrap();
    let ttl = Duration::from_millis(500);
    let mut cfg = HubConfig::new(Path::new("/nonexistent-unused"));
    cfg.s3 = Some(url.to_string());
    cfg.listing_ttl = ttl;
    cfg.port = 0;
    let hub = Hub::start(&cfg).unwrap_or_else(|e| panic!("{}", e.message));
    pysdk_predicts(&hub, &[EFF_F, EFF_ONNX]);
    our_client_predicts(&hub, EFF_F);
    let tmp = tempfile::tempdir().unwrap();
    let change = |b: &[u8]| {
        let p = tmp.path().join("new.json");
        std::fs::write(&p, b).unwrap();
        s3.put_file(&[ORG, ZOONAME, EFF_F, &format!("{EFF_F}.json")], &p).unwrap();
    };
    folder_served_like_an_archive(&hub, EFF_F, EFF_ONNX, &change, ttl);
}
