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
    /// Tensors referenced by raw-tensor results.
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
    pub fn results_json(&self) -> String {
        postprocess::to_json(&self.results)
    }
}
