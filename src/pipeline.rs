//! Batch and asynchronous prediction on the library's own worker threads.
//!
//! Frames are processed concurrently (decode, resize, inference on pooled sessions,
//! post-processing) and delivered strictly in submission order. The queue is bounded by the
//! frame queue depth: `submit` blocks when it is full (back-pressure), `try_submit` refuses.
//! For an AI-server model the workers only encode frames; [`remote`] pipelines them on one
//! stream.
mod remote;

use crate::error::{Code, Error, Result};
use crate::inference::{InferenceResult, Input};
use crate::model::Model;
use remote::{Encoded, RemotePipeline};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Most concurrent connections one async predictor opens to the cloud.
const MAX_CLOUD_WORKERS: usize = 16;

/// An owned frame: one buffer per model input.
#[derive(Debug, Clone)]
pub enum OwnedInput {
    Bytes(Vec<u8>),
    Pixels { data: Vec<u8>, width: u32, height: u32, stride: usize, bgr: bool },
}

impl OwnedInput {
    pub fn as_input(&self) -> Input<'_> {
        match self {
            OwnedInput::Bytes(b) => Input::Bytes(b),
            OwnedInput::Pixels { data, width, height, stride, bgr } => Input::Pixels { data, width: *width, height: *height, stride: *stride, bgr: *bgr },
        }
    }
}

/// Called once per frame, in submission order, on a library thread.
pub type Callback = Box<dyn FnMut(u64, Result<InferenceResult>) + Send>;

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    cancelled: AtomicBool,
}

struct State {
    /// Frames waiting for a worker: (sequence, user id, inputs).
    queue: std::collections::VecDeque<(u64, u64, Vec<OwnedInput>)>,
    /// Finished frames waiting for in-order delivery.
    done: BTreeMap<u64, (u64, Result<InferenceResult>)>,
    next_seq: u64,
    next_deliver: u64,
    /// Frames submitted and not yet delivered.
    outstanding: usize,
    closing: bool,
}

/// What the workers do with a frame.
enum Work {
    /// Run it (local engine; cloud model, one connection per worker).
    Predict(Model),
    /// Encode it for the AI server, which the stream pipeline sends it to.
    Encode(Model, Arc<RemotePipeline>),
}

/// An asynchronous predictor for one model.
pub struct AsyncPredictor {
    shared: Arc<Shared>,
    depth: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
    deliverer: Option<std::thread::JoinHandle<()>>,
    /// The AI-server stream pipeline (AI-server models only).
    remote: Option<Arc<RemotePipeline>>,
}

/// `depth`, or the model's `frame_queue_depth` for 0, checked against 1..=160.
fn effective_depth(model: &Model, depth: usize) -> Result<usize> {
    let depth = if depth == 0 { model.state().params.u64("FrameQueueDepth", 0) as usize } else { depth };
    if !(1..=crate::model::MAX_FRAME_QUEUE_DEPTH as usize).contains(&depth) {
        return Err(Error::invalid(format!("Frame queue depth {depth} is out of range 1..{}", crate::model::MAX_FRAME_QUEUE_DEPTH)));
    }
    Ok(depth)
}

impl AsyncPredictor {
    /// `depth` bounds frames in flight (1..=160; 0 = the model's `frame_queue_depth`).
    pub fn new(model: Model, depth: usize, callback: Callback) -> Result<Self> {
        let depth = effective_depth(&model, depth)?;
        // Fail early (missing runtime, bad model) rather than on the first frame.
        model.ready()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { queue: Default::default(), done: BTreeMap::new(), next_seq: 0, next_deliver: 0, outstanding: 0, closing: false }),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
        });
        // Cloud frames wait on the network, not the CPU: one worker (and connection) per queue
        // slot. Other workers are CPU-bound (inference, or encoding for the AI server).
        let n_workers = if model.cloud_backend().is_some() {
            depth.min(MAX_CLOUD_WORKERS)
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, depth)
        };
        let remote = match model.remote() {
            Some(_) => {
                let sh = shared.clone();
                Some(Arc::new(RemotePipeline::new(model.clone(), Arc::new(move |(seq, id), r| done(&sh, seq, id, r)))?))
            }
            None => None,
        };
        let work = Arc::new(match &remote {
            Some(rp) => Work::Encode(model, rp.clone()),
            None => Work::Predict(model),
        });
        let workers = (0..n_workers)
            .map(|i| {
                let (sh, w) = (shared.clone(), work.clone());
                std::thread::Builder::new()
                    .name(format!("dgzoo-worker-{i}"))
                    .spawn(move || worker(sh, w))
                    .map_err(|e| Error::internal(format!("cannot start a worker thread: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let sh = shared.clone();
        let deliverer = std::thread::Builder::new()
            .name("dgzoo-deliver".into())
            .spawn(move || deliver(sh, callback))
            .map_err(|e| Error::internal(format!("cannot start the delivery thread: {e}")))?;
        Ok(AsyncPredictor { shared, depth, workers, deliverer: Some(deliverer), remote })
    }

    fn submit_inner(&self, id: u64, inputs: Vec<OwnedInput>, wait: Option<Duration>) -> Result<()> {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = wait.map(|d| std::time::Instant::now() + d);
        while st.outstanding >= self.depth {
            if st.closing {
                return Err(Error::new(Code::Cancelled, "the predictor is closing"));
            }
            match deadline {
                None => st = self.shared.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(dl) => {
                    let now = std::time::Instant::now();
                    if now >= dl {
                        return Err(Error::new(Code::Timeout, format!("frame queue is full (queue depth is {})", self.depth)));
                    }
                    st = self.shared.changed.wait_timeout(st, dl - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
        if st.closing {
            return Err(Error::new(Code::Cancelled, "the predictor is closing"));
        }
        self.shared.cancelled.store(false, Ordering::SeqCst);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.outstanding += 1;
        st.queue.push_back((seq, id, inputs));
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Queue a frame, blocking while `depth` frames are in flight.
    pub fn submit(&self, id: u64, inputs: Vec<OwnedInput>) -> Result<()> {
        self.submit_inner(id, inputs, None)
    }

    /// Queue a frame, waiting at most `timeout` for space (zero = don't wait).
    pub fn try_submit(&self, id: u64, inputs: Vec<OwnedInput>, timeout: Duration) -> Result<()> {
        self.submit_inner(id, inputs, Some(timeout))
    }

    /// Wait until every submitted frame has been delivered.
    pub fn wait(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.outstanding > 0 {
            st = self.shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Drop frames not yet started; they are delivered with a `Cancelled` error. On an AI
    /// server, frames sent and not yet answered are abandoned too (their stream is shut down),
    /// so waiting after a cancel never waits for the server.
    pub fn cancel(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.cancelled.store(true, Ordering::SeqCst);
        while let Some((seq, id, _)) = st.queue.pop_front() {
            st.done.insert(seq, (id, Err(Error::new(Code::Cancelled, "frame cancelled"))));
        }
        if let Some(rp) = &self.remote {
            rp.cancel();
        }
        self.shared.changed.notify_all();
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
}

impl Drop for AsyncPredictor {
    fn drop(&mut self) {
        self.wait();
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).closing = true;
        self.shared.changed.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // The last reference (the workers are gone): ends the stream and its threads.
        self.remote = None;
        if let Some(d) = self.deliverer.take() {
            let _ = d.join();
        }
    }
}

fn worker(sh: Arc<Shared>, work: Arc<Work>) {
    loop {
        let job = {
            let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = st.queue.pop_front() {
                    // Taken under the queue lock, so frames are sent in submission order.
                    if let Work::Encode(_, rp) = &*work {
                        rp.reserve((j.0, j.1));
                    }
                    break Some(j);
                }
                if st.closing {
                    break None;
                }
                st = sh.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some((seq, id, inputs)) = job else { return };
        let ins: Vec<Input> = inputs.iter().map(OwnedInput::as_input).collect();
        let cancelled = sh.cancelled.load(Ordering::SeqCst);
        match &*work {
            Work::Predict(model) => done(&sh, seq, id, guarded(cancelled, || crate::model::predict(model, &ins))),
            Work::Encode(model, rp) => {
                let encoded = guarded(cancelled, || {
                    let started = std::time::Instant::now();
                    let st = model.state();
                    crate::remote::encode_frame(&st, &ins).map(|(packets, converter)| {
                        let pre_ms = crate::remote::measured_since(&st, started);
                        Encoded { packets, converter, st, started, pre_ms }
                    })
                });
                rp.fill((seq, id), encoded);
            }
        }
    }
}

/// Run a frame's step unless cancelled; a panic becomes that frame's error and the worker
/// lives on.
fn guarded<T>(cancelled: bool, step: impl FnOnce() -> Result<T>) -> Result<T> {
    if cancelled {
        return Err(Error::new(Code::Cancelled, "frame cancelled"));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|_| Err(Error::internal("internal error (panic) while processing the frame")))
}

/// A frame is finished: queue it for in-order delivery.
fn done(sh: &Shared, seq: u64, id: u64, r: Result<InferenceResult>) {
    let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
    st.done.insert(seq, (id, r));
    sh.changed.notify_all();
}

fn deliver(sh: Arc<Shared>, mut cb: Callback) {
    loop {
        let item = {
            let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let next = st.next_deliver;
                if let Some(v) = st.done.remove(&next) {
                    st.next_deliver += 1;
                    break Some(v);
                }
                if st.closing && st.outstanding == 0 {
                    break None;
                }
                st = sh.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some((id, r)) = item else { return };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(id, r)));
        let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        st.outstanding -= 1;
        sh.changed.notify_all();
    }
}

/// Predict a batch of frames with pipelining; results in input order.
pub fn predict_batch(model: &Model, frames: Vec<Vec<OwnedInput>>) -> Result<Vec<Result<InferenceResult>>> {
    let n = frames.len();
    let out: Arc<Mutex<Vec<Option<Result<InferenceResult>>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    {
        let o = out.clone();
        let depth = model.state().params.u64("FrameQueueDepth", 0).clamp(1, crate::model::MAX_FRAME_QUEUE_DEPTH) as usize;
        let p = AsyncPredictor::new(
            model.clone(),
            depth,
            Box::new(move |id, r| {
                o.lock().unwrap_or_else(|p| p.into_inner())[id as usize] = Some(r);
            }),
        )?;
        for (i, f) in frames.into_iter().enumerate() {
            p.submit(i as u64, f)?;
        }
        p.wait();
    }
    let mut v = out.lock().unwrap_or_else(|p| p.into_inner());
    Ok(v.iter_mut().map(|r| r.take().unwrap_or_else(|| Err(Error::internal("frame result missing")))).collect())
}

/// One frame pulled from a stream's source: its inputs (or why it cannot be run) and the
/// caller's tag that comes back with its result.
pub type StreamFrame<T> = (Result<Vec<OwnedInput>>, T);

/// PySDK's generator input (`predict_batch(iterator)`): frames are pulled from `next` (None
/// ends the stream) and run pipelined on the library's workers; `on_result` gets each frame's
/// tag and result in order. Both run on the calling thread. At most `depth` frames (0 = the
/// model's `frame_queue_depth`) are pulled and not yet delivered at any time, so memory does
/// not grow with the stream.
/// A frame whose inputs are an error gets that error, in its place, and the stream goes on.
/// Returns the number of frames pulled.
pub fn predict_stream<T>(
    model: &Model,
    depth: usize,
    mut next: impl FnMut() -> Option<StreamFrame<T>>,
    mut on_result: impl FnMut(T, Result<InferenceResult>),
) -> Result<u64> {
    // Checked before the channel is sized by it (a huge depth must be an error, not a panic).
    let depth = effective_depth(model, depth)?;
    let (tx, rx) = crossbeam_channel::bounded::<(u64, Result<InferenceResult>)>(depth);
    let p = AsyncPredictor::new(
        model.clone(),
        depth,
        Box::new(move |seq, r| {
            // Never blocks: at most `depth` frames are in flight, so the channel has room.
            let _ = tx.send((seq, r));
        }),
    )?;
    // Pulled frames not yet delivered, in order: (sequence, tag, error if not submitted).
    let mut pending: std::collections::VecDeque<(u64, T, Option<Error>)> = Default::default();
    let (mut seq, mut ended) = (0u64, false);
    loop {
        // Deliver what is ready; block for one result when the window (frames pulled and not
        // delivered) is full or the source has ended.
        let mut block = ended || pending.len() >= p.depth();
        while let Some(front) = pending.front() {
            if front.2.is_some() {
                let (_, tag, e) = pending.pop_front().expect("front exists");
                on_result(tag, Err(e.expect("checked")));
                continue;
            }
            let got = if block { rx.recv().ok() } else { rx.try_recv().ok() };
            let Some((s, r)) = got else { break };
            block = false;
            let (want, tag, _) = pending.pop_front().expect("front exists");
            let r = if s == want { r } else { Err(Error::internal(format!("stream result {s} arrived for frame {want}"))) };
            on_result(tag, r);
        }
        if ended {
            if pending.is_empty() {
                return Ok(seq);
            }
            continue;
        }
        if pending.len() >= p.depth() {
            continue;
        }
        match next() {
            None => ended = true,
            Some((Ok(inputs), tag)) => {
                match p.submit(seq, inputs) {
                    Ok(()) => pending.push_back((seq, tag, None)),
                    Err(e) => pending.push_back((seq, tag, Some(e))),
                }
                seq += 1;
            }
            Some((Err(e), tag)) => {
                pending.push_back((seq, tag, Some(e)));
                seq += 1;
            }
        }
    }
}
