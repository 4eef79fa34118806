//! `DetectionYoloHailo`: HailoRT's by-class NMS output, one tensor read as a flat list that
//! is packed class after class: the class's box count, then that many rows of (y1, x1, y2, x2,
//! score), normalised to the input size. PySDK keeps the rows in that order (classes in turn,
//! no re-sorting, no further NMS), at or above the threshold, up to `MaxDetections`.
use super::{dequantize, describe, label_of, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let [t] = outputs else {
        return Err(Error::bad_model(format!(
            "DetectionYoloHailo post-processing expects one output tensor (Hailo NMS by class); the model has {}",
            outputs.len()
        )));
    };
    let nc = cfg.num_classes;
    if nc == 0 {
        return Err(Error::bad_model("DetectionYoloHailo post-processing needs OutputNumClasses"));
    }
    let v = dequantize(t);
    let (w, h) = (input_wh.0 as f64, input_wh.1 as f64);
    let thr = cfg.conf_threshold as f32;
    let mut out = Vec::new();
    let mut pos = 0usize;
    for c in 0..nc {
        let Some(&count) = v.get(pos) else {
            return Err(Error::bad_model(format!("DetectionYoloHailo post-processing: {} ends before the box count of class {c}", describe(t))));
        };
        pos += 1;
        // A count is a float from the model: NaN is 0 and a huge one saturates, so the row
        // range is computed with checked arithmetic (the fuzzer found `pos + 5 * n` overflowing).
        let n = count.max(0.0) as usize;
        // `pos` is at most `v.len()`: the count before it was read.
        let Some(rows) = n.checked_mul(5).and_then(|len| v[pos..].get(..len)) else {
            return Err(Error::bad_model(format!("DetectionYoloHailo post-processing: {} ends inside the {n} boxes of class {c}", describe(t))));
        };
        pos += rows.len();
        for r in rows.chunks_exact(5).filter(|r| r[4] >= thr) {
            let id = c as i64 - cfg.class_id_adjustment;
            out.push(json!({"bbox": [r[1] as f64 * w, r[0] as f64 * h, r[3] as f64 * w, r[2] as f64 * h], "category_id": id, "label": label_of(labels, id), "score": r[4] as f64}));
        }
    }
    out.truncate(cfg.max_detections);
    Ok(out)
}
