//! `HandDetection` (MediaPipe hand landmarks), as PySDK 1.5.0's core runs it (found by probing
//! it with hand-built graphs): four tensors named by tensor id in `PostProcessorInputs`, in the
//! order landmarks (21 x (x, y, z), input pixels), hand score, handedness, world landmarks
//! (21 x 3). One result when the score is at or above the threshold, none otherwise:
//! `{"handedness", "landmarks": [{"category_id", "connect", "label", "landmark": [x, y, z],
//! "world_landmark": [x, y, z]}], "score"}`, with MediaPipe's joint names and bone list. Values
//! are used as the model gives them (no sigmoid); the client maps x, y into the image, not z.
use super::{dequantize, describe, PostConfig};
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use serde_json::{json, Value};

const ROLES: [&str; 4] = ["landmarks", "hand score", "handedness", "world landmarks"];
const JOINTS: usize = 21;
const FINGERS: [&str; 5] = ["Thumb", "IndexFinger", "MiddleFinger", "RingFinger", "PinkyFinger"];
const THUMB: [&str; 4] = ["CMC", "MCP", "IP", "Tip"];
const FINGER: [&str; 4] = ["MCP", "PIP", "DIP", "Tip"];

/// Joint `j`'s name and the joints it connects to (MediaPipe's hand topology: the wrist to
/// every finger base, each finger joint to the next and the previous one).
fn joint(j: usize) -> (String, Vec<usize>) {
    if j == 0 {
        return ("Wrist".into(), vec![1, 5, 9, 13, 17]);
    }
    let (f, k) = ((j - 1) / 4, (j - 1) % 4);
    let name = format!("{}{}", FINGERS[f], if f == 0 { THUMB[k] } else { FINGER[k] });
    let connect = match k {
        0 => vec![j + 1, 0],
        3 => vec![j - 1],
        _ => vec![j + 1, j - 1],
    };
    (name, connect)
}

pub(super) fn decode(cfg: &PostConfig, outputs: &[Tensor], ids: &[i64]) -> Result<Vec<Value>> {
    let t = super::inputs_by_id("HandDetection", cfg, outputs, ids, &ROLES)?;
    for (k, x) in t.iter().enumerate() {
        let want = if k == 0 || k == 3 { JOINTS * 3 } else { 1 };
        if x.num_elements() != want {
            return Err(Error::bad_model(format!(
                "HandDetection post-processing: the {} ({}) must hold {want} values; it holds {}",
                ROLES[k],
                describe(x),
                x.num_elements()
            )));
        }
    }
    let [lm, score, handedness, world] = [dequantize(t[0]), dequantize(t[1]), dequantize(t[2]), dequantize(t[3])];
    if (score[0] as f64) < cfg.conf_threshold {
        return Ok(Vec::new());
    }
    let landmarks: Vec<Value> = (0..JOINTS)
        .map(|j| {
            let (label, connect) = joint(j);
            let p = |v: &[f32]| v[j * 3..j * 3 + 3].iter().map(|&x| x as f64).collect::<Vec<_>>();
            json!({"category_id": j, "connect": connect, "label": label, "landmark": p(&lm), "world_landmark": p(&world)})
        })
        .collect();
    Ok(vec![json!({"handedness": handedness[0] as f64, "landmarks": landmarks, "score": score[0] as f64})])
}
