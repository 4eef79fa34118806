//! C ABI: connecting to a zoo, listing and inspecting models, loading them.
use super::{cstr, cstr_opt, dg_error, guard, json_arg, new_string, out_ptr};
use dgzoo_core::error::Error;
use dgzoo_core::zoo::filter::Filters;
use dgzoo_core::zoo::Zoo;
use serde_json::Value;
use std::ffi::c_char;

/// A connection to a model zoo and an inference host. Immutable after `dg_connect`:
/// safe to use from many threads at once.
pub struct dg_zoo(pub(crate) Zoo);

/// A loaded model. Safe to use from many threads at once (see the header's thread-safety notes).
pub struct dg_model(pub(crate) dgzoo_core::model::Model, pub(crate) std::ffi::CString);

/// Connect to a zoo: `host` is "@local", "@cloud" or an AI server address ("host[:port]",
/// "http://host:port", "asio://host:port"); `zoo_url` a local directory or model JSON file
/// (absolute, "./relative" or "file://"), a cloud zoo URL, or "" / "aiserver://" for an AI
/// server's own zoo; `token` may be NULL or "". On success `*out_zoo` owns a new `dg_zoo`.
///
/// Fail-over (dgzoo's extension, no load balancer needed): `host` may list several AI servers
/// of the same zoo, comma-separated ("10.0.0.1:8778,10.0.0.2:8778", each element any of the
/// forms above). The first is used until it cannot be reached; then the others are
/// health-checked in order (`GET /v2/health/ready` on http addresses, a ping on asio) and the
/// first healthy one serves this zoo and its models from then on. Before each inference stream
/// opens, the server in use is checked the same way (a draining server is left). Frames in
/// flight when a server dies fail with PySDK's "[CRITICAL]Operation failed" text; later frames
/// go to a healthy server. With every server down: one `DG_NETWORK` error naming each.
/// `shutdown`-like commands never move to another server. See docs/deploy.md.
#[no_mangle]
pub unsafe extern "C" fn dg_connect(host: *const c_char, zoo_url: *const c_char, token: *const c_char, out_zoo: *mut *mut dg_zoo) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_zoo, "out_zoo") }?;
        let host = unsafe { cstr(host, "host") }?;
        let zoo_url = unsafe { cstr_opt(zoo_url, "zoo_url") }?;
        let token = unsafe { cstr_opt(token, "token") }?;
        let zoo = Zoo::connect(host, zoo_url, token)?;
        unsafe { *out_zoo = Box::into_raw(Box::new(dg_zoo(zoo))) };
        Ok(())
    })
}

/// Free a zoo. NULL is accepted. Models loaded from it stay valid.
#[no_mangle]
pub unsafe extern "C" fn dg_zoo_free(zoo: *mut dg_zoo) {
    super::guard_value((), || {
        if !zoo.is_null() {
            drop(unsafe { Box::from_raw(zoo) });
        }
    })
}

unsafe fn zoo_ref<'a>(zoo: *const dg_zoo) -> dgzoo_core::Result<&'a Zoo> {
    if zoo.is_null() {
        return Err(Error::invalid("argument 'zoo' must not be NULL"));
    }
    Ok(unsafe { &(*zoo).0 })
}

/// Model names passing the filters, sorted, as a JSON array. `filter_json` (NULL or "" = no
/// filter) is an object with any of `model_family` (string, list, or {"regex": "..."}),
/// `runtime`, `device`, `device_type`, `precision`, `pruned`, `postprocess_type` (string or
/// list). `*out_names_json` is freed with `dg_string_free`.
#[no_mangle]
pub unsafe extern "C" fn dg_list_models(zoo: *const dg_zoo, filter_json: *const c_char, out_names_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_names_json, "out_names_json") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        let filters = Filters::from_json(&unsafe { json_arg(filter_json, "filter_json") }?)?;
        let names = zoo.list_names(&filters)?;
        unsafe { *out_names_json = new_string(serde_json::to_string(&names).unwrap_or_default()) };
        Ok(())
    })
}

/// Like `dg_list_models`, but a JSON object `{name: full model parameters}` in zoo order.
#[no_mangle]
pub unsafe extern "C" fn dg_list_models_full(zoo: *const dg_zoo, filter_json: *const c_char, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        let filters = Filters::from_json(&unsafe { json_arg(filter_json, "filter_json") }?)?;
        // Built by hand to keep zoo order (JSON maps here are sorted).
        let mut s = String::from("{");
        for (i, (name, params)) in zoo.list_full(&filters)?.into_iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&serde_json::to_string(&Value::String(name)).unwrap_or_default());
            s.push(':');
            s.push_str(&params.to_string());
        }
        s.push('}');
        unsafe { *out_json = new_string(s) };
        Ok(())
    })
}

/// A model's parameters (full form) as JSON.
#[no_mangle]
pub unsafe extern "C" fn dg_model_info(zoo: *const dg_zoo, model_name: *const c_char, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        let name = unsafe { cstr(model_name, "model_name") }?;
        let info = zoo.model_info(name)?;
        unsafe { *out_json = new_string(info.to_string()) };
        Ok(())
    })
}

/// System info of the inference host: `{"Devices": {"RT/DEV": [...]}, "Software Version": ...}`.
#[no_mangle]
pub unsafe extern "C" fn dg_system_info(zoo: *const dg_zoo, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        unsafe { *out_json = new_string(zoo.system_info().to_string()) };
        Ok(())
    })
}

/// The inference host's device types ("RT/DEV") as a JSON array.
#[no_mangle]
pub unsafe extern "C" fn dg_supported_device_types(zoo: *const dg_zoo, out_json: *mut *mut c_char) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_json, "out_json") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        unsafe { *out_json = new_string(serde_json::to_string(&zoo.supported_device_types()).unwrap_or_default()) };
        Ok(())
    })
}

/// Load a model, applying `properties_json` (NULL, "" or a JSON object of model properties,
/// applied in order, e.g. `{"output_top_k": 3}`). `*out_model` is freed with `dg_model_free`.
#[no_mangle]
pub unsafe extern "C" fn dg_load_model(
    zoo: *const dg_zoo,
    model_name: *const c_char,
    properties_json: *const c_char,
    out_model: *mut *mut dg_model,
) -> *mut dg_error {
    guard(|| {
        unsafe { out_ptr(out_model, "out_model") }?;
        let zoo = unsafe { zoo_ref(zoo) }?;
        let name = unsafe { cstr(model_name, "model_name") }?;
        let props = unsafe { json_arg(properties_json, "properties_json") }?;
        let model = zoo.load_model(name, &props)?;
        let cname = std::ffi::CString::new(model.name().replace('\0', " ")).unwrap_or_default();
        unsafe { *out_model = Box::into_raw(Box::new(dg_model(model, cname))) };
        Ok(())
    })
}
