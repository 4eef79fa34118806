//! An AI server with a cloud zoo: our client lists the zoo from a cloud hub (our dg-zoo-server
//! compatible hub on 127.0.0.1) and runs `org/zoo/<model>` on our AI server, which fetches the
//! model from the hub into its own model cache.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use aiserver_common::{compare, golden, image, to_golden_form};
use cloud_common::{cache_cfg, hub_root, hub_url, start_hub, BLAZE, EFF_F, ORG, TOKEN, YOLO, ZOONAME};
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::{ConnectOptions, Zoo};
use dgzoo_server::aiserver::{Config, Protocol, Server};
use serde_json::{json, Value};

#[test]
fn ai_server_runs_cloud_zoo_models() {
    let root = hub_root(&[EFF_F, YOLO, BLAZE]);
    let hub = start_hub(root.path());
    let (own_zoo, server_cache, client_cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = Config::new(own_zoo.path());
    cfg.port = 0;
    cfg.protocol = Protocol::Both;
    cfg.quiet = true;
    cfg.cache = Some(cache_cfg(server_cache.path()));
    let server = Server::start(cfg).unwrap();
    let opts = ConnectOptions { cache: Some(cache_cfg(client_cache.path())), offline: None, ..Default::default() };
    for addr in [format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", server.http_addr().unwrap().port())] {
        let zoo = Zoo::connect_with(&addr, &hub_url(&hub), TOKEN, &opts).unwrap_or_else(|e| panic!("{addr}: {e}"));
        let mut want = vec![BLAZE.to_string(), EFF_F.to_string(), YOLO.to_string()];
        want.sort();
        assert_eq!(zoo.list_names(&Filters::default()).unwrap(), want, "{addr}");
        // Devices are the AI server's.
        assert!(zoo.system_info()["Devices"].get("TFLITE/CPU").is_some());
        let model = zoo.load_model(YOLO, &json!({"input_image_format": "RAW"})).unwrap();
        assert_eq!(model.name(), format!("{ORG}/{ZOONAME}/{YOLO}"));
        assert_eq!(model.labels().get(&1).map(String::as_str), Some("FACE_FEMALE"), "labels come from the cloud");
        for img in ["girls_256.jpg", "car_416.jpg"] {
            let bytes = std::fs::read(image(img)).unwrap();
            let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{addr} {img}: {e}"));
            compare(&to_golden_form(&r), &golden(YOLO, img), &format!("{addr} {img}")).unwrap();
        }
        let blaze = zoo.load_model(BLAZE, &json!({"input_image_format": "RAW"})).unwrap();
        let bytes = std::fs::read(image("cat_224.jpg")).unwrap();
        let r = dgzoo::model::predict(&blaze, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        compare(&to_golden_form(&r), &golden(BLAZE, "cat_224.jpg"), &format!("{addr} blazeface")).unwrap();
        // A model the hub does not have.
        assert!(zoo.load_model("no_such_model", &Value::Null).is_err());
    }
    // The server fetched each model once into its own cache.
    let cached: Vec<String> = std::fs::read_dir(server_cache.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!cached.is_empty(), "the server's model cache is empty");

    // A stream naming a cloud model with a bad token fails with the hub's error, and the
    // server's paths stay out of the text.
    let client = dgzoo::zoo::aiserver::AiServerClient::new(
        dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{}", server.asio_addr().unwrap().port())).unwrap(),
    );
    let cfg = json!({"CloudURL": format!("http://{}", hub.addr()), "CloudToken": "wrong"});
    let mut s = client.open_stream(&format!("{ORG}/{ZOONAME}/{EFF_F}"), &cfg).unwrap();
    s.send_frame(&[vec![0u8; 4]]).unwrap();
    let msg = dgzoo::protocol::decode_results(&s.recv(std::time::Duration::from_secs(60)).unwrap()).unwrap().unwrap_err();
    assert!(msg.starts_with("[ERROR]") && msg.contains("Token is not valid"), "{msg}");
    assert!(msg.contains(&format!("When loading model '{ORG}/{ZOONAME}/{EFF_F}'")), "{msg}");
    assert!(!msg.contains(server_cache.path().to_str().unwrap()), "{msg}");
}

const PYSDK_CLOUD_SCRIPT: &str = r#"
import json, sys
import degirum as dg
addr, zoo_url, token, model, image = sys.argv[1:6]
zoo = dg.connect(addr, zoo_url, token)
m = zoo.load_model(model, input_image_format="RAW")
print("RESULT-JSON " + json.dumps({"names": zoo.list_models(), "name": m.model_info.CloudURL, "results": m.predict(image).results}))
"#;

/// The real PySDK on either side: its client runs cloud models on our AI server, and our
/// client runs them on its AI server; both servers fetch them from our hub.
#[test]
fn pysdk_with_ai_server_and_cloud_zoo() {
    let Some(peer) = aiserver_common::peer("pysdk_with_ai_server_and_cloud_zoo") else { return };
    let yolo_onnx = "yolov8n_nudenet--320x320_float_onnx_cpu_1";
    let root = hub_root(&[YOLO, yolo_onnx]);
    let hub = start_hub(root.path());
    let (own_zoo, server_cache, client_cache, peer_home, tmp) =
        (aiserver_common::clean_zoo(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let girls = image("girls_256.jpg");
    let mut cfg = Config::new(own_zoo.path());
    cfg.port = 0;
    cfg.protocol = Protocol::Both;
    cfg.quiet = true;
    cfg.cache = Some(cache_cfg(server_cache.path()));
    let ours = Server::start(cfg).unwrap();
    // PySDK client → our server.
    let script = tmp.path().join("cloud_client.py");
    std::fs::write(&script, PYSDK_CLOUD_SCRIPT).unwrap();
    for addr in [format!("127.0.0.1:{}", ours.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", ours.http_addr().unwrap().port())] {
        let out = std::process::Command::new(peer.join("venv/bin/python"))
            .arg(&script)
            .args([addr.as_str(), &hub_url(&hub), TOKEN, yolo_onnx, girls.to_str().unwrap()])
            .env("LD_LIBRARY_PATH", aiserver_common::peer_ld_path(&peer))
            .env("HOME", peer_home.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT-JSON "))
            .unwrap_or_else(|| panic!("PySDK client on {addr}: {}", String::from_utf8_lossy(&out.stderr)));
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["names"], json!([yolo_onnx, YOLO]), "{addr}");
        assert_eq!(v["name"], json!(format!("http://{}", hub.addr())));
        compare(v["results"].as_array().unwrap(), &golden(yolo_onnx, "girls_256.jpg"), &format!("PySDK client, our server {addr}")).unwrap();
    }
    // Our client → PySDK's server (its cloud cache under a temporary HOME).
    let theirs = aiserver_common::start_peer_server(&peer, own_zoo.path(), &[("HOME", peer_home.path())]);
    let opts = ConnectOptions { cache: Some(cache_cfg(client_cache.path())), offline: None, ..Default::default() };
    for addr in [format!("127.0.0.1:{}", theirs.port), format!("http://127.0.0.1:{}", theirs.port + 1)] {
        let zoo = Zoo::connect_with(&addr, &hub_url(&hub), TOKEN, &opts).unwrap_or_else(|e| panic!("{addr}: {e}"));
        let model = zoo.load_model(yolo_onnx, &json!({"input_image_format": "RAW"})).unwrap();
        let bytes = std::fs::read(&girls).unwrap();
        let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{addr}: {e}"));
        compare(&to_golden_form(&r), &golden(yolo_onnx, "girls_256.jpg"), &format!("our client, PySDK server {addr}")).unwrap();
    }
}
