//! A caller's own post-processor, PySDK's `custom_postprocessor`: it gets a frame's raw output
//! tensors and where the model input sits in the original image, and returns the frame's
//! results list in place of the built-in post-processor's. One hook per model, used by every
//! local predict path (single frames, batches, async predictors, streams).
use crate::error::{Error, Result};
use crate::image_ops::CoordConverter;
use crate::runtime::Tensor;
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// One raw output tensor, borrowed for the duration of the post-processor's call.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// The tensor id (`id` of the raw-tensor results: the engine's tensor index).
    pub id: i64,
    pub tensor: &'a Tensor,
}

/// What a post-processor needs to map model-input coordinates back to the image.
#[derive(Debug, Clone)]
pub struct FrameInfo {
    /// The original frame's size (the model input's size for bytes passed through unchanged).
    pub image_width: u32,
    pub image_height: u32,
    /// The model input's size (of its last image input; 1x1 for a model without one).
    pub input_width: u32,
    pub input_height: u32,
    /// The fit (resize, pad, crop) the frame went through.
    pub converter: CoordConverter,
}

impl FrameInfo {
    /// A model-input point in original-image coordinates, as the built-in post-processors map.
    pub fn to_original(&self, x: f64, y: f64) -> (f64, f64) {
        self.converter.to_original(x, y)
    }
}

/// A post-processor: the frame's outputs in the engine's order, the frame's geometry, and
/// the results list (a JSON array) or an error. Called concurrently for different frames.
pub type PostprocessFn = dyn Fn(&[TensorView], &FrameInfo) -> Result<Value> + Send + Sync;

/// A model's custom post-processor slot. A call holds the read lock, so `set` returns only
/// once no frame is still inside the post-processor it replaces.
#[derive(Default)]
pub struct Hook(RwLock<Option<Arc<PostprocessFn>>>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook(set: {})", self.is_set())
    }
}

impl Hook {
    /// Install `f` (None: back to the built-in post-processor), waiting for calls in progress.
    pub fn set(&self, f: Option<Arc<PostprocessFn>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = f;
    }

    pub fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// The custom post-processor's results for `outputs`, or None when none is set. A panic
    /// or a result that is not a JSON array is an `Inference` error, never a crash.
    pub(crate) fn run(&self, outputs: &[Tensor], ids: &[i64], frame: &FrameInfo) -> Option<Result<Vec<Value>>> {
        let slot = self.0.read().unwrap_or_else(|p| p.into_inner());
        let f = slot.as_ref()?;
        let views: Vec<TensorView> = outputs.iter().enumerate().map(|(i, t)| TensorView { id: ids.get(i).copied().unwrap_or(i as i64), tensor: t }).collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&views, frame)));
        Some(match r {
            Ok(Ok(Value::Array(results))) => Ok(results),
            Ok(Ok(other)) => Err(Error::inference(format!(
                "the custom post-processor must return a JSON array (the results list), not {}",
                crate::pyrepr::repr(&other).chars().take(200).collect::<String>()
            ))),
            Ok(Err(e)) => Err(e),
            Err(p) => {
                let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                Err(Error::inference(format!("the custom post-processor panicked: {what}")))
            }
        })
    }
}
