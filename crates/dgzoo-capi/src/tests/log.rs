//! `dg_set_log_callback`: the core's log records reach a C callback with their level, module
//! and fields, and stop when the callback is removed.
use super::aiserver_common::clean_zoo;
use super::ffi_common::check;
use crate::ffi::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

static RECORDS: Mutex<Vec<(dg_log_level, String, String, usize)>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(user_data: *mut c_void, level: dg_log_level, target: *const c_char, message: *const c_char) {
    // SAFETY: the library passes NUL-terminated strings valid for the call.
    let (t, m) = unsafe { (CStr::from_ptr(target).to_string_lossy().into_owned(), CStr::from_ptr(message).to_string_lossy().into_owned()) };
    RECORDS.lock().unwrap().push((level, t, m, user_data as usize));
}

#[test]
fn log_records_reach_the_c_callback() {
    let zoo_dir = clean_zoo();
    let path = CString::new(zoo_dir.path().to_str().unwrap()).unwrap();
    let m = "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1";
    let name = CString::new(m).unwrap();
    let (mut zoo, mut model) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: a valid callback and opaque pointer; valid strings and out-pointers to locals.
    unsafe {
        check(dg_set_log_callback(Some(collect), 42usize as *mut c_void));
        check(dg_connect(c"@local".as_ptr(), path.as_ptr(), std::ptr::null(), &mut zoo));
        check(dg_load_model(zoo, name.as_ptr(), c"{}".as_ptr(), &mut model));
    }
    let mine = |r: &(dg_log_level, String, String, usize)| r.2.contains(m);
    {
        let recs = RECORDS.lock().unwrap();
        let loaded = recs.iter().find(|r| mine(r) && r.2.starts_with("model loaded")).unwrap_or_else(|| panic!("no 'model loaded' record: {recs:?}"));
        assert_eq!((loaded.0, loaded.1.as_str(), loaded.3), (dg_log_level::DG_LOG_INFO, "dgzoo::zoo", 42));
        assert!(loaded.2.contains("backend=local"), "{}", loaded.2);
        // DEBUG records are below the default `info` filter.
        assert!(
            std::env::var_os("DGZOO_LOG").is_some() || recs.iter().all(|r| r.0 != dg_log_level::DG_LOG_DEBUG && r.0 != dg_log_level::DG_LOG_TRACE),
            "{recs:?}"
        );
    }
    // Removed: no more records from this thread's calls.
    // SAFETY: as above.
    unsafe { check(dg_set_log_callback(None, std::ptr::null_mut())) };
    let before = RECORDS.lock().unwrap().iter().filter(|r| mine(r)).count();
    let mut model2 = std::ptr::null_mut();
    // SAFETY: as above; handles freed once.
    unsafe {
        check(dg_load_model(zoo, name.as_ptr(), c"{}".as_ptr(), &mut model2));
        dg_model_free(model2);
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
    assert_eq!(RECORDS.lock().unwrap().iter().filter(|r| mine(r)).count(), before);
}
