//! `PoseDetectionYoloV8` from one fused tensor `[1, 4 + nc + 3K, N]` (or `[1, N, 4 + nc + 3K]`):
//! box centre/size in input pixels, class scores (used as they are), then K keypoints of
//! (x, y, visibility). Each detection carries `landmarks`: `{"category_id": k, "connect": [],
//! "landmark": [x, y], "score": visibility}`, as PySDK.
use super::{dequantize, describe, dims, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(
    cfg: &PostConfig,
    outputs: &[Tensor],
    labels: &BTreeMap<i64, String>,
) -> Result<Vec<Value>> {
    let [t] = outputs else {
        return Err(Error::bad_model(format!(
            "PoseDetectionYoloV8 post-processing expects one fused output tensor; the model has {}",
            outputs.len()
        )));
    };
    let nc = cfg.num_classes.max(1);
    let d: Vec<usize> = dims(t).into_iter().filter(|&x| x != 1).collect();
    let fits = |a: usize| a > 4 + nc && (a - 4 - nc) % 3 == 0;
    let (attrs, n, cf) = match d[..] {
        [a, n] if fits(a) && (a <= n || !fits(n)) => (a, n, true),
        [n, a] if fits(a) => (a, n, false),
        _ => return Err(Error::bad_model(format!("PoseDetectionYoloV8 post-processing: {} is not [1, 4 + {nc} classes + 3 x keypoints, N]", describe(t)))),
    };
    let k = (attrs - 4 - nc) / 3;
    let data = dequantize(t);
    let at = |a: usize, j: usize| {
        if cf {
            data[a * n + j]
        } else {
            data[j * attrs + a]
        }
    };
    let thr = cfg.conf_threshold as f32;
    let mut cands = Vec::new();
    for j in 0..n {
        let mut scores: Vec<(usize, f32)> = (0..nc)
            .map(|c| (c, at(4 + c, j)))
            .filter(|&(_, s)| s >= thr)
            .collect();
        if scores.is_empty() {
            continue;
        }
        scores.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
        let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        let per_anchor = if cfg.regular_nms {
            scores.len()
        } else {
            cfg.max_classes_per_detection
        };
        for &(c, s) in scores.iter().take(per_anchor) {
            cands.push(Det {
                b,
                score: s,
                class: c,
                anchor: j,
            });
        }
    }
    Ok(super::finish_detections_with(
        cfg,
        cands,
        labels,
        &|d, o| {
            let lms: Vec<Value> = (0..k)
            .map(|i| {
                let base = 4 + nc + 3 * i;
                json!({"category_id": i, "connect": [], "landmark": [at(base, d.anchor) as f64, at(base + 1, d.anchor) as f64], "score": at(base + 2, d.anchor) as f64})
            })
            .collect();
            o.insert("landmarks".into(), Value::Array(lms));
        },
    ))
}
