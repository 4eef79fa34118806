//! A DeGirum-compatible AI server (aiserver-protocol.md): the asio TCP protocol here, HTTP +
//! WebSocket in [`http`], stream inference in [`frame`]. One thread per connection; loaded
//! engines are cached and shared by every stream.
//!
//! Logging: tracing events under `dgzoo_server::aiserver`; the CLI prints them to stderr by `DGZOO_LOG` (default `info`, `--quiet` → `error`).
pub mod frame;
pub mod http;

use dgzoo::error::{Error, Result};
use dgzoo::params::ModelParams;
use dgzoo::protocol::{self, PROTOCOL_VERSION, VERSION_TAG};
use dgzoo::zoo::local::{self, ZooEntry};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Which listeners to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Asio,
    Http,
    /// asio on `port`, http on `port + 1` (PySDK's convention).
    Both,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asio" => Some(Protocol::Asio),
            "http" => Some(Protocol::Http),
            "both" => Some(Protocol::Both),
            _ => None,
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub zoo_dir: PathBuf,
    /// Bind address. PySDK's server binds 0.0.0.0; we default to loopback.
    pub host: String,
    /// Port of the first listener (0 = ephemeral, for tests; with `Both` the http port is
    /// then ephemeral too instead of `port + 1`).
    pub port: u16,
    pub protocol: Protocol,
    pub quiet: bool,
    /// Largest packet / WebSocket message accepted.
    pub max_packet: usize,
    /// Largest JSON message accepted (asio command packet, WebSocket text message, REST
    /// body), refused from its length before anything is allocated. At most `max_packet`.
    pub max_json: usize,
    /// Web origins (`https://host:port`) allowed to use the HTTP side from a browser: they get
    /// CORS headers and may change state (POST, the WebSocket stream). Empty by default: a
    /// request with any other `Origin` that changes state is refused with 403. `*` gives CORS
    /// headers to every origin for reads only.
    pub cors_origins: Vec<String>,
    /// Most connections served at once (asio and http together); more are closed at once.
    pub max_connections: usize,
    /// LRU limit on loaded models, as the total size of their model files: past it the least
    /// recently used models that no stream is using are unloaded.
    pub max_model_bytes: u64,
    /// Model cache for cloud model names (`org/zoo/model`); `None` = `CacheConfig::from_env()`.
    pub cache: Option<dgzoo::cache::CacheConfig>,
}

impl Config {
    pub fn new(zoo_dir: impl Into<PathBuf>) -> Self {
        Config {
            zoo_dir: zoo_dir.into(),
            host: "127.0.0.1".into(),
            port: dgzoo::zoo::address::DEFAULT_PORT,
            protocol: Protocol::Asio,
            quiet: false,
            max_packet: protocol::DEFAULT_MAX_PACKET,
            max_json: protocol::DEFAULT_MAX_JSON,
            cors_origins: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            cache: None,
        }
    }
}

/// Severity of a server log line (emitted as a `tracing` event; the embedder's subscriber
/// filters it, e.g. the CLI's by `DGZOO_LOG`).
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Error = 0,
    Info = 1,
    Debug = 2,
}

/// Shared server state.
pub struct State {
    zoo_dir: PathBuf,
    zoo: RwLock<Arc<Vec<ZooEntry>>>,
    /// Where cloud models (`org/zoo/model` stream names) are fetched to.
    cache: dgzoo::cache::Cache,
    system_info: Value,
    engines: Mutex<Vec<Arc<frame::EngineSlot>>>,
    stop: AtomicBool,
    max_packet: usize,
    max_json: usize,
    cors_origins: Vec<String>,
    max_connections: usize,
    max_model_bytes: u64,
    /// Connections being served now.
    connections: std::sync::atomic::AtomicUsize,
    /// Recent log lines, for `trace_manage {"trace_read"}` (bounded: see [`Trace`]).
    trace: Mutex<Trace>,
    /// Debug lines go to the trace too (`trace_manage config_set` asked for a detailed level).
    trace_debug: AtomicBool,
    trace_levels: Mutex<Map<String, Value>>,
    asio_addr: Mutex<Option<SocketAddr>>,
    /// Set when a client asked for shutdown (see `request_stop`).
    stopped_at: Mutex<Option<std::time::Instant>>,
    http_addr: Mutex<Option<SocketAddr>>,
}

const TRACE_LINES: usize = 1000;
/// Longest trace line kept, in bytes (client text in a line is cut past it).
const TRACE_LINE_MAX: usize = 1024;
/// Most bytes the trace keeps in all: older lines go first.
const TRACE_BYTES: usize = 256 << 10;
/// Most trace groups `config_set` may create, and the longest group name.
const TRACE_GROUPS_MAX: usize = 64;
const TRACE_GROUP_NAME_MAX: usize = 128;

/// The server's recent log lines: at most [`TRACE_LINES`] lines of at most [`TRACE_LINE_MAX`]
/// bytes and [`TRACE_BYTES`] in all, whatever clients send.
#[derive(Default)]
struct Trace {
    lines: VecDeque<String>,
    bytes: usize,
}

/// One log line as kept and printed: control characters (a client's newlines) blanked, cut
/// at [`TRACE_LINE_MAX`] bytes.
fn clip_line(line: &str) -> String {
    let mut l: String = line.chars().take(TRACE_LINE_MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > TRACE_LINE_MAX {
        let mut cut = (TRACE_LINE_MAX - 3).min(l.len());
        while !l.is_char_boundary(cut) {
            cut -= 1;
        }
        l.truncate(cut);
        l.push('…');
    }
    l
}

impl Trace {
    fn push(&mut self, l: String) {
        while !self.lines.is_empty() && (self.lines.len() >= TRACE_LINES || self.bytes + l.len() > TRACE_BYTES) {
            self.bytes -= self.lines.pop_front().map_or(0, |x| x.len());
        }
        self.bytes += l.len();
        self.lines.push_back(l);
    }
}
/// Default LRU limit on loaded models (total model file size; runtimes take a few times that).
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 512 << 20;
/// Default cap on simultaneous connections (one thread each).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long the asio listener keeps accepting (and ignoring) connections after `shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
const TRACE_LEVELS: [&str; 4] = ["None", "Basic", "Detailed", "Full"];

impl State {
    fn create(zoo_dir: PathBuf, cfg: &Config) -> Arc<State> {
        let mut levels = Map::new();
        for g in ["AIServer", "CoreTaskServer", "CoreRuntime"] {
            levels.insert(g.into(), json!("None"));
        }
        Arc::new(State {
            zoo_dir,
            cache: dgzoo::cache::Cache::new(cfg.cache.clone().unwrap_or_else(dgzoo::cache::CacheConfig::from_env)),
            zoo: RwLock::new(Arc::new(Vec::new())),
            system_info: dgzoo::zoo::local_system_info(),
            engines: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            max_packet: cfg.max_packet,
            max_json: cfg.max_json.min(cfg.max_packet),
            cors_origins: cfg.cors_origins.clone(),
            max_connections: cfg.max_connections.max(1),
            max_model_bytes: cfg.max_model_bytes,
            connections: Default::default(),
            trace: Mutex::new(Trace::default()),
            trace_debug: AtomicBool::new(false),
            trace_levels: Mutex::new(levels),
            asio_addr: Mutex::new(None),
            stopped_at: Mutex::new(None),
            http_addr: Mutex::new(None),
        })
    }

    /// Frame execution without listeners, for other servers (the hub's cloud inference):
    /// the same shared engines and `StreamSession`s as the AI server. `work_dir` is hidden
    /// from error texts; its zoo is not scanned (models come in through `open_entry`).
    pub fn embedded(work_dir: PathBuf) -> Arc<State> {
        State::create(work_dir.clone(), &Config::new(work_dir))
    }

    fn log(&self, level: Level, msg: &str) {
        // Whether the embedder's subscriber shows this level.
        let to_stderr = match level {
            Level::Error => tracing::enabled!(target: "dgzoo_server::aiserver", tracing::Level::ERROR),
            Level::Info => tracing::enabled!(target: "dgzoo_server::aiserver", tracing::Level::INFO),
            Level::Debug => tracing::enabled!(target: "dgzoo_server::aiserver", tracing::Level::DEBUG),
        };
        // Debug lines (one per command or request, with client text) are kept only when asked for.
        if !to_stderr && level == Level::Debug && !self.trace_debug.load(Ordering::Relaxed) {
            return;
        }
        let line = clip_line(&format!("[{:.3}] {msg}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())));
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        // Printed (or not) by the embedder's tracing subscriber (the CLI's: DGZOO_LOG).
        match level {
            Level::Error => tracing::error!(target: "dgzoo_server::aiserver", "{msg}"),
            Level::Info => tracing::info!(target: "dgzoo_server::aiserver", "{msg}"),
            Level::Debug => tracing::debug!(target: "dgzoo_server::aiserver", "{msg}"),
        }
    }
    fn log_info(&self, msg: &str) {
        self.log(Level::Info, msg)
    }

    /// Error texts never show where the zoo or the model cache live on the server.
    fn sanitize(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        for (dir, tag) in [(&self.zoo_dir, "<zoo>"), (&self.cache.config().root, "<cache>")] {
            let d = dir.to_string_lossy();
            if d.len() > 1 {
                out = out.replace(d.as_ref(), tag);
            }
        }
        out
    }

    fn find(&self, name: &str) -> Option<ZooEntry> {
        self.zoo.read().unwrap_or_else(|p| p.into_inner()).iter().find(|e| e.name == name).cloned()
    }

    /// Scan the zoo: like PySDK's server, models whose devices are absent are hidden.
    fn rescan(&self) {
        let pairs = dgzoo::zoo::system_pairs(&self.system_info);
        let models: Vec<ZooEntry> = local::scan_dir(&self.zoo_dir)
            .into_iter()
            .filter(|e| dgzoo::zoo::filter::supported_device_types(&e.params, &pairs).is_ok_and(|s| !s.is_empty()))
            .collect();
        self.log_info(&format!("zoo scanned: {} model(s)", models.len()));
        *self.zoo.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(models);
    }

    /// `modelzoo` listing: full-form parameters with paths relative to the config file.
    fn model_list(&self) -> Vec<(String, Value)> {
        let zoo = self.zoo.read().unwrap_or_else(|p| p.into_inner()).clone();
        zoo.iter().map(|e| (e.name.clone(), relative_params(e).full_form())).collect()
    }

    fn label_dictionary(&self, name: &str) -> std::result::Result<Value, String> {
        let e = self.find(name).ok_or_else(|| {
            protocol::dg_error_text(
                "ERROR",
                "Incorrect value of parameter",
                &format!("AI server model zoo: Cannot find the model in the model zoo with name = {name}"),
                &[],
            )
        })?;
        let path = e.params.str("LabelsPath", 0);
        if path.is_empty() {
            return Ok(json!({}));
        }
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .ok_or_else(|| protocol::dg_error_text("ERROR", "File reading failure", &format!("Cannot read the label dictionary of model '{name}'"), &[]))
    }

    fn cache_dump(&self) -> Value {
        let slots: Vec<Arc<frame::EngineSlot>> = self.engines.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let list: Vec<Value> = slots
            .iter()
            .filter(|s| s.engine.lock().unwrap_or_else(|p| p.into_inner()).is_some())
            .map(|s| {
                let file = s.key.model_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                json!(format!("{}/{}: {file}", s.key.runtime, s.key.device))
            })
            .collect();
        json!({
            "AgentCacheSize": list.len(),
            "AgentList": list,
            "CurrentlyUsedMemory_MB": proc_kb("/proc/self/status", "VmRSS:") / 1024,
            "TotalSystemMemory_MB": proc_kb("/proc/meminfo", "MemTotal:") / 1024,
        })
    }

    fn trace_manage(&self, args: &Value) -> std::result::Result<Value, String> {
        if args.get("config_get").is_some() {
            return Ok(json!({"config_get": self.trace_levels.lock().unwrap_or_else(|p| p.into_inner()).clone()}));
        }
        if let Some(set) = args.get("config_set").and_then(Value::as_object) {
            let mut lv = self.trace_levels.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: client-chosen group names must not grow the table without end.
            let new = set.keys().filter(|k| !lv.contains_key(*k)).count();
            if lv.len() + new > TRACE_GROUPS_MAX || set.keys().any(|k| k.len() > TRACE_GROUP_NAME_MAX) {
                return Err(protocol::dg_error_text(
                    "ERROR",
                    "Incorrect value of parameter",
                    &format!("trace_manage config_set: at most {TRACE_GROUPS_MAX} trace groups of at most {TRACE_GROUP_NAME_MAX} bytes a name"),
                    &[],
                ));
            }
            for (k, v) in set {
                let i = v.as_u64().unwrap_or(0).min(3) as usize;
                lv.insert(k.clone(), json!(TRACE_LEVELS[i]));
            }
            let detailed = lv.values().any(|v| v == "Detailed" || v == "Full");
            self.trace_debug.store(detailed, Ordering::Relaxed);
            return Ok(Value::Null);
        }
        if let Some(r) = args.get("trace_read") {
            let size = r.get("size").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let t = self.trace.lock().unwrap_or_else(|p| p.into_inner());
            let mut text: String = t.lines.iter().map(|l| format!("{l}\n")).collect();
            if text.len() > size {
                let mut cut = text.len() - size;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                text = text[cut..].to_string();
            }
            return Ok(json!({"trace_read": text}));
        }
        Ok(Value::Null)
    }

    /// Stop accepting (both listeners). After a client's `shutdown` the asio listener stays
    /// up for `SHUTDOWN_GRACE`: DeGirum's client then connects once more to send its wake-up
    /// packet and fails if that connection is refused.
    fn request_stop(&self, grace: bool) {
        self.stop.store(true, Ordering::SeqCst);
        let wake = |a: SocketAddr| {
            let ip = if a.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { a.ip() };
            let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, a.port()), Duration::from_secs(1));
        };
        if let Some(a) = *self.asio_addr.lock().unwrap_or_else(|p| p.into_inner()) {
            if grace {
                *self.stopped_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
                let _ = std::thread::Builder::new().name("dgzoo-wake".into()).spawn(move || {
                    std::thread::sleep(SHUTDOWN_GRACE + Duration::from_millis(50));
                    wake(a);
                });
            } else {
                wake(a);
            }
        }
        if let Some(a) = *self.http_addr.lock().unwrap_or_else(|p| p.into_inner()) {
            wake(a);
        }
    }

    /// Run one command (shared by asio and http). `Ok(data)` → reply data under the op name.
    fn run_command(&self, op: &str, msg: &Value, peer: Option<IpAddr>) -> std::result::Result<Option<Value>, String> {
        let local_only = matches!(op, "shutdown" | "zoo_manage");
        if local_only && !peer.is_some_and(|ip| ip.is_loopback()) {
            return Err(protocol::dg_error_text("ERROR", "Operation failed", &format!("Operation '{op}' from remote client is prohibited"), &[]));
        }
        match op {
            "modelzoo" => Ok(Some(Value::Array(self.model_list().into_iter().map(|(n, p)| json!({"name": n, "ModelParams": p.to_string()})).collect()))),
            "system_info" => Ok(Some(self.system_info.clone())),
            "label_dictionary" => {
                let name = msg.get("name").and_then(Value::as_str).unwrap_or_default();
                self.label_dictionary(name).map(Some)
            }
            "sleep" => {
                let ms = msg.get("sleep_time_ms").and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, 60_000.0);
                std::thread::sleep(Duration::from_secs_f64(ms / 1000.0));
                Ok(None)
            }
            "shutdown" => {
                self.log_info("shutdown requested");
                Ok(None)
            }
            "trace_manage" => self.trace_manage(msg.get("args").unwrap_or(&Value::Null)).map(Some),
            "zoo_manage" => {
                let args = msg.get("args").unwrap_or(&Value::Null);
                if args.get("rescan").is_some() {
                    self.rescan();
                    Ok(Some(Value::Null))
                } else if args.get("cache_dump").is_some() {
                    Ok(Some(self.cache_dump()))
                } else {
                    Ok(Some(Value::Null))
                }
            }
            "dev_ctrl" => Ok(Some(json!({"status": "device not found"}))),
            other => Err(format!("Unsupported op '{other}' requested from client '{}'.", peer.map(|p| p.to_string()).unwrap_or_default())),
        }
    }
}

fn proc_kb(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A zoo entry's parameters with file names relative to its config file (as listed by the server).
fn relative_params(e: &ZooEntry) -> ModelParams {
    let mut p = e.params.clone();
    let dir = e.config_path.parent().unwrap_or(Path::new(""));
    for name in ["ModelPath", "LabelsPath", "PythonFile"] {
        let v = p.str(name, 0);
        if let Ok(rel) = Path::new(&v).strip_prefix(dir) {
            if !v.is_empty() && p.exists(name, 0) {
                let _ = p.set(name, 0, json!(rel.to_string_lossy()));
            }
        }
    }
    p
}

/// A running server.
pub struct Server {
    state: Arc<State>,
    asio: Option<(SocketAddr, JoinHandle<()>)>,
    http: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Server {
    /// Bind the listeners, scan the zoo and start serving in background threads.
    pub fn start(cfg: Config) -> Result<Server> {
        if !cfg.zoo_dir.is_dir() {
            return Err(Error::not_found(format!("zoo directory '{}' does not exist", cfg.zoo_dir.display())));
        }
        let zoo_dir = cfg.zoo_dir.canonicalize().unwrap_or(cfg.zoo_dir.clone());
        let state = State::create(zoo_dir, &cfg);
        state.rescan();
        let bind_err = |p: u16, e: &dyn std::fmt::Display| Error::io(format!("cannot listen on {}:{p}: {e}", cfg.host));
        let mut server = Server { state: state.clone(), asio: None, http: None };
        if matches!(cfg.protocol, Protocol::Asio | Protocol::Both) {
            let l = TcpListener::bind((cfg.host.as_str(), cfg.port)).map_err(|e| bind_err(cfg.port, &e))?;
            let addr = l.local_addr().map_err(|e| bind_err(cfg.port, &e))?;
            *state.asio_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
            let st = state.clone();
            let h = std::thread::Builder::new().name("dgzoo-asio".into()).spawn(move || asio_accept(st, l)).map_err(|e| Error::internal(e.to_string()))?;
            state.log_info(&format!("asio protocol listening on {addr}"));
            server.asio = Some((addr, h));
        }
        if matches!(cfg.protocol, Protocol::Http | Protocol::Both) {
            let port = match (cfg.protocol, cfg.port) {
                (Protocol::Both, 0) => 0,
                (Protocol::Both, p) => p.checked_add(1).ok_or_else(|| Error::invalid("port + 1 is out of range"))?,
                (_, p) => p,
            };
            let (addr, h) = http::start(state.clone(), &cfg.host, port).inspect_err(|_| state.request_stop(false))?;
            state.log_info(&format!("http protocol listening on {addr}"));
            server.http = Some((addr, h));
        }
        Ok(server)
    }

    pub fn asio_addr(&self) -> Option<SocketAddr> {
        self.asio.as_ref().map(|a| a.0)
    }
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|a| a.0)
    }

    /// Stop accepting connections and wait for the listener threads.
    pub fn shutdown(mut self) {
        self.state.request_stop(false);
        self.join();
    }

    /// Block until the server is shut down (by a `shutdown` request).
    pub fn wait(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some((_, h)) = self.asio.take() {
            let _ = h.join();
        }
        if let Some((_, h)) = self.http.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.asio.is_some() || self.http.is_some() {
            self.state.request_stop(false);
            self.join();
        }
    }
}

fn asio_accept(state: Arc<State>, l: TcpListener) {
    for conn in l.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            let grace_over = state.stopped_at.lock().unwrap_or_else(|p| p.into_inner()).is_none_or(|t| t.elapsed() >= SHUTDOWN_GRACE);
            if grace_over {
                break;
            }
            // The client's post-shutdown wake-up: read its empty packet and close.
            if let Ok(mut s) = conn {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = protocol::read_packet(&mut s, 0);
            }
            continue;
        }
        let sock = match conn {
            Ok(s) => s,
            Err(e) => {
                state.log(Level::Debug, &format!("accept failed: {e}"));
                // Out of descriptors and the like: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let Some(slot) = ConnectionSlot::take(&state) else {
            state.log_info("connection refused: too many connections");
            continue;
        };
        let st = state.clone();
        let spawned = std::thread::Builder::new().name("dgzoo-conn".into()).spawn(move || {
            let _slot = slot;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| asio_connection(&st, sock)));
        });
        if let Err(e) = spawned {
            state.log(Level::Error, &format!("cannot start a connection thread: {e}"));
        }
    }
    state.log_info("asio listener stopped");
}

/// One counted connection; released on drop (also when its thread panics or never starts).
pub(crate) struct ConnectionSlot(Arc<State>);

impl ConnectionSlot {
    pub(crate) fn take(state: &Arc<State>) -> Option<Self> {
        let n = state.connections.fetch_add(1, Ordering::SeqCst);
        if n >= state.max_connections {
            state.connections.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ConnectionSlot(state.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn send_json(sock: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    protocol::write_packet(sock, v.to_string().as_bytes())
}

/// Version check of a command message; the error text is the reply.
fn version_error(msg: &Value) -> Option<String> {
    let v = match msg.get(VERSION_TAG).and_then(Value::as_i64) {
        Some(v) => v,
        None => return Some("Protocol version data is missing in the client message header. Please upgrade your client software".into()),
    };
    let range = format!("[{PROTOCOL_VERSION}, {PROTOCOL_VERSION}]");
    if v < PROTOCOL_VERSION {
        Some(format!("Client protocol version {v} is older than server-supported version range {range}. Please upgrade your client software"))
    } else if v > PROTOCOL_VERSION {
        Some(format!("Client protocol version {v} is newer than server-supported version range {range}. Please upgrade AI server software"))
    } else {
        None
    }
}

/// One asio connection: commands until EOF, or a stream after a `stream` op.
fn asio_connection(state: &Arc<State>, mut sock: TcpStream) {
    let peer = sock.peer_addr().ok();
    let peer_ip = peer.map(|p| p.ip());
    let _ = sock.set_nodelay(true);
    // A client that stops reading must not hold this thread forever.
    let _ = sock.set_write_timeout(Some(Duration::from_secs(60)));
    loop {
        // Command packets are JSON: their own (small) limit, checked on the length prefix.
        let pkt = match protocol::read_packet(&mut sock, state.max_json) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == ErrorKind::InvalidData {
                    // Oversized length prefix: answer, then drop the connection (it is out of sync).
                    let _ = send_json(&mut sock, &protocol::reply_err(&protocol::dg_error_text("ERROR", "Incorrect value of parameter", &e.to_string(), &[])));
                }
                return;
            }
        };
        if pkt.is_empty() {
            // The shutdown "kick" or a stray end-of-stream: nothing to answer.
            continue;
        }
        let msg: Value = match serde_json::from_slice(&pkt) {
            Ok(v) => v,
            Err(e) => {
                let text = protocol::dg_error_text("ERROR", "Parsing error", &format!("Message from client is not valid JSON: {e}"), &[]);
                if send_json(&mut sock, &protocol::reply_err(&text)).is_err() {
                    return;
                }
                continue;
            }
        };
        let ip = peer_ip.map(|i| i.to_string()).unwrap_or_default();
        let Some(op) = msg.get("op").and_then(Value::as_str).map(str::to_string) else {
            if send_json(&mut sock, &protocol::reply_err(&format!("Message header from client '{ip}' does not contain op"))).is_err() {
                return;
            }
            continue;
        };
        if let Some(err) = version_error(&msg) {
            if send_json(&mut sock, &protocol::reply_err(&err)).is_err() {
                return;
            }
            continue;
        }
        if op == "stream" {
            asio_stream(state, sock, &msg);
            return;
        }
        state.log(Level::Debug, &format!("op '{op}' from {ip}"));
        let reply = match state.run_command(&op, &msg, peer_ip) {
            Ok(data) => protocol::reply_ok(&op, data),
            Err(text) => protocol::reply_err(&text),
        };
        let ok = send_json(&mut sock, &reply).is_ok();
        if op == "shutdown" && reply.get("success") == Some(&json!(true)) {
            state.request_stop(true);
        }
        if !ok {
            return;
        }
    }
}

/// Stream mode: frames of N packets in, one msgpack result per frame out, in order.
fn asio_stream(state: &Arc<State>, mut sock: TcpStream, msg: &Value) {
    let name = msg.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let config = msg.get("config").cloned().unwrap_or(Value::Null);
    let session = match state.open_stream(&name, &config) {
        Ok(s) => s,
        Err(text) => {
            state.log_info(&format!("stream open failed for model '{name}'"));
            let _ = protocol::write_packet(&mut sock, &protocol::encode(&protocol::reply_err(&text)));
            // Like the real server: nothing more is processed on this socket.
            while let Ok(Some(p)) = protocol::read_packet(&mut sock, state.max_packet) {
                if p.is_empty() {
                    break;
                }
            }
            return;
        }
    };
    let n = session.num_inputs();
    let Ok(mut out) = sock.try_clone() else { return };
    let mut pipeline = frame::FramePipeline::new(Arc::new(session), move |r| protocol::write_packet(&mut out, r).is_ok());
    let mut frame: Vec<Vec<u8>> = Vec::with_capacity(n);
    // EOF, a broken connection or an oversized packet ends the stream.
    while let Ok(Some(pkt)) = protocol::read_packet(&mut sock, state.max_packet) {
        if pkt.is_empty() {
            // End of stream: answer what is queued, then close.
            break;
        }
        frame.push(pkt);
        if frame.len() == n && !pipeline.push(std::mem::replace(&mut frame, Vec::with_capacity(n))) {
            break;
        }
    }
    pipeline.finish();
}
