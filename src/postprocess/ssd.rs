//! `Detection` (SSD with the box decoding left to the post-processor), as PySDK 1.5.0's core
//! runs it: three tensors named by tensor id in `PostProcessorInputs`, in the order anchors,
//! box encodings, class scores. Found by probing PySDK with hand-built graphs:
//! - anchors are float `[.., N, 4]` (y centre, x centre, height, width; normalised); box
//!   encodings and scores must be 8-bit unsigned (quantised) tensors, `[.., N, 4]` (ty, tx,
//!   th, tw) and `[.., N, C]` with C = `OutputNumClasses` or one more (a leading background
//!   column, skipped);
//! - centre = anchor centre + t / `YScale`|`XScale` * anchor size, size = exp(t / `HScale`|`WScale`)
//!   * anchor size; NMS on the unclipped boxes, which are then clipped to the input;
//! - an anchor is considered only when its best class logit is above 0; then each class whose
//!   sigmoid score is at or above the threshold is a candidate (`UseRegularNMS`, per-class NMS)
//!   or only the best class (fast, class-agnostic NMS). `OutputClassIDAdjustment` is not used.
//!
//! The TFLite_Detection_PostProcess form (4 outputs) is refused as PySDK's core refuses it.
use super::{dequantize, describe, dims, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::{ElemType, Tensor};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ROLES: [&str; 3] = ["anchors", "box encodings", "class scores"];

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], ids: &[i64], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let t = super::inputs_by_id("Detection", cfg, outputs, ids, &ROLES)?;
    let [anchors, boxes, scores] = [t[0], t[1], t[2]];
    for (k, x) in t.iter().enumerate() {
        let want = if k == 0 { ElemType::F32 } else { ElemType::U8 };
        if x.info.dtype != want {
            return Err(Error::bad_model(format!(
                "Detection post-processing: the {} ({}) must be {}; it is {}",
                ROLES[k],
                describe(x),
                if k == 0 { "float32" } else { "uint8 (quantised)" },
                x.info.dtype.numpy_name()
            )));
        }
    }
    let (ad, bd, sd) = (dims(anchors), dims(boxes), dims(scores));
    let n = ad.iter().rev().nth(1).copied().unwrap_or(0);
    let c = sd.last().copied().unwrap_or(0);
    let nc = cfg.num_classes;
    if ad.last() != Some(&4)
        || bd.last() != Some(&4)
        || n == 0
        || anchors.num_elements() != n * 4
        || boxes.num_elements() != n * 4
        || scores.num_elements() != n * c
    {
        return Err(Error::bad_model(format!(
            "Detection post-processing: {}, {} and {} are not anchors [N, 4], box encodings [1, N, 4] and class scores [1, N, C]",
            describe(anchors),
            describe(boxes),
            describe(scores)
        )));
    }
    if c != nc && c != nc + 1 {
        return Err(Error::bad_model(format!(
            "Detection post-processing: {} has {c} classes per anchor; OutputNumClasses is {nc} (the scores hold it, or one more with background first)",
            describe(scores)
        )));
    }
    let thr = cfg.conf_threshold;
    if !(thr > 0.0 && thr <= 1.0) {
        return Err(Error::bad_model(format!("Detection post-processing: OutputConfThreshold must be in (0, 1]; it is {thr}")));
    }
    let offset = c - nc;
    let (av, bv, sv) = (dequantize(anchors), dequantize(boxes), dequantize(scores));
    let [ys, xs, hs, ws] = cfg.box_scales;
    let (w, h) = input_wh;
    let mut cands = Vec::new();
    for i in 0..n {
        let logits = &sv[i * c + offset..(i + 1) * c];
        let Some((best, &top)) = logits.iter().enumerate().fold(None, |m: Option<(usize, &f32)>, (j, v)| match m {
            Some((_, b)) if *b >= *v => m,
            _ => Some((j, v)),
        }) else {
            continue;
        };
        if top <= 0.0 {
            continue;
        }
        let (a, e) = (&av[i * 4..i * 4 + 4], &bv[i * 4..i * 4 + 4]);
        let yc = a[0] + e[0] / ys * a[2];
        let xc = a[1] + e[1] / xs * a[3];
        let bh = (e[2] / hs).exp() * a[2];
        let bw = (e[3] / ws).exp() * a[3];
        // NMS sees the boxes unclipped; they are clipped to the input afterwards.
        let b = [(xc - bw / 2.0) * w, (yc - bh / 2.0) * h, (xc + bw / 2.0) * w, (yc + bh / 2.0) * h];
        // Scores in f64 against the f64 threshold (PySDK drops sigmoid(1) at a threshold of f32 sigmoid(1)).
        let score = |v: f32| 1.0 / (1.0 + (-(v as f64)).exp());
        let classes: Vec<usize> = if cfg.regular_nms { (0..nc).collect() } else { vec![best] };
        for class in classes {
            let s = score(logits[class]);
            if s >= thr {
                cands.push(Det { b, score: s as f32, class, anchor: i });
            }
        }
    }
    let cfg = PostConfig { class_id_adjustment: 0, ..cfg.clone() };
    let mut out = super::finish_detections(&cfg, cands, labels);
    for r in &mut out {
        if let Some(Value::Array(b)) = r.get_mut("bbox") {
            for (k, v) in b.iter_mut().enumerate() {
                let lim = if k % 2 == 0 { w } else { h } as f64;
                *v = json!(v.as_f64().unwrap_or(0.0).clamp(0.0, lim));
            }
        }
    }
    Ok(out)
}
