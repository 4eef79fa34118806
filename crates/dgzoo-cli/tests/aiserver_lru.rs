//! The AI server's LRU limit on loaded models: idle least recently used models are unloaded
//! when the loaded model files exceed the limit; a model a stream is using never is.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::aiserver::AiServerClient;
use dgzoo_server::aiserver::{Config, Protocol, Server};
use serde_json::{json, Value};

const EFF_ONNX: &str = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1"; // 18.5 MB
const YOLO_ONNX: &str = "yolov8n_nudenet--320x320_float_onnx_cpu_1"; // 12.1 MB
const BLAZE: &str = "blazeface_short_range--128x128_float_tflite_cpu_1"; // 0.2 MB

fn loaded(client: &AiServerClient) -> Vec<String> {
    let v: Value = client.zoo_manage(json!({"cache_dump": 1})).unwrap();
    // One entry per model and device: "RUNTIME/DEVICE: model file" once per model.
    let name = |a: &Value| {
        format!("{}/{}: {}", a["AgentType"].as_str().unwrap(), a["DeviceType"].as_str().unwrap(), a["ModelPath"].as_str().unwrap().rsplit('/').next().unwrap())
    };
    let mut l: Vec<String> = v["AgentList"].as_array().unwrap().iter().map(name).collect();
    l.sort();
    l.dedup();
    l
}

fn one_frame(client: &AiServerClient, model: &str) -> dgzoo::zoo::aiserver::RemoteStream {
    let mut s = client.open_stream(model, &json!({})).unwrap();
    let img = std::fs::read(image("cat_224.jpg")).unwrap();
    // A model-sized RAW frame is not needed here: any frame makes the server load the model;
    // the answer (a result or a per-frame error) is read to be sure it ran.
    s.send_frame(&[img]).unwrap();
    s.recv(std::time::Duration::from_secs(60)).unwrap();
    s
}

#[test]
fn idle_models_are_unloaded_least_recently_used_first() {
    let zoo = clean_zoo();
    let mut cfg = Config::new(zoo.path());
    cfg.port = 0;
    cfg.protocol = Protocol::Asio;
    cfg.quiet = true;
    cfg.max_model_bytes = 20 << 20;
    let server = Server::start(cfg).unwrap();
    let port = server.asio_addr().unwrap().port();
    let client = AiServerClient::new(ServerAddress { host: "127.0.0.1".into(), port, http: false });

    one_frame(&client, EFF_ONNX).close();
    assert_eq!(loaded(&client), [format!("ONNX/CPU: {EFF_ONNX}.onnx")]);
    // 18.5 + 0.2 MB fit; 18.5 + 12.1 do not: the idle EfficientNet (least recent) goes.
    one_frame(&client, BLAZE).close();
    assert_eq!(loaded(&client).len(), 2);
    one_frame(&client, YOLO_ONNX).close();
    assert_eq!(loaded(&client), [format!("ONNX/CPU: {YOLO_ONNX}.onnx"), format!("TFLITE/CPU: {BLAZE}.tflite")]);

    // A model in use stays loaded even past the limit.
    let held = one_frame(&client, YOLO_ONNX);
    one_frame(&client, EFF_ONNX).close();
    let now = loaded(&client);
    assert!(now.contains(&format!("ONNX/CPU: {YOLO_ONNX}.onnx")), "{now:?}");
    assert!(now.contains(&format!("ONNX/CPU: {EFF_ONNX}.onnx")), "the newest model stays: {now:?}");
    held.close();
}
