//! A loaded model: its parameters, PySDK's model properties (results-and-properties.md §2)
//! and the entry points for inference. `Model` is a cheap handle (`Arc`) usable from many
//! threads; property changes are copy-on-write so in-flight frames keep the settings they
//! started with.
use crate::cloud::infer::CloudBackend;
use crate::error::{Error, Result};
use crate::filter::{self, DevicePair};
use crate::image_ops::{PadMethod, ResizeMethod};
use crate::inference::{Engine, EngineKey, InferenceResult, Input};
use crate::params::ModelParams;
use crate::pyrepr::repr;
use crate::remote::RemoteBackend;
pub use crate::state::{is_image_input, ClientPre, ModelState};
use crate::timestats::TimeStats;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Largest frame queue depth PySDK accepts.
pub const MAX_FRAME_QUEUE_DEPTH: u64 = 160;

const RESIZE_METHODS: &str = "('nearest', 'bilinear', 'area', 'bicubic', 'lanczos')";
const PAD_METHODS: &str = "('stretch', 'letterbox', 'crop-first', 'crop-last')";
const IMAGE_FORMATS: &str = "('JPEG', 'RAW')";
const BACKENDS: &str = "('pil', 'opencv', 'auto')";
const COLOR_SPACES: &str = "('RGB', 'BGR', 'auto')";

pub(crate) struct ModelShared {
    pub name: String,
    pub system_info: Value,
    pub supported: Vec<String>,
    pub labels: Arc<BTreeMap<i64, String>>,
    pub state: RwLock<Arc<ModelState>>,
    /// Where frames run, chosen once at load.
    pub backend: Backend,
    /// Resources that must live as long as the model (e.g. the cache lock keeping a cloud
    /// model's files from being evicted).
    pub keep_alive: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
    /// PySDK's `time_stats()`, collected while `measure_time` is on.
    pub time_stats: Mutex<TimeStats>,
}

/// Where a model's frames run: chosen once, when the zoo loads the model.
pub(crate) enum Backend {
    /// This process's runtimes; the engine is created on first use and re-created when the
    /// settings it depends on change.
    Local(Mutex<Option<Arc<Engine>>>),
    /// An AI server (asio or HTTP/WebSocket streams).
    AiServer(RemoteBackend),
    /// DeGirum's cloud or `dgzoo hub` (socket.io).
    Cloud(CloudBackend),
}

/// A model handle. Clones share the model.
#[derive(Clone)]
pub struct Model(pub(crate) Arc<ModelShared>);

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({})", self.0.name)
    }
}

/// PySDK's `_harmonize_label_dictionary`: keep integer-like keys, values as strings.
pub fn harmonize_labels(v: &Value) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(id) = k.parse::<i64>() {
                    let s = match val {
                        Value::String(s) => s.clone(),
                        other => crate::pyrepr::repr(other),
                    };
                    out.insert(id, s);
                }
            }
        }
    }
    out
}

/// The harmonised label dictionary of the file `LabelsPath` names (empty if none or unreadable).
pub fn load_labels(params: &ModelParams) -> BTreeMap<i64, String> {
    let path = params.str("LabelsPath", 0);
    if path.is_empty() {
        return BTreeMap::new();
    }
    std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).map(|v| harmonize_labels(&v)).unwrap_or_default()
}

fn timeout_for(params: &ModelParams) -> f64 {
    if params.str("RuntimeAgent", 0) == "TENSORRT" {
        180.0
    } else if params.str("DeviceType", 0) == "CPU" {
        100.0
    } else {
        40.0
    }
}

fn has_image_input(params: &ModelParams) -> bool {
    (0..params.num_inputs()).any(|i| params.str("InputType", i) == "Image")
}

fn as_f64(k: &str, v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| Error::invalid(format!("Model property '{k}' must be a number, not {}", repr(v))))
}
fn as_bool(k: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| Error::invalid(format!("Model property '{k}' must be a boolean, not {}", repr(v))))
}
fn as_int(k: &str, v: &Value) -> Result<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .ok_or_else(|| Error::invalid(format!("Model property '{k}' must be an integer, not {}", repr(v))))
}
fn as_str<'a>(k: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| Error::invalid(format!("Model property '{k}' must be a string, not {}", repr(v))))
}

/// PySDK's `validate_color_tuple`: exactly three 0..255 integers.
fn color(v: &Value) -> Result<[u8; 3]> {
    let bad = || Error::invalid(format!("Given color '{}' must have exactly three elements", py_tuple(v)));
    let a = v.as_array().ok_or_else(bad)?;
    if a.len() != 3 {
        return Err(bad());
    }
    let mut c = [0u8; 3];
    for (i, x) in a.iter().enumerate() {
        c[i] = x.as_u64().filter(|&n| n <= 255).ok_or_else(|| Error::invalid(format!("Given color '{}' must contain integers in range 0..255", py_tuple(v))))?
            as u8;
    }
    Ok(c)
}

/// A JSON list shown as the Python tuple PySDK users would have passed.
fn py_tuple(v: &Value) -> String {
    match v.as_array() {
        Some(a) if a.len() == 1 => format!("({},)", repr(&a[0])),
        Some(a) => format!("({})", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
        None => repr(v),
    }
}

/// Properties that exist on PySDK's `Model` base class.
const PROPERTIES: &[&str] = &[
    "custom_postprocessor",
    "eager_batch_size",
    "extra_device_params",
    "frame_queue_depth",
    "supported_device_types",
    "device_type",
    "devices_available",
    "devices_selected",
    "model_info",
    "inference_timeout_s",
    "measure_time",
    "non_blocking_batch_predict",
    "label_dictionary",
    "input_resize_method",
    "input_shape",
    "input_pad_method",
    "input_numpy_colorspace",
    "input_letterbox_fill_color",
    "input_crop_percentage",
    "image_backend",
    "input_image_format",
    "save_model_image",
    "output_postprocess_type",
    "inference_results_type",
    "output_class_set",
    "output_confidence_threshold",
    "output_top_k",
    "output_nms_threshold",
    "output_pose_threshold",
    "output_max_detections",
    "output_max_detections_per_class",
    "output_max_classes_per_detection",
    "output_use_regular_nms",
    "overlay_color",
    "overlay_line_width",
    "overlay_show_labels",
    "overlay_show_probabilities",
    "overlay_alpha",
    "overlay_blur",
    "overlay_font_scale",
];
/// Attributes of `Model` that are methods, not properties.
const METHODS: &[&str] =
    &["predict", "predict_batch", "predict_dir", "time_stats", "reset_time_stats", "get_inference_results_type", "get_inference_results_class"];
const READ_ONLY: &[&str] = &["supported_device_types", "devices_available", "model_info", "label_dictionary"];
/// Properties of local models only (not accepted by `load_model`).
const LOCAL_ONLY: &[&str] = &["update_if_newer"];

/// Parameter-backed properties: (property, parameter).
const PARAM_PROPS: &[(&str, &str)] = &[
    ("eager_batch_size", "EagerBatchSize"),
    ("output_postprocess_type", "OutputPostprocessType"),
    ("inference_results_type", "InferenceResultsType"),
    ("output_confidence_threshold", "OutputConfThreshold"),
    ("output_top_k", "OutputTopK"),
    ("output_nms_threshold", "OutputNMSThreshold"),
    ("output_pose_threshold", "PoseThreshold"),
    ("output_max_detections", "MaxDetections"),
    ("output_max_detections_per_class", "MaxDetectionsPerClass"),
    ("output_max_classes_per_detection", "MaxClassesPerDetection"),
    ("output_use_regular_nms", "UseRegularNMS"),
];

impl Model {
    /// A local-inference model named `name` with the parameters of its configuration file
    /// `config_path`. Fails like PySDK when no runtime/device of this system can run it.
    pub(crate) fn new_local(
        name: &str,
        params: &ModelParams,
        config_path: &std::path::Path,
        system_info: &Value,
        system_pairs: &[DevicePair],
    ) -> Result<Model> {
        let params = params.clone();
        params.validate().map_err(|e| e.context(format!("model '{}' ({})", name, config_path.display())))?;
        let supported = filter::supported_device_types(&params, system_pairs)?;
        if supported.is_empty() {
            return Err(Error::unsupported(format!("Model '{}' does not have any supported runtime/device combinations that will work on this system.", name))
                .with_reason(crate::error::Reason::NoSupportedDevice));
        }
        let labels = load_labels(&params);
        // Local inference sends RAW pixels (PySDK's local default).
        Self::build(name, params, system_info, supported, labels, "RAW", Backend::Local(Mutex::new(None)))
    }

    /// A model that runs on an AI server: parameters and labels come from the server, images
    /// go as JPEG by default (PySDK's AI-server default). No supported-device check, like PySDK.
    pub(crate) fn new_remote(
        name: &str,
        params: ModelParams,
        labels: &Value,
        system_info: &Value,
        system_pairs: &[DevicePair],
        backend: RemoteBackend,
    ) -> Result<Model> {
        let supported = filter::supported_device_types(&params, system_pairs).unwrap_or_default();
        Self::build(name, params, system_info, supported, harmonize_labels(labels), "JPEG", Backend::AiServer(backend))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        name: &str,
        params: ModelParams,
        system_info: &Value,
        supported: Vec<String>,
        labels: BTreeMap<i64, String>,
        image_format: &str,
        backend: Backend,
    ) -> Result<Model> {
        let labels = Arc::new(labels);
        let resize_name = params.str("InputResizeMethod", 0);
        let pad_name = params.str("InputPadMethod", 0);
        let pre = ClientPre {
            resize: ResizeMethod::parse(&resize_name).unwrap_or(ResizeMethod::Bilinear),
            resize_name,
            pad: PadMethod::parse(&pad_name).unwrap_or(PadMethod::Letterbox),
            pad_name,
            crop_percentage: params.f64("InputCropPercentage", 0),
            fill_rgb: [0, 0, 0],
            numpy_colorspace: "auto".into(),
            image_backend: {
                // `auto` resolves to opencv, whose behaviour our image pipeline reproduces.
                let b = params.str("ImageBackend", 0);
                if b == "auto" || b.is_empty() {
                    "opencv".into()
                } else {
                    b
                }
            },
            image_format: image_format.into(),
        };
        let post = Arc::new(crate::postprocess::PostConfig::from_params(&params));
        let mut state = ModelState {
            name: name.to_string(),
            labels: labels.clone(),
            inference_timeout_s: timeout_for(&params),
            params,
            pre,
            class_set: Vec::new(),
            save_model_image: false,
            non_blocking_batch_predict: false,
            update_if_newer: false,
            overlay: default_overlay(),
            custom_post: Default::default(),
            post,
        };
        for i in 0..state.params.num_inputs() {
            if state.params.str("InputType", i) == "Image" {
                state.params.set("InputImgFmt", i, json!(image_format))?;
            }
        }
        Ok(Model(Arc::new(ModelShared {
            name: name.to_string(),
            system_info: system_info.clone(),
            supported,
            labels,
            state: RwLock::new(Arc::new(state)),
            backend,
            keep_alive: Mutex::new(Vec::new()),
            time_stats: Mutex::new(TimeStats::default()),
        })))
    }

    /// A `@cloud` model: parameters and labels from the cloud zoo, frames over socket.io,
    /// JPEG by default (PySDK's cloud default); `supported` is the device check's result.
    pub(crate) fn new_cloud(
        name: &str,
        params: ModelParams,
        labels: &Value,
        system_info: &Value,
        supported: Vec<String>,
        backend: CloudBackend,
    ) -> Result<Model> {
        Self::build(name, params, system_info, supported, harmonize_labels(labels), "JPEG", Backend::Cloud(backend))
    }

    /// The model's `overlay_*` settings for drawing its results (PySDK's palette for a
    /// detection-family model whose `overlay_color` is the default).
    pub fn overlay_settings(&self) -> crate::overlay::Settings {
        let st = self.state();
        let color = self.get_property("overlay_color").unwrap_or(Value::Null);
        crate::overlay::Settings::from_properties(&st.overlay, &color, st.pre.fill_rgb)
    }

    /// `results` of this model drawn on `frame` (JPEG/PNG/BMP bytes of the original image),
    /// encoded as `format`: PySDK's `image_overlay`. `tensors` are the result's
    /// ([`InferenceResult::tensors`](crate::frame::InferenceResult)): instance masks and semantic
    /// class maps live there.
    pub fn overlay(&self, frame: &[u8], results: &[Value], tensors: &[crate::runtime::Tensor], format: crate::overlay::Format) -> Result<Vec<u8>> {
        let img = crate::image_ops::decode(frame)?;
        crate::overlay::encode(&self.overlay_owned(img, results, tensors)?, format)
    }

    /// `results` of this model drawn on the original frame's pixels: PySDK's `image_overlay`
    /// (its size grows only for classification results, whose lines go in a band below).
    pub fn overlay_image(&self, frame: &crate::image_ops::RgbImage, results: &[Value]) -> Result<crate::image_ops::RgbImage> {
        self.overlay_with_tensors(frame, results, &[])
    }

    /// `overlay_image` of a whole result: its tensors may hold instance masks or a semantic class map.
    pub fn overlay_with_tensors(
        &self,
        frame: &crate::image_ops::RgbImage,
        results: &[Value],
        tensors: &[crate::runtime::Tensor],
    ) -> Result<crate::image_ops::RgbImage> {
        self.overlay_owned(frame.clone(), results, tensors)
    }

    /// `overlay_with_tensors` on a frame the caller gives away (drawn in place when it can be).
    pub fn overlay_owned(
        &self,
        frame: crate::image_ops::RgbImage,
        results: &[Value],
        tensors: &[crate::runtime::Tensor],
    ) -> Result<crate::image_ops::RgbImage> {
        let geometry = self.overlay_geometry(frame.width, frame.height, results)?;
        crate::overlay::draw_owned(frame, results, tensors, &self.overlay_settings(), self.labels(), geometry.as_ref())
    }

    /// `results` of this model drawn straight onto the caller's pixels, no copy made
    /// (`overlay::draw_into`: `height` rows of `width` RGB or, with `bgr`, BGR pixels `stride`
    /// bytes apart); classification results, whose lines PySDK puts in a band under the
    /// image, are refused as `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    pub fn overlay_into(
        &self,
        frame: &mut [u8],
        width: u32,
        height: u32,
        stride: usize,
        bgr: bool,
        results: &[Value],
        tensors: &[crate::runtime::Tensor],
    ) -> Result<()> {
        let geometry = self.overlay_geometry(width, height, results)?;
        crate::overlay::draw_into(frame, width, height, stride, bgr, results, tensors, &self.overlay_settings(), self.labels(), geometry.as_ref())
    }

    /// Where the model's input sits in `frame`, when `results` need it to be drawn (masks in
    /// model-input coordinates, semantic class maps): the converter the frame's prediction used.
    fn overlay_geometry(&self, width: u32, height: u32, results: &[Value]) -> Result<Option<crate::overlay::Geometry>> {
        let st = self.state();
        let semantic =
            crate::postprocess::PostprocessType::parse(&st.params.str("OutputPostprocessType", 0)) == crate::postprocess::PostprocessType::Segmentation;
        if !crate::overlay::needs_geometry(results, semantic) {
            return Ok(None);
        }
        let s = st.params.input_shape(0, None);
        let (w, h) = match s.as_slice() {
            [_, h, w, _] if *h > 0 && *w > 0 => (*w as u32, *h as u32),
            _ => return Err(Error::bad_model(format!("overlay: cannot determine the image size of the model input (shape {s:?})"))),
        };
        let converter = crate::image_ops::fit_converter(width, height, w, h, st.pre.pad, st.pre.crop_percentage);
        Ok(Some(crate::overlay::Geometry { model_w: w, model_h: h, converter, semantic }))
    }

    /// PySDK's `time_stats()`: a copy of the statistics collected so far.
    pub fn time_stats(&self) -> TimeStats {
        self.0.time_stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// PySDK's `reset_time_stats()`.
    pub fn reset_time_stats(&self) {
        self.0.time_stats.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Record a finished frame (`measure_time` on in the settings it ran with): the
    /// client-side pre-processing time, the backend's `Timing` keys, and the frame's total
    /// time since `started`, in PySDK's order.
    pub(crate) fn record_time(&self, st: &ModelState, started: Instant, r: &InferenceResult) {
        if !st.params.bool("MeasureTime", 0) {
            return;
        }
        let total = started.elapsed().as_secs_f64() * 1000.0;
        let mut ts = self.0.time_stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pre) = r.pre_ms {
            ts.add(crate::timestats::PREPROCESS_KEY, pre);
        }
        if let Some(t) = &r.timing {
            ts.add_timing(t);
        }
        ts.add(crate::timestats::FRAME_TOTAL_KEY, total);
    }

    /// The cloud backend, for `@cloud` models.
    pub(crate) fn cloud_backend(&self) -> Option<&CloudBackend> {
        match &self.0.backend {
            Backend::Cloud(cb) => Some(cb),
            _ => None,
        }
    }

    /// The AI-server backend, for models loaded from an AI server.
    pub(crate) fn remote(&self) -> Option<&RemoteBackend> {
        match &self.0.backend {
            Backend::AiServer(rb) => Some(rb),
            _ => None,
        }
    }

    /// PySDK's `custom_postprocessor`: `f` gets each frame's raw output tensors and replaces
    /// the built-in post-processor (None restores it); `output_class_set` still applies to its
    /// results. On every backend: an AI-server or cloud model then asks its server for raw
    /// tensors (`OutputPostprocessType` "None" in the stream's model parameters) and runs `f`
    /// here; a frame already sent before `f` was set keeps the built-in results. Returns once
    /// no frame is still inside the post-processor replaced.
    pub fn set_custom_postprocessor(&self, f: Option<Arc<crate::postprocess::custom::PostprocessFn>>) -> Result<()> {
        // Every state made from this one (property changes clone it) shares the hook.
        self.state().custom_post.set(f);
        Ok(())
    }

    /// Does this model run on an AI server or the cloud?
    pub fn is_remote(&self) -> bool {
        !matches!(self.0.backend, Backend::Local(_))
    }

    /// Make sure the model can run: loads the local engine (remote models need nothing).
    pub(crate) fn ready(&self) -> Result<()> {
        if !self.is_remote() {
            self.engine(&self.state())?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Keep `r` alive as long as the model.
    pub(crate) fn keep_alive(&self, r: Box<dyn std::any::Any + Send + Sync>) {
        self.0.keep_alive.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }

    /// Snapshot of the current settings.
    pub fn state(&self) -> Arc<ModelState> {
        self.0.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn labels(&self) -> &BTreeMap<i64, String> {
        &self.0.labels
    }

    fn devices_available(&self, params: &ModelParams) -> Vec<u64> {
        // PySDK's cloud model: the cloud decides, every mask bit is available.
        if self.cloud_backend().is_some() {
            return (0..64).collect();
        }
        let key = format!("{}/{}", params.str("RuntimeAgent", 0), params.str("DeviceType", 0));
        let n = self.0.system_info.get("Devices").and_then(|d| d.get(&key)).and_then(Value::as_array).map_or(0, Vec::len);
        (0..n as u64).collect()
    }

    fn devices_selected(&self, params: &ModelParams) -> Vec<u64> {
        let avail = self.devices_available(params);
        let mask = params.u64("DeviceMask", 0);
        (0..64u64).filter(|b| mask & (1u64 << b) != 0 && avail.contains(b)).collect()
    }

    /// Property value as JSON.
    pub fn get_property(&self, key: &str) -> Result<Value> {
        let st = self.state();
        let p = &st.params;
        if let Some((_, param)) = PARAM_PROPS.iter().find(|(k, _)| *k == key) {
            return Ok(p.get(param, 0));
        }
        let image_prop = matches!(
            key,
            "input_resize_method"
                | "input_pad_method"
                | "input_numpy_colorspace"
                | "input_letterbox_fill_color"
                | "input_crop_percentage"
                | "image_backend"
                | "input_image_format"
        );
        if image_prop && !has_image_input(p) {
            return Err(Error::invalid("Cannot access preprocessor image-related properties: the model has no image type inputs"));
        }
        Ok(match key {
            "custom_postprocessor" => Value::Null,
            "extra_device_params" => p.get("ExtraDeviceParams", 0),
            "frame_queue_depth" => p.get("FrameQueueDepth", 0),
            "supported_device_types" => json!(self.0.supported),
            "device_type" => json!(format!("{}/{}", p.str("RuntimeAgent", 0), p.str("DeviceType", 0))),
            "devices_available" => json!(self.devices_available(p)),
            "devices_selected" => json!(self.devices_selected(p)),
            "model_info" => p.full_form(),
            "inference_timeout_s" => json!(st.inference_timeout_s),
            "measure_time" => p.get("MeasureTime", 0),
            "non_blocking_batch_predict" => json!(st.non_blocking_batch_predict),
            "label_dictionary" => Value::Object(self.0.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
            "input_resize_method" => json!(st.pre.resize_name),
            "input_shape" => json!((0..p.num_inputs()).map(|i| p.input_shape(i, None)).collect::<Vec<_>>()),
            "input_pad_method" => json!(st.pre.pad_name),
            "input_numpy_colorspace" => json!(st.pre.numpy_colorspace),
            "input_letterbox_fill_color" => json!(st.pre.fill_rgb),
            "input_crop_percentage" => json!(st.pre.crop_percentage),
            "image_backend" => json!(st.pre.image_backend),
            "input_image_format" => json!(st.pre.image_format),
            "save_model_image" => json!(st.save_model_image),
            "output_class_set" => {
                let mut v = st.class_set.clone();
                v.sort_by(|a, b| match (a, b) {
                    (Value::String(x), Value::String(y)) => x.cmp(y),
                    _ => a.as_i64().cmp(&b.as_i64()),
                });
                Value::Array(v)
            }
            "update_if_newer" => json!(st.update_if_newer),
            "overlay_color" if !st.overlay.contains_key("overlay_color") => default_overlay_color(&st.params, self.labels())?,
            k if k.starts_with("overlay_") && st.overlay.contains_key(k) => st.overlay[k].clone(),
            k if METHODS.contains(&k) => return Err(Error::invalid(format!("'{k}' is a method, not a property"))),
            k => return Err(Error::not_found(format!("Model property '{k}' does not exist"))),
        })
    }

    /// A property passed to `load_model`: PySDK's checks for unknown, non-property and read-only names.
    pub fn set_property_from_load(&self, key: &str, value: &Value) -> Result<()> {
        if LOCAL_ONLY.contains(&key) {
            return Err(Error::not_found(format!("Model property '{key}' does not exist")));
        }
        self.set_property(key, value)
    }

    /// Set a property with PySDK's validation.
    pub fn set_property(&self, key: &str, value: &Value) -> Result<()> {
        if METHODS.contains(&key) {
            return Err(Error::invalid(format!("Cannot set model property '{key}': it is not a property")));
        }
        if READ_ONLY.contains(&key) {
            return Err(Error::invalid(format!("Cannot set model property '{key}': it is read-only")));
        }
        if !PROPERTIES.contains(&key) && !LOCAL_ONLY.contains(&key) {
            return Err(Error::not_found(format!("Model property '{key}' does not exist")));
        }
        let mut guard = self.0.state.write().unwrap_or_else(|p| p.into_inner());
        let mut st: ModelState = (**guard).clone();
        self.apply(&mut st, key, value)?;
        st.post = Arc::new(crate::postprocess::PostConfig::from_params(&st.params));
        *guard = Arc::new(st);
        Ok(())
    }

    fn apply(&self, st: &mut ModelState, key: &str, v: &Value) -> Result<()> {
        if let Some((_, param)) = PARAM_PROPS.iter().find(|(k, _)| *k == key) {
            return st.params.set(param, 0, v.clone()).map_err(|e| Error::invalid(format!("Model property '{key}': {}", e.message)));
        }
        let image_prop = matches!(
            key,
            "input_resize_method"
                | "input_pad_method"
                | "input_numpy_colorspace"
                | "input_letterbox_fill_color"
                | "input_crop_percentage"
                | "image_backend"
                | "input_image_format"
        );
        if image_prop && !has_image_input(&st.params) {
            return Err(Error::invalid("Cannot access preprocessor image-related properties: the model has no image type inputs"));
        }
        match key {
            "custom_postprocessor" => {
                if !v.is_null() {
                    return Err(Error::unsupported("custom_postprocessor takes a Python class in PySDK: set a post-processor callback with dg_model_set_postprocessor (Model::set_custom_postprocessor) instead"));
                }
            }
            "extra_device_params" => {
                // PySDK: a dict replaces ExtraDeviceParams as a whole (no merge).
                if !v.is_object() {
                    let t = match v {
                        Value::Null => "NoneType",
                        Value::String(_) => "str",
                        Value::Array(_) => "list",
                        other => json_type(other),
                    };
                    return Err(Error::invalid(format!("extra_device_params must be a dictionary, not `{t}`")));
                }
                st.params.set("ExtraDeviceParams", 0, v.clone())?;
            }
            "frame_queue_depth" => {
                let d = as_int(key, v)?;
                if d < 1 || d as u64 > MAX_FRAME_QUEUE_DEPTH {
                    return Err(Error::invalid(format!("Frame queue depth {d} is out of range 1..{MAX_FRAME_QUEUE_DEPTH}")));
                }
                st.params.set("FrameQueueDepth", 0, json!(d))?;
            }
            "device_type" => {
                let list: Vec<Value> = match v {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                let mut chosen = None;
                for item in &list {
                    let s = item.as_str().unwrap_or_default();
                    let parts: Vec<&str> = s.split('/').collect();
                    if !item.is_string() || parts.len() != 2 {
                        return Err(Error::invalid(format!("Device type must be in format <runtime>/<device>, not '{}'", shown(v))));
                    }
                    if self.0.supported.iter().any(|x| x == s) {
                        chosen = Some((parts[0].to_string(), parts[1].to_string()));
                        break;
                    }
                }
                let Some((rt, dev)) = chosen else {
                    return Err(Error::invalid(format!(
                        "None of the device types in the list {} is supported by model {}. Supported device types are: {}.",
                        repr(&Value::Array(list)),
                        self.0.name,
                        repr(&json!(self.0.supported))
                    )));
                };
                let prev_selected = self.devices_selected(&st.params);
                st.params.set("RuntimeAgent", 0, json!(rt))?;
                st.params.set("DeviceType", 0, json!(dev))?;
                st.inference_timeout_s = timeout_for(&st.params);
                let sel = if prev_selected.is_empty() { self.devices_available(&st.params) } else { prev_selected };
                self.select_devices(st, &sel)?;
            }
            "devices_selected" => {
                let list: Vec<u64> = v
                    .as_array()
                    .ok_or_else(|| Error::invalid(format!("devices_selected must be a list of device indices, not {}", repr(v))))?
                    .iter()
                    .map(|x| x.as_u64().ok_or_else(|| Error::invalid(format!("device index {} is not a non-negative integer", repr(x)))))
                    .collect::<Result<_>>()?;
                self.select_devices(st, &list)?;
            }
            "inference_timeout_s" => st.inference_timeout_s = as_f64(key, v)?,
            "measure_time" => {
                let on = as_bool(key, v)?;
                // PySDK starts the statistics afresh when measuring is switched on.
                if on && !st.params.bool("MeasureTime", 0) {
                    self.reset_time_stats();
                }
                st.params.set("MeasureTime", 0, json!(on))?
            }
            "non_blocking_batch_predict" => st.non_blocking_batch_predict = as_bool(key, v)?,
            "input_resize_method" => {
                let s = as_str(key, v)?;
                st.pre.resize = ResizeMethod::parse(s)
                    .ok_or_else(|| Error::invalid(format!("Incorrect resize method '{s}'. Must be one of the following: {RESIZE_METHODS}")))?;
                st.pre.resize_name = s.to_string();
            }
            "input_pad_method" => {
                let s = as_str(key, v)?;
                st.pre.pad = PadMethod::parse(s)
                    .ok_or_else(|| Error::invalid(format!("Incorrect padding method '{s}'. Must be one of the following: {PAD_METHODS}")))?;
                st.pre.pad_name = s.to_string();
            }
            "input_numpy_colorspace" => {
                let s = as_str(key, v)?;
                if !matches!(s, "RGB" | "BGR" | "auto") {
                    return Err(Error::invalid(format!("Incorrect color space '{s}'. Must be one of the following: {COLOR_SPACES}")));
                }
                st.pre.numpy_colorspace = s.to_string();
            }
            "input_letterbox_fill_color" => st.pre.fill_rgb = color(v)?,
            "input_crop_percentage" => {
                let c = as_f64(key, v)?;
                if !(0.0..=1.0).contains(&c) {
                    return Err(Error::invalid("Crop Percentage must be a value between 0 and 1"));
                }
                st.pre.crop_percentage = c;
            }
            "image_backend" => {
                let s = as_str(key, v)?;
                if !matches!(s, "pil" | "opencv" | "auto") {
                    return Err(Error::invalid(format!("Incorrect image backend '{s}'. It must be one of the following: {BACKENDS}")));
                }
                if s == "pil" {
                    return Err(Error::unsupported("image backend 'pil' is not available in dgzoo: its pipeline reproduces OpenCV's"));
                }
                st.pre.image_backend = "opencv".into();
            }
            "input_image_format" => {
                let s = as_str(key, v)?;
                if !matches!(s, "JPEG" | "RAW") {
                    return Err(Error::invalid(format!("Incorrect image format '{s}'. Must be one of the following: {IMAGE_FORMATS}")));
                }
                st.pre.image_format = s.to_string();
                for i in 0..st.params.num_inputs() {
                    if st.params.str("InputType", i) == "Image" {
                        st.params.set("InputImgFmt", i, json!(s))?;
                    }
                }
            }
            "input_shape" => {
                let shapes = v.as_array().ok_or_else(|| Error::invalid(format!("input_shape must be a list of shapes, not {}", repr(v))))?;
                for (i, s) in shapes.iter().enumerate() {
                    if i >= st.params.num_inputs() {
                        return Err(Error::invalid(format!("input_shape has {} shapes but the model has {} input(s)", shapes.len(), st.params.num_inputs())));
                    }
                    let dims: Vec<i64> = s
                        .as_array()
                        .filter(|a| a.iter().all(|d| d.as_i64().is_some_and(|x| x > 0)))
                        .ok_or_else(|| Error::invalid(format!("input shape {} must be a list of positive integers", repr(s))))?
                        .iter()
                        .filter_map(Value::as_i64)
                        .collect();
                    if !st.params.i64_vec("InputShape", i).is_empty() {
                        st.params.set("InputShape", i, json!(dims))?;
                    } else {
                        if dims.len() != 4 {
                            return Err(Error::invalid(format!("input shape {} must have 4 dimensions [N, H, W, C]", repr(s))));
                        }
                        for (name, d) in ["InputN", "InputH", "InputW", "InputC"].iter().zip(&dims) {
                            st.params.set(name, i, json!(d))?;
                        }
                    }
                }
            }
            "save_model_image" => st.save_model_image = as_bool(key, v)?,
            "output_class_set" => {
                let items: Vec<Value> = match v {
                    Value::Null => Vec::new(),
                    Value::String(_) => vec![v.clone()],
                    Value::Array(a) => {
                        let mut u: Vec<Value> = Vec::new();
                        for x in a {
                            if !u.contains(x) {
                                u.push(x.clone());
                            }
                        }
                        u
                    }
                    other => return Err(Error::invalid(format!("output_class_set must be convertible to set; `{}` is not", json_type(other)))),
                };
                if !items.is_empty() && !items.iter().all(|x| x.is_i64() || x.is_u64()) && !items.iter().all(Value::is_string) {
                    return Err(Error::invalid("output_class_set must contain only int or str elements"));
                }
                st.class_set = items;
            }
            "update_if_newer" => st.update_if_newer = as_bool(key, v)?,
            "overlay_color" => {
                match v {
                    Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_array) => {
                        for c in a {
                            color(c)?;
                        }
                    }
                    _ => {
                        color(v)?;
                    }
                }
                st.overlay.insert(key.into(), v.clone());
            }
            "overlay_line_width" => {
                as_int(key, v)?;
                st.overlay.insert(key.into(), v.clone());
            }
            "overlay_show_labels" | "overlay_show_probabilities" => {
                as_bool(key, v)?;
                st.overlay.insert(key.into(), v.clone());
            }
            "overlay_alpha" => {
                if v.as_str() != Some("auto") && !v.as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)) {
                    return Err(Error::invalid(format!("overlay_alpha must be a number in 0..1 or 'auto', not {}", repr(v))));
                }
                st.overlay.insert(key.into(), v.clone());
            }
            "overlay_font_scale" => {
                as_f64(key, v)?;
                st.overlay.insert(key.into(), v.clone());
            }
            "overlay_blur" => {
                let ok = v.is_null() || v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
                if !ok {
                    return Err(Error::invalid(format!("overlay_blur must be None, 'all', a label or a list of labels, not {}", repr(v))));
                }
                st.overlay.insert(key.into(), v.clone());
            }
            other => return Err(Error::not_found(format!("Model property '{other}' does not exist"))),
        }
        Ok(())
    }

    fn select_devices(&self, st: &mut ModelState, list: &[u64]) -> Result<()> {
        let avail = self.devices_available(&st.params);
        let mask = list.iter().filter(|b| **b < 64 && avail.contains(b)).fold(0u64, |m, b| m | (1u64 << b));
        if mask == 0 {
            return Err(Error::invalid(format!(
                "The list of devices to select {} and the list of available devices {} for model '{}' have zero intersection",
                repr(&json!(list)),
                repr(&json!(avail)),
                self.0.name
            )));
        }
        st.params.set("DeviceMask", 0, json!(mask))
    }

    /// The inference engine for the current settings, created on first use and re-created when
    /// a setting it depends on (device, input shape, threads) changes.
    pub(crate) fn engine(&self, st: &ModelState) -> Result<Arc<Engine>> {
        let Backend::Local(engine) = &self.0.backend else {
            return Err(Error::unsupported(format!("model '{}' runs on an AI server or the cloud and has no local engine", self.0.name)));
        };
        let key = EngineKey::from_state(st, &self.devices_selected(&st.params))?;
        let mut slot = engine.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = slot.as_ref() {
            if e.key == key {
                return Ok(e.clone());
            }
        }
        st.params.check_version()?;
        let e = Arc::new(Engine::new(key, &st.params, crate::inference::Profile::Latency)?);
        tracing::info!(target: "dgzoo::model", model = %self.0.name, runtime = %e.key.runtime, device = %e.key.device, "local engine created");
        *slot = Some(e.clone());
        Ok(e)
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Object(_) => "dict",
        _ => "object",
    }
}

/// PySDK's default `overlay_color` (its result class's `generate_overlay_color`): one yellow
/// for most types; for detection-like types a per-class palette (entries 1..=n of the
/// 256-colour bit-interleaved palette, the first replaced by yellow); for `Segmentation` the
/// first n palette entries, with black at the index of a "background" label.
fn default_overlay_color(params: &ModelParams, labels: &BTreeMap<i64, String>) -> Result<Value> {
    use crate::postprocess::PostprocessType as P;
    let pal = crate::overlay::palette();
    let palette = |x: usize| pal[x % pal.len()];
    let kind = P::parse(&params.str("OutputPostprocessType", 0));
    let nc = params.i64("OutputNumClasses", 0);
    let yellow = json!([255, 255, 0]);
    match kind {
        P::Detection
        | P::DetectionYolo
        | P::DetectionYoloV8
        | P::DetectionYoloV10
        | P::DetectionYoloV8OBB
        | P::DetectionYoloHailo
        | P::DetectionDamoYolo
        | P::FaceDetection
        | P::PoseDetection
        | P::PoseDetectionYoloV8
        | P::SegmentationYoloV8 => {
            if labels.is_empty() && nc <= 0 {
                return Err(Error::invalid("Detection Postprocessor: either non empty labels dictionary or OutputNumClasses greater than 0 must be specified for Detection postprocessor"));
            }
            let n = if labels.is_empty() { nc as usize } else { labels.len() };
            let mut colors: Vec<Value> = (1..=n.min(255)).map(|x| json!(palette(x))).collect();
            if let Some(c) = colors.first_mut() {
                *c = yellow;
            }
            Ok(Value::Array(colors))
        }
        P::Segmentation => {
            if labels.is_empty() && nc <= 0 {
                return Err(Error::invalid("Segmentation Postprocessor: either non empty labels dictionary or OutputNumClasses greater than 0 must be specified for Segmentation postprocessor"));
            }
            let n = if labels.is_empty() { nc as usize } else { labels.len() };
            let mut colors: Vec<Value> = (0..n.min(256)).map(|x| json!(palette(x))).collect();
            for (&k, v) in labels {
                if v == "background" && k >= 0 {
                    colors.insert((k as usize).min(colors.len()), json!([0, 0, 0]));
                    colors.remove(0);
                }
            }
            Ok(Value::Array(colors))
        }
        P::Unknown(t) => Err(Error::unsupported(format!("Postprocessor type '{t}' is not known"))),
        _ => Ok(yellow),
    }
}

fn default_overlay() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("overlay_line_width".into(), json!(3));
    m.insert("overlay_show_labels".into(), json!(true));
    m.insert("overlay_show_probabilities".into(), json!(false));
    m.insert("overlay_alpha".into(), json!("auto"));
    m.insert("overlay_font_scale".into(), json!(1.0));
    m.insert("overlay_blur".into(), Value::Null);
    m
}

/// Run one frame on a model, wherever its backend runs it; with `measure_time` on, the frame's
/// times go into the model's `time_stats()`.
pub fn predict(model: &Model, inputs: &[Input]) -> Result<InferenceResult> {
    let started = Instant::now();
    let st = model.state();
    let r = predict_with(model, &st, inputs);
    if let Ok(r) = &r {
        model.record_time(&st, started, r);
    }
    r
}

fn predict_with(model: &Model, st: &ModelState, inputs: &[Input]) -> Result<InferenceResult> {
    match &model.0.backend {
        Backend::AiServer(rb) => crate::remote::predict(rb, st, inputs),
        Backend::Cloud(cb) => crate::cloud::infer::predict(cb, st, inputs),
        Backend::Local(_) => {
            let engine = model.engine(st)?;
            crate::inference::predict_local(st, &engine, inputs, &st.custom_post)
        }
    }
}

/// A cloud model's frames on one connection, up to `frame_queue_depth` in flight (PySDK's
/// `predict_batch` inside `with model:`); results in input order.
pub fn cloud_predict_batch(model: &Model, frames: &[Vec<Input>], on_result: impl FnMut(usize, InferenceResult)) -> Result<()> {
    let cb = model.cloud_backend().ok_or_else(|| Error::invalid(format!("model '{}' is not a cloud model", model.name())))?;
    let st = model.state();
    let mut on_result = on_result;
    crate::cloud::infer::predict_batch(cb, &st, frames, |i, r, started| {
        model.record_time(&st, started, &r);
        on_result(i, r)
    })
}
