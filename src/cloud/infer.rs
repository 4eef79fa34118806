//! Cloud inference client (`@cloud`, cloud-api.md §5): a model whose frames go to the cloud
//! server over socket.io (Engine.IO v4, WebSocket, msgpack packets). Frames are prepared
//! and results finished by the AI-server client's code (`remote::encode_frame` / `finish`):
//! same fit, JPEG/RAW encoding and coordinate mapping.
//!
//! A [`Session`] is one logical stream: frames numbered from 0 per connection, results
//! delivered in frame order, at most `frame_queue_depth` in flight. A `[CRITICAL]` result or
//! a lost connection makes it reconnect (same auth) and re-send every frame still in
//! flight, as PySDK does. Timeouts and errors use PySDK's texts.
use super::CloudClient;
use crate::error::{Code, Error, Result};
use crate::frame::{InferenceResult, Input};
use crate::image_ops::CoordConverter;
use crate::protocol;
use crate::socketio::{self, Control, Packet};
use crate::state::ModelState;
use rmpv::Value as Mp;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// PySDK: 3 connection attempts, wait timeouts 2 s, 4 s, 5 s.
const CONNECT_ATTEMPTS: usize = 3;
const CONNECT_WAIT_MAX: Duration = Duration::from_secs(5);
/// Reconnections one `recv` may make without receiving a result (bounds a server that keeps
/// failing critically; PySDK would retry until its inference timeout).
const MAX_RECONNECTS: usize = 5;

/// Where the cloud server is: `host:port` and how PySDK names it in messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `host[:port]` as in the URL (PySDK's `url.split('://')[-1]`).
    pub display: String,
    /// `https` cloud: WebSocket over TLS (`wss://`).
    pub tls: bool,
}

/// A byte stream under the WebSocket: plain TCP or TLS over TCP.
trait Transport: Read + Write + Send {
    fn tcp(&self) -> &TcpStream;
}
impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}
impl Transport for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

type Ws = WebSocket<Box<dyn Transport>>;

/// Web PKI roots (the same set ureq trusts for the cloud's HTTP API).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CFG: once_cell::sync::OnceCell<Arc<rustls::ClientConfig>> = once_cell::sync::OnceCell::new();
    CFG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("TLS 1.2 is supported by ring")
        });
        Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
    })
    .clone()
}

impl Endpoint {
    pub fn from_client(c: &CloudClient) -> Result<Endpoint> {
        let z = c.zoo();
        let (default_port, tls) = match z.scheme.as_str() {
            "http" => (80, false),
            "https" => (443, true),
            other => return Err(Error::unsupported(format!("cloud inference over {other} is not supported"))),
        };
        let (host, port) = match z.host.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => match p.parse::<u16>() {
                Ok(port) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), port),
                Err(_) => (z.host.clone(), default_port),
            },
            _ => (z.host.clone(), default_port),
        };
        Ok(Endpoint { host, port, display: z.host.clone(), tls })
    }
}

/// The socket.io CONNECT auth map PySDK sends.
pub fn auth(client: &CloudClient, model: &str, st: &ModelState) -> Value {
    let z = client.zoo();
    json!({
        "token": client.token(),
        "organization": z.org,
        "zoo": z.zoo,
        "model": model,
        "model_params": crate::remote::wire_params(st).full_form().to_string(),
        "frame_queue_depth": st.params.u64("FrameQueueDepth", 0).max(1),
        "inference_timeout_s": st.inference_timeout_s,
        "dg_version": super::DG_VERSION,
    })
}

fn py_float(x: f64) -> String {
    // Python's str(float): always with a fraction part.
    format!("{x:?}")
}

/// One socket.io inference stream with reconnect-and-resend.
pub struct Session {
    endpoint: Endpoint,
    auth: Mp,
    /// `org/zoo/m`, for messages.
    model: String,
    timeout: Duration,
    depth: usize,
    ws: Option<Ws>,
    next_in: u64,
    next_out: u64,
    /// Payloads of frames sent and not answered yet, oldest first.
    inflight: VecDeque<Vec<u8>>,
    done: BTreeMap<u64, Mp>,
    /// Latest reason for reconnecting (for the error when reconnection fails).
    lost: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({} @ {})", self.model, self.endpoint.display)
    }
}

impl Session {
    /// Connect (PySDK's retries) and authorize.
    pub fn open(endpoint: Endpoint, auth: &Value, model: &str, timeout_s: f64, depth: usize) -> Result<Session> {
        let mut s = Session {
            endpoint,
            auth: socketio::mp_from_json(auth),
            model: model.to_string(),
            timeout: Duration::from_secs_f64(timeout_s.clamp(0.001, 1e6)),
            depth: depth.max(1),
            ws: None,
            next_in: 0,
            next_out: 0,
            inflight: VecDeque::new(),
            done: BTreeMap::new(),
            lost: None,
        };
        s.connect()?;
        Ok(s)
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// (Re)connect, reset the frame counters and re-send the frames in flight.
    fn connect(&mut self) -> Result<()> {
        let mut wait = Duration::from_secs(2);
        let mut last = String::new();
        for attempt in 0..CONNECT_ATTEMPTS {
            match self.connect_once(wait.min(CONNECT_WAIT_MAX)) {
                Ok(ws) => {
                    self.ws = Some(ws);
                    self.next_in = 0;
                    self.next_out = 0;
                    self.done.clear();
                    self.lost = None;
                    let frames: Vec<Vec<u8>> = self.inflight.iter().cloned().collect();
                    for f in frames {
                        self.emit(f)?;
                    }
                    return Ok(());
                }
                Err((msg, fatal)) => {
                    last = msg;
                    if fatal {
                        break;
                    }
                    if attempt + 1 < CONNECT_ATTEMPTS {
                        // A refused TCP connect returns at once: pause like a wait timeout would.
                        std::thread::sleep(Duration::from_millis(1000 << attempt));
                    }
                }
            }
            wait *= 2;
        }
        Err(Error::new(Code::Network, format!("Unable to open connection to cloud server {}: {last}", self.endpoint.display)))
    }

    /// One attempt. Err((reason, refused-for-good)).
    fn connect_once(&self, wait: Duration) -> std::result::Result<Ws, (String, bool)> {
        let e = &self.endpoint;
        let sock = protocol::http::connect(&e.host, e.port, wait).map_err(|x| (x.message, false))?;
        let _ = sock.set_nodelay(true);
        let _ = sock.set_read_timeout(Some(wait));
        let _ = sock.set_write_timeout(Some(wait.max(Duration::from_secs(20))));
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let url =
            format!("{}://{}/{}/?transport=websocket&EIO=4&t={t:.6}", if e.tls { "wss" } else { "ws" }, e.display, socketio::PATH.trim_start_matches('/'));
        let sock: Box<dyn Transport> = if e.tls {
            let name = rustls::pki_types::ServerName::try_from(e.host.clone()).map_err(|x| (format!("invalid server name '{}': {x}", e.host), true))?;
            let conn = rustls::ClientConnection::new(tls_config(), name).map_err(|x| (format!("TLS error: {x}"), false))?;
            Box::new(rustls::StreamOwned::new(conn, sock))
        } else {
            Box::new(sock)
        };
        let (mut ws, _) = tungstenite::client::client_with_config(url.as_str(), sock, Some(socketio::ws_config(socketio::MAX_PAYLOAD, false)))
            .map_err(|x| (format!("WebSocket handshake failed: {x}"), false))?;
        let deadline = Instant::now() + wait;
        let mut opened = false;
        loop {
            if Instant::now() >= deadline {
                return Err(("Connection timed out".into(), false));
            }
            let msg = ws.read().map_err(|x| (x.to_string(), false))?;
            match msg {
                Message::Text(t) => match socketio::parse_control(&t) {
                    Ok(Control::Open(_)) if !opened => {
                        opened = true;
                        let p = Packet::new(socketio::CONNECT, self.auth.clone());
                        ws.send(Message::Binary(p.encode())).map_err(|x| (x.to_string(), false))?;
                    }
                    Ok(Control::Ping) => ws.send(Message::Text(socketio::PONG.into())).map_err(|x| (x.to_string(), false))?,
                    Ok(Control::Close) => return Err(("server closed the connection".into(), false)),
                    _ => {}
                },
                Message::Binary(b) => {
                    let p = Packet::decode(&b).map_err(|x| (x.message, false))?;
                    match p.kind {
                        socketio::CONNECT => return Ok(ws),
                        socketio::CONNECT_ERROR => {
                            let v = socketio::mp_to_json(&p.data);
                            let text = v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string());
                            let fatal = text.contains("Inference connection refused:");
                            return Err((text, fatal));
                        }
                        _ => {}
                    }
                }
                Message::Close(_) => return Err(("server closed the connection".into(), false)),
                _ => {}
            }
        }
    }

    fn emit(&mut self, payload: Vec<u8>) -> Result<()> {
        let frame_no = self.next_in.to_string();
        self.next_in += 1;
        let p = Packet::event("predict", vec![Mp::Binary(payload), Mp::from(frame_no.as_str())]);
        if let Some(ws) = self.ws.as_mut() {
            // Transport errors surface on the next read (reconnect there), as in PySDK.
            if ws.send(Message::Binary(p.encode())).is_err() {
                self.drop_connection("connection lost while sending");
            }
        }
        Ok(())
    }

    fn drop_connection(&mut self, why: &str) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.lost = Some(why.to_string());
    }

    /// Send one frame (inputs as model-ready packets). Waits for a free slot first.
    pub fn send(&mut self, inputs: &[Vec<u8>]) -> Result<Vec<Mp>> {
        let mut ready = Vec::new();
        if self.inflight.len() >= self.depth {
            let start = Instant::now();
            while self.inflight.len() >= self.depth {
                match self.recv() {
                    Ok(r) => ready.push(r),
                    Err(e) if e.code == Code::Timeout && start.elapsed() >= self.timeout => {
                        return Err(Error::new(
                            Code::Timeout,
                            format!(
                                "Timeout waiting for space in frame queue during inference of model '{}' (timeout = {} s, queue depth = {})",
                                self.model,
                                py_float(self.timeout.as_secs_f64()),
                                self.depth
                            ),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if self.ws.is_none() {
            self.connect()?;
        }
        let payload = socketio::encode_frame(inputs);
        self.inflight.push_back(payload.clone());
        self.emit(payload)?;
        Ok(ready)
    }

    /// The next result in frame order (the raw result value).
    pub fn recv(&mut self) -> Result<Mp> {
        if self.inflight.is_empty() {
            return Err(Error::invalid("no frame in flight"));
        }
        let mut start = Instant::now();
        let mut reconnects = 0;
        loop {
            if let Some(v) = self.done.remove(&self.next_out) {
                self.next_out += 1;
                self.inflight.pop_front();
                return Ok(v);
            }
            if self.ws.is_none() {
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    return Err(Error::new(Code::Network, format!("Model '{}' inference failed: {}", self.model, self.lost.clone().unwrap_or_default())));
                }
                self.connect()?;
                start = Instant::now();
                continue;
            }
            let left = self.timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::new(
                    Code::Timeout,
                    format!(
                        "Timeout waiting for model '{}' inference completion (timeout = {} sec, missing results = {})",
                        self.model,
                        py_float(self.timeout.as_secs_f64()),
                        self.inflight.len()
                    ),
                ));
            }
            let ws = self.ws.as_mut().expect("checked above");
            let _ = ws.get_mut().tcp().set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let msg = match ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    self.drop_connection(&format!("connection lost: {e}"));
                    continue;
                }
            };
            match msg {
                Message::Text(t) => match socketio::parse_control(&t) {
                    Ok(Control::Ping) if ws.send(Message::Text(socketio::PONG.into())).is_err() => self.drop_connection("connection lost"),
                    Ok(Control::Close) => self.drop_connection("server closed the connection"),
                    _ => {}
                },
                Message::Binary(b) => {
                    let Ok(p) = Packet::decode(&b) else { continue };
                    if p.kind == socketio::DISCONNECT {
                        self.drop_connection("server disconnected");
                        continue;
                    }
                    let Some(("predict_result", args)) = p.as_event() else { continue };
                    let Some(n) = args.get(1).and_then(socketio::mp_text).and_then(|t| t.parse::<u64>().ok()) else { continue };
                    let result = args.first().cloned().unwrap_or(Mp::Nil);
                    if n < self.next_out {
                        return Err(Error::new(Code::Protocol, format!("Result frame numbers mismatch: expected {}, processed {n}", self.next_out)));
                    }
                    if n >= self.next_in {
                        continue; // not a frame of this connection
                    }
                    let critical = protocol::error_of(&socketio::mp_to_json(&result)).filter(|m| m.contains("[CRITICAL]"));
                    if let Some(m) = critical {
                        self.drop_connection(&m);
                        continue;
                    }
                    self.done.insert(n, result);
                }
                Message::Close(_) => self.drop_connection("server closed the connection"),
                _ => {}
            }
        }
    }

    /// End the stream (results still in flight are dropped).
    pub fn close(mut self) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.send(Message::Binary(Packet::new(socketio::DISCONNECT, Mp::Nil).encode()));
        }
        self.drop_connection("closed");
    }
}

/// The cloud side of a `@cloud` model: where to connect and idle sessions to reuse.
pub struct CloudBackend {
    pub client: CloudClient,
    /// Simple model name (`m` of `org/zoo/m`).
    pub model: String,
    pool: Mutex<Vec<(String, Session)>>,
}

impl std::fmt::Debug for CloudBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloudBackend({}/{})", self.client.zoo().url(), self.model)
    }
}

impl CloudBackend {
    pub fn new(client: CloudClient, model: &str) -> Self {
        CloudBackend { client, model: model.to_string(), pool: Mutex::new(Vec::new()) }
    }

    /// A session for the model's current settings (an idle one when it matches).
    pub fn session(&self, st: &ModelState) -> Result<(String, Session)> {
        let auth = auth(&self.client, &self.model, st);
        let key = auth.to_string();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            // Sessions opened with other settings are stale.
            let (keep, stale): (Vec<_>, Vec<_>) = pool.drain(..).partition(|(k, _)| *k == key);
            *pool = keep;
            for (_, s) in stale {
                s.close();
            }
            if let Some(s) = pool.pop() {
                return Ok(s);
            }
        }
        let depth = st.params.u64("FrameQueueDepth", 0).max(1) as usize;
        let s = Session::open(Endpoint::from_client(&self.client)?, &auth, &st.name, st.inference_timeout_s, depth)?;
        Ok((key, s))
    }

    pub fn give_back(&self, key: String, s: Session) {
        if s.in_flight() == 0 {
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).push((key, s));
        } else {
            s.close();
        }
    }
}

impl Drop for CloudBackend {
    fn drop(&mut self) {
        for (_, s) in self.pool.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            s.close();
        }
    }
}

/// A result value → the model's result (PySDK's error text for a failed frame).
fn complete(st: &ModelState, v: &Mp, converter: &CoordConverter) -> Result<InferenceResult> {
    let bytes = socketio::mp_to_bytes(v);
    let fail = |msg: &str| Error::new(Code::Inference, format!("Model '{}' inference failed: {msg}", st.name));
    match protocol::decode_results(&bytes).map_err(|e| fail(&e.message))? {
        Ok((results, tensors)) => crate::remote::finish(st, results, tensors, converter),
        Err(msg) => Err(fail(&msg)),
    }
}

fn check_inputs(st: &ModelState, inputs: &[Input]) -> Result<()> {
    let n = st.params.num_inputs();
    if inputs.len() != n {
        return Err(Error::invalid(format!("The length of input data list {} does not match to the number of model inputs {n}", inputs.len())));
    }
    Ok(())
}

/// Run one frame on a cloud model.
pub fn predict(cb: &CloudBackend, st: &ModelState, inputs: &[Input]) -> Result<InferenceResult> {
    check_inputs(st, inputs)?;
    let t0 = std::time::Instant::now();
    let (packets, converter) = crate::remote::encode_frame(st, inputs)?;
    let pre_ms = crate::remote::measured_since(st, t0);
    let (key, mut s) = cb.session(st)?;
    s.send(&packets)?;
    let v = s.recv()?;
    cb.give_back(key, s);
    complete(st, &v, &converter).map(|mut r| {
        r.pre_ms = pre_ms;
        r
    })
}

/// Run many frames on one connection, up to `frame_queue_depth` in flight (PySDK's
/// `predict_batch` inside `with model:`). Results come in input order, each with the time its
/// frame's pre-processing started; a failed frame ends the batch with its error, like PySDK.
pub fn predict_batch(
    cb: &CloudBackend,
    st: &ModelState,
    frames: &[Vec<Input>],
    mut on_result: impl FnMut(usize, InferenceResult, std::time::Instant),
) -> Result<()> {
    let (key, mut s) = cb.session(st)?;
    type Sent = (CoordConverter, std::time::Instant, Option<f64>);
    let mut converters: VecDeque<Sent> = VecDeque::new();
    let mut delivered = 0usize;
    let mut deliver = |v: Mp, converters: &mut VecDeque<Sent>, delivered: &mut usize| -> Result<()> {
        let (c, started, pre_ms) = converters.pop_front().unwrap_or_else(|| (CoordConverter::identity(), std::time::Instant::now(), None));
        let mut r = complete(st, &v, &c)?;
        r.pre_ms = pre_ms;
        on_result(*delivered, r, started);
        *delivered += 1;
        Ok(())
    };
    for inputs in frames {
        check_inputs(st, inputs)?;
        let t0 = std::time::Instant::now();
        let (packets, converter) = crate::remote::encode_frame(st, inputs)?;
        converters.push_back((converter, t0, crate::remote::measured_since(st, t0)));
        for v in s.send(&packets)? {
            deliver(v, &mut converters, &mut delivered)?;
        }
    }
    while s.in_flight() > 0 {
        let v = s.recv()?;
        deliver(v, &mut converters, &mut delivered)?;
    }
    cb.give_back(key, s);
    Ok(())
}
