//! `GET /metrics` (Prometheus text exposition format) for the AI server and the hub, and the
//! metric names and helpers every part of the crate records through.
//!
//! Why `metrics` + `metrics-exporter-prometheus` (and not `prometheus-client`): the core
//! (`dgzoo`, inside libdgzoo) records its cache metrics through the `metrics` facade, a small
//! crate with no exporter and no runtime whose macros are a no-op call when no recorder is
//! installed. One global recorder then collects the core's and the servers' metrics without a
//! registry handle threaded through the core's API. The exporter is built without its HTTP
//! listener: [`route`] renders it on each server's own port, through the one network stack.
//!
//! Label values are bounded: `model` is a model of the zoo (or a cached cloud model) that was
//! opened, `route` a route pattern of the server (never the raw URL), `status` a status code
//! the handlers produce, `kind` one of [`ConnKind`], `outcome` `ok` or `error`.
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;
use tracing::Instrument;

/// Requests by `route` and `status` (counter).
pub const HTTP_REQUESTS: &str = "dgzoo_http_requests_total";
/// Request handling time by `route` (histogram; a WebSocket upgrade counts until the 101).
pub const HTTP_REQUEST_SECONDS: &str = "dgzoo_http_request_duration_seconds";
/// Frames by `model` and `outcome` (counter).
pub const FRAMES: &str = "dgzoo_frames_total";
/// Frames accepted and not yet answered (gauge).
pub const FRAMES_IN_FLIGHT: &str = "dgzoo_frames_in_flight";
/// Per-`model` stage times of a frame (histograms), from the same clock readings as the
/// `Timing` block that `MeasureTime` returns.
pub const PREPROCESS_SECONDS: &str = "dgzoo_preprocess_duration_seconds";
pub const INFERENCE_SECONDS: &str = "dgzoo_inference_duration_seconds";
pub const POSTPROCESS_SECONDS: &str = "dgzoo_postprocess_duration_seconds";
/// Loaded model engines and the size of their model files (gauges).
pub const MODELS_LOADED: &str = "dgzoo_models_loaded";
pub const MODELS_LOADED_BYTES: &str = "dgzoo_models_loaded_bytes";
/// Model engine loads and unloads by `model` (model file name; counters).
pub const MODEL_LOADS: &str = "dgzoo_model_loads_total";
pub const MODEL_UNLOADS: &str = "dgzoo_model_unloads_total";
/// Connections accepted by `kind` (counter) and open now (gauge).
pub const CONNECTIONS: &str = "dgzoo_connections_total";
pub const CONNECTIONS_OPEN: &str = "dgzoo_connections_open";
/// Hub model archive downloads by `model` (`org/zoo/model`) and the archive bytes sent.
pub const HUB_DOWNLOADS: &str = "dgzoo_hub_downloads_total";
pub const HUB_DOWNLOAD_BYTES: &str = "dgzoo_hub_download_bytes_total";

/// Histogram buckets of every `_seconds` metric: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Install the process's Prometheus recorder (once; later calls return the same handle).
/// `None` when the embedder installed another recorder first: `/metrics` then says so.
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS).ok()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route pattern and status");
    describe_histogram!(HTTP_REQUEST_SECONDS, Unit::Seconds, "HTTP request handling time by route pattern");
    describe_counter!(FRAMES, "inference frames by model and outcome (ok, error)");
    describe_gauge!(FRAMES_IN_FLIGHT, "frames accepted and not yet answered");
    describe_histogram!(PREPROCESS_SECONDS, Unit::Seconds, "frame pre-processing time (decode, resize, tensor) by model");
    describe_histogram!(INFERENCE_SECONDS, Unit::Seconds, "frame inference time by model");
    describe_histogram!(POSTPROCESS_SECONDS, Unit::Seconds, "frame post-processing time by model");
    describe_gauge!(MODELS_LOADED, "model engines loaded");
    describe_gauge!(MODELS_LOADED_BYTES, Unit::Bytes, "model file bytes of the loaded engines");
    describe_counter!(MODEL_LOADS, "model engine loads by model file");
    describe_counter!(MODEL_UNLOADS, "model engine unloads (LRU, shape copies) by model file");
    describe_counter!(CONNECTIONS, "connections accepted by kind (asio, http, websocket, socketio)");
    describe_gauge!(CONNECTIONS_OPEN, "connections open by kind");
    describe_counter!(HUB_DOWNLOADS, "hub model archive downloads (full or ranged) by model");
    describe_counter!(HUB_DOWNLOAD_BYTES, Unit::Bytes, "hub model archive bytes sent");
    describe_counter!(dgzoo::cache::metric::HITS, "model cache: loads served from a current cached copy");
    describe_counter!(dgzoo::cache::metric::MISSES, "model cache: loads that downloaded the model");
    describe_counter!(dgzoo::cache::metric::EVICTIONS, "model cache: models evicted by the size limit");
    describe_counter!(dgzoo::cache::metric::DOWNLOADED_BYTES, Unit::Bytes, "model cache: archive bytes downloaded");
}

/// `GET /metrics`: the Prometheus text of this process's recorder.
pub fn route() -> Router {
    let handle = install();
    Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            match handle {
                Some(h) => {
                    // No upkeep task runs (the exporter has no runtime of its own): do it here.
                    h.run_upkeep();
                    let mut r = h.render().into_response();
                    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                    r
                }
                None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not available: another metrics recorder is installed in this process\n").into_response(),
            }
        }),
    )
}

/// A new id for a request or a stream span (unique in the process).
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Count requests by route and status, time them, and run each in a `request` span with a
/// `request_id`. `classify` names the route of a request no axum route matched (the servers
/// dispatch most paths from a fallback): a fixed pattern, never the raw path.
pub fn track(router: Router, classify: fn(&Method, &str) -> &'static str) -> Router {
    router.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| async move {
        let route: String = match req.extensions().get::<axum::extract::MatchedPath>() {
            Some(m) => m.as_str().to_string(),
            None => classify(req.method(), req.uri().path()).to_string(),
        };
        let span = tracing::info_span!("request", request_id = next_id(), route = %route);
        let start = Instant::now();
        let resp = next.run(req).instrument(span).await;
        metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => resp.status().as_u16().to_string()).increment(1);
        metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route).record(start.elapsed().as_secs_f64());
        resp
    }))
}

/// Kinds of connections (the `kind` label).
#[derive(Debug, Clone, Copy)]
pub enum ConnKind {
    Asio,
    Http,
    WebSocket,
    SocketIo,
}

impl ConnKind {
    pub fn label(self) -> &'static str {
        match self {
            ConnKind::Asio => "asio",
            ConnKind::Http => "http",
            ConnKind::WebSocket => "websocket",
            ConnKind::SocketIo => "socketio",
        }
    }
}

/// One open connection: counted when made, the open gauge goes down on drop.
pub struct Connection(ConnKind);

impl Connection {
    pub fn open(kind: ConnKind) -> Self {
        metrics::counter!(CONNECTIONS, "kind" => kind.label()).increment(1);
        metrics::gauge!(CONNECTIONS_OPEN, "kind" => kind.label()).increment(1.0);
        Connection(kind)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN, "kind" => self.0.label()).decrement(1.0);
    }
}

/// One frame accepted and not yet answered (the in-flight gauge, down on drop).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        metrics::gauge!(FRAMES_IN_FLIGHT).increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(FRAMES_IN_FLIGHT).decrement(1.0);
    }
}
