//! Network plumbing shared by the crate's servers (the AI server and the hub), on one async
//! stack: tokio for sockets and timers, hyper + axum for HTTP.
//!
//! - [`runtime`]: the one tokio runtime every listener and connection of this crate runs on
//!   ([`WORKER_THREADS`] workers, at most [`MAX_BLOCKING_THREADS`] blocking threads), created on
//!   first use and kept for the life of the process.
//! - [`blocking`]: CPU-bound or blocking work (inference, zoo scans, model loads) on the
//!   runtime's blocking pool, at most [`blocking_permits`] jobs at once for the whole process,
//!   admitted fairly among streams ([`blocking_for`], [`crate::fair_pool`]).
//! - [`Shutdown`]: the graceful-shutdown signal of one server: readiness (for
//!   `/v2/health/ready`), cancellation (listeners stop, connections finish their current
//!   request) and a tracker of connection tasks to drain.
//! - [`Limiter`]: a cap on simultaneous connections; a [`Permit`] is held per connection.
//! - [`accept_loop`]: accepts until shutdown, surviving transient errors (out of descriptors,
//!   aborted handshakes: logged, backed off, accepting again), refusing over-cap clients through
//!   a caller-given reply.
//! - [`serve_http`]: an axum `Router` served over HTTP/1.1 on a listener (keep-alive idle and
//!   header timeouts, bounded request head, upgrades for WebSockets, graceful shutdown, 503
//!   reply over the cap).
//! - [`health_routes`]: `/v2/health/live` and `/v2/health/ready`.
//!
//! Log lines: tracing events under `dgzoo_server::net`.
use crate::fair_pool::{ClientId, FairPool};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Worker threads of the runtime: sockets and protocol state only; heavy work goes to
/// [`blocking`].
pub const WORKER_THREADS: usize = 2;
/// Most threads of the runtime's blocking pool (inference, model loads, file work).
pub const MAX_BLOCKING_THREADS: usize = 16;

/// The crate's tokio runtime (created on first use).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name("dgzoo-net")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// How many [`blocking`] jobs run at once in the whole process: the machine's cores, 2 to 8.
pub fn blocking_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

fn blocking_pool() -> &'static FairPool {
    static POOL: OnceLock<FairPool> = OnceLock::new();
    POOL.get_or_init(|| FairPool::new(blocking_permits()))
}

/// Run `f` on the shared bounded blocking pool and await its result, as a one-off job (its
/// own client: it goes before the queues of busy streams). A panic in `f` comes back as `Err`.
pub async fn blocking<F, R>(f: F) -> Result<R, String>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    blocking_for(ClientId::fresh(), f).await
}

/// Run `f` on the shared bounded blocking pool for client `client` (a stream or connection).
/// Jobs past [`blocking_permits`] wait their turn, shared fairly among clients
/// ([`crate::fair_pool`]), so a client that keeps its queue full cannot delay one that sends a
/// frame at a time behind its whole queue.
pub async fn blocking_for<F, R>(client: ClientId, f: F) -> Result<R, String>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let _slot = blocking_pool().acquire(client).await;
    // Log lines of the job carry the caller's request or stream span.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f)).await.map_err(|e| {
        if e.is_panic() {
            "internal error (panic) in a worker".to_string()
        } else {
            e.to_string()
        }
    })
}

/// How long, and how many bytes, a refused client's remaining input is read and dropped.
pub const LINGER: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 64 << 20;

/// After refusing a frame from its header (a 1 MiB WebSocket ping, an oversized message or
/// packet), the client may still be sending that frame's payload. Closing with its bytes
/// unread would reset the connection, and a reset makes the client's kernel drop the error
/// reply it has not read yet. So: end our side (FIN after the reply and the close frame), then read and drop what
/// the client still sends until it closes too, for at most `LINGER` and `LINGER_BYTES`.
pub async fn linger_close<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: &mut S) {
    use tokio::io::AsyncReadExt;
    let _ = io.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 64 << 10];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// The graceful-shutdown signal of one server (cheap to clone).
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    ready: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `/v2/health/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.token.is_cancelled()
    }

    /// Mark the server ready (its data is loaded and its listeners accept) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Stop: readiness turns false first, then listeners stop accepting and connections are
    /// asked to finish (HTTP: after the request in flight; streams: after the queued frames).
    pub fn cancel(&self) {
        self.set_ready(false);
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once [`Shutdown::cancel`] was called.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Spawn a task on [`runtime`] that [`Shutdown::drain`] waits for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn_on(fut, runtime().handle())
    }

    /// Wait (at most `limit`) until every task spawned through [`Shutdown::spawn`] has ended;
    /// false if some were still running at the limit.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait()).await.is_ok()
    }
}

/// A cap on simultaneous connections (cheap to clone; clones share the count).
#[derive(Clone)]
pub struct Limiter {
    max: usize,
    active: Arc<AtomicUsize>,
}

/// One counted connection; released on drop.
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limiter {
    pub fn new(max: usize) -> Self {
        Limiter { max: max.max(1), active: Arc::default() }
    }

    /// A permit, or `None` when `max` connections are open.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.active.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max).then_some(n + 1)).ok().map(|_| Permit(self.active.clone()))
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// Longest pause after a failed `accept` (out of descriptors); the pause doubles from 10 ms.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accept connections on `listener` until `shutdown` is cancelled. Each accepted connection
/// within the cap runs `serve(stream, peer, permit)` as a task tracked by `shutdown`; one over
/// the cap gets `refuse(stream)` (an error reply, bounded in time) instead. Accept errors are
/// logged and retried with back-off, never fatal. `name` labels log lines.
pub async fn accept_loop<S, SF, R, RF>(name: &'static str, listener: TcpListener, limiter: Limiter, shutdown: Shutdown, serve: S, refuse: R)
where
    S: Fn(TcpStream, SocketAddr, Permit) -> SF,
    SF: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> RF,
    RF: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(c) => {
                backoff = Duration::from_millis(10);
                c
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: wait for descriptors to come back; ECONNABORTED and
                // the like concern one client only.
                let transient_client = matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset);
                tracing::warn!(target: "dgzoo_server::net", "{name}: accept failed: {e}");
                if !transient_client {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match limiter.try_acquire() {
            Some(permit) => {
                shutdown.spawn(serve(stream, peer, permit));
            }
            None => {
                tracing::info!(target: "dgzoo_server::net", "{name}: connection from {peer} refused: too many connections");
                let refusal = refuse(stream);
                shutdown.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), refusal).await;
                });
            }
        }
    }
    tracing::info!(target: "dgzoo_server::net", "{name}: listener stopped");
}

/// Settings of [`serve_http`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Keep-alive idle time and the time a client has to send a request head.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) in bytes: past it the reply is 431.
    pub max_head_bytes: usize,
    /// Body of the 503 reply to a client over the connection cap.
    pub busy_body: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { idle_timeout: Duration::from_secs(120), max_head_bytes: 16 << 10, busy_body: r#"{"success":false,"msg":"too many connections"}"#.into() }
    }
}

/// The peer address of an HTTP request (a request extension set by [`serve_http`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The connection's [`Permit`] (a request extension set by [`serve_http`]): a handler that
/// takes the connection over (a WebSocket upgrade) keeps a clone for as long as it serves it,
/// so the connection stays counted after hyper lets go of it.
#[derive(Clone)]
pub struct ConnPermit(pub Arc<Permit>);

/// Serve `router` over HTTP/1.1 on `listener` until `shutdown` is cancelled (header names go out
/// in title case, as clients that compare them case-sensitively expect; a client that half-closes
/// after its request still gets the reply): every request gets
/// the [`Peer`] extension; upgrades (WebSockets) are allowed and then live on their own (their
/// handlers watch `shutdown` themselves).
pub async fn serve_http(name: &'static str, listener: TcpListener, router: Router, limiter: Limiter, shutdown: Shutdown, opts: HttpOptions) {
    let opts = Arc::new(opts);
    let busy = opts.clone();
    let sd = shutdown.clone();
    let serve = move |stream: TcpStream, peer: SocketAddr, permit: Permit| {
        let (router, opts, shutdown) = (router.clone(), opts.clone(), sd.clone());
        async move {
            let _conn = crate::metrics::Connection::open(crate::metrics::ConnKind::Http);
            let permit = ConnPermit(Arc::new(permit));
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                req.extensions_mut().insert(permit.clone());
                tower::ServiceExt::oneshot(router.clone(), req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .title_case_headers(true)
                .half_close(true)
                .header_read_timeout(opts.idle_timeout)
                .max_buf_size(opts.max_head_bytes.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(target: "dgzoo_server::net", "{name}: connection from {peer}: {e}");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    };
    let refuse = move |mut stream: TcpStream| {
        let body = busy.busy_body.clone();
        async move {
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    };
    accept_loop(name, listener, limiter, shutdown, serve, refuse).await
}

/// `GET /v2/health/live` (200 while the process serves) and `GET /v2/health/ready` (200 once
/// the server marked itself ready, 503 before and from the start of a shutdown).
pub fn health_routes(shutdown: Shutdown) -> Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    Router::new().route("/v2/health/live", get(|| async { (StatusCode::OK, axum::Json(serde_json::json!({"live": true}))) })).route(
        "/v2/health/ready",
        get(move || {
            let ready = shutdown.is_ready();
            async move {
                let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, axum::Json(serde_json::json!({"ready": ready})))
            }
        }),
    )
}
