//! Instance masks through the C ABI: a `SegmentationYoloV8` result's masks are float32
//! tensors of the result (`dg_result_tensor`, zero-copy), referred to from the JSON by index,
//! and hold the values the core's results carry (compared with PySDK's in families.rs).
use super::ffi_common::check;
use crate::ffi::*;
use std::ffi::{CStr, CString};

const SEG: &str = "yolov8_seg_heads--64x64_float_onnx_cpu_1";

#[test]
fn instance_masks_are_tensors_of_a_c_result() {
    let Some(root) = std::env::var_os("DGZOO_FAMILY_ZOO").map(std::path::PathBuf::from) else {
        eprintln!("SKIP instance_masks_are_tensors_of_a_c_result: DGZOO_FAMILY_ZOO not set");
        return;
    };
    let path = CString::new(root.to_str().unwrap()).unwrap();
    let name = CString::new(SEG).unwrap();
    let jpeg = std::fs::read(super::aiserver_common::image("car_416.jpg")).unwrap();
    let (mut zoo, mut model, mut r) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: NUL-terminated strings, out-pointers to locals, `jpeg` outlives the calls.
    let results = unsafe {
        check(dg_connect(c"@local".as_ptr(), path.as_ptr(), std::ptr::null(), &mut zoo));
        check(dg_load_model(zoo, name.as_ptr(), c"{}".as_ptr(), &mut model));
        check(dg_predict(model, jpeg.as_ptr(), jpeg.len(), &mut r));
        serde_json::from_str::<serde_json::Value>(CStr::from_ptr(dg_result_json(r)).to_str().unwrap()).unwrap()
    };
    let results = results.as_array().unwrap().clone();
    let masks: Vec<(usize, &serde_json::Value)> = results.iter().enumerate().filter_map(|(i, v)| v.get("mask").map(|m| (i, m))).collect();
    assert!(masks.len() >= 2, "{SEG} must find masks on car_416: {}", masks.len());
    // SAFETY: `r` is live.
    let count = unsafe { dg_result_tensor_count(r) };
    assert_eq!(count, masks.len(), "one tensor per mask");
    // The core's own result for the same frame, masks written out, to check the views against.
    let core = {
        let zoo = dgzoo_core::zoo::Zoo::connect("@local", root.to_str().unwrap(), "").unwrap();
        let m = zoo.load_model(SEG, &serde_json::Value::Null).unwrap();
        dgzoo_core::model::predict(&m, &[dgzoo_core::frame::Input::Bytes(&jpeg)]).unwrap().results_inline()
    };
    for (i, m) in masks {
        let k = m["data"]["__tensor__"].as_u64().unwrap_or_else(|| panic!("mask {i} refers to no tensor: {m}")) as usize;
        let mut view = std::mem::MaybeUninit::<dg_tensor_view>::uninit();
        // SAFETY: `r` is live, `view` is written by the call; its pointers borrow `r`, which
        // outlives their use below.
        let view = unsafe {
            check(dg_result_tensor(r, k, view.as_mut_ptr()));
            view.assume_init()
        };
        // SAFETY: as above: name, shape and data borrow the live result.
        let (vname, shape, data) = unsafe {
            (
                CStr::from_ptr(view.name).to_str().unwrap().to_string(),
                std::slice::from_raw_parts(view.shape, view.rank).to_vec(),
                std::slice::from_raw_parts(view.data as *const f32, view.nbytes / 4).to_vec(),
            )
        };
        assert_eq!((vname.as_str(), view.id, view.dtype), ("mask", i as i64, dg_dtype::DG_FLT), "mask {i}");
        assert_eq!(serde_json::json!(shape), m["data"]["shape"], "mask {i}: shape");
        assert_eq!(data.len() as i64, shape.iter().product::<i64>(), "mask {i}: size");
        let want: Vec<f64> =
            core[i]["mask"]["data"]["data"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect();
        assert!(data.iter().zip(&want).all(|(&a, &b)| a as f64 == b), "mask {i}: values differ from the core's");
        assert!(data.iter().any(|&v| v > 0.5), "mask {i} is empty");
    }
    // Past the last tensor: an error, the view untouched.
    let mut view = std::mem::MaybeUninit::<dg_tensor_view>::zeroed();
    // SAFETY: as above; then every handle is freed once.
    unsafe {
        let e = dg_result_tensor(r, count, view.as_mut_ptr());
        assert!(!e.is_null());
        dg_error_free(e);
        dg_result_free(r);
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
}
