//! `DetectionYoloV8` with separate per-scale heads: for each stride a box tensor of
//! 4 x `OutputYoloRegMax` DFL logits (sides left, top, right, bottom, bins innermost) and a
//! class tensor of `OutputNumClasses` logits (PySDK applies the sigmoid), NHWC `[1,H,W,C]` or
//! NCHW `[1,C,H,W]`. Cell (row i, column j) has its anchor point at (j + 0.5, i + 0.5) x stride;
//! the box is anchor -/+ the DFL expectation of each side, times the stride.
//! `DetectionDamoYolo` runs here too, as in PySDK: flattened `[1, N, C]` heads and
//! `OutputYoloRegMax` 1 (PySDK refuses other bin counts: "Mismatch in the number of box/prob
//! tensors!"), anchor points at the cell corner (j, i) x stride.
use super::{describe, dims, sigmoid, values, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;

/// A head tensor viewed as `[H, W, C]` (whatever its layout); float32 data is borrowed.
pub(super) struct Head<'a> {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    nhwc: bool,
    data: std::borrow::Cow<'a, [f32]>,
}

impl Head<'_> {
    /// The channels of cell (i, j) as one slice, when the layout keeps them together (NHWC).
    pub fn cell(&self, i: usize, j: usize) -> Option<&[f32]> {
        let at = (i * self.w + j) * self.c;
        self.nhwc.then(|| &self.data[at..at + self.c])
    }

    pub fn at(&self, i: usize, j: usize, k: usize) -> f32 {
        if self.nhwc {
            self.data[(i * self.w + j) * self.c + k]
        } else {
            self.data[(k * self.h + i) * self.w + j]
        }
    }
}

/// Classify a head by its channel count: `Some((_, true))` box head, `Some((_, false))` class
/// head. Rank 4 is NHWC or NCHW; rank 3 `[1, N, C]` is a flattened grid, row-major, whose
/// size N is one of `grids` (the stride grids of the input).
fn head_of<'a>(t: &'a Tensor, box_c: usize, nc: Option<usize>, grids: &[(usize, usize)]) -> Option<(Head<'a>, bool)> {
    let d = dims(t);
    let is = |c: usize| c == box_c || nc.is_none_or(|n| n == c);
    if d.len() == 3 && d[0] == 1 && is(d[2]) {
        let &(h, w) = grids.iter().find(|(h, w)| h * w == d[1])?;
        return Some((Head { h, w, c: d[2], nhwc: true, data: values(t) }, d[2] == box_c));
    }
    if d.len() != 4 || d[0] != 1 {
        return None;
    }
    // NHWC when the last dim is a channel count and the second is not (or both are and H == W).
    let nhwc = if is(d[3]) && !is(d[1]) {
        true
    } else if is(d[1]) && !is(d[3]) {
        false
    } else if is(d[3]) {
        d[1] == d[2] || !is(d[1])
    } else {
        return None;
    };
    let (h, w, c) = if nhwc { (d[1], d[2], d[3]) } else { (d[2], d[3], d[1]) };
    Some((Head { h, w, c, nhwc, data: values(t) }, c == box_c))
}

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let kind = cfg.kind.as_str();
    let reg = cfg.reg_max;
    let box_c = 4 * reg;
    let nc = (cfg.num_classes > 0).then_some(cfg.num_classes);
    let mut boxes: Vec<Head> = Vec::new();
    let mut classes: Vec<(Head, String)> = Vec::new();
    let strides: &[i64] = if cfg.strides.is_empty() { &[8, 16, 32] } else { &cfg.strides };
    let grids: Vec<(usize, usize)> =
        strides.iter().filter(|&&s| s > 0).map(|&s| ((input_wh.1 / s as f32).round() as usize, (input_wh.0 / s as f32).round() as usize)).collect();
    for t in outputs {
        match head_of(t, box_c, nc, &grids) {
            Some((h, true)) => boxes.push(h),
            Some((h, false)) => classes.push((h, describe(t))),
            None => {
                return Err(Error::bad_model(format!(
                    "{kind} post-processing: {} is neither a box head ({box_c} channels = 4 x OutputYoloRegMax {reg}) nor a class head ({} channels)",
                    describe(t),
                    nc.map_or("OutputNumClasses".to_string(), |n| n.to_string())
                )))
            }
        }
    }
    if boxes.is_empty() || boxes.len() != classes.len() {
        return Err(Error::bad_model(format!(
            "{kind} post-processing expects one box head ({box_c} channels) and one class head per stride; the model has {} box and {} class tensors",
            boxes.len(),
            classes.len()
        )));
    }
    let thr = cfg.conf_threshold as f32;
    // PySDK puts DAMO-YOLO's anchor points on the cell corner, YOLOv8's on the cell centre.
    let half = if cfg.kind == super::PostprocessType::DetectionDamoYolo { 0.0 } else { 0.5 };
    let mut cands: Vec<Det> = Vec::new();
    let mut cls_scores: Vec<(usize, f32)> = Vec::new();
    let mut e = vec![0f32; reg];
    for (cls, what) in &classes {
        let Some(bx) = boxes.iter().find(|b| b.h == cls.h && b.w == cls.w) else {
            return Err(Error::bad_model(format!("{kind} post-processing: no box head matches the {}x{} grid of class {what}", cls.h, cls.w)));
        };
        if nc.is_some_and(|n| n != cls.c) {
            return Err(Error::bad_model(format!("{kind} post-processing: {what} has {} classes, OutputNumClasses is {}", cls.c, nc.unwrap_or(0))));
        }
        let (sx, sy) = (input_wh.0 / cls.w as f32, input_wh.1 / cls.h as f32);
        for i in 0..cls.h {
            for j in 0..cls.w {
                cls_scores.clear();
                for k in 0..cls.c {
                    let s = sigmoid(cls.at(i, j, k));
                    if s >= thr {
                        cls_scores.push((k, s));
                    }
                }
                if cls_scores.is_empty() {
                    continue;
                }
                let dist = dfl(bx, i, j, reg, &mut e);
                let (ax, ay) = (j as f32 + half, i as f32 + half);
                let b = [(ax - dist[0]) * sx, (ay - dist[1]) * sy, (ax + dist[2]) * sx, (ay + dist[3]) * sy];
                cls_scores.sort_by(|a, b| super::score_desc(a.1, b.1));
                let per_anchor = if cfg.regular_nms { cls_scores.len() } else { cfg.max_classes_per_detection };
                for &(c, s) in cls_scores.iter().take(per_anchor) {
                    cands.push(Det { b, score: s, class: c, anchor: i * cls.w + j });
                }
            }
        }
    }
    Ok(super::finish_detections(cfg, cands, labels))
}

/// View a rank-4 tensor as a head whose channel count is one of `chans` (NHWC or NCHW).
pub(super) fn view<'a>(t: &'a Tensor, chans: &[usize]) -> Option<Head<'a>> {
    let d = dims(t);
    if d.len() != 4 || d[0] != 1 {
        return None;
    }
    let nhwc = if chans.contains(&d[3]) && (!chans.contains(&d[1]) || d[1] == d[2]) {
        true
    } else if chans.contains(&d[1]) {
        false
    } else {
        return None;
    };
    let (h, w, c) = if nhwc { (d[1], d[2], d[3]) } else { (d[2], d[3], d[1]) };
    Some(Head { h, w, c, nhwc, data: values(t) })
}

/// DFL: the expected distance of each side (left, top, right, bottom) in cells, from
/// `reg` softmax bins per side. `e` is scratch space of `reg` values. With one bin
/// (`OutputYoloRegMax` 1, DAMO-YOLO) the head holds the distances themselves.
pub(super) fn dfl(bx: &Head<'_>, i: usize, j: usize, reg: usize, e: &mut [f32]) -> [f32; 4] {
    let mut dist = [0f32; 4];
    if reg == 1 {
        return std::array::from_fn(|side| bx.at(i, j, side));
    }
    for (side, dv) in dist.iter_mut().enumerate() {
        let mut m = f32::NEG_INFINITY;
        for (b, ev) in e.iter_mut().enumerate() {
            *ev = bx.at(i, j, side * reg + b);
            m = m.max(*ev);
        }
        let (mut sum, mut acc) = (0f32, 0f32);
        for (b, ev) in e.iter().enumerate() {
            let x = (ev - m).exp();
            sum += x;
            acc += x * b as f32;
        }
        *dv = acc / sum;
    }
    dist
}
