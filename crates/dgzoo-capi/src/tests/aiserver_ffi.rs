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
        // The server post-processes: no raw tensors for a custom post-processor here.
        let e = unsafe { dg_model_set_postprocessor(model, Some(never_called), std::ptr::null_mut()) };
        assert_eq!(unsafe { dg_error_code(e) }, dg_code::DG_UNSUPPORTED);
        let msg = unsafe { CStr::from_ptr(dg_error_message(e)) }.to_string_lossy().into_owned();
        assert!(msg.contains("custom post-processor") && msg.contains("AI server"), "{msg}");
        unsafe {
            dg_error_free(e);
            assert!(dg_model_set_postprocessor(model, None, std::ptr::null_mut()).is_null(), "NULL is accepted");
            dg_model_free(model);
            dg_zoo_free(zoo);
        }
    }
}

unsafe extern "C" fn never_called(_: *mut std::ffi::c_void, _: *const dg_tensor_view, _: usize, _: *const dg_frame_info, _: *mut dg_postprocess_output) -> i32 {
    1
}
