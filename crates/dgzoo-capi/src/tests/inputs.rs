//! `dg_predict_inputs`: every enum field read from C memory is an integer checked on the way
//! in, so an out-of-range `dg_input.kind` is a DG_INVALID_ARGUMENT error, not undefined behaviour.
use super::aiserver_common::{clean_zoo, image};
use super::ffi_common::{check, result_json};
use crate::ffi::*;
use std::ffi::{CStr, CString};

#[test]
fn input_kinds_are_checked_integers() {
    let zoo_dir = clean_zoo();
    let path = CString::new(zoo_dir.path().to_str().unwrap()).unwrap();
    let name = CString::new("efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1").unwrap();
    let (mut zoo, mut model) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid NUL-terminated strings and out-pointers to locals.
    unsafe {
        check(dg_connect(c"@local".as_ptr(), path.as_ptr(), std::ptr::null(), &mut zoo));
        check(dg_load_model(zoo, name.as_ptr(), c"{}".as_ptr(), &mut model));
    }
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let input = |kind: i32, data: &[u8], w: u32, h: u32| dg_input { kind, data: data.as_ptr(), len: data.len(), width: w, height: h, stride: 0 };

    // A valid kind: the same result as dg_predict.
    let mut r = std::ptr::null_mut();
    let mut r2 = std::ptr::null_mut();
    // SAFETY: `model` is live, the input borrows `jpeg` for the call, out-pointers are locals.
    let (via_inputs, via_predict) = unsafe {
        check(dg_predict_inputs(model, &input(dg_input_kind::DG_INPUT_BYTES as i32, &jpeg, 0, 0), 1, &mut r));
        check(dg_predict(model, jpeg.as_ptr(), jpeg.len(), &mut r2));
        (result_json(r), result_json(r2))
    };
    assert_eq!(via_inputs, via_predict);
    // RGB pixels of another size are fitted like an image.
    let pixels = vec![128u8; 50 * 40 * 3];
    let mut r = std::ptr::null_mut();
    // SAFETY: as above; `pixels` holds width*height*3 bytes.
    let got = unsafe {
        check(dg_predict_inputs(model, &input(dg_input_kind::DG_INPUT_RGB as i32, &pixels, 50, 40), 1, &mut r));
        result_json(r)
    };
    assert!(got.as_array().is_some_and(|a| !a.is_empty()), "{got}");

    // Values no dg_input_kind names: an error with the code and no result.
    for bad in [3, 7, -1, i32::MAX, i32::MIN] {
        let mut r = 1usize as *mut dg_result;
        // SAFETY: as above; `r` is overwritten with NULL on error.
        let e = unsafe { dg_predict_inputs(model, &input(bad, &jpeg, 0, 0), 1, &mut r) };
        assert!(!e.is_null() && r.is_null(), "kind {bad} must fail");
        // SAFETY: `e` is a live error we own and free once.
        let (code, msg) = unsafe { (dg_error_code(e), CStr::from_ptr(dg_error_message(e)).to_string_lossy().into_owned()) };
        unsafe { dg_error_free(e) };
        assert_eq!(code, dg_code::DG_INVALID_ARGUMENT, "kind {bad}: {msg}");
        assert!(msg.contains(&format!("inputs[0].kind is {bad}")), "{msg}");
    }
    // SAFETY: handles created above, freed once.
    unsafe {
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
}
