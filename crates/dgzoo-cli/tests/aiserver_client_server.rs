//! Our AI-server client against our AI server, over asio and over http/WebSocket: listing,
//! model info, label dictionaries, and predictions equal to the PySDK golden results.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use dgzoo_server::aiserver::Protocol;
use serde_json::{json, Value};

fn addresses(server: &dgzoo_server::aiserver::Server) -> Vec<String> {
    vec![format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", server.http_addr().unwrap().port())]
}

#[test]
fn list_info_labels_over_both_protocols() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Both);
    let local = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    for addr in addresses(&server) {
        let zoo = Zoo::connect(&addr, "", "").unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let names = zoo.list_names(&Filters::default()).unwrap();
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
        assert_eq!(zoo.list_names(&f).unwrap().len(), 2, "{addr}");
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
            let r = dgzoo::model::predict(&model, &input).unwrap_or_else(|e| panic!("{addr} {m} {img}: {e}"));
            let what = format!("{addr} {m} {img}");
            let res = if LOCAL_REFERENCE.contains(m) {
                let l = dgzoo::model::predict(&local_model, &input).unwrap();
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
        let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        assert_eq!(r.results.len(), 2, "{addr}");
        assert_eq!(r.results[0]["label"], json!("Egyptian cat"), "{addr}");
        // Model-sized raw pixels (the model's raw input for dg_predict) travel as JPEG too.
        let px = dgzoo::image_ops::decode(&bytes).unwrap();
        assert_eq!((px.width, px.height), (224, 224));
        let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&px.data)]).unwrap();
        assert_eq!(r.results[0]["label"], json!("Egyptian cat"), "{addr}");
        // Changing a property re-opens the stream with the new parameters.
        model.set_property("output_top_k", &json!(3)).unwrap();
        model.set_property("measure_time", &json!(true)).unwrap();
        let r = dgzoo::model::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        assert_eq!(r.results.len(), 3);
        let t = r.timing.expect("timing from the server");
        assert!(t["CoreInferenceDuration_ms"].as_f64().unwrap() > 0.0);
        // Batch (pipelined on one stream) keeps the frame order.
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
        let e = dgzoo::model::predict(&raw, &[dgzoo::inference::Input::Bytes(b"not an image")]).unwrap_err();
        assert!(e.message.starts_with(&format!("Failed to perform model '{}' inference: ", MODELS[5])), "{}", e.message);
        assert!(e.message.contains("Cannot reshape"), "{}", e.message);
        let bytes = std::fs::read(image("girls_256.jpg")).unwrap();
        let r = dgzoo::model::predict(&raw, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
        compare(&to_golden_form(&r), &golden(MODELS[5], "girls_256.jpg"), "after error").unwrap();
        // output_class_set is applied on the client.
        raw.set_property("output_class_set", &json!(["FEMALE_BREAST_COVERED"])).unwrap();
        let r = dgzoo::model::predict(&raw, &[dgzoo::inference::Input::Bytes(&bytes)]).unwrap();
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

type Outcome = dgzoo::Result<dgzoo::inference::InferenceResult>;

fn frames_of(images: &[&str]) -> Vec<Vec<dgzoo::pipeline::OwnedInput>> {
    images.iter().map(|i| vec![dgzoo::pipeline::OwnedInput::Bytes(std::fs::read(image(i)).unwrap())]).collect()
}

fn predict_each(model: &dgzoo::model::Model, frames: &[Vec<dgzoo::pipeline::OwnedInput>]) -> Vec<Outcome> {
    frames.iter().map(|f| dgzoo::model::predict(model, &f.iter().map(|i| i.as_input()).collect::<Vec<_>>())).collect()
}

fn assert_same(got: &[Outcome], want: &[Outcome]) {
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Ok(g), Ok(w)) => assert_eq!(g.results, w.results, "frame {k}"),
            (Err(g), Err(w)) => assert_eq!((g.code, &g.message), (w.code, &w.message), "frame {k}"),
            _ => panic!("frame {k}: batch gave {:?}, predict gave {:?}", g.as_ref().map(|_| ()), w.as_ref().map(|_| ())),
        }
    }
}

#[test]
fn batch_pipelines_frames_on_one_stream() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    let direct = format!("127.0.0.1:{}", server.asio_addr().unwrap().port());
    const DEPTH: usize = 4;
    let proxy = StreamProxy::start(&direct, DEPTH);
    let params = json!({"frame_queue_depth": DEPTH, "input_image_format": "RAW"});
    let reference = Zoo::connect(&direct, "", "").unwrap().load_model(MODELS[5], &params).unwrap();
    let model = Zoo::connect(&proxy.addr, "", "").unwrap().load_model(MODELS[5], &params).unwrap();
    let images: Vec<&str> = IMAGES.iter().copied().cycle().take(11).collect();
    let frames = frames_of(&images);
    let want = predict_each(&reference, &frames);
    assert!(want.iter().all(Result::is_ok));
    let got = dgzoo::pipeline::predict_batch(&model, frames.clone()).unwrap();
    assert_same(&got, &want);
    // One stream, filled up to the model's frame queue depth and never past it.
    assert_eq!(proxy.streams(), 1);
    assert_eq!(proxy.max_in_flight(), DEPTH);

    // A frame the server cannot use fails alone, with predict's error; the stream goes on.
    proxy.reset();
    let mut frames = frames;
    frames[4] = vec![dgzoo::pipeline::OwnedInput::Bytes(b"not an image".to_vec())];
    frames[7] = vec![dgzoo::pipeline::OwnedInput::Bytes(vec![0u8; 100])];
    let want = predict_each(&reference, &frames);
    let got = dgzoo::pipeline::predict_batch(&model, frames).unwrap();
    assert_same(&got, &want);
    for k in [4, 7] {
        let e = got[k].as_ref().unwrap_err();
        assert_eq!(e.code, dgzoo::Code::Inference);
        assert!(e.message.starts_with(&format!("Failed to perform model '{}' inference: ", MODELS[5])), "{}", e.message);
        assert!(e.message.contains("Cannot reshape"), "{}", e.message);
    }
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 9);
    assert_eq!(proxy.streams(), 1);
}

#[test]
fn batch_timeout_fails_frames_in_flight_then_a_new_stream() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    let proxy = StreamProxy::start(&format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), 2);
    let model = Zoo::connect(&proxy.addr, "", "").unwrap().load_model(MODELS[2], &json!({"frame_queue_depth": 2, "inference_timeout_s": 1})).unwrap();
    let frames = frames_of(&["cat_224.jpg"; 4]);
    proxy.hold(true);
    let t0 = std::time::Instant::now();
    let got = dgzoo::pipeline::predict_batch(&model, frames.clone()).unwrap();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
    for r in &got {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code, dgzoo::Code::Timeout);
        assert!(
            e.message.starts_with(&format!(
                "Failed to perform model '{}' inference: [CRITICAL]Timeout detected\nTimeout 1000 ms waiting for response from AI server '{}'",
                MODELS[2], proxy.addr
            )),
            "{}",
            e.message
        );
    }
    // Two frames in flight per stream: the second pair went on a new stream.
    assert_eq!(proxy.streams(), 2);
    proxy.hold(false);
    let got = dgzoo::pipeline::predict_batch(&model, frames).unwrap();
    assert!(got.iter().all(|r| r.as_ref().is_ok_and(|r| r.results[0]["label"] == json!("Egyptian cat"))));
    assert_eq!(proxy.streams(), 3);
}

#[test]
fn async_cancel_and_drop_do_not_wait_for_a_hung_server() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    let proxy = StreamProxy::start(&format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), 4);
    let model = Zoo::connect(&proxy.addr, "", "").unwrap().load_model(MODELS[2], &json!({"frame_queue_depth": 4, "inference_timeout_s": 60})).unwrap();
    let bytes = std::fs::read(image("cat_224.jpg")).unwrap();
    let delivered: Arc<Mutex<Vec<(u64, Outcome)>>> = Arc::default();
    let d = delivered.clone();
    let p = dgzoo::pipeline::AsyncPredictor::new(model.clone(), 8, Box::new(move |id, r| d.lock().unwrap().push((id, r)))).unwrap();
    proxy.hold(true);
    for id in 0..8 {
        p.submit(id, vec![dgzoo::pipeline::OwnedInput::Bytes(bytes.clone())]).unwrap();
    }
    let t0 = Instant::now();
    while proxy.max_in_flight() < 4 {
        assert!(t0.elapsed() < Duration::from_secs(10), "frames never reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.max_in_flight(), 4, "never more than frame_queue_depth in flight");
    let t0 = Instant::now();
    p.cancel();
    p.wait();
    assert!(t0.elapsed() < Duration::from_secs(2), "cancel waited for the server: {:?}", t0.elapsed());
    {
        let got = delivered.lock().unwrap();
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert!(got.iter().all(|(_, r)| r.as_ref().is_err_and(|e| e.code == dgzoo::Code::Cancelled)));
    }
    // The predictor goes on, on a new stream.
    proxy.hold(false);
    p.submit(8, vec![dgzoo::pipeline::OwnedInput::Bytes(bytes.clone())]).unwrap();
    p.wait();
    assert!(delivered.lock().unwrap()[8].1.as_ref().is_ok_and(|r| r.results[0]["label"] == json!("Egyptian cat")));
    assert_eq!(proxy.streams(), 2);
    // Dropping waits for the frames in flight, only as long as the inference timeout.
    model.set_property("inference_timeout_s", &json!(1)).unwrap();
    proxy.hold(true);
    for id in 9..12 {
        p.submit(id, vec![dgzoo::pipeline::OwnedInput::Bytes(bytes.clone())]).unwrap();
    }
    let t0 = Instant::now();
    drop(p);
    assert!(t0.elapsed() < Duration::from_secs(5), "drop hung: {:?}", t0.elapsed());
    let got = delivered.lock().unwrap();
    assert_eq!(got.len(), 12);
    assert!(got[9..].iter().all(|(_, r)| r.as_ref().is_err_and(|e| e.code == dgzoo::Code::Timeout)));
}

#[test]
fn batch_on_a_model_the_server_lost_fails_each_frame_without_waiting() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    let addr = format!("127.0.0.1:{}", server.asio_addr().unwrap().port());
    let zoo = Zoo::connect(&addr, "", "").unwrap();
    let model = zoo.load_model(MODELS[2], &json!({"frame_queue_depth": 3, "inference_timeout_s": 60})).unwrap();
    std::fs::remove_dir_all(zoo_dir.path().join(MODELS[2])).unwrap();
    zoo.ai_server().unwrap().zoo_manage(json!({"rescan": true})).unwrap();
    // The stream-open failure arrives as the first result; the server ignores the rest of the
    // stream, so the frames in flight on it fail with the same text instead of timing out.
    let frames = frames_of(&["cat_224.jpg"; 5]);
    let want = predict_each(&model, &frames[..1]).pop().unwrap().unwrap_err();
    assert!(want.message.contains(&format!("Cannot find the model in the model zoo with name = {}", MODELS[2])), "{}", want.message);
    let t0 = std::time::Instant::now();
    let got = dgzoo::pipeline::predict_batch(&model, frames).unwrap();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
    for r in &got {
        let e = r.as_ref().unwrap_err();
        assert_eq!((e.code, &e.message), (want.code, &want.message));
    }
}
