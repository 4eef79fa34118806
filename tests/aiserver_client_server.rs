//! Our AI-server client against our AI server, over asio and over http/WebSocket: listing,
//! model info, label dictionaries, and predictions equal to the PySDK golden results.
mod aiserver_common;
use aiserver_common::*;
use dgzoo::server::Protocol;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};

fn addresses(server: &dgzoo::server::Server) -> Vec<String> {
    vec![format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", server.http_addr().unwrap().port())]
}

#[test]
fn list_info_labels_over_both_protocols() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Both);
    let local = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    for addr in addresses(&server) {
        let zoo = Zoo::connect(&addr, "", "").unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let names = zoo.list_names(&Filters::default());
        assert_eq!(names, MODELS.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{addr}");
        // The server's listing keeps file names relative, otherwise it is the local full form.
        let info = zoo.model_info(MODELS[3]).unwrap();
        assert_eq!(info["MODEL_PARAMETERS"][0]["ModelPath"], json!(format!("{}.tflite", MODELS[3])), "{addr}");
        assert_eq!(info["POST_PROCESS"][0]["LabelsPath"], json!("labels_ImageNet.json"));
        let mut local_info = local.model_info(MODELS[3]).unwrap();
        local_info["MODEL_PARAMETERS"][0]["ModelPath"] = info["MODEL_PARAMETERS"][0]["ModelPath"].clone();
        local_info["POST_PROCESS"][0]["LabelsPath"] = info["POST_PROCESS"][0]["LabelsPath"].clone();
        assert_eq!(info, local_info, "{addr}");
        assert_eq!(zoo.model_info("no_such_model").unwrap_err().message, format!("Model 'no_such_model' is not found in model zoo '{addr}'"));
        // Filters run on the server's listing with the server's devices.
        let f = Filters::from_json(&json!({"runtime": "ONNX"})).unwrap();
        assert_eq!(zoo.list_names(&f).len(), 2, "{addr}");
        assert!(zoo.system_info()["Devices"].get("TFLITE/CPU").is_some());
        let client = zoo.ai_server().unwrap();
        let labels = client.label_dictionary(MODELS[3]).unwrap();
        assert_eq!(labels["285"], json!("Egyptian cat"));
        assert_eq!(client.label_dictionary(MODELS[0]).unwrap(), json!({}));
        let e = client.label_dictionary("nope").unwrap_err().message;
        assert!(e.contains("Cannot find the model in the model zoo with name = nope"), "{e}");
        if addr.starts_with("http") {
            assert!(e.starts_with(&format!("Error sending HTTP request '/v1/label_dictionary/nope' to {addr}: Internal Server Error(500) ")), "{e}");
        }
        client.ping().unwrap();
        // Unknown model: asio reports it as the first result, http as the configuration reply.
        let msg = match client.open_stream("no_such_model", &json!({})) {
            Err(e) => e.message,
            Ok(mut s) => {
                s.send_frame(&[vec![1]]).unwrap();
                dgzoo::protocol::decode_results(&s.recv(std::time::Duration::from_secs(30)).unwrap()).unwrap().unwrap_err()
            }
        };
        assert!(msg.contains("Cannot find the model in the model zoo with name = no_such_model"), "{addr}: {msg}");
        if addr.starts_with("http") {
            assert!(msg.starts_with("Error configuring model no_such_model on AI server http://"), "{msg}");
        }
        let m = zoo.load_model(MODELS[3], &Value::Null).unwrap();
        assert_eq!(m.labels().get(&285).map(String::as_str), Some("Egyptian cat"));
        // AI-server models default to JPEG frames.
        assert_eq!(m.state().params.str("InputImgFmt", 0), "JPEG");
    }
    server.shutdown();
}

/// The int8 EfficientNet runs on our local TFLite engine with scores a few 1e-3 away from
/// PySDK's (a property of the local engine, not of the server): for it the server's RAW
/// results must equal our local inference exactly, and the top class must equal the golden.
const LOCAL_REFERENCE: &[&str] = &["efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1"];

fn predict_all(addr: &str, zoo_dir: &std::path::Path, models: &[&str]) {
    let zoo = Zoo::connect(addr, "", "").unwrap();
    let local = Zoo::connect("@local", zoo_dir.to_str().unwrap(), "").unwrap();
    let mut failures = Vec::new();
    for m in models {
        let model = zoo.load_model(m, &json!({"input_image_format": "RAW"})).unwrap();
        let local_model = local.load_model(m, &Value::Null).unwrap();
        for img in IMAGES {
            let bytes = std::fs::read(image(img)).unwrap();
            let input = [dgzoo::inference::Input::Bytes(&bytes)];
            let r = dgzoo::inference::predict(&model, &input).unwrap_or_else(|e| panic!("{addr} {m} {img}: {e}"));
            let what = format!("{addr} {m} {img}");
            let res = if LOCAL_REFERENCE.contains(m) {
                let l = dgzoo::inference::predict(&local_model, &input).unwrap();
                let g = golden(m, img);
                assert_eq!(r.results[0]["category_id"], g[0]["category_id"], "{what}: top class");
                (r.results == l.results).then_some(()).ok_or_else(|| format!("{what}: {:?} != local {:?}", r.results, l.results))
            } else {
                compare(&to_golden_form(&r), &golden(m, img), &what)
            };
            if let Err(e) = res {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn predict_raw_matches_golden_over_asio() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    predict_all(&format!("asio://127.0.0.1:{}", server.asio_addr().unwrap().port()), zoo_dir.path(), MODELS);
}

#[test]
fn predict_raw_matches_golden_over_http() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Http);
    predict_all(&format!("http://127.0.0.1:{}", server.http_addr().unwrap().port()), zoo_dir.path(), MODELS);
}

#[test]
fn jpeg_frames_batch_async_and_errors() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Both);
    for addr in addresses(&server) {
        let zoo = Zoo::connect(&addr, "", "").unwrap();
        // JPEG (the default) loses a little, but the cat stays the top class.
        let model = zoo.load_model(MODELS[2], &json!({"output_top_k": 2})).unwrap();
        let bytes = std::fs::read(image("cat_224.jpg")).unwrap();
        let r = dgzoo::inference::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        assert_eq!(r.results.len(), 2, "{addr}");
        assert_eq!(r.results[0]["label"], json!("Egyptian cat"), "{addr}");
        // Model-sized raw pixels (the model's raw input for dg_predict) travel as JPEG too.
        let px = dgzoo::image_ops::decode(&bytes).unwrap();
        assert_eq!((px.width, px.height), (224, 224));
        let r = dgzoo::inference::predict(&model, &[dgzoo::inference::Input::Bytes(&px.data)]).unwrap();
        assert_eq!(r.results[0]["label"], json!("Egyptian cat"), "{addr}");
        // Changing a property re-opens the stream with the new parameters.
        model.set_property("output_top_k", &json!(3)).unwrap();
        model.set_property("measure_time", &json!(true)).unwrap();
        let r = dgzoo::inference::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        assert_eq!(r.results.len(), 3);
        let t = r.timing.expect("timing from the server");
        assert!(t["CoreInferenceDuration_ms"].as_f64().unwrap() > 0.0);
        // Batch (pipelined on several streams) keeps the frame order.
        let frames: Vec<Vec<dgzoo::pipeline::OwnedInput>> =
            IMAGES.iter().cycle().take(9).map(|i| vec![dgzoo::pipeline::OwnedInput::Bytes(std::fs::read(image(i)).unwrap())]).collect();
        let model = zoo.load_model(MODELS[5], &json!({"input_image_format": "RAW"})).unwrap();
        let out = dgzoo::pipeline::predict_batch(&model, frames).unwrap();
        for (k, r) in out.into_iter().enumerate() {
            let img = IMAGES[k % 3];
            compare(&to_golden_form(&r.unwrap()), &golden(MODELS[5], img), &format!("batch {k}")).unwrap();
        }
        // A frame the server cannot use is a per-frame error with PySDK's text; the model goes on.
        let raw = zoo.load_model(MODELS[5], &json!({"input_image_format": "RAW"})).unwrap();
        let e = dgzoo::inference::predict(&raw, &[dgzoo::inference::Input::Bytes(b"not an image")]).unwrap_err();
        assert!(e.message.starts_with(&format!("Failed to perform model '{}' inference: ", MODELS[5])), "{}", e.message);
        assert!(e.message.contains("Cannot reshape"), "{}", e.message);
        let bytes = std::fs::read(image("girls_256.jpg")).unwrap();
        let r = dgzoo::inference::predict(&raw, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        compare(&to_golden_form(&r), &golden(MODELS[5], "girls_256.jpg"), "after error").unwrap();
        // output_class_set is applied on the client.
        raw.set_property("output_class_set", &json!(["FEMALE_BREAST_COVERED"])).unwrap();
        let r = dgzoo::inference::predict(&raw, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        assert_eq!(r.results.len(), 1);
    }
}

#[test]
fn connection_failure_has_pysdk_text() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = Zoo::connect(&format!("127.0.0.1:{port}"), "", "").unwrap_err();
    assert_eq!(e.message, format!("[ERROR]OS error\nError connecting to 127.0.0.1:{port} after 3 retries with timeout 10 s: Connection refused\n"));
    assert_eq!(e.code, dgzoo::Code::Network);
    let e = Zoo::connect(&format!("http://127.0.0.1:{port}"), "", "").unwrap_err();
    assert_eq!(e.message, format!("Error sending HTTP request '/v1/modelzoo' to http://127.0.0.1:{port}: Connection refused"));
}

#[test]
fn inference_timeout_has_pysdk_text() {
    // A listener that accepts and never answers stands in for a hung server.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let client = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap());
    let mut s = client.open_stream(MODELS[3], &json!({})).unwrap();
    s.send_frame(&[vec![1, 2, 3]]).unwrap();
    let t0 = std::time::Instant::now();
    let e = s.recv(std::time::Duration::from_millis(500)).unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert!(e.message.contains(&format!("Timeout 500 ms waiting for response from AI server '127.0.0.1:{port}'")), "{}", e.message);
    assert!(e.message.contains("[CRITICAL]"));
    assert_eq!(e.code, dgzoo::Code::Timeout);
}
