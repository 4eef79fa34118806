//! The HTTP side of the AI server: REST routes under `/v1/` (JSON, CORS) and the WebSocket
//! stream `/v1/stream` (JSON configuration text message, then binary frames and msgpack
//! results, frames processed concurrently and answered in order). A small HTTP/1.1 server of
//! our own, one thread per connection (keep-alive): tiny_http 0.12 was tried first, but with
//! several upgraded (long-lived) WebSocket connections open it stopped handing over new
//! requests. WebSocket frames use `protocol::ws`, which accepts DeGirum's unmasked frames.
use super::{Level, State};
use dgzoo::error::{Error, Result};
use dgzoo::protocol;
use dgzoo::protocol::ws::{self, WsMessage, WsReader, WsWriter};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Idle time before a keep-alive connection is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_LINE: usize = 16 << 10;
const MAX_HEADERS: usize = 100;

pub(super) fn start(state: Arc<State>, host: &str, port: u16) -> Result<(SocketAddr, JoinHandle<()>)> {
    let l = TcpListener::bind((host, port)).map_err(|e| Error::io(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = l.local_addr().map_err(|e| Error::io(format!("cannot listen on {host}:{port}: {e}")))?;
    *state.http_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    let h = std::thread::Builder::new()
        .name("dgzoo-http".into())
        .spawn(move || {
            for conn in l.incoming() {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(sock) = conn else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let Some(slot) = super::ConnectionSlot::take(&state) else {
                    state.log_info("connection refused: too many connections");
                    continue;
                };
                let st = state.clone();
                let _ = std::thread::Builder::new().name("dgzoo-http-conn".into()).spawn(move || {
                    let _slot = slot;
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| connection(&st, sock)));
                });
            }
            state.log_info("http listener stopped");
        })
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok((addr, h))
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

fn json_response(status: u16, v: &Value) -> Response {
    Response { status, content_type: "application/json", body: v.to_string().into_bytes(), extra: Vec::new() }
}

fn text_response(status: u16, text: &str) -> Response {
    Response { status, content_type: "text/plain", body: text.as_bytes().to_vec(), extra: Vec::new() }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// CORS headers for a request from `origin`: only for an origin in the allow-list
/// (`Config::cors_origins`, empty by default), echoed back, never `*`.
fn cors_headers(state: &State, origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        Some(o) if state.cors_origins.iter().any(|a| a == o || a == "*") => vec![
            ("Access-Control-Allow-Origin", o.to_string()),
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()),
            ("Access-Control-Allow-Headers", "Content-Type".into()),
            ("Vary", "Origin".into()),
        ],
        _ => Vec::new(),
    }
}

/// A request a web page on another site must not make: one that changes state (anything but
/// GET/HEAD/OPTIONS, and the WebSocket stream, which runs inference) carrying an `Origin` that
/// is not in the allow-list (`*` there allows reads only). Clients that are not browsers
/// (PySDK, curl) send no `Origin` and are not affected.
fn cross_origin_refused(state: &State, req: &Request, upgrade: bool) -> bool {
    let Some(origin) = req.header("Origin") else { return false };
    let state_changing = upgrade || !matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    state_changing && !state.cors_origins.iter().any(|a| a == origin)
}

fn write_response(w: &mut TcpStream, r: &Response, keep_alive: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    if r.status != 204 {
        head.push_str(&format!("Content-Type: {}\r\nContent-Length: {}\r\n", r.content_type, r.body.len()));
    }
    for (k, v) in &r.extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if keep_alive { "Connection: keep-alive\r\n\r\n" } else { "Connection: close\r\n\r\n" });
    let mut out = head.into_bytes();
    if r.status != 204 {
        out.extend_from_slice(&r.body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// One line, bounded; `None` on EOF before any byte.
fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "header line too long or truncated"));
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string()))
}

/// Read one request. `Ok(None)`: the client closed an idle connection.
/// Bodies longer than `max_body` (the server's JSON limit) are refused from Content-Length.
fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> std::result::Result<Option<Request>, Response> {
    let bad = |m: &str| text_response(400, &format!("400 Bad Request: {m}"));
    let line = match read_line(r) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(None),
        Err(_) => return Ok(None),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad("malformed request line")) };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("unsupported HTTP version"));
    }
    let mut headers = Vec::new();
    loop {
        let l = read_line(r).map_err(|_| bad("malformed headers"))?.ok_or_else(|| bad("truncated headers"))?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let (k, v) = l.split_once(':').ok_or_else(|| bad("malformed header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request { method: method.to_string(), path: target.split('?').next().unwrap_or_default().to_string(), headers, body: Vec::new() };
    if req.header("Transfer-Encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        return Err(bad("chunked request bodies are not supported"));
    }
    let len = match req.header("Content-Length") {
        Some(v) => v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?,
        None => 0,
    };
    if len > max_body {
        let text = protocol::dg_error_text(
            "ERROR",
            "Incorrect value of parameter",
            &format!("request body of {len} bytes exceeds the limit of {max_body} bytes"),
            &[],
        );
        return Err(json_response(413, &protocol::frame_err(&text)));
    }
    req.body = vec![0u8; len];
    r.read_exact(&mut req.body).map_err(|_| bad("truncated body"))?;
    Ok(Some(req))
}

fn connection(state: &Arc<State>, sock: TcpStream) {
    let peer: Option<IpAddr> = sock.peer_addr().ok().map(|a| a.ip());
    let _ = sock.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(60)));
    let _ = sock.set_nodelay(true);
    let Ok(mut writer) = sock.try_clone() else { return };
    let mut reader = BufReader::new(sock);
    loop {
        let req = match read_request(&mut reader, state.max_json) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(resp) => {
                let _ = write_response(&mut writer, &resp, false);
                return;
            }
        };
        state.log(Level::Debug, &format!("http {} {}", req.method, req.path));
        let upgrade = req.header("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if cross_origin_refused(state, &req, upgrade) {
            state.log_info(&format!("refused cross-origin {} {} from origin '{}'", req.method, req.path, req.header("Origin").unwrap_or_default()));
            let text = protocol::dg_error_text(
                "ERROR",
                "Operation failed",
                "cross-origin requests that change state are not allowed (Origin not in the server's allow-list)",
                &[],
            );
            let _ = write_response(&mut writer, &json_response(403, &protocol::frame_err(&text)), false);
            return;
        }
        if req.path == "/v1/stream" && req.method == "GET" && upgrade {
            let Some(key) = req.header("Sec-WebSocket-Key") else {
                let _ = write_response(&mut writer, &text_response(400, "400 Bad Request: Sec-WebSocket-Key missing"), false);
                return;
            };
            let accept = ws::accept_key(key);
            let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            // Frames the client sent right behind the handshake are already in our buffer.
            let leftover = reader.buffer().to_vec();
            let sock = reader.into_inner();
            // Streams may idle between frames as long as the client likes.
            let _ = sock.set_read_timeout(None);
            let Ok((mut rd, wr)) = ws::server(sock, leftover, state.max_packet) else { return };
            rd.set_max_text(state.max_json);
            ws_stream(state, rd, &wr);
            wr.close();
            return;
        }
        let close = req.header("Connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let (mut resp, shutdown) = route(state, &req, peer);
        resp.extra.extend(cors_headers(state, req.header("Origin")));
        let sent = write_response(&mut writer, &resp, !close && !shutdown).is_ok();
        if shutdown {
            state.request_stop(false);
        }
        if !sent || close || shutdown || state.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Serve one REST request; the flag asks the caller to stop the server after replying.
fn route(state: &Arc<State>, req: &Request, peer: Option<IpAddr>) -> (Response, bool) {
    if req.method == "OPTIONS" {
        let mut r = text_response(204, "");
        r.extra.push(("Allow", "OPTIONS, GET, POST".into()));
        return (r, false);
    }
    let path: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    // (op, allowed methods); label_dictionary and sleep carry a path argument.
    let (op, methods): (&str, &[&str]) = match path.as_slice() {
        ["v1", "modelzoo"] => ("modelzoo", &["GET"]),
        ["v1", "system_info"] => ("system_info", &["GET"]),
        ["v1", "label_dictionary", _] => ("label_dictionary", &["GET"]),
        ["v1", "sleep", _] => ("sleep", &["POST"]),
        ["v1", "shutdown"] => ("shutdown", &["POST"]),
        ["v1", "trace_manage"] => ("trace_manage", &["POST"]),
        ["v1", "zoo_manage"] => ("zoo_manage", &["POST"]),
        ["v1", "dev_ctrl"] => ("dev_ctrl", &["POST", "GET"]),
        _ => return (text_response(404, "404 Not Found"), false),
    };
    if !methods.contains(&req.method.as_str()) {
        return (text_response(405, "405 Method Not Allowed"), false);
    }
    let mut msg = json!({});
    match op {
        "label_dictionary" => msg["name"] = json!(dgzoo::protocol::http::percent_decode(path[2])),
        "sleep" => match path[2].parse::<f64>() {
            Ok(ms) => msg["sleep_time_ms"] = json!(ms),
            Err(_) => return (json_response(500, &protocol::frame_err(&format!("Incorrect sleep time '{}'", path[2]))), false),
        },
        "trace_manage" | "zoo_manage" | "dev_ctrl" if req.method == "POST" => match serde_json::from_slice::<Value>(&req.body) {
            Ok(args) => msg["args"] = args,
            Err(_) => {
                let text = protocol::dg_error_text("ERROR", "Parsing error", "request body is not valid JSON", &[]);
                return (json_response(500, &protocol::frame_err(&text)), false);
            }
        },
        _ => {}
    }
    let reply = match op {
        // REST lists the zoo as an object with parameter objects (not strings).
        "modelzoo" => Ok(Some(Value::Object(state.model_list().into_iter().collect()))),
        _ => state.run_command(op, &msg, peer),
    };
    match reply {
        Ok(data) => (json_response(200, &data.unwrap_or(Value::Null)), op == "shutdown"),
        Err(text) => (json_response(500, &protocol::frame_err(&text)), false),
    }
}

fn ws_stream(state: &Arc<State>, mut rd: WsReader, wr: &WsWriter) {
    let reply = |v: Value| wr.send_binary(&protocol::encode(&v)).is_ok();
    let mut pipeline: Option<(usize, super::frame::FramePipeline)> = None;
    let mut frame: Vec<Vec<u8>> = Vec::new();
    // A read error (client gone, oversized or malformed frame) ends the stream; an oversized
    // message is answered with an error first.
    loop {
        let msg = match rd.recv() {
            Ok(m) => m,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    reply(protocol::frame_err(&protocol::dg_error_text("ERROR", "Incorrect value of parameter", &e.to_string(), &[])));
                }
                break;
            }
        };
        match msg {
            WsMessage::Text(t) => {
                if pipeline.is_some() {
                    let text = protocol::dg_error_text(
                        "ERROR",
                        "Incorrect value of parameter",
                        "The socket connection is already configured (JSON initial configuration message is received second time)",
                        &[],
                    );
                    if !reply(protocol::frame_err(&text)) {
                        break;
                    }
                    continue;
                }
                let cfg: Option<Value> = serde_json::from_slice(&t).ok().filter(Value::is_object);
                let opened = match cfg {
                    None => Err(protocol::dg_error_text("ERROR", "Parsing error", "configuration message is not a JSON object", &[])),
                    Some(cfg) => {
                        let name = cfg.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                        state.open_stream(&name, cfg.get("config").unwrap_or(&Value::Null))
                    }
                };
                match opened {
                    Ok(s) => {
                        let mut params = s.params.full_form();
                        // The effective parameters go back to the client, but never a token.
                        if params.get("CloudToken").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
                            params["CloudToken"] = json!("");
                        }
                        if wr.send_binary(&protocol::ws_config_ok(&params)).is_err() {
                            break;
                        }
                        let n = s.num_inputs();
                        let w = wr.clone();
                        pipeline = Some((n, super::frame::FramePipeline::new(Arc::new(s), move |r| w.send_binary(r).is_ok())));
                    }
                    // A failed configuration may be retried on the same socket.
                    Err(text) => {
                        if !reply(protocol::frame_err(&text)) {
                            break;
                        }
                    }
                }
            }
            WsMessage::Binary(data) => {
                let Some((n, p)) = pipeline.as_mut() else {
                    let text = protocol::dg_error_text(
                        "ERROR",
                        "Subsystem is not initialized",
                        "The socket connection is not configured (JSON initial configuration message was not received)",
                        &[],
                    );
                    if !reply(protocol::frame_err(&text)) {
                        break;
                    }
                    continue;
                };
                // An empty message is a (failed) frame of its own, so frame accounting holds.
                frame.push(data);
                if frame.len() == *n && !p.push(std::mem::take(&mut frame)) {
                    break;
                }
            }
            WsMessage::Close => break,
        }
    }
    if let Some((_, p)) = pipeline {
        p.finish();
    }
}
