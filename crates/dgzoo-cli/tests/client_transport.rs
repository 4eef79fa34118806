//! The core's client transports (#12): REST replies read whole whatever their framing (a
//! chunked reply from a real socket), and AI servers reached over IPv6.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::aiserver::AiServerClient;
use dgzoo_server::aiserver::{Config, Protocol, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// A socket on 127.0.0.1 that answers one request with `body` in chunks of `chunk` bytes
/// (with chunk extensions, RFC 9112 §7.1.1).
fn chunked_server(body: Vec<u8>, chunk: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let mut w = s;
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        for (i, c) in body.chunks(chunk).enumerate() {
            w.write_all(format!("{:X};n={i}\r\n", c.len()).as_bytes()).unwrap();
            w.write_all(c).unwrap();
            w.write_all(b"\r\n").unwrap();
            w.flush().unwrap();
        }
        w.write_all(b"0\r\n\r\n").unwrap();
    });
    port
}

#[test]
fn a_chunked_rest_reply_is_read_whole() {
    // A system info of ~1 MB in odd-sized chunks.
    let devices: serde_json::Map<String, Value> = (0..2000).map(|i| (format!("RT{i}/DEV"), json!([{"@Index": i, "Pad": "x".repeat(400)}]))).collect();
    let info = json!({"Devices": devices, "Software Version": "0.0"});
    let body = info.to_string().into_bytes();
    let port = chunked_server(body.clone(), 4093);
    let (status, got) = dgzoo::protocol::http::request("127.0.0.1", port, "GET", "/v1/system_info", None, Duration::from_secs(10)).unwrap();
    assert_eq!(status, 200);
    assert_eq!(got.len(), body.len());
    assert_eq!(got, body);
    // Through the AI-server client's REST path too.
    let port = chunked_server(body, 65521);
    let c = AiServerClient::new(ServerAddress { host: "127.0.0.1".into(), port, http: true });
    assert_eq!(c.system_info().unwrap(), info);
}

#[test]
fn ai_server_over_ipv6() {
    let zoo = clean_zoo();
    let mut cfg = Config::new(zoo.path());
    cfg.host = "::1".into();
    cfg.port = 0;
    cfg.protocol = Protocol::Both;
    cfg.quiet = true;
    let server = Server::start(cfg).expect("server starts on ::1");
    for (port, http) in [(server.asio_addr().unwrap().port(), false), (server.http_addr().unwrap().port(), true)] {
        let c = AiServerClient::new(ServerAddress { host: "::1".into(), port, http });
        let zoo = c.modelzoo().unwrap_or_else(|e| panic!("http={http}: {}", e.message));
        assert!(!zoo.is_empty(), "http={http}");
        assert!(c.system_info().unwrap()["Devices"].is_object(), "http={http}");
    }
    server.shutdown();
}
