//! Server-side inference for one stream: open (resolve the model, merge the client's runtime
//! parameters, get a shared engine) and run frames (decode the model-sized JPEG/RAW packets,
//! convert with `preprocess`, run the engine, `postprocess`). Results stay in model-input
//! coordinates: the client maps them to its original image.
use super::trace::Group;
use super::State;
use crate::metrics as m;
use dgzoo::cache::CachedModel;
use dgzoo::error::Result as DgResult;
use dgzoo::error::{Code, Error};
use dgzoo::image_ops;
use dgzoo::inference::{Engine, EngineKey};
use dgzoo::params::ModelParams;
use dgzoo::postprocess::{self, PostConfig};
use dgzoo::preprocess::{self, InputSpec};
use dgzoo::protocol;
use dgzoo::zoo::local::ZooEntry;
use serde_json::{json, Value};

/// Most engines of one model file (different client-chosen `InputShape`s) kept at once: past
/// it the least recently used idle one is unloaded, and a new shape is refused while all are
/// in use.
pub const MAX_ENGINE_COPIES: usize = 4;
/// Largest dimension and element count of a client-chosen `InputShape`.
const MAX_SHAPE_DIM: i64 = 1 << 16;
const MAX_SHAPE_ELEMENTS: i64 = 1 << 28;

/// Checks the input shapes a client's config chose (those that differ from the zoo's): the
/// zoo's rank, positive dimensions, bounded sizes. The error is PySDK-style text.
fn check_client_shapes(zoo: &ModelParams, params: &ModelParams) -> std::result::Result<(), String> {
    for i in 0..params.num_inputs() {
        let (zs, cs) = (zoo.input_shape(i, None), params.input_shape(i, None));
        if zs == cs {
            continue;
        }
        let bad = |why: String| {
            protocol::dg_error_text("ERROR", "Incorrect value of parameter", &format!("InputShape {cs:?} of model input #{i} is invalid: {why}"), &[])
        };
        if !zs.is_empty() && cs.len() != zs.len() {
            return Err(bad(format!("the model's input has {} dimensions ({zs:?})", zs.len())));
        }
        if cs.is_empty() || cs.len() > 8 {
            return Err(bad("a shape has 1 to 8 dimensions".into()));
        }
        if cs.iter().any(|&d| !(1..=MAX_SHAPE_DIM).contains(&d)) {
            return Err(bad(format!("every dimension must be between 1 and {MAX_SHAPE_DIM}")));
        }
        if cs.iter().try_fold(1i64, |a, &d| a.checked_mul(d).filter(|&p| p <= MAX_SHAPE_ELEMENTS)).is_none() {
            return Err(bad(format!("more than {MAX_SHAPE_ELEMENTS} elements")));
        }
    }
    Ok(())
}

/// Cloud root used for `org/zoo/model` names when the client gives no `CloudURL`.
const DEFAULT_CLOUD_URL: &str = "https://hub.degirum.com";
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

/// An open stream: the effective parameters and the engine they run on.
pub struct StreamSession {
    pub name: String,
    pub params: ModelParams,
    /// `params`' post-processing settings, read once per stream (not per frame: 20-30 us).
    post: PostConfig,
    engine: Arc<Engine>,
    /// The engine's cache slot: its use time is set when the stream ends (`cache_dump`).
    slot: Arc<EngineSlot>,
    labels: BTreeMap<i64, String>,
    state: Arc<State>,
    /// The cache hold of a cloud model.
    _held: Option<CachedModel>,
}

impl Drop for StreamSession {
    fn drop(&mut self) {
        // PySDK's agent cache stamps an agent when a stream gives it back.
        self.slot.touch();
    }
}

impl State {
    /// The text sent back when model `name` cannot be loaded.
    fn load_failure(&self, name: &str, e: Error) -> String {
        let msg = self.sanitize(&e.message);
        if msg.starts_with('[') {
            format!("{msg}\nWhen loading model '{name}'")
        } else {
            protocol::dg_error_text("ERROR", "Operation failed", &msg, &[format!("When loading model '{name}'")])
        }
    }

    /// Open a stream on model `name` with the client's `config`. The error is the text sent
    /// back to the client.
    pub fn open_stream(self: &Arc<Self>, name: &str, config: &Value) -> std::result::Result<StreamSession, String> {
        let fail = |e: Error| self.load_failure(name, e);
        let not_found = || {
            protocol::dg_error_text(
                "ERROR",
                "Incorrect value of parameter",
                &format!("AI server model zoo: Cannot find the model in the model zoo with name = {name}"),
                &[],
            )
        };
        let (entry, held) = match self.find(name) {
            Some(e) => (e, None),
            // `org/zoo/model`: a cloud model, fetched into the model cache.
            None if name.split('/').count() == 3 && !name.split('/').any(str::is_empty) => {
                let (e, h) = self.cloud_entry(name, config).map_err(fail)?;
                (e, Some(h))
            }
            None => return Err(not_found()),
        };
        self.open_held(name, &entry, held, config)
    }

    /// Open a stream on a model given by its zoo entry (the hub's cloud inference runs models
    /// that are not in this server's zoo directory through here).
    pub fn open_entry(self: &Arc<Self>, name: &str, entry: &ZooEntry, config: &Value) -> std::result::Result<StreamSession, String> {
        self.open_held(name, entry, None, config)
    }

    fn open_held(self: &Arc<Self>, name: &str, entry: &ZooEntry, held: Option<CachedModel>, config: &Value) -> std::result::Result<StreamSession, String> {
        let fail = |e: Error| self.load_failure(name, e);
        let mut params = entry.params.clone();
        params.merge_runtime(config);
        params.check_version().map_err(fail)?;
        check_client_shapes(&entry.params, &params)?;
        let (engine, slot) = self.engine_for(&params).map_err(fail)?;
        // A client-chosen shape the model's tensors cannot take fails here, at open, and its
        // engine copy is not kept.
        for (i, info) in engine.inputs.iter().enumerate() {
            if dgzoo::model::is_image_input(&params, i) {
                if let Err(e) = InputSpec::new(&params, i, info) {
                    self.drop_idle_engine(&engine);
                    return Err(fail(e));
                }
            }
        }
        let labels = dgzoo::model::load_labels(&params);
        self.log_info(Group::AiServer, &format!("stream opened on model '{name}'"));
        let post = PostConfig::from_params(&params);
        Ok(StreamSession { name: name.to_string(), params, post, engine, slot, labels, state: self.clone(), _held: held })
    }

    /// A cloud model: `CloudURL` (default the public hub) and `CloudToken` (default the token
    /// saved on this machine) from the client's config; the archive comes through the model
    /// cache, which stays locked for the stream's life.
    fn cloud_entry(&self, name: &str, config: &Value) -> DgResult<(ZooEntry, CachedModel)> {
        let parts: Vec<&str> = name.split('/').collect();
        let (org, zoo, model) = (parts[0], parts[1], parts[2]);
        let url = config.get("CloudURL").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_CLOUD_URL);
        let cz = dgzoo::zoo::address::parse_cloud_url(&format!("{}/{org}/{zoo}", url.trim_end_matches('/')))
            .ok_or_else(|| Error::invalid(format!("incorrect cloud URL '{url}' for model '{name}'")))?;
        let token = match config.get("CloudToken").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(t) => t.to_string(),
            None => dgzoo::cloud::token::lookup(&cz.base(), dgzoo::settings::Settings::process()),
        };
        let client = dgzoo::cloud::CloudClient::new(&cz, &token);
        let info = client.model_info(model)?;
        let sum = ModelParams::from_value(info["model_params"].clone())?.str("Checksum", 0);
        let held = self.cache.ensure(&client, model, (!sum.is_empty()).then_some(sum.as_str()), &mut |_, _| {})?;
        let mut params = ModelParams::from_file(&held.config)?;
        params.absolutize_paths(&held.dir)?;
        let entry = ZooEntry { name: name.to_string(), params, config_path: held.config.clone() };
        Ok((entry, held))
    }

    /// The shared engine for these parameters (created once, reused by every stream).
    /// Unload least recently used models, never one a stream holds, until the loaded model
    /// files fit in `max_model_bytes` (the newest model always stays).
    fn evict_engines(&self) {
        let mut cache = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        let size = |s: &EngineSlot| std::fs::metadata(&s.key.model_path).map_or(0, |m| m.len());
        // A slot being loaded is skipped (try_lock), never waited for under the cache lock.
        let loaded = |s: &EngineSlot| s.engine.try_lock().is_ok_and(|e| e.is_some());
        let mut total: u64 = cache.iter().filter(|s| loaded(s)).map(|s| size(s)).sum();
        let mut i = 0;
        while total > self.max_model_bytes && i + 1 < cache.len() {
            let slot = cache[i].clone();
            let Ok(mut e) = slot.engine.try_lock() else {
                i += 1;
                continue;
            };
            // Only the slot holds an idle engine; streams hold a clone of the Arc.
            if e.as_ref().is_some_and(|eng| Arc::strong_count(eng) == 1) {
                total -= size(&slot);
                *e = None;
                drop(e);
                cache.remove(i);
                metrics::counter!(m::MODEL_UNLOADS, "model" => model_label(&slot.key)).increment(1);
                self.log_info(
                    Group::AgentCache,
                    &format!("unloaded model file '{}' (LRU limit)", slot.key.model_path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()),
                );
                continue;
            }
            i += 1;
        }
        publish_loaded(&cache);
    }

    fn engine_for(&self, params: &ModelParams) -> DgResult<(Arc<Engine>, Arc<EngineSlot>)> {
        let (rt, dev) = (params.str("RuntimeAgent", 0), params.str("DeviceType", 0));
        let pairs = params.device_pairs()?;
        let allowed = pairs.iter().any(|(r, d)| (r == "*" || *r == rt) && (d == "*" || *d == dev));
        if !allowed {
            return Err(Error::unsupported(format!(
                "Device type {rt}/{dev} is not supported by model. Supported device types are: {}",
                params.str("SupportedDeviceTypes", 0)
            )));
        }
        let n = self.system_info().get("Devices").and_then(|d| d.get(format!("{rt}/{dev}"))).and_then(Value::as_array).map_or(0, Vec::len);
        let mask = params.u64("DeviceMask", 0);
        let devices: Vec<u64> = (0..n as u64).filter(|&i| i < 64 && mask & (1 << i) != 0).collect();
        if devices.is_empty() {
            return Err(Error::unsupported(format!("no device of type {rt}/{dev} is available on the AI server")));
        }
        let key = EngineKey {
            runtime: rt,
            device: dev,
            model_path: PathBuf::from(params.str("ModelPath", 0)),
            input_shapes: (0..params.num_inputs()).map(|i| params.input_shape(i, None)).collect(),
            devices,
            extra: dgzoo::inference::extra_device_params(params),
        };
        // The cache lock only finds or adds the model's slot; loading happens under the slot's
        // own lock, so streams of other (loaded) models are not held up by a slow load, and
        // concurrent first streams of one model share a single load.
        let slot = {
            let mut cache = self.engines.lock().unwrap_or_else(|p| p.into_inner());
            // Most recently used last.
            let s = match cache.iter().position(|s| s.key == key) {
                Some(i) => cache.remove(i),
                None => {
                    // Bounded copies per model: unload the least recently used idle one.
                    let same = |s: &EngineSlot| s.key.model_path == key.model_path && s.key.runtime == key.runtime && s.key.device == key.device;
                    if cache.iter().filter(|s| same(s)).count() >= MAX_ENGINE_COPIES {
                        let idle =
                            cache.iter().position(|s| same(s) && s.engine.try_lock().is_ok_and(|e| e.as_ref().is_none_or(|eng| Arc::strong_count(eng) == 1)));
                        match idle {
                            Some(i) => {
                                let gone = cache.remove(i);
                                if gone.engine.try_lock().is_ok_and(|e| e.is_some()) {
                                    metrics::counter!(m::MODEL_UNLOADS, "model" => model_label(&gone.key)).increment(1);
                                }
                            }
                            None => {
                                return Err(Error::unsupported(format!(
                                    "at most {MAX_ENGINE_COPIES} input shapes of model '{}' can be in use at once",
                                    key.model_path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                                )))
                            }
                        }
                    }
                    Arc::new(EngineSlot { key: key.clone(), engine: Mutex::new(None), used: AtomicU64::new(0) })
                }
            };
            cache.push(s.clone());
            s
        };
        let mut e = slot.engine.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = e.as_ref() {
            return Ok((e.clone(), slot.clone()));
        }
        // A failed load leaves the slot empty: the next stream tries again.
        let label = model_label(&key);
        let engine = Arc::new(Engine::new(key, params, dgzoo::inference::Profile::Throughput { copies: self.model_copies })?);
        self.log_info(Group::AgentCache, &format!("loaded model file '{label}' on {}/{}", engine.key.runtime, engine.key.device));
        metrics::counter!(m::MODEL_LOADS, "model" => label).increment(1);
        *e = Some(engine.clone());
        slot.touch();
        drop(e);
        self.evict_engines();
        Ok((engine, slot))
    }
}

impl State {
    /// Unload `engine` if no stream uses it (the caller's reference aside).
    fn drop_idle_engine(&self, engine: &Arc<Engine>) {
        let mut cache = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        let pos = cache.iter().position(|s| s.engine.try_lock().is_ok_and(|e| e.as_ref().is_some_and(|x| Arc::ptr_eq(x, engine) && Arc::strong_count(x) == 2)));
        if let Some(i) = pos {
            let gone = cache.remove(i);
            metrics::counter!(m::MODEL_UNLOADS, "model" => model_label(&gone.key)).increment(1);
            publish_loaded(&cache);
        }
    }
}

/// The `model` label of engine metrics: the model file's name (bounded by the zoo and the cache).
fn model_label(key: &EngineKey) -> String {
    key.model_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Set the loaded-models gauges from the engine cache (its lock held by the caller). A slot
/// being loaded right now (its lock taken) is left out until the next change.
fn publish_loaded(cache: &[Arc<EngineSlot>]) {
    let loaded: Vec<&Arc<EngineSlot>> = cache.iter().filter(|s| s.engine.try_lock().is_ok_and(|e| e.is_some())).collect();
    let bytes: u64 = loaded.iter().map(|s| std::fs::metadata(&s.key.model_path).map_or(0, |md| md.len())).sum();
    metrics::gauge!(m::MODELS_LOADED).set(loaded.len() as f64);
    metrics::gauge!(m::MODELS_LOADED_BYTES).set(bytes as f64);
}

impl State {
    /// The engine cache as PySDK's `cache_dump` lists its agents: one entry per loaded model
    /// and device. A runtime that runs overlapping frames on one session (ONNX Runtime,
    /// OpenVINO) is one agent over all its selected devices, as PySDK's ONNX agent is; for
    /// the others (LiteRT) each session stands for one device of the selection, in order, as
    /// PySDK loads a TFLite agent per device once frames overlap.
    pub(super) fn agent_list(&self) -> Vec<Value> {
        let slots: Vec<Arc<EngineSlot>> = self.engines.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut list = Vec::new();
        for s in slots {
            // A slot being loaded (lock held) is not listed yet.
            let Some(engine) = s.engine.try_lock().ok().and_then(|e| e.clone()) else { continue };
            let masks: Vec<u64> = if engine.concurrent() {
                vec![s.key.devices.iter().fold(0u64, |m, d| m | (1u64 << d))]
            } else {
                s.key.devices.iter().take(engine.sessions()).map(|d| 1u64 << d).collect()
            };
            let size_mb = std::fs::metadata(&s.key.model_path).map_or(0, |m| m.len()) >> 20;
            let stamp = chrono::DateTime::from_timestamp(s.used_at() as i64, 0)
                .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            for mask in masks {
                list.push(json!({
                    "AgentType": s.key.runtime,
                    "DeviceMask": mask,
                    "DeviceType": s.key.device,
                    "ModelPath": s.key.model_path.to_string_lossy(),
                    "ModelSize_MB": size_mb,
                    "Timestamp": stamp,
                }));
            }
        }
        list
    }
}

/// One cached engine (or one being loaded).
pub struct EngineSlot {
    pub key: EngineKey,
    pub engine: Mutex<Option<Arc<Engine>>>,
    /// When the engine was loaded or a stream last gave it back (Unix seconds).
    used: AtomicU64,
}

impl EngineSlot {
    fn touch(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.used.store(now, Ordering::Relaxed);
    }

    /// When the engine was loaded or a stream last gave it back (Unix seconds).
    pub fn used_at(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl StreamSession {
    pub fn num_inputs(&self) -> usize {
        self.params.num_inputs().max(1)
    }

    /// Run one frame (one packet per input) and return the msgpack result packet: the result
    /// list, or a per-frame error map.
    pub fn run_frame(&self, packets: &[Vec<u8>]) -> Vec<u8> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(packets)))
            .unwrap_or_else(|_| Err(Error::internal("internal error while processing the frame")));
        let outcome = if r.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::FRAMES, "model" => self.name.clone(), "outcome" => outcome).increment(1);
        match r {
            Ok(bytes) => bytes,
            Err(e) => {
                let msg = self.state.sanitize(&e.message);
                let text = if msg.starts_with('[') {
                    format!("{msg}\nWhen running model '{}'\n", self.name)
                } else {
                    protocol::dg_error_text("ERROR", "Operation failed", &msg, &[format!("When running model '{}'", self.name)])
                };
                self.state.log_info(Group::Runtime, &format!("frame error on model '{}': {}", self.name, msg.lines().next().unwrap_or_default()));
                protocol::encode(&protocol::frame_err(&text))
            }
        }
    }

    fn run(&self, packets: &[Vec<u8>]) -> DgResult<Vec<u8>> {
        let p = &self.params;
        let t0 = Instant::now();
        let mut tensors = Vec::with_capacity(packets.len());
        let mut input_wh = (1f32, 1f32);
        let mut frame_bytes = 0usize;
        for (i, (data, info)) in packets.iter().zip(&self.engine.inputs).enumerate() {
            frame_bytes += data.len();
            if data.is_empty() {
                return Err(Error::invalid(protocol::dg_error_text("ERROR", "Incorrect value of parameter", "empty data is received: ignoring", &[])));
            }
            if !dgzoo::model::is_image_input(p, i) {
                tensors.push(preprocess::raw_tensor(data, info, &p.input_shape(i, Some(info.shape.len())), i)?);
                continue;
            }
            let spec = InputSpec::new(p, i, info)?;
            input_wh = (spec.width as f32, spec.height as f32);
            let rgb = decode_image(p, i, &spec, data)?;
            tensors.push(spec.image_to_tensor(&rgb, info)?);
        }
        let t1 = Instant::now();
        let outputs = self.engine.run(&tensors)?;
        let t2 = Instant::now();
        let ids: Vec<i64> = self.engine.outputs.iter().enumerate().map(|(i, o)| o.id.unwrap_or(i as i64)).collect();
        let mut post = postprocess::run(&self.post, outputs, &ids, &self.labels, input_wh)?;
        let t3 = Instant::now();
        // One set of clock readings for both the metrics and the client's `Timing` block.
        let (pre, inf, postp) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64());
        metrics::histogram!(m::PREPROCESS_SECONDS, "model" => self.name.clone()).record(pre);
        metrics::histogram!(m::INFERENCE_SECONDS, "model" => self.name.clone()).record(inf);
        metrics::histogram!(m::POSTPROCESS_SECONDS, "model" => self.name.clone()).record(postp);
        if p.bool("MeasureTime", 0) {
            let timing = json!({
                "CoreInferenceDuration_ms": inf * 1000.0,
                "CoreInputFrameSize_bytes": frame_bytes,
                "CorePostprocessDuration_ms": postp * 1000.0,
                "CorePreprocessDuration_ms": pre * 1000.0,
            });
            match post.results.first_mut().and_then(Value::as_object_mut) {
                Some(o) => {
                    o.insert("Timing".into(), timing);
                }
                None => post.results.insert(0, json!({"Timing": timing})),
            }
        }
        Ok(protocol::encode_results(&post.results, &post.tensors))
    }
}

/// A model-sized image packet → interleaved RGB8 (what `InputSpec::image_to_tensor` takes).
fn decode_image(p: &ModelParams, i: usize, spec: &InputSpec, data: &[u8]) -> DgResult<Vec<u8>> {
    let (w, h) = (spec.width, spec.height);
    let reshape_err = |got: String| {
        Error::new(
            Code::InvalidArgument,
            protocol::dg_error_text(
                "ERROR",
                "Incorrect value of parameter",
                &format!("Cannot reshape the tensor: received {got}, model input #{i} is {w}x{h}x3"),
                &[],
            ),
        )
    };
    let fmt = p.str("InputImgFmt", i);
    let mut rgb = if fmt == "JPEG" {
        // Frames must be model-sized: compare the size the header declares before decoding,
        // so a small file declaring a huge image costs no memory and no decoding time.
        let (hw, hh) = image_ops::declared_dimensions(data)?;
        if hw as usize != w || hh as usize != h {
            return Err(reshape_err(format!("a {hw}x{hh} image")));
        }
        let img = image_ops::decode(data)?;
        if img.width as usize != w || img.height as usize != h {
            return Err(reshape_err(format!("a {}x{} image", img.width, img.height)));
        }
        // JPEG frames decode to RGB already; no colour swap below.
        return Ok(img.data);
    } else {
        match p.str("InputRawDataType", i).as_str() {
            "DG_FLT" => {
                if data.len() != w * h * 3 * 4 {
                    return Err(reshape_err(format!("{} bytes", data.len())));
                }
                data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).round().clamp(0.0, 255.0) as u8).collect::<Vec<u8>>()
            }
            "DG_UINT8" => {
                if data.len() != w * h * 3 {
                    return Err(reshape_err(format!("{} bytes", data.len())));
                }
                data.to_vec()
            }
            other => return Err(Error::unsupported(format!("RAW image data type '{other}' is not supported"))),
        }
    };
    // RAW pixels arrive in the model's colour order; the tensor conversion takes RGB.
    if spec.bgr {
        for px in rgb.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
    Ok(rgb)
}

/// Open a stream without holding a runtime worker (a model load can take seconds).
pub(crate) async fn open_stream(state: &Arc<State>, name: String, config: Value) -> std::result::Result<Arc<StreamSession>, String> {
    let (st, span) = (state.clone(), tracing::Span::current());
    tokio::task::spawn_blocking(move || span.in_scope(|| st.open_stream(&name, &config).map(Arc::new))).await.unwrap_or_else(|e| Err(e.to_string()))
}

/// Frames of one stream accepted but not yet answered: past it the stream's reader pauses
/// (back-pressure on that client's socket only).
pub const MAX_IN_FLIGHT: usize = 8;

/// The frames of one stream: packets are grouped into frames (one packet per model input),
/// each frame runs on the process-wide bounded blocking pool ([`crate::net::blocking_for`], one
/// fair share per stream) as soon as it is complete, and results come back strictly in frame
/// order.
pub(crate) struct FrameQueue {
    session: Arc<StreamSession>,
    partial: Vec<Vec<u8>>,
    in_flight: futures_util::stream::FuturesOrdered<tokio::task::JoinHandle<Vec<u8>>>,
    /// The stream's share of the blocking pool.
    client: crate::fair_pool::ClientId,
    /// Frames started so far (for the stream's closing log line).
    pub(crate) frames: u64,
}

impl FrameQueue {
    pub(crate) fn new(session: Arc<StreamSession>) -> Self {
        FrameQueue { session, partial: Vec::new(), in_flight: Default::default(), client: crate::fair_pool::ClientId::fresh(), frames: 0 }
    }

    /// Add one packet; a completed frame starts running at once.
    pub(crate) fn push_packet(&mut self, packet: Vec<u8>) {
        self.partial.push(packet);
        if self.partial.len() < self.session.num_inputs() {
            return;
        }
        let (s, frame) = (self.session.clone(), std::mem::take(&mut self.partial));
        self.frames += 1;
        let in_flight = m::InFlight::start();
        let client = self.client;
        let job = tokio::spawn(
            async move {
                let _in_flight = in_flight;
                let s2 = s.clone();
                match crate::net::blocking_for(client, move || s2.run_frame(&frame)).await {
                    Ok(r) => r,
                    Err(e) => protocol::encode(&protocol::frame_err(&protocol::dg_error_text("ERROR", "Operation failed", &e, &[]))),
                }
            }
            .instrument(tracing::Span::current()),
        );
        self.in_flight.push_back(job);
    }

    /// The model the stream runs.
    pub(crate) fn session_name(&self) -> &str {
        &self.session.name
    }

    /// No frame is waiting for its result.
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT
    }

    /// The next result in frame order (`None` when nothing is in flight).
    pub(crate) async fn next_result(&mut self) -> Option<Vec<u8>> {
        let r = futures_util::StreamExt::next(&mut self.in_flight).await?;
        Some(r.unwrap_or_else(|e| protocol::encode(&protocol::frame_err(&protocol::dg_error_text("ERROR", "Operation failed", &e.to_string(), &[])))))
    }
}
