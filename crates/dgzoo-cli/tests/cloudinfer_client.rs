//! Our `@cloud` client against our hub's socket.io cloud inference (no peer needed): golden
//! results, pipelined batches, refused connections (wrong token, unknown model), malformed
//! packets, a client dropping mid-stream, and a hub restarted during a stream.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::cloud::infer::{Endpoint, Session};
use dgzoo::cloud::CloudClient;
use dgzoo::inference::Input;
use dgzoo::model::predict as run;
use dgzoo::socketio::{self, Packet};
use dgzoo::zoo::address::parse_cloud_url;
use dgzoo::zoo::{ConnectOptions, Zoo};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cloud_connect(url: &str, token: &str, cache: &std::path::Path) -> dgzoo::Result<Zoo> {
    Zoo::connect_with("@cloud", url, token, &ConnectOptions { cache: Some(cache_cfg(cache)), offline: None, ..Default::default() })
}

fn results(m: &dgzoo::model::Model, img: &str) -> Value {
    let r = run(m, &[Input::Bytes(&image(img))]).unwrap_or_else(|e| panic!("predict {img}: {}", e.message));
    serde_json::to_value(&r.results).unwrap()
}

const IMAGES: [&str; 3] = ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"];

#[test]
fn our_client_predicts_through_our_hub() {
    let root = hub_root(&[EFF_F, EFF_ONNX, YOLO]);
    let hub = start_hub(root.path());
    let cache = tempfile::tempdir().unwrap();
    let zoo = cloud_connect(&hub_url(&hub), TOKEN, cache.path()).unwrap();
    let mut names = vec![EFF_F, EFF_ONNX, YOLO];
    names.sort();
    assert_eq!(zoo.list_names(&Default::default()).unwrap(), names);
    assert!(zoo.supported_device_types().contains(&"TFLITE/CPU".to_string()), "devices from the hub's system-info");
    for m in [EFF_F, EFF_ONNX, YOLO] {
        let model = zoo.load_model(m, &json!({"input_image_format": "RAW"})).unwrap();
        assert_eq!(model.name(), format!("{ORG}/{ZOONAME}/{m}"));
        // PySDK: a cloud model's devices_available is range(64).
        assert_eq!(model.get_property("devices_available").unwrap(), json!((0..64).collect::<Vec<u64>>()));
        for img in IMAGES {
            assert_close(&results(&model, img), &golden(m, img), 1e-4, &format!("cloud {m} {img}"));
        }
    }
    // JPEG frames, the cloud default.
    let model = zoo.load_model(EFF_F, &Value::Null).unwrap();
    assert_eq!(results(&model, "cat_224.jpg")[0]["label"], golden(EFF_F, "cat_224.jpg")[0]["label"]);
    // Pipelined: 12 frames on one connection with a queue depth of 4, delivered in order.
    let model = zoo.load_model(YOLO, &json!({"input_image_format": "RAW", "frame_queue_depth": 4})).unwrap();
    let imgs: Vec<Vec<u8>> = IMAGES.iter().cycle().take(12).map(|i| image(i)).collect();
    let frames: Vec<Vec<Input>> = imgs.iter().map(|b| vec![Input::Bytes(b)]).collect();
    let mut got = Vec::new();
    dgzoo::model::cloud_predict_batch(&model, &frames, |i, r| got.push((i, serde_json::to_value(&r.results).unwrap()))).unwrap();
    assert_eq!(got.len(), 12);
    for (k, (i, v)) in got.iter().enumerate() {
        assert_eq!(*i, k);
        assert_close(v, &golden(YOLO, IMAGES[k % 3]), 1e-4, &format!("batch frame {k}"));
    }
    // The async pipeline works on cloud models like on any other.
    assert!(model.is_remote());
}

#[test]
fn cloud_errors_match_pysdk() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let cache = tempfile::tempdir().unwrap();
    let url = hub_url(&hub);
    let e = cloud_connect(&url, "wrong-token", cache.path()).unwrap_err();
    assert_eq!(e.message, format!("Unable to connect to server {}: Token is not valid", hub.addr()));
    let e = Zoo::connect("@cloud", cache.path().to_str().unwrap(), "").unwrap_err();
    assert_eq!(e.message, format!("ZooManager: incorrect cloud model zoo URL '{}'", cache.path().display()));
    let zoo = cloud_connect(&url, TOKEN, cache.path()).unwrap();
    let e = zoo.load_model("nomodel", &Value::Null).unwrap_err();
    assert!(e.message.contains("Model nomodel is not found in model zoo myorg/myzoo"), "{}", e.message);

    // socket.io level: refused CONNECTs fail at once with PySDK's text.
    let zoo_addr = parse_cloud_url(&url).unwrap();
    let ep = Endpoint::from_client(&CloudClient::new(&zoo_addr, TOKEN)).unwrap();
    let auth = |token: &str, model: &str| json!({"token": token, "organization": ORG, "zoo": ZOONAME, "model": model, "model_params": "", "frame_queue_depth": 8, "inference_timeout_s": 10.0, "dg_version": "1.5.0"});
    let t = Instant::now();
    let e = Session::open(ep.clone(), &auth("bad", EFF_F), "m", 10.0, 8).unwrap_err();
    assert_eq!(e.message, format!("Unable to open connection to cloud server {}: Inference connection refused: token is not valid", hub.addr()));
    assert!(t.elapsed() < Duration::from_secs(2), "refusal is final: no retries");
    let e = Session::open(ep.clone(), &auth(TOKEN, "nomodel"), "m", 10.0, 8).unwrap_err();
    assert!(e.message.ends_with("Inference connection refused: model nomodel is not found in model zoo myorg/myzoo"), "{}", e.message);
    let e = Session::open(ep.clone(), &auth(TOKEN, "../x"), "m", 10.0, 8).unwrap_err();
    assert!(e.message.contains("Inference connection refused"), "{}", e.message);
    // A token for another zoo.
    std::fs::write(
        root.path().join("tokens.json"),
        format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/other"]}}, "t2": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}}}"#),
    )
    .unwrap();
    let e = Session::open(ep.clone(), &auth(TOKEN, EFF_F), "m", 10.0, 8).unwrap_err();
    assert!(e.message.ends_with("token does not have access rights to zoo myorg/myzoo"), "{}", e.message);

    // A session with a wrong number of inputs gets an error result, not a dead server.
    let mut s = Session::open(ep.clone(), &auth("t2", EFF_F), "m", 10.0, 8).unwrap();
    s.send(&[vec![1, 2, 3], vec![4]]).unwrap();
    let r = socketio::mp_to_json(&s.recv().unwrap());
    assert_eq!(r["success"], false);
    assert!(r["msg"].as_str().unwrap().contains("frame has 2 input(s)"), "{r}");
    s.send(&[vec![0u8; 10]]).unwrap();
    let r = socketio::mp_to_json(&s.recv().unwrap());
    // model_params "" keeps the zoo's JPEG input format: ten zero bytes are no image.
    assert!(r["msg"].as_str().unwrap().contains("cannot decode image"), "{r}");
    s.close();
}

/// A raw WebSocket to the hub's socket.io endpoint.
fn raw_ws(port: u16, query: &str) -> Result<tungstenite::WebSocket<std::net::TcpStream>, String> {
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://127.0.0.1:{port}/api/v2/socket.io/?{query}");
    tungstenite::client::client(url.as_str(), sock).map(|(ws, _)| ws).map_err(|e| e.to_string())
}

fn read_bin(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Packet {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => return Packet::decode(&b).unwrap(),
            tungstenite::Message::Text(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn malformed_packets_and_dropped_clients_leave_the_hub_serving() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let port = hub.addr().port();
    // The connection cap: a second connection is refused while one is open.
    hub.set_max_inference_connections(1);
    let first = raw_ws(port, "transport=websocket&EIO=4").unwrap();
    let e = raw_ws(port, "transport=websocket&EIO=4").unwrap_err();
    assert!(e.contains("503"), "{e}");
    drop(first);
    let t = Instant::now();
    while hub.inference_connections() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "slot not released");
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.set_max_inference_connections(dgzoo_server::hub::infer::MAX_CONNECTIONS);
    // Long-polling and other Engine.IO versions are refused.
    assert!(raw_ws(port, "transport=polling&EIO=4").is_err());
    assert!(raw_ws(port, "transport=websocket&EIO=3").is_err());
    let mut ws = raw_ws(port, "transport=websocket&EIO=4").unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => assert!(matches!(socketio::parse_control(&t).unwrap(), socketio::Control::Open(v) if v["pingInterval"].is_u64())),
        other => panic!("expected the open packet, got {other:?}"),
    }
    use tungstenite::Message::{Binary, Text};
    for junk in [Binary(vec![]), Binary(vec![0xc1]), Binary(b"\x81\xa4type\xa5hello".to_vec()), Text("zzz".into()), Text("0{".into())] {
        ws.send(junk).unwrap();
    }
    // A frame before CONNECT is answered with an error result under its frame number.
    ws.send(Binary(Packet::event("predict", vec![rmpv::Value::Binary(socketio::encode_frame(&[vec![1]])), rmpv::Value::from("0")]).encode())).unwrap();
    let p = read_bin(&mut ws);
    let (name, args) = p.as_event().unwrap();
    assert_eq!(name, "predict_result");
    assert_eq!(socketio::mp_text(&args[1]).as_deref(), Some("0"));
    assert_eq!(socketio::mp_to_json(&args[0])["success"], false);
    // A large packet before CONNECT (4 MiB of msgpack nils: ~128 MiB once decoded) is refused
    // without being decoded.
    let mut nils = vec![0xdd];
    nils.extend((4u32 << 20).to_be_bytes());
    nils.extend(std::iter::repeat_n(0xc0u8, 4 << 20));
    ws.send(Binary(nils)).unwrap();
    let p = read_bin(&mut ws);
    assert_eq!(p.kind, socketio::CONNECT_ERROR);
    assert!(socketio::mp_to_json(&p.data)["message"].as_str().unwrap().contains("before CONNECT exceeds the limit of 1048576 bytes"), "{:?}", p.data);
    // CONNECT with an auth that is not a map.
    ws.send(Binary(Packet::new(socketio::CONNECT, rmpv::Value::from(5)).encode())).unwrap();
    assert_eq!(read_bin(&mut ws).kind, socketio::CONNECT_ERROR);
    ws.send(Binary(
        Packet::new(
            socketio::CONNECT,
            socketio::mp_from_json(&json!({"token": TOKEN, "organization": ORG, "zoo": ZOONAME, "model": EFF_F, "model_params": "{not json"})),
        )
        .encode(),
    ))
    .unwrap();
    let p = read_bin(&mut ws);
    assert_eq!(p.kind, socketio::CONNECT_ERROR);
    assert!(socketio::mp_to_json(&p.data)["message"].as_str().unwrap().contains("model_params is not valid JSON"));
    // A valid CONNECT, two frames sent, then the client vanishes without reading.
    ws.send(Binary(
        Packet::new(
            socketio::CONNECT,
            socketio::mp_from_json(
                &json!({"token": TOKEN, "organization": ORG, "zoo": ZOONAME, "model": EFF_F, "model_params": r#"{"PRE_PROCESS":[{"InputImgFmt":"JPEG"}]}"#}),
            ),
        )
        .encode(),
    ))
    .unwrap();
    assert_eq!(read_bin(&mut ws).kind, socketio::CONNECT);
    // An image bomb (a valid 1 MiB JPEG declaring 16384x16384) is refused from its header.
    let t = Instant::now();
    ws.send(Binary(Packet::event("predict", vec![rmpv::Value::Binary(socketio::encode_frame(&[jpeg_bomb(16384)])), rmpv::Value::from("bomb")]).encode()))
        .unwrap();
    let p = read_bin(&mut ws);
    let (name, args) = p.as_event().unwrap();
    assert_eq!((name, socketio::mp_text(&args[1]).as_deref()), ("predict_result", Some("bomb")));
    let r = socketio::mp_to_json(&args[0]);
    assert_eq!(r["success"], false, "{r}");
    assert!(r["msg"].as_str().unwrap().contains("Cannot reshape the tensor: received a 16384x16384 image"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let jpeg = dgzoo::image_ops::encode_jpeg(&dgzoo::image_ops::decode(&image("cat_224.jpg")).unwrap(), 95).unwrap();
    for n in 0..2 {
        ws.send(Binary(
            Packet::event("predict", vec![rmpv::Value::Binary(socketio::encode_frame(std::slice::from_ref(&jpeg))), rmpv::Value::from(n.to_string().as_str())])
                .encode(),
        ))
        .unwrap();
    }
    assert_eq!(hub.inference_connections(), 1);
    drop(ws);
    let t = Instant::now();
    while hub.inference_connections() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the hub did not notice the dropped client");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still serving.
    let cache = tempfile::tempdir().unwrap();
    let zoo = cloud_connect(&hub_url(&hub), TOKEN, cache.path()).unwrap();
    let model = zoo.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap();
    assert_close(&results(&model, "cat_224.jpg"), &golden(EFF_F, "cat_224.jpg"), 1e-4, "after a dropped client");
}

fn spawn_hub(root: &std::path::Path, port: u16) -> ChildGuard {
    let child = Command::new(dgzoo_bin())
        .args(["hub", "--port", &port.to_string(), "--zoo"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dgzoo hub");
    let g = ChildGuard(child);
    assert!(wait_port(port, Duration::from_secs(30)), "hub did not start on {port}");
    g
}

#[test]
fn stream_survives_a_hub_restart() {
    let root = hub_root(&[EFF_F]);
    let port = free_port();
    let mut hub = spawn_hub(root.path(), port);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}");
    let zoo = cloud_connect(&url, TOKEN, cache.path()).unwrap();
    let model = zoo.load_model(EFF_F, &json!({"input_image_format": "RAW", "frame_queue_depth": 3})).unwrap();
    let n = 24;
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let imgs: Vec<Vec<u8>> = IMAGES.iter().cycle().take(n).map(|i| image(i)).collect();
        let frames: Vec<Vec<Input>> = imgs.iter().map(|b| vec![Input::Bytes(b)]).collect();
        let mut got = Vec::new();
        let r = dgzoo::model::cloud_predict_batch(&model, &frames, |i, r| {
            got.push((i, serde_json::to_value(&r.results).unwrap()));
            let _ = tx.send(i);
        });
        (r, got)
    });
    // After a few results, kill the hub and start a new one on the same port.
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(120)).expect("first results");
    }
    let _ = hub.0.kill();
    let _ = hub.0.wait();
    // At most `frame_queue_depth` results can be ahead of delivery: the rest must come from
    // re-sent frames on the restarted hub.
    let so_far = 3 + rx.try_iter().count();
    assert!(so_far + 3 < n, "the stream ended before the restart ({so_far} results)");
    hub = spawn_hub(root.path(), port);
    let (r, got) = worker.join().unwrap();
    r.unwrap_or_else(|e| panic!("stream failed across the restart: {}", e.message));
    assert_eq!(got.len(), n);
    for (k, (i, v)) in got.iter().enumerate() {
        assert_eq!(*i, k);
        assert_close(v, &golden(EFF_F, IMAGES[k % 3]), 1e-4, &format!("frame {k}"));
    }
    drop(hub);
}

/// A complete, valid baseline grayscale JPEG of `side` x `side` pixels in about side²/32 bytes
/// (one-symbol Huffman tables: two bits per 8x8 block); see tests/aiserver_limits.rs.
fn jpeg_bomb(side: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0];
    j.extend([1u8; 64]);
    let [hi, lo] = side.to_be_bytes();
    j.extend([0xFF, 0xC0, 0, 11, 8, hi, lo, hi, lo, 1, 1, 0x11, 0]);
    for class in [0x00, 0x10] {
        j.extend([0xFF, 0xC4, 0, 20, class, 1]);
        j.extend([0u8; 16]);
    }
    j.extend([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
    j.extend(std::iter::repeat_n(0u8, (side as usize / 8) * (side as usize / 8) / 4));
    j.extend([0xFF, 0xD9]);
    j
}
