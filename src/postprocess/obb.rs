//! `DetectionYoloV8OBB` with per-scale heads: for each stride a DFL box tensor
//! (4 x `OutputYoloRegMax`), a class tensor (`OutputNumClasses` logits) and an angle tensor
//! (one logit), NHWC or NCHW. angle = (sigmoid(a) - 0.25) x pi; the side distances (l, t, r, b)
//! give size (l + r, t + b) and a centre offset ((r - l) / 2, (b - t) / 2) rotated by the angle.
//! Candidates are each cell's top `MaxClassesPerDetection` classes; NMS (per class with
//! `UseRegularNMS`, else class-agnostic) on the probabilistic IoU of the rotated boxes (Gaussian
//! Hellinger distance); results carry the unrotated `bbox` around the centre and `angle`.
use super::yolov8_heads::{dfl, view, Head};
use super::{describe, sigmoid, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Probabilistic IoU of two rotated boxes (cx, cy, w, h, angle).
fn probiou(p: &[f64; 5], q: &[f64; 5]) -> f64 {
    const EPS: f64 = 1e-7;
    let cov = |b: &[f64; 5]| {
        let (a, bb) = (b[2] * b[2] / 12.0, b[3] * b[3] / 12.0);
        let (c, s) = (b[4].cos(), b[4].sin());
        (a * c * c + bb * s * s, a * s * s + bb * c * c, (a - bb) * c * s)
    };
    let (a1, b1, c1) = cov(p);
    let (a2, b2, c2) = cov(q);
    let (dx, dy) = (p[0] - q[0], p[1] - q[1]);
    let den = (a1 + a2) * (b1 + b2) - (c1 + c2).powi(2);
    let t1 = ((a1 + a2) * dy * dy + (b1 + b2) * dx * dx) / (den + EPS) * 0.25;
    let t2 = ((c1 + c2) * (-dx) * dy) / (den + EPS) * 0.5;
    let t3 = (den / (4.0 * ((a1 * b1 - c1 * c1).max(0.0) * (a2 * b2 - c2 * c2).max(0.0)).sqrt() + EPS) + EPS).ln() * 0.5;
    let bd = (t1 + t2 + t3).clamp(EPS, 100.0);
    let hd = (1.0 - (-bd).exp() + EPS).sqrt();
    1.0 - hd
}

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let reg = cfg.reg_max;
    let nc = cfg.num_classes;
    if nc == 0 || nc == 1 || nc == 4 * reg {
        return Err(Error::bad_model(format!("DetectionYoloV8OBB post-processing needs OutputNumClasses other than 1 and {} (got {nc})", 4 * reg)));
    }
    let (mut boxes, mut classes, mut angles): (Vec<Head>, Vec<Head>, Vec<Head>) = (Vec::new(), Vec::new(), Vec::new());
    for t in outputs {
        let Some(h) = view(t, &[4 * reg, nc, 1]) else {
            return Err(Error::bad_model(format!(
                "DetectionYoloV8OBB post-processing: {} is neither a box ({} channels), class ({nc}) nor angle (1) head",
                describe(t),
                4 * reg
            )));
        };
        match h.c {
            c if c == 4 * reg => boxes.push(h),
            1 => angles.push(h),
            _ => classes.push(h),
        }
    }
    if classes.is_empty() || boxes.len() != classes.len() || angles.len() != classes.len() {
        return Err(Error::bad_model(format!(
            "DetectionYoloV8OBB post-processing expects a box, a class and an angle head per stride; the model has {} outputs ({} box, {} class, {} angle)",
            outputs.len(),
            boxes.len(),
            classes.len(),
            angles.len()
        )));
    }
    let thr = cfg.conf_threshold as f32;
    let mut cands: Vec<(Det, [f64; 5])> = Vec::new();
    let mut e = vec![0f32; reg];
    for cls in &classes {
        let same = |h: &&Head| h.h == cls.h && h.w == cls.w;
        let (Some(bx), Some(an)) = (boxes.iter().find(same), angles.iter().find(same)) else {
            return Err(Error::bad_model(format!("DetectionYoloV8OBB post-processing: no box or angle head matches the {}x{} class grid", cls.h, cls.w)));
        };
        let (sx, sy) = (input_wh.0 / cls.w as f32, input_wh.1 / cls.h as f32);
        for i in 0..cls.h {
            for j in 0..cls.w {
                let mut scores: Vec<(usize, f32)> = (0..nc).map(|k| (k, sigmoid(cls.at(i, j, k)))).filter(|&(_, s)| s >= thr).collect();
                if scores.is_empty() {
                    continue;
                }
                scores.sort_by(|a, b| super::score_desc(a.1, b.1));
                let d = dfl(bx, i, j, reg, &mut e);
                let a = (sigmoid(an.at(i, j, 0)) - 0.25) * std::f32::consts::PI;
                let (xf, yf) = ((d[2] - d[0]) / 2.0, (d[3] - d[1]) / 2.0);
                let (c, s) = (a.cos(), a.sin());
                let cx = (j as f32 + 0.5 + xf * c - yf * s) * sx;
                let cy = (i as f32 + 0.5 + xf * s + yf * c) * sy;
                let (w, h) = ((d[0] + d[2]) * sx, (d[1] + d[3]) * sy);
                let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
                let rot = [cx as f64, cy as f64, w as f64, h as f64, a as f64];
                // Unlike the axis-aligned families, PySDK keeps each cell's top
                // `MaxClassesPerDetection` classes here even with regular NMS.
                for &(k, sc) in scores.iter().take(cfg.max_classes_per_detection) {
                    cands.push((Det { b, score: sc, class: k, anchor: 0 }, rot));
                }
            }
        }
    }
    cands.sort_by(|a, b| super::score_desc(a.0.score, b.0.score));
    let nms_thr = cfg.nms_threshold;
    let mut keep: Vec<(Det, [f64; 5])> = Vec::new();
    for c in cands {
        if keep.len() >= cfg.max_detections {
            break;
        }
        let competes = |k: &(Det, [f64; 5])| !cfg.regular_nms || k.0.class == c.0.class;
        if keep.iter().all(|k| !competes(k) || probiou(&k.1, &c.1) <= nms_thr) {
            keep.push(c);
        }
    }
    Ok(keep
        .into_iter()
        .map(|(d, rot)| {
            let id = d.class as i64 - cfg.class_id_adjustment;
            json!({"angle": rot[4], "bbox": d.b.iter().map(|&v| v as f64).collect::<Vec<_>>(), "category_id": id, "label": super::label_of(labels, id), "score": d.score as f64})
        })
        .collect())
}
