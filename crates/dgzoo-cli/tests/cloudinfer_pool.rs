//! The hub dispatching cloud inference to a pool of AI servers (ours, asio and HTTP):
//! streams spread least-busy first, results equal to local ones, a dead member skipped.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::{ConnectOptions, Zoo};
use dgzoo_server::aiserver::{Config, Protocol, Server};
use serde_json::json;
use std::path::Path;

/// An AI server over a zoo holding `model` (symlinks into the shared zoo).
fn ai_server(model: &str, protocol: Protocol) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join(model);
    std::fs::create_dir(&dst).unwrap();
    for f in std::fs::read_dir(Path::new(ZOO).join(model)).unwrap().flatten() {
        std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
    }
    let mut cfg = Config::new(dir.path());
    cfg.port = 0;
    cfg.protocol = protocol;
    cfg.quiet = true;
    (Server::start(cfg).unwrap(), dir)
}

#[test]
fn hub_spreads_streams_over_an_aiserver_pool() {
    let (a, _da) = ai_server(EFF_F, Protocol::Asio);
    let (b, _db) = ai_server(EFF_F, Protocol::Http);
    let a_addr = format!("127.0.0.1:{}", a.asio_addr().unwrap().port());
    let b_addr = format!("http://127.0.0.1:{}", b.http_addr().unwrap().port());
    // A member nobody listens on is skipped.
    let dead = format!("127.0.0.1:{}", free_port());
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    hub.set_aiserver_pool([&dead, &a_addr, &b_addr].iter().map(|s| ServerAddress::parse(s).unwrap()).collect());
    let cache = tempfile::tempdir().unwrap();
    let zoo = Zoo::connect_with("@cloud", &hub_url(&hub), TOKEN, &ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() })
        .unwrap();
    // Two models = two connections kept open between frames (idle sessions are pooled).
    let m1 = zoo.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap();
    let m2 = zoo.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap();
    for (m, img) in [(&m1, "cat_224.jpg"), (&m2, "car_416.jpg"), (&m1, "girls_256.jpg")] {
        let r = predict(m, &[Input::Bytes(&image(img))]).unwrap_or_else(|e| panic!("{}", e.message));
        assert_close(&serde_json::to_value(&r.results).unwrap(), &golden(EFF_F, img), 1e-4, &format!("pool {img}"));
    }
    let load = hub.aiserver_pool_load();
    let get = |addr: &str| load.iter().find(|(s, _)| addr.ends_with(s.as_str())).map(|x| x.1).unwrap();
    assert_eq!(get(&dead), 0, "{load:?}");
    assert_eq!(get(&a_addr), 1, "{load:?}");
    assert_eq!(get(&b_addr), 1, "{load:?}");
    drop(m1);
    drop(m2);
    let t = std::time::Instant::now();
    while hub.aiserver_pool_load().iter().any(|x| x.1 > 0) {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "streams not released: {:?}", hub.aiserver_pool_load());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn dgzoo_hub_cli_takes_an_aiserver_pool() {
    let root = hub_root(&[EFF_F]);
    let port = free_port();
    let dead = format!("127.0.0.1:{}", free_port());
    let child = std::process::Command::new(dgzoo_bin())
        .args(["hub", "--port", &port.to_string(), "--aiserver", &dead, "--zoo"])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _g = ChildGuard(child);
    assert!(wait_port(port, std::time::Duration::from_secs(30)));
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}");
    let zoo = Zoo::connect_with("@cloud", &url, TOKEN, &ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() }).unwrap();
    let m = zoo.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap();
    // Only the (dead) pool may run frames: the local runtimes are not used.
    let e = predict(&m, &[Input::Bytes(&image("cat_224.jpg"))]).unwrap_err();
    assert!(e.message.contains("Inference connection refused: no AI server of the pool accepted the stream"), "{}", e.message);
    assert!(e.message.contains(&dead), "{}", e.message);
}
