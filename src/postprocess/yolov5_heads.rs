//! `DetectionYolo` (YOLOv5) with per-scale heads and `OutputYoloAnchors`: each head is
//! `[1, H, W, A*(5+nc)]` (NHWC) or `[1, A*(5+nc), H, W]` of logits, anchor-major. With
//! v = sigmoid(logit): centre = (2 v - 0.5 + cell) x stride, size = (2 v)^2 x anchor,
//! score = objectness x class score. Heads are matched to anchor sets by stride (finest first).
use super::{dequantize, describe, dims, sigmoid, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    if cfg.anchors.is_empty() {
        return Err(Error::bad_model("DetectionYolo post-processing of per-scale outputs needs OutputYoloAnchors"));
    }
    let nc = cfg.num_classes;
    if nc == 0 {
        return Err(Error::bad_model("DetectionYolo post-processing of per-scale outputs needs OutputNumClasses"));
    }
    let per = 5 + nc;
    // (h, w, nhwc, anchors, tensor)
    let mut heads = Vec::new();
    for t in outputs {
        let d = dims(t);
        let head = match d[..] {
            [1, h, w, c] if c % per == 0 && c / per > 0 => Some((h, w, true, c / per)),
            [1, c, h, w] if c % per == 0 && c / per > 0 => Some((h, w, false, c / per)),
            _ => None,
        };
        let Some(h) = head else {
            return Err(Error::bad_model(format!("DetectionYolo post-processing: {} is not a [1, H, W, anchors x (5 + {nc})] head", describe(t))));
        };
        heads.push((h, t));
    }
    // Finest grid (smallest stride) first, matched with the anchor sets in order.
    heads.sort_by_key(|h| std::cmp::Reverse(h.0 .0));
    if heads.len() != cfg.anchors.len() {
        return Err(Error::bad_model(format!(
            "DetectionYolo post-processing: the model has {} output heads, OutputYoloAnchors {} anchor sets",
            heads.len(),
            cfg.anchors.len()
        )));
    }
    let thr = cfg.conf_threshold as f32;
    let mut cands = Vec::new();
    let mut base = 0;
    for (((h, w, nhwc, na), t), anchors) in heads.iter().zip(&cfg.anchors) {
        let (h, w, nhwc, na) = (*h, *w, *nhwc, *na);
        if anchors.len() != na {
            return Err(Error::bad_model(format!(
                "DetectionYolo post-processing: {} has {na} anchors per cell, OutputYoloAnchors lists {}",
                describe(t),
                anchors.len()
            )));
        }
        let data = dequantize(t);
        let c = na * per;
        let at = |i: usize, j: usize, ch: usize| {
            if nhwc {
                data[(i * w + j) * c + ch]
            } else {
                data[(ch * h + i) * w + j]
            }
        };
        let (sx, sy) = (input_wh.0 / w as f32, input_wh.1 / h as f32);
        for i in 0..h {
            for j in 0..w {
                for (a, anchor) in anchors.iter().enumerate() {
                    let o = a * per;
                    let obj = sigmoid(at(i, j, o + 4));
                    let mut scores: Vec<(usize, f32)> = (0..nc).map(|k| (k, obj * sigmoid(at(i, j, o + 5 + k)))).filter(|&(_, s)| s >= thr).collect();
                    if scores.is_empty() {
                        continue;
                    }
                    let v = |ch: usize| sigmoid(at(i, j, o + ch));
                    let cx = (v(0) * 2.0 - 0.5 + j as f32) * sx;
                    let cy = (v(1) * 2.0 - 0.5 + i as f32) * sy;
                    let bw = (v(2) * 2.0).powi(2) * anchor[0];
                    let bh = (v(3) * 2.0).powi(2) * anchor[1];
                    let b = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
                    scores.sort_by(|a, b| super::score_desc(a.1, b.1));
                    let per_anchor = if cfg.regular_nms { scores.len() } else { cfg.max_classes_per_detection };
                    for &(k, s) in scores.iter().take(per_anchor) {
                        cands.push(Det { b, score: s, class: k, anchor: base + (i * w + j) * na + a });
                    }
                }
            }
        }
        base += h * w * na;
    }
    Ok(super::finish_detections(cfg, cands, labels))
}
