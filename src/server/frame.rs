//! Server-side inference for one stream: open (resolve the model, merge the client's runtime
//! parameters, get a shared engine) and run frames (decode the model-sized JPEG/RAW packets,
//! convert with `preprocess`, run the engine, `postprocess`). Results stay in model-input
//! coordinates: the client maps them to its original image.
use super::State;
use crate::error::Result as DgResult;
use crate::error::{Code, Error};
use crate::image_ops;
use crate::inference::{Engine, EngineKey};
use crate::params::ModelParams;
use crate::postprocess::{self, PostConfig};
use crate::preprocess::{self, InputSpec};
use crate::protocol;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An open stream: the effective parameters and the engine they run on.
pub struct StreamSession {
    pub name: String,
    pub params: ModelParams,
    engine: Arc<Engine>,
    labels: BTreeMap<i64, String>,
    state: Arc<State>,
}

impl State {
    /// Open a stream on model `name` with the client's `config`. The error is the text sent
    /// back to the client.
    pub fn open_stream(self: &Arc<Self>, name: &str, config: &Value) -> std::result::Result<StreamSession, String> {
        let entry = self.find(name).ok_or_else(|| {
            protocol::dg_error_text("ERROR", "Incorrect value of parameter", &format!("Model '{name}' is not found in model zoo"), &[])
        })?;
        self.open_entry(name, &entry, config)
    }

    /// Open a stream on a model given by its zoo entry (the hub's cloud inference runs models
    /// that are not in this server's zoo directory through here).
    pub fn open_entry(self: &Arc<Self>, name: &str, entry: &crate::zoo::local::ZooEntry, config: &Value) -> std::result::Result<StreamSession, String> {
        let mut params = entry.params.clone();
        params.merge_runtime(config);
        let fail = |e: Error| -> String {
            let msg = self.sanitize(&e.message);
            if msg.starts_with('[') {
                format!("{msg}\nWhen loading model '{name}'")
            } else {
                protocol::dg_error_text("ERROR", "Operation failed", &msg, &[format!("When loading model '{name}'")])
            }
        };
        params.check_version().map_err(fail)?;
        let engine = self.engine_for(&params).map_err(fail)?;
        let labels_path = params.str("LabelsPath", 0);
        let labels = if labels_path.is_empty() {
            BTreeMap::new()
        } else {
            std::fs::read_to_string(&labels_path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .map(|v| crate::model::harmonize_labels(&v))
                .unwrap_or_default()
        };
        self.log_info(&format!("stream opened on model '{name}'"));
        Ok(StreamSession { name: name.to_string(), params, engine, labels, state: self.clone() })
    }

    /// The shared engine for these parameters (created once, reused by every stream).
    fn engine_for(&self, params: &ModelParams) -> DgResult<Arc<Engine>> {
        let (rt, dev) = (params.str("RuntimeAgent", 0), params.str("DeviceType", 0));
        let pairs = params.device_pairs()?;
        let allowed = pairs.iter().any(|(r, d)| (r == "*" || *r == rt) && (d == "*" || *d == dev));
        if !allowed {
            return Err(Error::unsupported(format!(
                "Device type {rt}/{dev} is not supported by model. Supported device types are: {}",
                params.str("SupportedDeviceTypes", 0)
            )));
        }
        let n = self.system_info.get("Devices").and_then(|d| d.get(format!("{rt}/{dev}"))).and_then(Value::as_array).map_or(0, Vec::len);
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
        };
        // The cache lock only finds or adds the model's slot; loading happens under the slot's
        // own lock, so streams of other (loaded) models are not held up by a slow load, and
        // concurrent first streams of one model share a single load.
        let slot = {
            let mut cache = self.engines.lock().unwrap_or_else(|p| p.into_inner());
            match cache.iter().find(|s| s.key == key) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(EngineSlot { key: key.clone(), engine: Mutex::new(None) });
                    cache.push(s.clone());
                    s
                }
            }
        };
        let mut e = slot.engine.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = e.as_ref() {
            return Ok(e.clone());
        }
        // A failed load leaves the slot empty: the next stream tries again.
        let engine = Arc::new(Engine::new(key, params)?);
        *e = Some(engine.clone());
        Ok(engine)
    }
}

/// One cached engine (or one being loaded).
pub struct EngineSlot {
    pub key: EngineKey,
    pub engine: Mutex<Option<Arc<Engine>>>,
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
        match r {
            Ok(bytes) => bytes,
            Err(e) => {
                let msg = self.state.sanitize(&e.message);
                let text = if msg.starts_with('[') {
                    format!("{msg}\nWhen running model '{}'\n", self.name)
                } else {
                    protocol::dg_error_text("ERROR", "Operation failed", &msg, &[format!("When running model '{}'", self.name)])
                };
                self.state.log_info(&format!("frame error on model '{}': {}", self.name, msg.lines().next().unwrap_or_default()));
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
            if !crate::model::is_image_input(p, i) {
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
        let mut post = postprocess::run(&PostConfig::from_params(p), outputs, &ids, &self.labels, input_wh)?;
        if p.bool("MeasureTime", 0) {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
            let timing = json!({
                "CoreInferenceDuration_ms": ms(t1, t2),
                "CoreInputFrameSize_bytes": frame_bytes,
                "CorePostprocessDuration_ms": ms(t2, Instant::now()),
                "CorePreprocessDuration_ms": ms(t0, t1),
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
            protocol::dg_error_text("ERROR", "Incorrect value of parameter", &format!("Cannot reshape the tensor: received {got}, model input #{i} is {w}x{h}x3"), &[]),
        )
    };
    let fmt = p.str("InputImgFmt", i);
    let mut rgb = if fmt == "JPEG" {
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
