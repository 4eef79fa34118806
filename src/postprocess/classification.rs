//! `Classification` (and the OCR plate variants' result form): scores → top-k / threshold list.
use super::{dequantize, label_of, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn classification(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>) -> Result<Vec<Value>> {
    let t = outputs.first().ok_or_else(|| Error::inference("classification model produced no output"))?;
    let mut scores = dequantize(t);
    if cfg.softmax && !scores.is_empty() {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        for s in scores.iter_mut() {
            *s /= sum;
        }
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    // Stable: equal scores keep class order. NaN scores (a broken model) rank last: the order
    // must be total, or the sort panics.
    idx.sort_by(|&a, &b| super::score_desc(scores[a], scores[b]));
    let chosen: Vec<usize> =
        if cfg.top_k > 0 { idx.into_iter().take(cfg.top_k).collect() } else { idx.into_iter().filter(|&i| scores[i] as f64 >= cfg.conf_threshold).collect() };
    Ok(chosen
        .into_iter()
        .filter_map(|i| {
            let id = i as i64 - cfg.class_id_adjustment;
            (id >= 0).then(|| json!({"category_id": id, "label": label_of(labels, id), "score": scores[i] as f64}))
        })
        .collect())
}
