//! The HTTP side of the AI server on axum/hyper ([`crate::net::serve_http`]): REST routes under
//! `/v1/` (JSON, CORS; parsed into [`Command`]s), `/v2/health/*`, and the WebSocket stream
//! `/v1/stream` (JSON configuration text message, then binary frames and msgpack results,
//! frames run concurrently and answered in order). The WebSocket is tokio-tungstenite with
//! `accept_unmasked_frames` (DeGirum's client sends unmasked frames), behind [`FrameLimits`],
//! which refuses an oversized message from its frame header with our error text.
use super::trace::{Group, Level};
use super::{frame, State};
use crate::net;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use dgzoo::protocol;
use dgzoo::protocol::command::{Command, CommandError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

/// Largest request head (request line and headers): past it hyper answers 431.
const MAX_HEAD: usize = 16 << 10;

pub(super) async fn serve(state: Arc<State>, l: tokio::net::TcpListener) {
    let st = state.clone();
    let router = net::health_routes(state.shutdown.clone()).merge(crate::metrics::route()).fallback(move |req: Request<Body>| {
        let st = st.clone();
        async move { handle(st, req).await }
    });
    let router = crate::metrics::track(router, route_pattern);
    let busy = protocol::frame_err(&protocol::dg_error_text("ERROR", "Operation failed", "too many connections: try again later", &[]));
    let opts = net::HttpOptions { idle_timeout: state.idle_timeout, max_head_bytes: MAX_HEAD, busy_body: busy.to_string() };
    net::serve_http("http", l, router, state.limiter.clone(), state.shutdown.clone(), opts).await
}

/// The `route` label of a request the fallback serves: the REST route's pattern (the part
/// after `/v1/` that `Command::from_rest` dispatches on), never the raw path.
fn route_pattern(_method: &Method, path: &str) -> &'static str {
    let mut segs = path.trim_start_matches('/').split('/');
    match (segs.next(), segs.next()) {
        (Some("v1"), Some("modelzoo")) => "/v1/modelzoo",
        (Some("v1"), Some("system_info")) => "/v1/system_info",
        (Some("v1"), Some("label_dictionary")) => "/v1/label_dictionary/{model}",
        (Some("v1"), Some("sleep")) => "/v1/sleep/{ms}",
        (Some("v1"), Some("shutdown")) => "/v1/shutdown",
        (Some("v1"), Some("zoo_manage")) => "/v1/zoo_manage",
        (Some("v1"), Some("trace_manage")) => "/v1/trace_manage",
        (Some("v1"), Some("dev_ctrl")) => "/v1/dev_ctrl",
        (Some("v1"), Some("stream")) => "/v1/stream",
        _ => "other",
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    respond(status, "application/json", v.to_string().into_bytes())
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    respond(status, "text/plain", text.as_bytes().to_vec())
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// CORS headers for a request from `origin`: only for an origin in the allow-list
/// (`Config::cors_origins`, empty by default), echoed back, never `*`.
fn add_cors(state: &State, origin: Option<&str>, r: &mut Response<Body>) {
    let Some(o) = origin.filter(|o| state.cors_origins.iter().any(|a| a == o || a == "*")) else { return };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(o) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// A request a web page on another site must not make: one that changes state (anything but
/// GET/HEAD/OPTIONS, and the WebSocket stream, which runs inference) carrying an `Origin` that
/// is not in the allow-list (`*` there allows reads only). Clients that are not browsers
/// (PySDK, curl) send no `Origin` and are not affected.
fn cross_origin_refused(state: &State, method: &Method, origin: Option<&str>, upgrade: bool) -> bool {
    let Some(origin) = origin else { return false };
    let state_changing = upgrade || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    state_changing && !state.cors_origins.iter().any(|a| a == origin)
}

async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let peer = req.extensions().get::<net::Peer>().map(|p| p.0.ip());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_string);
    state.log(Group::AiServer, Level::Detailed, &format!("http {method} {path}"));
    let upgrade = header_str(req.headers(), header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if cross_origin_refused(&state, &method, origin.as_deref(), upgrade) {
        state.log_info(Group::TaskServerHttp, &format!("refused cross-origin {method} {path} from origin '{}'", origin.as_deref().unwrap_or_default()));
        let text = protocol::dg_error_text(
            "ERROR",
            "Operation failed",
            "cross-origin requests that change state are not allowed (Origin not in the server's allow-list)",
            &[],
        );
        let mut r = json_response(StatusCode::FORBIDDEN, &protocol::frame_err(&text));
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if path == "/v1/stream" && method == Method::GET && upgrade {
        return ws_upgrade(state, req);
    }
    let mut r = rest(&state, req, &method, &path, peer).await;
    add_cors(&state, origin.as_deref(), &mut r);
    r
}

/// Serve one REST request.
async fn rest(state: &Arc<State>, req: Request<Body>, method: &Method, path: &str, peer: Option<std::net::IpAddr>) -> Response<Body> {
    if *method == Method::OPTIONS {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("OPTIONS, GET, POST"));
        return r;
    }
    // Bodies longer than the JSON limit are refused from Content-Length, before reading.
    let token = header_str(req.headers(), header::AUTHORIZATION).and_then(|a| a.strip_prefix("Bearer ")).map(|t| t.trim().to_string());
    let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let too_large = |len: u64| {
        let text = protocol::dg_error_text(
            "ERROR",
            "Incorrect value of parameter",
            &format!("request body of {len} bytes exceeds the limit of {} bytes", state.max_json),
            &[],
        );
        json_response(StatusCode::PAYLOAD_TOO_LARGE, &protocol::frame_err(&text))
    };
    if declared > state.max_json as u64 {
        return too_large(declared);
    }
    let body = match axum::body::to_bytes(req.into_body(), state.max_json).await {
        Ok(b) => b,
        Err(_) if declared == 0 => return too_large(state.max_json as u64 + 1),
        Err(_) => return text_response(StatusCode::BAD_REQUEST, "400 Bad Request: truncated body"),
    };
    let cmd = match Command::from_rest(method.as_str(), path, &body) {
        Ok(c) => c,
        Err(CommandError::Method) => return text_response(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed"),
        Err(CommandError::BadArgument(text)) => return json_response(StatusCode::INTERNAL_SERVER_ERROR, &protocol::frame_err(&text)),
        Err(_) => return text_response(StatusCode::NOT_FOUND, "404 Not Found"),
    };
    if let Err(text) = state.admin_check(&cmd, token.as_deref()) {
        return json_response(StatusCode::FORBIDDEN, &protocol::frame_err(&text));
    }
    let is_shutdown = cmd == Command::Shutdown;
    let reply = match cmd {
        // REST lists the zoo as an object with parameter objects (not strings).
        Command::ModelZoo => Ok(Some(Value::Object(state.model_list().into_iter().collect()))),
        cmd => state.execute(cmd, peer, token.as_deref()).await,
    };
    match reply {
        Ok(data) => {
            if is_shutdown {
                // Graceful: readiness false now, listeners stop after the grace, this reply
                // and other requests in flight complete.
                state.request_stop(true);
            }
            json_response(StatusCode::OK, &data.unwrap_or(Value::Null))
        }
        Err(text) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &protocol::frame_err(&text)),
    }
}

/// The WebSocket handshake answer; the stream runs as a task once hyper hands the socket over.
fn ws_upgrade(state: Arc<State>, mut req: Request<Body>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
        return text_response(StatusCode::BAD_REQUEST, "400 Bad Request: Sec-WebSocket-Key missing");
    };
    if header_str(req.headers(), header::SEC_WEBSOCKET_VERSION) != Some("13") {
        return text_response(StatusCode::BAD_REQUEST, "400 Bad Request: Sec-WebSocket-Version must be 13");
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let permit = req.extensions().get::<net::ConnPermit>().cloned();
    let st = state.clone();
    let span = tracing::info_span!(parent: None, "stream", stream_id = crate::metrics::next_id(), kind = "websocket");
    state.shutdown.spawn(async move {
        // Counted against the connection cap while the stream lives.
        let _permit = permit;
        let Ok(upgraded) = on_upgrade.await else { return };
        let _conn = crate::metrics::Connection::open(crate::metrics::ConnKind::WebSocket);
        let refused = Arc::new(Mutex::new(None));
        let io = FrameLimits::new(hyper_util::rt::TokioIo::new(upgraded), st.max_json, st.max_packet, refused.clone());
        let cfg =
            WebSocketConfig { max_message_size: Some(st.max_packet), max_frame_size: Some(st.max_packet), accept_unmasked_frames: true, ..Default::default() };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
        ws_stream(&st, ws, &refused).instrument(span).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

type Ws = tokio_tungstenite::WebSocketStream<FrameLimits<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>;

fn error_reply(text: &str) -> Message {
    Message::Binary(protocol::encode(&protocol::frame_err(text)))
}

fn param_error(msg: &str) -> Message {
    error_reply(&protocol::dg_error_text("ERROR", "Incorrect value of parameter", msg, &[]))
}

/// One WebSocket stream. It ends on a close, a read error (client gone, oversized or malformed
/// frame: answered with an error first when it can be), shutdown, or `idle_timeout` without any
/// message while nothing is in flight; the server pings every third of that time.
async fn ws_stream(state: &Arc<State>, mut ws: Ws, refused: &Mutex<Option<String>>) {
    let idle = state.idle_timeout;
    let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(100)));
    ping.tick().await;
    let mut last_seen = Instant::now();
    let mut queue: Option<frame::FrameQueue> = None;
    let mut reading = true;
    // The client's frame was refused: it may still be sending it (see `linger`).
    let mut refused_frame = false;
    loop {
        let busy = queue.as_ref().is_some_and(|q| !q.is_empty());
        if !reading && !busy {
            break;
        }
        let full = queue.as_ref().is_some_and(|q| q.is_full());
        tokio::select! {
            biased;
            Some(r) = async { queue.as_mut()?.next_result().await }, if busy => {
                if ws.send(Message::Binary(r)).await.is_err() {
                    return;
                }
            }
            m = ws.next(), if reading && !full => {
                last_seen = Instant::now();
                let reply = match m {
                    None => { reading = false; None }
                    Some(Err(e)) => {
                        reading = false;
                        state.log(Group::TaskServerHttp, Level::Detailed, &format!("WebSocket stream ended: {e}"));
                        // Our limits' text, or tungstenite's protocol/size error; a client
                        // that is gone gets nothing.
                        let text = refused.lock().unwrap_or_else(|p| p.into_inner()).take();
                        use tokio_tungstenite::tungstenite::Error as E;
                        let reply = match (text, &e) {
                            (Some(t), _) => Some(param_error(&t)),
                            (None, E::Protocol(_) | E::Capacity(_) | E::Utf8) => Some(param_error(&e.to_string())),
                            _ => None,
                        };
                        refused_frame = reply.is_some();
                        reply
                    }
                    Some(Ok(Message::Close(_))) => { reading = false; None }
                    Some(Ok(Message::Text(t))) => configure(state, &mut queue, t).await,
                    Some(Ok(Message::Binary(data))) => match queue.as_mut() {
                        // An empty message is a (failed) frame of its own, so frame accounting holds.
                        Some(q) => { q.push_packet(data); None }
                        None => Some(error_reply(&protocol::dg_error_text(
                            "ERROR",
                            "Subsystem is not initialized",
                            "The socket connection is not configured (JSON initial configuration message was not received)",
                            &[],
                        ))),
                    },
                    Some(Ok(_)) => None,
                };
                if let Some(r) = reply {
                    if ws.send(r).await.is_err() {
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if !busy && last_seen.elapsed() >= idle {
                    state.log(Group::TaskServerHttp, Level::Detailed, "WebSocket stream closed: idle");
                    break;
                }
                if ws.send(Message::Ping(Vec::new())).await.is_err() {
                    return;
                }
            }
            _ = state.shutdown.cancelled(), if reading => reading = false,
        }
    }
    let _ = ws.close(None).await;
    if refused_frame {
        net::linger_close(&mut ws.get_mut().inner).await;
    }
    if let Some(q) = &queue {
        state.stream_closed(q.session_name(), q.frames);
    }
}

/// The configuration (text) message: opens the stream, or answers why not (the client may
/// retry on the same socket).
async fn configure(state: &Arc<State>, queue: &mut Option<frame::FrameQueue>, text: String) -> Option<Message> {
    if queue.is_some() {
        return Some(param_error("The socket connection is already configured (JSON initial configuration message is received second time)"));
    }
    let Some(cfg) = serde_json::from_str::<Value>(&text).ok().filter(Value::is_object) else {
        return Some(error_reply(&protocol::dg_error_text("ERROR", "Parsing error", "configuration message is not a JSON object", &[])));
    };
    let Command::Stream { name, config } = Command::from_ws(&cfg) else {
        return Some(error_reply(&protocol::dg_error_text("ERROR", "Parsing error", "configuration message is not a stream configuration", &[])));
    };
    match frame::open_stream(state, name, config).await {
        Ok(s) => {
            let mut params = s.params.full_form();
            // The effective parameters go back to the client, but never a token.
            if params.get("CloudToken").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
                params["CloudToken"] = json!("");
            }
            *queue = Some(frame::FrameQueue::new(s));
            Some(Message::Binary(protocol::ws_config_ok(&params)))
        }
        Err(text) => Some(error_reply(&text)),
    }
}

/// Watches the client's WebSocket frame headers as they are read and refuses, from the header
/// alone (nothing allocated), a text message over `max_text` (the JSON limit), a data message
/// over `max_binary` (the packet limit) and a control frame over 125 bytes: the read fails and
/// `refused` holds the text for the error reply.
struct FrameLimits<S> {
    inner: S,
    max_text: u64,
    max_binary: u64,
    refused: Arc<Mutex<Option<String>>>,
    head: [u8; 14],
    head_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// The current message is text, and its size so far.
    text: bool,
    message: u64,
}

impl<S> FrameLimits<S> {
    fn new(inner: S, max_text: usize, max_binary: usize, refused: Arc<Mutex<Option<String>>>) -> Self {
        FrameLimits {
            inner,
            max_text: max_text as u64,
            max_binary: max_binary as u64,
            refused,
            head: [0; 14],
            head_len: 0,
            payload_left: 0,
            text: false,
            message: 0,
        }
    }

    /// Length of the frame header once its first two bytes are known.
    fn head_size(&self) -> usize {
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if self.head[1] & 0x80 != 0 { 4 } else { 0 }
    }

    /// Follow `bytes`; the error text when a frame breaks a limit.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = (self.payload_left.min(bytes.len() as u64)) as usize;
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.head[self.head_len] = bytes[0];
            self.head_len += 1;
            bytes = &bytes[1..];
            if self.head_len < 2 || self.head_len < self.head_size() {
                continue;
            }
            let len = match self.head[1] & 0x7f {
                126 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or_default()),
                n => n as u64,
            };
            let (fin, opcode) = (self.head[0] & 0x80 != 0, self.head[0] & 0x0f);
            self.head_len = 0;
            self.payload_left = len;
            if opcode >= 8 {
                if len > 125 {
                    return Err(format!("WebSocket control frame of {len} bytes exceeds the limit of 125 bytes"));
                }
                continue;
            }
            if opcode != 0 {
                self.text = opcode == 1;
                self.message = 0;
            }
            self.message = self.message.saturating_add(len);
            let max = if self.text { self.max_text } else { self.max_binary };
            if self.message > max {
                let what = if self.text { "text " } else { "" };
                return Err(format!("WebSocket {what}message of {} bytes exceeds the limit of {max} bytes", self.message));
            }
            if fin {
                self.message = 0;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameLimits<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = buf.filled()[before..].to_vec();
            if let Err(text) = self.scan(&new) {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, text)));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameLimits<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::FrameLimits;
    use std::sync::{Arc, Mutex};

    fn limits() -> FrameLimits<()> {
        FrameLimits::new((), 100, 1000, Arc::new(Mutex::new(None)))
    }

    #[test]
    fn frame_headers_are_followed_across_reads() {
        let mut f = limits();
        // A masked 5-byte text frame split byte by byte, then an unmasked 200-byte binary one.
        let mut bytes = vec![0x81, 0x85, 1, 2, 3, 4, b'a', b'b', b'c', b'd', b'e', 0x82, 126, 0, 200];
        bytes.extend([7u8; 200]);
        for b in &bytes {
            f.scan(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!((f.head_len, f.payload_left), (0, 0));
    }

    #[test]
    fn oversized_messages_are_refused_from_the_header() {
        assert!(limits().scan(&[0x81, 101]).unwrap_err().contains("text message of 101 bytes exceeds the limit of 100"));
        assert!(limits().scan(&[0x82, 127, 0, 0, 0, 0, 0, 0, 3, 233]).unwrap_err().contains("message of 1001 bytes"));
        assert!(limits().scan(&[0x89, 126, 0, 200]).unwrap_err().contains("control frame of 200 bytes"));
        // Fragments of one text message add up.
        let mut f = limits();
        let mut first = vec![0x01, 60];
        first.extend([b'x'; 60]);
        f.scan(&first).unwrap();
        assert!(f.scan(&[0x80, 60]).unwrap_err().contains("text message of 120 bytes"));
    }
}
