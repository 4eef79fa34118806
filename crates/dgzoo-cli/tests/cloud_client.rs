//! Our cloud client and `@local` + cloud zoo accessor against our hub and against the real
//! dg-zoo-server 0.3.0: listing, info, load + predict (results equal the local zoo's and the
//! PySDK golden files), PySDK's error texts.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::Value;

/// Models of the shared zoo this machine can run (what a local listing would show).
fn runnable(models: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = models
        .iter()
        .filter(|m| !Zoo::connect("@local", &format!("{ZOO}/{m}"), "").unwrap().list_names(&Filters::default()).unwrap().is_empty())
        .map(|m| m.to_string())
        .collect();
    v.sort();
    v
}

/// Full-form info without the file paths (absolute locally, relative in the cloud).
fn info_without_paths(mut v: Value) -> Value {
    for (sec, key) in [("MODEL_PARAMETERS", "ModelPath"), ("POST_PROCESS", "LabelsPath"), ("POST_PROCESS", "PythonFile")] {
        if let Some(o) = v.get_mut(sec).and_then(|a| a.get_mut(0)).and_then(Value::as_object_mut) {
            o.remove(key);
        }
    }
    v
}

/// Tests that set DGZOO_TOKEN_FILE run one at a time (the environment is per process).
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const ALL: &[&str] = &[EFF_F, EFF_Q, EFF_ONNX, YOLO, BLAZE];

fn check_zoo(url: &str) {
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cache_dir.path());
    let zoo = connect(url, TOKEN, &cfg).unwrap_or_else(|e| panic!("connect {url}: {}", e.message));
    let names = zoo.list_names(&Filters::default()).unwrap();
    assert_eq!(names, runnable(ALL));
    assert!(names.contains(&EFF_F.to_string()) && names.contains(&YOLO.to_string()));

    for m in [EFF_F, YOLO] {
        let local = Zoo::connect("@local", &format!("{ZOO}/{m}"), "").unwrap();
        assert_eq!(info_without_paths(zoo.model_info(m).unwrap()), info_without_paths(local.model_info(m).unwrap()), "{m}");
    }

    // Float models: golden PySDK results within 1e-4 and bit-equal to our local-zoo results.
    let mut cases = vec![(EFF_F, "cat_224.jpg"), (YOLO, "girls_256.jpg"), (YOLO, "car_416.jpg")];
    if names.contains(&EFF_ONNX.to_string()) {
        cases.push((EFF_ONNX, "cat_224.jpg"));
    }
    for (m, img) in cases {
        let got = predict(&zoo, m, img);
        assert_close(&got, &golden(m, img), 1e-4, &format!("{m} {img} vs golden"));
        assert_eq!(got, local_predict(m, img), "{m} {img} vs local zoo");
    }
    // The int8 model: equal to the local zoo's results.
    assert_eq!(predict(&zoo, EFF_Q, "cat_224.jpg"), local_predict(EFF_Q, "cat_224.jpg"));

    // The loaded model carries the cloud fields as PySDK sets them.
    let model = zoo.load_model(EFF_F, &Value::Null).unwrap();
    let p = &model.state().params;
    assert_eq!(p.str("CloudModelName", 0), format!("{ORG}/{ZOONAME}/{EFF_F}"));
    assert_eq!(p.str("CloudURL", 0), url.trim_end_matches(&format!("/{ORG}/{ZOONAME}")));
    assert_eq!(p.str("CloudToken", 0), TOKEN);
    assert!(model.labels().get(&285).is_some_and(|l| l == "Egyptian cat"));
}

#[test]
fn our_hub_list_info_predict() {
    let root = hub_root(ALL);
    let hub = start_hub(root.path());
    check_zoo(&hub_url(&hub));
}

#[test]
fn real_dg_zoo_server_list_info_predict() {
    let Some(peer) = peer() else { return };
    let root = hub_root(ALL);
    let (_server, port) = start_dg_zoo_server(&peer, root.path());
    check_zoo(&format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}"));
}

/// PySDK's texts for a bad token, a missing zoo/model, an unreachable server; the same on our
/// hub and on dg-zoo-server.
fn check_errors(base: &str) {
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = cache_cfg(cache_dir.path());
    let host = base.trim_start_matches("http://");
    let url = format!("{base}/{ORG}/{ZOONAME}");

    let e = connect(&url, "wrong", &cfg).unwrap_err();
    assert_eq!(e.message, format!("Unable to connect to server {host}: Token is not valid"));
    assert_eq!(e.code, dgzoo::Code::Auth);

    let e = connect(&format!("{base}/{ORG}/nozoo"), TOKEN, &cfg).unwrap_err();
    assert_eq!(
        e.message,
        format!("Zoo {ORG}/nozoo is not found. (cloud server response: 400 Client Error: Bad Request for url: {base}/api/v1/public/zoos-check/{ORG}/nozoo)")
    );

    let zoo = connect(&url, TOKEN, &cfg).unwrap();
    let want = format!(
        "Model nomodel is not found in model zoo {ORG}/{ZOONAME}. (cloud server response: 400 Client Error: Bad Request for url: {base}/zoo/v1/public/models/{ORG}/{ZOONAME}/nomodel/info)"
    );
    assert_eq!(zoo.model_info("nomodel").unwrap_err().message, want);
    assert_eq!(zoo.load_model("nomodel", &Value::Null).unwrap_err().message, want);
    // A path-traversing name never reaches the file system.
    assert!(zoo.load_model("../../etc", &Value::Null).is_err());
    assert!(std::fs::read_dir(cache_dir.path()).map(|d| d.count()).unwrap_or(0) <= 1);
}

#[test]
fn errors_are_pysdk_worded_our_hub() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    check_errors(&format!("http://{}", hub.addr()));
}

#[test]
fn errors_are_pysdk_worded_dg_zoo_server() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[BLAZE]);
    let (_server, port) = start_dg_zoo_server(&peer, root.path());
    check_errors(&format!("http://127.0.0.1:{port}"));
}

#[test]
fn unreachable_server() {
    let port = free_port();
    let cache_dir = tempfile::tempdir().unwrap();
    let e = connect(&format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}"), TOKEN, &cache_cfg(cache_dir.path())).unwrap_err();
    assert!(e.message.starts_with(&format!("Unable to access server 127.0.0.1:{port}: ")), "{}", e.message);
    assert_eq!(e.code, dgzoo::Code::Network);
}

/// A model for a device this machine lacks: PySDK's "Cloud Model ..." error, and no download.
#[test]
fn unsupported_model_is_refused_before_download() {
    let root = hub_root(&[]);
    let src = tempfile::tempdir().unwrap();
    let name = "hailo_model--224x224_quant_hailort_hailo8_1";
    let mdir = src.path().join(name);
    std::fs::create_dir(&mdir).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap()).unwrap();
    cfg["DEVICE"][0] = serde_json::json!({"DeviceType": "HAILO8", "RuntimeAgent": "HAILORT", "SupportedDeviceTypes": "HAILORT/HAILO8"});
    cfg["MODEL_PARAMETERS"][0]["ModelPath"] = Value::String(format!("{name}.hef"));
    std::fs::write(mdir.join(format!("{name}.json")), cfg.to_string()).unwrap();
    std::fs::write(mdir.join(format!("{name}.hef")), b"not a real model").unwrap();
    dgzoo::cache::archive::pack_model(&mdir, &zoo_dir(root.path()).join(format!("{name}.zip"))).unwrap();

    let hub = start_hub(root.path());
    let cache_dir = tempfile::tempdir().unwrap();
    let zoo = connect(&hub_url(&hub), TOKEN, &cache_cfg(cache_dir.path())).unwrap();
    assert!(zoo.list_names(&Filters::default()).unwrap().is_empty(), "filtered by the local devices");
    let before = hub.request_count();
    let e = zoo.load_model(name, &Value::Null).unwrap_err();
    assert_eq!(e.message, format!("Cloud Model '{name}' does not have any supported runtime/device combinations that will work on this system."));
    assert_eq!(hub.request_count() - before, 1, "only the info request, no download");
}

/// With no token given, the one saved for the cloud root in PySDK's token file is used.
#[test]
fn token_from_token_file() {
    let _env = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pysdk_cloud_token.json");
    std::fs::write(&file, format!(r#"{{"http://{}": {{"token": "{TOKEN}", "description": "t"}}}}"#, hub.addr())).unwrap();
    std::env::set_var("DGZOO_TOKEN_FILE", &file);
    let cache_dir = tempfile::tempdir().unwrap();
    let zoo = connect(&hub_url(&hub), "", &cache_cfg(cache_dir.path()));
    std::env::remove_var("DGZOO_TOKEN_FILE");
    assert_eq!(zoo.unwrap().list_names(&Filters::default()).unwrap(), vec![BLAZE.to_string()]);
}

/// A saved token that expires within the hour is renewed (info, then PATCH refresh, both
/// without a token header) and the new value saved; a far expiry or the "never" date is not.
#[test]
fn saved_token_is_renewed_when_expiring() {
    use dgzoo::cloud::token;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let iso = |t: i64| {
        // Days → civil date, enough for a test: format through the parser's inverse by search.
        let days = t.div_euclid(86400);
        let secs = t.rem_euclid(86400);
        let (mut y, mut d) = (1970i64, days);
        loop {
            let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 };
            if d < len {
                break;
            }
            d -= len;
            y += 1;
        }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let ml = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut m = 0;
        while d >= ml[m] {
            d -= ml[m];
            m += 1;
        }
        format!("{y:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z", m + 1, d + 1, secs / 3600, secs % 3600 / 60, secs % 60)
    };
    assert_eq!(token::parse_iso8601(&iso(now + 600)), Some(now + 600));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    for (expiration, renewed) in [(iso(now + 600), true), (iso(now + 86400), false), ("0001-01-01T00:00:00Z".to_string(), false)] {
        let exp = expiration.clone();
        let (port, log) = raw_server(move |method, path, _| match (method, path) {
            ("GET", "/api/v1/tokens/old_tok/info") => (200, format!(r#"{{"expiration": "{exp}", "user": "u"}}"#)),
            ("PATCH", "/api/v1/tokens/old_tok/refresh") => (200, r#"{"value": "new_tok"}"#.to_string()),
            _ => (404, r#"{"detail": "Not Found"}"#.to_string()),
        });
        let root = format!("http://127.0.0.1:{port}");
        std::fs::write(&file, format!(r#"{{"{root}": {{"token": "old_tok", "description": "d"}}}}"#)).unwrap();
        let settings = dgzoo::settings::Settings { token_file: Some(file.clone()), ..Default::default() };
        let got = token::resolve("", &root, &settings);
        let saved = token::lookup(&root, &settings);
        let log = log.lock().unwrap().clone();
        if renewed {
            assert_eq!(got, "new_tok");
            assert_eq!(saved, "new_tok");
            assert_eq!(log, vec!["GET /api/v1/tokens/old_tok/info token=", "PATCH /api/v1/tokens/old_tok/refresh token="]);
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            assert_eq!(v[&root]["description"], "d", "other fields kept");
        } else {
            assert_eq!((got.as_str(), saved.as_str()), ("old_tok", "old_tok"), "{expiration}");
            assert_eq!(log, vec!["GET /api/v1/tokens/old_tok/info token="]);
        }
    }
}
