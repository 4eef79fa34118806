//! The C ABI with `@cloud`: `dg_connect` / `dg_load_model` / `dg_predict` and the async
//! predictor work unchanged for models that run on the cloud (our hub).
mod cloud_common;
use cloud_common::*;
mod ffi_common;
use dgzoo::ffi::*;
use ffi_common::*;
use std::ffi::{CStr, CString};


const IMAGES: [&str; 3] = ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"];

#[test]
fn c_abi_predicts_through_the_cloud() {
    let root = hub_root(&[YOLO]);
    let hub = start_hub(root.path());
    let host = c"@cloud";
    let url = CString::new(hub_url(&hub)).unwrap();
    let token = CString::new(TOKEN).unwrap();
    let name = CString::new(YOLO).unwrap();
    let props = CString::new(r#"{"input_image_format": "RAW"}"#).unwrap();
    let mut zoo = std::ptr::null_mut();
    let mut model = std::ptr::null_mut();
    unsafe {
        check(dg_connect(host.as_ptr(), url.as_ptr(), token.as_ptr(), &mut zoo));
        check(dg_load_model(zoo, name.as_ptr(), props.as_ptr(), &mut model));
    }
    let bytes = image("girls_256.jpg");
    let mut r = std::ptr::null_mut();
    unsafe { check(dg_predict(model, bytes.as_ptr(), bytes.len(), &mut r)) };
    assert_close(&unsafe { result_json(r) }, &golden(YOLO, "girls_256.jpg"), 1e-4, "dg_predict");
    let frames: Vec<Vec<u8>> = IMAGES.iter().map(|i| image(i)).collect();
    for (id, v) in unsafe { run_async(model, &frames, 6) } {
        assert_close(&v, &golden(YOLO, IMAGES[id as usize % 3]), 1e-4, &format!("async {id}"));
    }
    // A bad frame: PySDK's cloud error text, as a dg_error.
    let mut r = std::ptr::null_mut();
    let e = unsafe { dg_predict(model, b"xx".as_ptr(), 2, &mut r) };
    assert!(!e.is_null() && r.is_null());
    let msg = unsafe { CStr::from_ptr(dg_error_message(e)) }.to_string_lossy().into_owned();
    assert!(msg.starts_with(&format!("Model '{ORG}/{ZOONAME}/{YOLO}' inference failed: ")), "{msg}");
    unsafe {
        dg_error_free(e);
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
}
