//! `FaceDetection` in the BlazeFace form PySDK's core decodes: two outputs, regressors
//! `[1, N, 4 + 2K]` (box centre offset and size, then K landmark offsets, in input pixels
//! relative to the anchor centre) and scores `[1, N, 1]` (logits, used as they are). The
//! anchors are BlazeFace's: strides 8 and 16 with 2 and 6 anchors per cell (N = 896 for
//! 128x128). Boxes are truncated to whole pixels; landmarks are `{"landmark": [x, y]}`;
//! the label is class 0's or "face".
use super::{dequantize, describe, dims, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let [a, b] = outputs else {
        return Err(Error::bad_model(format!(
            "FaceDetection post-processing expects two output tensors (regressors and scores); the model has {}",
            outputs.len()
        )));
    };
    let last = |t: &Tensor| dims(t).last().copied().unwrap_or(0);
    let (reg, sc) = if last(b) == 1 { (a, b) } else { (b, a) };
    let (rd, sd) = (dims(reg), dims(sc));
    let w = last(reg);
    if rd.len() != 3 || sd.len() != 3 || last(sc) != 1 || w < 4 || (w - 4) % 2 != 0 || rd[1] != sd[1] {
        return Err(Error::bad_model(format!(
            "FaceDetection post-processing: {} and {} are not regressors [1, N, 4 + 2K] and scores [1, N, 1]",
            describe(a),
            describe(b)
        )));
    }
    let n = rd[1];
    let (iw, ih) = input_wh;
    let mut anchors: Vec<(f32, f32)> = Vec::with_capacity(n);
    for (stride, per) in [(8.0f32, 2usize), (16.0, 6)] {
        let (gw, gh) = ((iw / stride).round() as usize, (ih / stride).round() as usize);
        for i in 0..gh {
            for j in 0..gw {
                for _ in 0..per {
                    anchors.push(((j as f32 + 0.5) / gw as f32 * iw, (i as f32 + 0.5) / gh as f32 * ih));
                }
            }
        }
    }
    if anchors.len() != n {
        return Err(Error::bad_model(format!(
            "FaceDetection post-processing: {} holds {n} anchors; BlazeFace anchors for a {iw}x{ih} input number {}",
            describe(reg),
            anchors.len()
        )));
    }
    let (rv, sv) = (dequantize(reg), dequantize(sc));
    let thr = cfg.conf_threshold as f32;
    let k = (w - 4) / 2;
    let cands: Vec<Det> = (0..n)
        .filter(|&i| sv[i] >= thr)
        .map(|i| {
            let v = &rv[i * w..i * w + 4];
            let (cx, cy) = (anchors[i].0 + v[0], anchors[i].1 + v[1]);
            Det { b: [cx - v[2] / 2.0, cy - v[3] / 2.0, cx + v[2] / 2.0, cy + v[3] / 2.0], score: sv[i], class: 0, anchor: i }
        })
        .collect();
    let kept = super::nms(cands, cfg.nms_threshold as f32, cfg.max_detections);
    let label = labels.get(&0).cloned().unwrap_or_else(|| "face".to_string());
    Ok(kept
        .into_iter()
        .map(|d| {
            let i = d.anchor;
            let lms: Vec<Value> = (0..k).map(|q| json!({"landmark": [(anchors[i].0 + rv[i * w + 4 + 2 * q]) as f64, (anchors[i].1 + rv[i * w + 5 + 2 * q]) as f64]})).collect();
            json!({"bbox": d.b.iter().map(|&x| x.trunc() as i64).collect::<Vec<_>>(), "category_id": 0, "label": label, "landmarks": lms, "score": d.score as f64})
        })
        .collect())
}
