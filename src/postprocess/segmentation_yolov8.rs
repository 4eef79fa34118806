//! `SegmentationYoloV8`: YOLOv8 instance segmentation from per-scale heads, and the client-side
//! mapping of its masks into the original image. Facts established by probing the real PySDK
//! 1.5.0 (scripts/pysdk-probe.py models with constant outputs; its result class called directly):
//! - Outputs: per stride a DFL box head (4 x `OutputYoloRegMax`), a class head
//!   (`OutputNumClasses` logits, sigmoid) and a mask-coefficient head (32), NHWC or NCHW, plus one
//!   prototype tensor of 32 channels (stride 4). Other counts: "YOLOv8 Segmentation postprocessor
//!   expects 10 inputs, but model produces N". Boxes as `DetectionYoloV8`; NMS on the
//!   unclamped boxes, the results' boxes then clamped to the input.
//! - Core result: `{bbox, category_id, label, mask, score}`; `mask` is `{"data", "height",
//!   "width", "x_min", "y_min"}`, cut to model pixels [ceil(x1), ceil(x2)) x [ceil(y1), ceil(y2)),
//!   `data` base64 of little-endian u32 run values then run lengths, row-major over the cut.
//! - Mask: logit = coefficients . prototypes at prototype resolution; z = sigmoid(logit) where the
//!   logit is positive, else 0; z is resized bilinearly (half-pixel centres) to the model input
//!   and a pixel is set when z > 0.5. Before the first prototype centre the core extrapolates
//!   linearly from the first two (not clamped); past the last it clamps. (Every pixel of 20
//!   probe masks: clamping both ends missed 20 of 14323, all on the first row/column.)
//! - Client (PySDK's result class, steps in [`mask_to_image`]): the model mask placed into the
//!   model input, the part covering the image cut out (zero-padded where the image reaches
//!   past the input), the box with up to 2 pixels of margin resized bilinearly to the image box
//!   widened by the scaled margins, then cut to the image box: `{"x_min", "y_min", "data"}`
//!   with `data` a float32 array (values in [0, 1]). Every pixel within 1e-5 of PySDK on the
//!   family goldens and on letterboxed frames of random aspect (`families.rs`).
use super::yolov8_heads::{dfl, view, Head};
use super::{describe, sigmoid, Det, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::{AlignedBuf, ElemType, Tensor, TensorInfo};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const KIND: &str = "SegmentationYoloV8";
/// Mask coefficients per anchor (and prototype channels).
const NM: usize = 32;

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], labels: &BTreeMap<i64, String>, input_wh: (f32, f32)) -> Result<Vec<Value>> {
    let reg = cfg.reg_max;
    let nc = cfg.num_classes.max(1);
    let chans = [4 * reg, nc, NM];
    let mut heads: Vec<(Head, String)> = Vec::new();
    for t in outputs {
        let Some(h) = view(t, &chans) else {
            return Err(Error::bad_model(format!(
                "{KIND} post-processing: {} is neither a box ({} channels = 4 x OutputYoloRegMax {reg}), class ({nc} = OutputNumClasses), mask-coefficient nor prototype ({NM}) tensor",
                describe(t),
                4 * reg
            )));
        };
        heads.push((h, describe(t)));
    }
    // The prototypes: the 32-channel tensor of the finest grid.
    let proto_at = heads.iter().enumerate().filter(|(_, (h, _))| h.c == NM && h.c != nc && h.c != 4 * reg).max_by_key(|(_, (h, _))| h.h * h.w).map(|(i, _)| i);
    let proto = proto_at.map(|i| heads.remove(i).0);
    let (mut boxes, mut classes, mut coefs) = (Vec::new(), Vec::new(), Vec::new());
    for (h, what) in heads {
        match h.c {
            c if c == 4 * reg => boxes.push(h),
            c if c == nc => classes.push(h),
            _ => coefs.push((h, what)),
        }
    }
    let Some(proto) = proto.filter(|_| !classes.is_empty() && boxes.len() == classes.len() && coefs.len() == classes.len()) else {
        return Err(Error::bad_model(format!(
            "{KIND} post-processing expects a box, a class and a mask-coefficient head per stride and one prototype tensor (10 for 3 strides); the model has {} outputs ({} box, {} class, {} coefficient/prototype)",
            outputs.len(),
            boxes.len(),
            classes.len(),
            coefs.len() + usize::from(proto_at.is_some())
        )));
    };
    let (iw, ih) = input_wh;
    let thr = cfg.conf_threshold as f32;
    let mut cands = Vec::new();
    // Per candidate anchor: its mask coefficients.
    let mut anchor_coefs: Vec<[f32; NM]> = Vec::new();
    let mut e = vec![0f32; reg];
    for cls in &classes {
        let same = |h: &Head| h.h == cls.h && h.w == cls.w;
        let (Some(bx), Some((cf, _))) = (boxes.iter().find(|h| same(h)), coefs.iter().find(|(h, _)| same(h))) else {
            return Err(Error::bad_model(format!("{KIND} post-processing: no box or mask-coefficient head matches the {}x{} class grid", cls.h, cls.w)));
        };
        let (sx, sy) = (iw / cls.w as f32, ih / cls.h as f32);
        for i in 0..cls.h {
            for j in 0..cls.w {
                let mut scores: Vec<(usize, f32)> = (0..nc).map(|c| (c, sigmoid(cls.at(i, j, c)))).filter(|&(_, s)| s >= thr).collect();
                if scores.is_empty() {
                    continue;
                }
                scores.sort_by(|a, b| super::score_desc(a.1, b.1));
                let d = dfl(bx, i, j, reg, &mut e);
                let (ax, ay) = (j as f32 + 0.5, i as f32 + 0.5);
                // NMS sees the unclamped box; the result's box is clamped to the input.
                let b = [(ax - d[0]) * sx, (ay - d[1]) * sy, (ax + d[2]) * sx, (ay + d[3]) * sy];
                let per_anchor = if cfg.regular_nms { scores.len() } else { cfg.max_classes_per_detection };
                for &(c, s) in scores.iter().take(per_anchor) {
                    cands.push(Det { b, score: s, class: c, anchor: anchor_coefs.len() });
                }
                anchor_coefs.push(std::array::from_fn(|k| cf.at(i, j, k)));
            }
        }
    }
    let (mw, mh) = (iw.round() as usize, ih.round() as usize);
    let mut out = super::finish_detections_with(cfg, cands, labels, &|d, o| {
        o.insert("mask".into(), core_mask(&proto, &anchor_coefs[d.anchor], &d.b, mw, mh));
    });
    // The core's key order: bbox, category_id, label, mask, score.
    for r in out.iter_mut() {
        if let Some(o) = r.as_object_mut() {
            if let Some(Value::Array(b)) = o.get_mut("bbox") {
                for (k, v) in b.iter_mut().enumerate() {
                    let lim = if k % 2 == 0 { iw } else { ih } as f64;
                    *v = json!(v.as_f64().unwrap_or(0.0).clamp(0.0, lim));
                }
            }
            if let Some(s) = o.remove("score") {
                o.insert("score".into(), s);
            }
        }
    }
    Ok(out)
}

/// The run-length mask of one detection, cut to its box, in model-input pixels.
fn core_mask(proto: &Head, coef: &[f32; NM], b: &[f32; 4], mw: usize, mh: usize) -> Value {
    let (ph, pw) = (proto.h, proto.w);
    let cut = |lo: f32, hi: f32, n: usize| ((lo.ceil().max(0.0) as usize).min(n), (hi.ceil().max(0.0) as usize).min(n));
    let (x0, x1) = cut(b[0], b[2], mw);
    let (y0, y1) = cut(b[1], b[3], mh);
    let (w, h) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
    let xs: Vec<(usize, usize, f32)> = (x0..x0 + w).map(|x| core_taps(x, pw, mw)).collect();
    let ys: Vec<(usize, usize, f32)> = (y0..y0 + h).map(|y| core_taps(y, ph, mh)).collect();
    // z at prototype resolution, only where the box's taps read it: sigmoid of positive
    // logits, 0 elsewhere.
    let span = |t: &[(usize, usize, f32)]| t.iter().fold((usize::MAX, 0), |(lo, hi), &(a, b, _)| (lo.min(a).min(b), hi.max(a).max(b)));
    let ((zx0, zx1), (zy0, zy1)) = (span(&xs), span(&ys));
    let mut z = vec![0f32; ph * pw];
    for i in zy0..=zy1.min(ph.saturating_sub(1)) {
        for j in zx0..=zx1.min(pw.saturating_sub(1)) {
            // The same products in the same order either way; NHWC reads them in one run.
            let lg: f32 = match proto.cell(i, j) {
                Some(cell) => coef.iter().zip(cell).map(|(c, v)| c * v).sum(),
                None => (0..NM).map(|k| coef[k] * proto.at(i, j, k)).sum(),
            };
            z[i * pw + j] = if lg > 0.0 { sigmoid(lg) } else { 0.0 };
        }
    }
    let mut bits = Vec::with_capacity(w * h);
    for &(ya, yb, fy) in &ys {
        for &(xa, xb, fx) in &xs {
            let top = z[ya * pw + xa] * (1.0 - fx) + z[ya * pw + xb] * fx;
            let bot = z[yb * pw + xa] * (1.0 - fx) + z[yb * pw + xb] * fx;
            bits.push(top * (1.0 - fy) + bot * fy > 0.5);
        }
    }
    json!({"data": rle_encode(&bits), "height": h, "width": w, "x_min": x0, "y_min": y0})
}

/// [`taps`] as PySDK's core: before the first source centre it extrapolates from the first two
/// samples (a negative weight) instead of clamping.
fn core_taps(x: usize, n_src: usize, n_dst: usize) -> (usize, usize, f32) {
    let f = (x as f32 + 0.5) * (n_src as f32 / n_dst as f32) - 0.5;
    if f < 0.0 && n_src >= 2 {
        return (0, 1, f);
    }
    taps(x, n_src, n_dst)
}

/// Bilinear taps of destination pixel `x` resizing `n_src` samples to `n_dst` (half-pixel
/// centres, clamped at the edges): the two source indices and the weight of the second.
fn taps(x: usize, n_src: usize, n_dst: usize) -> (usize, usize, f32) {
    let f = (x as f32 + 0.5) * (n_src as f32 / n_dst as f32) - 0.5;
    if f <= 0.0 || n_src < 2 {
        return (0, 0, 0.0);
    }
    let i = f.floor() as usize;
    if i >= n_src - 1 {
        return (n_src - 1, n_src - 1, 0.0);
    }
    (i, i + 1, f - i as f32)
}

/// Runs of equal bits: base64 of the run values then the run lengths, little-endian u32.
fn rle_encode(bits: &[bool]) -> String {
    let (mut vals, mut runs): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for &b in bits {
        match (vals.last(), runs.last_mut()) {
            (Some(&v), Some(r)) if v == u32::from(b) => *r += 1,
            _ => {
                vals.push(u32::from(b));
                runs.push(1);
            }
        }
    }
    let bytes: Vec<u8> = vals.iter().chain(&runs).flat_map(|w| w.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A run-length mask (`{"data", "height", "width", "x_min", "y_min"}`) as bits `height x width`.
/// A missing size is `default_wh` (PySDK takes the model input's), else an error.
fn rle_decode(m: &Map<String, Value>, default_wh: Option<(usize, usize)>) -> Result<(usize, usize, usize, usize, Vec<bool>)> {
    let get = |k: &str| m.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let (Some(w), Some(h)) = (get("width").or(default_wh.map(|d| d.0)), get("height").or(default_wh.map(|d| d.1))) else {
        return Err(Error::invalid(format!("{KIND} result: run-length mask without 'width' and 'height'")));
    };
    if w.saturating_mul(h) > 1 << 26 {
        return Err(Error::invalid(format!("{KIND} result: mask of {w}x{h} pixels is too large")));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(m.get("data").and_then(Value::as_str).unwrap_or(""))
        .map_err(|e| Error::invalid(format!("{KIND} result: mask data is not base64: {e}")))?;
    if raw.len() % 8 != 0 {
        return Err(Error::invalid(format!("{KIND} result: mask data is not pairs of u32 run values and lengths")));
    }
    let words: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (vals, runs) = words.split_at(words.len() / 2);
    let n = w * h;
    let mut bits = Vec::with_capacity(n);
    for (&v, &r) in vals.iter().zip(runs) {
        let r = (r as usize).min(n - bits.len());
        bits.resize(bits.len() + r, v != 0);
    }
    bits.resize(n, false);
    Ok((get("x_min").unwrap_or(0), get("y_min").unwrap_or(0), w, h, bits))
}

/// `floor`/`ceil` that ignore float noise of an affine fit around whole numbers.
fn snap(v: f64) -> f64 {
    if (v - v.round()).abs() < 1e-6 {
        v.round()
    } else {
        v
    }
}

/// Python's slice `[start:end]` of a sequence of `len`: negative ends count from the back,
/// both are clamped into it, and an end before the start gives an empty range.
fn py_slice(start: i64, end: i64, len: i64) -> (i64, i64) {
    let norm = |v: i64| if v < 0 { (v + len).max(0) } else { v.min(len) };
    let (a, b) = (norm(start), norm(end));
    (a, b.max(a))
}

/// PySDK's client conversion of one run-length mask (model input `model_wh`) into an image
/// of `image_wh`: `bm` the model-coordinate box, `bi` the image box, `conv` model-to-image
/// coordinates. Returns the float32 mask and where it sits in the image. The steps are those of PySDK 1.5.0's detection result class:
/// 1. the mask is placed into a model-input-sized zero mask; the model-input rectangle that
///    covers the image, `round(inv(0, 0))` to `round(inv(W, H))` of the affine inverse fitted
///    around the input's centre (Python's round: ties to even), is cut out of it, padded with
///    zeros where it reaches past the input (placed at the absolute value of its top-left);
/// 2. a mask cut to a box: the box in that cut, a margin of up to 2 cut pixels around its
///    ceiling, the margins scaled to the image; the image box widened by them (floored,
///    ceiled, clipped to the image) is the size the cut's box and margins are resized to
///    (bilinear, half-pixel centres), and the result is cut to the image box floored/ceiled;
///    a mask over the whole input is resized to the whole image; a box of zero image width
///    or height gives an empty mask;
/// 3. what would raise in PySDK (a zero-size resize source, a degenerate map) is an error.
pub fn mask_to_image(
    mask: &Map<String, Value>,
    bm: [f64; 4],
    bi: [f64; 4],
    model_wh: (f64, f64),
    image_wh: (f64, f64),
    conv: &dyn Fn(f64, f64) -> (f64, f64),
) -> Result<ImageMask> {
    let (mw, mh) = (model_wh.0.round().max(1.0) as i64, model_wh.1.round().max(1.0) as i64);
    let (mx, my, w, h, bits) = rle_decode(mask, Some((mw as usize, mh as usize)))?;
    let (iw, ih) = (image_wh.0.round().max(0.0) as i64, image_wh.1.round().max(0.0) as i64);
    let (mx, my, w, h) = (mx as i64, my as i64, w as i64, h as i64);
    let box_crop = w != mw || h != mh;
    let fail = |what: &str| Error::invalid(format!("{KIND} result: {what}"));
    // The model-input mask at (x, y).
    let model_px = |x: i64, y: i64| -> f32 {
        let (u, v) = (x - mx, y - my);
        if x >= 0 && y >= 0 && x < mw && y < mh && u >= 0 && v >= 0 && u < w && v < h && bits[(v * w + u) as usize] {
            1.0
        } else {
            0.0
        }
    };
    // Step 1: the cut of the model input that covers the image, `cw x ch`.
    let (p1x, p1y) = (mw as f64 / 2.0, mh as f64 / 2.0);
    let (f1, f2) = (conv(p1x, p1y), conv(p1x - 1.0, p1y - 1.0));
    let (ax, ay) = (f1.0 - f2.0, f1.1 - f2.1);
    if ax == 0.0 || ay == 0.0 || !ax.is_finite() || !ay.is_finite() {
        return Err(fail("the frame's coordinate map cannot be inverted to place its mask"));
    }
    let (bx, by) = (f1.0 - p1x * ax, f1.1 - p1y * ay);
    let py_round = |v: f64| snap(v).round_ties_even() as i64;
    let (tlx, tly) = (py_round((0.0 - bx) / ax), py_round((0.0 - by) / ay));
    let (brx, bry) = (py_round((iw as f64 - bx) / ax), py_round((ih as f64 - by) / ay));
    let (sx0, sx1) = py_slice(tlx.max(0), brx.min(mw), mw);
    let (sy0, sy1) = py_slice(tly.max(0), bry.min(mh), mh);
    let padded = tlx < 0 || tly < 0 || brx > mw || bry > mh;
    let (cw, ch, ox, oy) = if padded {
        let (bw, bh) = (brx - tlx, bry - tly);
        let (ox, oy) = (tlx.abs(), tly.abs());
        if bw < 0 || bh < 0 || ox + (sx1 - sx0) > bw || oy + (sy1 - sy0) > bh {
            return Err(fail("the frame's image does not fit the model input's mask (PySDK fails to place it too)"));
        }
        (bw, bh, ox, oy)
    } else {
        (sx1 - sx0, sy1 - sy0, 0, 0)
    };
    // The cut at (x, y).
    let cut_px = |x: i64, y: i64| -> f32 {
        let (u, v) = (x - ox, y - oy);
        if u >= 0 && v >= 0 && u < sx1 - sx0 && v < sy1 - sy0 {
            model_px(sx0 + u, sy0 + v)
        } else {
            0.0
        }
    };
    let floor = |v: f64| snap(v).floor() as i64;
    let ceil = |v: f64| snap(v).ceil() as i64;
    // Step 2: what is resized (source rectangle of the cut), to what size, and the final cut.
    let (src, rw, rh, (ex, ey), keep) = if !box_crop {
        ((0, 0, cw, ch), iw, ih, (0, 0), None)
    } else if bi[0] == bi[2] || bi[1] == bi[3] {
        let e = bi.map(floor);
        ((0, 0, 0, 0), e[2] - e[0], e[3] - e[1], (e[0], e[1]), None)
    } else {
        const MARGIN: i64 = 2;
        let (cwf, chf) = (cw as f64, ch as f64);
        let precise = [(bm[0] - tlx as f64).max(0.0), (bm[1] - tly as f64).max(0.0), cwf.min(bm[2] - tlx as f64), chf.min(bm[3] - tly as f64)];
        let c = precise.map(|v| v.ceil() as i64);
        let mxi = [MARGIN.min(c[0]), MARGIN.min(cw - c[2])];
        let myi = [MARGIN.min(c[1]), MARGIN.min(ch - c[3])];
        let mxc = [mxi[0] as f64 - (c[0] as f64 - precise[0]), mxi[1] as f64 + (c[2] as f64 - precise[2])];
        let myc = [myi[0] as f64 - (c[1] as f64 - precise[1]), myi[1] as f64 + (c[3] as f64 - precise[3])];
        let (dw, dh) = (precise[2] - precise[0], precise[3] - precise[1]);
        if dw == 0.0 || dh == 0.0 {
            return Err(fail("the mask's box has no extent inside the image (PySDK divides by zero here)"));
        }
        let (sw, sh) = ((bi[2] - bi[0]) / dw, (bi[3] - bi[1]) / dh);
        let e = [floor(bi[0]), floor(bi[1]), ceil(bi[2]), ceil(bi[3])];
        let r = [floor(bi[0] - mxc[0] * sw).max(0), floor(bi[1] - myc[0] * sh).max(0), ceil(bi[2] + mxc[1] * sw).min(iw), ceil(bi[3] + myc[1] * sh).min(ih)];
        let (x0, x1) = py_slice(c[0] - mxi[0], c[2] + mxi[1], cw);
        let (y0, y1) = py_slice(c[1] - myi[0], c[3] + myi[1], ch);
        let (rw, rh) = (r[2] - r[0], r[3] - r[1]);
        ((x0, y0, x1, y1), rw, rh, (e[0], e[1]), Some([e[0] - r[0], e[1] - r[1], e[2] - r[0], e[3] - r[1]]))
    };
    if rw < 0 || rh < 0 {
        return Err(fail(&format!("the mask resizes to negative dimensions {rw}x{rh}")));
    }
    if rw.saturating_mul(rh) > 1 << 26 {
        return Err(fail(&format!("image mask of {rw}x{rh} pixels is too large")));
    }
    // The final window of the resized mask (Python slicing of a `rh x rw` array).
    let (wx0, wy0, wx1, wy1) = match keep {
        Some(k) if rw > 0 && rh > 0 => {
            let (x0, x1) = py_slice(k[0], k[2], rw);
            let (y0, y1) = py_slice(k[1], k[3], rh);
            (x0, y0, x1, y1)
        }
        _ => (0, 0, rw, rh),
    };
    let (ow, oh) = ((wx1 - wx0) as usize, (wy1 - wy0) as usize);
    let mut values = AlignedBuf::zeroed(ow * oh * std::mem::size_of::<f32>());
    let (sw, sh) = ((src.2 - src.0) as usize, (src.3 - src.1) as usize);
    if rw > 0 && rh > 0 && (sw == 0 || sh == 0) {
        return Err(fail("the mask's cut around its box is empty (PySDK's resize fails on it)"));
    }
    if rw > 0 && rh > 0 && ow > 0 && oh > 0 {
        // The resize source as 0/1 values, then bilinear taps per output column and row.
        let grid: Vec<f32> = (0..sh as i64).flat_map(|y| (0..sw as i64).map(move |x| (x, y))).map(|(x, y)| cut_px(src.0 + x, src.1 + y)).collect();
        let xt: Vec<(usize, usize, f32)> = (wx0..wx1).map(|x| taps(x as usize, sw, rw as usize)).collect();
        // Separable: every source row interpolated across once (the same products as per
        // output pixel, so the same values), then each output row is a blend of two of them.
        let mut across = vec![0f32; sh * ow];
        for (src_row, row) in grid.chunks_exact(sw).zip(across.chunks_exact_mut(ow)) {
            for (px, &(xa, xb, fx)) in row.iter_mut().zip(&xt) {
                *px = src_row[xa] * (1.0 - fx) + src_row[xb] * fx;
            }
        }
        let out = values.as_slice_mut::<f32>();
        for (y, row) in (wy0..wy1).zip(out.chunks_exact_mut(ow)) {
            let (ya, yb, fy) = taps(y as usize, sh, rh as usize);
            let (ra, rb) = (&across[ya * ow..(ya + 1) * ow], &across[yb * ow..(yb + 1) * ow]);
            for ((px, &top), &bot) in row.iter_mut().zip(ra).zip(rb) {
                *px = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    let info = TensorInfo { name: "mask".into(), shape: vec![oh as i64, ow as i64], dtype: ElemType::F32, quant: None, id: None };
    Ok(ImageMask { x_min: ex, y_min: ey, values: Tensor { info, data: values } })
}

/// One instance mask in image coordinates (PySDK's converted form): a float32 `height x width`
/// array whose top-left pixel sits at (`x_min`, `y_min`) of the image.
#[derive(Debug, Clone)]
pub struct ImageMask {
    pub x_min: i64,
    pub y_min: i64,
    /// Shape `[height, width]`, float32: the bilinear mask, 0 outside the instance.
    pub values: Tensor,
}

impl ImageMask {
    /// The result's `mask` entry with the pixels in `tensors[index]`: `{"x_min", "y_min",
    /// "data": {"__tensor__": index, "dtype": "float32", "shape": [h, w]}}` (PySDK holds a numpy
    /// array there; raw-tensor results refer to their tensors the same way).
    pub fn entry(&self, index: usize) -> Value {
        json!({"x_min": self.x_min, "y_min": self.y_min, "data": {"__tensor__": index, "dtype": "float32", "shape": self.values.info.shape}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_round_trip_and_runs_cross_rows() {
        let bits = [true, true, false, false, false, true, true, true, false];
        let mut m = Map::new();
        m.insert("data".into(), json!(rle_encode(&bits)));
        m.insert("width".into(), json!(3));
        m.insert("height".into(), json!(3));
        let (_, _, w, h, back) = rle_decode(&m, None).unwrap();
        assert_eq!((w, h), (3, 3));
        assert_eq!(back, bits);
        let raw = base64::engine::general_purpose::STANDARD.decode(rle_encode(&bits)).unwrap();
        assert_eq!(raw.len(), 4 * 8, "4 runs: values then lengths");
    }

    #[test]
    fn bad_rle_is_an_error() {
        let mut m = Map::new();
        m.insert("data".into(), json!("AAAA"));
        m.insert("width".into(), json!(2));
        m.insert("height".into(), json!(2));
        assert!(rle_decode(&m, None).is_err());
        m.remove("width");
        assert!(rle_decode(&m, None).unwrap_err().message.contains("width"));
        // PySDK's default size: the model input's.
        m.insert("data".into(), json!(rle_encode(&[true, false, false, true])));
        assert_eq!(rle_decode(&m, Some((2, 2))).unwrap().4, vec![true, false, false, true]);
    }
}
