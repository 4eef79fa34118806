//! A model's settings as in-flight frames see them: parameters, PySDK's client-side
//! properties, name and labels. A leaf shared by the model and every backend below it.
use crate::image_ops::{PadMethod, ResizeMethod};
use crate::params::ModelParams;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::postprocess::custom::Hook;

/// Client-side pre-processing settings (the preprocessor's properties).
#[derive(Debug, Clone)]
pub struct ClientPre {
    pub resize: ResizeMethod,
    pub resize_name: String,
    pub pad: PadMethod,
    pub pad_name: String,
    pub crop_percentage: f64,
    pub fill_rgb: [u8; 3],
    pub numpy_colorspace: String,
    pub image_backend: String,
    pub image_format: String,
}

/// Everything a frame needs from the model's settings, shared immutably by in-flight frames.
#[derive(Debug, Clone)]
pub struct ModelState {
    /// The model's name (as its zoo names it).
    pub name: String,
    /// Its harmonised label dictionary (fixed at load).
    pub labels: Arc<BTreeMap<i64, String>>,
    pub params: ModelParams,
    pub pre: ClientPre,
    /// `output_class_set`: all ints or all strings.
    pub class_set: Vec<Value>,
    pub inference_timeout_s: f64,
    pub save_model_image: bool,
    pub non_blocking_batch_predict: bool,
    pub update_if_newer: bool,
    /// Overlay properties are stored and validated; drawing overlays is not part of the C API.
    pub overlay: Map<String, Value>,
    /// The caller's post-processor (PySDK's `custom_postprocessor`), shared with the model: every
    /// path runs it on the raw output tensors (remote ones ask their server for raw tensors).
    pub custom_post: Arc<Hook>,
    /// `params`' post-processing settings, read when the state is made (every property change
    /// makes a new state) rather than per frame (20-30 us, as much as some decoders take).
    pub post: Arc<crate::postprocess::PostConfig>,
}

/// Does input `i` take images?
pub fn is_image_input(params: &ModelParams, i: usize) -> bool {
    params.str("InputType", i) == "Image"
}
