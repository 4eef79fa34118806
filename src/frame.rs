//! Frame types shared by every inference path (local engine, AI server, cloud) and their
//! callers: one frame's inputs and its result. A leaf: it knows nothing of models or backends.
use crate::postprocess;
use crate::runtime::Tensor;
use serde_json::Value;

/// One frame input.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An encoded image (JPEG/PNG/BMP), or bytes already in the model's input format
    /// (model-sized RAW pixels / a raw tensor), which are passed through unchanged.
    Bytes(&'a [u8]),
    /// A pixel buffer of any size, resized/padded like an image.
    Pixels { data: &'a [u8], width: u32, height: u32, stride: usize, bgr: bool },
}

/// The result of one frame.
#[derive(Debug, Clone, Default)]
pub struct InferenceResult {
    /// PySDK's `results` list.
    pub results: Vec<Value>,
    /// Tensors the results refer to as `{"__tensor__": index}`: the `data` of raw-tensor results
    /// and the `mask.data` of instance masks (`SegmentationYoloV8`), where PySDK has numpy arrays.
    pub tensors: Vec<Tensor>,
    /// Timing (when `measure_time` is on): PySDK's core timing keys, in ms.
    pub timing: Option<Value>,
    /// Client-side pre-processing time of the frame in ms (decode, fit, encode), when
    /// `measure_time` is on: PySDK's `PythonPreprocessDuration_ms`.
    pub pre_ms: Option<f64>,
    /// Model name and original image size, for callers that need them.
    pub model: String,
}

impl InferenceResult {
    /// The results as JSON text, tensors referred to by index.
    pub fn results_json(&self) -> String {
        postprocess::to_json(&self.results)
    }

    /// The results with their tensors written out in numpy's JSON form (see
    /// [`postprocess::inline_tensors`]): output that stands alone, at the cost of one JSON
    /// number per element.
    pub fn results_inline(&self) -> Vec<Value> {
        postprocess::inline_tensors(&self.results, &self.tensors)
    }

    /// The id reported for tensor `index`: a raw-tensor result's `id`, else (an instance mask)
    /// the index of the result it belongs to.
    pub fn tensor_id(&self, index: usize) -> i64 {
        let refers = |d: Option<&Value>| d.and_then(|d| d.get("__tensor__")).and_then(Value::as_u64) == Some(index as u64);
        for (i, r) in self.results.iter().enumerate() {
            if refers(r.get("data")) {
                return r.get("id").and_then(Value::as_i64).unwrap_or(index as i64);
            }
            if refers(r.get("mask").and_then(|m| m.get("data"))) {
                return i as i64;
            }
        }
        index as i64
    }
}
