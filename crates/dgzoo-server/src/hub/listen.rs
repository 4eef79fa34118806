//! The hub's accept loop and connection policy: hyper HTTP/1.1 connections (with upgrades, for
//! socket.io) serving the axum app, a cap on open connections, a header-read timeout, an idle
//! timeout (no byte moved either way while no request is being handled: idle keep-alive
//! connections and clients that stop reading a download are closed), and an accept loop that
//! backs off and keeps going on EMFILE/ENFILE instead of ending.
//!
//! When the servers' shared `net.rs` lands, this is the part to replace with it.
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Open HTTP connections; beyond it new ones wait in the listen backlog. Upgraded
    /// (socket.io) connections leave this count for the inference cap.
    pub max_connections: usize,
    /// A connection that moved no byte for this long while no request was in the handler is closed.
    pub idle: Duration,
    /// A request's headers must arrive within this time.
    pub header_read: Duration,
    /// On shutdown, requests in progress get this long to finish.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 8192, idle: Duration::from_secs(60), header_read: Duration::from_secs(30), drain: Duration::from_secs(5) }
    }
}

/// Accept errors that concern one connection only (the next accept is fine).
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted)
}

/// Serve `app` on `listener` until `stop` turns true (or its sender goes away).
pub async fn serve(listener: TcpListener, app: axum::Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(c) => {
                backoff = Duration::from_millis(5);
                c
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM: the connection stays in the backlog; try again once
                // some descriptors are free (idle timeouts free them).
                tracing::warn!(target: "dgzoo_server::hub", "accept failed: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let (app, limits, stop) = (app.clone(), limits.clone(), stop.clone());
        tokio::spawn(async move {
            connection(sock, peer, app, limits, stop).await;
            drop(permit);
        });
    }
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

async fn connection(sock: tokio::net::TcpStream, peer: SocketAddr, app: axum::Router, limits: Limits, mut stop: watch::Receiver<bool>) {
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
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.drain, conn.as_mut()).await;
                return;
            }
        }
    }
}
