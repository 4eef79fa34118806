//! The real PySDK 1.5.0 cloud client (`degirum.connect(degirum.CLOUD, hub_url, token)`)
//! against our hub's socket.io cloud inference: list, load, predict (golden results), a
//! pipelined batch inside `with model:`, and a CONNECT refused after the token is revoked.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::Value;

const SCRIPT: &str = r#"
import sys, json, faulthandler, degirum as dg
faulthandler.dump_traceback_later(240, exit=True)  # a hang fails the test with a traceback
url, tok, images, tokens_file = sys.argv[1:5]
cases = [c.split("@") for c in sys.argv[5].split(",")]
out = {}
zoo = dg.connect(dg.CLOUD, url, tok)
out["list"] = zoo.list_models()
out["devices"] = sorted(zoo.supported_device_types())
res = {}
for name, img in cases:
    m = zoo.load_model(name, input_image_format="RAW")
    out["devices_available"] = list(m.devices_available)
    res[name + "/" + img] = m.predict(images + "/" + img).results
out["results"] = res
# JPEG frames (the cloud default)
m = zoo.load_model(cases[0][0])
out["jpeg"] = m.predict(images + "/" + cases[0][1]).results
# several frames in flight on one connection
m = zoo.load_model(cases[-1][0], input_image_format="RAW")
imgs = [images + "/" + i for i in ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"]] * 3
with m:
    out["batch"] = [r.results for r in m.predict_batch(imgs)]
# error texts
for key, fn in [("local_path", lambda: dg.connect(dg.CLOUD, images, tok)),
                ("bad_token", lambda: dg.connect(dg.CLOUD, url, "wrong-token")),
                ("no_model", lambda: zoo.load_model("nomodel"))]:
    try:
        fn()
        out[key] = None
    except Exception as e:
        out[key] = str(e)
# revoke the token: the next CONNECT is refused by the socket.io server
m = zoo.load_model(cases[0][0], input_image_format="RAW")
open(tokens_file, "w").write("{}")
try:
    m.predict(images + "/" + cases[0][1])
    out["revoked"] = None
except Exception as e:
    out["revoked"] = str(e)
print("JSON" + json.dumps(out), flush=True)
# PySDK 1.5.0 can hang at interpreter exit in a cloud model's __del__ (stop_async_thread)
# after a refused reconnect; the results are out, so leave without running destructors.
import os
os._exit(0)
"#;

#[test]
fn pysdk_cloud_client_predicts_through_our_hub() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_F, EFF_ONNX, YOLO, BLAZE]);
    let hub = start_hub(root.path());
    let home = tempfile::tempdir().unwrap();
    let url = hub_url(&hub);
    let images = format!("{ZOO}/images");
    // Not BLAZE: its raw-tensor results stay bytes in PySDK's cloud client (cloud-api.md §5.3).
    let cases = [(EFF_F, "cat_224.jpg"), (EFF_ONNX, "car_416.jpg"), (YOLO, "girls_256.jpg")];
    let arg: Vec<String> = cases.iter().map(|(m, i)| format!("{m}@{i}")).collect();
    let tokens = root.path().join("tokens.json");
    let (ok, out, err) = run_pysdk(&peer, home.path(), SCRIPT, &[&url, TOKEN, &images, tokens.to_str().unwrap(), &arg.join(",")]);
    assert!(ok, "PySDK failed:\n{out}\n{err}");
    let line = out.lines().find_map(|l| l.strip_prefix("JSON")).unwrap_or_else(|| panic!("no result line: {out}\n{err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let mut want = vec![EFF_F, EFF_ONNX, YOLO, BLAZE];
    want.sort();
    assert_eq!(v["list"], serde_json::json!(want));
    for (m, img) in cases {
        // Labels exact, scores 1e-4, boxes 0.5 px.
        assert_close(&v["results"][format!("{m}/{img}")], &golden(m, img), 1e-4, &format!("PySDK cloud {m} {img}"));
    }
    assert_eq!(v["jpeg"][0]["label"], golden(EFF_F, "cat_224.jpg")[0]["label"], "JPEG frame top label");
    let batch = v["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 9);
    for (i, img) in ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"].iter().cycle().take(9).enumerate() {
        assert_close(&batch[i], &golden(YOLO, img), 0.5, &format!("batch[{i}] {img}"));
    }
    // Our client gives the same texts (with the token the script revoked restored).
    std::fs::write(&tokens, format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}}}"#)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let ours = |url: &str, tok: &str| {
        dgzoo::zoo::Zoo::connect_with(
            "@cloud",
            url,
            tok,
            &dgzoo::zoo::ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() },
        )
        .map(|_| ())
        .unwrap_err()
        .message
    };
    assert_eq!(v["local_path"], ours(&images, TOKEN));
    assert_eq!(v["bad_token"], ours(&url, "wrong-token"));
    let our_zoo = dgzoo::zoo::Zoo::connect_with(
        "@cloud",
        &url,
        TOKEN,
        &dgzoo::zoo::ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() },
    )
    .unwrap();
    assert_eq!(v["no_model"], our_zoo.load_model("nomodel", &Value::Null).unwrap_err().message);
    assert_eq!(v["devices_available"], serde_json::json!((0..64).collect::<Vec<u64>>()));
    let ours_model = our_zoo.load_model(EFF_F, &Value::Null).unwrap();
    assert_eq!(ours_model.get_property("devices_available").unwrap(), v["devices_available"]);
    let revoked = v["revoked"].as_str().unwrap_or_default();
    assert!(revoked.contains("Inference connection refused: token is not valid"), "{revoked}");
    assert!(hub.request_count() > 0);
}

const DROP_SCRIPT: &str = r#"
import sys, os, faulthandler, degirum as dg
faulthandler.dump_traceback_later(120, exit=True)
url, tok, img, name = sys.argv[1:5]
m = dg.connect(dg.CLOUD, url, tok).load_model(name, input_image_format="RAW")
with m:
    for i, r in enumerate(m.predict_batch([img] * 40)):
        if i == 2:
            print("DROPPING", flush=True)
            os._exit(0)  # vanish mid-stream, frames still in flight
"#;

#[test]
fn pysdk_client_vanishing_mid_stream_leaves_the_hub_serving() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[YOLO]);
    let hub = start_hub(root.path());
    let home = tempfile::tempdir().unwrap();
    let url = hub_url(&hub);
    let img = format!("{ZOO}/images/girls_256.jpg");
    let (ok, out, err) = run_pysdk(&peer, home.path(), DROP_SCRIPT, &[&url, TOKEN, &img, YOLO]);
    assert!(ok && out.contains("DROPPING"), "{out}\n{err}");
    let t = std::time::Instant::now();
    while hub.inference_connections() > 0 {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the hub still holds the vanished client's connection");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cache = tempfile::tempdir().unwrap();
    let zoo = dgzoo::zoo::Zoo::connect_with(
        "@cloud",
        &url,
        TOKEN,
        &dgzoo::zoo::ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() },
    )
    .unwrap();
    let m = zoo.load_model(YOLO, &serde_json::json!({"input_image_format": "RAW"})).unwrap();
    let r = dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&image("girls_256.jpg"))]).unwrap();
    assert_close(&serde_json::to_value(&r.results).unwrap(), &golden(YOLO, "girls_256.jpg"), 1e-4, "after the vanished client");
}

const RESTART_SCRIPT: &str = r#"
import sys, os, json, faulthandler, degirum as dg
faulthandler.dump_traceback_later(240, exit=True)
url, tok, images, name, n = sys.argv[1:6]
imgs = [images + "/" + i for i in ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"]]
m = dg.connect(dg.CLOUD, url, tok).load_model(name, input_image_format="RAW")
with m:
    for i, r in enumerate(m.predict_batch((imgs * 100)[: int(n)])):
        print("R " + json.dumps(r.results), flush=True)
print("DONE", flush=True)
os._exit(0)
"#;

/// A TCP forwarder with a switchable target: the stable address a restarted server sits
/// behind (PySDK retries a refused connection at once, so the address must stay up).
fn proxy(target: std::sync::Arc<std::sync::atomic::AtomicU16>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", target.load(std::sync::atomic::Ordering::SeqCst))) else { continue };
            for (mut from, mut to) in [(c.try_clone().unwrap(), s.try_clone().unwrap()), (s, c)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

fn spawn_hub(root: &std::path::Path, port: u16) -> ChildGuard {
    let child = std::process::Command::new(dgzoo_bin())
        .args(["hub", "--port", &port.to_string(), "--zoo"])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dgzoo hub");
    let g = ChildGuard(child);
    assert!(wait_port(port, std::time::Duration::from_secs(30)), "hub did not start on {port}");
    g
}

#[test]
fn pysdk_stream_survives_a_hub_restart() {
    use std::io::BufRead;
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_F]);
    let p1 = free_port();
    let mut hub1 = spawn_hub(root.path(), p1);
    let target = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(p1));
    let port = proxy(target.clone());
    let home = tempfile::tempdir().unwrap();
    let n = 30;
    let url = format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}");
    let mut child = pysdk_command(&peer, home.path(), RESTART_SCRIPT, &[&url, TOKEN, &format!("{ZOO}/images"), EFF_F, &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut results = Vec::new();
    let mut done = false;
    let mut hub2 = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(r) = line.strip_prefix("R ") {
            results.push(serde_json::from_str::<Value>(r).unwrap());
            if results.len() == 3 {
                // Restart: the new hub comes up, the address moves to it, the old one dies.
                let p2 = free_port();
                hub2 = Some(spawn_hub(root.path(), p2));
                target.store(p2, std::sync::atomic::Ordering::SeqCst);
                let _ = hub1.0.kill();
                let _ = hub1.0.wait();
            }
        } else if line == "DONE" {
            done = true;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(done, "PySDK stream did not finish: {}", String::from_utf8_lossy(&out.stderr));
    assert!(hub2.is_some());
    assert_eq!(results.len(), n);
    for (k, r) in results.iter().enumerate() {
        let img = ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"][k % 3];
        assert_close(r, &golden(EFF_F, img), 1e-4, &format!("PySDK frame {k} across the restart"));
    }
}

const POOL_SCRIPT: &str = r#"
import sys, json, os, faulthandler, degirum as dg
faulthandler.dump_traceback_later(180, exit=True)
url, tok, images, name = sys.argv[1:5]
m = dg.connect(dg.CLOUD, url, tok).load_model(name, input_image_format="RAW")
out = {img: m.predict(images + "/" + img).results for img in ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"]}
print("JSON" + json.dumps(out), flush=True)
os._exit(0)
"#;

/// Full real stack around our hub: PySDK's cloud client → our hub → DeGirum's AI server.
#[test]
fn pysdk_client_through_our_hub_to_a_real_aiserver_pool() {
    let Some(peer) = peer() else { return };
    // The AI server's zoo: the model directory (symlinks into the shared zoo).
    let zdir = tempfile::tempdir().unwrap();
    let dst = zdir.path().join(EFF_F);
    std::fs::create_dir(&dst).unwrap();
    for f in std::fs::read_dir(std::path::Path::new(ZOO).join(EFF_F)).unwrap().flatten() {
        std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let server = aiserver_common::start_peer_server(&peer, zdir.path(), &[("HOME", home.path())]);
    let addr = dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{}", server.port)).unwrap();
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    hub.set_aiserver_pool(vec![addr]);
    let (ok, out, err) = run_pysdk(&peer, home.path(), POOL_SCRIPT, &[&hub_url(&hub), TOKEN, &format!("{ZOO}/images"), EFF_F]);
    assert!(ok, "PySDK failed:\n{out}\n{err}");
    let line = out.lines().find_map(|l| l.strip_prefix("JSON")).unwrap_or_else(|| panic!("no result line: {out}\n{err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    for img in ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"] {
        assert_close(&v[img], &golden(EFF_F, img), 1e-4, &format!("via the real AI server: {img}"));
    }
}
