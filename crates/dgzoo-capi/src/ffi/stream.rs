//! C ABI: streamed prediction, the C form of PySDK's generator input. Frames are pulled from
//! a caller callback and results pushed to another, in order, with at most the pipeline depth
//! of frames held by the library.
use super::model::{dg_input, dg_result, input_of, model_ref, owned};
use super::{dg_error, guard};
use dgzoo_core::error::{Code, Error};
use std::ffi::c_void;

/// Asked for the next frame of a `dg_model_predict_stream` call, on the calling thread.
/// Return 1 after filling `*out_frame` (a single-input frame: encoded bytes or RGB/BGR pixels)
/// and optionally `*out_frame_info` (any pointer or id, handed back with the frame's result);
/// 0 at the end of the stream; a negative value to stop the stream early (frames already
/// pulled are still delivered; the call then returns a DG_CANCELLED error). The library
/// copies the frame's bytes before this returns to it, so the buffer only has to stay valid
/// until the next call of the callback.
pub type dg_next_frame_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, out_frame: *mut dg_input, out_frame_info: *mut *mut c_void) -> i32>;

/// Receives each frame's result of a `dg_model_predict_stream` call, in the order the frames
/// were pulled, on the calling thread, with the frame's `frame_info`. `result` (NULL on
/// failure) and `error` (NULL on success) are owned by the callee: free them with
/// `dg_result_free` / `dg_error_free`.
pub type dg_stream_result_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, frame_info: *mut c_void, result: *mut dg_result, error: *mut dg_error)>;

/// Run a stream of frames through `model`, pipelined (PySDK's `predict_batch` over a
/// generator): `next_frame` is called for each frame until it returns 0, `on_result` gets each
/// frame's result in order. Both callbacks run on the calling thread, never concurrently, and
/// the call returns once every pulled frame's result has been delivered. At most
/// `queue_depth` frames (1..160; 0 = the model's `frame_queue_depth`) are held in the library
/// at a time, whatever the stream's length. A frame the library cannot read (bad `dg_input`)
/// gets its error through `on_result` and the stream goes on. Callbacks may use `model` and
/// free results from any thread later; they must not free `model`.
#[no_mangle]
pub unsafe extern "C" fn dg_model_predict_stream(
    model: *const super::dg_model,
    queue_depth: usize,
    next_frame: dg_next_frame_callback,
    next_user_data: *mut c_void,
    on_result: dg_stream_result_callback,
    result_user_data: *mut c_void,
) -> *mut dg_error {
    guard(|| {
        let m = unsafe { model_ref(model) }?;
        let next = next_frame.ok_or_else(|| Error::invalid("argument 'next_frame' must not be NULL"))?;
        let deliver = on_result.ok_or_else(|| Error::invalid("argument 'on_result' must not be NULL"))?;
        let mut stopped: Option<i32> = None;
        let pull = || {
            if stopped.is_some() {
                return None;
            }
            let mut frame = dg_input { kind: 0, data: std::ptr::null(), len: 0, width: 0, height: 0, stride: 0 };
            let mut info: *mut c_void = std::ptr::null_mut();
            // SAFETY: the callback contract is documented in the header; both out-pointers
            // point at live locals.
            let rc = unsafe { next(next_user_data, &mut frame, &mut info) };
            match rc {
                1 => {
                    // SAFETY: the callback filled `frame`; its buffer stays valid until the
                    // callback is called again, and it is copied right here.
                    let inputs = unsafe { input_of(&frame, 0) }.map(|i| vec![owned(i)]);
                    Some((inputs, info))
                }
                0 => None,
                rc => {
                    stopped = Some(rc);
                    None
                }
            }
        };
        let push = |info: *mut c_void, r: dgzoo_core::error::Result<dgzoo_core::inference::InferenceResult>| {
            let (res, err) = match r {
                Ok(r) => (dg_result::boxed(m, r), std::ptr::null_mut()),
                Err(e) => (std::ptr::null_mut(), dg_error::boxed(e)),
            };
            // SAFETY: the callback contract is documented in the header; ownership of `res`
            // and `err` passes to it.
            unsafe { deliver(result_user_data, info, res, err) };
        };
        dgzoo_core::pipeline::predict_stream(m, queue_depth, pull, push)?;
        match stopped {
            None => Ok(()),
            Some(rc) if rc < 0 => Err(Error::new(Code::Cancelled, format!("the stream was stopped by next_frame (it returned {rc})"))),
            Some(rc) => Err(Error::invalid(format!("next_frame returned {rc}: expected 1 (a frame), 0 (end) or a negative value (stop)"))),
        }
    })
}
