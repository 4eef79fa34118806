//! The cloud client's stream logic against scripted socket.io servers (real WebSocket peers
//! on 127.0.0.1 speaking the protocol, each misbehaving in one way): results out of order,
//! a `[CRITICAL]` result (reconnect and re-send the frames in flight from frame "0"),
//! duplicate frame numbers, a silent server (PySDK's timeout text).
use dgzoo::cloud::infer::{Endpoint, Session};
use dgzoo::socketio::{self, Control, Packet};
use rmpv::Value as Mp;
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Accept connections; `script(index, ws)` plays each one after the open/CONNECT exchange.
fn server(script: impl Fn(usize, &mut Ws) + Send + 'static) -> Endpoint {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let Ok(mut ws) = tungstenite::accept(s) else { continue };
            ws.send(Message::Text(socketio::open_text("x", 25000, 20000))).unwrap();
            let p = read_packet(&mut ws).expect("CONNECT");
            assert_eq!(p.kind, socketio::CONNECT);
            ws.send(Message::Binary(Packet::new(socketio::CONNECT, Mp::Map(vec![(Mp::from("sid"), Mp::from("s"))])).encode())).unwrap();
            script(i, &mut ws);
        }
    });
    Endpoint { host: "127.0.0.1".into(), port, display: format!("127.0.0.1:{port}"), tls: false }
}

fn read_packet(ws: &mut Ws) -> Option<Packet> {
    loop {
        match ws.read().ok()? {
            Message::Binary(b) => return Packet::decode(&b).ok(),
            Message::Text(t) if matches!(socketio::parse_control(&t), Ok(Control::Pong)) => continue,
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Next `predict`: (frame string, first input as text).
fn read_frame(ws: &mut Ws) -> Option<(String, String)> {
    let p = read_packet(ws)?;
    let (name, args) = p.as_event()?;
    assert_eq!(name, "predict");
    let Mp::Binary(payload) = &args[0] else { panic!("payload is not bin") };
    let inputs = socketio::decode_frame(payload).unwrap();
    Some((socketio::mp_text(&args[1]).unwrap(), String::from_utf8(inputs[0].clone()).unwrap()))
}

fn reply(ws: &mut Ws, frame: &str, result: Mp) {
    ws.send(Message::Binary(Packet::event("predict_result", vec![result, Mp::from(frame)]).encode())).unwrap();
}

fn echo(text: &str) -> Mp {
    socketio::mp_from_json(&json!([{"label": text}]))
}

fn label(v: &Mp) -> String {
    socketio::mp_to_json(v)[0]["label"].as_str().unwrap_or_default().to_string()
}

fn open(ep: Endpoint, timeout_s: f64) -> Session {
    Session::open(ep, &json!({"token": "t", "organization": "o", "zoo": "z", "model": "m"}), "o/z/m", timeout_s, 8).unwrap()
}

#[test]
fn ordered_results_and_critical_reconnect_with_resend() {
    let (tx, rx) = mpsc::channel();
    let ep = server(move |i, ws| {
        if i == 0 {
            let frames: Vec<_> = (0..3).map(|_| read_frame(ws).unwrap()).collect();
            assert_eq!(frames.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["0", "1", "2"]);
            // Out of order, then a critical failure of the third frame.
            reply(ws, "1", echo(&frames[1].1));
            reply(ws, "0", echo(&frames[0].1));
            reply(ws, "2", socketio::mp_from_json(&json!({"success": false, "msg": "[CRITICAL]device lost"})));
            while read_packet(ws).is_some() {}
        } else {
            // The new connection numbers frames from "0" again and gets the frames in flight.
            while let Some((n, text)) = read_frame(ws) {
                tx.send((i, n.clone(), text.clone())).unwrap();
                reply(ws, &n, echo(&text));
            }
        }
    });
    let mut s = open(ep, 10.0);
    for t in ["a", "b", "c"] {
        assert!(s.send(&[t.as_bytes().to_vec()]).unwrap().is_empty());
    }
    assert_eq!(label(&s.recv().unwrap()), "a");
    assert_eq!(label(&s.recv().unwrap()), "b");
    assert_eq!(label(&s.recv().unwrap()), "c");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (1, "0".into(), "c".into()));
    // The stream goes on on the new connection.
    s.send(&[b"d".to_vec()]).unwrap();
    assert_eq!(label(&s.recv().unwrap()), "d");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (1, "1".into(), "d".into()));
    s.close();
}

#[test]
fn lower_frame_number_is_a_mismatch() {
    let ep = server(|_, ws| {
        let (n, t) = read_frame(ws).unwrap();
        reply(ws, &n, echo(&t));
        let _ = read_frame(ws);
        reply(ws, "0", echo("again"));
        while read_packet(ws).is_some() {}
    });
    let mut s = open(ep, 10.0);
    s.send(&[b"a".to_vec()]).unwrap();
    assert_eq!(label(&s.recv().unwrap()), "a");
    s.send(&[b"b".to_vec()]).unwrap();
    assert_eq!(s.recv().unwrap_err().message, "Result frame numbers mismatch: expected 1, processed 0");
}

#[test]
fn silent_server_times_out_with_pysdk_text() {
    let ep = server(|_, ws| while read_packet(ws).is_some() {});
    let mut s = open(ep, 0.5);
    s.send(&[b"a".to_vec()]).unwrap();
    let e = s.recv().unwrap_err();
    assert_eq!(e.message, "Timeout waiting for model 'o/z/m' inference completion (timeout = 0.5 sec, missing results = 1)");
}

#[test]
fn unreachable_server_fails_after_retries() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ep = Endpoint { host: "127.0.0.1".into(), port, display: format!("127.0.0.1:{port}"), tls: false };
    let e = Session::open(ep, &json!({}), "o/z/m", 1.0, 1).unwrap_err();
    assert!(e.message.starts_with(&format!("Unable to open connection to cloud server 127.0.0.1:{port}: ")), "{}", e.message);
}

/// `https` clouds get `wss://` with certificate verification: a self-signed server (openssl
/// s_server) is rejected during the handshake.
#[test]
fn wss_verifies_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: openssl is not available");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ep = Endpoint { host: "localhost".into(), port, display: format!("localhost:{port}"), tls: true };
    let e = Session::open(ep, &json!({}), "o/z/m", 1.0, 1).unwrap_err();
    let _ = server.kill();
    let _ = server.wait();
    assert!(e.message.contains("invalid peer certificate"), "{}", e.message);
}
