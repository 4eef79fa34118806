//! The hub's connections: accepted by `net::accept_loop` (EMFILE back-off, the connection cap
//! of a `net::Limiter`, over-cap clients answered 503, tasks tracked by the hub's
//! `net::Shutdown`), then served here as hyper HTTP/1.1 connections (with upgrades, for
//! socket.io) running the axum app, with a header-read timeout and an idle timeout that counts
//! bytes moved either way while no request is in the handler: idle keep-alive connections and
//! clients that stop reading a download are closed alike (`net::serve_http` times out only
//! idle keep-alive, which is why the hub drives its connections itself).
use crate::net::{Limiter, Permit, Shutdown};
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// On shutdown, requests in progress get this long to finish.
pub const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Limits {
    /// Open HTTP connections; beyond it new ones get 503. Upgraded (socket.io) connections
    /// leave this count for the inference cap.
    pub max_connections: usize,
    /// A connection that moved no byte for this long while no request was in the handler is closed.
    pub idle: Duration,
    /// A request's headers must arrive within this time.
    pub header_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 8192, idle: Duration::from_secs(60), header_read: Duration::from_secs(30) }
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, app: axum::Router, limits: Limits, shutdown: Shutdown) {
    let limiter = Limiter::new(limits.max_connections);
    let sd = shutdown.clone();
    let serve = move |sock: TcpStream, peer: SocketAddr, permit: Permit| {
        let (app, limits, shutdown) = (app.clone(), limits.clone(), sd.clone());
        async move {
            connection(sock, peer, app, limits, shutdown).await;
            drop(permit);
        }
    };
    let refuse = |mut sock: TcpStream| async move {
        let body = r#"{"detail":"too many connections"}"#;
        let reply =
            format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = sock.write_all(reply.as_bytes()).await;
        let _ = sock.shutdown().await;
    };
    crate::net::accept_loop("hub", listener, limiter, shutdown, serve, refuse).await
}

/// Milliseconds since `epoch` of the last byte moved.
struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// A stream that records when bytes last moved.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Requests of one connection inside the handler (a slow handler is not idleness).
struct Busy(Arc<AtomicUsize>);
impl Busy {
    fn new(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n.clone())
    }
}
impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(sock: TcpStream, peer: SocketAddr, app: axum::Router, limits: Limits, shutdown: Shutdown) {
    let _conn = crate::metrics::Connection::open(crate::metrics::ConnKind::Http);
    let activity = Arc::new(Activity { epoch: Instant::now(), last: AtomicU64::new(0) });
    let busy = Arc::new(AtomicUsize::new(0));
    let io = TokioIo::new(Tracked { inner: sock, activity: activity.clone() });
    let svc = {
        let busy = busy.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // The handlers log the peer (`--log`).
            req.extensions_mut().insert(peer);
            let (app, guard) = (app.clone(), Busy::new(&busy));
            async move {
                let r = app.oneshot(req.map(Body::new)).await;
                drop(guard);
                r
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut tick = tokio::time::interval((limits.idle / 4).max(Duration::from_millis(250)));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tick.tick() => {
                if busy.load(Ordering::SeqCst) == 0 && activity.idle() >= limits.idle {
                    return;
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                return;
            }
        }
    }
}
