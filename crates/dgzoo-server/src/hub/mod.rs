//! `dgzoo hub`: a self-hosted cloud zoo server speaking the API of DeGirum's cloud zoo as
//! implemented by `dg-zoo-server` 0.3.0 (cloud-api.md §2), over its zoo root layout (see
//! [`store`]): zoo-check, model list (full / short), info, dictionary, readme, check, download
//! (streamed with Content-Length in constant memory, with `ETag`/`Range`/`If-Range` for resumed
//! downloads), system info, token and zoo listing, the administrative endpoints in [`admin`],
//! liveness/readiness probes, and cloud inference over socket.io ([`infer`]). Errors are JSON
//! `{"detail": ...}` with dg-zoo-server's statuses and texts. The web page at `/` and its two
//! routes are in [`web`].
//!
//! Transport: the crate's shared network stack ([`crate::net`]: one tokio runtime, the accept
//! loop that survives EMFILE, the connection cap, graceful shutdown, the health routes); axum
//! handles each request on hyper connections driven by [`listen`] (idle and header timeouts).
//! Store and admin work (file system, ZIP parsing) runs on the bounded blocking pool
//! (`net::blocking`) so a slow disk or a large archive never stalls the connections.
pub mod admin;
pub mod folder;
pub mod infer;
pub mod listen;
pub mod multipart;
#[cfg(feature = "s3")]
pub mod s3;
pub mod store;
pub mod web;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use dgzoo::error::{Error, Result};
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::{Store, Zoo};
use tokio::io::{AsyncRead, AsyncReadExt};

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

/// Largest body of a REST request other than a model upload (none of them needs one today;
/// dg-zoo-server's FastAPI has no limit, a hub on the internet wants one).
pub const MAX_REST_BODY: usize = 1 << 20;
/// A too-large REST body is read (and dropped) up to this size before the 413 is sent.
const DRAIN_LIMIT: u64 = 16 << 20;

/// How long an S3 listing is reused by default ([`HubConfig::listing_ttl`]).
pub const DEFAULT_LISTING_TTL: Duration = Duration::from_secs(2);

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The zoo root directory (when `s3` is `None`).
    pub root: PathBuf,
    /// Serve the zoo from S3-compatible object storage instead: `s3://BUCKET/PREFIX`, with the
    /// standard AWS settings from the environment (see [`s3`]).
    pub s3: Option<String>,
    /// How long an S3 listing (and the `tokens.json` version) is reused before the bucket is
    /// asked again: the longest a model published by another replica or a plain S3 PUT takes
    /// to appear.
    pub listing_ttl: Duration,
    pub host: String,
    /// 0 = any free port.
    pub port: u16,
    /// Unused since the hub runs on the servers' shared runtime (`net::WORKER_THREADS` workers,
    /// a bounded blocking pool); kept so configurations and `--threads` stay valid.
    pub threads: usize,
    /// Throttle each download to this many bytes per second (for testing slow links).
    pub rate_limit: Option<u64>,
    /// Log one line per request (a tracing event under `dgzoo_server::hub`, on stderr in the CLI).
    pub log: bool,
    /// When set, `Authorization: Bearer <token>` with this token may use the administrative
    /// routes, in addition to the admin tokens of `tokens.json` (the AI server's
    /// `--admin-token`, for operators who manage a fleet with one secret).
    pub admin_token: Option<String>,
    /// Connection limits and timeouts (idle keep-alive, request head).
    pub limits: listen::Limits,
}

impl HubConfig {
    pub fn new(root: &Path) -> Self {
        HubConfig {
            root: root.to_path_buf(),
            s3: None,
            listing_ttl: DEFAULT_LISTING_TTL,
            host: "127.0.0.1".into(),
            port: 8878,
            threads: 8,
            rate_limit: None,
            log: false,
            admin_token: None,
            limits: listen::Limits::default(),
        }
    }
}

struct State {
    store: Store,
    /// Serializes the administrative (mutating) requests.
    admin: std::sync::Mutex<()>,
    requests: AtomicU64,
    rate_limit: Option<u64>,
    log: bool,
    admin_token: Option<String>,
    /// socket.io cloud inference (`/api/v2/socket.io`).
    infer: infer::CloudInference,
    /// Readiness and the stop signal of this hub's listener and connections.
    shutdown: crate::net::Shutdown,
    /// The web page's "try it" client.
    web: web::Web,
}

/// A running hub. Dropping it stops accepting and asks every connection to finish (waiting
/// up to [`listen::DRAIN`] for requests in flight).
pub struct Hub {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: crate::net::Shutdown,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Hub {
    /// Bind and start serving (on the servers' shared runtime).
    pub fn start(cfg: &HubConfig) -> Result<Hub> {
        let store = match &cfg.s3 {
            // A missing bucket, wrong credentials or an endpoint that does not answer stop the
            // hub here with the reason.
            #[cfg(feature = "s3")]
            Some(url) => Store::with_storage(Box::new(s3::S3Zoo::open(url, cfg.listing_ttl).map_err(Error::io)?)),
            #[cfg(not(feature = "s3"))]
            Some(url) => return Err(Error::invalid(format!("Cannot serve {url}: this build has no S3 support (feature `s3`)"))),
            None => {
                std::fs::create_dir_all(&cfg.root).map_err(|e| Error::io(format!("Cannot create zoo root '{}': {e}", cfg.root.display())))?;
                Store::new(&cfg.root)
            }
        };
        // A token file that does not parse stops the hub here, before it listens: taking it as
        // "no tokens" would lock out the operator's tokens (or worse).
        store.load_tokens().map_err(Error::invalid)?;
        let rt = crate::net::runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)))
            .map_err(|e| Error::io(format!("Cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
        let addr = listener.local_addr().map_err(|e| Error::internal(format!("hub is not listening on an IP address: {e}")))?;
        let shutdown = crate::net::Shutdown::new();
        let state = Arc::new(State {
            store,
            admin: std::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
            rate_limit: cfg.rate_limit,
            log: cfg.log,
            admin_token: cfg.admin_token.clone().filter(|t| !t.is_empty()),
            infer: infer::CloudInference::new()?,
            shutdown: shutdown.clone(),
            web: web::Web::new(addr)?,
        });
        let app = axum::Router::new().fallback(dispatch).with_state(state.clone());
        let app = crate::net::health_routes(shutdown.clone()).merge(crate::metrics::route()).merge(app);
        let app = crate::metrics::track(app, route_pattern);
        let server = rt.spawn(listen::serve(listener, app, cfg.limits.clone(), shutdown.clone()));
        shutdown.set_ready(true);
        Ok(Hub { addr, state, shutdown, server: Some(server) })
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
        if let Some(server) = self.server.take() {
            let _ = crate::net::runtime().block_on(server);
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Drain only from outside the runtime (block_on inside it would panic).
        if tokio::runtime::Handle::try_current().is_err() {
            crate::net::runtime().block_on(self.shutdown.drain(listen::DRAIN));
        }
    }
}

pub(crate) type Resp = Response<Body>;

fn with_status(status: u16, mut r: Resp) -> Resp {
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

pub(crate) fn json_resp(status: u16, v: &Value) -> Resp {
    let mut r = with_status(status, Response::new(Body::from(v.to_string())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn error(status: u16, detail: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "detail": detail.into() }))
}

/// Run blocking work (file system, ZIP parsing, admin changes) on the shared bounded pool.
async fn blocking(f: impl FnOnce() -> Resp + Send + 'static) -> Resp {
    crate::net::blocking(f).await.unwrap_or_else(|e| error(500, e))
}

/// Every request: socket.io upgrades, GET routes, and the administrative methods.
async fn dispatch(axum::extract::State(state): axum::extract::State<Arc<State>>, req: Request<Body>) -> Resp {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let who = req.extensions().get::<SocketAddr>().map(|a| a.to_string()).unwrap_or_default();
    let try_it = (method == Method::POST).then(|| Url::of(&uri)).and_then(|u| match u.segs.as_slice() {
        [a, b, c, org, zoo, model] if a == "ui" && b == "api" && c == "predict" => Some((org.clone(), zoo.clone(), model.clone())),
        _ => None,
    });
    let resp = if uri.path().starts_with(dgzoo::socketio::PATH) && method == Method::GET {
        infer::accept(&state, req).await
    } else if let Some((org, zoo, model)) = try_it {
        web::predict(state.clone(), req, org, zoo, model).await
    } else if let Some(page) = (method == Method::GET).then(|| web::asset(uri.path())).flatten() {
        page
    } else if method == Method::GET {
        let headers = req.headers().clone();
        let st = state.clone();
        let (path, query) = (uri.path().to_string(), uri.query().unwrap_or_default().to_string());
        blocking(move || route(&st, &Url::parse(&path, &query), &headers)).await
    } else {
        route_admin(state.clone(), req).await
    };
    if state.log {
        tracing::info!(target: "dgzoo_server::hub", "{who} {method} {uri} {}", resp.status().as_u16());
    }
    resp
}

/// The `route` label of a hub request: its route pattern, never the raw path.
fn route_pattern(_method: &Method, path: &str) -> &'static str {
    if path.starts_with(dgzoo::socketio::PATH) {
        return "/api/v2/socket.io/";
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        [""] => "/",
        ["zoo", "version"] => "/zoo/version",
        ["devices", "api", "v1", "public", "system-info"] => "/devices/api/v1/public/system-info",
        ["api", "v1", "public", "zoos-check", _, _] => "/api/v1/public/zoos-check/{org}/{zoo}",
        ["zoo", "v1", "public", "tokens"] => "/zoo/v1/public/tokens",
        ["zoo", "v1", "public", "tokens", _, _] => "/zoo/v1/public/tokens/{org}/{zoo}",
        ["zoo", "v1", "public", "zoos", _] => "/zoo/v1/public/zoos/{org}",
        ["zoo", "v1", "public", "models", _, _] => "/zoo/v1/public/models/{org}/{zoo}",
        ["zoo", "v1", "public", "models", _, _, _] => "/zoo/v1/public/models/{org}/{zoo}/{model}",
        ["zoo", "v1", "public", "models", _, _, _, "info"] => "/zoo/v1/public/models/{org}/{zoo}/{model}/info",
        ["zoo", "v1", "public", "models", _, _, _, "dictionary"] => "/zoo/v1/public/models/{org}/{zoo}/{model}/dictionary",
        ["zoo", "v1", "public", "models", _, _, _, "readme"] => "/zoo/v1/public/models/{org}/{zoo}/{model}/readme",
        ["zoo", "v1", "public", "models", _, _, _, "check"] => "/zoo/v1/public/models/{org}/{zoo}/{model}/check",
        _ => "other",
    }
}

/// A request URL split into decoded path segments and query pairs.
struct Url {
    segs: Vec<String>,
    query: Vec<(String, String)>,
}

impl Url {
    fn parse(path: &str, query: &str) -> Url {
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
    fn of(uri: &Uri) -> Url {
        Url::parse(uri.path(), uri.query().unwrap_or_default())
    }
    fn q(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        self.q(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// POST / DELETE (and any other method): the administrative endpoints. A model upload's
/// multipart body is streamed to disk; any other body is read up to [`MAX_REST_BODY`] (413
/// beyond) and ignored, as no such route takes one.
async fn route_admin(state: Arc<State>, req: Request<Body>) -> Resp {
    let (parts, body) = req.into_parts();
    let url = Url::of(&parts.uri);
    let upload =
        parts.method == Method::POST && matches!(url.segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["zoo", "v1", "public", "models", _, _]);
    if upload {
        let stream = TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
        // Read on a blocking thread through a bridge: the multipart reader is synchronous. Not
        // on `net::blocking`'s permits: the thread waits on the client's network for as long
        // as the upload takes, which must not hold up frames and other requests.
        let mut reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let upload = tokio::task::spawn_blocking(move || admin_route(&state, &parts.method, &url, &parts.headers, &mut reader));
        return upload.await.unwrap_or_else(|_| error(500, "internal error"));
    }
    let too_large = || error(413, format!("request body exceeds the limit of {MAX_REST_BODY} bytes"));
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return too_large();
    }
    // Read the body (none of these routes uses it); past the limit keep reading up to
    // DRAIN_LIMIT so the client, still sending, gets the 413 instead of a reset.
    let mut body = body;
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => seen += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => return error(400, format!("cannot read the request body: {e}")),
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_REST_BODY as u64 {
        return too_large();
    }
    blocking(move || admin_route(&state, &parts.method, &url, &parts.headers, &mut std::io::empty())).await
}

/// dg-zoo-server's administrative endpoints, one at a time.
fn admin_route(state: &State, method: &Method, url: &Url, headers: &HeaderMap, body: &mut dyn Read) -> Resp {
    let s: Vec<&str> = url.segs.iter().map(String::as_str).collect();
    let token = match admin::Caller::of(header_value(headers, "token"), headers, state.admin_token.as_deref()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let st = &state.store;
    let post = *method == Method::POST;
    let delete = *method == Method::DELETE;
    let _serial = state.admin.lock().unwrap_or_else(|p| p.into_inner());
    match (s.as_slice(), post, delete) {
        (["zoo", "v1", "public", "tokens"], true, _) => admin::create_token(st, &token, url.flag("is_admin")),
        // FastAPI spells the header `token-to-delete`; accept the underscore form too.
        (["zoo", "v1", "public", "tokens"], _, true) => match header_value(headers, "token-to-delete").or_else(|| header_value(headers, "token_to_delete")) {
            Some(v) => admin::delete_token(st, &token, &v),
            None => error(422, "header 'token_to_delete' is required"),
        },
        (["zoo", "v1", "public", "tokens", org, zoo], _, _) => {
            match header_value(headers, "token-to-modify").or_else(|| header_value(headers, "token_to_modify")) {
                Some(v) => admin::zoo_access(st, &token, &v, &format!("{org}/{zoo}"), post),
                None => error(422, "header 'token_to_modify' is required"),
            }
        }
        (["zoo", "v1", "public", "models", org, zoo], true, _) => {
            let ct = header_value(headers, "Content-Type").unwrap_or_default();
            admin::upload_model(st, &token, org, zoo, &ct, body, url.flag("allow_overwrite"))
        }
        (["zoo", "v1", "public", "models", org, zoo, model], _, true) => admin::delete_model(st, &token, org, zoo, model),
        _ => error(405, "Method Not Allowed"),
    }
}

fn route(state: &State, url: &Url, headers: &HeaderMap) -> Resp {
    let q = |k: &str| url.q(k);
    let s: Vec<&str> = url.segs.iter().map(String::as_str).collect();
    let token = header_value(headers, "token");
    let st = &state.store;
    match s.as_slice() {
        ["ui", "api", "zoos"] => web::zoos(state, &token),
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
            match st.zoo(org, zoo) {
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
        ["zoo", "v1", "public", "models", org, zoo] => with_zoo(st, &token, org, zoo, |z| {
            let short = url.flag("short");
            let m: Map<String, Value> = st.models(z).into_iter().map(|(n, i)| (n, if short { json!({}) } else { i.params.clone() })).collect();
            json_resp(200, &Value::Object(m))
        }),
        ["zoo", "v1", "public", "models", org, zoo, model, what] => with_zoo(st, &token, org, zoo, |z| {
            let Some(info) = st.model(z, model) else { return model_not_found(model, org, zoo) };
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
        ["zoo", "v1", "public", "models", org, zoo, model] => with_zoo(st, &token, org, zoo, |z| {
            if st.model(z, model).is_none() {
                return model_not_found(model, org, zoo);
            }
            match st.open_archive(z, model) {
                Ok(Some(a)) => {
                    let r = download(a, model, headers, state.rate_limit);
                    if r.status().is_success() {
                        // A model the hub serves: the label is bounded by the zoo.
                        metrics::counter!(crate::metrics::HUB_DOWNLOADS, "model" => format!("{org}/{zoo}/{model}")).increment(1);
                    }
                    r
                }
                Ok(None) => model_not_found(model, org, zoo),
                Err(e) => error(503, format!("Model {model} cannot be read now: {e}")),
            }
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

fn with_zoo(st: &Store, token: &Option<String>, org: &str, zoo: &str, f: impl FnOnce(&Zoo) -> Resp) -> Resp {
    let url = format!("{org}/{zoo}");
    with_token(st, token, Some(&url), || match st.zoo(org, zoo) {
        Some(d) => f(&d),
        None => zoo_not_found(org, zoo),
    })
}

/// The `ETag` of an archive: `"<size hex>-<mtime ns hex>"`, strong. Every change of a model in
/// the hub replaces its archive (upload: a new file renamed in place), which changes the mtime,
/// so equal tags mean equal bytes; stable across hub restarts and cheap (no hashing).
pub fn archive_etag(len: u64, modified: Option<SystemTime>) -> String {
    let ns = modified.and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{ns:x}\"")
}

/// What a download request asks for, after `Range` and `If-Range`.
#[derive(Debug, PartialEq, Eq)]
enum Span {
    Full,
    /// First and last byte (inclusive).
    Part(u64, u64),
    Unsatisfiable,
}

/// RFC 9110 §14: one `bytes=` range is served as 206; a range starting past the end is 416;
/// an `If-Range` that does not match the current tag (or date), multiple ranges and
/// malformed ranges get the whole file (the RFC lets a server ignore them).
fn requested_span(headers: &HeaderMap, len: u64, etag: &str, modified: Option<SystemTime>) -> Span {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Span::Full };
    if let Some(cond) = headers.get(header::IF_RANGE) {
        let cond = cond.to_str().unwrap_or_default().trim();
        let fresh = if cond.starts_with('"') {
            cond == etag
        } else {
            // A date matches only the exact Last-Modified (whole seconds); weak tags never do.
            let date = httpdate::parse_http_date(cond).ok().map(httpdate::fmt_http_date);
            date.is_some() && date == modified.map(httpdate::fmt_http_date)
        };
        if !fresh {
            return Span::Full;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else { return Span::Full };
    let Some((first, last)) = spec.split_once('-').filter(|_| !spec.contains(',')) else { return Span::Full };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => Span::Unsatisfiable,
            Ok(_) if len == 0 => Span::Unsatisfiable,
            Ok(n) => Span::Part(len - n.min(len), len - 1),
            Err(_) => Span::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else { return Span::Full };
    let end = match last {
        "" => u64::MAX,
        l => match l.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return Span::Full,
        },
    };
    if start >= len {
        return Span::Unsatisfiable;
    }
    Span::Part(start, end.min(len - 1))
}

/// Stream a model archive: whole (200) or one range (206), Content-Length always set, in
/// 256 KiB chunks (memory per download stays constant whatever the archive's size). The
/// length, the tag and the bytes all come from one version of the archive
/// ([`store::Archive`]), whichever storage holds it.
fn download(archive: store::Archive, model: &str, headers: &HeaderMap, rate: Option<u64>) -> Resp {
    let (len, modified, etag) = (archive.version.len, archive.version.modified, archive.version.etag.clone());
    let span = requested_span(headers, len, &etag, modified);
    let (status, start, count) = match span {
        Span::Full => (200, 0, len),
        Span::Part(a, b) => (206, a, b - a + 1),
        Span::Unsatisfiable => {
            let mut r = error(416, format!("Range not satisfiable: the archive has {len} bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let reader = match archive.stream(start, count) {
        Ok(r) => r,
        Err(e) => return error(503, format!("Model {model} cannot be read now: {e}")),
    };
    // Bytes are counted as they go out (an interrupted download counts what it sent).
    let sent = |b: &Bytes| metrics::counter!(crate::metrics::HUB_DOWNLOAD_BYTES).increment(b.len() as u64);
    let body = match rate {
        Some(rate) if rate > 0 => Body::from_stream(TryStreamExt::inspect_ok(throttled(reader, rate), sent)),
        _ => Body::from_stream(TryStreamExt::inspect_ok(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024), sent)),
    };
    let mut r = with_status(status, Response::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut text = vec![(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{model}.zip\"")), (header::ETAG, etag)];
    if let Some(m) = modified {
        text.push((header::LAST_MODIFIED, httpdate::fmt_http_date(m)));
    }
    if status == 206 {
        text.push((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", start + count - 1)));
    }
    for (k, v) in text {
        // Model names are safe path segments: always valid header text.
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

/// The bytes of `r` at most `rate` bytes per second, in chunks of a tenth of a second.
fn throttled<R: AsyncRead + Unpin + Send + 'static>(r: R, rate: u64) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    let start = tokio::time::Instant::now();
    let chunk = (rate / 10).clamp(1, 256 * 1024) as usize;
    futures_util::stream::unfold((r, 0u64, false), move |(mut r, sent, failed)| async move {
        if failed {
            return None;
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
        let mut buf = vec![0u8; chunk];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (r, sent + n as u64, false)))
            }
            Err(e) => Some((Err(e), (r, sent, true))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(range: &str, if_range: Option<&str>) -> Span {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(c) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(c).unwrap());
        }
        let m = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        requested_span(&h, 100, &archive_etag(100, Some(m)), Some(m))
    }

    #[test]
    fn ranges() {
        assert_eq!(span("bytes=0-9", None), Span::Part(0, 9));
        assert_eq!(span("bytes=90-", None), Span::Part(90, 99));
        assert_eq!(span("bytes=90-500", None), Span::Part(90, 99));
        assert_eq!(span("bytes=-10", None), Span::Part(90, 99));
        assert_eq!(span("bytes=-500", None), Span::Part(0, 99));
        assert_eq!(span("bytes=100-", None), Span::Unsatisfiable);
        assert_eq!(span("bytes=-0", None), Span::Unsatisfiable);
        assert_eq!(span("bytes=9-1", None), Span::Full);
        assert_eq!(span("bytes=0-1,5-6", None), Span::Full);
        assert_eq!(span("items=0-1", None), Span::Full);
        let m = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(span("bytes=10-", Some(&archive_etag(100, Some(m)))), Span::Part(10, 99));
        assert_eq!(span("bytes=10-", Some("\"other\"")), Span::Full);
        assert_eq!(span("bytes=10-", Some(&httpdate::fmt_http_date(m))), Span::Part(10, 99));
        assert_eq!(span("bytes=10-", Some(&httpdate::fmt_http_date(m + Duration::from_secs(1)))), Span::Full);
        assert_eq!(span("bytes=10-", Some("W/\"x\"")), Span::Full);
    }
}
