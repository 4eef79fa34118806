//! C ABI: model properties, single-frame, batch and asynchronous prediction, results.
use super::zoo::dg_model;
use super::{cstr, dg_error, guard, guard_value, json_arg, new_string, out_ptr};
use dgzoo_core::error::{Error, Result};
use dgzoo_core::inference::{InferenceResult, Input};
use dgzoo_core::pipeline::{AsyncPredictor, OwnedInput};
use dgzoo_core::runtime::ElemType;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

/// The result of one frame. Immutable: safe to read from many threads; free with `dg_result_free`.
pub struct dg_result {
    inner: InferenceResult,
    /// The model that produced it, for its overlay settings and labels.
    model: dgzoo_core::model::Model,
    json: CString,
    shapes: Vec<Vec<i64>>,
    names: Vec<CString>,
}

impl dg_result {
    pub(super) fn boxed(model: &dgzoo_core::model::Model, inner: InferenceResult) -> *mut dg_result {
        let json = CString::new(inner.results_json().replace('\0', " ")).unwrap_or_default();
        let shapes = inner.tensors.iter().map(|t| t.info.shape.clone()).collect();
        let names = inner.tensors.iter().map(|t| CString::new(t.info.name.replace('\0', " ")).unwrap_or_default()).collect();
        Box::into_raw(Box::new(dg_result { inner, model: model.clone(), json, shapes, names }))
    }
}

/// Element type of a raw tensor (DeGirum's `DG_*` type names).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_dtype {
    DG_FLT = 0,
    DG_DBL = 1,
    DG_UINT8 = 2,
    DG_INT8 = 3,
    DG_UINT16 = 4,
    DG_INT16 = 5,
    DG_UINT32 = 6,
    DG_INT32 = 7,
    DG_UINT64 = 8,
    DG_INT64 = 9,
    /// IEEE half precision.
    DG_FLT16 = 10,
}

impl From<ElemType> for dg_dtype {
    fn from(t: ElemType) -> Self {
        match t {
            ElemType::F32 => dg_dtype::DG_FLT,
            ElemType::F64 => dg_dtype::DG_DBL,
            ElemType::U8 => dg_dtype::DG_UINT8,
            ElemType::I8 => dg_dtype::DG_INT8,
            ElemType::U16 => dg_dtype::DG_UINT16,
            ElemType::I16 => dg_dtype::DG_INT16,
            ElemType::U32 => dg_dtype::DG_UINT32,
            ElemType::I32 => dg_dtype::DG_INT32,
            ElemType::U64 => dg_dtype::DG_UINT64,
            ElemType::I64 => dg_dtype::DG_INT64,
            ElemType::F16 => dg_dtype::DG_FLT16,
            ElemType::Bool => dg_dtype::DG_UINT8,
        }
    }
}

/// A borrowed view of one raw output tensor of a result (postprocess type `None`/`Dequantization`).
/// Every pointer stays valid until the result is freed; nothing here is freed by the caller.
#[repr(C)]
pub struct dg_tensor_view {
    /// Output tensor name (UTF-8, NUL-terminated).
    pub name: *const c_char,
    /// Tensor id (`id` in the result JSON).
    pub id: i64,
    pub dtype: dg_dtype,
    /// `rank` dimensions.
    pub shape: *const i64,
    pub rank: usize,
    /// The tensor's bytes, row-major, native endianness; `nbytes` long.
    pub data: *const c_void,
    pub nbytes: usize,
    /// First quantisation scale and zero point (1 and 0 when not quantised).
    pub scale: f64,
    pub zero_point: i64,
}

impl dg_tensor_view {
    /// A view of `t` whose name and shape pointers borrow `name` and `shape` (which must
    /// outlive the view's use).
    pub(super) fn of(t: &dgzoo_core::runtime::Tensor, id: i64, name: &std::ffi::CStr, shape: &[i64]) -> Self {
        let (scale, zero_point) = match &t.info.quant {
            Some(q) => (q.scale.first().copied().unwrap_or(1.0) as f64, q.zero.first().copied().unwrap_or(0)),
            None => (1.0, 0),
        };
        dg_tensor_view {
            name: name.as_ptr(),
            id,
            dtype: t.info.dtype.into(),
            shape: shape.as_ptr(),
            rank: shape.len(),
            data: t.data.as_bytes().as_ptr().cast(),
            nbytes: t.data.len(),
            scale,
            zero_point,
        }
    }
}

/// The kind of a frame input passed to `dg_predict_inputs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_input_kind {
    /// An encoded image (JPEG, PNG, BMP), or bytes already in the model's input format
    /// (model-sized RAW pixels or the model's raw input tensor), passed through unchanged.
    DG_INPUT_BYTES = 0,
    /// Interleaved 8-bit RGB pixels of any size: resized and padded like an image.
    DG_INPUT_RGB = 1,
    /// Interleaved 8-bit BGR pixels of any size (OpenCV's order).
    DG_INPUT_BGR = 2,
}

impl dg_input_kind {
    /// The kind a C caller wrote as an integer; `None` for a value that names no kind (C lets
    /// any integer into an enum-typed field, so it is read as an integer and checked).
    pub fn from_raw(v: i32) -> Option<Self> {
        match v {
            0 => Some(dg_input_kind::DG_INPUT_BYTES),
            1 => Some(dg_input_kind::DG_INPUT_RGB),
            2 => Some(dg_input_kind::DG_INPUT_BGR),
            _ => None,
        }
    }
}

/// One model input of a frame. Borrowed for the duration of the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_input {
    /// A `dg_input_kind` value; any other value is a DG_INVALID_ARGUMENT error.
    pub kind: i32,
    pub data: *const u8,
    /// Bytes readable at `data`.
    pub len: usize,
    /// Pixel inputs only: size and row stride in bytes (0 = width*3).
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

/// Called once per frame by an async predictor, in submission order, on a library thread
/// (the same one for every call of one predictor). `result` (NULL on failure) and `error`
/// (NULL on success) are owned by the callee: free them with `dg_result_free` / `dg_error_free`.
/// The callback must not call `dg_async_wait` or `dg_async_free` on its own predictor.
pub type dg_async_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, frame_id: u64, result: *mut dg_result, error: *mut dg_error)>;

/// An asynchronous predictor (frames in, results out through a callback). Thread-safe: frames
/// may be submitted from several threads.
pub struct dg_async(AsyncPredictor);

/// Results of `dg_predict_batch`, one slot per frame. Free with `dg_batch_free`.
pub struct dg_batch(Vec<std::result::Result<*mut dg_result, Error>>);

pub(super) unsafe fn model_ref<'a>(model: *const dg_model) -> Result<&'a dgzoo_core::model::Model> {
    if model.is_null() {
        return Err(Error::invalid("argument 'model' must not be NULL"));
    }
    Ok(unsafe { &(*model).0 })
}

unsafe fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Err(Error::invalid(format!("argument '{what}' is empty (zero-size buffer)")));
    }
    if data.is_null() {
        return Err(Error::invalid(format!("argument '{what}' must not be NULL")));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `data`.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

pub(super) unsafe fn input_of<'a>(i: &dg_input, idx: usize) -> Result<Input<'a>> {
    let what = format!("inputs[{idx}].data");
    let kind = dg_input_kind::from_raw(i.kind).ok_or_else(|| Error::invalid(format!("inputs[{idx}].kind is {}, not a dg_input_kind value", i.kind)))?;
    // SAFETY: the caller guarantees `len` readable bytes at `data` for the call's duration.
    let data = unsafe { bytes(i.data, i.len, &what) }?;
    Ok(match kind {
        dg_input_kind::DG_INPUT_BYTES => Input::Bytes(data),
        dg_input_kind::DG_INPUT_RGB | dg_input_kind::DG_INPUT_BGR => {
            let stride = if i.stride == 0 { super::checked_size(super::cast(i.width, "width")?, 3, "width")? } else { i.stride };
            Input::Pixels { data, width: i.width, height: i.height, stride, bgr: kind == dg_input_kind::DG_INPUT_BGR }
        }
    })
}

pub(super) fn owned(i: Input) -> OwnedInput {
    match i {
        Input::Bytes(b) => OwnedInput::Bytes(b.to_vec()),
        Input::Pixels { data, width, height, stride, bgr } => OwnedInput::Pixels { data: data.to_vec(), width, height, stride, bgr },
    }
}

/// Free a model. NULL is accepted. Async predictors created from it keep it alive.
#[no_mangle]
pub unsafe extern "C" fn dg_model_free(model: *mut dg_model) {
    guard_value((), || {
        if !model.is_null() {
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// A model property (PySDK name, e.g. "output_top_k") as JSON text; free with `dg_string_free`.
#[no_mangle]
pub unsafe extern "C" fn dg_model_get_property(model: *const dg_model, name: *const c_char, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let m = unsafe { model_ref(model) }?;
        let name = unsafe { cstr(name, "name") }?;
        let v = m.get_property(name)?;
        unsafe { *out_json = new_string(v.to_string()) };
        Ok(())
    })
}

/// PySDK's `model.time_stats()` as a JSON object, keys in PySDK's order:
/// `{"FrameTotalDuration_ms": {"min": 1.2, "avg": 1.5, "max": 2.0, "count": 3}, ...}`.
/// Collected while the `measure_time` property is true (switching it on starts afresh):
/// `PythonPreprocessDuration_ms` (client-side pre-processing), the `Core*` keys of the engine
/// or the AI server, and `FrameTotalDuration_ms`. `{}` when nothing was measured. Free with
/// `dg_string_free`.
#[no_mangle]
pub unsafe extern "C" fn dg_model_time_stats(model: *const dg_model, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let m = unsafe { model_ref(model) }?;
        let s = m.time_stats().to_json();
        unsafe { *out_json = new_string(s) };
        Ok(())
    })
}

/// PySDK's `model.reset_time_stats()`: forget the statistics collected so far.
#[no_mangle]
pub unsafe extern "C" fn dg_model_reset_time_stats(model: *const dg_model) -> *mut dg_error {
    guard(|| {
        let m = unsafe { model_ref(model) }?;
        m.reset_time_stats();
        Ok(())
    })
}

/// Set a model property from JSON text (e.g. name "output_top_k", value "3"). Validation and
/// error texts follow PySDK. Frames already in flight keep the settings they started with.
#[no_mangle]
pub unsafe extern "C" fn dg_model_set_property(model: *const dg_model, name: *const c_char, value_json: *const c_char) -> *mut dg_error {
    guard(|| {
        let m = unsafe { model_ref(model) }?;
        let name = unsafe { cstr(name, "name") }?;
        if value_json.is_null() {
            return Err(Error::invalid("argument 'value_json' must not be NULL"));
        }
        let v = unsafe { json_arg(value_json, "value_json") }?;
        m.set_property(name, &v)
    })
}

/// The model's name. Valid while the model lives; do not free.
#[no_mangle]
pub unsafe extern "C" fn dg_model_name(model: *const dg_model) -> *const c_char {
    guard_value(c"".as_ptr(), || if model.is_null() { c"".as_ptr() } else { unsafe { (*model).1.as_ptr() } })
}

/// Run one frame on a single-input model: `data` is an encoded image (JPEG/PNG/BMP) or the
/// model's raw input. On success `*out_result` owns a new result.
#[no_mangle]
pub unsafe extern "C" fn dg_predict(model: *const dg_model, data: *const u8, len: usize, out_result: *mut *mut dg_result) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_result, "out_result") }?;
        let m = unsafe { model_ref(model) }?;
        let data = unsafe { bytes(data, len, "data") }?;
        let r = dgzoo_core::model::predict(m, &[Input::Bytes(data)])?;
        unsafe { *out_result = dg_result::boxed(m, r) };
        Ok(())
    })
}

/// Run one frame given as `count` inputs (one per model input, in `PRE_PROCESS` order).
#[no_mangle]
pub unsafe extern "C" fn dg_predict_inputs(model: *const dg_model, inputs: *const dg_input, count: usize, out_result: *mut *mut dg_result) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_result, "out_result") }?;
        let m = unsafe { model_ref(model) }?;
        if inputs.is_null() && count > 0 {
            return Err(Error::invalid("argument 'inputs' must not be NULL"));
        }
        let raw = if count == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(inputs, count) } };
        let ins = raw.iter().enumerate().map(|(i, x)| unsafe { input_of(x, i) }).collect::<Result<Vec<_>>>()?;
        let r = dgzoo_core::model::predict(m, &ins)?;
        unsafe { *out_result = dg_result::boxed(m, r) };
        Ok(())
    })
}

/// Run `count` single-input frames, pipelined on the library's worker threads (decode,
/// pre-processing and inference of different frames overlap). `datas[i]`/`lens[i]` is frame i.
/// A frame's failure does not stop the others: read each with `dg_batch_get`.
#[no_mangle]
pub unsafe extern "C" fn dg_predict_batch(
    model: *const dg_model,
    datas: *const *const u8,
    lens: *const usize,
    count: usize,
    out_batch: *mut *mut dg_batch,
) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_batch, "out_batch") }?;
        let m = unsafe { model_ref(model) }?;
        if count > 0 && (datas.is_null() || lens.is_null()) {
            return Err(Error::invalid("arguments 'datas' and 'lens' must not be NULL"));
        }
        let (ds, ls) =
            if count == 0 { (&[][..], &[][..]) } else { unsafe { (std::slice::from_raw_parts(datas, count), std::slice::from_raw_parts(lens, count)) } };
        // A bad buffer is that frame's error; the rest still run.
        let mut slots: Vec<Option<Error>> = Vec::with_capacity(count);
        let mut frames = Vec::with_capacity(count);
        for i in 0..count {
            match unsafe { bytes(ds[i], ls[i], &format!("datas[{i}]")) } {
                Ok(b) => {
                    slots.push(None);
                    frames.push(vec![OwnedInput::Bytes(b.to_vec())]);
                }
                Err(e) => slots.push(Some(e)),
            }
        }
        let mut results = dgzoo_core::pipeline::predict_batch(m, frames)?.into_iter();
        let out = slots
            .into_iter()
            .map(|s| match s {
                Some(e) => Err(e),
                None => results.next().unwrap_or_else(|| Err(Error::internal("frame result missing"))).map(|r| dg_result::boxed(m, r)),
            })
            .collect();
        unsafe { *out_batch = Box::into_raw(Box::new(dg_batch(out))) };
        Ok(())
    })
}

/// Number of frames in a batch (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn dg_batch_count(batch: *const dg_batch) -> usize {
    guard_value(0, || if batch.is_null() { 0 } else { unsafe { (*batch).0.len() } })
}

/// Frame `index` of a batch: on success `*out_result` borrows the frame's result (valid until
/// `dg_batch_free`; do not free it); on failure the frame's error is returned (caller frees it).
#[no_mangle]
pub unsafe extern "C" fn dg_batch_get(batch: *const dg_batch, index: usize, out_result: *mut *const dg_result) -> *mut dg_error {
    guard(|| {
        if out_result.is_null() {
            return Err(Error::invalid("out-parameter 'out_result' must not be NULL"));
        }
        unsafe { *out_result = std::ptr::null() };
        if batch.is_null() {
            return Err(Error::invalid("argument 'batch' must not be NULL"));
        }
        let b = unsafe { &(*batch).0 };
        match b.get(index) {
            None => Err(Error::invalid(format!("frame index {index} is out of range 0..{}", b.len()))),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(r)) => {
                unsafe { *out_result = *r };
                Ok(())
            }
        }
    })
}

/// Free a batch and every result in it. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_batch_free(batch: *mut dg_batch) {
    guard_value((), || {
        if !batch.is_null() {
            let b = unsafe { Box::from_raw(batch) };
            for r in b.0.into_iter().flatten() {
                drop(unsafe { Box::from_raw(r) });
            }
        }
    })
}

/// The PySDK `results` list as JSON text. Valid until `dg_result_free`; do not free. "" for NULL.
#[no_mangle]
pub unsafe extern "C" fn dg_result_json(result: *const dg_result) -> *const c_char {
    guard_value(c"".as_ptr(), || if result.is_null() { c"".as_ptr() } else { unsafe { (*result).json.as_ptr() } })
}

/// Timing of the frame as JSON (`measure_time` on), or NULL; free with `dg_string_free`.
#[no_mangle]
pub unsafe extern "C" fn dg_result_timing_json(result: *const dg_result) -> *mut c_char {
    guard_value(std::ptr::null_mut(), || {
        if result.is_null() {
            return std::ptr::null_mut();
        }
        match unsafe { &(*result).inner.timing } {
            Some(t) => new_string(t.to_string()),
            None => std::ptr::null_mut(),
        }
    })
}

/// Encoding of an overlay image.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_image_format {
    DG_IMAGE_JPEG = 0,
    DG_IMAGE_PNG = 1,
    /// Raw interleaved pixels, 3 bytes each: rows packed as `dg_result_overlay_input`'s output,
    /// or the channel order of the caller's pixels for `dg_result_overlay_draw`.
    DG_IMAGE_RGB = 2,
    DG_IMAGE_BGR = 3,
}

/// Hand a byte vector to C as a buffer for `dg_buffer_free`.
unsafe fn give_buffer(v: Vec<u8>, out: *mut *mut u8, out_len: *mut usize) {
    let b = v.into_boxed_slice();
    let len = b.len();
    // SAFETY: the caller checked both out-pointers non-NULL.
    unsafe {
        *out = Box::into_raw(b) as *mut u8;
        *out_len = len;
    }
}

/// The overlay of `result` on a frame given as a `dg_input` (encoded bytes, or RGB/BGR pixels
/// of any size and stride), returned as JPEG, PNG or packed RGB/BGR pixels (`format`, a
/// `dg_image_format` value); `*out_width`/`*out_height` give the overlay's size (the frame's,
/// taller for classification results). Free `*out` with `dg_buffer_free(*out, *out_len)`.
#[no_mangle]
pub unsafe extern "C" fn dg_result_overlay_input(
    result: *const dg_result,
    frame: *const dg_input,
    format: i32,
    out: *mut *mut u8,
    out_len: *mut usize,
    out_width: *mut u32,
    out_height: *mut u32,
) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out, "out") }?;
        if out_len.is_null() || out_width.is_null() || out_height.is_null() {
            return Err(Error::invalid("arguments 'out_len', 'out_width' and 'out_height' must not be NULL"));
        }
        // SAFETY: checked non-NULL above.
        unsafe {
            *out_len = 0;
            *out_width = 0;
            *out_height = 0;
        }
        if result.is_null() || frame.is_null() {
            return Err(Error::invalid("arguments 'result' and 'frame' must not be NULL"));
        }
        if !(0..=3).contains(&format) {
            return Err(Error::invalid(format!("argument 'format' is {format}: not a dg_image_format value")));
        }
        // SAFETY: `frame` is a live dg_input (checked non-NULL) whose buffer the caller keeps readable.
        let input = unsafe { input_of(&*frame, 0) }?;
        let img = match input {
            Input::Bytes(b) => dgzoo_core::image_ops::decode(b)?,
            Input::Pixels { data, width, height, stride, bgr } => dgzoo_core::image_ops::from_raw(data, width, height, stride, bgr)?,
        };
        // SAFETY: `result` is a live dg_result (checked non-NULL), only read here.
        let r = unsafe { &*result };
        let drawn = r.model.overlay_owned(img, &r.inner.results, &r.inner.tensors)?;
        let (w, h) = (drawn.width, drawn.height);
        let bytes = match format {
            0 => dgzoo_core::overlay::encode(&drawn, dgzoo_core::overlay::Format::Jpeg)?,
            1 => dgzoo_core::overlay::encode(&drawn, dgzoo_core::overlay::Format::Png)?,
            2 => drawn.data,
            _ => {
                let mut d = drawn.data;
                d.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
                d
            }
        };
        unsafe { give_buffer(bytes, out, out_len) };
        // SAFETY: checked non-NULL above.
        unsafe {
            *out_width = w;
            *out_height = h;
        }
        Ok(())
    })
}

/// `result` drawn straight onto the caller's pixels, in place, with the model's `overlay_*`
/// properties: no copy of the frame is made, the fast path for video (PySDK's
/// `image_overlay` copies the frame first; here only `overlay_alpha` < 1, masks and blurred
/// boxes need a working layer). `pixels` is the caller's
/// buffer of `height` rows of `width` 3-byte pixels, `stride` bytes from one row's start to
/// the next (0 = packed, `3 * width`); `len` is its size, at least `stride * (height - 1) +
/// 3 * width` bytes. `format` is DG_IMAGE_RGB or DG_IMAGE_BGR (the pixels' channel order).
/// The buffer stays the caller's: it is written during the call only, never retained, and
/// bytes between rows (past `3 * width`) are not touched. The pixels come out as
/// `dg_result_overlay_input`'s on the same frame. Classification results cannot be drawn in
/// place (their text lines go in a band PySDK adds under the image): they give DG_UNSUPPORTED
/// and leave the pixels as they were (a classification result with nothing to draw gives
/// success); draw them with `dg_result_overlay_input`. On any error the pixels are unchanged.
#[no_mangle]
pub unsafe extern "C" fn dg_result_overlay_draw(
    result: *const dg_result,
    pixels: *mut u8,
    len: usize,
    width: u32,
    height: u32,
    stride: usize,
    format: i32,
) -> *mut dg_error {
    guard(|| {
        if result.is_null() {
            return Err(Error::invalid("argument 'result' must not be NULL"));
        }
        let bgr = match format {
            2 => false,
            3 => true,
            f => return Err(Error::invalid(format!("argument 'format' is {f}: in-place overlays take DG_IMAGE_RGB (2) or DG_IMAGE_BGR (3)"))),
        };
        if len == 0 {
            return Err(Error::invalid("argument 'pixels' is empty (zero-size buffer)"));
        }
        if pixels.is_null() {
            return Err(Error::invalid("argument 'pixels' must not be NULL"));
        }
        let stride = if stride == 0 { width as usize * 3 } else { stride };
        // SAFETY: the caller guarantees `len` writable bytes at `pixels` (checked non-NULL),
        // not used elsewhere during the call; the slice does not outlive it.
        let frame = unsafe { std::slice::from_raw_parts_mut(pixels, len) };
        // SAFETY: `result` is a live dg_result (checked non-NULL), only read here.
        let r = unsafe { &*result };
        r.model.overlay_into(frame, width, height, stride, bgr, &r.inner.results, &r.inner.tensors)
    })
}

/// PySDK's `result.image_overlay`: the result drawn on its frame with the model's `overlay_*`
/// properties (boxes, oriented boxes, captions, landmarks and their connections, instance
/// and semantic segmentation masks, blur, alpha; classification results as text lines in a
/// band added under the image, as PySDK does). `image`/`image_len` is the original frame
/// (JPEG/PNG/BMP) the result came from; `format` is DG_IMAGE_JPEG or DG_IMAGE_PNG (raw
/// pixels and pixel frames: `dg_result_overlay_input`). On success
/// `*out`/`*out_len` hold a new buffer: free it with `dg_buffer_free(*out, *out_len)`.
#[no_mangle]
pub unsafe extern "C" fn dg_result_overlay(
    result: *const dg_result,
    image: *const u8,
    image_len: usize,
    format: i32,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out, "out") }?;
        if out_len.is_null() {
            return Err(Error::invalid("argument 'out_len' must not be NULL"));
        }
        // SAFETY: checked non-NULL above; the caller passes a writable size_t.
        unsafe { *out_len = 0 };
        if result.is_null() {
            return Err(Error::invalid("argument 'result' must not be NULL"));
        }
        let fmt = match format {
            0 => dgzoo_core::overlay::Format::Jpeg,
            1 => dgzoo_core::overlay::Format::Png,
            f => return Err(Error::invalid(format!("argument 'format' is {f}: not a dg_image_format value"))),
        };
        let frame = unsafe { bytes(image, image_len, "image") }?;
        // SAFETY: `result` is a live dg_result (checked non-NULL), only read here.
        let r = unsafe { &*result };
        let img = dgzoo_core::image_ops::decode(frame)?;
        let encoded = dgzoo_core::overlay::encode(&r.model.overlay_owned(img, &r.inner.results, &r.inner.tensors)?, fmt)?;
        unsafe { give_buffer(encoded, out, out_len) };
        Ok(())
    })
}

/// Free a buffer returned by `dg_result_overlay` (`len` as returned). NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_buffer_free(data: *mut u8, len: usize) {
    guard_value((), || {
        if !data.is_null() {
            // SAFETY: `data`/`len` came from a boxed slice handed out by this library.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        }
    })
}

/// Number of tensors in a result: raw tensors (postprocess types None/Dequantization) and
/// instance masks (SegmentationYoloV8, float32 `[height, width]`, name "mask"), where PySDK
/// has numpy arrays. In the result JSON each raw tensor's `data`, and each mask's
/// `mask.data`, is `{"__tensor__": index, "dtype", "shape"}`.
#[no_mangle]
pub unsafe extern "C" fn dg_result_tensor_count(result: *const dg_result) -> usize {
    guard_value(0, || if result.is_null() { 0 } else { unsafe { (*result).inner.tensors.len() } })
}

/// A borrowed, zero-copy view of tensor `index`. Its `id` is the raw-tensor result's `id`, or
/// for an instance mask the index of its result in the JSON list.
#[no_mangle]
pub unsafe extern "C" fn dg_result_tensor(result: *const dg_result, index: usize, out_view: *mut dg_tensor_view) -> *mut dg_error {
    guard(|| {
        if out_view.is_null() {
            return Err(Error::invalid("out-parameter 'out_view' must not be NULL"));
        }
        if result.is_null() {
            return Err(Error::invalid("argument 'result' must not be NULL"));
        }
        let r = unsafe { &*result };
        let t = r.inner.tensors.get(index).ok_or_else(|| Error::invalid(format!("tensor index {index} is out of range 0..{}", r.inner.tensors.len())))?;
        let id = r.inner.tensor_id(index);
        let view = dg_tensor_view::of(t, id, &r.names[index], &r.shapes[index]);
        unsafe { *out_view = view };
        Ok(())
    })
}

/// Free a result. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_result_free(result: *mut dg_result) {
    guard_value((), || {
        if !result.is_null() {
            drop(unsafe { Box::from_raw(result) });
        }
    })
}

struct UserData(*mut c_void);
// SAFETY: the header requires user_data to be usable from the library's delivery thread.
unsafe impl Send for UserData {}

/// Create an asynchronous predictor. `queue_depth` bounds frames in flight (1..160; 0 = the
/// model's `frame_queue_depth`); `callback` receives each result in submission order on the
/// predictor's delivery thread, with `user_data` passed through.
#[no_mangle]
pub unsafe extern "C" fn dg_async_new(
    model: *const dg_model,
    queue_depth: usize,
    callback: dg_async_callback,
    user_data: *mut c_void,
    out_async: *mut *mut dg_async,
) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_async, "out_async") }?;
        let m = unsafe { model_ref(model) }?;
        let cb = callback.ok_or_else(|| Error::invalid("argument 'callback' must not be NULL"))?;
        let ud = UserData(user_data);
        let owner = m.clone();
        let p = AsyncPredictor::new(
            m.clone(),
            queue_depth,
            Box::new(move |id, r| {
                let ud = &ud;
                let (res, err) = match r {
                    Ok(r) => (dg_result::boxed(&owner, r), std::ptr::null_mut()),
                    Err(e) => (std::ptr::null_mut(), dg_error::boxed(e)),
                };
                // SAFETY: the callback contract is documented in the header.
                unsafe { cb(ud.0, id, res, err) };
            }),
        )?;
        unsafe { *out_async = Box::into_raw(Box::new(dg_async(p))) };
        Ok(())
    })
}

unsafe fn async_ref<'a>(a: *const dg_async) -> Result<&'a AsyncPredictor> {
    if a.is_null() {
        return Err(Error::invalid("argument 'async' must not be NULL"));
    }
    Ok(unsafe { &(*a).0 })
}

/// Submit a single-input frame (copied). Blocks while the queue is full (back-pressure).
#[no_mangle]
pub unsafe extern "C" fn dg_async_submit(predictor: *const dg_async, frame_id: u64, data: *const u8, len: usize) -> *mut dg_error {
    guard(|| {
        let p = unsafe { async_ref(predictor) }?;
        let b = unsafe { bytes(data, len, "data") }?;
        p.submit(frame_id, vec![OwnedInput::Bytes(b.to_vec())])
    })
}

/// Submit a frame given as `count` inputs (copied). Waits at most `timeout_ms` for room in the
/// queue (0 = do not wait; negative = wait as long as needed); a full queue gives `DG_TIMEOUT`.
#[no_mangle]
pub unsafe extern "C" fn dg_async_submit_inputs(
    predictor: *const dg_async,
    frame_id: u64,
    inputs: *const dg_input,
    count: usize,
    timeout_ms: i64,
) -> *mut dg_error {
    guard(|| {
        let p = unsafe { async_ref(predictor) }?;
        if inputs.is_null() && count > 0 {
            return Err(Error::invalid("argument 'inputs' must not be NULL"));
        }
        let raw = if count == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(inputs, count) } };
        let ins = raw.iter().enumerate().map(|(i, x)| unsafe { input_of(x, i) }.map(owned)).collect::<Result<Vec<_>>>()?;
        if timeout_ms < 0 {
            p.submit(frame_id, ins)
        } else {
            p.try_submit(frame_id, ins, Duration::from_millis(super::cast(timeout_ms, "timeout_ms")?))
        }
    })
}

/// Block until every submitted frame has been delivered to the callback.
#[no_mangle]
pub unsafe extern "C" fn dg_async_wait(predictor: *const dg_async) -> *mut dg_error {
    guard(|| {
        unsafe { async_ref(predictor) }?.wait();
        Ok(())
    })
}

/// Drop frames not yet started (and, on an AI-server model, frames sent and not yet answered,
/// whose stream is abandoned); each is delivered to the callback with a `DG_CANCELLED` error.
#[no_mangle]
pub unsafe extern "C" fn dg_async_cancel(predictor: *const dg_async) -> *mut dg_error {
    guard(|| {
        unsafe { async_ref(predictor) }?.cancel();
        Ok(())
    })
}

/// Wait for outstanding frames, stop the predictor's threads and free it. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_async_free(predictor: *mut dg_async) {
    guard_value((), || {
        if !predictor.is_null() {
            drop(unsafe { Box::from_raw(predictor) });
        }
    })
}
