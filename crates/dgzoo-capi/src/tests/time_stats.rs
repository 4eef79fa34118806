//! `dg_model_time_stats` / `dg_model_reset_time_stats`: PySDK's `time_stats()` table with the
//! key set the real PySDK 1.5.0 records for the same model, on the local, async and AI-server
//! paths.
use super::aiserver_common::*;
use super::ffi_common::*;
use crate::ffi::*;
use dgzoo_server::aiserver::Protocol;
use serde_json::Value;
use std::ffi::{CStr, CString};

const MODEL: &str = "yolov8n_nudenet--320x320_float_tflite_cpu_1";

/// PySDK's `time_stats()` of `frames` local frames of MODEL on car_416.jpg:
/// [(key, count)] in its order.
fn pysdk_stats(frames: usize) -> Option<Vec<(String, u64)>> {
    let peer = peer("time_stats")?;
    let zoo = clean_zoo();
    let script = format!(
        "import degirum as dg, json\n\
         m = dg.connect(dg.LOCAL, {zoo:?}).load_model({MODEL:?}, measure_time=True)\n\
         for _ in range({frames}): m({img:?})\n\
         print(json.dumps([[k, v.cnt, v.min, v.avg, v.max] for k, v in m.time_stats().items()]))\n",
        zoo = zoo.path().to_str().unwrap(),
        img = image("car_416.jpg").to_str().unwrap(),
    );
    let out = std::process::Command::new(peer.join("venv/bin/python")).arg("-c").arg(script).env("HOME", zoo.path()).output().expect("run PySDK");
    assert!(out.status.success(), "PySDK: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    Some(v.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_u64().unwrap())).collect())
}

/// (key, count) of our table, checking min <= avg <= max on the way.
unsafe fn our_stats(model: *const dg_model) -> Vec<(String, u64)> {
    let mut s = std::ptr::null_mut();
    // SAFETY: `model` is live; `s` is a local out-pointer, freed below.
    let text = unsafe {
        check(dg_model_time_stats(model, &mut s));
        let t = CStr::from_ptr(s).to_string_lossy().into_owned();
        dg_string_free(s);
        t
    };
    // The text keeps PySDK's key order; serde_json's map does not, so read the order from the text.
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<(usize, String)> = v.as_object().unwrap().keys().map(|k| (text.find(&format!("\"{k}\"")).unwrap(), k.clone())).collect();
    keys.sort();
    keys.into_iter()
        .map(|(_, k)| {
            let e = &v[&k];
            let (min, avg, max) = (e["min"].as_f64().unwrap(), e["avg"].as_f64().unwrap(), e["max"].as_f64().unwrap());
            assert!(min <= avg + 1e-9 && avg <= max + 1e-9 && min >= 0.0, "{k}: {e}");
            (k, e["count"].as_u64().unwrap())
        })
        .collect()
}

unsafe fn load(addr: &str, path: &str, props: &str) -> (*mut dg_zoo, *mut dg_model) {
    let (a, p, n, pr) = (CString::new(addr).unwrap(), CString::new(path).unwrap(), CString::new(MODEL).unwrap(), CString::new(props).unwrap());
    let (mut zoo, mut model) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: NUL-terminated strings and out-pointers to locals.
    unsafe {
        check(dg_connect(a.as_ptr(), p.as_ptr(), std::ptr::null(), &mut zoo));
        check(dg_load_model(zoo, n.as_ptr(), pr.as_ptr(), &mut model));
    }
    (zoo, model)
}

unsafe fn predict(model: *const dg_model, jpeg: &[u8]) {
    let mut r = std::ptr::null_mut();
    // SAFETY: `model` is live, `jpeg` outlives the call, `r` is freed here.
    unsafe {
        check(dg_predict(model, jpeg.as_ptr(), jpeg.len(), &mut r));
        dg_result_free(r);
    }
}

#[test]
fn time_stats_have_pysdk_keys_on_every_path() {
    let want = pysdk_stats(3);
    let jpeg = std::fs::read(image("car_416.jpg")).unwrap();
    let zoo_dir = clean_zoo();
    let server = start_server(zoo_dir.path(), Protocol::Asio);
    let local = zoo_dir.path().to_str().unwrap().to_string();
    let remote = format!("127.0.0.1:{}", server.asio_addr().unwrap().port());
    for (addr, path) in [("@local", local.as_str()), (remote.as_str(), "")] {
        // SAFETY: handles from `load`, used while live and freed once at the end.
        unsafe {
            let (zoo, model) = load(addr, path, r#"{"measure_time": true}"#);
            for _ in 0..3 {
                predict(model, &jpeg);
            }
            let got = our_stats(model);
            let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "PythonPreprocessDuration_ms",
                    "CoreInferenceDuration_ms",
                    "CoreInputFrameSize_bytes",
                    "CorePostprocessDuration_ms",
                    "CorePreprocessDuration_ms",
                    "FrameTotalDuration_ms"
                ],
                "{addr}"
            );
            if addr == "@local" {
                // The core gets the model-sized RAW frame, as from PySDK's local client.
                let mut s = std::ptr::null_mut();
                check(dg_model_time_stats(model, &mut s));
                let v: Value = serde_json::from_str(&CStr::from_ptr(s).to_string_lossy()).unwrap();
                dg_string_free(s);
                assert_eq!(v["CoreInputFrameSize_bytes"]["avg"].as_f64(), Some(320.0 * 320.0 * 3.0), "{v}");
            }
            if let Some(want) = &want {
                assert_eq!(&got, want, "{addr}: ours vs PySDK's (key, count)");
            }
            // Frames through the pipelined batch path are counted too.
            let (datas, lens) = ([jpeg.as_ptr(); 4], [jpeg.len(); 4]);
            let mut batch = std::ptr::null_mut();
            check(dg_predict_batch(model, datas.as_ptr(), lens.as_ptr(), 4, &mut batch));
            assert_eq!(dg_batch_count(batch), 4);
            dg_batch_free(batch);
            assert!(our_stats(model).iter().all(|(_, n)| *n == 7), "{addr}: {:?}", our_stats(model));
            // Reset empties the table; with measure_time off nothing is recorded.
            check(dg_model_reset_time_stats(model));
            assert!(our_stats(model).is_empty());
            check(dg_model_set_property(model, c"measure_time".as_ptr(), c"false".as_ptr()));
            predict(model, &jpeg);
            assert!(our_stats(model).is_empty(), "{addr}");
            // Switching it back on starts afresh.
            check(dg_model_set_property(model, c"measure_time".as_ptr(), c"true".as_ptr()));
            predict(model, &jpeg);
            assert!(our_stats(model).iter().all(|(_, n)| *n == 1), "{addr}");
            // NULL arguments are errors, not crashes.
            let mut s = std::ptr::null_mut();
            let e = dg_model_time_stats(std::ptr::null(), &mut s);
            assert!(!e.is_null() && s.is_null());
            dg_error_free(e);
            let e = dg_model_reset_time_stats(std::ptr::null());
            assert!(!e.is_null());
            dg_error_free(e);
            dg_model_free(model);
            dg_zoo_free(zoo);
        }
    }
}
