//! The OPENVINO/CPU agent against the real PySDK 1.5.0's OPENVINO agent (the peer, with
//! `scripts/setup-openvino-peer.sh`): OPENVINO copies of the shared zoo's ONNX models
//! (EfficientNet-Lite0, YOLOv8n), PySDK's results in f32 and in OpenVINO's default precision
//! (bf16 on this CPU) computed at test time (cached under the target dir, keyed by every input),
//! an IR model against its ONNX source, and the AI server serving an OPENVINO model.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const ONNX_MODELS: &[&str] = &["efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1", "yolov8n_nudenet--320x320_float_onnx_cpu_1"];

fn ov_name(onnx: &str) -> String {
    onnx.replace("_onnx_cpu_1", "_openvino_cpu_1")
}

fn required() -> bool {
    std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1")
}

/// Whether dgzoo's OPENVINO runtime loads here (a failure when required, else SKIP).
fn openvino(test: &str) -> bool {
    match dgzoo::runtime::agent("OPENVINO") {
        Ok(_) => true,
        Err(e) if required() => panic!("{test}: {}", e.message),
        Err(e) => {
            eprintln!("SKIP {test}: {}", e.message);
            false
        }
    }
}

/// The PySDK peer with its OPENVINO agent made loadable (both precisions).
fn ov_peer(test: &str) -> Option<PathBuf> {
    let peer = peer(test)?;
    if peer.join("ov-2025.3/libopenvino.so.2530").exists() && peer.join("ov-2025.3-f32/plugins.xml").exists() {
        return Some(peer);
    }
    if required() {
        panic!("{test}: {} has no ov-2025.3 (run scripts/setup-openvino-peer.sh)", peer.display());
    }
    eprintln!("SKIP {test}: run scripts/setup-openvino-peer.sh for PySDK's OPENVINO agent");
    None
}

/// A zoo of OPENVINO copies of the ONNX models: the same files (symlinked), the config's
/// DEVICE changed as ../shared/spec/openvino-peer.md says.
fn ov_zoo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in ONNX_MODELS {
        let src = Path::new(SHARED_ZOO).join(m);
        let name = ov_name(m);
        let dst = dir.path().join(&name);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(&src).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "json") && f.file_name().to_string_lossy().starts_with(m) {
                let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap()).unwrap();
                cfg["DEVICE"] = json!([{"DeviceType": "CPU", "RuntimeAgent": "OPENVINO", "SupportedDeviceTypes": "OPENVINO/CPU"}]);
                std::fs::write(dst.join(format!("{name}.json")), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
            } else {
                std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
            }
        }
    }
    dir
}

fn sha256_of(files: &[PathBuf], extra: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    h.update(extra.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// PySDK's OPENVINO results (`{"openvino": .., "results": {model: {image: [..]}}}`) for the
/// OPENVINO zoo, in `precision` ("f32" or "default").
fn pysdk_goldens(peer: &Path, precision: &str) -> Value {
    let mut inputs = Vec::new();
    for m in ONNX_MODELS {
        let d = Path::new(SHARED_ZOO).join(m);
        inputs.push(d.join(format!("{m}.json")));
        inputs.push(d.join(format!("{m}.onnx")));
    }
    let zoo = ov_zoo();
    pysdk_run(peer, precision, zoo.path(), inputs)
}

/// PySDK's OPENVINO results for the models of `zoo`, computed once per set of inputs (the
/// golden maker, `inputs` (the model files), the images, the peer's OpenVINO) and cached.
fn pysdk_run(peer: &Path, precision: &str, zoo: &Path, mut inputs: Vec<PathBuf>) -> Value {
    let script = Path::new(env!("DGZOO_REPO")).join("scripts/openvino_goldens.py");
    let ov = peer.join(if precision == "f32" { "ov-2025.3-f32" } else { "ov-2025.3" });
    inputs.push(script.clone());
    inputs.push(script.with_file_name("test-zoo/pysdk_json.py"));
    inputs.push(ov.join("libopenvino_intel_cpu_plugin.so"));
    inputs.extend(IMAGES.iter().map(|i| image(i)));
    let key = sha256_of(&inputs, &format!("{precision} {}", std::fs::read_to_string(ov.join("plugins.xml")).unwrap_or_default()));
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openvino-goldens");
    let cached = cache.join(format!("{}-{precision}.json", &key[..16]));
    if let Ok(s) = std::fs::read_to_string(&cached) {
        if let Ok(v) = serde_json::from_str::<Value>(&s) {
            return v;
        }
    }
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out.json");
    let run = std::process::Command::new(peer.join("venv/bin/python"))
        .arg(&script)
        .arg(zoo)
        .arg(Path::new(SHARED_ZOO).join("images"))
        .arg(&out)
        .args(IMAGES)
        .env("LD_LIBRARY_PATH", format!("{}:{}", ov.display(), peer_ld_path(peer)))
        // A scratch HOME: PySDK's own OpenVINO blob cache and traces stay out of the way.
        .env("HOME", home.path())
        .output()
        .expect("run the PySDK golden maker");
    assert!(
        run.status.success(),
        "PySDK golden maker ({precision}) failed: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = cache.join(format!("{}.{}.part", &key[..16], std::process::id()));
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, &cached).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ours(zoo: &Zoo, model: &str, props: &Value) -> Value {
    let m = zoo.load_model(model, props).unwrap_or_else(|e| panic!("load {model}: {e}"));
    let mut out = serde_json::Map::new();
    for img in IMAGES {
        let bytes = std::fs::read(image(img)).unwrap();
        let r = predict(&m, &[Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{model} on {img}: {e}"));
        out.insert(img.to_string(), Value::Array(r.results));
    }
    Value::Object(out)
}

const F32: &str = r#"{"extra_device_params": {"INFERENCE_PRECISION_HINT": "f32"}}"#;

/// Largest score and box differences between two result lists of one image, results paired
/// by position where the labels agree (a label mismatch or count mismatch is `None`).
fn gap(a: &[Value], b: &[Value]) -> (f64, f64, bool) {
    let mut same = a.len() == b.len();
    let (mut ds, mut db) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        same &= x["label"] == y["label"] && x["category_id"] == y["category_id"];
        ds = ds.max((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs());
        if let (Some(p), Some(q)) = (x["bbox"].as_array(), y["bbox"].as_array()) {
            for (p, q) in p.iter().zip(q) {
                db = db.max((p.as_f64().unwrap() - q.as_f64().unwrap()).abs());
            }
        }
    }
    (ds, db, same)
}

#[test]
fn f32_matches_pysdk_f32() {
    let Some(peer) = ov_peer("f32_matches_pysdk_f32") else {
        return;
    };
    if !openvino("f32_matches_pysdk_f32") {
        return;
    }
    let want = pysdk_goldens(&peer, "f32");
    let dir = ov_zoo();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let props: Value = serde_json::from_str(F32).unwrap();
    let mut checked = 0;
    for m in ONNX_MODELS {
        let name = ov_name(m);
        let got = ours(&zoo, &name, &props);
        for img in IMAGES {
            let w = &want["results"][&name][img];
            compare(got[img].as_array().unwrap(), w, &format!("{name}/{img} f32")).unwrap();
            let (ds, db, _) = gap(got[img].as_array().unwrap(), w.as_array().unwrap());
            eprintln!("{name}/{img}: ours f32 vs PySDK f32: score {ds:.2e}, box {db:.2e} px");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

/// OpenVINO's default precision (bf16 on CPUs with bf16 units): ours against PySDK's, within
/// the gap PySDK's own default-vs-f32 results show (and never tighter than the f32 tolerance).
#[test]
fn default_precision_matches_pysdk_within_its_bf16_gap() {
    let Some(peer) = ov_peer("default_precision_matches_pysdk_within_its_bf16_gap") else {
        return;
    };
    if !openvino("default_precision_matches_pysdk_within_its_bf16_gap") {
        return;
    }
    let (f32s, defaults) = (pysdk_goldens(&peer, "f32"), pysdk_goldens(&peer, "default"));
    assert_eq!(
        defaults["openvino"][0]["INFERENCE_PRECISION_HINT"],
        dgzoo::zoo::local_system_info()["Devices"]["OPENVINO/CPU"][0]["INFERENCE_PRECISION_HINT"],
        "PySDK and dgzoo see the same default precision"
    );
    let dir = ov_zoo();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    for m in ONNX_MODELS {
        let name = ov_name(m);
        // PySDK's own precision gap over this model's images.
        let (mut gs, mut gb) = (0f64, 0f64);
        for img in IMAGES {
            let (ds, db, _) = gap(defaults["results"][&name][img].as_array().unwrap(), f32s["results"][&name][img].as_array().unwrap());
            gs = gs.max(ds);
            gb = gb.max(db);
        }
        eprintln!("{name}: PySDK default vs f32: score {gs:.2e}, box {gb:.2e} px");
        let got = ours(&zoo, &name, &Value::Null);
        for img in IMAGES {
            let w = defaults["results"][&name][img].as_array().unwrap();
            let (ds, db, same) = gap(got[img].as_array().unwrap(), w);
            eprintln!("{name}/{img}: ours default vs PySDK default: score {ds:.2e}, box {db:.2e} px");
            assert!(same, "{name}/{img}: labels differ from PySDK's default precision: got {} want {}", got[img], Value::Array(w.to_vec()));
            assert!(ds <= gs.max(1e-4), "{name}/{img}: score gap {ds} beyond PySDK's own {gs}");
            assert!(db <= gb.max(0.5), "{name}/{img}: box gap {db} beyond PySDK's own {gb}");
        }
    }
}

/// OpenVINO IR (converted from the ONNX file by OpenVINO's own converter, with a dynamic batch
/// dimension) gives the ONNX model's results.
#[test]
fn ir_model_matches_its_onnx_source() {
    let Some(peer) = ov_peer("ir_model_matches_its_onnx_source") else {
        return;
    };
    if !openvino("ir_model_matches_its_onnx_source") {
        return;
    }
    let dir = ov_zoo();
    let m = ONNX_MODELS[0];
    let name = ov_name(m);
    let ir_name = name.replace("_openvino_", "_openvinoir_");
    let ir_dir = dir.path().join(&ir_name);
    std::fs::create_dir(&ir_dir).unwrap();
    let xml = ir_dir.join(format!("{ir_name}.xml"));
    let conv = std::process::Command::new(peer.join("ovvenv/bin/ovc"))
        .arg(Path::new(SHARED_ZOO).join(m).join(format!("{m}.onnx")))
        .args(["--input", "input[?,3,224,224]", "--compress_to_fp16=False", "--output_model"])
        .arg(&xml)
        .output()
        .expect("run ovc");
    assert!(conv.status.success(), "ovc failed: {}", String::from_utf8_lossy(&conv.stderr));
    assert!(ir_dir.join(format!("{ir_name}.bin")).is_file());
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(&name).join(format!("{name}.json"))).unwrap()).unwrap();
    cfg["MODEL_PARAMETERS"][0]["ModelPath"] = json!(format!("{ir_name}.xml"));
    // The config's Checksum is the SHA-256 of the file ModelPath names (checked at load).
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(&xml).unwrap());
    cfg["Checksum"] = json!(digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(ir_dir.join(format!("{ir_name}.json")), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::os::unix::fs::symlink(Path::new(SHARED_ZOO).join(m).join("labels_ImageNet.json"), ir_dir.join("labels_ImageNet.json")).unwrap();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let props: Value = serde_json::from_str(F32).unwrap();
    let onnx = ours(&zoo, &name, &props);
    let ir = ours(&zoo, &ir_name, &props);
    for img in IMAGES {
        compare(ir[img].as_array().unwrap(), &onnx[img], &format!("IR vs ONNX {img}")).unwrap();
    }
    // The dynamic batch dimension shows in the engine's input description.
    let model = zoo.load_model(&ir_name, &props).unwrap();
    let info = dgzoo::runtime::agent("OPENVINO").unwrap().load(&xml, &Default::default()).unwrap();
    assert_eq!(info.inputs()[0].shape, vec![-1, 3, 224, 224]);
    drop(model);
}

/// System info lists OPENVINO/CPU (with OpenVINO's version) exactly when the runtime loads,
/// and the OPENVINO zoo lists its models.
#[test]
fn system_info_and_list_models_show_openvino() {
    let info = dgzoo::zoo::local_system_info();
    let loads = dgzoo::runtime::agent("OPENVINO").is_ok();
    assert_eq!(info["Devices"].get("OPENVINO/CPU").is_some(), loads, "{info}");
    if !openvino("system_info_and_list_models_show_openvino") {
        return;
    }
    let cpu = &info["Devices"]["OPENVINO/CPU"][0];
    assert_eq!(cpu["@Index"], 0);
    assert!(cpu["VERSION"].as_str().unwrap().starts_with("2025.3"), "{cpu}");
    assert!(cpu["FULL_DEVICE_NAME"].as_str().is_some_and(|s| !s.is_empty()), "{cpu}");
    // GPU/NPU only when OpenVINO sees them (this machine has neither).
    let visible_gpu = Path::new("/dev/dri").exists();
    assert!(info["Devices"].get("OPENVINO/GPU").is_none() || visible_gpu);
    let dir = ov_zoo();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let names = zoo.list_names(&Filters::default()).unwrap();
    assert_eq!(names, ONNX_MODELS.iter().map(|m| ov_name(m)).collect::<Vec<_>>());
    let f = Filters::from_json(&json!({"runtime": "OPENVINO"})).unwrap();
    assert_eq!(zoo.list_names(&f).unwrap().len(), 2);
    let f = Filters::from_json(&json!({"device_type": ["OPENVINO/CPU"]})).unwrap();
    assert_eq!(zoo.list_names(&f).unwrap().len(), 2);
}

/// `dgzoo server` serves an OPENVINO model: our client over asio, RAW frames, gets the local
/// results.
#[test]
fn ai_server_serves_an_openvino_model() {
    if !openvino("ai_server_serves_an_openvino_model") {
        return;
    }
    let dir = ov_zoo();
    let server = start_server(dir.path(), dgzoo_server::aiserver::Protocol::Asio);
    let name = ov_name(ONNX_MODELS[1]);
    let local = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let props: Value = serde_json::from_str(F32).unwrap();
    let want = ours(&local, &name, &props);
    let remote = Zoo::connect(&format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), "", "").unwrap();
    assert!(remote.system_info()["Devices"].get("OPENVINO/CPU").is_some());
    let mut rprops = props.clone();
    rprops["input_image_format"] = json!("RAW");
    let got = ours(&remote, &name, &rprops);
    for img in IMAGES {
        compare(got[img].as_array().unwrap(), &want[img], &format!("server {name}/{img}")).unwrap();
    }
}

/// A batch (frames overlapping on the engine's shared compiled model, one infer request per
/// frame in flight) gives each frame's single-frame result, in order.
#[test]
fn batch_gives_the_single_frame_results_in_order() {
    if !openvino("batch_gives_the_single_frame_results_in_order") {
        return;
    }
    let dir = ov_zoo();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let props: Value = serde_json::from_str(F32).unwrap();
    for m in ONNX_MODELS {
        let name = ov_name(m);
        let single = ours(&zoo, &name, &props);
        let model = zoo.load_model(&name, &props).unwrap();
        let frames: Vec<_> = (0..9).map(|i| vec![dgzoo::pipeline::OwnedInput::Bytes(std::fs::read(image(IMAGES[i % 3])).unwrap())]).collect();
        let out = dgzoo::pipeline::predict_batch(&model, frames).unwrap();
        assert_eq!(out.len(), 9);
        for (i, r) in out.into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("{name} frame {i}: {e}"));
            compare(&r.results, &single[IMAGES[i % 3]], &format!("{name} batch frame {i}")).unwrap();
        }
    }
}

/// A model file OpenVINO cannot read gives a clear error naming OpenVINO and the file, and
/// the runtime stays usable.
#[test]
fn a_broken_model_file_gives_a_clear_error() {
    if !openvino("a_broken_model_file_gives_a_clear_error") {
        return;
    }
    let dir = ov_zoo();
    let name = ov_name(ONNX_MODELS[0]);
    let d = dir.path().join(&name);
    let onnx = d.join(format!("{}.onnx", ONNX_MODELS[0]));
    std::fs::remove_file(&onnx).unwrap();
    std::fs::write(&onnx, b"not an onnx model").unwrap();
    let cfg_path = d.join(format!("{name}.json"));
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"not an onnx model");
    cfg["Checksum"] = json!(digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let model = zoo.load_model(&name, &Value::Null).unwrap();
    let img = std::fs::read(image("cat_224.jpg")).unwrap();
    let e = predict(&model, &[Input::Bytes(&img)]).unwrap_err();
    assert!(e.message.contains("OpenVINO cannot load model"), "{e}");
    assert!(e.message.contains(".onnx"), "{e}");
    // The other model still runs.
    let other = zoo.load_model(&ov_name(ONNX_MODELS[1]), &Value::Null).unwrap();
    predict(&other, &[Input::Bytes(&img)]).unwrap();
}

const PYSDK_CLIENT: &str = r#"
import json, sys
import degirum as dg
addr, images_dir, name = sys.argv[1], sys.argv[2], sys.argv[3]
zoo = dg.connect(addr, "", "")
out = {"names": zoo.list_models(), "devices": sorted(zoo.system_info()["Devices"].keys())}
m = zoo.load_model(name, input_image_format="RAW", extra_device_params={"INFERENCE_PRECISION_HINT": "f32"})
out["device_type"] = m.device_type
out["results"] = {img: m.predict(images_dir + "/" + img).results for img in sys.argv[4:]}
print("RESULT-JSON " + json.dumps(out))
"#;

/// The real PySDK client through `dgzoo server` (asio) on an OPENVINO model gets our local
/// results (f32 asked for through `extra_device_params`, RAW frames).
#[test]
fn pysdk_client_runs_an_openvino_model_on_our_server() {
    let Some(peer) = peer("pysdk_client_runs_an_openvino_model_on_our_server") else {
        return;
    };
    if !openvino("pysdk_client_runs_an_openvino_model_on_our_server") {
        return;
    }
    let dir = ov_zoo();
    let server = start_server(dir.path(), dgzoo_server::aiserver::Protocol::Asio);
    let name = ov_name(ONNX_MODELS[0]);
    let local = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let want = ours(&local, &name, &serde_json::from_str(F32).unwrap());
    let script = dir.path().join("client.py");
    std::fs::write(&script, PYSDK_CLIENT).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(peer.join("venv/bin/python"))
        .arg(&script)
        .arg(format!("127.0.0.1:{}", server.asio_addr().unwrap().port()))
        .arg(Path::new(SHARED_ZOO).join("images"))
        .arg(&name)
        .args(IMAGES)
        .env("HOME", home.path())
        .output()
        .expect("run the PySDK client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT-JSON "))
        .unwrap_or_else(|| panic!("PySDK client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let got: Value = serde_json::from_str(line).unwrap();
    assert_eq!(got["device_type"], "OPENVINO/CPU");
    assert!(got["devices"].as_array().unwrap().contains(&json!("OPENVINO/CPU")));
    assert_eq!(got["names"], json!(ONNX_MODELS.iter().map(|m| ov_name(m)).collect::<Vec<_>>()));
    for img in IMAGES {
        compare(got["results"][img].as_array().unwrap(), &want[img], &format!("PySDK client {name}/{img}")).unwrap();
    }
}

/// Changing `extra_device_params` on a loaded model recompiles it: OpenVINO's default
/// precision (bf16 on this CPU) gives other scores than f32, and f32 gives the ONNX/CPU golden
/// results of the shared zoo (PySDK's ONNX Runtime agent) within 1e-4.
#[test]
fn extra_device_params_change_the_precision_of_a_loaded_model() {
    if !openvino("extra_device_params_change_the_precision_of_a_loaded_model") {
        return;
    }
    let dir = ov_zoo();
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let name = ov_name(ONNX_MODELS[0]);
    let model = zoo.load_model(&name, &Value::Null).unwrap();
    let img = std::fs::read(image("cat_224.jpg")).unwrap();
    let default = predict(&model, &[Input::Bytes(&img)]).unwrap().results;
    model.set_property("extra_device_params", &json!({"INFERENCE_PRECISION_HINT": "f32"})).unwrap();
    assert_eq!(model.get_property("extra_device_params").unwrap(), json!({"INFERENCE_PRECISION_HINT": "f32"}));
    let f32 = predict(&model, &[Input::Bytes(&img)]).unwrap().results;
    compare(&f32, &golden(ONNX_MODELS[0], "cat_224.jpg"), "f32 vs ONNX/CPU golden").unwrap();
    let precision = dgzoo::zoo::local_system_info()["Devices"]["OPENVINO/CPU"][0]["INFERENCE_PRECISION_HINT"].clone();
    let (ds, _, _) = gap(&default, &f32);
    if precision == "bf16" {
        assert!(ds > 1e-3, "bf16 and f32 gave the same scores ({ds}): the setting did not apply");
    } else {
        eprintln!("default precision here is {precision}: score gap to f32 {ds}");
    }
}

/// EfficientNet-Lite0 quantised to int8 QDQ ONNX by ONNX Runtime's static quantiser
/// (scripts/make_qdq_model.py, calibrated on the three images), made once per set of inputs.
fn qdq_model(peer: &Path) -> PathBuf {
    let m = ONNX_MODELS[0];
    let src = Path::new(SHARED_ZOO).join(m).join(format!("{m}.onnx"));
    let script = Path::new(env!("DGZOO_REPO")).join("scripts/make_qdq_model.py");
    let mut inputs = vec![src.clone(), script.clone()];
    inputs.extend(IMAGES.iter().map(|i| image(i)));
    let key = sha256_of(&inputs, "224 127 128");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openvino-qdq");
    let out = dir.join(format!("{}.onnx", &key[..16]));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!("{}.{}.part.onnx", &key[..16], std::process::id()));
    let run = std::process::Command::new(peer.join("ovvenv/bin/python"))
        .arg(&script)
        .arg(&src)
        .arg(&tmp)
        .args(["224", "127", "128"])
        .args(IMAGES.iter().map(|i| image(i)))
        .output()
        .expect("run make_qdq_model.py");
    assert!(run.status.success(), "make_qdq_model.py failed: {}", String::from_utf8_lossy(&run.stderr));
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Results sorted by score, then class id: exactly tied int8 scores come in an order of their
/// own on each side (PySDK puts the higher class id first).
fn tie_order(v: &[Value]) -> Vec<Value> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| {
        let (sa, sb) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        sb.partial_cmp(&sa).unwrap().then(a["category_id"].as_i64().cmp(&b["category_id"].as_i64()))
    });
    v
}

/// An int8 QDQ ONNX model on OPENVINO: PySDK's OPENVINO agent's results (int8 kernels, so the
/// default precision and f32 agree), scores within 1e-4.
#[test]
fn int8_qdq_model_matches_pysdk() {
    let Some(peer) = ov_peer("int8_qdq_model_matches_pysdk") else {
        return;
    };
    if !openvino("int8_qdq_model_matches_pysdk") {
        return;
    }
    let qdq = qdq_model(&peer);
    let float = ONNX_MODELS[0];
    let name = "efficientnet_lite0_imagenet--224x224_quant_openvino_cpu_1";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::symlink(&qdq, d.join(format!("{name}.onnx"))).unwrap();
    std::os::unix::fs::symlink(Path::new(SHARED_ZOO).join(float).join("labels_ImageNet.json"), d.join("labels_ImageNet.json")).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(SHARED_ZOO).join(float).join(format!("{float}.json"))).unwrap()).unwrap();
    cfg["DEVICE"] = json!([{"DeviceType": "CPU", "RuntimeAgent": "OPENVINO", "SupportedDeviceTypes": "OPENVINO/CPU"}]);
    cfg["MODEL_PARAMETERS"][0]["ModelPath"] = json!(format!("{name}.onnx"));
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(&qdq).unwrap());
    cfg["Checksum"] = json!(digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(d.join(format!("{name}.json")), cfg.to_string()).unwrap();
    let want = pysdk_run(&peer, "default", dir.path(), vec![qdq.clone()]);
    let zoo = Zoo::connect("@local", dir.path().to_str().unwrap(), "").unwrap();
    let got = ours(&zoo, name, &Value::Null);
    let float_got = ours(&zoo, name, &serde_json::from_str(F32).unwrap());
    for img in IMAGES {
        let w = Value::Array(tie_order(want["results"][name][img].as_array().unwrap()));
        compare(&tie_order(got[img].as_array().unwrap()), &w, &format!("int8 {img}")).unwrap();
        compare(&tie_order(float_got[img].as_array().unwrap()), &w, &format!("int8 f32-hint {img}")).unwrap();
        let (ds, _, _) = gap(got[img].as_array().unwrap(), w.as_array().unwrap());
        eprintln!("int8 QDQ {img}: ours vs PySDK: score {ds:.2e}");
    }
}

/// The hub's cloud inference (`@cloud`, socket.io) runs an OPENVINO model on the hub's local
/// OpenVINO and gives the local results.
#[test]
fn hub_cloud_inference_runs_an_openvino_model() {
    if !openvino("hub_cloud_inference_runs_an_openvino_model") {
        return;
    }
    let (org, zoo_name, token) = ("myorg", "ovzoo", "dg_test_token_ov");
    let models = ov_zoo();
    let name = ov_name(ONNX_MODELS[1]);
    // A real copy of the model folder (the zoo's files are symlinks).
    let src = tempfile::tempdir().unwrap();
    let mdir = src.path().join(&name);
    std::fs::create_dir(&mdir).unwrap();
    for f in std::fs::read_dir(models.path().join(&name)).unwrap().flatten() {
        std::fs::copy(f.path(), mdir.join(f.file_name())).unwrap();
    }
    let root = tempfile::tempdir().unwrap();
    let zdir = root.path().join(org).join(zoo_name);
    std::fs::create_dir_all(&zdir).unwrap();
    dgzoo::cache::archive::pack_model(&mdir, &zdir.join(format!("{name}.zip"))).unwrap();
    std::fs::write(root.path().join("tokens.json"), format!(r#"{{"{token}": {{"is_admin": false, "zoos": ["{org}/{zoo_name}"]}}}}"#)).unwrap();
    let mut cfg = dgzoo_server::hub::HubConfig::new(root.path());
    cfg.port = 0;
    let hub = dgzoo_server::hub::Hub::start(&cfg).expect("hub starts");
    let cache = tempfile::tempdir().unwrap();
    let opts = dgzoo::zoo::ConnectOptions {
        cache: Some(dgzoo::cache::CacheConfig { root: cache.path().to_path_buf(), limit: dgzoo::cache::DEFAULT_LIMIT, offline: false }),
        offline: None,
        ..Default::default()
    };
    let url = format!("http://{}/{org}/{zoo_name}", hub.addr());
    let cloud = Zoo::connect_with("@cloud", &url, token, &opts).unwrap();
    let props: Value = serde_json::from_str(F32).unwrap();
    let mut rprops = props.clone();
    rprops["input_image_format"] = json!("RAW");
    let got = ours(&cloud, &name, &rprops);
    let local = Zoo::connect("@local", models.path().to_str().unwrap(), "").unwrap();
    let want = ours(&local, &name, &props);
    for img in IMAGES {
        compare(got[img].as_array().unwrap(), &want[img], &format!("hub {name}/{img}")).unwrap();
    }
}
