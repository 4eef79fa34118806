//! `PoseDetectionYoloV8` from one fused tensor `[1, 4 + nc + 3K, N]` (or `[1, N, 4 + nc + 3K]`):
//! box centre/size in input pixels, class scores (used as they are), then K keypoints of
//! (x, y, visibility). Each detection carries `landmarks`: `{"category_id": k, "connect": [..],
//! "landmark": [x, y], "score": visibility}`, as PySDK; `connect` is `Connections[k]` (empty if absent).
use super::yolov8_heads::{dfl, view, Head};
use super::{dequantize, describe, dims, sigmoid, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>) -> Result<Vec<Value>> {
    let [t] = outputs else {
        return Err(Error::bad_model(format!("PoseDetectionYoloV8 post-processing expects one fused output tensor; the model has {}", outputs.len())));
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
        let mut scores: Vec<(usize, f32)> = (0..nc).map(|c| (c, at(4 + c, j))).filter(|&(_, s)| s >= thr).collect();
        if scores.is_empty() {
            continue;
        }
        scores.sort_by(|a, b| super::score_desc(a.1, b.1));
        let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
        let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        let per_anchor = if cfg.regular_nms { scores.len() } else { cfg.max_classes_per_detection };
        for &(c, s) in scores.iter().take(per_anchor) {
            cands.push(Det { b, score: s, class: c, anchor: j });
        }
    }
    Ok(super::finish_detections_with(cfg, cands, labels, &|d, o| {
        let lms: Vec<Value> = (0..k)
            .map(|i| {
                let base = 4 + nc + 3 * i;
                json!({"category_id": i, "connect": cfg.connect(i), "landmark": [at(base, d.anchor) as f64, at(base + 1, d.anchor) as f64], "score": at(base + 2, d.anchor) as f64})
            })
            .collect();
        o.insert("landmarks".into(), Value::Array(lms));
    }))
}

/// `PoseDetectionYoloV8` with separate per-scale heads (NHWC or NCHW): a DFL box head
/// (4 x `OutputYoloRegMax`), a class head (`OutputNumClasses` logits, sigmoid) and a keypoint
/// head (3 x `OutputNumLandmarks`: x, y offsets and a visibility logit). Keypoint k of cell
/// (i, j) is at ((2 x_k + j) x stride, (2 y_k + i) x stride) with score sigmoid(v_k).
pub(super) fn decode_heads(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let reg = cfg.reg_max;
    let nc = cfg.num_classes.max(1);
    let k = cfg.num_landmarks;
    let chans = [4 * reg, nc, 3 * k];
    let (mut boxes, mut classes, mut kpts): (Vec<Head>, Vec<Head>, Vec<Head>) = (Vec::new(), Vec::new(), Vec::new());
    for t in outputs {
        let Some(h) = view(t, &chans) else {
            return Err(Error::bad_model(format!(
                "PoseDetectionYoloV8 post-processing: {} is neither a box ({} channels), class ({nc}) nor keypoint ({}) head",
                describe(t),
                4 * reg,
                3 * k
            )));
        };
        match h.c {
            c if c == 4 * reg => boxes.push(h),
            c if c == nc => classes.push(h),
            _ => kpts.push(h),
        }
    }
    if classes.is_empty() || boxes.len() != classes.len() || kpts.len() != classes.len() {
        return Err(Error::bad_model(format!(
            "PoseDetectionYoloV8 post-processing expects a box, a class and a keypoint head per stride; the model has {} outputs ({} box, {} class, {} keypoint)",
            outputs.len(),
            boxes.len(),
            classes.len(),
            kpts.len()
        )));
    }
    let thr = cfg.conf_threshold as f32;
    let mut cands = Vec::new();
    // Per candidate: its keypoints (x, y, score) in input pixels.
    let mut points: Vec<Vec<[f32; 3]>> = Vec::new();
    let mut e = vec![0f32; reg];
    for cls in &classes {
        let same = |h: &&Head| h.h == cls.h && h.w == cls.w;
        let (Some(bx), Some(kp)) = (boxes.iter().find(same), kpts.iter().find(same)) else {
            return Err(Error::bad_model(format!("PoseDetectionYoloV8 post-processing: no box or keypoint head matches the {}x{} class grid", cls.h, cls.w)));
        };
        let (sx, sy) = (input_wh.0 / cls.w as f32, input_wh.1 / cls.h as f32);
        for i in 0..cls.h {
            for j in 0..cls.w {
                let mut scores: Vec<(usize, f32)> = (0..nc).map(|c| (c, sigmoid(cls.at(i, j, c)))).filter(|&(_, s)| s >= thr).collect();
                if scores.is_empty() {
                    continue;
                }
                scores.sort_by(|a, b| super::score_desc(a.1, b.1));
                let d = dfl(bx, i, j, reg, &mut e);
                let (ax, ay) = (j as f32 + 0.5, i as f32 + 0.5);
                let b = [(ax - d[0]) * sx, (ay - d[1]) * sy, (ax + d[2]) * sx, (ay + d[3]) * sy];
                let pts: Vec<[f32; 3]> = (0..k)
                    .map(|q| [(kp.at(i, j, 3 * q) * 2.0 + j as f32) * sx, (kp.at(i, j, 3 * q + 1) * 2.0 + i as f32) * sy, sigmoid(kp.at(i, j, 3 * q + 2))])
                    .collect();
                let per_anchor = if cfg.regular_nms { scores.len() } else { cfg.max_classes_per_detection };
                for &(c, s) in scores.iter().take(per_anchor) {
                    cands.push(Det { b, score: s, class: c, anchor: points.len() });
                }
                points.push(pts);
            }
        }
    }
    Ok(super::finish_detections_with(cfg, cands, labels, &|d, o| {
        // PySDK's core clamps keypoints at 0 in model coordinates.
        let lms: Vec<Value> = points[d.anchor]
            .iter()
            .enumerate()
            .map(|(q, p)| json!({"category_id": q, "connect": cfg.connect(q), "landmark": [p[0].max(0.0) as f64, p[1].max(0.0) as f64], "score": p[2] as f64}))
            .collect();
        o.insert("landmarks".into(), Value::Array(lms));
    }))
}
