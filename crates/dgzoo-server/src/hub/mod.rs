//! `dgzoo hub`: a self-hosted cloud zoo server speaking the API of DeGirum's cloud zoo as
//! implemented by `dg-zoo-server` 0.3.0 (cloud-api.md §2), over its zoo root layout (see
//! [`store`]): zoo-check, model list (full / short), info, dictionary, readme, check, download
//! (streamed with Content-Length, constant memory), system info, token and zoo listing, and
//! the administrative endpoints in [`admin`], and cloud inference over socket.io ([`infer`]). Errors are JSON `{"detail": ...}` with
//! dg-zoo-server's statuses and texts.
pub mod admin;
pub mod infer;
pub mod multipart;
pub mod store;

use dgzoo::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;

/// Device types the hub reports in system info: DeGirum's known runtime/device pairs, so
/// clients' device filters keep every model, as dg-zoo-server does.
pub const DEVICE_TYPES: &[&str] = &[
    "DUMMY/DUMMY",
    "N2X/CPU",
    "N2X/ORCA",
    "N2X/ORCA1",
    "HAILORT/HAILO8",
    "HAILORT/HAILO8L",
    "ONNX/CPU",
    "ONNX/VITIS_NPU",
    "OPENVINO/CPU",
    "OPENVINO/GPU",
    "OPENVINO/NPU",
    "RKNN/RK3566",
    "RKNN/RK3568",
    "RKNN/RK3588",
    "TENSORRT/DLA",
    "TENSORRT/GPU",
    "TFLITE/AM68PA",
    "TFLITE/ARMNN",
    "TFLITE/CPU",
    "TFLITE/EDGETPU",
    "TFLITE/NXP_ETHOSU",
    "TFLITE/NXP_VX",
    "MEMRYX/MX3",
];

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub root: PathBuf,
    pub host: String,
    /// 0 = any free port.
    pub port: u16,
    pub threads: usize,
    /// Throttle each download to this many bytes per second (for testing slow links).
    pub rate_limit: Option<u64>,
    /// Print one line per request on stderr.
    pub log: bool,
}

impl HubConfig {
    pub fn new(root: &Path) -> Self {
        HubConfig { root: root.to_path_buf(), host: "127.0.0.1".into(), port: 8878, threads: 8, rate_limit: None, log: false }
    }
}

struct State {
    store: Store,
    /// Serializes the administrative (mutating) requests.
    admin: std::sync::Mutex<()>,
    requests: AtomicU64,
    rate_limit: Option<u64>,
    log: bool,
    /// Archives being sent from their own threads.
    streams: std::sync::atomic::AtomicUsize,
    /// socket.io cloud inference (`/api/v2/socket.io`).
    infer: infer::CloudInference,
}

/// A running hub. Dropping it stops accepting requests; connections kept alive by clients are
/// not closed (tiny_http offers no way to), so run it in its own process for a hard stop.
pub struct Hub {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    state: Arc<State>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Bind and start serving on a pool of `threads` threads.
    pub fn start(cfg: &HubConfig) -> Result<Hub> {
        std::fs::create_dir_all(&cfg.root).map_err(|e| Error::io(format!("Cannot create zoo root '{}': {e}", cfg.root.display())))?;
        // A token file that does not parse stops the hub here, before it listens: taking it as
        // "no tokens" would lock out the operator's tokens (or worse).
        let store = Store::new(&cfg.root);
        store.load_tokens().map_err(Error::invalid)?;
        let server =
            tiny_http::Server::http((cfg.host.as_str(), cfg.port)).map_err(|e| Error::io(format!("Cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
        let addr = server.server_addr().to_ip().ok_or_else(|| Error::internal("hub is not listening on an IP address"))?;
        let server = Arc::new(server);
        let state = Arc::new(State {
            store,
            admin: std::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
            rate_limit: cfg.rate_limit,
            log: cfg.log,
            streams: Default::default(),
            infer: infer::CloudInference::new()?,
        });
        let workers = (0..cfg.threads.max(1))
            .map(|_| {
                let (server, state) = (server.clone(), state.clone());
                std::thread::spawn(move || {
                    while let Ok(req) = server.recv() {
                        state.requests.fetch_add(1, Ordering::SeqCst);
                        handle(&state, req);
                    }
                })
            })
            .collect();
        Ok(Hub { server, addr, state, workers })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far.
    pub fn request_count(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Run cloud inference on these AI servers (least-busy first) instead of the local
    /// runtimes; an empty list goes back to local runtimes.
    pub fn set_aiserver_pool(&self, servers: Vec<dgzoo::zoo::address::ServerAddress>) {
        self.state.infer.set_pool(servers);
    }

    /// Open streams per pool member (`host:port`).
    pub fn aiserver_pool_load(&self) -> Vec<(String, usize)> {
        self.state.infer.pool_load()
    }

    /// Cap simultaneous cloud-inference connections (default `infer::MAX_CONNECTIONS`);
    /// more are refused with 503.
    pub fn set_max_inference_connections(&self, n: usize) {
        self.state.infer.max_connections.store(n, Ordering::SeqCst);
    }

    /// Open cloud-inference (socket.io) connections.
    pub fn inference_connections(&self) -> usize {
        self.state.infer.connections.load(Ordering::SeqCst)
    }

    /// Serve until the process ends.
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

type Resp = tiny_http::Response<Box<dyn Read + Send>>;

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Names and values here are ASCII constants or sanitized: cannot fail.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("static header"))
}

pub(crate) fn json_resp(status: u16, v: &Value) -> Resp {
    let body = v.to_string().into_bytes();
    let len = body.len();
    tiny_http::Response::new(
        status.into(),
        vec![header("Content-Type", "application/json")],
        Box::new(std::io::Cursor::new(body)) as Box<dyn Read + Send>,
        Some(len),
        None,
    )
}

pub(crate) fn error(status: u16, detail: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "detail": detail.into() }))
}

/// Reads at most `rate` bytes per second.
struct Throttle<R> {
    inner: R,
    rate: u64,
    start: Instant,
    sent: u64,
}

impl<R: Read> Read for Throttle<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
        let cap = buf.len().min((self.rate / 10).max(1) as usize);
        let n = self.inner.read(&mut buf[..cap])?;
        self.sent += n as u64;
        Ok(n)
    }
}

/// Archives sent at once on their own threads; beyond that they are sent by the pool thread.
const MAX_STREAMS: usize = 64;

fn handle(state: &Arc<State>, mut req: tiny_http::Request) {
    if req.url().starts_with(dgzoo::socketio::PATH) && *req.method() == tiny_http::Method::Get {
        return infer::accept(state, req);
    }
    let resp = if *req.method() == tiny_http::Method::Get { route(state, &req) } else { route_admin(state, &mut req) };
    if state.log {
        let who = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        eprintln!("{who} {} {} {}", req.method(), req.url(), resp.status_code().0);
    }
    let resp = resp.with_chunked_threshold(usize::MAX);
    // A slow client downloading a large archive must not hold a pool thread that quick JSON
    // requests need: stream it from its own thread, up to MAX_STREAMS at a time.
    let is_stream = resp.headers().iter().any(|h| h.field.equiv("Content-Type") && h.value.as_str() == "application/octet-stream");
    if is_stream && state.streams.fetch_add(1, Ordering::SeqCst) < MAX_STREAMS {
        let st = state.clone();
        std::thread::spawn(move || {
            let _ = req.respond(resp);
            st.streams.fetch_sub(1, Ordering::SeqCst);
        });
        return;
    }
    if is_stream {
        state.streams.fetch_sub(1, Ordering::SeqCst);
    }
    let _ = req.respond(resp);
}

/// A request URL split into decoded path segments and query pairs.
struct Url {
    segs: Vec<String>,
    query: Vec<(String, String)>,
}

impl Url {
    fn parse(url: &str) -> Url {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let query = query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (dgzoo::protocol::http::percent_decode(&k.replace('+', " ")), dgzoo::protocol::http::percent_decode(&v.replace('+', " ")))
            })
            .collect();
        Url { segs: path.trim_start_matches('/').split('/').map(dgzoo::protocol::http::percent_decode).collect(), query }
    }
    fn q(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        self.q(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
    }
}

fn header_value(req: &tiny_http::Request, name: &str) -> Option<String> {
    req.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str().to_string())
}

/// POST / DELETE: dg-zoo-server's administrative endpoints, one at a time.
fn route_admin(state: &State, req: &mut tiny_http::Request) -> Resp {
    let url = Url::parse(req.url());
    let s: Vec<&str> = url.segs.iter().map(String::as_str).collect();
    let token = header_value(req, "token");
    let st = &state.store;
    let post = *req.method() == tiny_http::Method::Post;
    let delete = *req.method() == tiny_http::Method::Delete;
    let _serial = state.admin.lock().unwrap_or_else(|p| p.into_inner());
    match (s.as_slice(), post, delete) {
        (["zoo", "v1", "public", "tokens"], true, _) => admin::create_token(st, &token, url.flag("is_admin")),
        // FastAPI spells the header `token-to-delete`; accept the underscore form too.
        (["zoo", "v1", "public", "tokens"], _, true) => match header_value(req, "token-to-delete").or_else(|| header_value(req, "token_to_delete")) {
            Some(v) => admin::delete_token(st, &token, &v),
            None => error(422, "header 'token_to_delete' is required"),
        },
        (["zoo", "v1", "public", "tokens", org, zoo], _, _) => match header_value(req, "token-to-modify").or_else(|| header_value(req, "token_to_modify")) {
            Some(v) => admin::zoo_access(st, &token, &v, &format!("{org}/{zoo}"), post),
            None => error(422, "header 'token_to_modify' is required"),
        },
        (["zoo", "v1", "public", "models", org, zoo], true, _) => {
            let ct = header_value(req, "Content-Type").unwrap_or_default();
            let (org, zoo) = (org.to_string(), zoo.to_string());
            admin::upload_model(st, &token, &org, &zoo, &ct, req.as_reader(), url.flag("allow_overwrite"))
        }
        (["zoo", "v1", "public", "models", org, zoo, model], _, true) => admin::delete_model(st, &token, org, zoo, model),
        _ => error(405, "Method Not Allowed"),
    }
}

fn route(state: &State, req: &tiny_http::Request) -> Resp {
    let url = Url::parse(req.url());
    let q = |k: &str| url.q(k);
    let s: Vec<&str> = url.segs.iter().map(String::as_str).collect();
    let token = header_value(req, "token");
    let st = &state.store;
    match s.as_slice() {
        [""] => {
            let body = b"<!DOCTYPE html><html><body><h2>dgzoo hub</h2></body></html>".to_vec();
            let len = body.len();
            tiny_http::Response::new(200.into(), vec![header("Content-Type", "text/html")], Box::new(std::io::Cursor::new(body)), Some(len), None)
        }
        ["zoo", "version"] => json_resp(200, &json!({"version": "v1"})),
        ["devices", "api", "v1", "public", "system-info"] => {
            let devs: Map<String, Value> = DEVICE_TYPES.iter().map(|d| (d.to_string(), json!([{"@Index": 0}]))).collect();
            json_resp(200, &json!({ "Devices": devs }))
        }
        // A token without access to the zoo learns nothing about it: the same answer as for a
        // zoo that does not exist.
        ["api", "v1", "public", "zoos-check", org, zoo] => with_token(st, &token, None, || {
            let url = format!("{org}/{zoo}");
            let allowed = st.tokens().get(token.as_deref().unwrap_or_default()).is_some_and(|r| r.is_admin || r.zoos.contains(&url));
            match st.zoo_dir(org, zoo) {
                Some(_) if allowed => json_resp(200, &json!({})),
                _ => zoo_not_found(org, zoo),
            }
        }),
        ["zoo", "v1", "public", "tokens"] => with_token(st, &token, None, || {
            let t = token.clone().unwrap_or_default();
            let r = st.tokens().get(&t).cloned();
            let r = r.map(|r| json!({"token": t, "value": {"is_admin": r.is_admin, "zoos": r.zoos}})).unwrap_or(Value::Null);
            json_resp(200, &r)
        }),
        ["zoo", "v1", "public", "zoos", org] => with_token(st, &token, None, || {
            let rights = st.tokens().get(token.as_deref().unwrap_or_default()).cloned();
            let list: Vec<Value> = st
                .zoos(org)
                .into_iter()
                .map(|z| format!("{org}/{z}"))
                .filter(|url| rights.as_ref().is_some_and(|r| r.is_admin || r.zoos.contains(url)))
                .map(|url| json!({"name": url.rsplit('/').next(), "url": url, "public": false, "own": false}))
                .collect();
            json_resp(200, &Value::Array(list))
        }),
        ["zoo", "v1", "public", "models", org, zoo] => with_zoo(st, &token, org, zoo, |dir| {
            let short = url.flag("short");
            let m: Map<String, Value> = st.models(dir).into_iter().map(|(n, i)| (n, if short { json!({}) } else { i.params.clone() })).collect();
            json_resp(200, &Value::Object(m))
        }),
        ["zoo", "v1", "public", "models", org, zoo, model, what] => with_zoo(st, &token, org, zoo, |dir| {
            let Some(info) = st.model(dir, model) else { return model_not_found(model, org, zoo) };
            match *what {
                "info" => json_resp(
                    200,
                    // `model_labels` is what PySDK reads; `model_dictionary` what dg-zoo-server sends.
                    &json!({"model_params": info.params, "model_labels": info.labels, "model_dictionary": info.labels, "readme": info.readme, "crc": info.checksum}),
                ),
                "dictionary" => json_resp(200, &info.labels),
                "readme" => json_resp(200, &Value::String(info.readme.clone())),
                "check" => match q("checksum") {
                    Some(c) => json_resp(200, &json!({"status": info.checksum == c})),
                    None => json_resp(422, &json!({"detail": [{"type": "missing", "loc": ["query", "checksum"], "msg": "Field required"}]})),
                },
                _ => error(404, "Not Found"),
            }
        }),
        ["zoo", "v1", "public", "models", org, zoo, model] => with_zoo(st, &token, org, zoo, |dir| {
            if st.model(dir, model).is_none() {
                return model_not_found(model, org, zoo);
            }
            let path = dir.join(format!("{model}.zip"));
            // Open once: the length and the bytes come from the same file even if it is replaced.
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return model_not_found(model, org, zoo),
            };
            let len = match f.metadata() {
                Ok(m) => m.len() as usize,
                Err(e) => return error(500, e.to_string()),
            };
            let reader: Box<dyn Read + Send> = match state.rate_limit {
                Some(rate) if rate > 0 => Box::new(Throttle { inner: f, rate, start: Instant::now(), sent: 0 }),
                _ => Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
            };
            let disp = format!("attachment; filename=\"{model}.zip\"");
            tiny_http::Response::new(
                200.into(),
                vec![header("Content-Type", "application/octet-stream"), header("Content-Disposition", &disp)],
                reader,
                Some(len),
                None,
            )
        }),
        _ => error(404, "Not Found"),
    }
}

fn zoo_not_found(org: &str, zoo: &str) -> Resp {
    error(400, format!("Zoo {org}/{zoo} is not found"))
}

fn model_not_found(model: &str, org: &str, zoo: &str) -> Resp {
    error(400, format!("Model {model} is not found in model zoo {org}/{zoo}"))
}

/// Run `f` if the token is valid (and, with `zoo`, grants access to it); else 401.
fn with_token(st: &Store, token: &Option<String>, zoo: Option<&str>, f: impl FnOnce() -> Resp) -> Resp {
    let tokens = st.tokens();
    let Some(rights) = token.as_deref().and_then(|t| tokens.get(t)) else { return error(401, "Token is not valid") };
    if let Some(z) = zoo {
        if !rights.is_admin && !rights.zoos.iter().any(|x| x == z) {
            return error(401, format!("Token does not have access rights to zoo {z}"));
        }
    }
    f()
}

fn with_zoo(st: &Store, token: &Option<String>, org: &str, zoo: &str, f: impl FnOnce(&Path) -> Resp) -> Resp {
    let url = format!("{org}/{zoo}");
    with_token(st, token, Some(&url), || match st.zoo_dir(org, zoo) {
        Some(d) => f(&d),
        None => zoo_not_found(org, zoo),
    })
}
