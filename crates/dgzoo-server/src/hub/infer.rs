//! Cloud inference on the hub (cloud-api.md §5): socket.io at `/api/v2/socket.io`, WebSocket
//! transport only. A CONNECT carries the auth map (token, org/zoo/model, model parameters);
//! the token is checked against the hub's `tokens.json`, the model's archive is extracted once
//! into a private work directory, and frames run through the AI server's own stream code
//! (`server::State::open_entry` / `StreamSession::run_frame`, shared engines). Results go back
//! as `predict_result` events with the client's frame string, in order.
//!
//! One thread per connection. tiny_http's upgraded stream cannot be split or given a read
//! timeout, so frames of one connection run one after another (the client's pipelined
//! frames wait in the socket) and pings are sent between messages; the ping interval is
//! long so an idle client does not give up on a silent server.
//!
//! With an AI-server pool (`Hub::set_aiserver_pool`, `dgzoo hub --aiserver ADDR ...`), each
//! new connection is given to the pool member with the fewest open streams; frames go over
//! that member's stream under the model's simple name (the members serve the same models in
//! their own zoos). A failure of the member is a `[CRITICAL]` result: the client reconnects
//! and re-sends, and lands on another member.
use super::State;
use crate::aiserver::frame::StreamSession;
use dgzoo::cache::archive::{self, is_safe_segment};
use dgzoo::params::ModelParams;
use dgzoo::protocol;
use dgzoo::socketio::{self, Control, Packet};
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::aiserver::{AiServerClient, RemoteStream};
use dgzoo::zoo::local::ZooEntry;
use rmpv::Value as Mp;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// Engine.IO heartbeat advertised to clients (pings are sent between messages only).
const PING_INTERVAL: Duration = Duration::from_secs(300);
const PING_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on simultaneous socket.io connections: each holds a thread, and a client that
/// stops reading (or never sends) can hold it indefinitely, since tiny_http's upgraded
/// stream cannot be given timeouts.
pub const MAX_CONNECTIONS: usize = 256;
/// The prefix PySDK treats as final (no retry).
pub const REFUSED: &str = "Inference connection refused: ";

/// Hub-wide cloud inference state.
pub struct CloudInference {
    engines: Arc<crate::aiserver::State>,
    /// Extracted models: `<org>.<zoo>.<model>.<checksum>/`.
    work: tempfile::TempDir,
    extracted: Mutex<HashMap<String, PathBuf>>,
    /// Open socket.io connections.
    pub connections: AtomicUsize,
    pub max_connections: AtomicUsize,
    next_sid: AtomicU64,
    pool: RwLock<Vec<Arc<PoolMember>>>,
}

/// One AI server of the dispatch pool.
pub struct PoolMember {
    pub client: AiServerClient,
    /// Streams currently open on it.
    pub active: AtomicUsize,
}

/// Where a connection's frames run.
enum Backend {
    Local(StreamSession),
    Remote(RemoteSession),
}

struct RemoteSession {
    stream: Option<RemoteStream>,
    member: Arc<PoolMember>,
    inputs: usize,
    timeout: Duration,
    name: String,
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        if let Some(s) = self.stream.take() {
            s.close();
        }
        self.member.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    fn num_inputs(&self) -> usize {
        match self {
            Backend::Local(s) => s.num_inputs(),
            Backend::Remote(r) => r.inputs,
        }
    }
    fn name(&self) -> &str {
        match self {
            Backend::Local(s) => &s.name,
            Backend::Remote(r) => &r.name,
        }
    }
    fn run_frame(&mut self, inputs: &[Vec<u8>]) -> Vec<u8> {
        match self {
            Backend::Local(s) => s.run_frame(inputs),
            Backend::Remote(r) => {
                let server = r.member.client.server();
                let Some(stream) = r.stream.as_mut() else {
                    return protocol::encode(&protocol::frame_err(&format!("[CRITICAL]AI server '{server}' stream is closed")));
                };
                match stream.send_frame(inputs).and_then(|_| stream.recv(r.timeout)) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        // The stream is out of sync or gone: the client must reconnect.
                        if let Some(s) = r.stream.take() {
                            s.close();
                        }
                        let msg = if e.message.contains("[CRITICAL]") { e.message } else { format!("[CRITICAL]{}", e.message) };
                        protocol::encode(&protocol::frame_err(&msg))
                    }
                }
            }
        }
    }
}

impl CloudInference {
    pub fn new() -> dgzoo::error::Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("dgzoo-hub-models-")
            .tempdir()
            .map_err(|e| dgzoo::error::Error::io(format!("cannot create the hub's model work directory: {e}")))?;
        Ok(CloudInference {
            engines: crate::aiserver::State::embedded(work.path().to_path_buf()),
            work,
            extracted: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(MAX_CONNECTIONS),
            next_sid: AtomicU64::new(1),
            pool: RwLock::new(Vec::new()),
        })
    }

    /// Dispatch new connections to these AI servers instead of the local runtimes.
    pub fn set_pool(&self, servers: Vec<ServerAddress>) {
        let members = servers.into_iter().map(|a| Arc::new(PoolMember { client: AiServerClient::new(a), active: AtomicUsize::new(0) })).collect();
        *self.pool.write().unwrap_or_else(|p| p.into_inner()) = members;
    }

    /// Open streams per pool member (`host:port`), in pool order.
    pub fn pool_load(&self) -> Vec<(String, usize)> {
        self.pool.read().unwrap_or_else(|p| p.into_inner()).iter().map(|m| (m.client.server(), m.active.load(Ordering::SeqCst))).collect()
    }

    /// Open a stream on the least-busy pool member that accepts it.
    fn open_remote(&self, model: &str, full_name: &str, inputs: usize, config: &Value, timeout_s: f64) -> Option<Result<RemoteSession, String>> {
        let mut members: Vec<Arc<PoolMember>> = self.pool.read().unwrap_or_else(|p| p.into_inner()).clone();
        if members.is_empty() {
            return None;
        }
        members.sort_by_key(|m| m.active.load(Ordering::SeqCst));
        let mut errors = Vec::new();
        for m in members {
            m.active.fetch_add(1, Ordering::SeqCst);
            // Counted from here: the RemoteSession's drop gives it back.
            let mut session = RemoteSession {
                stream: None,
                member: m.clone(),
                inputs,
                timeout: Duration::from_secs_f64(timeout_s.clamp(1.0, 3600.0)),
                name: full_name.to_string(),
            };
            match m.client.open_stream(model, config) {
                Ok(s) => {
                    session.stream = Some(s);
                    return Some(Ok(session));
                }
                Err(e) => errors.push(format!("{}: {}", m.client.server(), e.message)),
            }
        }
        Some(Err(format!("no AI server of the pool accepted the stream ({})", errors.join("; "))))
    }

    /// The model's files, extracted from its archive once per checksum.
    fn model_dir(&self, zoo_dir: &std::path::Path, org: &str, zoo: &str, model: &str, checksum: &str) -> Result<PathBuf, String> {
        let sum: String = checksum.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
        let key = format!("{org}.{zoo}.{model}.{sum}");
        // Extractions are rare (once per model version): one lock keeps them simple.
        let mut map = self.extracted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&key) {
            if d.is_dir() {
                return Ok(d.clone());
            }
        }
        let dest = self.work.path().join(&key);
        let _ = std::fs::remove_dir_all(&dest);
        archive::extract_model(&zoo_dir.join(format!("{model}.zip")), model, &dest, archive::Limits::default()).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dest);
            format!("model {model} cannot be unpacked: {}", e.message.replace(&self.work.path().to_string_lossy().to_string(), "<work>"))
        })?;
        map.insert(key, dest.clone());
        Ok(dest)
    }
}

/// Counts a connection while its thread runs.
struct ConnGuard<'a>(&'a AtomicUsize);
impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn query_value<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    url.split_once('?')?.1.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

fn plain(status: u16, detail: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_data(serde_json::json!({ "detail": detail }).to_string().into_bytes())
        .with_status_code(status)
        .with_header(super::header("Content-Type", "application/json"))
}

/// Answer a request under `/api/v2/socket.io`: upgrade a proper Engine.IO v4 WebSocket
/// request and serve it on its own thread; anything else is refused (no long-polling).
pub(super) fn accept(state: &Arc<State>, req: tiny_http::Request) {
    let url = req.url().to_string();
    if query_value(&url, "EIO") != Some("4") {
        let _ = req.respond(plain(400, "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"));
        return;
    }
    let key = req.headers().iter().find(|h| h.field.equiv("Sec-WebSocket-Key")).map(|h| h.value.as_str().to_string());
    let upgrade = req.headers().iter().any(|h| h.field.equiv("Upgrade") && h.value.as_str().eq_ignore_ascii_case("websocket"));
    let (Some(key), true, Some("websocket")) = (key, upgrade, query_value(&url, "transport")) else {
        let _ = req.respond(plain(400, "Only the websocket transport is supported"));
        return;
    };
    // Reserve the slot before upgrading; refuse when the hub is full.
    let max = state.infer.max_connections.load(Ordering::SeqCst);
    if state.infer.connections.fetch_add(1, Ordering::SeqCst) >= max {
        state.infer.connections.fetch_sub(1, Ordering::SeqCst);
        let _ = req.respond(plain(503, &format!("Too many inference connections (limit {max})")));
        return;
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = tiny_http::Response::empty(101).with_header(super::header("Sec-WebSocket-Accept", &accept));
    let stream = req.upgrade("websocket", resp);
    let st = state.clone();
    let spawned = std::thread::Builder::new().name("dgzoo-hub-sio".into()).spawn(move || {
        let _guard = ConnGuard(&st.infer.connections);
        let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(socketio::ws_config(socketio::MAX_PAYLOAD, true)));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&st, &mut ws)));
        let _ = ws.close(None);
        let _ = ws.flush();
    });
    if spawned.is_err() {
        state.infer.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn send_packet<S: Read + Write>(ws: &mut WebSocket<S>, p: &Packet) -> bool {
    ws.send(Message::Binary(p.encode())).is_ok()
}

fn serve<S: Read + Write>(state: &State, ws: &mut WebSocket<S>) {
    let sid = format!("dgzoo{:016x}", state.infer.next_sid.fetch_add(1, Ordering::SeqCst) ^ std::process::id() as u64);
    if ws.send(Message::Text(socketio::open_text(&sid, PING_INTERVAL.as_millis() as u64, PING_TIMEOUT.as_millis() as u64))).is_err() {
        return;
    }
    let mut session: Option<Backend> = None;
    let mut last_ping = Instant::now();
    loop {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(_) => return,
        };
        let ok = match msg {
            Message::Text(t) => match socketio::parse_control(&t) {
                Ok(Control::Ping) => ws.send(Message::Text(socketio::PONG.into())).is_ok(),
                Ok(Control::Close) => return,
                Ok(Control::TextMessage(_)) => {
                    // Only the msgpack serializer is spoken here.
                    send_packet(
                        ws,
                        &Packet::new(socketio::CONNECT_ERROR, Mp::Map(vec![(Mp::from("message"), Mp::from("Only msgpack-serialized packets are supported"))])),
                    )
                }
                _ => true,
            },
            // Before CONNECT (authentication) only small packets are decoded: msgpack of many
            // small elements costs ~32x its size once decoded, and anyone may connect.
            Message::Binary(b) if session.is_none() && b.len() > protocol::DEFAULT_MAX_JSON => {
                let msg = format!("packet of {} bytes before CONNECT exceeds the limit of {} bytes", b.len(), protocol::DEFAULT_MAX_JSON);
                send_packet(ws, &Packet::new(socketio::CONNECT_ERROR, Mp::Map(vec![(Mp::from("message"), Mp::from(msg.as_str()))])))
            }
            Message::Binary(b) => match Packet::decode(&b) {
                Ok(p) => match p.kind {
                    socketio::CONNECT => {
                        let reply = match connect(state, &p.data) {
                            Ok(s) => {
                                session = Some(s);
                                Packet::new(socketio::CONNECT, Mp::Map(vec![(Mp::from("sid"), Mp::from(sid.as_str()))]))
                            }
                            Err(msg) => {
                                session = None;
                                Packet::new(socketio::CONNECT_ERROR, Mp::Map(vec![(Mp::from("message"), Mp::from(msg.as_str()))]))
                            }
                        };
                        send_packet(ws, &reply)
                    }
                    socketio::DISCONNECT => return,
                    socketio::EVENT => match p.as_event() {
                        Some(("predict", args)) => {
                            let frame_no = args.get(1).cloned().unwrap_or(Mp::Nil);
                            let result = predict(session.as_mut(), args.first());
                            // run_frame's packet is msgpack we wrote ourselves.
                            let value = socketio::mp_from_bytes(&result).unwrap_or(Mp::Nil);
                            send_packet(ws, &Packet::event("predict_result", vec![value, frame_no]))
                        }
                        _ => true,
                    },
                    _ => true,
                },
                // A malformed packet is dropped; the connection stays usable.
                Err(_) => true,
            },
            Message::Close(_) => return,
            _ => true,
        };
        if !ok {
            return;
        }
        if last_ping.elapsed() >= PING_INTERVAL {
            if ws.send(Message::Text(socketio::PING.into())).is_err() {
                return;
            }
            last_ping = Instant::now();
        }
    }
}

/// One `predict` event → the msgpack result packet (results or an error map).
fn predict(session: Option<&mut Backend>, payload: Option<&Mp>) -> Vec<u8> {
    let err = |m: &str| protocol::encode(&protocol::frame_err(&protocol::dg_error_text("ERROR", "Incorrect value of parameter", m, &[])));
    let Some(s) = session else { return err("the connection is not authorized: send CONNECT first") };
    let bytes = match payload {
        Some(Mp::Binary(b)) => b.as_slice(),
        _ => return err("frame data is missing or not binary"),
    };
    match socketio::decode_frame(bytes) {
        Ok(inputs) if inputs.len() == s.num_inputs() => s.run_frame(&inputs),
        Ok(inputs) => err(&format!("frame has {} input(s), model '{}' takes {}", inputs.len(), s.name(), s.num_inputs())),
        Err(m) => err(&m),
    }
}

/// Check the CONNECT auth and open the stream. The error is the CONNECT_ERROR message.
fn connect(state: &State, data: &Mp) -> Result<Backend, String> {
    let auth = socketio::mp_to_json(data);
    let field = |k: &str| auth.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let refused = |m: String| format!("{REFUSED}{m}");
    let (token, org, zoo, model) = (field("token"), field("organization"), field("zoo"), field("model"));
    let st = &state.store;
    let tokens = st.tokens();
    let rights = tokens.get(&token).ok_or_else(|| refused("token is not valid".into()))?;
    let zoo_url = format!("{org}/{zoo}");
    if !rights.is_admin && !rights.zoos.contains(&zoo_url) {
        return Err(refused(format!("token does not have access rights to zoo {zoo_url}")));
    }
    let zoo_dir = (is_safe_segment(&org) && is_safe_segment(&zoo))
        .then(|| st.zoo_dir(&org, &zoo))
        .flatten()
        .ok_or_else(|| refused(format!("zoo {zoo_url} is not found")))?;
    let not_found = || refused(format!("model {model} is not found in model zoo {zoo_url}"));
    if !is_safe_segment(&model) {
        return Err(not_found());
    }
    let info = st.model(&zoo_dir, &model).ok_or_else(not_found)?;
    let config = match auth.get("model_params") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            serde_json::from_str::<Value>(s).map_err(|e| refused(format!("model_params is not valid JSON: {e}")))?
        }
        Some(o @ Value::Object(_)) => o.clone(),
        _ => Value::Null,
    };
    let full_name = format!("{org}/{zoo}/{model}");
    let inputs = ModelParams::from_value(info.params.clone()).map(|p| p.num_inputs().max(1)).unwrap_or(1);
    let timeout_s = auth.get("inference_timeout_s").and_then(Value::as_f64).unwrap_or(40.0);
    if let Some(r) = state.infer.open_remote(&model, &full_name, inputs, &config, timeout_s) {
        return r.map(Backend::Remote).map_err(refused);
    }
    let dir = state.infer.model_dir(&zoo_dir, &org, &zoo, &model, &info.checksum).map_err(refused)?;
    let config_path = dir.join(format!("{model}.json"));
    let mut params = ModelParams::from_file(&config_path).map_err(|e| refused(format!("model {model} has a bad configuration: {}", e.message)))?;
    params.absolutize_paths(&dir).map_err(|e| refused(e.message))?;
    // `model_params` is the client's full model JSON; only its runtime parameters are
    // taken (merge_runtime).
    let entry = ZooEntry { name: full_name.clone(), params, config_path };
    state
        .infer
        .engines
        .open_entry(&full_name, &entry, &config)
        .map(Backend::Local)
        .map_err(|text| refused(text.replace(&state.infer.work.path().to_string_lossy().to_string(), "<work>")))
}
