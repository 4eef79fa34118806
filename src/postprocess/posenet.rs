//! `PoseDetection` (PoseNet multi-pose decoding), as PySDK 1.5.0's core runs it (found by probing
//! it with hand-built graphs). Three NHWC tensors, told apart by their channel count: heatmap
//! logits (17), short-range offsets (34: y for the 17 keypoints, then x; input pixels) and
//! mid-range displacements (64: forward y, forward x, backward y, backward x for 16 edges).
//! The grid step is always `Stride`.
//!
//! Decoding: candidate roots are the 3x3 local maxima of each keypoint's heatmap whose sigmoid
//! reaches `PoseThreshold`, taken in logit order. A root lies at cell x stride + offset (clamped
//! into the grid); it is dropped when within `NMSRadius` of the same keypoint of a pose already
//! decoded. The other keypoints follow the edges (backward edges in reverse order, then forward
//! ones; edge 0's backward step reads PySDK's channels, see [`backward_channels`]), each from
//! its source by the bilinear displacement, then refined five times by adding
//! the bilinear offset at the point; a keypoint's score is the sigmoid of the bilinear logit at
//! its final position. At most `MaxDetections` poses are decoded, scored by the mean of their
//! keypoint scores, sorted by it, rescored by soft keypoint NMS (keypoints within `NMSRadius`
//! of the same keypoint of a better pose count 0), kept when the new score reaches
//! `OutputConfThreshold` and sorted again (stable). Results carry no bbox:
//! `{"landmarks": [{"category_id", "connect", "label", "landmark": [x, y], "score"}], "score"}`,
//! with COCO keypoint names and PySDK's fixed `connect` lists (not `Connections`).
use super::{dequantize, describe, dims, sigmoid, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};

const K: usize = 17;
const LABELS: [&str; K] = [
    "Nose",
    "LeftEye",
    "RightEye",
    "LeftEar",
    "RightEar",
    "LeftShoulder",
    "RightShoulder",
    "LeftElbow",
    "RightElbow",
    "LeftWrist",
    "RightWrist",
    "LeftHip",
    "RightHip",
    "LeftKnee",
    "RightKnee",
    "LeftAnkle",
    "RightAnkle",
];
const CONNECT: [&[usize]; K] =
    [&[], &[], &[], &[], &[], &[7, 11, 6], &[8, 12, 5], &[9, 5], &[10, 6], &[7], &[8], &[13, 5, 12], &[14, 6, 11], &[15, 11], &[16, 12], &[13], &[14]];
/// The pose tree's edges (parent, child); displacement channel e (and 16 + e, ...) is edge e.
const EDGES: [(usize, usize); 16] =
    [(0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11), (11, 13), (13, 15), (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16)];
const CHANNELS: [usize; 3] = [K, 2 * K, 64];
const ROLES: [&str; 3] = ["heatmap", "offset", "displacement"];
const REFINE_STEPS: usize = 5;

/// The displacement channels (y, x) of edge `e`'s backward step. PySDK 1.5.0 reads edge 0's
/// (left eye -> nose) from channels 16 and 32, the 16 before its backward y and x channels; the
/// other edges from 32 + e and 48 + e. Found by matching every pose of the test zoo's goldens
/// (20 of 20 with this, 6 of 20 with 32 and 48: every pose rooted at an eye or ear differed).
fn backward_channels(e: usize) -> (usize, usize) {
    if e == 0 {
        (16, 32)
    } else {
        (32 + e, 48 + e)
    }
}

/// One NHWC map `[1, h, w, c]`.
struct Map {
    h: usize,
    w: usize,
    c: usize,
    data: Vec<f32>,
}

impl Map {
    fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.w + x) * self.c + c]
    }

    /// Channel `c` bilinearly interpolated at pixel (py, px) (inside the grid), grid step `stride`.
    fn bilinear(&self, py: f32, px: f32, c: usize, stride: f32) -> f32 {
        let (y, x) = (py / stride, px / stride);
        let (y0, x0) = ((y.floor() as usize).min(self.h - 1), (x.floor() as usize).min(self.w - 1));
        let (y1, x1) = ((y0 + 1).min(self.h - 1), (x0 + 1).min(self.w - 1));
        let (dy, dx) = (y - y0 as f32, x - x0 as f32);
        self.at(y0, x0, c) * (1.0 - dy) * (1.0 - dx)
            + self.at(y0, x1, c) * (1.0 - dy) * dx
            + self.at(y1, x0, c) * dy * (1.0 - dx)
            + self.at(y1, x1, c) * dy * dx
    }
}

/// A decoded keypoint: (y, x) in input pixels and its score.
#[derive(Clone, Copy)]
struct Kp {
    y: f32,
    x: f32,
    score: f32,
}

fn maps(outputs: &[Tensor]) -> Result<[Map; 3]> {
    if outputs.len() != 3 {
        return Err(Error::bad_model(format!(
            "PoseDetection post-processing expects three output tensors (heatmaps, offsets, displacements); the model has {}",
            outputs.len()
        )));
    }
    let mut found: [Option<Map>; 3] = [None, None, None];
    for t in outputs {
        let d = dims(t);
        let role = match d[..] {
            [1, h, w, c] if h > 0 && w > 0 => CHANNELS.iter().position(|&n| n == c).map(|r| (r, h, w, c)),
            _ => None,
        };
        let Some((r, h, w, c)) = role else {
            return Err(Error::bad_model(format!(
                "PoseDetection post-processing: {} is not an NHWC [1, H, W, C] heatmap (C = 17), offset (34) or displacement (64) tensor",
                describe(t)
            )));
        };
        if found[r].is_some() {
            return Err(Error::bad_model(format!("PoseDetection post-processing: more than one {} tensor ({} channels)", ROLES[r], CHANNELS[r])));
        }
        found[r] = Some(Map { h, w, c, data: dequantize(t) });
    }
    let [Some(heat), Some(off), Some(disp)] = found else {
        return Err(Error::bad_model("PoseDetection post-processing needs one heatmap (17 channels), offset (34) and displacement (64) tensor"));
    };
    if (off.h, off.w) != (heat.h, heat.w) || (disp.h, disp.w) != (heat.h, heat.w) {
        return Err(Error::bad_model(format!(
            "PoseDetection post-processing: grids differ (heatmaps {}x{}, offsets {}x{}, displacements {}x{})",
            heat.h, heat.w, off.h, off.w, disp.h, disp.w
        )));
    }
    Ok([heat, off, disp])
}

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor]) -> Result<Vec<Value>> {
    let [heat, off, disp] = maps(outputs)?;
    if cfg.stride <= 0 {
        return Err(Error::bad_model(format!("PoseDetection post-processing: Stride must be positive, not {}", cfg.stride)));
    }
    let stride = cfg.stride as f32;
    let (h, w) = (heat.h, heat.w);
    let (ymax, xmax) = ((h - 1) as f32 * stride, (w - 1) as f32 * stride);
    let clamp = |y: f32, x: f32| (y.clamp(0.0, ymax), x.clamp(0.0, xmax));
    let r2 = (cfg.nms_radius * cfg.nms_radius) as f32;
    let near = |a: &Kp, b: &Kp| (a.y - b.y).powi(2) + (a.x - b.x).powi(2) <= r2;
    let point = |t: usize, y: f32, x: f32| Kp { y, x, score: sigmoid(heat.bilinear(y, x, t, stride)) };

    // Candidate roots: (logit, y, x, keypoint), local maxima in a 3x3 window.
    let thr = cfg.pose_threshold as f32;
    let mut cands = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for k in 0..K {
                let v = heat.at(y, x, k);
                if sigmoid(v) < thr {
                    continue;
                }
                let is_max = (y.saturating_sub(1)..(y + 2).min(h)).all(|yy| (x.saturating_sub(1)..(x + 2).min(w)).all(|xx| heat.at(yy, xx, k) <= v));
                if is_max {
                    cands.push((v, y, x, k));
                }
            }
        }
    }
    cands.sort_by(|a, b| super::score_desc(a.0, b.0));

    let mut poses: Vec<(Vec<Kp>, f32)> = Vec::new();
    for &(_, y, x, k) in &cands {
        if poses.len() >= cfg.max_detections {
            break;
        }
        let (ry, rx) = clamp(y as f32 * stride + off.at(y, x, k), x as f32 * stride + off.at(y, x, K + k));
        let root = point(k, ry, rx);
        if poses.iter().any(|(p, _)| near(&p[k], &root)) {
            continue;
        }
        let mut kps: [Option<Kp>; K] = [None; K];
        kps[k] = Some(root);
        let traverse = |src: Kp, t: usize, dy: usize, dx: usize| {
            let (mut ty, mut tx) = clamp(src.y + disp.bilinear(src.y, src.x, dy, stride), src.x + disp.bilinear(src.y, src.x, dx, stride));
            for _ in 0..REFINE_STEPS {
                (ty, tx) = clamp(ty + off.bilinear(ty, tx, t, stride), tx + off.bilinear(ty, tx, K + t, stride));
            }
            point(t, ty, tx)
        };
        for (e, &(p, c)) in EDGES.iter().enumerate().rev() {
            if let (Some(src), None) = (kps[c], kps[p]) {
                let (dy, dx) = backward_channels(e);
                kps[p] = Some(traverse(src, p, dy, dx));
            }
        }
        for (e, &(p, c)) in EDGES.iter().enumerate() {
            if let (Some(src), None) = (kps[p], kps[c]) {
                kps[c] = Some(traverse(src, c, e, 16 + e));
            }
        }
        // The tree reaches every keypoint from any root.
        let kps: Vec<Kp> = kps.iter().map(|k| k.expect("pose tree covers every keypoint")).collect();
        let mean = kps.iter().map(|k| k.score).sum::<f32>() / K as f32;
        poses.push((kps, mean));
    }
    poses.sort_by(|a, b| super::score_desc(a.1, b.1));
    let rescored: Vec<f32> = (0..poses.len())
        .map(|i| {
            let kps = &poses[i].0;
            (0..K).filter(|&j| !poses[..i].iter().any(|(q, _)| near(&q[j], &kps[j]))).map(|j| kps[j].score).sum::<f32>() / K as f32
        })
        .collect();
    let mut kept: Vec<(Vec<Kp>, f32)> = poses.into_iter().zip(rescored).map(|((k, _), s)| (k, s)).filter(|&(_, s)| s as f64 >= cfg.conf_threshold).collect();
    kept.sort_by(|a, b| super::score_desc(a.1, b.1));
    Ok(kept
        .into_iter()
        .map(|(kps, score)| {
            let landmarks: Vec<Value> = kps
                .iter()
                .enumerate()
                .map(|(j, p)| json!({"category_id": j, "connect": CONNECT[j], "label": LABELS[j], "landmark": [p.x as f64, p.y as f64], "score": p.score as f64}))
                .collect();
            json!({"landmarks": landmarks, "score": score as f64})
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ModelParams;
    use crate::runtime::{AlignedBuf, ElemType, TensorInfo};

    const G: usize = 3;

    fn tensor(c: usize, v: &[f32]) -> Tensor {
        Tensor {
            info: TensorInfo { name: format!("t{c}"), shape: vec![1, G as i64, G as i64, c as i64], dtype: ElemType::F32, quant: None, id: None },
            data: AlignedBuf::from_bytes(bytemuck::cast_slice(v)),
        }
    }

    fn cfg() -> PostConfig {
        let mut c = PostConfig::from_params(&ModelParams::from_value(json!({"POST_PROCESS":[{"OutputPostprocessType": "PoseDetection"}]})).unwrap());
        c.conf_threshold = 0.0;
        c
    }

    /// Maps on a 3x3 grid: heatmap logits -5 everywhere, offsets and displacements 0.
    fn maps() -> [Vec<f32>; 3] {
        [vec![-5.0; G * G * K], vec![0.0; G * G * 2 * K], vec![0.0; G * G * 64]]
    }

    fn set(v: &mut [f32], c: usize, y: usize, x: usize, ch: usize, val: f32) {
        v[(y * G + x) * c + ch] = val;
    }

    fn run(c: &PostConfig, m: &[Vec<f32>; 3]) -> Result<Vec<Value>> {
        decode(c, &[tensor(K, &m[0]), tensor(2 * K, &m[1]), tensor(64, &m[2])])
    }

    #[test]
    fn defaults() {
        let c = cfg();
        assert_eq!((c.stride, c.nms_radius, c.pose_threshold), (16, 10.0, 0.8));
    }

    #[test]
    fn single_root_offsets_displacement_and_scores() {
        let mut m = maps();
        set(&mut m[0], K, 1, 1, 0, 5.0); // nose peak at cell (1, 1)
        set(&mut m[1], 2 * K, 1, 1, K, 3.0); // nose x offset +3
                                             // edge 0 (nose -> left eye): forward x displacement +13 at the nose (bilinear between
                                             // cells x = 1 and 2 at x = 19: the same value there keeps it exact)
        set(&mut m[2], 64, 1, 1, 16, 13.0);
        set(&mut m[2], 64, 1, 2, 16, 13.0);
        set(&mut m[0], K, 1, 2, 1, 2.0); // left eye logit at cell (1, 2)
        let r = run(&cfg(), &m).unwrap();
        assert_eq!(r.len(), 1);
        let lm = r[0]["landmarks"].as_array().unwrap();
        assert_eq!(lm.len(), K);
        assert_eq!(lm[0]["label"], "Nose");
        assert_eq!(lm[16]["label"], "RightAnkle");
        assert_eq!(lm[5]["connect"], json!([7, 11, 6]));
        assert_eq!(lm[0]["connect"], json!([]));
        assert_eq!(lm[0]["landmark"], json!([19.0, 16.0]));
        // The nose score is the bilinear logit at x = 19 (3/16 of the way to cell 2).
        let f = 3.0 / 16.0;
        let nose = sigmoid(5.0 * (1.0 - f) - 5.0 * f);
        assert!((lm[0]["score"].as_f64().unwrap() - nose as f64).abs() < 1e-6);
        assert_eq!(lm[1]["landmark"], json!([32.0, 16.0]));
        assert!((lm[1]["score"].as_f64().unwrap() - sigmoid(2.0) as f64).abs() < 1e-6);
        let mean: f64 = lm.iter().map(|l| l["score"].as_f64().unwrap()).sum::<f64>() / K as f64;
        assert!((r[0]["score"].as_f64().unwrap() - mean).abs() < 1e-6);
        assert!(r[0].get("bbox").is_none());
    }

    #[test]
    fn root_nms_radius_and_thresholds() {
        let mut m = maps();
        set(&mut m[0], K, 0, 0, 0, 4.0);
        set(&mut m[0], K, 2, 2, 0, 5.0);
        let mut c = cfg();
        let r = run(&c, &m).unwrap();
        assert_eq!(r.len(), 2, "roots 45 px apart are both decoded");
        assert_eq!(r[0]["landmarks"][0]["landmark"], json!([32.0, 32.0]), "the stronger root first");
        c.max_detections = 1;
        assert_eq!(run(&c, &m).unwrap().len(), 1, "MaxDetections caps the poses");
        c.max_detections = 10;
        c.nms_radius = 50.0;
        assert_eq!(run(&c, &m).unwrap().len(), 1, "the weaker root is within NMSRadius of the first pose's nose");
        c.nms_radius = 10.0;
        c.pose_threshold = 0.99;
        assert_eq!(run(&c, &m).unwrap().len(), 1, "sigmoid(4) = 0.982 is under PoseThreshold");
        c.pose_threshold = 0.8;
        c.conf_threshold = 0.9;
        assert!(run(&c, &m).unwrap().is_empty(), "pose scores are under OutputConfThreshold");
    }

    #[test]
    fn wrong_tensors_are_errors() {
        let m = maps();
        let c = cfg();
        let e = decode(&c, &[tensor(K, &m[0]), tensor(2 * K, &m[1])]).unwrap_err().to_string();
        assert!(e.contains("three output tensors"), "{e}");
        let e = decode(&c, &[tensor(K, &m[0]), tensor(2 * K, &m[1]), tensor(K, &m[0])]).unwrap_err().to_string();
        assert!(e.contains("more than one heatmap"), "{e}");
        let odd = Tensor {
            info: TensorInfo { name: "x".into(), shape: vec![1, 64, G as i64, G as i64], dtype: ElemType::F32, quant: None, id: None },
            data: AlignedBuf::from_bytes(bytemuck::cast_slice(&m[2])),
        };
        let e = decode(&c, &[tensor(K, &m[0]), tensor(2 * K, &m[1]), odd]).unwrap_err().to_string();
        assert!(e.contains("not an NHWC"), "{e}");
    }
}
