//! The C ABI. Conventions (see the header's preamble):
//! - every fallible function returns `dg_error *` (NULL on success) and writes results through
//!   out-parameters placed last; out-parameters are set to NULL/0 first, so they are never
//!   left dangling on error;
//! - every function body runs under [`guard`], which turns a Rust panic into an internal
//!   `dg_error` (or a neutral return value) so no panic crosses the boundary;
//! - strings the library returns are freed with `dg_string_free`; handles with `dg_<type>_free`,
//!   which accepts NULL.
#![allow(clippy::missing_safety_doc, non_camel_case_types)]
use dgzoo_core::error::{Code, Error};
use std::ffi::{c_char, CStr, CString};

mod boundary;
mod log;
mod model;
mod postprocess;
mod stream;
mod zoo;

pub(crate) use boundary::{cast, checked_size, cstr, cstr_opt, guard, guard_value, json_arg, new_string, out_ptr};
pub use log::*;
pub use model::*;
pub use postprocess::*;
pub use stream::*;
pub use zoo::*;

/// Status codes carried by a `dg_error`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_code {
    /// Success (never carried by a `dg_error`; returned by `dg_error_code(NULL)`).
    DG_OK = 0,
    /// A NULL required argument, malformed JSON, a value out of range.
    DG_INVALID_ARGUMENT = 1,
    /// Unknown model, property, path or file.
    DG_NOT_FOUND = 2,
    /// Not available here: runtime library missing, device absent, combination not supported.
    DG_UNSUPPORTED = 3,
    /// Reading or writing a file failed.
    DG_IO = 4,
    /// A network operation failed.
    DG_NETWORK = 5,
    /// Authentication failed (bad token).
    DG_AUTH = 6,
    /// The peer spoke the protocol wrongly.
    DG_PROTOCOL = 7,
    /// The model configuration or binary is invalid (bad JSON, checksum mismatch, not a model).
    DG_BAD_MODEL = 8,
    /// Inference failed (bad input data, runtime error).
    DG_INFERENCE = 9,
    /// An operation timed out (or a queue stayed full).
    DG_TIMEOUT = 10,
    /// The operation was cancelled.
    DG_CANCELLED = 11,
    /// A bug in dgzoo (including a caught panic).
    DG_INTERNAL = 12,
}

impl From<Code> for dg_code {
    fn from(c: Code) -> Self {
        match c {
            Code::Ok => dg_code::DG_OK,
            Code::InvalidArgument => dg_code::DG_INVALID_ARGUMENT,
            Code::NotFound => dg_code::DG_NOT_FOUND,
            Code::Unsupported => dg_code::DG_UNSUPPORTED,
            Code::Io => dg_code::DG_IO,
            Code::Network => dg_code::DG_NETWORK,
            Code::Auth => dg_code::DG_AUTH,
            Code::Protocol => dg_code::DG_PROTOCOL,
            Code::BadModel => dg_code::DG_BAD_MODEL,
            Code::Inference => dg_code::DG_INFERENCE,
            Code::Timeout => dg_code::DG_TIMEOUT,
            Code::Cancelled => dg_code::DG_CANCELLED,
            Code::Internal => dg_code::DG_INTERNAL,
        }
    }
}

/// An error: a code and a message. Owned by the caller; free with `dg_error_free`.
pub struct dg_error {
    code: dg_code,
    message: CString,
}

impl dg_error {
    pub(crate) fn boxed(e: Error) -> *mut dg_error {
        let message = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
        Box::into_raw(Box::new(dg_error { code: e.code.into(), message }))
    }
}

/// The library version, e.g. "0.1.0". Static storage: do not free.
#[no_mangle]
pub extern "C" fn dg_version() -> *const c_char {
    static V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"",
    };
    V.as_ptr()
}

/// The error's code; `DG_OK` for NULL.
#[no_mangle]
pub unsafe extern "C" fn dg_error_code(error: *const dg_error) -> dg_code {
    guard_value(dg_code::DG_INTERNAL, || if error.is_null() { dg_code::DG_OK } else { unsafe { (*error).code } })
}

/// The error's message (UTF-8), valid until `dg_error_free`; "" for NULL.
#[no_mangle]
pub unsafe extern "C" fn dg_error_message(error: *const dg_error) -> *const c_char {
    guard_value(c"".as_ptr(), || if error.is_null() { c"".as_ptr() } else { unsafe { (*error).message.as_ptr() } })
}

/// Free an error. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_error_free(error: *mut dg_error) {
    guard_value((), || {
        if !error.is_null() {
            drop(unsafe { Box::from_raw(error) });
        }
    })
}

/// Free a string returned by the library. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn dg_string_free(s: *mut c_char) {
    guard_value((), || {
        if !s.is_null() {
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let e = guard(|| panic!("boom"));
        assert!(!e.is_null());
        unsafe {
            assert_eq!(dg_error_code(e), dg_code::DG_INTERNAL);
            let msg = CStr::from_ptr(dg_error_message(e)).to_str().unwrap();
            assert!(msg.contains("boom"), "{msg}");
            dg_error_free(e);
        }
        assert_eq!(guard_value(7, || panic!("x")), 7);
        assert!(guard(|| Ok(())).is_null());
    }

    /// `dg_code` mirrors the core's `Code` value for value: every code maps to the C code with
    /// the same number (the match in `From<Code>` is exhaustive, so a new code must be added).
    #[test]
    fn c_codes_equal_the_core_codes() {
        use Code::*;
        for c in [Ok, InvalidArgument, NotFound, Unsupported, Io, Network, Auth, Protocol, BadModel, Inference, Timeout, Cancelled, Internal] {
            assert_eq!(dg_code::from(c) as i32, c as i32, "{c:?}");
        }
    }

    #[test]
    fn casts_are_checked() {
        assert_eq!(cast::<u64, i64>(5, "x").unwrap(), 5);
        assert_eq!(cast::<u64, i64>(-1, "t").unwrap_err().code, Code::InvalidArgument);
        assert_eq!(checked_size(usize::MAX, 3, "w").unwrap_err().code, Code::InvalidArgument);
    }
}
