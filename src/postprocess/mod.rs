//! Post-processing (results-and-properties.md §1): raw output tensors become PySDK's result
//! list — raw tensors, dequantised tensors, classification, YOLOv8 / YOLOv5-style detection
//! with NMS. Results are in model-input pixel coordinates here; the caller maps boxes back to
//! the original image. Shared by local inference and the AI server.
use crate::error::{Error, Result};
use crate::params::ModelParams;
use crate::runtime::{ElemType, Tensor};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod classification;
pub mod custom;
mod face;
mod hailo;
mod hand;
mod obb;
mod plates;
mod pose_yolov8;
mod posenet;
mod raw;
mod segmentation_yolov8;
mod ssd;
mod yolo;
mod yolov10;
mod yolov5_heads;
mod yolov8_heads;

/// Every `OutputPostprocessType` PySDK 1.5.0 knows (its result-class registry), parsed once.
/// Anything else is kept as `Unknown` and refused at result time with PySDK's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostprocessType {
    None,
    Base,
    Null,
    Dequantization,
    Classification,
    DetectionYoloPlates,
    DetectionYoloV8Plates,
    MultiLabelClassification,
    Detection,
    DetectionYolo,
    DetectionYoloV8,
    DetectionYoloV10,
    DetectionYoloV8OBB,
    DetectionYoloHailo,
    DetectionDamoYolo,
    FaceDetection,
    PoseDetection,
    PoseDetectionYoloV8,
    SegmentationYoloV8,
    HandDetection,
    Segmentation,
    Unknown(String),
}

impl PostprocessType {
    /// Every type PySDK 1.5.0 knows, with its model-JSON name (the fuzz target iterates it).
    pub const KNOWN: [(&'static str, PostprocessType); 21] = [
        ("None", PostprocessType::None),
        ("Base", PostprocessType::Base),
        ("Null", PostprocessType::Null),
        ("Dequantization", PostprocessType::Dequantization),
        ("Classification", PostprocessType::Classification),
        ("DetectionYoloPlates", PostprocessType::DetectionYoloPlates),
        ("DetectionYoloV8Plates", PostprocessType::DetectionYoloV8Plates),
        ("MultiLabelClassification", PostprocessType::MultiLabelClassification),
        ("Detection", PostprocessType::Detection),
        ("DetectionYolo", PostprocessType::DetectionYolo),
        ("DetectionYoloV8", PostprocessType::DetectionYoloV8),
        ("DetectionYoloV10", PostprocessType::DetectionYoloV10),
        ("DetectionYoloV8OBB", PostprocessType::DetectionYoloV8OBB),
        ("DetectionYoloHailo", PostprocessType::DetectionYoloHailo),
        ("DetectionDamoYolo", PostprocessType::DetectionDamoYolo),
        ("FaceDetection", PostprocessType::FaceDetection),
        ("PoseDetection", PostprocessType::PoseDetection),
        ("PoseDetectionYoloV8", PostprocessType::PoseDetectionYoloV8),
        ("SegmentationYoloV8", PostprocessType::SegmentationYoloV8),
        ("HandDetection", PostprocessType::HandDetection),
        ("Segmentation", PostprocessType::Segmentation),
    ];

    /// Parse the `OutputPostprocessType` string (exact, case-sensitive, as PySDK). An empty
    /// string is `None`; "DetectionYoloV5" is kept as an alias of `DetectionYolo` (dgzoo extension).
    pub fn parse(s: &str) -> Self {
        match s {
            "" => PostprocessType::None,
            "DetectionYoloV5" => PostprocessType::DetectionYolo,
            _ => Self::KNOWN.iter().find(|(n, _)| *n == s).map(|(_, t)| t.clone()).unwrap_or_else(|| PostprocessType::Unknown(s.to_string())),
        }
    }

    /// Whether results of this type carry image coordinates (boxes, landmarks) that PySDK maps
    /// back from the model input to the original image.
    pub fn has_image_coordinates(&self) -> bool {
        matches!(
            self,
            PostprocessType::Detection
                | PostprocessType::DetectionYolo
                | PostprocessType::DetectionYoloV8
                | PostprocessType::DetectionYoloV10
                | PostprocessType::DetectionYoloV8OBB
                | PostprocessType::DetectionYoloHailo
                | PostprocessType::DetectionDamoYolo
                | PostprocessType::FaceDetection
                | PostprocessType::PoseDetection
                | PostprocessType::PoseDetectionYoloV8
                | PostprocessType::SegmentationYoloV8
                | PostprocessType::HandDetection
        )
    }

    /// The type's name as in the model JSON.
    pub fn as_str(&self) -> &str {
        match self {
            PostprocessType::Unknown(s) => s,
            t => Self::KNOWN.iter().find(|(_, k)| k == t).map(|(n, _)| *n).unwrap_or(""),
        }
    }
}

/// Post-processing settings read from the (effective) model parameters.
#[derive(Debug, Clone)]
pub struct PostConfig {
    pub kind: PostprocessType,
    pub conf_threshold: f64,
    pub nms_threshold: f64,
    pub top_k: usize,
    pub max_detections: usize,
    pub max_detections_per_class: usize,
    pub max_classes_per_detection: usize,
    pub regular_nms: bool,
    pub softmax: bool,
    pub sigmoid_cls: bool,
    pub num_classes: usize,
    pub class_id_adjustment: i64,
    /// `OutputYoloRegMax` (DFL bins per box side).
    pub reg_max: usize,
    /// `OutputYoloStrides`.
    pub strides: Vec<i64>,
    /// `OutputYoloAnchors`: per scale, (w, h) pairs in input pixels.
    pub anchors: Vec<Vec<[f32; 2]>>,
    /// `OutputNumLandmarks` (pose keypoints).
    pub num_landmarks: usize,
    /// `PostProcessorInputs`: tensor ids naming each input of the post-processor, in its order.
    pub inputs: Vec<i64>,
    /// Whether `PostProcessorInputs` is in the parameters at all (PySDK's SSD decoder needs it).
    pub inputs_given: bool,
    /// `YScale`, `XScale`, `HScale`, `WScale`: SSD box-encoding divisors.
    pub box_scales: [f32; 4],
    /// `Connections`: keypoint index -> the keypoints it connects to (pose `connect` lists).
    pub connections: BTreeMap<usize, Vec<i64>>,
    /// `Stride` (PoseNet grid step, input pixels).
    pub stride: i64,
    /// `NMSRadius` (PoseNet keypoint suppression radius, input pixels).
    pub nms_radius: f64,
    /// `PoseThreshold` (PoseNet root-candidate score threshold).
    pub pose_threshold: f64,
}

impl PostConfig {
    /// Keypoint `k`'s `connect` list (empty when `Connections` does not name it).
    pub(crate) fn connect(&self, k: usize) -> Vec<i64> {
        self.connections.get(&k).cloned().unwrap_or_default()
    }
}

impl PostConfig {
    pub fn from_params(p: &ModelParams) -> Self {
        PostConfig {
            kind: PostprocessType::parse(&p.str("OutputPostprocessType", 0)),
            conf_threshold: p.f64("OutputConfThreshold", 0),
            nms_threshold: p.f64("OutputNMSThreshold", 0),
            top_k: p.u64("OutputTopK", 0) as usize,
            max_detections: p.i64("MaxDetections", 0).max(0) as usize,
            max_detections_per_class: p.i64("MaxDetectionsPerClass", 0).max(0) as usize,
            max_classes_per_detection: p.i64("MaxClassesPerDetection", 0).max(1) as usize,
            regular_nms: p.bool("UseRegularNMS", 0),
            softmax: p.bool("OutputSoftmaxEn", 0),
            sigmoid_cls: p.bool("SigmoidOnCLS", 0),
            num_classes: p.i64("OutputNumClasses", 0).max(0) as usize,
            class_id_adjustment: p.i64("OutputClassIDAdjustment", 0),
            reg_max: p.i64("OutputYoloRegMax", 0).max(1) as usize,
            strides: p.i64_vec("OutputYoloStrides", 0),
            num_landmarks: p.u64("OutputNumLandmarks", 0) as usize,
            inputs: p.i64_vec("PostProcessorInputs", 0),
            inputs_given: p.exists("PostProcessorInputs", 0),
            stride: p.i64("Stride", 0),
            nms_radius: p.f64("NMSRadius", 0),
            pose_threshold: p.f64("PoseThreshold", 0),
            box_scales: ["YScale", "XScale", "HScale", "WScale"].map(|k| p.f64(k, 0) as f32),
            connections: p
                .get("Connections", 0)
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_array()?.iter().filter_map(Value::as_i64).collect()))).collect())
                .unwrap_or_default(),
            anchors: p
                .get("OutputYoloAnchors", 0)
                .as_array()
                .map(|scales| {
                    scales
                        .iter()
                        .map(|s| {
                            s.as_array()
                                .map(|a| a.iter().filter_map(|wh| Some([wh.get(0)?.as_f64()? as f32, wh.get(1)?.as_f64()? as f32])).collect())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What post-processing produced: the result list and the tensors it references
/// (`{"data": {"__tensor__": i}}` entries of raw-tensor results point into `tensors`).
#[derive(Debug, Clone, Default)]
pub struct PostOutput {
    pub results: Vec<Value>,
    pub tensors: Vec<Tensor>,
    /// True when `results` holds boxes/landmarks in model coordinates.
    pub has_coordinates: bool,
}

/// [`dequantize`] without the copy for float32 tensors.
pub(crate) fn values(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    if t.info.dtype == ElemType::F32 {
        std::borrow::Cow::Borrowed(t.data.as_slice::<f32>())
    } else {
        std::borrow::Cow::Owned(dequantize(t))
    }
}

/// Tensor values as f32, dequantised when the tensor is quantised.
pub fn dequantize(t: &Tensor) -> Vec<f32> {
    let (scale, zero) = match &t.info.quant {
        Some(q) if !q.scale.is_empty() && t.info.dtype.is_integer() => (q.scale[0], q.zero.first().copied().unwrap_or(0) as f32),
        _ => (1.0, 0.0),
    };
    let b = &t.data;
    let deq = |v: f32| {
        if scale == 1.0 && zero == 0.0 {
            v
        } else {
            scale * (v - zero)
        }
    };
    match t.info.dtype {
        ElemType::F32 => b.as_slice::<f32>().to_vec(),
        ElemType::F64 => b.as_slice::<f64>().iter().map(|&v| v as f32).collect(),
        ElemType::U8 | ElemType::Bool => b.as_slice::<u8>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::I8 => b.as_slice::<i8>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::U16 => b.as_slice::<u16>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::I16 => b.as_slice::<i16>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::U32 => b.as_slice::<u32>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::I32 => b.as_slice::<i32>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::U64 => b.as_slice::<u64>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::I64 => b.as_slice::<i64>().iter().map(|&v| deq(v as f32)).collect(),
        ElemType::F16 => b.as_slice::<u16>().iter().map(|&h| f16_to_f32(h)).collect(),
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let s = ((h >> 15) as u32) << 31;
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as u32;
    let bits = if e == 0 {
        if m == 0 {
            s
        } else {
            // subnormal
            let mut e = -1i32;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            s | (((e + 127 - 14) as u32) << 23) | ((m & 0x3ff) << 13)
        }
    } else if e == 31 {
        s | 0x7f80_0000 | (m << 13)
    } else {
        s | (((e - 15 + 127) as u32) << 23) | (m << 13)
    };
    f32::from_bits(bits)
}

pub(crate) fn label_of(labels: &BTreeMap<i64, String>, id: i64) -> String {
    labels.get(&id).cloned().unwrap_or_else(|| id.to_string())
}

/// Raw-tensor result entry (keys as on the wire, sorted). `data` references `tensors[index]`.
pub(crate) fn tensor_entry(t: &Tensor, index: usize, id: i64) -> Value {
    let quant = match &t.info.quant {
        Some(q) => {
            json!({"axis": q.axis, "scale": q.scale.iter().map(|&s| s as f64).collect::<Vec<_>>(), "zero": q.zero})
        }
        None => json!({"axis": -1, "scale": [1], "zero": [0]}),
    };
    json!({
        "data": {"__tensor__": index, "dtype": t.info.dtype.numpy_name(), "shape": t.info.shape},
        "id": id,
        "name": t.info.name,
        "quantization": quant,
        "shape": t.info.shape,
        "size": t.num_elements(),
        "type": t.info.dtype.dg_name(),
    })
}

/// Run post-processing. `ids[i]` is output `i`'s tensor id (the engine's tensor index).
pub fn run(cfg: &PostConfig, outputs: Vec<Tensor>, ids: &[i64], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<PostOutput> {
    use PostprocessType as P;
    match &cfg.kind {
        P::None | P::Base | P::Null => Ok(raw::raw(outputs, ids)),
        P::Dequantization => Ok(raw::dequantization(outputs, ids)),
        P::Classification => Ok(PostOutput { results: classification::classification(cfg, &outputs, labels)?, tensors: Vec::new(), has_coordinates: false }),
        P::DetectionYoloV8Plates if outputs.len() > 1 => {
            Ok(PostOutput { results: plates::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: false })
        }
        P::DetectionYoloV8 | P::DetectionDamoYolo if outputs.len() > 1 => {
            Ok(PostOutput { results: yolov8_heads::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true })
        }
        P::DetectionYolo if outputs.len() > 1 || !cfg.anchors.is_empty() => {
            Ok(PostOutput { results: yolov5_heads::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true })
        }
        P::DetectionYoloV8OBB => Ok(PostOutput { results: obb::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true }),
        P::FaceDetection => Ok(PostOutput { results: face::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true }),
        P::DetectionYoloHailo => Ok(PostOutput { results: hailo::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true }),
        P::HandDetection => Ok(PostOutput { results: hand::decode(cfg, &outputs, ids)?, tensors: Vec::new(), has_coordinates: true }),
        P::Detection => Ok(PostOutput { results: ssd::decode(cfg, &outputs, ids, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true }),
        P::DetectionYoloV10 => Ok(PostOutput { results: yolov10::decode(cfg, &outputs, labels)?, tensors: Vec::new(), has_coordinates: true }),
        P::PoseDetectionYoloV8 if outputs.len() > 1 => {
            Ok(PostOutput { results: pose_yolov8::decode_heads(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true })
        }
        P::PoseDetectionYoloV8 => Ok(PostOutput { results: pose_yolov8::decode(cfg, &outputs, labels)?, tensors: Vec::new(), has_coordinates: true }),
        P::PoseDetection => Ok(PostOutput { results: posenet::decode(cfg, &outputs)?, tensors: Vec::new(), has_coordinates: true }),
        P::SegmentationYoloV8 => {
            Ok(PostOutput { results: segmentation_yolov8::decode(cfg, &outputs, labels, input_wh)?, tensors: Vec::new(), has_coordinates: true })
        }
        // PySDK 1.5.0's local core hands these two on as raw tensors (its result classes only
        // draw them); Segmentation's result class needs exactly one tensor.
        P::MultiLabelClassification => Ok(raw::raw(outputs, ids)),
        P::Segmentation if outputs.len() != 1 => Err(Error::bad_model("Segmentation Postprocessor: inference results data must contain one element")),
        P::Segmentation => Ok(raw::raw(outputs, ids)),
        P::DetectionYoloV8 | P::DetectionYolo => {
            let v8 = cfg.kind == P::DetectionYoloV8;
            Ok(PostOutput { results: yolo::yolo(cfg, &outputs, labels, v8, input_wh)?, tensors: Vec::new(), has_coordinates: true })
        }
        P::Unknown(other) => Err(Error::unsupported(format!("Postprocessor type '{other}' is not known"))),
        other => Err(Error::unsupported(format!(
            "Post-processing type '{}' (known to PySDK) is not implemented by dgzoo yet, or not for these output tensors",
            other.as_str()
        ))),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Det {
    pub b: [f32; 4],
    pub score: f32,
    pub class: usize,
    /// Index of the anchor / row the detection came from (for per-detection extras).
    pub anchor: usize,
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let ua = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0) + (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0) - inter;
    if ua <= 0.0 {
        0.0
    } else {
        inter / ua
    }
}

/// Greedy NMS over detections sorted by score (descending); keeps at most `limit`.
pub(crate) fn nms(mut dets: Vec<Det>, thr: f32, limit: usize) -> Vec<Det> {
    dets.sort_by(|a, b| score_desc(a.score, b.score));
    let mut keep: Vec<Det> = Vec::new();
    for d in dets {
        if keep.len() >= limit {
            break;
        }
        if keep.iter().all(|k| iou(&k.b, &d.b) <= thr) {
            keep.push(d);
        }
    }
    keep
}

/// NMS (per class when `UseRegularNMS`, else class-agnostic), score order, `MaxDetections`,
/// then PySDK's detection result dicts (model-input coordinates).
pub(crate) fn finish_detections(cfg: &PostConfig, cands: Vec<Det>, labels: &BTreeMap<i64, String>) -> Vec<Value> {
    finish_detections_with(cfg, cands, labels, &|_, _| {})
}

/// [`finish_detections`], then `extra(det, dict)` adds family keys (landmarks, angle, ...).
pub(crate) fn finish_detections_with(
    cfg: &PostConfig,
    cands: Vec<Det>,
    labels: &BTreeMap<i64, String>,
    extra: &dyn Fn(&Det, &mut Map<String, Value>),
) -> Vec<Value> {
    let nms_thr = cfg.nms_threshold as f32;
    let mut kept = if cfg.regular_nms {
        let mut by_class: BTreeMap<usize, Vec<Det>> = BTreeMap::new();
        for d in cands {
            by_class.entry(d.class).or_default().push(d);
        }
        by_class.into_values().flat_map(|v| nms(v, nms_thr, cfg.max_detections_per_class)).collect::<Vec<_>>()
    } else {
        nms(cands, nms_thr, cfg.max_detections)
    };
    kept.sort_by(|a, b| score_desc(a.score, b.score));
    kept.truncate(cfg.max_detections);
    kept.into_iter()
        .map(|d| {
            let id = d.class as i64 - cfg.class_id_adjustment;
            let mut o = Map::new();
            // Values built directly: `json!` goes through serde's serializer for each.
            o.insert("bbox".into(), Value::Array(d.b.iter().map(|&v| Value::from(v as f64)).collect()));
            o.insert("category_id".into(), Value::from(id));
            o.insert("label".into(), Value::String(label_of(labels, id)));
            o.insert("score".into(), Value::from(d.score as f64));
            extra(&d, &mut o);
            Value::Object(o)
        })
        .collect()
}

/// Descending order of scores that is total: NaN (a broken model's output) ranks below every
/// number. `partial_cmp(..).unwrap_or(Equal)` is not a total order with NaN, and the standard
/// sort may panic on such a comparator.
pub(crate) fn score_desc(a: f32, b: f32) -> std::cmp::Ordering {
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal)
}

/// Logistic sigmoid.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A tensor's dims as usize (dynamic dims as 0).
pub(crate) fn dims(t: &Tensor) -> Vec<usize> {
    t.info.shape.iter().map(|&d| d.max(0) as usize).collect()
}

/// The tensors `PostProcessorInputs` names by tensor id, one per role (PySDK's SSD and hand
/// decoders take their inputs this way). `kind` and `roles` name them in errors.
pub(crate) fn inputs_by_id<'a>(kind: &str, cfg: &PostConfig, outputs: &'a [Tensor], ids: &[i64], roles: &[&str]) -> Result<Vec<&'a Tensor>> {
    let n = roles.len();
    let what = roles.join(", ");
    if !cfg.inputs_given {
        return Err(Error::bad_model(format!(
            "{kind} post-processing: parameter 'PostProcessorInputs' in section 'POST_PROCESS' is missing (it names the {what} by tensor id)"
        )));
    }
    if cfg.inputs.len() != n {
        return Err(Error::bad_model(format!(
            "{kind} post-processing expects {n} inputs ({what}), but number specified in model JSON parameters (PostProcessorInputs) is {}",
            cfg.inputs.len()
        )));
    }
    if outputs.len() != n {
        return Err(Error::bad_model(format!("{kind} post-processing expects {n} output tensors ({what}); the model has {}", outputs.len())));
    }
    cfg.inputs
        .iter()
        .zip(roles)
        .map(|(id, role)| {
            let i = ids.iter().position(|x| x == id).ok_or_else(|| {
                Error::bad_model(format!("{kind} post-processing: PostProcessorInputs names tensor id {id} for the {role}; the model's output ids are {ids:?}"))
            })?;
            Ok(&outputs[i])
        })
        .collect()
}

/// "output tensor 'name' of shape [..]" for error messages.
pub(crate) fn describe(t: &Tensor) -> String {
    format!("output tensor '{}' of shape {:?}", t.info.name, t.info.shape)
}

/// Keep only results whose label / category_id is in `class_set` (client-side filter). As
/// PySDK, a non-empty set keeps dicts only: anything else in the list is dropped.
pub fn filter_class_set(results: &mut Vec<Value>, class_set: &[Value]) {
    if class_set.is_empty() {
        return;
    }
    let by_label = class_set[0].is_string();
    results.retain(|r| {
        let Some(o) = r.as_object() else { return false };
        let key = if by_label { o.get("label") } else { o.get("category_id") };
        key.is_some_and(|k| class_set.contains(k))
    });
}

/// Map `bbox` corners and landmark x,y of detection results to original-image coordinates.
/// As PySDK's result classes, a landmark becomes `[x, y]` (anything after is dropped), except
/// `HandDetection`'s, which keeps its z.
pub fn map_coordinates(results: &mut [Value], kind: &PostprocessType, conv: &dyn Fn(f64, f64) -> (f64, f64)) {
    let keep_z = *kind == PostprocessType::HandDetection;
    for r in results.iter_mut() {
        let Some(o) = r.as_object_mut() else { continue };
        if let Some(Value::Array(b)) = o.get_mut("bbox") {
            if b.len() == 4 {
                let v: Vec<f64> = b.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect();
                let (x1, y1) = conv(v[0], v[1]);
                let (x2, y2) = conv(v[2], v[3]);
                *b = vec![json!(x1), json!(y1), json!(x2), json!(y2)];
            }
        }
        if let Some(Value::Array(lms)) = o.get_mut("landmarks") {
            for lm in lms.iter_mut() {
                if let Some(Value::Array(p)) = lm.get_mut("landmark") {
                    if p.len() >= 2 {
                        let (x, y) = conv(p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0));
                        p[0] = json!(x);
                        p[1] = json!(y);
                        p.truncate(if keep_z { 3 } else { 2 });
                    }
                }
            }
        }
    }
}

/// [`map_coordinates`], and first, for `SegmentationYoloV8`, PySDK's client-side conversion of
/// each run-length `mask` (model input `model_wh`, image `image_wh`) into a float mask over the
/// image box, appended to `tensors` (the result's `mask.data` refers to it, see
/// [`segmentation_yolov8::ImageMask::entry`]). A mask that cannot be decoded is an error naming
/// the result.
pub fn map_coordinates_with_model(
    results: &mut [Value],
    tensors: &mut Vec<Tensor>,
    kind: &PostprocessType,
    model_wh: (f64, f64),
    image_wh: (f64, f64),
    conv: &dyn Fn(f64, f64) -> (f64, f64),
) -> Result<()> {
    if *kind == PostprocessType::SegmentationYoloV8 {
        for (i, r) in results.iter_mut().enumerate() {
            let Some(o) = r.as_object_mut() else { continue };
            let Some(Value::Object(m)) = o.get("mask") else { continue };
            if !m.get("data").is_some_and(Value::is_string) {
                continue;
            }
            let b: Vec<f64> = o.get("bbox").and_then(Value::as_array).map(|b| b.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            let &[x1, y1, x2, y2] = b.as_slice() else {
                return Err(Error::invalid(format!("SegmentationYoloV8 result {i}: a mask needs a 4-number 'bbox'")));
            };
            let (p1, p2) = (conv(x1, y1), conv(x2, y2));
            let mapped = segmentation_yolov8::mask_to_image(m, [x1, y1, x2, y2], [p1.0, p1.1, p2.0, p2.1], model_wh, image_wh, conv)
                .map_err(|e| Error::invalid(format!("result {i}: {}", e.message)))?;
            o.insert("mask".into(), mapped.entry(tensors.len()));
            tensors.push(mapped.values);
        }
    }
    map_coordinates(results, kind, conv);
    Ok(())
}

/// PySDK's client conversion of one run-length instance mask (`SegmentationYoloV8`, wire
/// form) into a float mask over the image box; what overlays of results still in wire form draw.
pub use segmentation_yolov8::{mask_to_image as instance_mask_to_image, ImageMask};

/// `results` with the tensors they refer to (`{"__tensor__": i}`: raw tensors, instance masks)
/// written out in numpy's JSON form, `{"__ndarray__": true, "dtype", "shape", "data"}` with
/// `data` nested by shape (`ndarray.tolist()`): for output that must stand alone (the CLI's
/// lines, the hub's web page). Integer tensors give integers; a missing tensor is left as is.
pub fn inline_tensors(results: &[Value], tensors: &[Tensor]) -> Vec<Value> {
    fn walk(v: &mut Value, tensors: &[Tensor]) {
        match v {
            Value::Object(o) => {
                if let Some(t) = o.get("__tensor__").and_then(Value::as_u64).and_then(|i| tensors.get(i as usize)) {
                    *v = ndarray_json(t);
                    return;
                }
                o.values_mut().for_each(|x| walk(x, tensors));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, tensors)),
            _ => {}
        }
    }
    results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            walk(&mut r, tensors);
            r
        })
        .collect()
}

/// One tensor in numpy's JSON form (see [`inline_tensors`]).
fn ndarray_json(t: &Tensor) -> Value {
    let b = &t.data;
    let flat: Vec<Value> = match t.info.dtype {
        ElemType::F32 => b.as_slice::<f32>().iter().map(|&v| Value::from(v as f64)).collect(),
        ElemType::F64 => b.as_slice::<f64>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::F16 => b.as_slice::<u16>().iter().map(|&h| Value::from(f16_to_f32(h) as f64)).collect(),
        ElemType::Bool => b.as_slice::<u8>().iter().map(|&v| Value::from(v != 0)).collect(),
        ElemType::U8 => b.as_slice::<u8>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::I8 => b.as_slice::<i8>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::U16 => b.as_slice::<u16>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::I16 => b.as_slice::<i16>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::U32 => b.as_slice::<u32>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::I32 => b.as_slice::<i32>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::U64 => b.as_slice::<u64>().iter().map(|&v| Value::from(v)).collect(),
        ElemType::I64 => b.as_slice::<i64>().iter().map(|&v| Value::from(v)).collect(),
    };
    // Nest from the innermost dimension out; a shape that does not cover the data stays flat.
    let dims: Vec<usize> = t.info.shape.iter().map(|&d| d.max(0) as usize).collect();
    let mut data = flat;
    if dims.iter().product::<usize>() == data.len() && dims.iter().all(|&d| d > 0) {
        for &d in dims.iter().skip(1).rev() {
            let mut it = data.into_iter();
            let mut rows = Vec::new();
            loop {
                let row: Vec<Value> = it.by_ref().take(d).collect();
                if row.is_empty() {
                    break;
                }
                rows.push(Value::Array(row));
            }
            data = rows;
        }
    }
    let mut out = json!({"__ndarray__": true, "dtype": t.info.dtype.numpy_name(), "shape": t.info.shape});
    out["data"] = Value::Array(data);
    out
}

/// Results to JSON text (the PySDK `results` list).
pub fn to_json(results: &[Value]) -> String {
    serde_json::to_string(results).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{AlignedBuf, Quant, TensorInfo};

    /// NaN scores (a broken model) must not make a sort panic: they rank last, numbers keep
    /// their descending order.
    #[test]
    fn nan_scores_rank_last_and_never_panic() {
        let mut s: Vec<f32> = (0..64).map(|i| if i % 3 == 0 { f32::NAN } else { (i % 7) as f32 }).collect();
        s.sort_by(|a, b| score_desc(*a, *b));
        let n = s.iter().filter(|x| !x.is_nan()).count();
        assert!(s[..n].windows(2).all(|w| w[0] >= w[1]) && s[n..].iter().all(|x| x.is_nan()));
        let dets: Vec<Det> =
            (0..40).map(|i| Det { b: [i as f32, 0.0, i as f32 + 1.0, 1.0], score: if i % 2 == 0 { f32::NAN } else { 0.5 }, class: 0, anchor: i }).collect();
        let kept = nms(dets, 0.5, 100);
        assert_eq!(kept.iter().filter(|d| !d.score.is_nan()).count(), 20);
    }

    fn tensor(shape: &[i64], v: &[f32]) -> Tensor {
        Tensor {
            info: TensorInfo { name: "o".into(), shape: shape.to_vec(), dtype: ElemType::F32, quant: None, id: None },
            data: AlignedBuf::from_bytes(bytemuck::cast_slice(v)),
        }
    }

    #[test]
    fn inline_tensors_writes_numpy_json_nested_by_shape() {
        let mut q = tensor(&[2, 3], &[0.0; 6]);
        q.info.dtype = ElemType::U8;
        q.data = AlignedBuf::from_bytes(&[1, 2, 3, 4, 5, 6]);
        let f = tensor(&[1, 2, 2], &[0.5, 1.0, 0.0, 0.25]);
        let results =
            vec![json!({"data": {"__tensor__": 0}, "id": 7}), json!({"mask": {"x_min": 3, "data": {"__tensor__": 1}}}), json!({"data": {"__tensor__": 9}})];
        let out = inline_tensors(&results, &[q, f]);
        assert_eq!(out[0], json!({"data": {"__ndarray__": true, "dtype": "uint8", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}, "id": 7}));
        assert_eq!(out[1]["mask"]["data"]["data"], json!([[[0.5, 1.0], [0.0, 0.25]]]));
        assert_eq!(out[1]["mask"]["x_min"], 3);
        assert_eq!(out[2], results[2], "a reference to no tensor stays as it is");
    }

    fn cfg(kind: &str) -> PostConfig {
        PostConfig::from_params(&ModelParams::from_value(json!({"POST_PROCESS":[{"OutputPostprocessType": kind}]})).unwrap())
    }

    #[test]
    fn classification_softmax_topk() {
        let mut c = cfg("Classification");
        c.softmax = true;
        c.top_k = 2;
        let labels: BTreeMap<i64, String> = [(0, "a".to_string()), (2, "c".to_string())].into();
        let r = run(&c, vec![tensor(&[1, 3], &[1.0, 0.0, 2.0])], &[], &labels, (1.0, 1.0)).unwrap().results;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["label"], "c");
        assert_eq!(r[1]["category_id"], 0);
        let e: f32 = 1.0f32.exp() + 1.0 + 2.0f32.exp();
        assert!((r[0]["score"].as_f64().unwrap() - (2.0f32.exp() / e) as f64).abs() < 1e-6);
        c.top_k = 0;
        c.conf_threshold = 0.2;
        let r = run(&c, vec![tensor(&[1, 3], &[1.0, 0.0, 2.0])], &[], &labels, (1.0, 1.0)).unwrap().results;
        assert_eq!(r.len(), 2, "the 0.09 class is under the threshold");
        assert_eq!(r[1]["label"], "a");
    }

    #[test]
    fn quantized_classification() {
        let mut t = Tensor {
            info: TensorInfo {
                name: "o".into(),
                shape: vec![1, 2],
                dtype: ElemType::U8,
                quant: Some(Quant { axis: 0, scale: vec![0.5], zero: vec![10] }),
                id: None,
            },
            data: AlignedBuf::from_bytes(&[12, 8]),
        };
        assert_eq!(dequantize(&t), vec![1.0, -1.0]);
        t.info.quant = None;
        assert_eq!(dequantize(&t), vec![12.0, 8.0]);
    }

    #[test]
    fn yolov8_decode_and_nms() {
        // 2 classes, 3 anchors, channels-first [1, 6, 3]
        let n = 3;
        let mut v = vec![0f32; 6 * n];
        let set = |v: &mut Vec<f32>, a: usize, j: usize, x: f32| v[a * n + j] = x;
        // anchor 0: box (10,10,20,20) class 0 .9; anchor 1: nearly same box class 0 .8 (suppressed)
        // anchor 2: same box class 1 .7 (kept: per-class NMS)
        for (j, (cls, s)) in [(0, 0.9), (0, 0.8), (1, 0.7)].iter().enumerate() {
            set(&mut v, 0, j, 15.0);
            set(&mut v, 1, j, 15.0);
            set(&mut v, 2, j, 10.0 + j as f32 * 0.1);
            set(&mut v, 3, j, 10.0);
            set(&mut v, 4 + cls, j, *s);
        }
        let mut c = cfg("DetectionYoloV8");
        c.num_classes = 2;
        c.conf_threshold = 0.3;
        c.nms_threshold = 0.5;
        c.regular_nms = true;
        let labels = BTreeMap::new();
        let r = run(&c, vec![tensor(&[1, 6, 3], &v)], &[], &labels, (320.0, 320.0)).unwrap().results;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["bbox"], json!([10.0, 10.0, 20.0, 20.0]));
        assert_eq!(r[0]["category_id"], 0);
        assert_eq!(r[1]["category_id"], 1);
        assert_eq!(r[1]["label"], "1");
        c.regular_nms = false;
        let r = run(&c, vec![tensor(&[1, 6, 3], &v)], &[], &labels, (320.0, 320.0)).unwrap().results;
        assert_eq!(r.len(), 1, "class-agnostic NMS keeps one box");
    }

    #[test]
    fn class_set_filter() {
        let mut r = vec![json!({"label": "a", "category_id": 1}), json!({"label": "b", "category_id": 2})];
        filter_class_set(&mut r, &[json!("b")]);
        assert_eq!(r.len(), 1);
        let mut r = vec![json!({"label": "a", "category_id": 1}), json!({"label": "b", "category_id": 2})];
        filter_class_set(&mut r, &[json!(1)]);
        assert_eq!(r[0]["label"], "a");
    }

    fn u8_tensor(shape: &[i64], v: &[u8]) -> Tensor {
        Tensor { info: TensorInfo { name: "q".into(), shape: shape.to_vec(), dtype: ElemType::U8, quant: None, id: None }, data: AlignedBuf::from_bytes(v) }
    }

    /// SSD: tensors found by id whatever their order; bad dtypes, shapes and ids are errors.
    #[test]
    fn ssd_inputs_by_id_and_errors() {
        let mut c = PostConfig::from_params(
            &ModelParams::from_value(json!({"POST_PROCESS":[{"OutputPostprocessType": "Detection", "OutputNumClasses": 2,
                "OutputConfThreshold": 0.6, "OutputNMSThreshold": 0.5, "UseRegularNMS": true, "PostProcessorInputs": [7, 5, 6]}]}))
            .unwrap(),
        );
        let anchors = tensor(&[2, 4], &[0.5, 0.5, 0.2, 0.2, 0.25, 0.25, 0.1, 0.1]);
        let boxes = u8_tensor(&[1, 2, 4], &[0; 8]);
        let scores = u8_tensor(&[1, 2, 3], &[0, 2, 0, 0, 0, 0]);
        let outs = vec![boxes.clone(), scores.clone(), anchors.clone()];
        let r = run(&c, outs.clone(), &[5, 6, 7], &BTreeMap::new(), (100.0, 100.0)).unwrap().results;
        // Anchor 0 only (anchor 1's best logit is 0); class 0 (sigmoid 2), class 1 is 0.5 < 0.6.
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["category_id"], 0);
        let b: Vec<f64> = r[0]["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(b.iter().zip([40.0, 40.0, 60.0, 60.0]).all(|(a, w)| (a - w).abs() < 1e-4), "{b:?}");
        let e = run(&c, outs.clone(), &[1, 2, 3], &BTreeMap::new(), (100.0, 100.0)).unwrap_err();
        assert!(e.message.contains("tensor id 7") && e.message.contains("anchors"), "{}", e.message);
        let float_boxes = vec![tensor(&[1, 2, 4], &[0.0; 8]), scores.clone(), anchors.clone()];
        let e = run(&c, float_boxes, &[5, 6, 7], &BTreeMap::new(), (100.0, 100.0)).unwrap_err();
        assert!(e.message.contains("box encodings") && e.message.contains("uint8"), "{}", e.message);
        let short = vec![boxes.clone(), u8_tensor(&[1, 2, 5], &[0; 10]), anchors.clone()];
        let e = run(&c, short, &[5, 6, 7], &BTreeMap::new(), (100.0, 100.0)).unwrap_err();
        assert!(e.message.contains("OutputNumClasses"), "{}", e.message);
        c.inputs.pop();
        let e = run(&c, outs, &[5, 6, 7], &BTreeMap::new(), (100.0, 100.0)).unwrap_err();
        assert!(e.message.contains("is 2"), "{}", e.message);
    }

    /// HandDetection: wrong tensor sizes are errors naming the role, not out-of-bounds reads.
    #[test]
    fn hand_sizes_are_checked() {
        let c = PostConfig::from_params(
            &ModelParams::from_value(
                json!({"POST_PROCESS":[{"OutputPostprocessType": "HandDetection", "OutputConfThreshold": 0.5, "PostProcessorInputs": [1, 2, 3, 4]}]}),
            )
            .unwrap(),
        );
        let lm = tensor(&[1, 63], &[1.0; 63]);
        let one = tensor(&[1, 1], &[0.9]);
        let r = run(&c, vec![lm.clone(), one.clone(), one.clone(), lm.clone()], &[1, 2, 3, 4], &BTreeMap::new(), (1.0, 1.0)).unwrap().results;
        assert_eq!(r[0]["landmarks"].as_array().unwrap().len(), 21);
        assert_eq!(r[0]["landmarks"][20]["label"], "PinkyFingerTip");
        let e = run(&c, vec![tensor(&[1, 60], &[1.0; 60]), one.clone(), one.clone(), lm], &[1, 2, 3, 4], &BTreeMap::new(), (1.0, 1.0)).unwrap_err();
        assert!(e.message.contains("landmarks") && e.message.contains("63"), "{}", e.message);
    }

    /// SegmentationYoloV8: a model without prototypes is an error naming the type and the
    /// missing tensor; a detection carries a run-length mask cut to its clamped box.
    #[test]
    fn segmentation_yolov8_heads() {
        let mut c = cfg("SegmentationYoloV8");
        (c.num_classes, c.reg_max, c.conf_threshold, c.nms_threshold, c.max_detections) = (2, 1, 0.5, 0.5, 10);
        let (g, p) = (2usize, 4usize);
        // One anchor fires (cell 0,0 of a 2x2 grid over a 16x16 input): distances 1 cell.
        let mut cls = vec![-9.0f32; g * g * 2];
        cls[1] = 3.0;
        let bx = vec![1.0f32; g * g * 4];
        let mut coef = vec![0.0f32; g * g * 32];
        coef[0] = 1.0;
        // Prototype channel 0: positive in the left half.
        let proto: Vec<f32> = (0..p * p * 32)
            .map(|i| {
                if i % 32 == 0 {
                    if (i / 32) % p < 2 {
                        4.0
                    } else {
                        -4.0
                    }
                } else {
                    0.0
                }
            })
            .collect();
        let outs = vec![tensor(&[1, 2, 2, 4], &bx), tensor(&[1, 2, 2, 2], &cls), tensor(&[1, 2, 2, 32], &coef), tensor(&[1, 4, 4, 32], &proto)];
        let r = run(&c, outs.clone(), &[], &BTreeMap::new(), (16.0, 16.0)).unwrap().results;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["category_id"], 1);
        assert_eq!(r[0]["bbox"], json!([0.0, 0.0, 12.0, 12.0]), "anchor (4, 4) -/+ 8 px, clamped at 0");
        assert_eq!((r[0]["mask"]["width"].as_u64(), r[0]["mask"]["height"].as_u64()), (Some(12), Some(12)));
        let e = run(&c, outs[..3].to_vec(), &[], &BTreeMap::new(), (16.0, 16.0)).unwrap_err();
        assert!(e.message.contains("SegmentationYoloV8") && e.message.contains("prototype"), "{}", e.message);
    }

    #[test]
    fn unknown_type() {
        let e = run(&cfg("Fancy"), vec![], &[], &BTreeMap::new(), (1.0, 1.0)).unwrap_err();
        assert_eq!(e.message, "Postprocessor type 'Fancy' is not known");
    }
}
