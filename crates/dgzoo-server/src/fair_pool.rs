//! A fair admission queue for the servers' bounded blocking pool: at most `limit` jobs run at
//! once, and when a slot frees it goes to the waiting client with the fewest jobs running,
//! and among those to the one served least recently (a client that was idle counts as never
//! served). A client is a stream or a connection ([`ClientId`]).
//!
//! Why not a FIFO semaphore: a client that sends frames without end and never reads its
//! results (loopback socket buffers hold thousands of small results) keeps 8 frames queued at
//! all times; with 16 such clients a normal client's one frame waited behind 128 others (9 ms
//! unloaded, 50 ms under that load). Here it waits only for a running job to end: it has none
//! running and was served longer ago than any client that keeps a queue, so it comes first;
//! clients that keep queues take turns. One client's own jobs keep their order.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Who a job is for: jobs of one id share its fair share of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(u64);

impl ClientId {
    /// A new id, never handed out before in this process.
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ClientId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Client {
    running: usize,
    /// The pool's grant count at this client's last grant (0: never, or idle since).
    last_grant: u64,
    /// Waiters in arrival order: (arrival number, wake-up).
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

struct Inner {
    limit: usize,
    running: usize,
    arrivals: u64,
    grants: u64,
    /// Clients with jobs running or waiting (others are removed).
    clients: HashMap<ClientId, Client>,
}

impl Inner {
    fn start(&mut self, id: ClientId) {
        self.running += 1;
        self.grants += 1;
        let c = self.clients.entry(id).or_default();
        c.running += 1;
        c.last_grant = self.grants;
    }

    fn forget_if_idle(&mut self, id: ClientId) {
        if self.clients.get(&id).is_some_and(|c| c.running == 0 && c.waiting.is_empty()) {
            self.clients.remove(&id);
        }
    }

    /// Hand free slots to waiters: the client with the fewest jobs running first, then the one
    /// served least recently, then the oldest waiter. Waiters that gave up (dropped receivers)
    /// are skipped.
    fn grant(&mut self) {
        while self.running < self.limit {
            let Some(id) =
                self.clients.iter().filter_map(|(id, c)| c.waiting.front().map(|(seq, _)| (c.running, c.last_grant, *seq, *id))).min().map(|(.., id)| id)
            else {
                return;
            };
            let client = self.clients.get_mut(&id).expect("chosen from the map");
            let (_, wake) = client.waiting.pop_front().expect("chosen for a waiter");
            if wake.send(()).is_ok() {
                self.start(id);
            } else {
                self.forget_if_idle(id);
            }
        }
    }
}

/// The admission queue (cheap to clone).
#[derive(Clone)]
pub struct FairPool {
    inner: Arc<Mutex<Inner>>,
}

/// A running job's slot; dropping it frees the slot for the next waiter.
pub struct Slot {
    pool: FairPool,
    id: ClientId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.release(self.id);
    }
}

/// A waiter's wake-up, freed correctly if the wait is abandoned (its future dropped) after the
/// slot was granted but before it was seen.
struct Waiting<'a> {
    rx: oneshot::Receiver<()>,
    pool: &'a FairPool,
    id: ClientId,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            // Granted and then abandoned: give the slot to the next waiter.
            self.pool.release(self.id);
        }
    }
}

impl FairPool {
    pub fn new(limit: usize) -> Self {
        FairPool { inner: Arc::new(Mutex::new(Inner { limit: limit.max(1), running: 0, arrivals: 0, grants: 0, clients: HashMap::new() })) }
    }

    /// Wait for a slot for a job of client `id`.
    pub async fn acquire(&self, id: ClientId) -> Slot {
        let rx = {
            let mut inner = self.lock();
            let nobody_waits = inner.clients.values().all(|c| c.waiting.is_empty());
            if inner.running < inner.limit && nobody_waits {
                inner.start(id);
                return Slot { pool: self.clone(), id };
            }
            let (tx, rx) = oneshot::channel();
            inner.arrivals += 1;
            let seq = inner.arrivals;
            inner.clients.entry(id).or_default().waiting.push_back((seq, tx));
            inner.grant();
            rx
        };
        let mut waiting = Waiting { rx, pool: self, id, done: false };
        // The pool drops a waiter's sender unsent only once its receiver is gone.
        let woken = (&mut waiting.rx).await;
        debug_assert!(woken.is_ok());
        waiting.done = true;
        Slot { pool: self.clone(), id }
    }

    fn release(&self, id: ClientId) {
        let mut inner = self.lock();
        inner.running -= 1;
        if let Some(c) = inner.clients.get_mut(&id) {
            c.running -= 1;
        }
        inner.forget_if_idle(id);
        inner.grant();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; a poisoned lock's state is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs running now (for tests and metrics).
    pub fn running(&self) -> usize {
        self.lock().running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_client_with_nothing_running_goes_before_a_busy_clients_queue() {
        rt().block_on(async {
            let pool = FairPool::new(1);
            let (heavy, light) = (ClientId::fresh(), ClientId::fresh());
            let first = pool.acquire(heavy).await;
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for k in 0..8 {
                let (pool, order) = (pool.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    let _s = pool.acquire(heavy).await;
                    order.lock().unwrap().push(format!("heavy{k}"));
                }));
                tokio::task::yield_now().await;
            }
            let (p, o) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _s = p.acquire(light).await;
                o.lock().unwrap().push("light".to_string());
            }));
            tokio::task::yield_now().await;
            drop(first);
            for t in tasks {
                t.await.unwrap();
            }
            let order = order.lock().unwrap().clone();
            assert_eq!(order[0], "light", "{order:?}");
            let heavy_order: Vec<_> = order[1..].to_vec();
            assert_eq!(heavy_order, (0..8).map(|k| format!("heavy{k}")).collect::<Vec<_>>(), "one client's jobs keep their order");
            assert_eq!(pool.running(), 0);
            assert!(pool.lock().clients.is_empty(), "idle clients are forgotten");
        });
    }

    #[test]
    fn the_limit_holds_and_abandoned_waits_free_their_slot() {
        rt().block_on(async {
            let pool = FairPool::new(2);
            let a = pool.acquire(ClientId::fresh()).await;
            let b = pool.acquire(ClientId::fresh()).await;
            assert_eq!(pool.running(), 2);
            // A wait that times out leaves nothing behind.
            let gave_up = tokio::time::timeout(Duration::from_millis(20), pool.acquire(ClientId::fresh())).await;
            assert!(gave_up.is_err());
            // A waiter granted a slot and dropped before it runs gives the slot on.
            let pending = tokio::spawn({
                let pool = pool.clone();
                async move { pool.acquire(ClientId::fresh()).await }
            });
            tokio::task::yield_now().await;
            pending.abort();
            drop(a);
            let _ = pending.await;
            let c = tokio::time::timeout(Duration::from_secs(1), pool.acquire(ClientId::fresh())).await.expect("a slot is free");
            assert_eq!(pool.running(), 2);
            drop((b, c));
            assert_eq!(pool.running(), 0);
            assert!(pool.lock().clients.is_empty());
        });
    }

    #[test]
    fn slots_are_shared_among_clients_by_jobs_running() {
        rt().block_on(async {
            let pool = FairPool::new(4);
            let (x, y) = (ClientId::fresh(), ClientId::fresh());
            let mut held = Vec::new();
            for _ in 0..4 {
                held.push(pool.acquire(x).await);
            }
            let granted = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for (id, name) in [(x, "x"), (x, "x"), (y, "y"), (y, "y"), (y, "y")] {
                let (pool, granted) = (pool.clone(), granted.clone());
                tasks.push(tokio::spawn(async move {
                    let s = pool.acquire(id).await;
                    granted.lock().unwrap().push(name);
                    s
                }));
                tokio::task::yield_now().await;
            }
            // Three of x's four slots free: y (0 running) gets them until it has as many
            // running as x, then they alternate.
            for _ in 0..3 {
                drop(held.pop());
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            }
            assert_eq!(granted.lock().unwrap().clone(), vec!["y", "y", "x"]);
            assert_eq!(pool.running(), 4);
        });
    }

    #[test]
    fn clients_that_keep_queues_take_turns() {
        rt().block_on(async {
            let pool = FairPool::new(1);
            let holder = pool.acquire(ClientId::fresh()).await;
            let (a, b) = (ClientId::fresh(), ClientId::fresh());
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            // a queues all of its jobs before b queues any.
            for (id, name) in [(a, "a"), (a, "a"), (a, "a"), (b, "b"), (b, "b"), (b, "b")] {
                let (pool, order) = (pool.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    let _s = pool.acquire(id).await;
                    order.lock().unwrap().push(name);
                    tokio::task::yield_now().await;
                }));
                tokio::task::yield_now().await;
            }
            drop(holder);
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(order.lock().unwrap().clone(), vec!["a", "b", "a", "b", "a", "b"]);
        });
    }
}
