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
