//! `dg_result_overlay` / `dg_buffer_free`: the overlay of a C result is the core's overlay of
//! the same results (compared with PySDK's in the core's tests/overlay_pysdk.rs), as JPEG or
//! PNG at the frame's size; bad arguments are errors.
use super::aiserver_common::{clean_zoo, image};
use super::ffi_common::check;
use crate::ffi::*;
use std::ffi::CString;

#[test]
fn overlay_of_a_c_result() {
    let zoo_dir = clean_zoo();
    let path = CString::new(zoo_dir.path().to_str().unwrap()).unwrap();
    let name = CString::new("yolov8n_nudenet--320x320_float_tflite_cpu_1").unwrap();
    let (mut zoo, mut model, mut r) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    let jpeg = std::fs::read(image("car_416.jpg")).unwrap();
    // SAFETY: NUL-terminated strings, out-pointers to locals, `jpeg` outlives the calls.
    unsafe {
        check(dg_connect(c"@local".as_ptr(), path.as_ptr(), std::ptr::null(), &mut zoo));
        check(dg_load_model(zoo, name.as_ptr(), c"{}".as_ptr(), &mut model));
        check(dg_predict(model, jpeg.as_ptr(), jpeg.len(), &mut r));
    }
    let original = dgzoo_core::image_ops::decode(&jpeg).unwrap();
    for (fmt, magic) in [(dg_image_format::DG_IMAGE_PNG, &b"\x89PNG"[..]), (dg_image_format::DG_IMAGE_JPEG, &b"\xff\xd8"[..])] {
        let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: `r` is live; `out`/`len` are locals; the buffer is read, then freed once.
        let bytes = unsafe {
            check(dg_result_overlay(r, jpeg.as_ptr(), jpeg.len(), fmt as i32, &mut out, &mut len));
            let b = std::slice::from_raw_parts(out, len).to_vec();
            dg_buffer_free(out, len);
            b
        };
        assert!(bytes.starts_with(magic), "{fmt:?}");
        let img = dgzoo_core::image_ops::decode(&bytes).unwrap();
        assert_eq!((img.width, img.height), (original.width, original.height));
        if fmt == dg_image_format::DG_IMAGE_PNG {
            let changed = img.data.chunks(3).zip(original.data.chunks(3)).filter(|(a, b)| a != b).count();
            assert!(changed > 1000, "only {changed} pixels drawn");
        }
    }
    // The same frame as BGR pixels with a padded stride, overlay back as packed BGR: the
    // PNG overlay's pixels with red and blue swapped.
    let (w, h) = (original.width as usize, original.height as usize);
    let stride = w * 3 + 8;
    let mut bgr = vec![0u8; stride * h];
    for y in 0..h {
        for x in 0..w {
            let s = &original.data[(y * w + x) * 3..][..3];
            bgr[y * stride + x * 3..][..3].copy_from_slice(&[s[2], s[1], s[0]]);
        }
    }
    let frame = dg_input { kind: dg_input_kind::DG_INPUT_BGR as i32, data: bgr.as_ptr(), len: bgr.len(), width: w as u32, height: h as u32, stride };
    let (mut out, mut len, mut ow, mut oh) = (std::ptr::null_mut(), 0usize, 0u32, 0u32);
    // SAFETY: `frame` borrows `bgr` for the call; the out-parameters are locals; freed once.
    let raw = unsafe {
        check(dg_result_overlay_input(r, &frame, dg_image_format::DG_IMAGE_BGR as i32, &mut out, &mut len, &mut ow, &mut oh));
        let b = std::slice::from_raw_parts(out, len).to_vec();
        dg_buffer_free(out, len);
        b
    };
    assert_eq!((ow as usize, oh as usize, raw.len()), (w, h, w * h * 3));
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    let png = unsafe {
        check(dg_result_overlay(r, jpeg.as_ptr(), jpeg.len(), dg_image_format::DG_IMAGE_PNG as i32, &mut out, &mut len));
        let b = std::slice::from_raw_parts(out, len).to_vec();
        dg_buffer_free(out, len);
        b
    };
    let png = dgzoo_core::image_ops::decode(&png).unwrap();
    assert!(raw.chunks(3).zip(png.data.chunks(3)).all(|(a, b)| a == [b[2], b[1], b[0]]), "BGR overlay differs from the PNG one");
    // Raw formats are for dg_result_overlay_input only.
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above; an error comes back, no buffer.
    let e = unsafe { dg_result_overlay(r, jpeg.as_ptr(), jpeg.len(), dg_image_format::DG_IMAGE_RGB as i32, &mut out, &mut len) };
    assert!(!e.is_null() && out.is_null());
    // SAFETY: `e` is a live error we own.
    unsafe { dg_error_free(e) };

    // Bad format, NULL result, empty image: errors with no buffer.
    for (res, data, fmt) in [(r as *const dg_result, &jpeg[..], 7), (std::ptr::null(), &jpeg[..], 0), (r as *const dg_result, &[][..], 0)] {
        let (mut out, mut len) = (1usize as *mut u8, 5usize);
        // SAFETY: as above; on error the out-parameters are reset.
        let e = unsafe { dg_result_overlay(res, data.as_ptr(), data.len(), fmt, &mut out, &mut len) };
        assert!(!e.is_null() && out.is_null() && len == 0);
        // SAFETY: `e` is a live error we own.
        unsafe { dg_error_free(e) };
    }
    // In place on the caller's BGR pixels (padded rows): the copying path's pixels, the
    // padding untouched; bad arguments leave the pixels as they were.
    let mut pixels = bgr.clone();
    // SAFETY: `r` is live; `pixels` is a writable buffer of its length, borrowed for the call.
    unsafe { check(dg_result_overlay_draw(r, pixels.as_mut_ptr(), pixels.len(), w as u32, h as u32, stride, dg_image_format::DG_IMAGE_BGR as i32)) };
    for y in 0..h {
        assert!(pixels[y * stride..][..w * 3] == raw[y * w * 3..][..w * 3], "row {y} differs from dg_result_overlay_input's");
        assert!(pixels[y * stride + w * 3..][..8].iter().all(|&b| b == 0), "padding of row {y}");
    }
    let mut same = bgr.clone();
    for (len, width, st, fmt) in
        [(stride * (h - 1) + w * 3 - 1, w, stride, 3), (same.len(), w, w * 3 - 1, 3), (same.len(), 0, stride, 3), (same.len(), w, stride, 1), (0, w, stride, 3)]
    {
        // SAFETY: as above, `len` never exceeds the buffer; an error comes back.
        let e = unsafe { dg_result_overlay_draw(r, same.as_mut_ptr(), len, width as u32, h as u32, st, fmt) };
        assert!(!e.is_null() && unsafe { dg_error_code(e) } == dg_code::DG_INVALID_ARGUMENT, "{len} {width} {st} {fmt}");
        // SAFETY: `e` is a live error we own.
        unsafe { dg_error_free(e) };
    }
    assert!(same == bgr, "a failed call changed the pixels");
    // SAFETY: NULL is accepted; the handles are freed once.
    unsafe {
        dg_buffer_free(std::ptr::null_mut(), 0);
        dg_result_free(r);
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
}
