//! YOLO detection from one fused output tensor: v8 (`DetectionYoloV8`) and v5-style with
//! objectness (`DetectionYolo`).
use super::{values, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;

/// YOLO decoding of a single output tensor: v8 `[1, 4+nc, N]` (or `[1, N, 4+nc]`) with
/// class scores; v5 `[1, N, 5+nc]` with objectness. Boxes are centre/size in input pixels
/// (normalised coordinates are scaled by the input size).
pub(super) fn yolo(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, v8: bool, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    if outputs.len() != 1 {
        return Err(Error::unsupported(format!(
            "{} post-processing supports models with one output tensor; this model has {}",
            cfg.kind.as_str(),
            outputs.len()
        )));
    }
    let t = &outputs[0];
    let data = values(t);
    let shape: Vec<usize> = t.info.shape.iter().map(|&d| d.max(0) as usize).collect();
    let dims: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
    if dims.len() != 2 {
        return Err(Error::bad_model(format!(
            "{} post-processing: {} is not a fused [1, attributes, N] detection tensor",
            cfg.kind.as_str(),
            super::describe(t)
        )));
    }
    let extra = if v8 { 4 } else { 5 };
    let nc = if cfg.num_classes > 0 { cfg.num_classes } else { dims[0].min(dims[1]).saturating_sub(extra) };
    let attrs = nc + extra;
    // Channels-first when the first dim is the attribute dim.
    let (n, channels_first) = if dims[0] == attrs && dims[1] != attrs {
        (dims[1], true)
    } else if dims[1] == attrs {
        (dims[0], false)
    } else {
        return Err(Error::bad_model(format!(
            "{} post-processing: {} does not hold {extra} box values and {nc} classes per row",
            cfg.kind.as_str(),
            super::describe(t)
        )));
    };
    let at = |a: usize, j: usize| {
        if channels_first {
            data[a * n + j]
        } else {
            data[j * attrs + a]
        }
    };
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    let thr = cfg.conf_threshold as f32;
    let mut norm_scale = (1.0f32, 1.0f32);
    // Normalised boxes: every centre within [0, 1.5] → scale by the input size.
    if (0..n).all(|j| at(0, j).abs() <= 1.5 && at(1, j).abs() <= 1.5) && n > 0 {
        norm_scale = input_wh;
    }
    // Anchors that may hold a class at or above the threshold, found row by row (contiguous
    // reads in the channels-first layout, and no sigmoid: a logit a little under the
    // threshold's is kept and decided exactly below). v5 filters on objectness instead.
    let mut maybe = vec![!v8; n];
    if v8 {
        let floor = if cfg.sigmoid_cls { (thr / (1.0 - thr)).ln() - 1e-3 } else { thr };
        for c in 0..nc {
            for (j, m) in maybe.iter_mut().enumerate() {
                // NaN and a threshold of 1 or more (logit +inf, or NaN) keep everything.
                let x = at(extra + c, j);
                *m = *m || x >= floor || x.is_nan() || floor.is_nan();
            }
        }
    }
    let mut cands: Vec<Det> = Vec::new();
    let mut cls_scores: Vec<(usize, f32)> = Vec::with_capacity(nc);
    for j in (0..n).filter(|&j| maybe[j]) {
        let obj = if v8 { 1.0 } else { at(4, j) };
        if !v8 && obj < thr {
            continue;
        }
        cls_scores.clear();
        for c in 0..nc {
            let mut s = at(extra + c, j);
            if cfg.sigmoid_cls {
                s = sig(s);
            }
            s *= obj;
            if s >= thr {
                cls_scores.push((c, s));
            }
        }
        if cls_scores.is_empty() {
            continue;
        }
        cls_scores.sort_by(|a, b| super::score_desc(a.1, b.1));
        let (cx, cy, w, h) = (at(0, j) * norm_scale.0, at(1, j) * norm_scale.1, at(2, j) * norm_scale.0, at(3, j) * norm_scale.1);
        let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        // PySDK: with regular (per-class) NMS every (anchor, class) pair above the threshold
        // is a candidate; the fast (class-agnostic) mode keeps each anchor's top classes.
        let per_anchor = if cfg.regular_nms { cls_scores.len() } else { cfg.max_classes_per_detection };
        for &(c, s) in cls_scores.iter().take(per_anchor) {
            cands.push(Det { b, score: s, class: c, anchor: j });
        }
    }
    Ok(super::finish_detections(cfg, cands, labels))
}
