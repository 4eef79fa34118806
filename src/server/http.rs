//! The HTTP side of the AI server: REST routes under `/v1/` (JSON, CORS) and the WebSocket
//! stream `/v1/stream` (JSON configuration text message, then binary frames and msgpack
//! results). One thread per request / WebSocket.
use super::{Level, State};
use crate::error::{Error, Result};
use crate::protocol;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use tiny_http::{Header, Method, Request, Response, StatusCode};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

pub(super) fn start(state: Arc<State>, host: &str, port: u16) -> Result<(SocketAddr, JoinHandle<()>)> {
    let server = tiny_http::Server::http((host, port)).map_err(|e| Error::io(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = server.server_addr().to_ip().ok_or_else(|| Error::internal("http listener has no IP address"))?;
    let server = Arc::new(server);
    *state.http_server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server.clone());
    let h = std::thread::Builder::new()
        .name("dgzoo-http".into())
        .spawn(move || {
            loop {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let req = match server.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                };
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let st = state.clone();
                let _ = std::thread::Builder::new().name("dgzoo-http-req".into()).spawn(move || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&st, req)));
                });
            }
            state.log_info("http listener stopped");
        })
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok((addr, h))
}

fn header(name: &str, value: &str) -> Header {
    // Names and values here are ASCII constants or computed base64: always valid.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|_| Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("static header"))
}

fn cors(mut r: Response<std::io::Cursor<Vec<u8>>>) -> Response<std::io::Cursor<Vec<u8>>> {
    for (k, v) in [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "*"), ("Access-Control-Allow-Headers", "*")] {
        r.add_header(header(k, v));
    }
    r
}

fn json_response(status: u16, v: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    cors(Response::from_data(v.to_string().into_bytes()).with_status_code(StatusCode(status)).with_header(header("Content-Type", "application/json")))
}

fn text_response(status: u16, text: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    cors(Response::from_data(text.as_bytes().to_vec()).with_status_code(StatusCode(status)).with_header(header("Content-Type", "text/plain")))
}

fn handle(state: &Arc<State>, mut req: Request) {
    let peer: Option<IpAddr> = req.remote_addr().map(|a| a.ip());
    let url = req.url().split('?').next().unwrap_or_default().to_string();
    let method = req.method().clone();
    state.log(Level::Debug, &format!("http {method} {url}"));
    if url == "/v1/stream" && method == Method::Get {
        return websocket(state, req);
    }
    if method == Method::Options {
        let mut r = text_response(204, "");
        r.add_header(header("Allow", "OPTIONS, GET, POST"));
        let _ = req.respond(r);
        return;
    }
    let path: Vec<&str> = url.trim_start_matches('/').split('/').collect();
    // (op, allowed methods) for the route; label_dictionary and sleep carry a path argument.
    let (op, methods): (&str, &[Method]) = match path.as_slice() {
        ["v1", "modelzoo"] => ("modelzoo", &[Method::Get]),
        ["v1", "system_info"] => ("system_info", &[Method::Get]),
        ["v1", "label_dictionary", _] => ("label_dictionary", &[Method::Get]),
        ["v1", "sleep", _] => ("sleep", &[Method::Post]),
        ["v1", "shutdown"] => ("shutdown", &[Method::Post]),
        ["v1", "trace_manage"] => ("trace_manage", &[Method::Post]),
        ["v1", "zoo_manage"] => ("zoo_manage", &[Method::Post]),
        ["v1", "dev_ctrl"] => ("dev_ctrl", &[Method::Post, Method::Get]),
        _ => {
            let _ = req.respond(text_response(404, "404 Not Found"));
            return;
        }
    };
    if !methods.contains(&method) {
        let _ = req.respond(text_response(405, "405 Method Not Allowed"));
        return;
    }
    let mut msg = json!({});
    match op {
        "label_dictionary" => msg["name"] = json!(percent_decode(path[2])),
        "sleep" => match path[2].parse::<f64>() {
            Ok(ms) => msg["sleep_time_ms"] = json!(ms),
            Err(_) => {
                let _ = req.respond(json_response(500, &protocol::frame_err(&format!("Incorrect sleep time '{}'", path[2]))));
                return;
            }
        },
        "trace_manage" | "zoo_manage" | "dev_ctrl" if method == Method::Post => {
            let mut body = Vec::new();
            let parsed = req
                .as_reader()
                .take(state.max_packet.min(16 << 20) as u64)
                .read_to_end(&mut body)
                .ok()
                .and_then(|_| serde_json::from_slice::<Value>(&body).ok());
            match parsed {
                Some(args) => msg["args"] = args,
                None => {
                    let text = protocol::dg_error_text("ERROR", "Parsing error", "request body is not valid JSON", &[]);
                    let _ = req.respond(json_response(500, &protocol::frame_err(&text)));
                    return;
                }
            }
        }
        _ => {}
    }
    let reply = match op {
        // REST lists the zoo as an object with parameter objects (not strings).
        "modelzoo" => Ok(Some(Value::Object(state.model_list().into_iter().collect()))),
        _ => state.run_command(op, &msg, peer),
    };
    match reply {
        Ok(data) => {
            let _ = req.respond(json_response(200, &data.unwrap_or(Value::Null)));
            if op == "shutdown" {
                state.request_stop(true);
            }
        }
        Err(text) => {
            let _ = req.respond(json_response(500, &protocol::frame_err(&text)));
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Upgrade to a WebSocket and serve one stream.
fn websocket(state: &Arc<State>, req: Request) {
    let key = req.headers().iter().find(|h| h.field.equiv("Sec-WebSocket-Key")).map(|h| h.value.as_str().to_string());
    let upgrade = req.headers().iter().any(|h| h.field.equiv("Upgrade") && h.value.as_str().eq_ignore_ascii_case("websocket"));
    let Some(key) = key.filter(|_| upgrade) else {
        let _ = req.respond(text_response(400, "400 Bad Request: WebSocket upgrade expected"));
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = Response::empty(StatusCode(101)).with_header(header("Sec-WebSocket-Accept", &accept));
    let stream = req.upgrade("websocket", resp);
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(protocol::http::ws_config(state.max_packet, true)));
    ws_stream(state, &mut ws);
    let _ = ws.close(None);
    let _ = ws.flush();
}

fn ws_send<S: Read + Write>(ws: &mut WebSocket<S>, payload: Vec<u8>) -> bool {
    ws.send(Message::Binary(payload)).is_ok()
}

fn ws_stream<S: Read + Write>(state: &Arc<State>, ws: &mut WebSocket<S>) {
    let mut session: Option<super::frame::StreamSession> = None;
    let mut frame: Vec<Vec<u8>> = Vec::new();
    loop {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(_) => return,
        };
        match msg {
            Message::Text(t) => {
                if session.is_some() {
                    let text = protocol::dg_error_text(
                        "ERROR",
                        "Incorrect value of parameter",
                        "The socket connection is already configured (JSON initial configuration message is received second time)",
                        &[],
                    );
                    if !ws_send(ws, protocol::encode(&protocol::frame_err(&text))) {
                        return;
                    }
                    continue;
                }
                let cfg: Option<Value> = serde_json::from_str(&t).ok().filter(Value::is_object);
                let reply = match cfg {
                    None => Err(protocol::dg_error_text("ERROR", "Parsing error", "configuration message is not a JSON object", &[])),
                    Some(cfg) => {
                        let name = cfg.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                        state.open_stream(&name, cfg.get("config").unwrap_or(&Value::Null))
                    }
                };
                let out = match reply {
                    Ok(s) => {
                        let mut params = s.params.full_form();
                        // The effective parameters go back to the client, but never a token.
                        if params.get("CloudToken").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
                            params["CloudToken"] = json!("");
                        }
                        session = Some(s);
                        protocol::ws_config_ok(&params)
                    }
                    // A failed configuration may be retried on the same socket.
                    Err(text) => protocol::encode(&protocol::frame_err(&text)),
                };
                if !ws_send(ws, out) {
                    return;
                }
            }
            Message::Binary(data) => {
                let Some(s) = session.as_ref() else {
                    let text = protocol::dg_error_text(
                        "ERROR",
                        "Subsystem is not initialized",
                        "The socket connection is not configured (JSON initial configuration message was not received)",
                        &[],
                    );
                    if !ws_send(ws, protocol::encode(&protocol::frame_err(&text))) {
                        return;
                    }
                    continue;
                };
                if data.is_empty() {
                    // Answer it as its own (failed) frame so frame accounting stays intact.
                    frame.clear();
                    let text = protocol::dg_error_text("ERROR", "Incorrect value of parameter", "empty data is received: ignoring", &[]);
                    if !ws_send(ws, protocol::encode(&protocol::frame_err(&text))) {
                        return;
                    }
                    continue;
                }
                frame.push(data);
                if frame.len() == s.num_inputs() {
                    let r = s.run_frame(&frame);
                    frame.clear();
                    if !ws_send(ws, r) {
                        return;
                    }
                }
            }
            Message::Close(_) => return,
            // Ping/pong are answered by tungstenite itself.
            _ => {}
        }
    }
}
