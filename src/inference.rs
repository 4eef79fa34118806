//! The local inference path: frame inputs → client-side fit (image_ops) → server-side tensor
//! conversion (preprocess) → runtime session → post-processing → PySDK results.
use crate::error::{Error, Result};
use crate::image_ops::{self, CoordConverter, RgbImage};
use crate::params::ModelParams;
use crate::postprocess;
use crate::preprocess::{self, InputSpec};
use crate::runtime::{self, Agent, Session, SessionOptions, Tensor, TensorInfo};
use crate::state::{is_image_input, ModelState};

pub use crate::frame::{InferenceResult, Input};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// What determines a runtime session: re-created when any of it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineKey {
    pub runtime: String,
    pub device: String,
    pub model_path: PathBuf,
    pub input_shapes: Vec<Vec<i64>>,
    pub devices: Vec<u64>,
    /// `ExtraDeviceParams` (runtime settings such as OpenVINO's streams and precision).
    pub extra: serde_json::Map<String, Value>,
}

impl EngineKey {
    pub fn from_state(st: &ModelState, devices: &[u64]) -> Result<Self> {
        let p = &st.params;
        Ok(EngineKey {
            runtime: p.str("RuntimeAgent", 0),
            device: p.str("DeviceType", 0),
            model_path: PathBuf::from(p.str("ModelPath", 0)),
            input_shapes: (0..p.num_inputs()).map(|i| p.input_shape(i, None)).collect(),
            devices: devices.to_vec(),
            extra: extra_device_params(p),
        })
    }
}

/// A model's `ExtraDeviceParams` as a map (empty when unset or not a dictionary).
pub fn extra_device_params(p: &ModelParams) -> serde_json::Map<String, Value> {
    p.get("ExtraDeviceParams", 0).as_object().cloned().unwrap_or_default()
}

/// What an engine's sessions are tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A lone frame runs on all cores (a library caller waiting for its result); overlapping
    /// frames run on one-core sessions.
    Latency,
    /// The AI server, where frames of many streams and models overlap: at most `copies`
    /// sessions (each with its own copy of the weights) for runtimes that run one frame at a
    /// time per session, never more than one per core, and runtime settings that keep memory
    /// low ([`SessionOptions::lean`]). The server's default is 1: one all-core session per
    /// model. Measured on 2 cores (release, PySDK client, 100-frame batches): a second LiteRT
    /// session gave 10% (EfficientNet) to 16% (YOLOv8n) more frames per second on one busy model
    /// and cost 70 MiB over the six test models.
    Throughput { copies: usize },
}

/// A loaded model binary with a small pool of sessions (one per selected device, each
/// using the cores divided among them), shared by all threads predicting on the model.
pub struct Engine {
    pub key: EngineKey,
    agent: Arc<dyn Agent>,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    opts: SessionOptions,
    max_sessions: usize,
    /// The runtime runs frames concurrently on one session (see [`Agent::concurrent`]).
    concurrent: bool,
    /// How many one-core sessions there may be (1, shared, when `concurrent`).
    narrow_limit: usize,
    /// Whether there is an all-core session for lone frames.
    has_wide: bool,
    pool: Mutex<Pool>,
    freed: Condvar,
}

/// Sessions of an engine. Each session holds its own copy of the weights, so there are no
/// more than needed. A lone frame runs on `wide` (all cores as intra-op threads: lowest
/// latency). While frames overlap (batch, async, several callers, server streams) they run on
/// one-core sessions, so the runtime's worker threads do not outnumber the cores: a `narrow`
/// session per running frame, or, when the runtime runs frames concurrently on one session
/// (ONNX Runtime), a single `shared` one. [`Profile::Throughput`] keeps at most one session
/// per core: `wide` and one `narrow` on two cores, or only `shared`.
struct Pool {
    wide: Option<Box<dyn Session>>,
    narrow: Vec<Box<dyn Session>>,
    /// One-core sessions that exist (idle, running, being created, or the shared one).
    narrow_created: usize,
    shared: Option<Arc<dyn Session>>,
    /// Frames running now (at most the engine's `max_sessions`).
    running: usize,
}

/// A session checked out for one frame.
enum Slot {
    Wide(Box<dyn Session>),
    Narrow(Box<dyn Session>),
    Shared(Arc<dyn Session>),
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(|e| Error::not_found(format!("cannot open model file '{}': {e}", path.display())))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(format!("cannot read model file '{}': {e}", path.display())))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Verify the config's `Checksum` against the model binary when it is a SHA-256 (64 hex
/// digits), once per (file, size, mtime) per process. `DGZOO_SKIP_CHECKSUM=1` disables it.
pub(crate) fn verify_checksum(params: &ModelParams, path: &std::path::Path) -> Result<()> {
    let want = params.str("Checksum", 0).to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) || !crate::settings::Settings::process().verify_checksums() {
        return Ok(());
    }
    /// (path, size, modification time, expected digest) of files already verified.
    type Verified = (PathBuf, u64, Option<std::time::SystemTime>, String);
    static VERIFIED: once_cell::sync::Lazy<Mutex<std::collections::HashSet<Verified>>> = once_cell::sync::Lazy::new(Default::default);
    let meta = std::fs::metadata(path).map_err(|e| Error::not_found(format!("model file '{}' is not accessible: {e}", path.display())))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok(), want.clone());
    if VERIFIED.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return Ok(());
    }
    let got = sha256_file(path)?;
    if got != want {
        return Err(Error::bad_model(format!(
            "Checksum mismatch for model file '{}': its SHA-256 is {got}, the model configuration says {want}",
            path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
        )));
    }
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    Ok(())
}

impl Engine {
    pub fn new(key: EngineKey, params: &ModelParams, profile: Profile) -> Result<Self> {
        let agent = runtime::agent(&key.runtime)?;
        if !agent.devices().iter().any(|(d, _)| *d == key.device) {
            return Err(Error::unsupported(format!("device {}/{} is not available on this system", key.runtime, key.device)));
        }
        if !key.model_path.is_file() {
            return Err(Error::not_found(format!("model file '{}' does not exist", key.model_path.display())));
        }
        verify_checksum(params, &key.model_path)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_sessions = (key.devices.len() * agent.frames_per_device()).clamp(1, cores);
        // Sessions share the cores: a lone frame gets them all through intra-op threads of
        // the all-core session; overlapping frames get one-core sessions (see [`Pool`]).
        let concurrent = agent.concurrent();
        let opts = SessionOptions {
            threads: (cores / max_sessions).max(1),
            // The shared session of a concurrent runtime runs every overlapping frame.
            concurrency: if concurrent { max_sessions } else { 1 },
            device: key.device.clone(),
            extra: key.extra.clone(),
            lean: matches!(profile, Profile::Throughput { .. }),
        };
        // The all-core session: always for Latency; for Throughput only when frames need a
        // session each anyway (then one of those may as well use every core when alone).
        let has_wide = profile == Profile::Latency || !concurrent;
        let first_opts = if has_wide { SessionOptions { threads: cores, concurrency: 1, ..opts.clone() } } else { opts.clone() };
        let first = agent.load(&key.model_path, &first_opts)?;
        runtime::heap::trim();
        let (inputs, outputs) = (first.inputs().to_vec(), first.outputs().to_vec());
        if inputs.len() != params.num_inputs() {
            return Err(Error::bad_model(format!(
                "the model binary has {} input(s) but its configuration has {} PRE_PROCESS entries",
                inputs.len(),
                params.num_inputs()
            )));
        }
        let mut pool = Pool { wide: None, narrow: Vec::new(), narrow_created: 0, shared: None, running: 0 };
        if has_wide {
            pool.wide = Some(first);
        } else {
            (pool.shared, pool.narrow_created) = (Some(Arc::from(first)), 1);
        }
        let narrow_limit = match (concurrent, profile) {
            (true, _) => 1,
            (false, Profile::Latency) => max_sessions,
            (false, Profile::Throughput { copies }) => copies.clamp(1, max_sessions) - 1,
        };
        Ok(Engine { key, agent, inputs, outputs, opts, max_sessions, concurrent, narrow_limit, has_wide, pool: Mutex::new(pool), freed: Condvar::new() })
    }

    /// Whether one session runs overlapping frames (the runtime's [`Agent::concurrent`]).
    pub fn concurrent(&self) -> bool {
        self.concurrent
    }

    /// Runtime sessions this engine holds (each with its own weights).
    pub fn sessions(&self) -> usize {
        usize::from(self.has_wide) + self.lock().narrow_created
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot and take a session for one frame (see [`Pool`]).
    fn checkout(&self) -> Result<Slot> {
        let mut g = self.lock();
        loop {
            if g.running < self.max_sessions {
                if g.running == 0 && g.wide.is_some() {
                    g.running += 1;
                    return Ok(Slot::Wide(g.wide.take().expect("checked")));
                }
                if let Some(s) = &g.shared {
                    let s = s.clone();
                    g.running += 1;
                    return Ok(Slot::Shared(s));
                }
                if let Some(s) = g.narrow.pop() {
                    g.running += 1;
                    return Ok(Slot::Narrow(s));
                }
                if g.narrow_created < self.narrow_limit {
                    g.narrow_created += 1;
                    g.running += 1;
                    drop(g);
                    let loaded = self.agent.load(&self.key.model_path, &self.opts);
                    runtime::heap::trim();
                    let mut g = self.lock();
                    return match loaded {
                        Ok(s) if self.concurrent => {
                            let s: Arc<dyn Session> = Arc::from(s);
                            g.shared = Some(s.clone());
                            drop(g);
                            self.freed.notify_all();
                            Ok(Slot::Shared(s))
                        }
                        Ok(s) => Ok(Slot::Narrow(s)),
                        Err(e) => {
                            g.narrow_created -= 1;
                            g.running -= 1;
                            drop(g);
                            self.freed.notify_all();
                            Err(e)
                        }
                    };
                }
                if g.wide.is_some() {
                    g.running += 1;
                    return Ok(Slot::Wide(g.wide.take().expect("checked")));
                }
            }
            g = self.freed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Run one inference on a pooled session. A checked-out session whose run panicked is
    /// dropped (the shared one stays: ONNX Runtime's state is per run).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut slot = self.checkout()?;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut slot {
            Slot::Wide(s) | Slot::Narrow(s) => s.run(inputs),
            Slot::Shared(s) => s.run_shared(inputs),
        }));
        let mut g = self.lock();
        g.running -= 1;
        let r = match r {
            Ok(r) => {
                match slot {
                    Slot::Wide(s) => g.wide = Some(s),
                    Slot::Narrow(s) => g.narrow.push(s),
                    Slot::Shared(_) => {}
                }
                r
            }
            Err(_) => {
                match slot {
                    Slot::Wide(_) => {}
                    Slot::Narrow(_) => g.narrow_created -= 1,
                    Slot::Shared(_) => {}
                }
                Err(Error::internal(format!("the {} runtime failed while running model '{}'", self.key.runtime, self.key.model_path.display())))
            }
        };
        drop(g);
        self.freed.notify_all();
        r
    }
}

/// Heuristic: does `b` start like an encoded image we can decode?
fn looks_encoded(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8]) || b.starts_with(b"\x89PNG") || b.starts_with(b"BM")
}

/// Run one frame on a local engine with the model settings `st`; `custom`, when set,
/// post-processes in place of the built-in post-processor.
pub fn predict_local(st: &ModelState, engine: &Engine, inputs: &[Input], custom: &postprocess::custom::Hook) -> Result<InferenceResult> {
    let p = &st.params;
    let n = p.num_inputs();
    if inputs.len() != n {
        return Err(Error::invalid(format!("The length of input data list {} does not match to the number of model inputs {n}", inputs.len())));
    }
    let t0 = Instant::now();
    let mut tensors = Vec::with_capacity(n);
    let mut converter = CoordConverter::identity();
    let mut input_wh = (1f32, 1f32);
    // The original frame's size, for a custom post-processor (the model's for passed-through bytes).
    let mut image_wh = (1u32, 1u32);
    let mut frame_bytes = 0usize;
    // Client-side part (decode, fit): PySDK does it in Python before the core sees the frame.
    let mut client_pre = std::time::Duration::ZERO;
    for (i, (input, info)) in inputs.iter().zip(&engine.inputs).enumerate() {
        if !is_image_input(p, i) {
            let shape = concrete_shape(p, i, info);
            let data = match input {
                Input::Bytes(b) => *b,
                Input::Pixels { .. } => return Err(Error::invalid(format!("model input #{i} is a tensor input: pass its raw bytes, not pixels"))),
            };
            frame_bytes += data.len();
            tensors.push(preprocess::raw_tensor(data, info, &shape, i)?);
            continue;
        }
        let spec = InputSpec::new(p, i, info)?;
        input_wh = (spec.width as f32, spec.height as f32);
        let (w, h) = (spec.width as u32, spec.height as u32);
        image_wh = (w, h);
        let raw_len = spec.width * spec.height * spec.channels * spec.dtype.size();
        let tp = Instant::now();
        let fitted: RgbImage = match input {
            Input::Bytes(b) if !looks_encoded(b) && b.len() == spec.width * spec.height * 3 => {
                // Model-sized RAW pixels in the model's colour order: no resize, no swap.
                frame_bytes += b.len();
                let rgb = if spec.bgr { swap_rb(b) } else { b.to_vec() };
                RgbImage { width: w, height: h, data: rgb }
            }
            Input::Bytes(b) if !looks_encoded(b) && b.len() == raw_len => {
                // Already the model's input tensor: pass it through.
                frame_bytes += b.len();
                tensors.push(preprocess::raw_tensor(b, info, &spec.shape, i)?);
                continue;
            }
            // PySDK fits the image in Python and hands the core the model-sized frame: that
            // frame's size is its CoreInputFrameSize_bytes.
            Input::Bytes(b) => {
                let img = image_ops::decode(b)?;
                image_wh = (img.width, img.height);
                let fit = image_ops::fit(&img, w, h, st.pre.pad, st.pre.crop_percentage, st.pre.resize, st.pre.fill_rgb)?;
                converter = fit.converter;
                frame_bytes += fit.image.data.len();
                fit.image
            }
            Input::Pixels { data, width, height, stride, bgr } => {
                let img = image_ops::from_raw(data, *width, *height, *stride, *bgr)?;
                image_wh = (img.width, img.height);
                let fit = image_ops::fit(&img, w, h, st.pre.pad, st.pre.crop_percentage, st.pre.resize, st.pre.fill_rgb)?;
                converter = fit.converter;
                frame_bytes += fit.image.data.len();
                fit.image
            }
        };
        let fitted = if st.pre.image_format == "JPEG" { image_ops::jpeg_roundtrip(&fitted)? } else { fitted };
        client_pre += tp.elapsed();
        tensors.push(spec.image_to_tensor(&fitted.data, info)?);
    }
    let t1 = Instant::now();
    let outputs = engine.run(&tensors).map_err(|e| Error::new(e.code, format!("Failed to perform model '{}' inference: {}", st.name, e.message)))?;
    let t2 = Instant::now();
    let cfg = &st.post;
    let ids: Vec<i64> = engine.outputs.iter().enumerate().map(|(i, o)| o.id.unwrap_or(i as i64)).collect();
    let failed = |e: Error| Error::new(e.code, format!("Failed to perform model '{}' inference: {}", st.name, e.message));
    let frame = || postprocess::custom::FrameInfo {
        image_width: image_wh.0,
        image_height: image_wh.1,
        input_width: input_wh.0 as u32,
        input_height: input_wh.1 as u32,
        converter: converter.clone(),
    };
    // CorePostprocessDuration_ms is the post-processor's own time, as PySDK's core key: the
    // mapping into the image (and `output_class_set`), which PySDK does in Python after its
    // core, counts in the frame's total only, as it does in PySDK and on the remote paths.
    let t3;
    let mut post = match custom.run(&outputs, &ids, &frame()) {
        // The caller's results are in image coordinates already (it has the frame's geometry).
        Some(r) => {
            let results = r.map_err(failed)?;
            t3 = Instant::now();
            postprocess::PostOutput { results, tensors: Vec::new(), has_coordinates: false }
        }
        None => {
            let mut post = postprocess::run(cfg, outputs, &ids, &st.labels, input_wh).map_err(failed)?;
            t3 = Instant::now();
            if post.has_coordinates {
                postprocess::map_coordinates_with_model(
                    &mut post.results,
                    &mut post.tensors,
                    &cfg.kind,
                    (input_wh.0 as f64, input_wh.1 as f64),
                    (image_wh.0 as f64, image_wh.1 as f64),
                    &|x, y| converter.to_original(x, y),
                )
                .map_err(failed)?;
            }
            post
        }
    };
    postprocess::filter_class_set(&mut post.results, &st.class_set);
    let pre_ms = p.bool("MeasureTime", 0).then_some(client_pre.as_secs_f64() * 1000.0);
    let timing = p.bool("MeasureTime", 0).then(|| {
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        json!({
            "CoreInferenceDuration_ms": ms(t1, t2),
            "CoreInputFrameSize_bytes": frame_bytes,
            "CorePostprocessDuration_ms": ms(t2, t3),
            // The core's part only: the client-side decode/fit is PythonPreprocessDuration_ms.
            "CorePreprocessDuration_ms": (ms(t0, t1) - client_pre.as_secs_f64() * 1000.0).max(0.0),
        })
    });
    Ok(InferenceResult { results: post.results, tensors: post.tensors, timing, pre_ms, model: st.name.clone() })
}

fn swap_rb(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    for px in v.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    v
}

/// Shape of a tensor input: the configured shape, with dynamic runtime dims resolved from it.
fn concrete_shape(p: &ModelParams, i: usize, info: &TensorInfo) -> Vec<i64> {
    let cfg = p.input_shape(i, Some(info.shape.len()));
    if info.shape.iter().all(|&d| d > 0) {
        info.shape.clone()
    } else {
        info.shape.iter().zip(cfg.iter().chain(std::iter::repeat(&1))).map(|(&d, &c)| if d > 0 { d } else { c.max(1) }).collect()
    }
}
