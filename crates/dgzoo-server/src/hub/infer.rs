//! Cloud inference on the hub (cloud-api.md §5): socket.io at `/api/v2/socket.io`, WebSocket
//! transport only. A CONNECT carries the auth map (token, org/zoo/model, model parameters);
//! the token is checked against the hub's `tokens.json`, the model's archive is extracted once
//! into a private work directory, and frames run through the AI server's own stream code
//! (`server::State::open_entry` / `StreamSession::run_frame`, shared engines). Results go back
//! as `predict_result` events with the client's frame string, in order.
//!
//! Transport: tokio-tungstenite on the hyper upgrade, with the core's socket.io codec and
//! WebSocket settings (`dgzoo::socketio`), not socketioxide: PySDK's client speaks msgpack packets as bare binary
//! WebSocket messages (no `4` prefix, no attachments, cloud-api.md §5.1), which socketioxide's
//! msgpack parser does not frame that way, and the codec is already shared with our client.
//!
//! Per connection a reader task decodes packets and queues each frame as a job; a writer task
//! keeps up to [`IN_FLIGHT`] jobs running and sends their results in arrival order, so frames of
//! one connection are pipelined (a local model's frames run concurrently, a remote stream's one
//! after another) and a client that stops reading back-pressures only itself. Local frames run
//! on the servers' one bounded pool (`net::blocking`, shared with the AI server's streams);
//! frames for pool members, which mostly wait on the network, on [`CloudInference::frame_slots`]. The server pings
//! every 25 s (python-engineio's intervals); a peer silent for ping interval + timeout is
//! dropped, and so is one whose socket takes no bytes for that long.
//!
//! Upgrades that have sent no CONNECT (no token yet) are closed after [`CONNECT_TIMEOUT`] and,
//! once [`EVICT_AFTER`] old, give their slot to a new upgrade when the connection cap is
//! reached, so idle upgrades never lock real clients out.
//!
//! With an AI-server pool (`Hub::set_aiserver_pool`, `dgzoo hub --aiserver ADDR ...`), each
//! new connection is given to the pool member with the fewest open streams; frames go over
//! that member's stream under the model's simple name (the members serve the same models in
//! their own zoos). A failure of the member is a `[CRITICAL]` result: the client reconnects
//! and re-sends, and lands on another member.
use super::{error, Resp, State};
use crate::aiserver::frame::StreamSession;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use dgzoo::cache::archive::{self, is_safe_segment};
use dgzoo::params::ModelParams;
use dgzoo::protocol;
use dgzoo::socketio::{self, Control, Packet};
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::aiserver::{AiServerClient, RemoteStream};
use dgzoo::zoo::local::ZooEntry;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use rmpv::Value as Mp;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

/// Engine.IO heartbeat advertised to clients and kept by the server (python-engineio's defaults).
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default cap on simultaneous socket.io connections.
pub const MAX_CONNECTIONS: usize = 256;
/// An upgraded connection must send CONNECT within this time (PySDK sends it at once).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At the cap, an upgrade with no CONNECT yet and at least this old gives its slot to a new one.
pub const EVICT_AFTER: Duration = Duration::from_secs(2);
/// Frames of one connection running or waiting to be sent (PySDK keeps 8 in flight by
/// default, and the AI server's streams take as many).
pub const IN_FLIGHT: usize = 8;
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
    /// Frames for AI-server pool members running at once (local frames use `net::blocking_for`).
    frame_slots: Arc<Semaphore>,
    /// Open connections, for giving the slot of an idle upgrade to a new one.
    live: Mutex<HashMap<u64, Arc<Slot>>>,
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
    /// One remote stream: its frames take `turn` (FIFO) before a pool slot, so they go one
    /// after another and wait without holding the pool.
    Remote {
        session: Mutex<RemoteSession>,
        turn: Arc<tokio::sync::Mutex<()>>,
    },
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
            Backend::Remote { session, .. } => session.lock().unwrap_or_else(|p| p.into_inner()).inputs,
        }
    }
    fn name(&self) -> String {
        match self {
            Backend::Local(s) => s.name.clone(),
            Backend::Remote { session, .. } => session.lock().unwrap_or_else(|p| p.into_inner()).name.clone(),
        }
    }
    fn run_frame(&self, inputs: &[Vec<u8>]) -> Vec<u8> {
        match self {
            Backend::Local(s) => s.run_frame(inputs),
            Backend::Remote { session, .. } => {
                let mut guard = session.lock().unwrap_or_else(|p| p.into_inner());
                let r = &mut *guard;
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
            // Remote frames mostly wait on their AI server: more of them than cores.
            frame_slots: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) * 4)),
            live: Mutex::new(HashMap::new()),
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
    fn model_dir(&self, store: &super::store::Store, z: &super::store::Zoo, model: &str, checksum: &str) -> Result<PathBuf, String> {
        let (org, zoo) = (&z.org, &z.zoo);
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
        // Object storage: the archive is copied to a scratch file first (streamed), then unpacked.
        let scratch = self.work.path().join(format!("{key}.zip.part"));
        let zip = store.local_archive(z, model, &scratch).map_err(|e| format!("model {model} cannot be fetched: {e}"));
        let unpacked = zip.and_then(|zip| {
            archive::extract_model(&zip, model, &dest, archive::Limits::default()).map_err(|e| {
                let _ = std::fs::remove_dir_all(&dest);
                format!("model {model} cannot be unpacked: {}", e.message.replace(&self.work.path().to_string_lossy().to_string(), "<work>"))
            })
        });
        let _ = std::fs::remove_file(&scratch);
        unpacked?;
        map.insert(key, dest.clone());
        Ok(dest)
    }
}

/// A connection's place under the cap.
struct Slot {
    opened: Instant,
    /// [`PENDING`] until a CONNECT arrives (again after a refused one).
    stage: AtomicU8,
    /// Whether this connection still holds its count in `connections` (an evicted one has given it away).
    counted: AtomicBool,
    evict: Notify,
}

const PENDING: u8 = 0;
const CONNECTING: u8 = 1;

/// Releases a connection's slot when it ends.
struct SlotGuard {
    id: u64,
    slot: Arc<Slot>,
    state: Arc<State>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.state.infer.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        if self.slot.counted.swap(false, Ordering::SeqCst) {
            self.state.infer.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl CloudInference {
    /// A slot for a new connection: a free one, or that of the oldest upgrade which has sent no
    /// CONNECT for [`EVICT_AFTER`] (it is told to close). `None` when the cap is reached.
    fn reserve(&self, state: &Arc<State>) -> Option<SlotGuard> {
        let id = self.next_sid.fetch_add(1, Ordering::SeqCst);
        let slot = Arc::new(Slot { opened: Instant::now(), stage: AtomicU8::new(PENDING), counted: AtomicBool::new(true), evict: Notify::new() });
        let max = self.max_connections.load(Ordering::SeqCst);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if self.connections.fetch_add(1, Ordering::SeqCst) >= max {
            self.connections.fetch_sub(1, Ordering::SeqCst);
            let idle = live.values().filter(|s| s.stage.load(Ordering::SeqCst) == PENDING && s.opened.elapsed() >= EVICT_AFTER).min_by_key(|s| s.opened);
            // The victim's count passes to the newcomer.
            let victim = idle.filter(|v| v.counted.swap(false, Ordering::SeqCst))?;
            victim.evict.notify_one();
        }
        live.insert(id, slot.clone());
        Some(SlotGuard { id, slot, state: state.clone() })
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// Answer a request under `/api/v2/socket.io`: upgrade a proper Engine.IO v4 WebSocket
/// request and serve it; anything else is refused (no long-polling).
pub(super) async fn accept(state: &Arc<State>, req: Request<Body>) -> Resp {
    let query = req.uri().query().unwrap_or_default().to_string();
    if query_value(&query, "EIO") != Some("4") {
        return error(400, "The client is using an unsupported version of the Socket.IO or Engine.IO protocols");
    }
    let mut req = req;
    let hv = |k: header::HeaderName| req.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = hv(header::SEC_WEBSOCKET_KEY);
    let upgrade = hv(header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(key), true, Some("websocket")) = (key, upgrade, query_value(&query, "transport")) else {
        return error(400, "Only the websocket transport is supported");
    };
    let Some(guard) = state.infer.reserve(state) else {
        let max = state.infer.max_connections.load(Ordering::SeqCst);
        return error(503, format!("Too many inference connections (limit {max})"));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    // The guard moves into the task: a failed upgrade drops it and frees the slot.
    let span = tracing::info_span!(parent: None, "stream", stream_id = crate::metrics::next_id(), kind = "socketio");
    state.shutdown.spawn(
        async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let _conn = crate::metrics::Connection::open(crate::metrics::ConnKind::SocketIo);
            let config = socketio::ws_config(socketio::MAX_PAYLOAD, true);
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            serve(&st, ws, &guard.slot).await;
            tracing::info!(target: "dgzoo_server::hub", "cloud inference stream closed");
            drop(guard);
        }
        .instrument(span),
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A frame's result (or a reply) on its way to the writer: results are sent in this order.
type Job = BoxFuture<'static, Option<Message>>;

fn packet_msg(p: &Packet) -> Message {
    Message::Binary(p.encode())
}

fn connect_error(msg: &str) -> Packet {
    Packet::new(socketio::CONNECT_ERROR, Mp::Map(vec![(Mp::from("message"), Mp::from(msg))]))
}

/// Sends engine.io control messages at once and job results in order, keeping at most
/// [`IN_FLIGHT`] jobs running; ends when the reader is gone or a send makes no progress for
/// ping interval + timeout (a client that stopped reading).
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut control: mpsc::Receiver<Message>, mut jobs: mpsc::Receiver<Job>) {
    let mut running: FuturesOrdered<Job> = FuturesOrdered::new();
    let mut jobs_open = true;
    loop {
        let msg = tokio::select! {
            biased;
            m = control.recv() => match m {
                Some(m) => m,
                None => break,
            },
            Some(done) = running.next(), if !running.is_empty() => match done {
                Some(m) => m,
                None => continue,
            },
            j = jobs.recv(), if jobs_open && running.len() < IN_FLIGHT => {
                match j {
                    Some(j) => running.push_back(j),
                    None => jobs_open = false,
                }
                continue;
            }
        };
        if !matches!(tokio::time::timeout(PING_INTERVAL + PING_TIMEOUT, sink.send(msg)).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// One socket.io connection: this task reads and dispatches; [`write_loop`] answers.
async fn serve(state: &Arc<State>, ws: WebSocket, slot: &Slot) {
    let sid = format!("dgzoo{:016x}", state.infer.next_sid.fetch_add(1, Ordering::SeqCst) ^ std::process::id() as u64);
    let (sink, mut stream) = ws.split();
    let (control, control_rx) = mpsc::channel::<Message>(16);
    let (jobs, jobs_rx) = mpsc::channel::<Job>(1);
    let writer = tokio::spawn(write_loop(sink, control_rx, jobs_rx));
    let ready = |m: Message| -> Job { futures_util::future::ready(Some(m)).boxed() };
    if control.send(Message::Text(socketio::open_text(&sid, PING_INTERVAL.as_millis() as u64, PING_TIMEOUT.as_millis() as u64))).await.is_err() {
        return;
    }
    let mut session: Option<Arc<Backend>> = None;
    // The connection's fair share of the blocking pool (local frames).
    let client = crate::fair_pool::ClientId::fresh();
    let mut last_heard = Instant::now();
    let connect_deadline = tokio::time::Instant::from_std(slot.opened + CONNECT_TIMEOUT);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        let waiting = session.is_none() && slot.stage.load(Ordering::SeqCst) == PENDING;
        let msg = tokio::select! {
            biased;
            m = stream.next() => match m {
                Some(Ok(m)) => m,
                _ => break,
            },
            _ = slot.evict.notified() => break,
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(connect_deadline), if waiting => break,
            _ = ping.tick() => {
                if last_heard.elapsed() > PING_INTERVAL + PING_TIMEOUT || control.send(Message::Text(socketio::PING.into())).await.is_err() {
                    break;
                }
                continue;
            }
            _ = control.closed() => break,
        };
        last_heard = Instant::now();
        let job = match msg {
            Message::Text(t) => match socketio::parse_control(&t) {
                Ok(Control::Ping) => {
                    if control.send(Message::Text(socketio::PONG.into())).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(Control::Close) => break,
                // Only the msgpack serializer is spoken here.
                Ok(Control::TextMessage(_)) => ready(packet_msg(&connect_error("Only msgpack-serialized packets are supported"))),
                _ => continue,
            },
            // Before CONNECT (authentication) only small packets are decoded: msgpack of many
            // small elements costs ~32x its size once decoded, and anyone may connect.
            Message::Binary(b) if session.is_none() && b.len() > protocol::DEFAULT_MAX_JSON => {
                let msg = format!("packet of {} bytes before CONNECT exceeds the limit of {} bytes", b.len(), protocol::DEFAULT_MAX_JSON);
                ready(packet_msg(&connect_error(&msg)))
            }
            Message::Binary(b) => match Packet::decode(&b) {
                Ok(p) => match p.kind {
                    socketio::CONNECT => {
                        slot.stage.store(CONNECTING, Ordering::SeqCst);
                        let st = state.clone();
                        // Opening may extract the archive and load the model: the blocking pool.
                        let opened =
                            tokio::task::spawn_blocking(move || connect(&st, &p.data)).await.unwrap_or_else(|_| Err("internal error while connecting".into()));
                        let reply = match opened {
                            Ok(s) => {
                                session = Some(Arc::new(s));
                                Packet::new(socketio::CONNECT, Mp::Map(vec![(Mp::from("sid"), Mp::from(sid.as_str()))]))
                            }
                            Err(msg) => {
                                session = None;
                                slot.stage.store(PENDING, Ordering::SeqCst);
                                connect_error(&msg)
                            }
                        };
                        ready(packet_msg(&reply))
                    }
                    socketio::DISCONNECT => break,
                    socketio::EVENT => match p.as_event() {
                        Some(("predict", args)) => frame_job(state, client, session.clone(), args.first().cloned(), args.get(1).cloned().unwrap_or(Mp::Nil)),
                        _ => continue,
                    },
                    _ => continue,
                },
                // A malformed packet is dropped; the connection stays usable.
                Err(_) => continue,
            },
            Message::Close(_) => break,
            _ => continue,
        };
        // Waits while IN_FLIGHT frames are pending: the client's socket fills, not our memory.
        if jobs.send(job).await.is_err() {
            break;
        }
    }
    drop(jobs);
    drop(control);
    // The writer closes the socket; one stuck on a client that does not read is cut off.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// One `predict` event as a job: the frame on its pool (local: `net::blocking_for` the
/// connection's `client`; a pool member's stream: its turn, then a slot of `frame_slots`), then
/// the `predict_result` event under the client's frame number.
fn frame_job(state: &Arc<State>, client: crate::fair_pool::ClientId, session: Option<Arc<Backend>>, payload: Option<Mp>, frame_no: Mp) -> Job {
    let slots = state.infer.frame_slots.clone();
    let turn = match session.as_deref() {
        Some(Backend::Remote { turn, .. }) => Some(turn.clone()),
        _ => None,
    };
    let in_flight = crate::metrics::InFlight::start();
    async move {
        let _in_flight = in_flight;
        let run = move || predict(session.as_deref(), payload.as_ref());
        let result = match turn {
            Some(t) => {
                let _turn = t.lock_owned().await;
                let _slot = slots.acquire_owned().await.ok()?;
                tokio::task::spawn_blocking(run).await.map_err(|e| e.to_string())
            }
            None => crate::net::blocking_for(client, run).await,
        };
        let result = result.unwrap_or_else(|_| {
            protocol::encode(&protocol::frame_err(&protocol::dg_error_text("ERROR", "Operation failed", "internal error while processing the frame", &[])))
        });
        // run_frame's packet is msgpack we wrote ourselves.
        let value = socketio::mp_from_bytes(&result).unwrap_or(Mp::Nil);
        Some(packet_msg(&Packet::event("predict_result", vec![value, frame_no])))
    }
    .boxed()
}

/// One `predict` event → the msgpack result packet (results or an error map).
fn predict(session: Option<&Backend>, payload: Option<&Mp>) -> Vec<u8> {
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
    let zoo_ref =
        (is_safe_segment(&org) && is_safe_segment(&zoo)).then(|| st.zoo(&org, &zoo)).flatten().ok_or_else(|| refused(format!("zoo {zoo_url} is not found")))?;
    let not_found = || refused(format!("model {model} is not found in model zoo {zoo_url}"));
    if !is_safe_segment(&model) {
        return Err(not_found());
    }
    let info = st.model(&zoo_ref, &model).ok_or_else(not_found)?;
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
        return r.map(|r| Backend::Remote { session: Mutex::new(r), turn: Default::default() }).map_err(refused);
    }
    let dir = state.infer.model_dir(st, &zoo_ref, &model, &info.checksum).map_err(refused)?;
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
