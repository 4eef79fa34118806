//! `DetectionYoloV10` (NMS-free): one `[1, N, 6]` tensor of rows x1, y1, x2, y2, score, class
//! id in input pixels. PySDK keeps the rows at or above the threshold in row order (no NMS,
//! no re-sorting), up to `MaxDetections`.
use super::{dequantize, describe, dims, label_of, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>) -> Result<Vec<Value>> {
    let [t] = outputs else {
        return Err(Error::bad_model(format!("DetectionYoloV10 post-processing expects one output tensor [1, N, 6]; the model has {}", outputs.len())));
    };
    let d: Vec<usize> = dims(t).into_iter().filter(|&x| x != 1).collect();
    if d.len() != 2 || d[1] != 6 {
        return Err(Error::bad_model(format!("DetectionYoloV10 post-processing: {} is not [1, N, 6] (x1, y1, x2, y2, score, class)", describe(t))));
    }
    let v = dequantize(t);
    let thr = cfg.conf_threshold as f32;
    Ok(v.chunks_exact(6)
        .filter(|r| r[4] >= thr)
        .take(cfg.max_detections)
        .map(|r| {
            let id = r[5] as i64 - cfg.class_id_adjustment;
            json!({"bbox": [r[0] as f64, r[1] as f64, r[2] as f64, r[3] as f64], "category_id": id, "label": label_of(labels, id), "score": r[4] as f64})
        })
        .collect())
}
