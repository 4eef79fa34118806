//! `DetectionYoloV8Plates` (licence-plate reading), as PySDK 1.5.0's core runs it (found by
//! probing): YOLOv8 per-scale heads (`PostProcessorInputs` must list them: box heads, then class
//! heads) are decoded and NMS'd as `DetectionYoloV8`; the characters found are read left to right
//! (box x1 in model coordinates) into one result `{"label": labels concatenated, "score":
//! geometric mean of their scores}` (`{"label": "", "score": 0}` when there are none).
use super::{yolov8_heads, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    if !cfg.inputs_given {
        return Err(Error::bad_model(
            "DetectionYoloV8Plates post-processing: parameter 'PostProcessorInputs' in section 'POST_PROCESS' is missing (it lists the box heads, then the class heads)",
        ));
    }
    let mut dets = yolov8_heads::decode(cfg, outputs, labels, input_wh)?;
    if dets.is_empty() {
        return Ok(vec![json!({"label": "", "score": 0})]);
    }
    let x1 = |d: &Value| d["bbox"][0].as_f64().unwrap_or(0.0);
    dets.sort_by(|a, b| x1(a).total_cmp(&x1(b)));
    let label: String = dets.iter().map(|d| d["label"].as_str().unwrap_or("")).collect();
    let log_sum: f64 = dets.iter().map(|d| d["score"].as_f64().unwrap_or(0.0).ln()).sum();
    Ok(vec![json!({"label": label, "score": (log_sum / dets.len() as f64).exp()})])
}
