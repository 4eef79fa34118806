//! Our AI server under bad and heavy input: broken packets, bad lengths, non-JSON, unknown ops,
//! wrong versions, frames before configuration, clients vanishing mid-frame, unmasked
//! WebSocket frames and 64 concurrent streams. After each, the server still answers correctly.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::protocol::{self, read_packet, write_packet};
use dgzoo_server::aiserver::Protocol;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const EFF: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";

fn conn(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn send_json(s: &mut TcpStream, v: &Value) {
    write_packet(s, v.to_string().as_bytes()).unwrap();
}

fn reply(s: &mut TcpStream) -> Value {
    let p = read_packet(s, 1 << 26).unwrap().expect("a reply");
    serde_json::from_slice(&p).unwrap()
}

/// A full round trip on a fresh connection proves the server is alive and correct.
fn assert_alive(addr: SocketAddr) {
    let mut s = conn(addr);
    send_json(&mut s, &json!({"VERSION": 4, "op": "label_dictionary", "name": EFF}));
    let r = reply(&mut s);
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(r["label_dictionary"]["285"], json!("Egyptian cat"));
}

fn stream(addr: SocketAddr, model: &str, config: Value) -> TcpStream {
    let mut s = conn(addr);
    send_json(&mut s, &json!({"VERSION": 4, "op": "stream", "name": model, "config": config}));
    s
}

fn frame_result(s: &mut TcpStream, frame: &[u8]) -> Result<Vec<Value>, String> {
    write_packet(s, frame).unwrap();
    let p = read_packet(s, 1 << 26).unwrap().expect("a result");
    protocol::decode_results(&p).unwrap().map(|r| r.0)
}

#[test]
fn command_errors_keep_the_connection_and_server_usable() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Asio);
    let addr = server.asio_addr().unwrap();
    let mut s = conn(addr);
    // Non-JSON.
    write_packet(&mut s, b"{not json").unwrap();
    let r = reply(&mut s);
    assert_eq!(r["success"], json!(false));
    assert_eq!(r["VERSION"], json!(4));
    assert!(r["msg"].as_str().unwrap().contains("Parsing error"), "{r}");
    // A JSON array or an object without op.
    write_packet(&mut s, b"[1,2]").unwrap();
    assert!(reply(&mut s)["msg"].as_str().unwrap().contains("does not contain op"));
    send_json(&mut s, &json!({"VERSION": 4}));
    assert!(reply(&mut s)["msg"].as_str().unwrap().contains("does not contain op"));
    // Unknown op.
    send_json(&mut s, &json!({"VERSION": 4, "op": "fly"}));
    assert!(reply(&mut s)["msg"].as_str().unwrap().starts_with("Unsupported op 'fly' requested from client '127.0.0.1'"));
    // Versions: missing, too old, too new (also for a stream op).
    send_json(&mut s, &json!({"op": "sleep"}));
    assert!(reply(&mut s)["msg"].as_str().unwrap().contains("Protocol version data is missing"));
    send_json(&mut s, &json!({"VERSION": 3, "op": "sleep"}));
    assert!(reply(&mut s)["msg"].as_str().unwrap().contains("older than server-supported version range [4, 4]"));
    send_json(&mut s, &json!({"VERSION": 5, "op": "stream", "name": EFF}));
    let r = reply(&mut s);
    assert!(r["msg"].as_str().unwrap().contains("newer than server-supported version range [4, 4]"), "{r}");
    // An empty packet (the shutdown wake-up) is ignored; the connection still works.
    write_packet(&mut s, b"").unwrap();
    send_json(&mut s, &json!({"VERSION": 4, "op": "sleep", "sleep_time_ms": 0.0}));
    assert_eq!(reply(&mut s), json!({"VERSION": 4, "success": true}));
    // Ops with data.
    send_json(&mut s, &json!({"VERSION": 4, "op": "zoo_manage", "args": {"cache_dump": 1}}));
    let r = reply(&mut s);
    assert!(r["zoo_manage"]["AgentCacheSize"].is_u64(), "{r}");
    send_json(&mut s, &json!({"VERSION": 4, "op": "trace_manage", "args": {"config_set": {"AIServer": 2}}}));
    assert_eq!(reply(&mut s)["success"], json!(true));
    send_json(&mut s, &json!({"VERSION": 4, "op": "trace_manage", "args": {"config_get": 1}}));
    assert_eq!(reply(&mut s)["trace_manage"]["config_get"]["AIServer"], json!("Detailed"));
    send_json(&mut s, &json!({"VERSION": 4, "op": "dev_ctrl", "args": {}}));
    assert_eq!(reply(&mut s)["dev_ctrl"], json!({"status": "device not found"}));
    send_json(&mut s, &json!({"VERSION": 4, "op": "modelzoo"}));
    let r = reply(&mut s);
    let list = r["modelzoo"].as_array().unwrap();
    assert_eq!(list.len(), MODELS.len());
    // Parameters travel as a JSON string, with paths relative to the zoo (nothing internal).
    let p: Value = serde_json::from_str(list[0]["ModelParams"].as_str().unwrap()).unwrap();
    assert!(!p.to_string().contains(zoo.path().to_str().unwrap()));
    assert_alive(addr);
}

#[test]
fn bad_lengths_truncation_and_vanishing_clients() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Asio);
    let addr = server.asio_addr().unwrap();
    // 2^31 length prefix: refused before allocation, with an error reply, then closed.
    let mut s = conn(addr);
    s.write_all(&[0x80, 0, 0, 0]).unwrap();
    let r = reply(&mut s);
    assert_eq!(r["success"], json!(false));
    assert!(r["msg"].as_str().unwrap().contains("exceeds the limit"), "{r}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // Truncated header and truncated payload, then the client goes away.
    let mut s = conn(addr);
    s.write_all(&[0, 0]).unwrap();
    drop(s);
    let mut s = conn(addr);
    s.write_all(&[0, 0, 1, 0, b'{', b'"']).unwrap();
    drop(s);
    // A stream whose client disconnects in the middle of a frame.
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let mut s = stream(addr, EFF, json!({}));
    s.write_all(&(jpeg.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&jpeg[..jpeg.len() / 2]).unwrap();
    drop(s);
    // A client that connects and never sends anything does not hold anyone up.
    let _idle = conn(addr);
    assert_alive(addr);
    let mut s = stream(addr, EFF, json!({}));
    let r = frame_result(&mut s, &jpeg).unwrap();
    assert_eq!(r[0]["label"], json!("Egyptian cat"));
}

#[test]
fn stream_errors_and_frame_order() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Asio);
    let addr = server.asio_addr().unwrap();
    // Unknown model: one msgpack error with VERSION, nothing processed afterwards.
    let mut s = stream(addr, "no_such_model", json!({}));
    let p = read_packet(&mut s, 1 << 20).unwrap().unwrap();
    let (v, _) = protocol::decode(&p).unwrap();
    assert_eq!(v["success"], json!(false));
    assert_eq!(v["VERSION"], json!(4));
    assert!(v["msg"].as_str().unwrap().contains("no_such_model"));
    // Runtime parameters from the config apply; per-frame errors keep the stream alive.
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let car = std::fs::read(image("car_416.jpg")).unwrap();
    let mut s = stream(addr, EFF, json!({"POST_PROCESS": [{"OutputTopK": 2, "LabelsPath": "elsewhere.json"}]}));
    let e = frame_result(&mut s, b"garbage").unwrap_err();
    assert!(e.starts_with("[ERROR]"), "{e}");
    assert!(e.contains(&format!("When running model '{EFF}'")), "{e}");
    assert!(!e.contains(zoo.path().to_str().unwrap()), "error text shows a server path: {e}");
    // A wrong-size image is refused like the real server ("Cannot reshape").
    assert!(frame_result(&mut s, &car).unwrap_err().contains("Cannot reshape"));
    let r = frame_result(&mut s, &jpeg).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["label"], json!("Egyptian cat"));
    // Pipelined frames (processed concurrently on the server) come back in frame order.
    let small = dgzoo::image_ops::encode_jpeg(&dgzoo::image_ops::RgbImage::filled(224, 224, [200, 30, 30]), 95).unwrap();
    let other = frame_result(&mut s, &small).unwrap()[0]["label"].clone();
    assert_ne!(other, json!("Egyptian cat"));
    let pattern: Vec<bool> = (0..40).map(|i| (i * 7) % 3 == 0).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let (jpeg, small, pattern) = (jpeg.clone(), small.clone(), pattern.clone());
        std::thread::spawn(move || {
            for cat in pattern {
                write_packet(&mut w, if cat { &jpeg } else { &small }).unwrap();
            }
        })
    };
    for (i, cat) in pattern.iter().enumerate() {
        let p = read_packet(&mut s, 1 << 20).unwrap().unwrap();
        let label = protocol::decode_results(&p).unwrap().unwrap().0[0]["label"].clone();
        assert_eq!(label, if *cat { json!("Egyptian cat") } else { other.clone() }, "frame {i}");
    }
    writer.join().unwrap();
    // End of stream: the server closes.
    write_packet(&mut s, b"").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert_alive(addr);
}

#[test]
fn sixty_four_concurrent_streams() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Asio);
    let addr = server.asio_addr().unwrap();
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let want = frame_result(&mut stream(addr, EFF, json!({})), &jpeg).unwrap();
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let jpeg = jpeg.clone();
            std::thread::spawn(move || {
                let mut s = stream(addr, EFF, json!({}));
                (0..2).map(|_| frame_result(&mut s, &jpeg)).collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for r in h.join().unwrap() {
            assert_eq!(r.unwrap(), want);
        }
    }
    // One engine served all of them: its model file listed once per CPU device it ran on.
    let mut s = conn(addr);
    send_json(&mut s, &json!({"VERSION": 4, "op": "zoo_manage", "args": {"cache_dump": 1}}));
    let dump = reply(&mut s)["zoo_manage"].clone();
    let agents = dump["AgentList"].as_array().unwrap();
    let mut masks: Vec<u64> = agents.iter().map(|a| a["DeviceMask"].as_u64().unwrap()).collect();
    masks.sort();
    masks.dedup();
    assert!(agents.iter().all(|a| a["ModelPath"] == agents[0]["ModelPath"]), "{dump}");
    assert!(masks.len() == agents.len() && agents.len() <= 2, "{dump}");
    assert_alive(addr);
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    protocol::http::request("127.0.0.1", addr.port(), method, path, body, Duration::from_secs(30)).unwrap()
}

#[test]
fn http_routes_and_unmasked_websocket() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Http);
    let addr = server.http_addr().unwrap();
    assert_eq!(http(addr, "GET", "/v1/nothing", None).0, 404);
    assert_eq!(http(addr, "POST", "/v1/modelzoo", None).0, 405);
    assert_eq!(http(addr, "OPTIONS", "/v1/modelzoo", None).0, 204);
    let (st, body) = http(addr, "POST", "/v1/zoo_manage", Some(b"{oops"));
    assert_eq!(st, 500);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], json!(false));
    assert!(v["msg"].as_str().unwrap().contains("Parsing error"));
    let (st, body) = http(addr, "GET", "/v1/modelzoo", None);
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v[EFF]["PRE_PROCESS"].is_array(), "params are objects over http");
    assert_eq!(http(addr, "POST", "/v1/sleep/0.000000", None), (200, b"null".to_vec()));
    assert_eq!(http(addr, "GET", "/v1/label_dictionary/nope", None).0, 500);

    // The WebSocket handshake and frames exactly as easywsclient sends them (no masking).
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        addr.port()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("HSmrc0sMlYUkAGmm5OPpG2HaGWk="), "{head}");
    // Data before configuration.
    ws_write(&mut s, 0x82, b"\xff\xd8");
    let (_, p) = ws_read(&mut s);
    assert!(protocol::decode_results(&p).unwrap().unwrap_err().contains("not configured"));
    // Bad configuration, then a good one on the same socket.
    ws_write(&mut s, 0x81, json!({"config": {}, "name": "nope"}).to_string().as_bytes());
    let (_, p) = ws_read(&mut s);
    assert!(protocol::decode_results(&p).unwrap().is_err());
    ws_write(&mut s, 0x81, json!({"config": {"POST_PROCESS": [{"OutputTopK": 1}]}, "name": EFF}).to_string().as_bytes());
    let (op, p) = ws_read(&mut s);
    assert_eq!(op, 2);
    let (v, _) = protocol::decode(&p).unwrap();
    assert_eq!(v["success"], json!(true));
    assert_eq!(v["model_params"]["POST_PROCESS"][0]["OutputTopK"], json!(1));
    // A second configuration is refused; frames still work.
    ws_write(&mut s, 0x81, b"{}");
    let (_, p) = ws_read(&mut s);
    assert!(protocol::decode_results(&p).unwrap().unwrap_err().contains("already configured"));
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    for _ in 0..2 {
        ws_write(&mut s, 0x82, &jpeg);
        let (_, p) = ws_read(&mut s);
        let r = protocol::decode_results(&p).unwrap().unwrap().0;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["label"], json!("Egyptian cat"));
    }
    // Close with a zero-key masked close frame (as the client does).
    s.write_all(&[0x88, 0x80, 0, 0, 0, 0]).unwrap();
    drop(s);
    assert_eq!(http(addr, "GET", &format!("/v1/label_dictionary/{EFF}"), None).0, 200);
}

#[test]
fn many_concurrent_websocket_streams_stay_open() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Http);
    let addr = format!("http://127.0.0.1:{}", server.http_addr().unwrap().port());
    let client = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&addr).unwrap());
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    // All streams are opened first and held, then each runs frames: long-lived upgraded
    // connections must not keep new ones from being served.
    let mut streams: Vec<_> = (0..24).map(|i| client.open_stream(EFF, &json!({})).unwrap_or_else(|e| panic!("stream {i}: {e}"))).collect();
    let handles: Vec<_> = streams
        .drain(..)
        .map(|mut s| {
            let jpeg = jpeg.clone();
            std::thread::spawn(move || {
                (0..2)
                    .map(|_| {
                        s.send_frame(std::slice::from_ref(&jpeg)).unwrap();
                        protocol::decode_results(&s.recv(Duration::from_secs(120)).unwrap()).unwrap().unwrap().0[0]["label"].clone()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), vec![json!("Egyptian cat"); 2]);
    }
    assert_eq!(http(server.http_addr().unwrap(), "GET", "/v1/system_info", None).0, 200);
}

#[test]
fn connection_cap() {
    let zoo = clean_zoo();
    let mut cfg = dgzoo_server::aiserver::Config::new(zoo.path());
    cfg.port = 0;
    cfg.protocol = Protocol::Asio;
    cfg.quiet = true;
    cfg.max_connections = 2;
    let server = dgzoo_server::aiserver::Server::start(cfg).unwrap();
    let asio = server.asio_addr().unwrap();
    // Two idle clients hold both slots: a third connection is closed straight away.
    // (each answers a ping first, so both surely hold a slot)
    let hold = || {
        let mut s = conn(asio);
        send_json(&mut s, &json!({"VERSION": 4, "op": "sleep"}));
        assert_eq!(reply(&mut s)["success"], json!(true));
        s
    };
    let (a, b) = (hold(), hold());
    let mut c = conn(asio);
    let _ = write_packet(&mut c, json!({"VERSION": 4, "op": "sleep"}).to_string().as_bytes());
    assert!(matches!(read_packet(&mut c, 1 << 20), Ok(None) | Err(_)), "over the cap must be refused");
    drop((a, b));
    let freed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = conn(asio);
        write_packet(&mut s, json!({"VERSION": 4, "op": "sleep"}).to_string().as_bytes()).is_ok() && matches!(read_packet(&mut s, 1 << 20), Ok(Some(_)))
    });
    assert!(freed, "slots are not released");
}

#[test]
fn malformed_http_and_vanishing_websocket() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Both);
    let (asio, web) = (server.asio_addr().unwrap(), server.http_addr().unwrap());
    // Malformed HTTP: bad request line, oversized body, truncated body.
    let raw = |req: &[u8]| {
        let mut s = TcpStream::connect(web).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw(b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(b"POST /v1/zoo_manage HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n").starts_with("HTTP/1.1 413"));
    assert!(raw(b"POST /v1/zoo_manage HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"cache").starts_with("HTTP/1.1 400"));
    // Keep-alive: two requests on one connection.
    let two = raw(b"GET /v1/system_info HTTP/1.1\r\n\r\nGET /v1/system_info HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(two.matches("HTTP/1.1 200").count(), 2, "{two}");
    // A WebSocket client that vanishes in the middle of a frame.
    let mut s = TcpStream::connect(web).unwrap();
    write!(s, "GET /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    ws_write(&mut s, 0x81, json!({"config": {}, "name": EFF}).to_string().as_bytes());
    s.write_all(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3]).unwrap();
    drop(s);
    assert_eq!(http(web, "GET", &format!("/v1/label_dictionary/{EFF}"), None).0, 200);
    assert_alive(asio);
}

#[test]
fn websocket_pipelined_frames_in_order() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Http);
    let web = server.http_addr().unwrap();
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    // The configuration goes right behind the handshake, before its answer is read.
    ws_write(&mut s, 0x81, json!({"config": {}, "name": EFF}).to_string().as_bytes());
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let (_, p) = ws_read(&mut s);
    assert_eq!(protocol::decode(&p).unwrap().0["success"], json!(true));
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let small = dgzoo::image_ops::encode_jpeg(&dgzoo::image_ops::RgbImage::filled(224, 224, [20, 30, 200]), 95).unwrap();
    let pattern: Vec<bool> = (0..30).map(|i| i % 4 == 1 || i % 5 == 0).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let pattern = pattern.clone();
        std::thread::spawn(move || {
            for (i, cat) in pattern.iter().enumerate() {
                // An empty message in the middle is a failed frame of its own.
                if i == 13 {
                    ws_write(&mut w, 0x82, b"");
                }
                ws_write(&mut w, 0x82, if *cat { &jpeg } else { &small });
            }
        })
    };
    let mut expected: Vec<Option<bool>> = pattern.iter().map(|c| Some(*c)).collect();
    expected.insert(13, None);
    let mut other = None;
    for (i, want) in expected.iter().enumerate() {
        let (_, p) = ws_read(&mut s);
        match (want, protocol::decode_results(&p).unwrap()) {
            (None, Err(e)) => assert!(e.contains("empty data"), "{e}"),
            (Some(true), Ok(r)) => assert_eq!(r.0[0]["label"], json!("Egyptian cat"), "frame {i}"),
            (Some(false), Ok(r)) => {
                let l = r.0[0]["label"].clone();
                assert_ne!(l, json!("Egyptian cat"), "frame {i}");
                assert_eq!(other.get_or_insert(l.clone()), &l, "frame {i}");
            }
            (w, r) => panic!("frame {i}: expected {w:?}, got {r:?}"),
        }
    }
    writer.join().unwrap();
}

#[test]
fn client_that_never_reads_stalls_only_itself() {
    let zoo = clean_zoo();
    let server = start_server(zoo.path(), Protocol::Asio);
    let addr = server.asio_addr().unwrap();
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    // BlazeFace answers with its raw tensors (~60 KB per frame): unread results soon fill the
    // socket buffers.
    // Noise compresses badly: big frames, so the socket buffers cannot hide an unbounded reader.
    let mut noise = dgzoo::image_ops::RgbImage::filled(128, 128, [0, 0, 0]);
    let mut x = 0x1234_5678u32;
    for b in noise.data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let face = dgzoo::image_ops::encode_jpeg(&noise, 95).unwrap();
    assert!(face.len() > 15_000, "{}", face.len());
    let greedy = {
        let jpeg = face;
        std::thread::spawn(move || {
            let mut s = stream(addr, "blazeface_short_range--128x128_float_tflite_cpu_1", json!({}));
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // Frames in, results never read: the server stops reading this socket after its
            // limit of unanswered frames, so these writes eventually block and time out.
            let sent = (0..2000).take_while(|_| write_packet(&mut s, &jpeg).is_ok()).count();
            (s, sent)
        })
    };
    // Meanwhile other clients are served normally.
    for _ in 0..3 {
        let mut s = stream(addr, EFF, json!({}));
        assert_eq!(frame_result(&mut s, &jpeg).unwrap()[0]["label"], json!("Egyptian cat"));
        assert_alive(addr);
    }
    let (s, sent) = greedy.join().unwrap();
    assert!(sent < 2000, "the server kept reading frames it could not answer ({sent} accepted)");
    drop(s);
    assert_alive(addr);
}
