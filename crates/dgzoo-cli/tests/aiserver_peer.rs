//! Interoperability with the real DeGirum PySDK 1.5.0 (the "peer", see `aiserver_common::peer`):
//! (a) the PySDK client against our server, (b) our client against PySDK's AI server.
//! Everything runs on 127.0.0.1 with ports chosen at run time.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use dgzoo_server::aiserver::Protocol;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CLIENT_SCRIPT: &str = r#"
import json, sys
import numpy as np
import degirum as dg

addr, images_dir, models, fmt = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
images = ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"]

def plain(v):
    if isinstance(v, np.ndarray):
        return {"__ndarray__": True, "dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v

zoo = dg.connect(addr, "", "")
out = {"names": zoo.list_models(), "onnx": zoo.list_models(runtime="ONNX"), "results": {}}
for m in models:
    model = zoo.load_model(m, input_image_format=fmt)
    out["results"][m] = {img: plain(model.predict(images_dir + "/" + img).results) for img in images}
# JPEG frames (the AI-server default) and pipelined batch prediction.
model = zoo.load_model("efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1")
out["labels_285"] = model.label_dictionary[285]
out["jpeg_top"] = model.predict(images_dir + "/cat_224.jpg").results[0]["label"]
model = zoo.load_model("yolov8n_nudenet--320x320_float_tflite_cpu_1", input_image_format="RAW")
batch = [r.results for r in model.predict_batch([images_dir + "/" + img for img in images * 3])]
out["batch"] = plain(batch)
try:
    zoo.load_model("yolov8n_nudenet--320x320_float_tflite_cpu_1", input_image_format="RAW").predict(b"not an image")
    out["bad_frame"] = ""
except Exception as e:
    out["bad_frame"] = str(e)
print("RESULT-JSON " + json.dumps(out))
"#;

fn run_pysdk_client(peer: &Path, dir: &Path, addr: &str, models: &[&str], format: &str) -> Value {
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT_SCRIPT).unwrap();
    let out = Command::new(peer.join("venv/bin/python"))
        .arg(&script)
        .arg(addr)
        .arg(Path::new(SHARED_ZOO).join("images"))
        .arg(models.join(","))
        .arg(format)
        .env("LD_LIBRARY_PATH", peer_ld_path(peer))
        .output()
        .expect("run the PySDK client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT-JSON ")).unwrap_or_else(|| {
        panic!("PySDK client failed on {addr}: status {:?}\nstdout: {stdout}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    });
    serde_json::from_str(line).unwrap()
}

#[test]
fn pysdk_client_against_our_server() {
    let Some(peer) = peer("pysdk_client_against_our_server") else { return };
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Both);
    let local = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let addrs = [format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", server.http_addr().unwrap().port())];
    let mut failures = Vec::new();
    for addr in &addrs {
        let out = run_pysdk_client(&peer, tmp.path(), addr, MODELS, "RAW");
        assert_eq!(out["names"], json!(MODELS), "{addr}");
        assert_eq!(out["onnx"], json!([MODELS[1], MODELS[4]]), "{addr}");
        assert_eq!(out["labels_285"], json!("Egyptian cat"));
        assert_eq!(out["jpeg_top"], json!("Egyptian cat"));
        for m in MODELS {
            for img in IMAGES {
                let got: Vec<Value> = out["results"][m][img].as_array().cloned().unwrap_or_default();
                let what = format!("PySDK via {addr} {m} {img}");
                let r = if *m == "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1" {
                    // Our int8 engine differs from PySDK's by a few 1e-3 (see aiserver_client_server):
                    // the PySDK client must see exactly our local results.
                    let bytes = std::fs::read(image(img)).unwrap();
                    let l = dgzoo::model::predict(&local.load_model(m, &Value::Null).unwrap(), &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
                    compare(&got, &json!(l.results), &what)
                } else {
                    compare(&got, &golden(m, img), &what)
                };
                if let Err(e) = r {
                    failures.push(e);
                }
            }
        }
        for (k, r) in out["batch"].as_array().unwrap().iter().enumerate() {
            if let Err(e) = compare(r.as_array().unwrap(), &golden(MODELS[5], IMAGES[k % 3]), &format!("PySDK batch via {addr} #{k}")) {
                failures.push(e);
            }
        }
        let bad = out["bad_frame"].as_str().unwrap();
        assert!(bad.contains("Failed to perform model") && bad.contains("Cannot reshape"), "{addr}: {bad}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn our_client_against_pysdk_server() {
    let Some(peer) = peer("our_client_against_pysdk_server") else { return };
    let zoo_dir = clean_zoo();
    let server = start_peer_server(&peer, zoo_dir.path(), &[]);
    let port = server.port;
    let asio = format!("127.0.0.1:{port}");
    let local = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    let mut failures = Vec::new();
    for addr in [asio.clone(), format!("http://127.0.0.1:{}", port + 1)] {
        let zoo = Zoo::connect(&addr, "", "").unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        assert_eq!(zoo.list_names(&Filters::default()).unwrap(), MODELS.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{addr}");
        // The PySDK server's listing equals ours (relative paths, full form).
        let ours = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&addr).unwrap());
        let theirs: Vec<(String, Value)> = ours.modelzoo().unwrap();
        let our_server = start_server(zoo_dir.path(), Protocol::Both);
        let our_addr = if addr.starts_with("http") {
            format!("http://127.0.0.1:{}", our_server.http_addr().unwrap().port())
        } else {
            format!("127.0.0.1:{}", our_server.asio_addr().unwrap().port())
        };
        let mine = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&our_addr).unwrap()).modelzoo().unwrap();
        let mut t = theirs.clone();
        let mut o = mine.clone();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        o.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(t, o, "{addr}: model listings differ");
        drop(our_server);
        assert_eq!(zoo.ai_server().unwrap().label_dictionary(MODELS[3]).unwrap()["285"], json!("Egyptian cat"));
        for m in MODELS {
            let model = zoo.load_model(m, &json!({"input_image_format": "RAW"})).unwrap();
            for img in IMAGES {
                let bytes = std::fs::read(image(img)).unwrap();
                let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{addr} {m} {img}: {e}"));
                if let Err(e) = compare(&to_golden_form(&r), &golden(m, img), &format!("PySDK server {addr} {m} {img}")) {
                    failures.push(e);
                }
            }
        }
        // JPEG frames: the PySDK server decodes exactly what local JPEG inference sees.
        let m = MODELS[5];
        let model = zoo.load_model(m, &Value::Null).unwrap();
        let lm = local.load_model(m, &json!({"input_image_format": "JPEG"})).unwrap();
        let bytes = std::fs::read(image("girls_256.jpg")).unwrap();
        let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        let l = dgzoo::model::predict(&lm, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        if let Err(e) = compare(&r.results, &json!(l.results), &format!("JPEG via {addr}")) {
            failures.push(e);
        }
        // A frame it cannot use: PySDK's error text, and the model keeps working.
        let e = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&[0u8; 10])]).unwrap_err();
        assert!(e.message.starts_with(&format!("Failed to perform model '{m}' inference: ")), "{addr}: {}", e.message);
        assert!(dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).is_ok());
        // An unknown model fails at stream open.
        let ghost = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&addr).unwrap());
        let opened = ghost.open_stream("no_such_model", &json!({})).and_then(|mut s| {
            s.send_frame(&[vec![0u8; 16]])?;
            s.recv(Duration::from_secs(20))
        });
        // Its text (asio: first result; http: configuration reply in a non-UTF-8 text frame).
        let msg = match opened {
            Err(e) => e.message,
            Ok(bytes) => dgzoo::protocol::decode_results(&bytes).unwrap().unwrap_err(),
        };
        assert!(msg.contains("Cannot find the model in the model zoo with name = no_such_model"), "{addr}: {msg}");
    }
    // Batch pipelined on one stream (through a proxy that counts streams and frames in
    // flight): the per-frame results, and a bad frame mid-batch fails alone (the PySDK server
    // goes on with the stream after a per-frame error).
    let proxy = StreamProxy::start(&asio, 3);
    let params = json!({"frame_queue_depth": 3, "input_image_format": "RAW"});
    let model = Zoo::connect(&proxy.addr, "", "").unwrap().load_model(MODELS[5], &params).unwrap();
    let mut frames: Vec<Vec<dgzoo::pipeline::OwnedInput>> =
        IMAGES.iter().cycle().take(7).map(|i| vec![dgzoo::pipeline::OwnedInput::Bytes(std::fs::read(image(i)).unwrap())]).collect();
    frames[3] = vec![dgzoo::pipeline::OwnedInput::Bytes(vec![0u8; 10])];
    let got = dgzoo::pipeline::predict_batch(&model, frames.clone()).unwrap();
    assert_eq!((proxy.streams(), proxy.max_in_flight()), (1, 3));
    for (k, (r, f)) in got.iter().zip(&frames).enumerate() {
        let single = dgzoo::model::predict(&model, &[f[0].as_input()]);
        match (r, single) {
            (Ok(r), Ok(s)) => assert_eq!(r.results, s.results, "batch frame {k}"),
            (Err(e), Err(s)) => assert_eq!(e.message, s.message, "batch frame {k}"),
            (r, s) => panic!("batch frame {k}: batch ok={} predict ok={}", r.is_ok(), s.is_ok()),
        }
    }
    assert!(got[3].is_err() && got.iter().filter(|r| r.is_ok()).count() == 6);
    // The PySDK client's JPEG frames (its default) decode on our server exactly as on its own:
    // the same results from both servers (the int8 model aside, see above).
    let ours = start_server(zoo_dir.path(), Protocol::Asio);
    let float_models: Vec<&str> = MODELS.iter().copied().filter(|m| !m.contains("_quant_")).collect();
    let tmp = tempfile::tempdir().unwrap();
    let theirs = run_pysdk_client(&peer, tmp.path(), &asio, &float_models, "JPEG");
    let mine = run_pysdk_client(&peer, tmp.path(), &format!("127.0.0.1:{}", ours.asio_addr().unwrap().port()), &float_models, "JPEG");
    for m in &float_models {
        for img in IMAGES {
            let got: Vec<Value> = mine["results"][m][img].as_array().cloned().unwrap_or_default();
            if let Err(e) = compare(&got, &theirs["results"][m][img], &format!("PySDK JPEG frames, our server vs PySDK's: {m} {img}")) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
