//! The C ABI with a cloud zoo: `dg_connect` to our hub, list, load (download into the cache
//! chosen by DGZOO_CACHE_DIR), predict; errors come back as `dg_error` with PySDK's text.
mod cloud_common;
use cloud_common::*;
use dgzoo::ffi::*;
use std::ffi::{CStr, CString};
use std::ptr;

unsafe fn take_err(e: *mut dg_error) -> Option<String> {
    if e.is_null() {
        return None;
    }
    let m = CStr::from_ptr(dg_error_message(e)).to_string_lossy().into_owned();
    dg_error_free(e);
    Some(m)
}

#[test]
fn c_abi_with_a_cloud_zoo() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let cache = tempfile::tempdir().unwrap();
    // Only test in this binary: the environment is process-wide.
    std::env::set_var("DGZOO_CACHE_DIR", cache.path());
    let host = CString::new("@local").unwrap();
    let url = CString::new(hub_url(&hub)).unwrap();
    let token = CString::new(TOKEN).unwrap();
    unsafe {
        let mut zoo = ptr::null_mut();
        let bad = CString::new("wrong").unwrap();
        let e = take_err(dg_connect(host.as_ptr(), url.as_ptr(), bad.as_ptr(), &mut zoo));
        assert_eq!(e.as_deref(), Some(format!("Unable to connect to server {}: Token is not valid", hub.addr()).as_str()));
        assert_eq!(take_err(dg_connect(host.as_ptr(), url.as_ptr(), token.as_ptr(), &mut zoo)), None);
        let mut names = ptr::null_mut();
        assert_eq!(take_err(dg_list_models(zoo, ptr::null(), &mut names)), None);
        assert_eq!(CStr::from_ptr(names).to_str().unwrap(), format!("[\"{EFF_F}\"]"));
        dg_string_free(names);
        let name = CString::new(EFF_F).unwrap();
        let mut model = ptr::null_mut();
        assert_eq!(take_err(dg_load_model(zoo, name.as_ptr(), ptr::null(), &mut model)), None);
        let img = image("cat_224.jpg");
        let mut res = ptr::null_mut();
        assert_eq!(take_err(dg_predict(model, img.as_ptr(), img.len(), &mut res)), None);
        let json: serde_json::Value = serde_json::from_str(CStr::from_ptr(dg_result_json(res)).to_str().unwrap()).unwrap();
        assert_close(&json, &golden(EFF_F, "cat_224.jpg"), 1e-4, "C ABI");
        dg_result_free(res);
        dg_model_free(model);
        dg_zoo_free(zoo);
    }
    assert!(cache.path().read_dir().unwrap().count() >= 1, "downloaded into DGZOO_CACHE_DIR");
}
