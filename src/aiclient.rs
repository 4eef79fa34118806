//! AI-server client (asio or HTTP, per the address): one-shot commands on fresh connections
//! like PySDK (`modelzoo`, `system_info`, `label_dictionary`, `sleep`, ...) and inference
//! streams (a dedicated asio connection or a WebSocket on `/v1/stream`).
//!
//! Fail-over (dgzoo's extension, `host1:port,host2:port`): a client made by
//! [`AiServerClient::with_failover`] holds several servers of one zoo and a current one that
//! every clone shares. Read-only commands and stream opens go to the current server; when it
//! cannot be reached, the others are health-checked in list order (`GET /v2/health/ready` on
//! an http address, a `sleep` ping on asio) and the first healthy one becomes current. Before
//! a stream opens, the current server is checked too, so a draining server (ready 503) is left
//! before it stops. Frames in flight on a stream that breaks fail (PySDK's texts); the next
//! stream opens on a healthy server. `shutdown` and `zoo_manage` never move to another server.
use crate::address::{ServerAddress, SERVER_LIST_SEPARATOR};
use crate::error::{Code, Error, Result};
use crate::protocol::command::{Command, ADMIN_TOKEN_FIELD, WS_STREAM_PATH};
use crate::protocol::ws::{ClientReader, ClientWriter, WsClient, WsMessage};
use crate::protocol::{self, http};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// PySDK's ping: `sleep` of 0 ms.
const PING: Command = Command::Sleep { ms: 0.0 };

/// A REST request as the client sends it (from [`Command::rest_route`] and [`Command::rest_body`]).
struct RestRequest {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    auth: Option<String>,
}

/// A client for one AI server, or for a fail-over list of servers (see the module comment).
#[derive(Debug, Clone)]
pub struct AiServerClient {
    /// The server this client talks to (for a fail-over list: the first one; the one in use is
    /// [`AiServerClient::current`]).
    pub addr: ServerAddress,
    /// Connection / command-reply timeout.
    pub timeout: Duration,
    /// Largest result packet accepted.
    pub max_packet: usize,
    /// Sent with the management commands a server may guard (`shutdown`, `zoo_manage`,
    /// `trace_manage`, `dev_ctrl`): asio as the command's `admin_token` field, HTTP as
    /// `Authorization: Bearer`. Other commands never carry it.
    pub admin_token: Option<String>,
    failover: Option<Arc<Failover>>,
}

/// The servers of a fail-over list and the index of the one in use (shared by every clone).
#[derive(Debug)]
struct Failover {
    servers: Vec<ServerAddress>,
    current: AtomicUsize,
}

fn host_port(a: &ServerAddress) -> String {
    format!("{}:{}", a.host, a.port)
}

impl AiServerClient {
    pub fn new(addr: ServerAddress) -> Self {
        AiServerClient {
            addr,
            timeout: Duration::from_millis(protocol::CONNECT_TIMEOUT_MS),
            max_packet: protocol::DEFAULT_MAX_PACKET,
            admin_token: None,
            failover: None,
        }
    }

    /// The admin token to send with guarded management commands (empty = none).
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = token.filter(|t| !t.is_empty());
        self
    }

    /// The admin token, when `cmd` is a management command a server may guard.
    fn admin_token_for(&self, cmd: &Command) -> Option<&str> {
        cmd.needs_admin().then_some(self.admin_token.as_deref()).flatten()
    }

    /// `cmd`'s asio message, with the admin token when it is a guarded command.
    fn asio_message(&self, cmd: &Command) -> Value {
        let mut msg = cmd.to_asio();
        if let (Some(t), Some(m)) = (self.admin_token_for(cmd), msg.as_object_mut()) {
            m.insert(ADMIN_TOKEN_FIELD.into(), json!(t));
        }
        msg
    }

    /// `cmd`'s REST request: method, path, JSON body, `Authorization` header (guarded
    /// commands with a token).
    fn rest_request(&self, cmd: &Command) -> Result<RestRequest> {
        let (method, path) =
            cmd.rest_route().ok_or_else(|| Error::invalid(format!("'{}' has no REST route: streams are opened with open_stream", cmd.op())))?;
        let body = cmd.rest_body().map(|b| b.to_string().into_bytes());
        let auth = self.admin_token_for(cmd).map(|t| format!("Bearer {t}"));
        Ok(RestRequest { method, path, body, auth })
    }

    /// A client over a fail-over list (one address: the same as [`AiServerClient::new`]).
    /// Panics on an empty list (`address::parse_server_list` never returns one).
    pub fn with_failover(servers: Vec<ServerAddress>) -> Self {
        assert!(!servers.is_empty(), "an AI server list is never empty");
        let mut c = Self::new(servers[0].clone());
        if servers.len() > 1 {
            c.failover = Some(Arc::new(Failover { servers, current: AtomicUsize::new(0) }));
        }
        c
    }

    /// The server in use.
    pub fn current(&self) -> ServerAddress {
        match &self.failover {
            Some(f) => f.servers[f.current.load(Ordering::SeqCst) % f.servers.len()].clone(),
            None => self.addr.clone(),
        }
    }

    /// Every server of the client, in list order.
    pub fn servers(&self) -> Vec<ServerAddress> {
        match &self.failover {
            Some(f) => f.servers.clone(),
            None => vec![self.addr.clone()],
        }
    }

    /// `host:port` of the server in use, as used in PySDK's messages.
    pub fn server(&self) -> String {
        host_port(&self.current())
    }

    /// A single-server client on `addr` with this client's settings.
    fn on(&self, addr: ServerAddress) -> AiServerClient {
        AiServerClient { addr, timeout: self.timeout, max_packet: self.max_packet, admin_token: self.admin_token.clone(), failover: None }
    }

    /// Whether the server can take work: `GET /v2/health/ready` answers 200 on an http address
    /// (a server without that route, like PySDK's, is asked for a ping instead); a `sleep` ping
    /// on asio.
    pub fn health_check(&self) -> Result<()> {
        self.on(self.current()).health_check_here()
    }

    fn health_check_here(&self) -> Result<()> {
        if self.addr.http {
            let (status, reason, _) = http::request_full(&self.addr.host, self.addr.port, "GET", "/v2/health/ready", None, self.timeout)?;
            return match status {
                200 => Ok(()),
                404 => self.command_here(&PING).map(|_| ()),
                _ => Err(Error::new(Code::Network, format!("AI server '{}' is not ready: {reason}({status})", host_port(&self.addr)))),
            };
        }
        self.command_here(&PING).map(|_| ())
    }

    /// Run `f` on the server in use; when it cannot be reached (a `Network` error), on the
    /// next healthy server of the list, which becomes the one in use. With every server down:
    /// one error naming them all.
    fn failing_over<T>(&self, check_first: bool, f: impl Fn(&AiServerClient) -> Result<T>) -> Result<T> {
        let Some(fo) = &self.failover else { return f(self) };
        let n = fo.servers.len();
        let start = fo.current.load(Ordering::SeqCst) % n;
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let c = self.on(fo.servers[i].clone());
            // The current server is trusted until it fails (unless `check_first`); the others
            // are checked before use.
            if k > 0 || check_first {
                if let Err(e) = c.health_check_here() {
                    failures.push((i, e));
                    continue;
                }
            }
            match f(&c) {
                Err(e) if e.code == Code::Network => failures.push((i, e)),
                r => {
                    if i != start {
                        fo.current.store(i, Ordering::SeqCst);
                    }
                    return r;
                }
            }
        }
        let list = fo.servers.iter().map(host_port).collect::<Vec<_>>().join(&SERVER_LIST_SEPARATOR.to_string());
        let why = failures
            .iter()
            .map(|(i, e)| format!("{}: {}", host_port(&fo.servers[*i]), e.message.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::new(Code::Network, format!("None of the AI servers '{list}' can be reached: {why}")))
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
    fn asio_command(&self, cmd: &Command) -> Result<Value> {
        let op = cmd.op();
        let mut s = self.connect()?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let server = self.server();
        let io = |e: std::io::Error| {
            let code = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) { Code::Timeout } else { Code::Network };
            Error::new(code, format!("Error communicating with AI server '{server}' (op '{op}'): {e}"))
        };
        protocol::write_packet(&mut s, self.asio_message(cmd).to_string().as_bytes()).map_err(io)?;
        let reply = protocol::read_packet(&mut s, self.max_packet)
            .map_err(io)?
            .ok_or_else(|| Error::new(Code::Network, format!("AI server '{server}' closed the connection without replying to '{op}'")))?;
        protocol::check_reply(op, &reply, &server)
    }

    /// One REST request; non-2xx → PySDK's "Error sending HTTP request" text.
    fn rest(&self, cmd: &Command) -> Result<Value> {
        let RestRequest { method, path, body, auth } = self.rest_request(cmd)?;
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
        let (status, reason, resp) = http::request_with_headers(&self.addr.host, self.addr.port, method, &path, &headers, body.as_deref(), self.timeout)?;
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

    /// Run a command over the address's protocol; returns the op's data. Read-only commands
    /// fail over to another server of a fail-over list; the others run on the server in use
    /// only. `stream` is refused: streams are opened with [`AiServerClient::open_stream`].
    pub fn command(&self, cmd: &Command) -> Result<Value> {
        if cmd.read_only() {
            self.failing_over(false, |c| c.command_here(cmd))
        } else {
            self.on(self.current()).command_here(cmd)
        }
    }

    fn command_here(&self, cmd: &Command) -> Result<Value> {
        if let Command::Stream { .. } = cmd {
            return Err(Error::invalid("a stream is not a one-shot command: use open_stream"));
        }
        if !self.addr.http {
            return self.asio_command(cmd);
        }
        if *cmd == Command::Shutdown {
            // As PySDK: a ping that must succeed, then shutdown with errors ignored.
            self.rest(&PING)?;
            let _ = self.rest(cmd);
            return Ok(Value::Null);
        }
        self.rest(cmd)
    }

    /// The server's zoo: (name, parameters) in the server's order.
    pub fn modelzoo(&self) -> Result<Vec<(String, Value)>> {
        let v = self.command(&Command::ModelZoo)?;
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
        self.command(&Command::SystemInfo)
    }

    pub fn label_dictionary(&self, model: &str) -> Result<Value> {
        self.command(&Command::LabelDictionary { name: model.to_string() })
    }

    pub fn ping(&self) -> Result<()> {
        self.command(&PING).map(|_| ())
    }

    pub fn shutdown(&self) -> Result<()> {
        let here = self.on(self.current());
        here.command(&Command::Shutdown)?;
        if !here.addr.http {
            // Wake the server's accept loop like the C++ client; errors do not matter.
            if let Ok(mut s) = http::connect(&here.addr.host, here.addr.port, Duration::from_millis(500)) {
                let _ = protocol::write_packet(&mut s, b"");
            }
        }
        Ok(())
    }

    pub fn zoo_manage(&self, args: Value) -> Result<Value> {
        self.command(&Command::ZooManage { args })
    }

    pub fn trace_manage(&self, args: Value) -> Result<Value> {
        self.command(&Command::TraceManage { args })
    }

    /// Open an inference stream on `model` with the model `config` (runtime parameters); on a
    /// fail-over list, on a healthy server.
    pub fn open_stream(&self, model: &str, config: &Value) -> Result<RemoteStream> {
        self.failing_over(true, |c| c.open_stream_here(model, config))
    }

    fn open_stream_here(&self, model: &str, config: &Value) -> Result<RemoteStream> {
        let server = self.server();
        let s = self.connect()?;
        let _ = s.set_write_timeout(Some(self.timeout));
        let open_err = |e: std::io::Error| Error::new(Code::Network, format!("cannot open a stream on AI server '{server}': {e}"));
        let cmd = Command::Stream { name: model.to_string(), config: config.clone() };
        if !self.addr.http {
            let mut s = s;
            protocol::write_packet(&mut s, self.asio_message(&cmd).to_string().as_bytes()).map_err(open_err)?;
            // Success has no reply; a failure arrives as the first result.
            let send = s.try_clone().map_err(open_err)?;
            return Ok(RemoteStream::new(SendConn::Asio(send), Receiver::Asio(s), server, self.max_packet));
        }
        let raw = s.try_clone().map_err(open_err)?;
        let mut ws = WsClient::handshake(s, &self.addr.host, self.addr.port, WS_STREAM_PATH, self.max_packet, self.timeout)?;
        let cfg_err = |msg: String| Error::new(Code::Protocol, format!("Error configuring model {model} on AI server http://{server}: {msg}"));
        ws.writer.send_text(cmd.to_ws().unwrap_or_default().as_bytes()).map_err(|e| cfg_err(e.to_string()))?;
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

/// PySDK's text for a stream whose connection broke (its C++ client's "[CRITICAL]Operation
/// failed" with the OS error on asio, the WebSocket error and errno on http), naming the
/// server. `e` is `None` for an orderly close.
fn connection_lost(server: &str, ws: bool, on: &str, e: Option<&std::io::Error>) -> Error {
    let detail = if ws {
        format!("WebSocket: connection error on {on}: {}", e.and_then(std::io::Error::raw_os_error).unwrap_or(0))
    } else {
        let why = e.map(|e| {
            let t = e.to_string();
            // std appends " (os error N)" to strerror's text; PySDK prints the text alone.
            t.find(" (os error ").map_or(t.clone(), |i| t[..i].to_string())
        });
        format!("[ERROR]OS error\n{}", why.as_deref().unwrap_or("End of file"))
    };
    Error::new(Code::Network, protocol::dg_error_text("CRITICAL", "Operation failed", &detail, &[format!("Stream connection to AI server '{server}' lost")]))
}

impl StreamSender {
    /// Send one frame (one packet per model input).
    pub fn send_frame(&mut self, packets: &[Vec<u8>]) -> Result<()> {
        let server = &self.server;
        let ws = matches!(self.conn, SendConn::Ws(..));
        let err = |e: std::io::Error| connection_lost(server, ws, "send", Some(&e));
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
        match &mut self.rx {
            Receiver::Asio(s) => {
                let _ = s.set_read_timeout(Some(timeout));
                match protocol::read_packet(s, self.max_packet) {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => Err(connection_lost(server, false, "receive", None)),
                    Err(e) if is_timeout(&e) => Err(timed_out()),
                    Err(e) => Err(connection_lost(server, false, "receive", Some(&e))),
                }
            }
            Receiver::Ws(r) => {
                r.set_read_timeout(Some(timeout));
                match r.recv() {
                    Ok(WsMessage::Binary(b) | WsMessage::Text(b)) => Ok(b),
                    Ok(WsMessage::Close) => Err(connection_lost(server, true, "receive", None)),
                    Err(e) if is_timeout(&e) => Err(timed_out()),
                    Err(e) => Err(connection_lost(server, true, "receive", Some(&e))),
                }
            }
        }
    }

    /// End of stream: an empty packet (asio) or a close frame (WebSocket).
    pub fn close(self) {
        self.tx.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every kind. The match has no wildcard: a new kind fails to compile
    /// until it is added here.
    fn every_command() -> Vec<Command> {
        let all = vec![
            Command::ModelZoo,
            Command::SystemInfo,
            Command::LabelDictionary { name: "a b/c%d".into() },
            Command::Sleep { ms: 12.5 },
            Command::Shutdown,
            Command::TraceManage { args: json!({"trace_read": {"size": 100}}) },
            Command::ZooManage { args: json!({"cache_dump": 1}) },
            Command::DevCtrl { args: json!({"x": [1, 2]}) },
            Command::Stream { name: "m".into(), config: json!({"DEVICE": [{"DeviceTimeout_ms": 40000.0}]}) },
        ];
        let kind = |c: &Command| match c {
            Command::ModelZoo => 0,
            Command::SystemInfo => 1,
            Command::LabelDictionary { .. } => 2,
            Command::Sleep { .. } => 3,
            Command::Shutdown => 4,
            Command::TraceManage { .. } => 5,
            Command::ZooManage { .. } => 6,
            Command::DevCtrl { .. } => 7,
            Command::Stream { .. } => 8,
        };
        let mut kinds: Vec<usize> = all.iter().map(kind).collect();
        kinds.dedup();
        assert_eq!(kinds, (0..9).collect::<Vec<_>>());
        all
    }

    #[test]
    fn client_requests_parse_back_to_the_same_command() {
        for token in [None, Some("s3cret".to_string())] {
            let client = AiServerClient::new(ServerAddress { host: "127.0.0.1".into(), port: 1, http: false }).with_admin_token(token.clone());
            for cmd in every_command() {
                let want_token = token.as_deref().filter(|_| cmd.needs_admin());
                // asio: the message the server parses (its version and token checked apart).
                let msg = client.asio_message(&cmd);
                assert_eq!(msg[protocol::VERSION_TAG], json!(protocol::PROTOCOL_VERSION), "{msg}");
                assert_eq!(Command::from_asio(&msg), Ok(cmd.clone()), "{msg}");
                assert_eq!(msg.get(ADMIN_TOKEN_FIELD).and_then(Value::as_str), want_token, "{msg}");
                // HTTP: the route and body, or for a stream the WebSocket's first message.
                match client.rest_request(&cmd) {
                    Ok(r) => {
                        assert_eq!(Command::from_rest(r.method, &r.path, r.body.as_deref().unwrap_or_default()), Ok(cmd.clone()), "{}", r.path);
                        assert_eq!(r.auth, want_token.map(|t| format!("Bearer {t}")), "{}", r.path);
                    }
                    Err(_) => {
                        assert!(matches!(cmd, Command::Stream { .. }), "{cmd:?} has no REST request");
                        let text = cmd.to_ws().unwrap();
                        assert_eq!(Command::from_ws(&serde_json::from_str(&text).unwrap()), cmd);
                    }
                }
            }
        }
    }

    #[test]
    fn wire_forms_are_degirums() {
        let client = AiServerClient::new(ServerAddress { host: "127.0.0.1".into(), port: 1, http: false });
        // aiserver-protocol.md §1.10: the ping's bytes.
        assert_eq!(client.asio_message(&PING).to_string(), r#"{"VERSION":4,"op":"sleep","sleep_time_ms":0.0}"#);
        let open = client.asio_message(&Command::Stream { name: "m".into(), config: json!({"POST_PROCESS": [{"OutputTopK": 2}]}) });
        assert_eq!(open.to_string(), r#"{"VERSION":4,"config":{"POST_PROCESS":[{"OutputTopK":2}]},"name":"m","op":"stream"}"#);
        let rest = |c: &Command| client.rest_request(c).map(|r| (r.method, r.path, r.body.map(|b| String::from_utf8(b).unwrap()))).unwrap();
        assert_eq!(rest(&PING), ("POST", "/v1/sleep/0.000000".into(), None));
        assert_eq!(rest(&Command::ModelZoo), ("GET", "/v1/modelzoo".into(), None));
        assert_eq!(rest(&Command::LabelDictionary { name: "a b".into() }), ("GET", "/v1/label_dictionary/a%20b".into(), None));
        assert_eq!(rest(&Command::ZooManage { args: json!({"rescan": 1}) }), ("POST", "/v1/zoo_manage".into(), Some(r#"{"rescan":1}"#.into())));
        assert_eq!(Command::Stream { name: "m".into(), config: json!({}) }.to_ws().unwrap(), r#"{"config":{},"name":"m"}"#);
    }
}
