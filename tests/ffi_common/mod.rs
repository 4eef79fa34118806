//! Helpers of the tests that drive the C ABI from Rust: error checks, result JSON, and an async
//! callback that collects results.
#![allow(dead_code)]
use dgzoo::ffi::*;
use serde_json::Value;
use std::ffi::{c_void, CStr};
use std::sync::Mutex;

/// Panic with the error's message if `e` is an error (freeing it).
pub unsafe fn check(e: *mut dg_error) {
    if !e.is_null() {
        let msg = unsafe { CStr::from_ptr(dg_error_message(e)) }.to_string_lossy().into_owned();
        unsafe { dg_error_free(e) };
        panic!("{msg}");
    }
}

/// A result's JSON, freeing the result.
pub unsafe fn result_json(r: *mut dg_result) -> Value {
    let v = serde_json::from_str(&unsafe { CStr::from_ptr(dg_result_json(r)) }.to_string_lossy()).unwrap();
    unsafe { dg_result_free(r) };
    v
}

/// What `on_result` received: (frame id, results).
pub static ASYNC_OUT: Mutex<Vec<(u64, Value)>> = Mutex::new(Vec::new());

pub unsafe extern "C" fn on_result(_ud: *mut c_void, id: u64, r: *mut dg_result, e: *mut dg_error) {
    assert!(e.is_null(), "async frame failed");
    ASYNC_OUT.lock().unwrap().push((id, unsafe { result_json(r) }));
}

/// Submit `count` frames, cycling through `frames`, to a new async predictor (queue depth 4),
/// wait, and return what the callback received; the frame ids must arrive as 0..count.
pub unsafe fn run_async(model: *const dg_model, frames: &[Vec<u8>], count: usize) -> Vec<(u64, Value)> {
    ASYNC_OUT.lock().unwrap().clear();
    let mut a = std::ptr::null_mut();
    unsafe {
        check(dg_async_new(model, 4, Some(on_result), std::ptr::null_mut(), &mut a));
        for (k, f) in frames.iter().cycle().take(count).enumerate() {
            check(dg_async_submit(a, k as u64, f.as_ptr(), f.len()));
        }
        check(dg_async_wait(a));
        dg_async_free(a);
    }
    let out = std::mem::take(&mut *ASYNC_OUT.lock().unwrap());
    assert_eq!(out.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..count as u64).collect::<Vec<_>>(), "async frames out of order");
    out
}
