//! Frames of an AI-server model pipelined on one stream, as PySDK does: encoded frames go out
//! in submission order with at most `frame_queue_depth` of them unanswered, and one reader
//! matches the results to the frames in order. A per-frame error fails its frame only (the
//! server goes on with the stream); a broken stream (network error, timeout, stream-open
//! failure) fails the frames in flight on it, and the next frame opens a new stream.
use crate::aiclient::{RemoteStream, StreamSender};
use crate::error::{Code, Error, Result};
use crate::image_ops::CoordConverter;
use crate::inference::InferenceResult;
use crate::model::{Model, ModelState};
use crate::protocol;
use crate::remote;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The caller's tag of a frame (sequence number, id), handed back with its result.
pub(crate) type Tag = (u64, u64);
/// Receives each frame's result, on the sender or the reader thread.
pub(crate) type Complete = Arc<dyn Fn(Tag, Result<InferenceResult>) + Send + Sync>;

/// A frame ready to send, with what its result needs.
pub(crate) struct Encoded {
    pub packets: Vec<Vec<u8>>,
    pub converter: CoordConverter,
    pub st: Arc<ModelState>,
    /// When the frame's encoding started, and how long it took (`measure_time` on).
    pub started: std::time::Instant,
    pub pre_ms: Option<f64>,
}

fn cancelled() -> Error {
    Error::new(Code::Cancelled, "frame cancelled")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends frames on one stream at a time; see the module comment.
pub(crate) struct RemotePipeline {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<()>>,
}

struct Shared {
    model: Model,
    complete: Complete,
    slots: Mutex<Slots>,
    changed: Condvar,
}

struct Slot {
    tag: Tag,
    /// `None` while the frame is being encoded.
    frame: Option<Result<Encoded>>,
    /// `Slots::cancels` when it was reserved.
    generation: u64,
}

struct Slots {
    /// Frames not yet sent, in submission order.
    queue: VecDeque<Slot>,
    /// Number of `cancel` calls: a frame reserved before the last one is not sent.
    cancels: u64,
    /// The stream in use, for `cancel`.
    flight: Option<Arc<Flight>>,
    closing: bool,
}

impl RemotePipeline {
    pub fn new(model: Model, complete: Complete) -> Result<Self> {
        if model.remote().is_none() {
            return Err(Error::invalid(format!("model '{}' does not run on an AI server", model.name())));
        }
        let shared = Arc::new(Shared {
            model,
            complete,
            slots: Mutex::new(Slots { queue: VecDeque::new(), cancels: 0, flight: None, closing: false }),
            changed: Condvar::new(),
        });
        let sh = shared.clone();
        let sender = std::thread::Builder::new()
            .name("dgzoo-stream-send".into())
            .spawn(move || send_loop(sh))
            .map_err(|e| Error::internal(format!("cannot start the stream sender thread: {e}")))?;
        Ok(RemotePipeline { shared, sender: Some(sender) })
    }

    /// Take a place in the send order. Call in submission order, then `fill` the place.
    pub fn reserve(&self, tag: Tag) {
        let mut g = lock(&self.shared.slots);
        let generation = g.cancels;
        g.queue.push_back(Slot { tag, frame: None, generation });
    }

    /// The encoded frame (or why it could not be encoded) for a reserved place.
    pub fn fill(&self, tag: Tag, frame: Result<Encoded>) {
        let mut g = lock(&self.shared.slots);
        if let Some(slot) = g.queue.iter_mut().find(|s| s.tag == tag) {
            slot.frame = Some(frame);
            self.shared.changed.notify_all();
        }
    }

    /// Fail every frame not yet answered with `Cancelled`: those not sent are dropped, and the
    /// stream carrying the others is shut down so that nothing waits for its results.
    pub fn cancel(&self) {
        let mut g = lock(&self.shared.slots);
        g.cancels += 1;
        if let Some(f) = &g.flight {
            f.abort(cancelled());
        }
        self.shared.changed.notify_all();
    }
}

impl Drop for RemotePipeline {
    fn drop(&mut self) {
        lock(&self.shared.slots).closing = true;
        self.shared.changed.notify_all();
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
    }
}

/// The sender thread: frames in order onto the current stream, opening one when needed.
fn send_loop(sh: Arc<Shared>) {
    let mut stream: Option<Stream> = None;
    loop {
        let next = {
            let mut g = lock(&sh.slots);
            loop {
                if g.queue.front().is_some_and(|s| s.frame.is_some()) {
                    let slot = g.queue.pop_front().expect("front slot");
                    let stale = slot.generation != g.cancels;
                    break Some((slot, stale));
                }
                if g.closing && g.queue.is_empty() {
                    break None;
                }
                g = sh.changed.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some((slot, stale)) = next else { break };
        match slot.frame.expect("filled slot") {
            _ if stale => (sh.complete)(slot.tag, Err(cancelled())),
            Err(e) => (sh.complete)(slot.tag, Err(e)),
            Ok(frame) => send(&sh, &mut stream, slot.tag, slot.generation, frame),
        }
    }
    end_stream(&sh, stream);
}

fn end_stream(sh: &Shared, stream: Option<Stream>) {
    if let Some(s) = stream {
        lock(&sh.slots).flight = None;
        s.close();
    }
}

/// Send one frame on a live stream opened with its settings, once there is room.
fn send(sh: &Shared, stream: &mut Option<Stream>, tag: Tag, generation: u64, frame: Encoded) {
    let config = remote::stream_config(&frame.st);
    let key = config.to_string();
    let window = frame.st.params.u64("FrameQueueDepth", 0).clamp(1, crate::model::MAX_FRAME_QUEUE_DEPTH) as usize;
    let fail = |e: Error| (sh.complete)(tag, Err(remote::inference_error(sh.model.name(), e.code, &e.message)));
    loop {
        // A cancel while this frame waited for room (it aborts the stream) drops it too.
        if lock(&sh.slots).cancels != generation {
            return (sh.complete)(tag, Err(cancelled()));
        }
        let reusable = stream.as_ref().is_some_and(|s| s.flight.key == key && !s.flight.is_dead());
        if !reusable {
            // Other settings need another stream; the old one ends once its frames are answered.
            end_stream(sh, stream.take());
            match Stream::open(sh, key.clone(), &config) {
                Ok(s) => {
                    lock(&sh.slots).flight = Some(s.flight.clone());
                    *stream = Some(s);
                }
                Err(e) => return fail(e),
            }
        }
        let s = stream.as_mut().expect("an open stream");
        let pending = Pending { tag, converter: frame.converter.clone(), st: frame.st.clone(), started: frame.started, pre_ms: frame.pre_ms };
        if !s.flight.push_when_room(window, pending) {
            continue;
        }
        if let Err(e) = s.tx.send_frame(&frame.packets) {
            // The reader fails this frame and the others in flight with the send error.
            s.flight.abort(remote::inference_error(sh.model.name(), e.code, &e.message));
        }
        return;
    }
}

/// A frame sent and not yet answered.
struct Pending {
    tag: Tag,
    converter: CoordConverter,
    st: Arc<ModelState>,
    started: std::time::Instant,
    pre_ms: Option<f64>,
}

/// One open stream's frames in flight, shared by the sender and the stream's reader.
struct Flight {
    /// The stream's configuration: a frame encoded with other settings needs another stream.
    key: String,
    /// A handle on the connection, only to shut it down.
    aborter: StreamSender,
    state: Mutex<FlightState>,
    changed: Condvar,
}

#[derive(Default)]
struct FlightState {
    pending: VecDeque<Pending>,
    /// Nothing more goes on this stream; the reader fails what is pending and ends.
    dead: bool,
    /// Why the stream was aborted (cancel, send error): the pending frames' error.
    abort_reason: Option<Error>,
    /// The sender is done with the stream: the reader ends once nothing is pending.
    closing: bool,
}

impl Flight {
    fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }

    /// Wait until fewer than `window` frames are in flight, then add one; false if the
    /// stream died meanwhile.
    fn push_when_room(&self, window: usize, p: Pending) -> bool {
        let mut g = lock(&self.state);
        while !g.dead && g.pending.len() >= window {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        if g.dead {
            return false;
        }
        g.pending.push_back(p);
        self.changed.notify_all();
        true
    }

    /// Shut the stream down; its pending frames fail with `reason`. Only a stream with frames
    /// in flight is aborted: an idle one stays usable.
    fn abort(&self, reason: Error) {
        let mut g = lock(&self.state);
        if g.dead || g.pending.is_empty() {
            return;
        }
        g.dead = true;
        g.abort_reason.get_or_insert(reason);
        self.changed.notify_all();
        // Unblocks the reader's receive.
        self.aborter.abort();
    }
}

/// An open stream: the sending side, its flight and its reader thread.
struct Stream {
    flight: Arc<Flight>,
    tx: StreamSender,
    reader: JoinHandle<()>,
}

impl Stream {
    fn open(sh: &Shared, key: String, config: &serde_json::Value) -> Result<Stream> {
        let rb = sh.model.remote().ok_or_else(|| Error::internal("not an AI-server model"))?;
        let rx = rb.client.open_stream(sh.model.name(), config)?;
        let tx = rx.sender()?;
        let flight = Arc::new(Flight { key, aborter: rx.sender()?, state: Mutex::new(FlightState::default()), changed: Condvar::new() });
        let (f, model, complete) = (flight.clone(), sh.model.clone(), sh.complete.clone());
        let reader = std::thread::Builder::new()
            .name("dgzoo-stream-recv".into())
            .spawn(move || read_loop(&f, rx, &model, &complete))
            .map_err(|e| Error::internal(format!("cannot start the stream reader thread: {e}")))?;
        Ok(Stream { flight, tx, reader })
    }

    /// End the stream once its frames are answered.
    fn close(self) {
        lock(&self.flight.state).closing = true;
        self.flight.changed.notify_all();
        let _ = self.reader.join();
        if !self.flight.is_dead() {
            self.tx.close();
        }
    }
}

/// The reader thread of one stream: results in frame order until the stream ends or fails.
fn read_loop(flight: &Flight, mut rx: RemoteStream, model: &Model, complete: &Complete) {
    loop {
        let timeout = {
            let mut g = lock(&flight.state);
            loop {
                if g.dead {
                    break None;
                }
                if let Some(p) = g.pending.front() {
                    break Some(p.st.inference_timeout_s);
                }
                if g.closing {
                    return;
                }
                g = flight.changed.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        };
        let received = match timeout {
            Some(t) => rx.recv(Duration::from_secs_f64(t.max(0.001))),
            // Aborted between two receives: only failing what is pending is left to do.
            None => Err(cancelled()),
        };
        let mut g = lock(&flight.state);
        let failure = match received {
            Ok(packet) => {
                let Some(p) = g.pending.pop_front() else { return };
                flight.changed.notify_all();
                drop(g);
                let r = remote::complete(&p.st, &packet, &p.converter).map(|mut r| {
                    r.pre_ms = p.pre_ms;
                    model.record_time(&p.st, p.started, &r);
                    r
                });
                // A stream-open failure: the server ignores this stream from now on.
                let fatal = r.as_ref().err().filter(|_| protocol::ends_stream(&packet)).cloned();
                complete(p.tag, r);
                let Some(e) = fatal else { continue };
                g = lock(&flight.state);
                e
            }
            Err(e) => match g.abort_reason.clone() {
                Some(reason) => reason,
                None => remote::inference_error(model.name(), e.code, &e.message),
            },
        };
        g.dead = true;
        let failed: Vec<Pending> = g.pending.drain(..).collect();
        flight.changed.notify_all();
        drop(g);
        flight.aborter.abort();
        for p in failed {
            complete(p.tag, Err(failure.clone()));
        }
        return;
    }
}
