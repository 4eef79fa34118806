//! A DeGirum-compatible AI server (aiserver-protocol.md): the asio TCP protocol here, HTTP +
//! WebSocket in [`http`], stream inference in [`frame`]. Every connection is a task on the
//! crate's tokio runtime ([`crate::net`]); frames of every stream run on its one bounded
//! blocking pool; loaded engines are cached and shared by every stream.
//!
//! Logging: tracing events under `dgzoo_server::aiserver`; the CLI prints them to stderr by `DGZOO_LOG` (default `info`, `--quiet` → `error`).
pub mod frame;
pub mod http;
pub mod trace;

use crate::net;
use dgzoo::error::{Error, Result};
use dgzoo::params::ModelParams;
use dgzoo::protocol::command::{Command, CommandError};
use dgzoo::protocol::{self, PROTOCOL_VERSION, VERSION_TAG};
use dgzoo::zoo::local::{self, ZooEntry};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use trace::{Group, Level, Trace};
use tracing::Instrument;

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
    /// Most connections served at once (asio and http together). Over the cap an asio client
    /// is closed at once and an HTTP client gets 503; idle connections time out
    /// (`idle_timeout`), so idle clients cannot hold the cap for long.
    pub max_connections: usize,
    /// How long a connection may sit idle: asio between commands (and between frames with
    /// none in flight), HTTP keep-alive between requests, a WebSocket without any message
    /// (the server pings every third of it; DeGirum's client answers).
    pub idle_timeout: Duration,
    /// How long the listeners keep serving (readiness already false) after a client's
    /// `shutdown` (asio or `POST /v1/shutdown`): DeGirum's client connects once more to send
    /// its wake-up packet and fails if that connection is refused. `Server::shutdown` skips it.
    pub shutdown_grace: Duration,
    /// When set, `shutdown`, `zoo_manage`, `trace_manage` and `dev_ctrl` need this token (asio:
    /// an `admin_token` field of the command; HTTP: `Authorization: Bearer <token>`). `None`:
    /// open to loopback clients as PySDK's server is (said in the log at start).
    pub admin_token: Option<String>,
    /// LRU limit on loaded models, as the total size of their model files: past it the least
    /// recently used models that no stream is using are unloaded.
    pub max_model_bytes: u64,
    /// Sessions per loaded model for runtimes that run one frame at a time per session
    /// (LiteRT), each holding its own copy of the weights: 1 (the default) keeps one all-core
    /// session per model, more trade memory for frames per second on a single busy model
    /// (see `dgzoo::inference::Profile::Throughput`). Capped at one per core.
    pub model_copies: usize,
    /// This machine's system info (`Devices`, `Software Version`) when the caller measured it
    /// in another process (the CLI runs `dgzoo sys-info --json`), so that this process maps
    /// only the runtimes its models use: OpenVINO alone is 19 MiB resident. `None`: measured
    /// here on first use, which loads every runtime.
    pub system_info: Option<Value>,
    /// Model cache for cloud model names (`org/zoo/model`); `None` = the process's settings'.
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
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            admin_token: None,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            model_copies: DEFAULT_MODEL_COPIES,
            system_info: None,
            cache: None,
        }
    }
}

/// Shared server state.
pub struct State {
    zoo_dir: PathBuf,
    zoo: RwLock<Arc<Vec<ZooEntry>>>,
    /// Where cloud models (`org/zoo/model` stream names) are fetched to.
    cache: dgzoo::cache::Cache,
    /// See [`Config::system_info`]; [`State::system_info`] fills it on first use.
    system_info: std::sync::OnceLock<Value>,
    engines: Mutex<Vec<Arc<frame::EngineSlot>>>,
    /// Readiness and the graceful-shutdown signal of every listener and connection.
    shutdown: net::Shutdown,
    max_packet: usize,
    max_json: usize,
    cors_origins: Vec<String>,
    max_model_bytes: u64,
    model_copies: usize,
    /// Connections being served now (asio and http together).
    limiter: net::Limiter,
    idle_timeout: Duration,
    shutdown_grace: Duration,
    admin_token: Option<String>,
    /// Trace groups and recent records, for `trace_manage` (bounded: see [`Trace`]).
    trace: Mutex<Trace>,
}

/// Default LRU limit on loaded models (total model file size; runtimes take a few times that).
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 512 << 20;
/// Default [`Config::model_copies`].
pub const DEFAULT_MODEL_COPIES: usize = 1;
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default idle time before a connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long in-flight work may take to finish once the listeners have stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Default [`Config::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

impl State {
    fn create(zoo_dir: PathBuf, cfg: &Config) -> Arc<State> {
        Arc::new(State {
            zoo_dir,
            cache: dgzoo::cache::Cache::new(
                cfg.cache.clone().unwrap_or_else(|| dgzoo::cache::CacheConfig::from_settings(dgzoo::settings::Settings::process())),
            ),
            zoo: RwLock::new(Arc::new(Vec::new())),
            system_info: cfg.system_info.clone().map(std::sync::OnceLock::from).unwrap_or_default(),
            engines: Mutex::new(Vec::new()),
            shutdown: net::Shutdown::new(),
            max_packet: cfg.max_packet,
            max_json: cfg.max_json.min(cfg.max_packet),
            cors_origins: cfg.cors_origins.clone(),
            max_model_bytes: cfg.max_model_bytes,
            model_copies: cfg.model_copies.max(1),
            limiter: net::Limiter::new(cfg.max_connections),
            idle_timeout: cfg.idle_timeout,
            shutdown_grace: cfg.shutdown_grace,
            admin_token: cfg.admin_token.clone().filter(|t| !t.is_empty()),
            trace: Mutex::new(Trace::default()),
        })
    }

    /// This machine's system info ([`Config::system_info`], or measured now).
    pub(crate) fn system_info(&self) -> &Value {
        self.system_info.get_or_init(dgzoo::zoo::local_system_info)
    }

    /// Frame execution without listeners, for other servers (the hub's cloud inference):
    /// the same shared engines and `StreamSession`s as the AI server. `work_dir` is hidden
    /// from error texts; its zoo is not scanned (models come in through `open_entry`).
    pub fn embedded(work_dir: PathBuf) -> Arc<State> {
        State::create(work_dir.clone(), &Config::new(work_dir))
    }

    /// A log line: a trace record of `group` when the trace wants it, and a tracing event
    /// (info for `Basic`, debug for `Detailed`) that the embedder's subscriber prints or not
    /// (the CLI's: `DGZOO_LOG`).
    fn log(&self, group: Group, level: Level, msg: &str) {
        {
            let mut t = self.trace.lock().unwrap_or_else(|p| p.into_inner());
            if t.wants(group, level) {
                t.push(group, level, msg);
            }
        }
        match level {
            Level::Basic => tracing::info!(target: "dgzoo_server::aiserver", "{msg}"),
            Level::Detailed => tracing::debug!(target: "dgzoo_server::aiserver", "{msg}"),
        }
    }
    fn log_info(&self, group: Group, msg: &str) {
        self.log(group, Level::Basic, msg)
    }

    /// A stream ended (asio or WebSocket): log it and give the heap its runs freed back to the
    /// system. The activations of a stream's frames go through malloc (ONNX Runtime runs
    /// without its arena here, `SessionOptions::lean`) and glibc keeps what they free; a node
    /// serving many models in turn would otherwise hold the largest activations of each for
    /// good. `malloc_trim` takes a few ms and the heap's locks, so it runs on a blocking thread,
    /// once per stream, never per frame.
    fn stream_closed(&self, name: &str, frames: u64) {
        self.log_info(Group::AiServer, &format!("stream closed on model '{name}' after {frames} frame(s)"));
        tokio::task::spawn_blocking(dgzoo::runtime::heap::trim);
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
        let pairs = dgzoo::zoo::system_pairs(self.system_info());
        let models: Vec<ZooEntry> = local::scan_dir(&self.zoo_dir)
            .into_iter()
            .filter(|e| dgzoo::zoo::filter::supported_device_types(&e.params, &pairs).is_ok_and(|s| !s.is_empty()))
            .collect();
        self.log_info(Group::ModelZoo, &format!("zoo scanned: {} model(s)", models.len()));
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

    /// `zoo_manage {"cache_dump"}`: PySDK's keys; memory in MiB (whole, rounded down).
    fn cache_dump(&self) -> Value {
        let list = self.agent_list();
        json!({
            "AgentCacheSize": list.len(),
            "AgentList": list,
            "CurrentlyUsedMemory_MB": proc_kb("/proc/self/status", "VmRSS:") / 1024,
            "TotalSystemMemory_MB": proc_kb("/proc/meminfo", "MemTotal:") / 1024,
        })
    }

    fn trace_manage(&self, args: &Value) -> std::result::Result<Value, String> {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).manage(args)
    }

    /// Stop the server: readiness turns false at once; with `grace` (a client's `shutdown`)
    /// the listeners keep serving for `shutdown_grace` first (see [`Config::shutdown_grace`]).
    fn request_stop(&self, grace: bool) {
        self.shutdown.set_ready(false);
        if grace {
            let (sd, grace) = (self.shutdown.clone(), self.shutdown_grace);
            net::runtime().spawn(async move {
                tokio::time::sleep(grace).await;
                sd.cancel();
            });
        } else {
            self.shutdown.cancel();
        }
    }

    /// A management command without the configured admin token is refused (nothing done).
    fn admin_check(&self, cmd: &Command, token: Option<&str>) -> std::result::Result<(), String> {
        let Some(want) = self.admin_token.as_deref().filter(|_| cmd.needs_admin()) else { return Ok(()) };
        if token.is_some_and(|t| same_secret(t, want)) {
            return Ok(());
        }
        self.log_info(Group::AiServer, &format!("refused '{}' without the admin token", cmd.op()));
        let why = if token.is_some() { "a wrong admin token" } else { "no admin token" };
        Err(protocol::dg_error_text("ERROR", "Operation failed", &format!("Operation '{}' with {why} is prohibited", cmd.op()), &[]))
    }

    /// Run one command (shared by asio and http); `sleep` and the zoo rescan do not hold a
    /// runtime worker. `Ok(data)` → reply data under the op name.
    async fn execute(self: &Arc<Self>, cmd: Command, peer: Option<IpAddr>, token: Option<&str>) -> std::result::Result<Option<Value>, String> {
        self.admin_check(&cmd, token)?;
        if cmd.local_only() && !peer.is_some_and(|ip| ip.is_loopback()) {
            return Err(protocol::dg_error_text("ERROR", "Operation failed", &format!("Operation '{}' from remote client is prohibited", cmd.op()), &[]));
        }
        match cmd {
            Command::Sleep { ms } => {
                tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
                Ok(None)
            }
            Command::ZooManage { .. } => {
                let st = self.clone();
                tokio::task::spawn_blocking(move || st.run_command(&cmd)).await.unwrap_or_else(|e| Err(e.to_string()))
            }
            cmd => self.run_command(&cmd),
        }
    }

    /// A quick command (see [`State::execute`]).
    fn run_command(&self, cmd: &Command) -> std::result::Result<Option<Value>, String> {
        match cmd {
            Command::ModelZoo => Ok(Some(Value::Array(self.model_list().into_iter().map(|(n, p)| json!({"name": n, "ModelParams": p.to_string()})).collect()))),
            Command::SystemInfo => Ok(Some(self.system_info().clone())),
            Command::LabelDictionary { name } => self.label_dictionary(name).map(Some),
            Command::Sleep { .. } | Command::Stream { .. } => Ok(None),
            Command::Shutdown => {
                self.log_info(Group::AiServer, "shutdown requested");
                Ok(None)
            }
            Command::TraceManage { args } => self.trace_manage(args).map(Some),
            Command::ZooManage { args } => {
                if args.get("rescan").is_some() {
                    self.rescan();
                    Ok(Some(Value::Null))
                } else if args.get("cache_dump").is_some() {
                    Ok(Some(self.cache_dump()))
                } else {
                    Ok(Some(Value::Null))
                }
            }
            Command::DevCtrl { .. } => Ok(Some(json!({"status": "device not found"}))),
        }
    }
}

/// Token comparison in time independent of where the strings differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    asio: Option<SocketAddr>,
    http: Option<SocketAddr>,
    /// One message per listener task when it has stopped (after draining its connections).
    stopped: std::sync::mpsc::Receiver<()>,
    running: usize,
}

impl Server {
    /// Bind the listeners, scan the zoo and start serving on the crate's runtime.
    pub fn start(cfg: Config) -> Result<Server> {
        if !cfg.zoo_dir.is_dir() {
            return Err(Error::not_found(format!("zoo directory '{}' does not exist", cfg.zoo_dir.display())));
        }
        let zoo_dir = cfg.zoo_dir.canonicalize().unwrap_or(cfg.zoo_dir.clone());
        let state = State::create(zoo_dir, &cfg);
        state.rescan();
        if state.admin_token.is_none() {
            state.log_info(
                Group::AiServer,
                "no admin token: shutdown, zoo_manage, trace_manage and dev_ctrl are open to every local client, as on PySDK's server",
            );
        }
        let rt = net::runtime();
        let bind = |port: u16| {
            let _guard = rt.enter();
            let l = std::net::TcpListener::bind((cfg.host.as_str(), port))
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| Error::io(format!("cannot listen on {}:{port}: {e}", cfg.host)))?;
            let addr = l.local_addr().map_err(|e| Error::io(format!("cannot listen on {}:{port}: {e}", cfg.host)))?;
            Ok::<_, Error>((l, addr))
        };
        let mut listeners = Vec::new();
        let (mut asio, mut http) = (None, None);
        if matches!(cfg.protocol, Protocol::Asio | Protocol::Both) {
            let (l, addr) = bind(cfg.port)?;
            asio = Some(addr);
            listeners.push((l, addr, false));
        }
        if matches!(cfg.protocol, Protocol::Http | Protocol::Both) {
            let port = match (cfg.protocol, cfg.port) {
                (Protocol::Both, 0) => 0,
                (Protocol::Both, p) => p.checked_add(1).ok_or_else(|| Error::invalid("port + 1 is out of range"))?,
                (_, p) => p,
            };
            let (l, addr) = bind(port)?;
            http = Some(addr);
            listeners.push((l, addr, true));
        }
        let (tx, stopped) = std::sync::mpsc::channel();
        let running = listeners.len();
        for (l, addr, is_http) in listeners {
            let (st, tx) = (state.clone(), tx.clone());
            rt.spawn(async move {
                if is_http {
                    st.log_info(Group::TaskServerHttp, &format!("http protocol listening on {addr}"));
                    http::serve(st.clone(), l).await;
                    st.log_info(Group::TaskServerHttp, "http listener stopped");
                } else {
                    st.log_info(Group::TaskServerAsio, &format!("asio protocol listening on {addr}"));
                    asio_serve(st.clone(), l).await;
                    st.log_info(Group::TaskServerAsio, "asio listener stopped");
                }
                st.shutdown.drain(DRAIN_LIMIT).await;
                let _ = tx.send(());
            });
        }
        // Zoo scanned, listeners accepting.
        state.shutdown.set_ready(true);
        Ok(Server { state, asio, http, stopped, running })
    }

    pub fn asio_addr(&self) -> Option<SocketAddr> {
        self.asio
    }
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Stop: readiness turns false, the listeners stop accepting, connections finish what is
    /// in flight (at most `DRAIN_LIMIT`); returns when that is done.
    pub fn shutdown(mut self) {
        self.state.request_stop(false);
        self.join();
    }

    /// Block until the server is shut down (by a `shutdown` request).
    pub fn wait(mut self) {
        self.join();
    }

    fn join(&mut self) {
        while self.running > 0 {
            if self.stopped.recv().is_err() {
                break;
            }
            self.running -= 1;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running > 0 {
            self.state.request_stop(false);
            self.join();
        }
    }
}

/// asio packets: a 4-byte big-endian length, then the payload (tokio-util's length-delimited
/// codec). A length over the limit is refused from the header with our error text, and a
/// frame's buffer grows with the bytes received, not with the length a client claims.
struct PacketCodec {
    inner: tokio_util::codec::LengthDelimitedCodec,
    max: usize,
}

impl PacketCodec {
    fn new(max: usize) -> Self {
        let mut c = PacketCodec { inner: tokio_util::codec::LengthDelimitedCodec::builder().big_endian().length_field_length(4).new_codec(), max: 0 };
        c.set_max(max);
        c
    }
    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.inner.set_max_frame_length(max);
    }
}

impl tokio_util::codec::Decoder for PacketCodec {
    type Item = bytes::BytesMut;
    type Error = std::io::Error;
    fn decode(&mut self, src: &mut bytes::BytesMut) -> std::io::Result<Option<bytes::BytesMut>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("packet of {len} bytes exceeds the limit of {} bytes", self.max)));
        }
        if src.len() < 4 + len {
            // The inner codec would reserve the whole claimed length at once.
            src.reserve((4 + len - src.len()).min(1 << 20));
            return Ok(None);
        }
        self.inner.decode(src)
    }
}

impl tokio_util::codec::Encoder<bytes::Bytes> for PacketCodec {
    type Error = std::io::Error;
    fn encode(&mut self, item: bytes::Bytes, dst: &mut bytes::BytesMut) -> std::io::Result<()> {
        self.inner.encode(item, dst)
    }
}

type AsioConn = tokio_util::codec::Framed<tokio::net::TcpStream, PacketCodec>;

async fn asio_serve(state: Arc<State>, l: tokio::net::TcpListener) {
    let st = state.clone();
    let serve = move |sock, peer: SocketAddr, permit| {
        let st = st.clone();
        async move {
            let _permit = permit;
            let _conn = crate::metrics::Connection::open(crate::metrics::ConnKind::Asio);
            asio_connection(&st, sock, peer).await;
        }
    };
    // Over the cap: closed at once (DeGirum's client then reports the connection as lost).
    let refuse = |_sock| async {};
    net::accept_loop("asio", l, state.limiter.clone(), state.shutdown.clone(), serve, refuse).await
}

async fn send(conn: &mut AsioConn, payload: Vec<u8>) -> std::io::Result<()> {
    futures_util::SinkExt::send(conn, bytes::Bytes::from(payload)).await
}

async fn send_json(conn: &mut AsioConn, v: &Value) -> std::io::Result<()> {
    send(conn, v.to_string().into_bytes()).await
}

/// The next packet, or `None` when the connection should end: EOF, an error, shutdown, or
/// `idle` passed without a packet (`idle` = `None`: wait as long as it takes).
async fn next_packet(state: &State, conn: &mut AsioConn, idle: Option<Duration>) -> Option<std::io::Result<bytes::BytesMut>> {
    let next = futures_util::StreamExt::next(conn);
    tokio::select! {
        _ = state.shutdown.cancelled() => None,
        r = async { match idle { Some(d) => tokio::time::timeout(d, next).await.ok().flatten(), None => next.await } } => r,
    }
}

/// Version check of a command message; the error text is the reply.
fn version_error(msg: &Value) -> Option<String> {
    let v = match msg.get(VERSION_TAG) {
        None => return Some("Protocol version data is missing in the client message header. Please upgrade your client software".into()),
        // `4.0` is version 4 (JSON does not tell integers from floats).
        Some(v) => match v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64)) {
            Some(v) => v,
            None => return Some(format!("Protocol version in the client message header must be an integer, not {v}")),
        },
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

/// One asio connection: commands until EOF (or idle, or shutdown), or a stream after a
/// `stream` op.
async fn asio_connection(state: &Arc<State>, sock: tokio::net::TcpStream, peer: SocketAddr) {
    let peer_ip = peer.ip();
    let ip = peer_ip.to_string();
    // Command packets are JSON: their own (small) limit, checked on the length prefix.
    let mut conn = tokio_util::codec::Framed::new(sock, PacketCodec::new(state.max_json));
    loop {
        let pkt = match next_packet(state, &mut conn, Some(state.idle_timeout)).await {
            Some(Ok(p)) => p,
            None => return,
            Some(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    // Oversized length prefix: answer, then drop the connection (it is out of sync).
                    let text = protocol::dg_error_text("ERROR", "Incorrect value of parameter", &e.to_string(), &[]);
                    let _ = send_json(&mut conn, &protocol::reply_err(&text)).await;
                }
                return;
            }
        };
        if pkt.is_empty() {
            // The shutdown "kick" or a stray end-of-stream: nothing to answer.
            continue;
        }
        let reply_err = |text: String| protocol::reply_err(&text);
        let msg: Value = match serde_json::from_slice(&pkt) {
            Ok(v) => v,
            Err(e) => {
                let text = protocol::dg_error_text("ERROR", "Parsing error", &format!("Message from client is not valid JSON: {e}"), &[]);
                if send_json(&mut conn, &reply_err(text)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let cmd = match Command::from_asio(&msg) {
            Err(CommandError::MissingOp) => Err(format!("Message header from client '{ip}' does not contain op")),
            _ if version_error(&msg).is_some() => Err(version_error(&msg).unwrap_or_default()),
            Err(CommandError::UnknownOp(op)) => Err(format!("Unsupported op '{op}' requested from client '{ip}'.")),
            Err(_) => Err(format!("Unsupported request from client '{ip}'.")),
            Ok(c) => Ok(c),
        };
        let cmd = match cmd {
            Ok(c) => c,
            Err(text) => {
                if send_json(&mut conn, &reply_err(text)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if let Command::Stream { name, config } = cmd {
            let span = tracing::info_span!("stream", stream_id = crate::metrics::next_id(), kind = "asio", model = %name);
            asio_stream(state, conn, name, config).instrument(span).await;
            return;
        }
        let op = cmd.op();
        let span = tracing::info_span!("request", request_id = crate::metrics::next_id(), op = %op);
        let is_shutdown = cmd == Command::Shutdown;
        let token = msg.get(dgzoo::protocol::command::ADMIN_TOKEN_FIELD).and_then(Value::as_str);
        let reply = async {
            state.log(Group::AiServer, Level::Detailed, &format!("op '{op}' from {ip}"));
            match state.execute(cmd, Some(peer_ip), token).await {
                Ok(data) => protocol::reply_ok(op, data),
                Err(text) => reply_err(text),
            }
        }
        .instrument(span)
        .await;
        let ok = send_json(&mut conn, &reply).await.is_ok();
        if is_shutdown && reply.get("success") == Some(&json!(true)) {
            state.request_stop(true);
        }
        if !ok {
            return;
        }
    }
}

/// Stream mode: frames of N packets in, one msgpack result per frame out, in order.
async fn asio_stream(state: &Arc<State>, mut conn: AsioConn, name: String, config: Value) {
    conn.codec_mut().set_max(state.max_packet);
    let session = match frame::open_stream(state, name.clone(), config).await {
        Ok(s) => s,
        Err(text) => {
            state.log_info(Group::AiServer, &format!("stream open failed for model '{name}'"));
            let _ = send(&mut conn, protocol::encode(&protocol::reply_err(&text))).await;
            // Like the real server: nothing more is processed on this socket.
            while let Some(Ok(p)) = next_packet(state, &mut conn, Some(state.idle_timeout)).await {
                if p.is_empty() {
                    break;
                }
            }
            return;
        }
    };
    let mut queue = frame::FrameQueue::new(session);
    // Reading stops at EOF, a broken connection, an oversized packet (answered with an error
    // after the queued frames), an empty packet (end of stream), shutdown, or idleness with
    // nothing in flight; queued frames are answered first.
    let mut reading = true;
    let mut refusal = None;
    while reading || !queue.is_empty() {
        let idle = queue.is_empty().then_some(state.idle_timeout);
        tokio::select! {
            biased;
            Some(result) = queue.next_result(), if !queue.is_empty() => {
                if send(&mut conn, result).await.is_err() {
                    return;
                }
            }
            pkt = next_packet(state, &mut conn, idle), if reading && !queue.is_full() => match pkt {
                Some(Ok(p)) if !p.is_empty() => queue.push_packet(p.to_vec()),
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    refusal = Some(protocol::frame_err(&protocol::dg_error_text("ERROR", "Incorrect value of parameter", &e.to_string(), &[])));
                    reading = false;
                }
                _ => reading = false,
            },
        }
    }
    if let Some(r) = refusal {
        let _ = send(&mut conn, protocol::encode(&r)).await;
        // The client may still be sending the refused packet.
        net::linger_close(conn.get_mut()).await;
    }
    state.stream_closed(&name, queue.frames);
}
