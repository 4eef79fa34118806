//! Resource limits of our AI server and of local inference, tried as an attacker would against
//! the real `dgzoo server` process: image bombs (small files declaring huge images) and
//! oversized JSON messages. Each is refused before the memory is allocated, measured from the
//! server's own /proc/PID/status, and the server keeps serving correct results afterwards.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::protocol::{self, read_packet, write_packet};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const EFF: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";

/// `dgzoo server start` as a child process (both protocols), killed on drop.
struct Running {
    server: DgzooServer,
    port: u16,
}

impl Running {
    fn start(zoo: &std::path::Path) -> Running {
        Running::start_with(zoo, &[])
    }

    fn start_with(zoo: &std::path::Path, extra: &[&str]) -> Running {
        let server = DgzooServer::spawn(zoo).args(&["--quiet"]).args(extra).start();
        Running { port: server.port, server }
    }

    /// A `VmRSS` / `VmHWM` (peak) value of the server process, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.server.pid())).unwrap();
        let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {s}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn conn(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    fn stream(&self, model: &str) -> TcpStream {
        let mut s = self.conn();
        write_packet(&mut s, json!({"VERSION": 4, "op": "stream", "name": model, "config": {}}).to_string().as_bytes()).unwrap();
        s
    }
}

fn frame_result(s: &mut TcpStream, frame: &[u8]) -> Result<Vec<Value>, String> {
    write_packet(s, frame).unwrap();
    let p = read_packet(s, 1 << 26).unwrap().expect("a result");
    protocol::decode_results(&p).unwrap().map(|r| r.0)
}

fn assert_cat(s: &mut TcpStream) {
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let r = frame_result(s, &jpeg).unwrap();
    assert_eq!(r[0]["label"], json!("Egyptian cat"), "{r:?}");
}

/// A complete, valid baseline grayscale JPEG of `side` x `side` pixels (all one grey) in about
/// side²/32 bytes: one-symbol Huffman tables make every 8x8 block two bits ("DC unchanged",
/// "end of block"). What an attacker sends: 1 MiB that decodes to 768 MiB of RGB at 16384².
fn jpeg_bomb(side: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend([0xFF, 0xDB, 0, 67, 0]);
    j.extend([1u8; 64]);
    let [hi, lo] = side.to_be_bytes();
    j.extend([0xFF, 0xC0, 0, 11, 8, hi, lo, hi, lo, 1, 1, 0x11, 0]);
    for class in [0x00, 0x10] {
        j.extend([0xFF, 0xC4, 0, 20, class, 1]);
        j.extend([0u8; 15]);
        j.push(0); // the one symbol: DC category 0, or AC end-of-block
    }
    j.extend([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
    let blocks = (side as usize / 8) * (side as usize / 8);
    j.extend(std::iter::repeat_n(0u8, blocks * 2 / 8));
    j.extend([0xFF, 0xD9]);
    j
}

fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32).map(|n| (0..8).fold(n, |c, _| if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })).collect();
    !data.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// A complete, valid 8-bit grayscale PNG of `side` x `side` black pixels in about side²/160
/// bytes: one fixed-Huffman deflate block of 258-byte back-references (13 bits each).
fn png_bomb(side: u32) -> Vec<u8> {
    struct Bits(Vec<u8>, u32, u32);
    impl Bits {
        fn put(&mut self, v: u32, n: u32) {
            // deflate packs LSB first; Huffman codes are given MSB first, so reverse them.
            for k in 0..n {
                self.1 |= ((v >> k) & 1) << self.2;
                self.2 += 1;
                if self.2 == 8 {
                    self.0.push(self.1 as u8);
                    (self.1, self.2) = (0, 0);
                }
            }
        }
        fn code(&mut self, c: u32, n: u32) {
            self.put((0..n).fold(0, |r, k| r | (((c >> k) & 1) << (n - 1 - k))), n);
        }
    }
    let total = side as u64 * (side as u64 + 1); // filter byte + row, all zero
    let mut b = Bits(vec![0x78, 0x01], 0, 0);
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman
    b.code(0x30, 8); // literal 0
    let matches = (total - 1) / 258;
    for _ in 0..matches {
        b.code(0xC5, 8); // length code 285 = 258 bytes
        b.code(0, 5); // distance code 0 = 1 byte back
    }
    for _ in 0..(total - 1) % 258 {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block
    if b.2 > 0 {
        b.0.push(b.1 as u8);
    }
    let adler = (((total % 65521) as u32) << 16) | 1;
    b.0.extend(adler.to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &b.0);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn bomb_files_are_real_images() {
    // The bombs are well-formed: at a size under the limits they decode completely.
    let img = dgzoo::image_ops::decode(&jpeg_bomb(1024)).unwrap();
    assert_eq!((img.width, img.height), (1024, 1024));
    assert!(img.data.iter().all(|&v| v == img.data[0]));
    let img = dgzoo::image_ops::decode(&png_bomb(1000)).unwrap();
    assert_eq!((img.width, img.height), (1000, 1000));
    assert!(img.data.iter().all(|&v| v == 0));
    // At 16384² they are refused from the header.
    for bomb in [jpeg_bomb(16384), png_bomb(16384)] {
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let t = Instant::now();
        let e = dgzoo::image_ops::dimensions(&bomb).unwrap_err();
        assert!(e.message.contains("16384x16384 is too large"), "{e}");
        let e = dgzoo::image_ops::decode(&bomb).unwrap_err();
        assert!(e.message.contains("16384x16384 is too large"), "{e}");
        assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    }
}

#[test]
fn image_bombs_are_refused_before_decoding() {
    let zoo = clean_zoo();
    let bombs = [("JPEG", jpeg_bomb(16384)), ("PNG", png_bomb(16384))];
    // Local inference: refused with a clear error, the model stays usable.
    let z = Zoo::connect("@local", zoo.path().to_str().unwrap(), "").unwrap();
    let model = z.load_model(EFF, &Value::Null).unwrap();
    for (what, bomb) in &bombs {
        let t = Instant::now();
        let e = predict(&model, &[Input::Bytes(bomb)]).expect_err(what);
        assert!(e.message.contains("16384x16384 is too large"), "{what}: {e}");
        assert!(t.elapsed() < Duration::from_millis(500), "{what}: {:?}", t.elapsed());
    }
    let cat = std::fs::read(image("cat_224.jpg")).unwrap();
    assert_eq!(predict(&model, &[Input::Bytes(&cat)]).unwrap().results[0]["label"], json!("Egyptian cat"));

    // The AI server: 16 bomb frames on one stream, each refused from its header with PySDK's
    // reshape error; the server's peak memory does not move and the stream goes on working.
    let server = Running::start(zoo.path());
    let mut s = server.stream(EFF);
    assert_cat(&mut s);
    let peak = server.status_kib("VmHWM:");
    let t = Instant::now();
    for i in 0..16 {
        let (what, bomb) = &bombs[i % 2];
        let e = frame_result(&mut s, bomb).expect_err(what);
        assert!(e.contains("Cannot reshape the tensor: received a 16384x16384 image, model input #0 is 224x224x3"), "{what}: {e}");
    }
    let elapsed = t.elapsed();
    let grown = server.status_kib("VmHWM:").saturating_sub(peak);
    eprintln!("16 bomb frames: {elapsed:?}, server peak RSS grew {grown} KiB");
    assert!(grown < 64 << 10, "server peak RSS grew by {grown} KiB");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_cat(&mut s);
}

/// Sends `payload` behind an already sent header from another thread (ignoring errors: a
/// server that refuses the header closes the connection), so the caller can read the reply.
fn send_behind(s: &TcpStream, payload: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = w.write_all(&payload);
    })
}

/// `{"VERSION":4,"op":"sleep","sleep_time_ms":0,"pad":[0,0,…]}` of about `len` bytes: valid
/// JSON that costs ~16x its size once parsed into values.
fn amplifying_command(len: usize) -> Vec<u8> {
    let mut v = br#"{"VERSION":4,"op":"sleep","sleep_time_ms":0,"pad":[0"#.to_vec();
    while v.len() + 3 < len {
        v.extend_from_slice(b",0");
    }
    v.extend_from_slice(b"]}");
    v
}

fn read_until_blank_line(s: &mut TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn ws_read(s: &mut TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0] & 0x0f, p)
}

#[test]
fn oversized_json_is_refused_from_its_length() {
    use std::io::Write;
    const BIG: usize = 64 << 20;
    let zoo = clean_zoo();
    let server = Running::start(zoo.path());
    let (rss0, peak0) = (server.status_kib("VmRSS:"), server.status_kib("VmHWM:"));

    // asio: a 64 MiB command packet gets PySDK's error reply from its length prefix alone.
    let mut s = server.conn();
    s.write_all(&(BIG as u32).to_be_bytes()).unwrap();
    let t = send_behind(&s, amplifying_command(BIG));
    let p = read_packet(&mut s, 1 << 20).unwrap().expect("an error reply");
    let r: Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(r["success"], json!(false), "{r}");
    assert!(r["msg"].as_str().unwrap().contains(&format!("packet of {BIG} bytes exceeds the limit of 1048576 bytes")), "{r}");
    drop(s);
    t.join().unwrap();

    // WebSocket: a 64 MiB text (configuration) message.
    let mut s = TcpStream::connect(("127.0.0.1", server.port + 1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    assert!(read_until_blank_line(&mut s).starts_with("HTTP/1.1 101"));
    let mut hdr = vec![0x81, 127];
    hdr.extend((BIG as u64).to_be_bytes());
    s.write_all(&hdr).unwrap();
    let t = send_behind(&s, format!(r#"{{"name":"{EFF}","config":{{"pad":"{}"}}}}"#, "x".repeat(BIG - 100)).into_bytes());
    let (op, p) = ws_read(&mut s);
    assert_eq!(op, 2, "a binary (msgpack) error reply");
    let (v, _) = protocol::decode(&p).unwrap();
    let msg = v["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains(&format!("WebSocket text message of {BIG} bytes exceeds the limit of 1048576 bytes")), "{v}");
    drop(s);
    t.join().unwrap();

    // REST: a 64 MiB body.
    let mut s = TcpStream::connect(("127.0.0.1", server.port + 1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(format!("POST /v1/trace_manage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {BIG}\r\n\r\n").as_bytes())
        .unwrap();
    let t = send_behind(&s, amplifying_command(BIG));
    let head = read_until_blank_line(&mut s);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(s);
    t.join().unwrap();

    let (rss1, peak1) = (server.status_kib("VmRSS:"), server.status_kib("VmHWM:"));
    eprintln!("3 oversized JSON messages: server RSS {rss0} -> {rss1} KiB, peak {peak0} -> {peak1} KiB");
    assert!(peak1 - peak0 < 16 << 10, "server peak RSS grew from {peak0} to {peak1} KiB");

    // JSON under the limit still works, and so do streams.
    let mut s = server.conn();
    write_packet(&mut s, &amplifying_command(1000 << 10)).unwrap();
    let r: Value = serde_json::from_slice(&read_packet(&mut s, 1 << 20).unwrap().unwrap()).unwrap();
    assert_eq!(r, json!({"VERSION": 4, "success": true}));
    assert_cat(&mut server.stream(EFF));
}

/// `trace_manage` over asio on a fresh connection.
fn trace_manage(server: &Running, args: Value) -> Value {
    let mut s = server.conn();
    write_packet(&mut s, json!({"VERSION": 4, "op": "trace_manage", "args": args}).to_string().as_bytes()).unwrap();
    serde_json::from_slice(&read_packet(&mut s, 1 << 26).unwrap().unwrap()).unwrap()
}

#[test]
fn trace_log_and_trace_groups_are_bounded() {
    let zoo = clean_zoo();
    let server = Running::start(zoo.path());
    let rss0 = server.status_kib("VmRSS:");
    // 200 stream opens with 900 KB model names (under the JSON limit), each logged.
    let name = "n".repeat(900 << 10);
    for _ in 0..200 {
        let mut s = server.conn();
        write_packet(&mut s, json!({"VERSION": 4, "op": "stream", "name": name, "config": {}}).to_string().as_bytes()).unwrap();
        let r = protocol::decode(&read_packet(&mut s, 1 << 26).unwrap().unwrap()).unwrap().0;
        assert_eq!(r["success"], json!(false), "{r}");
    }
    let rss1 = server.status_kib("VmRSS:");
    let text = trace_manage(&server, json!({"trace_read": {}}))["trace_manage"]["trace_read"].as_str().unwrap().to_string();
    eprintln!("200 stream opens with 900 KB names: server RSS {rss0} -> {rss1} KiB, trace {} bytes", text.len());
    assert!(text.len() <= 300 << 10, "the trace keeps {} bytes", text.len());
    assert!(text.lines().all(|l| l.len() <= 1024), "a trace line is longer than 1024 bytes");
    assert!(text.contains("stream open failed for model 'nnnn"), "{}", &text[..text.len().min(300)]);
    assert!(rss1 < rss0 + (64 << 10), "server RSS grew from {rss0} to {rss1} KiB");

    // Debug lines (one per command) are kept only when a detailed trace level asks for them.
    let count = |t: &str| t.matches("op 'sleep' from").count();
    let sleep = |server: &Running| {
        let mut s = server.conn();
        write_packet(&mut s, json!({"VERSION": 4, "op": "sleep", "sleep_time_ms": 0}).to_string().as_bytes()).unwrap();
        read_packet(&mut s, 1 << 20).unwrap().unwrap();
    };
    sleep(&server);
    let read = |server: &Running| trace_manage(server, json!({"trace_read": {}}))["trace_manage"]["trace_read"].as_str().unwrap().to_string();
    assert_eq!(count(&read(&server)), 0);
    assert_eq!(trace_manage(&server, json!({"config_set": {"AIServer": 2}}))["success"], json!(true));
    sleep(&server);
    assert_eq!(count(&read(&server)), 1);

    // config_set: the group table is fixed (PySDK's names); client-chosen names are ignored,
    // however many and however long.
    let groups = |server: &Running| trace_manage(server, json!({"config_get": 1}))["trace_manage"]["config_get"].as_object().unwrap().clone();
    let before = groups(&server);
    let mut many: serde_json::Map<String, Value> = (0..10_000).map(|i| (format!("group{i}"), json!(1))).collect();
    many.insert("x".repeat(200), json!(1));
    assert_eq!(trace_manage(&server, json!({"config_set": many}))["success"], json!(true));
    let after = groups(&server);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    assert!(after.len() <= 64 && after.values().all(|v| v == "None"), "{after:?}");
    assert_cat(&mut server.stream(EFF));
}

/// Opens a stream with `config`; the stream open reply when it failed.
fn open_with(server: &Running, config: Value) -> Result<TcpStream, Value> {
    let mut s = server.conn();
    write_packet(&mut s, json!({"VERSION": 4, "op": "stream", "name": EFF, "config": config}).to_string().as_bytes()).unwrap();
    // A failed open answers at once; a good one answers the first frame.
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    write_packet(&mut s, &jpeg).unwrap();
    let p = read_packet(&mut s, 1 << 26).unwrap().unwrap();
    match protocol::decode_results(&p).unwrap() {
        Ok((r, _)) => {
            assert_eq!(r[0]["label"], json!("Egyptian cat"), "{r:?}");
            Ok(s)
        }
        Err(msg) => Err(json!(msg)),
    }
}

fn engines(server: &Running) -> u64 {
    let mut s = server.conn();
    write_packet(&mut s, json!({"VERSION": 4, "op": "zoo_manage", "args": {"cache_dump": 1}}).to_string().as_bytes()).unwrap();
    let r: Value = serde_json::from_slice(&read_packet(&mut s, 1 << 26).unwrap().unwrap()).unwrap();
    r["zoo_manage"]["AgentCacheSize"].as_u64().unwrap()
}

#[test]
fn client_input_shapes_are_validated_and_engine_copies_bounded() {
    let zoo = clean_zoo();
    let server = Running::start(zoo.path());
    let shape = |s: Value| json!({"PRE_PROCESS": [{"InputShape": s}]});
    // Invalid shapes are refused at open, before any engine is loaded.
    for (bad, why) in [
        (json!([1, 2, 3, 4, 5]), "InputShape [1, 2, 3, 4, 5] of model input #0 is invalid: the model's input has 4 dimensions"),
        (json!([1, 0, 224, 3]), "every dimension must be between 1 and 65536"),
        (json!([65536, 65536, 224, 3]), "more than 268435456 elements"),
    ] {
        let e = open_with(&server, shape(bad)).unwrap_err();
        assert!(e.as_str().unwrap().contains(why), "{e}");
    }
    assert_eq!(engines(&server), 0);
    // A shape of the right rank that the model's tensor cannot take fails at open; its engine
    // is not kept.
    let e = open_with(&server, shape(json!([1, 200, 200, 3]))).unwrap_err();
    assert!(e.as_str().unwrap().contains("has shape [1, 224, 224, 3], but the configuration describes [1, 200, 200, 3]"), "{e}");
    assert_eq!(engines(&server), 0);
    // 28 different accepted shapes, one after another: at most 4 engine copies stay loaded.
    drop(open_with(&server, json!({})).unwrap());
    let rss0 = server.status_kib("VmRSS:");
    for n in 2..30 {
        drop(open_with(&server, shape(json!([n, 224, 224, 3]))).unwrap());
    }
    let (rss1, loaded) = (server.status_kib("VmRSS:"), engines(&server));
    eprintln!("28 client shapes: {loaded} engines loaded, server RSS {rss0} -> {rss1} KiB");
    assert!(loaded <= 4, "{loaded} engine copies of one model are loaded");
    // Four shapes held by open streams: a fifth is refused, and works once one is closed.
    let held: Vec<TcpStream> = (40..44).map(|n| open_with(&server, shape(json!([n, 224, 224, 3]))).unwrap()).collect();
    let e = open_with(&server, shape(json!([50, 224, 224, 3]))).unwrap_err();
    assert!(e.as_str().unwrap().contains("at most 4 input shapes"), "{e}");
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    drop(open_with(&server, shape(json!([50, 224, 224, 3]))).unwrap());
    assert_cat(&mut server.stream(EFF));
}

/// One HTTP/1.1 request on a fresh connection: (status line and headers, body).
fn http(server: &Running, method: &str, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", server.port + 1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

const WS_HEADERS: &[(&str, &str)] =
    &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")];

#[test]
fn cross_origin_state_changes_are_refused() {
    let zoo = clean_zoo();
    let server = Running::start(zoo.path());
    let evil = ("Origin", "http://evil.example");
    // A web page elsewhere can neither shut the server down nor open an inference stream.
    let (head, body) = http(&server, "POST", "/v1/shutdown", &[evil]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(body.contains("cross-origin requests that change state are not allowed"), "{body}");
    let mut ws = WS_HEADERS.to_vec();
    ws.push(evil);
    let (head, _) = http(&server, "GET", "/v1/stream", &ws);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = http(&server, "POST", "/v1/trace_manage", &[evil, ("Content-Type", "application/json")]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // Reads answer, but without CORS headers, so the page cannot see them; no `*` anywhere.
    let (head, _) = http(&server, "GET", "/v1/system_info", &[evil]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("access-control-allow-origin"), "{head}");
    let (head, _) = http(&server, "GET", "/v1/system_info", &[]);
    assert!(!head.contains('*'), "{head}");
    // Clients without Origin (PySDK, curl) are not affected, and the server is still up.
    let (head, _) = http(&server, "POST", "/v1/sleep/1", &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_cat(&mut server.stream(EFF));
    {
        use std::io::Write;
        let mut s = TcpStream::connect(("127.0.0.1", server.port + 1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let hdrs: String = WS_HEADERS.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        s.write_all(format!("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n{hdrs}\r\n").as_bytes()).unwrap();
        let head = read_until_blank_line(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }
    drop(server);

    // An allowed origin gets its own CORS headers and may change state.
    let server = Running::start_with(zoo.path(), &["--cors-origin", "http://good.example"]);
    let good = ("Origin", "http://good.example");
    let (head, _) = http(&server, "GET", "/v1/system_info", &[good]);
    assert!(head.contains("Access-Control-Allow-Origin: http://good.example"), "{head}");
    let (head, _) = http(&server, "POST", "/v1/sleep/1", &[good]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, _) = http(&server, "POST", "/v1/shutdown", &[evil]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = http(&server, "POST", "/v1/shutdown", &[good]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
