//! The C ABI with an AI-server zoo: `dg_connect` / `dg_load_model` / `dg_predict` and the
//! async predictor work unchanged for models that run on an AI server.
use super::aiserver_common;
use super::ffi_common;
use crate::ffi::*;
use aiserver_common::*;
use dgzoo_server::aiserver::Protocol;
use ffi_common::*;
use std::ffi::{CStr, CString};

#[test]
fn c_abi_predicts_through_an_ai_server() {
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Both);
    let m = "yolov8n_nudenet--320x320_float_tflite_cpu_1";
    for addr in [format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), format!("http://127.0.0.1:{}", server.http_addr().unwrap().port())] {
        let host = CString::new(addr.clone()).unwrap();
        let name = CString::new(m).unwrap();
        let props = CString::new(r#"{"input_image_format": "RAW"}"#).unwrap();
        let mut zoo = std::ptr::null_mut();
        let mut model = std::ptr::null_mut();
        unsafe {
            check(dg_connect(host.as_ptr(), c"".as_ptr(), std::ptr::null(), &mut zoo));
            check(dg_load_model(zoo, name.as_ptr(), props.as_ptr(), &mut model));
        }
        let bytes = std::fs::read(image("girls_256.jpg")).unwrap();
        let mut r = std::ptr::null_mut();
        unsafe { check(dg_predict(model, bytes.as_ptr(), bytes.len(), &mut r)) };
        let got = unsafe { result_json(r) };
        compare(got.as_array().unwrap(), &golden(m, "girls_256.jpg"), &addr).unwrap();
        // Async: frames in order through the callback.
        let frames: Vec<Vec<u8>> = IMAGES.iter().map(|i| std::fs::read(image(i)).unwrap()).collect();
        for (id, v) in unsafe { run_async(model, &frames, 6) } {
            compare(v.as_array().unwrap(), &golden(m, IMAGES[id as usize % 3]), &format!("{addr} async {id}")).unwrap();
        }
        // Errors come back as dg_error, not panics.
        let mut r = std::ptr::null_mut();
        let e = unsafe { dg_predict(model, b"xx".as_ptr(), 2, &mut r) };
        assert!(!e.is_null() && r.is_null());
        let msg = unsafe { CStr::from_ptr(dg_error_message(e)) }.to_string_lossy().into_owned();
        assert!(msg.contains("Failed to perform model"), "{msg}");
        unsafe { dg_error_free(e) };
        // A custom post-processor on a remote model: the server sends raw tensors, the
        // callback runs here; NULL restores the server's post-processing.
        unsafe { check(dg_model_set_postprocessor(model, Some(count_tensors), std::ptr::null_mut())) };
        let mut r = std::ptr::null_mut();
        unsafe { check(dg_predict(model, bytes.as_ptr(), bytes.len(), &mut r)) };
        let got = unsafe { result_json(r) };
        assert_eq!(
            (got[0]["label"].as_str(), got[0]["count"].as_u64(), &got[0]["image"]),
            (Some("raw tensors"), Some(1), &serde_json::json!([256, 256])),
            "{addr}: {got}"
        );
        assert_eq!(got[0]["elements"].as_u64().unwrap() % 2100, 0, "{addr}: YOLOv8n's one output tensor over 2100 anchors: {got}");
        unsafe {
            check(dg_model_set_postprocessor(model, None, std::ptr::null_mut()));
            check(dg_predict(model, bytes.as_ptr(), bytes.len(), &mut r));
        }
        compare(unsafe { result_json(r) }.as_array().unwrap(), &golden(m, "girls_256.jpg"), &addr).unwrap();
        unsafe {
            dg_model_free(model);
            dg_zoo_free(zoo);
        }
    }
}

/// Reports what it was given: the number of tensors, the first one's element count and the
/// frame's image size.
unsafe extern "C" fn count_tensors(
    _: *mut std::ffi::c_void,
    t: *const dg_tensor_view,
    n: usize,
    f: *const dg_frame_info,
    out: *mut dg_postprocess_output,
) -> i32 {
    // SAFETY: the library passes `n` valid views, a valid frame info and output for the call.
    let (first, frame) = unsafe { (&*t, &*f) };
    let elements: usize = (0..first.rank).map(|i| unsafe { *first.shape.add(i) } as usize).product();
    let text = format!(r#"[{{"label": "raw tensors", "count": {n}, "elements": {elements}, "image": [{}, {}]}}]"#, frame.image_width, frame.image_height);
    let c = CString::new(text).unwrap();
    // SAFETY: `out` is the call's output slot; `c` is a NUL-terminated string.
    let e = unsafe { dg_postprocess_set_output(out, c.as_ptr()) };
    i32::from(!e.is_null())
}
