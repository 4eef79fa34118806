//! The boundary helpers every C entry point uses (rustls-ffi's ffi.rs / panic.rs in spirit):
//! the panic guard that turns a panic into a DG_INTERNAL error (or a neutral value), checked
//! reads of C arguments (strings, JSON, enums as integers) and out-parameter handling. Only
//! this module and the entry points themselves touch raw pointers.
use super::dg_error;
use dgzoo_core::error::{Error, Result};
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `f`, converting an `Err` or a panic into a `dg_error`.
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> *mut dg_error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(e)) => dg_error::boxed(e),
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            dg_error::boxed(Error::internal(format!("internal error in dgzoo (panic: {what})")))
        }
    }
}

/// Run `f` for functions without an error return; a panic yields `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A required C string argument.
pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::invalid(format!("argument '{what}' must not be NULL")));
    }
    // SAFETY: caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Error::invalid(format!("argument '{what}' is not valid UTF-8")))
}

/// An optional C string argument: NULL → "".
pub(crate) unsafe fn cstr_opt<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        Ok("")
    } else {
        unsafe { cstr(p, what) }
    }
}

/// An optional JSON argument: NULL or "" → null.
pub(crate) unsafe fn json_arg(p: *const c_char, what: &str) -> Result<serde_json::Value> {
    let s = unsafe { cstr_opt(p, what) }?;
    if s.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(s).map_err(|e| Error::invalid(format!("argument '{what}' is not valid JSON: {e}")))
}

/// Check a required out-parameter and clear it.
pub(crate) unsafe fn out_ptr<T>(p: *mut *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::invalid(format!("out-parameter '{what}' must not be NULL")));
    }
    unsafe { *p = std::ptr::null_mut() };
    Ok(())
}

/// A new C string for the caller (free with `dg_string_free`).
pub(crate) fn new_string(s: String) -> *mut c_char {
    CString::new(s.replace('\0', " ")).unwrap_or_default().into_raw()
}

/// A C integer argument converted to the type the library uses, or DG_INVALID_ARGUMENT when
/// it does not fit (never a wrapping `as` cast).
pub(crate) fn cast<T: TryFrom<U>, U: Copy + std::fmt::Display>(v: U, what: &str) -> Result<T> {
    T::try_from(v).map_err(|_| Error::invalid(format!("argument '{what}' is out of range ({v})")))
}

/// `a * b` for sizes taken from C, or DG_INVALID_ARGUMENT on overflow.
pub(crate) fn checked_size(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::invalid(format!("argument '{what}' is too large")))
}
