//! C ABI: a caller's own post-processor (PySDK's `custom_postprocessor`). The C callback is
//! wrapped into the core's post-processor hook: tensors go out as `dg_tensor_view`s, the
//! results come back as JSON text copied through `dg_postprocess_set_output`.
use super::model::{dg_tensor_view, model_ref};
use super::{cstr, dg_error, guard};
use dgzoo_core::error::{Error, Result};
use dgzoo_core::postprocess::custom::{FrameInfo, TensorView};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// The frame a custom post-processor is called for: what it needs to map model-input
/// coordinates to the original image. Borrowed for the duration of the call only.
#[repr(C)]
pub struct dg_frame_info {
    /// The original frame's size in pixels (the model input's size for bytes passed through
    /// unchanged: model-sized RAW pixels or a raw input tensor).
    pub image_width: u32,
    pub image_height: u32,
    /// The model input's size in pixels (of its last image input; 1x1 without one).
    pub input_width: u32,
    pub input_height: u32,
    /// The library's own data for `dg_frame_to_image`: do not read or change it.
    pub internal: *const c_void,
}

/// Where a custom post-processor puts its reply (see `dg_postprocess_set_output`). Owned by
/// the library; valid only during the callback's call.
pub struct dg_postprocess_output {
    text: Option<String>,
}

/// A custom post-processor (see `dg_model_set_postprocessor`). `tensors[0..count]` are the
/// frame's raw output tensors in the engine's order, as `dg_result_tensor` would show them for
/// postprocess type `None` (same name, id, dtype, shape, bytes, quantisation); `frame` is its
/// geometry. Return 0 after `dg_postprocess_set_output(out, results_json)` with the frame's
/// results list (a JSON array, in original-image coordinates, e.g.
/// `[{"label": "cat", "category_id": 281, "score": 0.9}]`); return any other value to fail the
/// frame, optionally after `dg_postprocess_set_output(out, message)`. Every pointer is valid only
/// during the call (copy what must outlive it). Must not unwind (C++ exceptions, longjmp).
pub type dg_postprocess_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        tensors: *const dg_tensor_view,
        count: usize,
        frame: *const dg_frame_info,
        out: *mut dg_postprocess_output,
    ) -> i32,
>;

struct UserData(*mut c_void);
// SAFETY: the header requires `user_data` to be usable from any library thread, by several
// frames at once (the callback is re-entrant); the library only passes it back.
unsafe impl Send for UserData {}
// SAFETY: as above: shared use across threads is the documented contract.
unsafe impl Sync for UserData {}

/// Replace the built-in post-processor of `model` with `callback` (PySDK's
/// `custom_postprocessor`), or restore it when `callback` is NULL. The callback's results
/// take the built-in results' place everywhere: `dg_result_json`, overlays, batches, async
/// predictors, streams (`output_class_set` still filters them; they carry no raw tensors).
/// A non-zero return, invalid JSON, or JSON that is not an array fails that frame with a
/// DG_INFERENCE error (the message names the custom post-processor and carries the
/// callback's message); the model stays usable.
/// Threads: the callback runs on the thread that post-processes the frame: the caller's for
/// `dg_predict`/`dg_predict_inputs`, a library worker for `dg_predict_batch`, `dg_async_*` and
/// `dg_model_predict_stream`, and for different frames of one model on several threads at
/// once: it must be re-entrant and `user_data` usable from any thread. It may call any
/// function on other objects and read `model`'s properties; it must not call
/// `dg_model_set_postprocessor` or free `model`.
/// Lifetime: this call returns once no frame is inside the callback it replaces; from then
/// on the old callback and its `user_data` are never used again. `user_data` must stay valid
/// until the callback is replaced, or `model` and every async predictor made from it are freed.
/// Models on an AI server or the cloud: while a callback is set, their frames ask the server
/// for raw output tensors (`OutputPostprocessType` "None" in the stream's model parameters)
/// and the callback runs in this process on the tensors received, on the thread that completes
/// the frame; a frame sent before the callback was set keeps the server's results.
#[no_mangle]
pub unsafe extern "C" fn dg_model_set_postprocessor(model: *const super::dg_model, callback: dg_postprocess_callback, user_data: *mut c_void) -> *mut dg_error {
    guard(|| {
        // SAFETY: a non-NULL `model` is a live dg_model from dg_load_model (the header's contract).
        let m = unsafe { model_ref(model) }?;
        let Some(cb) = callback else {
            return m.set_custom_postprocessor(None);
        };
        let ud = UserData(user_data);
        m.set_custom_postprocessor(Some(Arc::new(move |views: &[TensorView], frame: &FrameInfo| {
            // Names and shapes the views point into, alive until the callback returns.
            let names: Vec<CString> = views.iter().map(|v| CString::new(v.tensor.info.name.replace('\0', " ")).unwrap_or_default()).collect();
            let c_views: Vec<dg_tensor_view> =
                views.iter().zip(&names).map(|(v, name)| dg_tensor_view::of(v.tensor, v.id, name, &v.tensor.info.shape)).collect();
            let c_frame = dg_frame_info {
                image_width: frame.image_width,
                image_height: frame.image_height,
                input_width: frame.input_width,
                input_height: frame.input_height,
                internal: (frame as *const FrameInfo).cast(),
            };
            let mut out = dg_postprocess_output { text: None };
            let ud = &ud;
            // SAFETY: the callback contract is documented in the header; every pointer points
            // at a live local that outlives the call.
            let rc = unsafe { cb(ud.0, c_views.as_ptr(), c_views.len(), &c_frame, &mut out) };
            reply(rc, out.text)
        })))
    })
}

/// The core's view of the callback's reply: results, or the frame's error.
fn reply(rc: i32, text: Option<String>) -> Result<serde_json::Value> {
    match (rc, text) {
        (0, Some(t)) => serde_json::from_str(&t).map_err(|e| Error::inference(format!("the custom post-processor returned invalid JSON: {e}"))),
        (0, None) => Err(Error::inference("the custom post-processor returned 0 without setting its results (dg_postprocess_set_output)")),
        (rc, Some(msg)) => Err(Error::inference(format!("the custom post-processor failed ({rc}): {msg}"))),
        (rc, None) => Err(Error::inference(format!("the custom post-processor failed ({rc})"))),
    }
}

/// A custom post-processor's reply, copied: the results JSON when it returns 0, else its error
/// message. Call it during the callback only; a second call replaces the first text.
#[no_mangle]
pub unsafe extern "C" fn dg_postprocess_set_output(out: *mut dg_postprocess_output, text: *const c_char) -> *mut dg_error {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("argument 'out' must not be NULL"));
        }
        // SAFETY: a non-NULL `text` is a NUL-terminated string (the header's contract).
        let text = unsafe { cstr(text, "text") }?;
        // SAFETY: `out` is the live reply slot the library passed to the running callback.
        unsafe { (*out).text = Some(text.to_string()) };
        Ok(())
    })
}

/// Map a point `(x, y)` in model-input pixels of the frame a custom post-processor is called
/// for to original-image pixels, as the built-in post-processors map boxes and landmarks
/// (undoing the model's resize, letterbox or crop, clamped to the image).
#[no_mangle]
pub unsafe extern "C" fn dg_frame_to_image(frame: *const dg_frame_info, x: f64, y: f64, out_x: *mut f64, out_y: *mut f64) -> *mut dg_error {
    guard(|| {
        if out_x.is_null() || out_y.is_null() {
            return Err(Error::invalid("out-parameters 'out_x' and 'out_y' must not be NULL"));
        }
        // SAFETY: checked non-NULL; the caller passes writable doubles.
        unsafe { (*out_x, *out_y) = (0.0, 0.0) };
        // SAFETY: a non-NULL `frame` is the dg_frame_info the library passed to the running
        // callback, whose `internal` points at the frame's live FrameInfo.
        let info = unsafe { frame.as_ref() }.filter(|f| !f.internal.is_null()).ok_or_else(|| Error::invalid("argument 'frame' must not be NULL"))?;
        // SAFETY: as above: `internal` is the FrameInfo the library set, alive during the call.
        let (ox, oy) = unsafe { &*info.internal.cast::<FrameInfo>() }.to_original(x, y);
        // SAFETY: checked non-NULL above.
        unsafe { (*out_x, *out_y) = (ox, oy) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_results_or_inference_errors() {
        use dgzoo_core::error::Code;
        assert_eq!(reply(0, Some("[{\"a\": 1}]".into())).unwrap(), serde_json::json!([{"a": 1}]));
        for (rc, text, want) in
            [(0, Some("[{"), "invalid JSON"), (0, None, "without setting its results"), (3, Some("no luck"), "failed (3): no luck"), (-1, None, "failed (-1)")]
        {
            let e = reply(rc, text.map(str::to_string)).unwrap_err();
            assert_eq!(e.code, Code::Inference);
            assert!(e.message.contains(want), "{rc} {text:?}: {}", e.message);
        }
    }
}
