//! AI-server client (asio or HTTP, per the address): one-shot commands on fresh connections
//! like PySDK (`modelzoo`, `system_info`, `label_dictionary`, `sleep`, ...) and inference
//! streams (a dedicated asio connection or a WebSocket on `/v1/stream`).
use crate::address::ServerAddress;
use crate::error::{Code, Error, Result};
use crate::protocol::ws::{ClientReader, ClientWriter, WsClient, WsMessage};
use crate::protocol::{self, http};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;

/// A client for one AI server.
#[derive(Debug, Clone)]
pub struct AiServerClient {
    pub addr: ServerAddress,
    /// Connection / command-reply timeout.
    pub timeout: Duration,
    /// Largest result packet accepted.
    pub max_packet: usize,
    /// Sent with the management commands a server may guard (`shutdown`, `zoo_manage`,
    /// `trace_manage`, `dev_ctrl`): asio as the command's `admin_token` field, HTTP as
    /// `Authorization: Bearer`. Other commands never carry it.
    pub admin_token: Option<String>,
}

impl AiServerClient {
    pub fn new(addr: ServerAddress) -> Self {
        AiServerClient { addr, timeout: Duration::from_millis(protocol::CONNECT_TIMEOUT_MS), max_packet: protocol::DEFAULT_MAX_PACKET, admin_token: None }
    }

    /// The admin token to send with guarded management commands (empty = none).
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = token.filter(|t| !t.is_empty());
        self
    }

    /// The admin token, when `op` is a management command a server may guard.
    fn admin_token_for(&self, op: &str) -> Option<&str> {
        matches!(op, "shutdown" | "zoo_manage" | "trace_manage" | "dev_ctrl").then_some(self.admin_token.as_deref()).flatten()
    }

    /// `host:port`, as used in PySDK's messages.
    pub fn server(&self) -> String {
        format!("{}:{}", self.addr.host, self.addr.port)
    }

    fn connect(&self) -> Result<TcpStream> {
        // PySDK's client tries to connect three times, then reports like this.
        const RETRIES: usize = 3;
        let mut last = None;
        for _ in 0..RETRIES {
            match http::connect(&self.addr.host, self.addr.port, self.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let reason = last.map(|e| e.message).unwrap_or_default();
        Err(Error::new(
            Code::Network,
            format!(
                "[ERROR]OS error\nError connecting to {}:{} after {RETRIES} retries with timeout {} s: {reason}\n",
                self.addr.host,
                self.addr.port,
                self.timeout.as_secs_f64()
            ),
        ))
    }

    /// One asio command on a fresh connection; returns the op's data.
    fn asio_command(&self, op: &str, fields: Value) -> Result<Value> {
        let mut s = self.connect()?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let server = self.server();
        let io = |e: std::io::Error| {
            let code = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) { Code::Timeout } else { Code::Network };
            Error::new(code, format!("Error communicating with AI server '{server}' (op '{op}'): {e}"))
        };
        let mut msg = protocol::command(op, fields);
        if let (Some(t), Some(m)) = (self.admin_token_for(op), msg.as_object_mut()) {
            m.insert(protocol::command::ADMIN_TOKEN_FIELD.into(), json!(t));
        }
        protocol::write_packet(&mut s, msg.to_string().as_bytes()).map_err(io)?;
        let reply = protocol::read_packet(&mut s, self.max_packet)
            .map_err(io)?
            .ok_or_else(|| Error::new(Code::Network, format!("AI server '{server}' closed the connection without replying to '{op}'")))?;
        protocol::check_reply(op, &reply, &server)
    }

    /// One REST request; non-2xx → PySDK's "Error sending HTTP request" text.
    fn rest(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body_bytes = body.map(|b| b.to_string().into_bytes());
        let op = path.trim_start_matches("/v1/").split('/').next().unwrap_or_default();
        let auth = self.admin_token_for(op).map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
        let (status, reason, resp) = http::request_with_headers(&self.addr.host, self.addr.port, method, path, &headers, body_bytes.as_deref(), self.timeout)?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        if !(200..300).contains(&status) {
            // The server's own message when it sent one.
            let detail = serde_json::from_str::<Value>(&text).ok().as_ref().and_then(protocol::error_of).unwrap_or(text);
            return Err(Error::new(
                Code::Protocol,
                format!("Error sending HTTP request '{path}' to http://{}:{}: {reason}({status}) {detail}", self.addr.host, self.addr.port),
            ));
        }
        if resp.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&resp).map_err(|e| Error::new(Code::Protocol, format!("Response from server '{}' is incorrect: {e}", self.server())))
    }

    /// Run a command over the address's protocol.
    pub fn command(&self, op: &str, fields: Value) -> Result<Value> {
        if !self.addr.http {
            return self.asio_command(op, fields);
        }
        match op {
            "modelzoo" | "system_info" => self.rest("GET", &format!("/v1/{op}"), None),
            "label_dictionary" => {
                let name = fields.get("name").and_then(Value::as_str).unwrap_or_default();
                self.rest("GET", &format!("/v1/label_dictionary/{}", crate::protocol::http::percent_encode(name)), None)
            }
            "sleep" => {
                let ms = fields.get("sleep_time_ms").and_then(Value::as_f64).unwrap_or(0.0);
                self.rest("POST", &format!("/v1/sleep/{ms:.6}"), None)
            }
            "shutdown" => {
                // As PySDK: a ping that must succeed, then shutdown with errors ignored.
                self.rest("POST", "/v1/sleep/0.000000", None)?;
                let _ = self.rest("POST", "/v1/shutdown", None);
                Ok(Value::Null)
            }
            _ => self.rest("POST", &format!("/v1/{op}"), Some(fields.get("args").unwrap_or(&json!({})))),
        }
    }

    /// The server's zoo: (name, parameters) in the server's order.
    pub fn modelzoo(&self) -> Result<Vec<(String, Value)>> {
        let v = self.command("modelzoo", json!({}))?;
        let bad = || Error::new(Code::Protocol, format!("Response from server '{}' is incorrect: malformed model list", self.server()));
        match v {
            // asio: [{"name", "ModelParams": "<json text>"}]
            Value::Array(list) => list
                .into_iter()
                .map(|e| {
                    let name = e.get("name").and_then(Value::as_str).ok_or_else(bad)?.to_string();
                    let params = match e.get("ModelParams") {
                        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| bad())?,
                        Some(o @ Value::Object(_)) => o.clone(),
                        _ => return Err(bad()),
                    };
                    Ok((name, params))
                })
                .collect(),
            // http: {"<name>": {params}}
            Value::Object(m) => Ok(m.into_iter().collect()),
            Value::Null => Ok(Vec::new()),
            _ => Err(bad()),
        }
    }

    pub fn system_info(&self) -> Result<Value> {
        self.command("system_info", json!({}))
    }

    pub fn label_dictionary(&self, model: &str) -> Result<Value> {
        self.command("label_dictionary", json!({"name": model}))
    }

    pub fn ping(&self) -> Result<()> {
        self.command("sleep", json!({"sleep_time_ms": 0.0})).map(|_| ())
    }

    pub fn shutdown(&self) -> Result<()> {
        self.command("shutdown", json!({}))?;
        if !self.addr.http {
            // Wake the server's accept loop like the C++ client; errors do not matter.
            if let Ok(mut s) = http::connect(&self.addr.host, self.addr.port, Duration::from_millis(500)) {
                let _ = protocol::write_packet(&mut s, b"");
            }
        }
        Ok(())
    }

    pub fn zoo_manage(&self, args: Value) -> Result<Value> {
        self.command("zoo_manage", json!({"args": args}))
    }

    /// Open an inference stream on `model` with the model `config` (runtime parameters).
    pub fn open_stream(&self, model: &str, config: &Value) -> Result<RemoteStream> {
        let server = self.server();
        let s = self.connect()?;
        let _ = s.set_write_timeout(Some(self.timeout));
        let open_err = |e: std::io::Error| Error::new(Code::Network, format!("cannot open a stream on AI server '{server}': {e}"));
        if !self.addr.http {
            let mut s = s;
            let msg = protocol::command("stream", json!({"name": model, "config": config}));
            protocol::write_packet(&mut s, msg.to_string().as_bytes()).map_err(open_err)?;
            // Success has no reply; a failure arrives as the first result.
            let send = s.try_clone().map_err(open_err)?;
            return Ok(RemoteStream::new(SendConn::Asio(send), Receiver::Asio(s), server, self.max_packet));
        }
        let raw = s.try_clone().map_err(open_err)?;
        let mut ws = WsClient::handshake(s, &self.addr.host, self.addr.port, "/v1/stream", self.max_packet, self.timeout)?;
        let cfg_err = |msg: String| Error::new(Code::Protocol, format!("Error configuring model {model} on AI server http://{server}: {msg}"));
        ws.writer.send_text(protocol::ws_config_message(model, config).as_bytes()).map_err(|e| cfg_err(e.to_string()))?;
        ws.reader.set_read_timeout(Some(self.timeout));
        // The reply is msgpack, in a binary or (for errors, from DeGirum's server) text frame.
        let reply = match ws.reader.recv() {
            Ok(WsMessage::Binary(b) | WsMessage::Text(b)) => b,
            Ok(WsMessage::Close) => return Err(cfg_err("connection closed".into())),
            Err(e) => return Err(cfg_err(e.to_string())),
        };
        let (v, _) = protocol::decode(&reply).map_err(|e| cfg_err(e.message))?;
        if let Some(msg) = protocol::error_of(&v) {
            return Err(cfg_err(msg));
        }
        Ok(RemoteStream::new(SendConn::Ws(ws.writer, raw), Receiver::Ws(ws.reader), server, self.max_packet))
    }
}

/// An open inference stream: frames out, msgpack results back in order.
pub struct RemoteStream {
    tx: StreamSender,
    rx: Receiver,
    max_packet: usize,
}

enum Receiver {
    Asio(TcpStream),
    Ws(ClientReader),
}

/// The sending side of a stream. A second one (`RemoteStream::sender`) lets one thread send
/// frames while another reads the results.
pub struct StreamSender {
    conn: SendConn,
    server: String,
}

enum SendConn {
    Asio(TcpStream),
    /// The writer, and the socket to shut down without waiting for a write in progress.
    Ws(ClientWriter, TcpStream),
}

impl std::fmt::Debug for RemoteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStream({})", self.tx.server)
    }
}

impl StreamSender {
    /// Send one frame (one packet per model input).
    pub fn send_frame(&mut self, packets: &[Vec<u8>]) -> Result<()> {
        let server = &self.server;
        let err = |e: std::io::Error| Error::new(Code::Network, format!("Error sending frame to AI server '{server}': {e}"));
        for p in packets {
            match &mut self.conn {
                SendConn::Asio(s) => protocol::write_packet(s, p).map_err(err)?,
                SendConn::Ws(w, _) => w.send_binary(p).map_err(err)?,
            }
        }
        Ok(())
    }

    /// End of stream: an empty packet (asio) or a close frame (WebSocket).
    pub fn close(mut self) {
        match &mut self.conn {
            SendConn::Asio(s) => {
                let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
                let _ = protocol::write_packet(s, b"");
            }
            SendConn::Ws(w, _) => w.close(),
        }
    }

    /// Shut the connection down both ways: a thread blocked reading results returns at once.
    pub fn abort(&self) {
        let (SendConn::Asio(s) | SendConn::Ws(_, s)) = &self.conn;
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

impl RemoteStream {
    fn new(tx: SendConn, rx: Receiver, server: String, max_packet: usize) -> Self {
        RemoteStream { tx: StreamSender { conn: tx, server }, rx, max_packet }
    }

    /// Another sending side of this stream, for a thread other than the reader.
    pub fn sender(&self) -> Result<StreamSender> {
        let server = self.tx.server.clone();
        let err = |e: std::io::Error| Error::new(Code::Network, format!("Error sending frame to AI server '{server}': {e}"));
        let conn = match &self.tx.conn {
            SendConn::Asio(s) => SendConn::Asio(s.try_clone().map_err(err)?),
            SendConn::Ws(w, s) => SendConn::Ws(w.clone(), s.try_clone().map_err(err)?),
        };
        Ok(StreamSender { conn, server })
    }

    /// Send one frame (one packet per model input).
    pub fn send_frame(&mut self, packets: &[Vec<u8>]) -> Result<()> {
        self.tx.send_frame(packets)
    }

    /// Receive the next result packet, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let timeout = timeout.max(Duration::from_millis(1));
        let ms = timeout.as_millis();
        let server = &self.tx.server;
        let timed_out = || Error::new(Code::Timeout, format!("[CRITICAL]Timeout detected\nTimeout {ms} ms waiting for response from AI server '{server}'"));
        let is_timeout = |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
        let closed = || Error::new(Code::Network, format!("AI server '{server}' closed the connection"));
        match &mut self.rx {
            Receiver::Asio(s) => {
                let _ = s.set_read_timeout(Some(timeout));
                match protocol::read_packet(s, self.max_packet) {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => Err(closed()),
                    Err(e) if is_timeout(&e) => Err(timed_out()),
                    Err(e) => Err(Error::new(Code::Network, format!("Error receiving from AI server '{server}': {e}"))),
                }
            }
            Receiver::Ws(r) => {
                r.set_read_timeout(Some(timeout));
                match r.recv() {
                    Ok(WsMessage::Binary(b) | WsMessage::Text(b)) => Ok(b),
                    Ok(WsMessage::Close) => Err(closed()),
                    Err(e) if is_timeout(&e) => Err(timed_out()),
                    Err(e) => Err(Error::new(Code::Network, format!("Error receiving from AI server '{server}': {e}"))),
                }
            }
        }
    }

    /// End of stream: an empty packet (asio) or a close frame (WebSocket).
    pub fn close(self) {
        self.tx.close()
    }
}
