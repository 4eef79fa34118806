//! Post-processing families against the real PySDK 1.5.0: YOLO NMS candidates at low
//! thresholds (run live), and every model of the extended family zoo
//! (`scripts/make-test-zoo.sh`, `$DGZOO_FAMILY_ZOO`) against its PySDK goldens.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;

use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn peer() -> Option<PathBuf> {
    let peer = std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("DGZOO_REPO")).join(".peer"));
    if peer.join("venv/bin/python").exists() {
        return Some(peer);
    }
    if std::env::var_os("DGZOO_REQUIRE_PEER").is_some() {
        panic!("the PySDK peer is required (DGZOO_REQUIRE_PEER) but {} is missing: run scripts/setup-peer.sh", peer.display());
    }
    eprintln!("SKIP: no PySDK peer at {} (scripts/setup-peer.sh)", peer.display());
    None
}

fn shared() -> PathBuf {
    Path::new(env!("DGZOO_REPO")).join("../shared/zoo").canonicalize().expect("../shared/zoo must exist beside the repo")
}

/// Run `script` with PySDK's python (ONNX Runtime 1.20.1 on the library path); its stdout is JSON.
fn pysdk(peer: &Path, script: &str, args: &[&str]) -> Value {
    let ort = peer.join("ort");
    let out = Command::new(peer.join("venv/bin/python")).arg("-c").arg(script).args(args).env("LD_LIBRARY_PATH", &ort).output().expect("run PySDK");
    assert!(out.status.success(), "PySDK failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("PySDK output: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Compare detection-like results: labels and ids exactly, scores 1e-4, coordinates 0.5 px.
fn assert_close(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of results\n got {got:?}\nwant {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        cmp(g, w, &format!("{what}[{i}]"));
    }
    assert_masks(got, want, what);
}

fn cmp(g: &Value, w: &Value, path: &str) {
    match (g, w) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            assert_eq!(ka, kb, "{path}: keys");
            for (k, v) in b {
                if k == "mask" {
                    cmp_mask(&a[k], v, &format!("{path}.mask"));
                    continue;
                }
                let tol = if k == "score" || k == "handedness" || k == "angle" { 1e-4 } else { 0.5 };
                cmp_tol(&a[k], v, &format!("{path}.{k}"), tol);
            }
        }
        _ => cmp_tol(g, w, path, 0.5),
    }
}

/// Instance masks (`SegmentationYoloV8`, numpy JSON form): the same origin and shape; the
/// pixels are counted by [`assert_masks`].
fn cmp_mask(g: &Value, w: &Value, path: &str) {
    assert_eq!((&g["x_min"], &g["y_min"]), (&w["x_min"], &w["y_min"]), "{path}: origin");
    assert_eq!(g["data"]["shape"], w["data"]["shape"], "{path}: shape");
}

/// The instance masks of one frame: every pixel equal to PySDK's within 1e-5 (float32 bilinear
/// weights); the message gives the worst single mask's share.
fn assert_masks(got: &[Value], want: &[Value], what: &str) {
    let (mut same, mut total, mut worst) = (0usize, 0usize, 1f64);
    for (g, w) in got.iter().zip(want) {
        let (Some(gm), Some(wm)) = (g.get("mask"), w.get("mask")) else { continue };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flatten(&gm["data"]["data"], &mut a);
        flatten(&wm["data"]["data"], &mut b);
        assert_eq!(a.len(), b.len(), "{what}: mask pixels");
        let s = a.iter().zip(&b).filter(|(x, y)| (*x - *y).abs() <= 1e-5).count();
        if !b.is_empty() {
            worst = worst.min(s as f64 / b.len() as f64);
        }
        same += s;
        total += b.len();
    }
    assert!(same == total, "{what}: only {same} of {total} mask pixels equal (worst mask {worst:.4})");
}

fn cmp_tol(g: &Value, w: &Value, path: &str, tol: f64) {
    match (g, w) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{path}: {a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                cmp_tol(x, y, &format!("{path}[{i}]"), tol);
            }
        }
        (Value::Object(_), Value::Object(_)) => cmp(g, w, path),
        _ => assert_eq!(g, w, "{path}"),
    }
}

/// PySDK's default (regular, per-class) NMS takes every (anchor, class) pair above the
/// threshold as a candidate; the fast mode is class-agnostic. Below the default threshold
/// the two differ from "top class per anchor" (car_416.jpg: 5 boxes at 0.1, 14 at 0.01).
#[test]
fn yolo_nms_candidates_match_pysdk_at_low_thresholds() {
    let Some(peer) = peer() else { return };
    let name = "yolov8n_nudenet--320x320_float_onnx_cpu_1";
    let tmp = tempfile::tempdir().unwrap();
    for regular in [true, false] {
        let dir = tmp.path().join(format!("zoo_{regular}")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(shared().join(name)).unwrap() {
            let f = f.unwrap().path();
            let dst = dir.join(f.file_name().unwrap());
            if f.extension().is_some_and(|e| e == "json") && f.file_name().unwrap().to_str().unwrap().starts_with(name) {
                let mut cfg: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
                cfg["POST_PROCESS"][0]["UseRegularNMS"] = json!(regular);
                std::fs::write(dst, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
            } else {
                std::os::unix::fs::symlink(&f, dst).unwrap();
            }
        }
        let zoo_dir = dir.parent().unwrap().to_str().unwrap().to_string();
        let img = shared().join("images/car_416.jpg");
        let want = pysdk(
            &peer,
            r#"
import degirum as dg, json, sys
zoo = dg.connect(dg.LOCAL, sys.argv[1])
out = {}
for thr in (0.1, 0.01):
    m = zoo.load_model(sys.argv[2], output_confidence_threshold=thr, input_image_format="RAW")
    out[str(thr)] = m(sys.argv[3]).results
print(json.dumps(out))
"#,
            &[&zoo_dir, name, img.to_str().unwrap()],
        );
        let zoo = Zoo::connect("@local", &zoo_dir, "").unwrap();
        let bytes = std::fs::read(&img).unwrap();
        for thr in [0.1, 0.01] {
            let model = zoo.load_model(name, &json!({"output_confidence_threshold": thr})).unwrap();
            let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap();
            let w = want[thr.to_string()].as_array().unwrap();
            assert_close(&got.results_inline(), w, &format!("UseRegularNMS={regular} threshold {thr}"));
        }
        if regular {
            assert_eq!((want["0.1"].as_array().unwrap().len(), want["0.01"].as_array().unwrap().len()), (5, 14), "PySDK's own counts");
        }
    }
}

/// The extended family zoo (`scripts/make-test-zoo.sh`), when `$DGZOO_FAMILY_ZOO` names it.
fn family_zoo() -> Option<PathBuf> {
    match std::env::var_os("DGZOO_FAMILY_ZOO") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("DGZOO_REQUIRE_PEER").is_some() => {
            panic!("DGZOO_FAMILY_ZOO is not set (scripts/test.sh builds it with scripts/make-test-zoo.sh)")
        }
        None => {
            eprintln!("SKIP: DGZOO_FAMILY_ZOO is not set (scripts/make-test-zoo.sh DIR)");
            None
        }
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// One family model of the extended zoo on every shared image against PySDK's goldens.
fn check_family(model_name: &str) {
    let Some(root) = family_zoo() else { return };
    let zoo = Zoo::connect("@local", root.to_str().unwrap(), "").unwrap();
    let model = zoo.load_model(model_name, &Value::Null).unwrap_or_else(|e| panic!("{model_name}: {e}"));
    let mut total = 0;
    for img in ["cat_224", "car_416", "girls_256"] {
        let want = read_json(&root.join(format!("expected/{model_name}/{img}.json")));
        let bytes = std::fs::read(shared().join(format!("images/{img}.jpg"))).unwrap();
        let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{model_name} on {img}: {e}"));
        let want = want["results"].as_array().unwrap();
        let what = format!("{model_name}/{img}");
        if want.iter().any(|w| w["data"].get("__ndarray__").is_some()) {
            assert_raw_close(&got, want, &what);
        } else {
            assert_close(&got.results_inline(), want, &what);
        }
        total += want.len();
    }
    assert!(total > 0, "{model_name}: the goldens must carry results");
}

/// Raw-tensor results (PySDK's local core passes them on for some families): values within
/// 1e-4, and the tensor dict's keys as PySDK's.
fn assert_raw_close(got: &dgzoo::inference::InferenceResult, want: &[Value], what: &str) {
    assert_eq!(got.results.len(), want.len(), "{what}: number of tensors");
    for (i, (g, w)) in got.results.iter().zip(want).enumerate() {
        let nd = &w["data"];
        let t = &got.tensors[g["data"]["__tensor__"].as_u64().unwrap() as usize];
        assert_eq!(json!(t.info.shape), nd["shape"], "{what}[{i}]: shape");
        let mut flat = Vec::new();
        flatten(&nd["data"], &mut flat);
        let vals = dgzoo::postprocess::dequantize(t);
        assert_eq!(vals.len(), flat.len(), "{what}[{i}]: size");
        let worst = vals.iter().zip(&flat).map(|(&a, b)| (a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-4, "{what}[{i}]: raw tensor differs by {worst}");
        for k in ["id", "name", "shape", "size", "type"] {
            assert_eq!(g[k], w[k], "{what}[{i}].{k}");
        }
        // Numerically (1 and 1.0 are the same scale; the wire may carry either).
        cmp_tol(&g["quantization"], &w["quantization"], &format!("{what}[{i}].quantization"), 1e-9);
    }
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        _ => panic!("unexpected value in ndarray data"),
    }
}

#[test]
fn yolov5_anchor_heads() {
    check_family("yolov5_anchors--64x64_float_onnx_cpu_1");
}

#[test]
fn yolov8_obb_heads() {
    check_family("yolov8_obb_heads--64x64_float_onnx_cpu_1");
}

#[test]
fn yolov8_pose_heads() {
    check_family("yolov8_pose_heads--64x64_float_onnx_cpu_1");
}

#[test]
fn yolo_hailo_nms_by_class() {
    check_family("yolo_hailo--64x64_float_onnx_cpu_1");
}

#[test]
fn yolov10() {
    check_family("yolov10--64x64_float_onnx_cpu_1");
}

#[test]
fn yolov8_pose() {
    check_family("yolov8_pose--64x64_float_onnx_cpu_1");
}

#[test]
fn semantic_segmentation() {
    check_family("semantic_seg--64x64_float_onnx_cpu_1");
}

#[test]
fn multi_label_classification() {
    check_family("multilabel--64x64_float_onnx_cpu_1");
}

/// SSD `Detection`: uint8 box encodings and class logits, float anchors, by tensor id.
#[test]
fn ssd_detection_with_anchors() {
    check_family("ssd_quant--64x64_float_onnx_cpu_1");
}

/// `HandDetection`: 21 landmarks with z and world landmarks, by tensor id; one image under the threshold.
#[test]
fn hand_landmarks() {
    check_family("hand_landmarks--64x64_float_onnx_cpu_1");
}

/// `DetectionDamoYolo`: flattened `[1, N, C]` class logits and side distances (`OutputYoloRegMax` 1).
#[test]
fn damoyolo_heads() {
    check_family("damoyolo--64x64_float_onnx_cpu_1");
}

/// `DetectionYoloV8Plates`: the characters found read left to right into one label (one image finds none).
#[test]
fn yolov8_plates() {
    check_family("yolov8_plates--64x64_float_onnx_cpu_1");
}

/// Instance masks: the core's run-length masks cut to the box, resized into the image by the
/// client (PySDK's float masks; 99.5% of pixels, boxes 0.5 px, scores 1e-4).
#[test]
fn yolov8_segmentation_heads() {
    check_family("yolov8_seg_heads--64x64_float_onnx_cpu_1");
}

#[test]
fn yolov8_separate_heads_with_dfl() {
    check_family("yolov8_dfl_heads--64x64_float_onnx_cpu_1");
}

/// uint8-quantised TFLite variants of the YOLOv8 detection, pose and segmentation heads and of
/// SSD (each tensor its own scale and non-zero zero point, dequantised by the decoders as PySDK
/// does). Their outputs are constants (no TFLite arithmetic), so PySDK's float tolerances apply.
#[test]
fn quantised_tflite_variants() {
    for m in [
        "yolov8_dfl_heads--64x64_quant_tflite_cpu_1",
        "yolov8_pose_heads--64x64_quant_tflite_cpu_1",
        "yolov8_seg_heads--64x64_quant_tflite_cpu_1",
        "ssd_quant--64x64_quant_tflite_cpu_1",
    ] {
        check_family(m);
    }
}

/// A known type whose outputs do not fit: a clear error naming the model, the type and the
/// tensor (no panic, no silently empty result), and the model keeps working afterwards.
#[test]
fn mismatched_outputs_give_clear_errors_and_the_model_stays_usable() {
    let Some(root) = family_zoo() else { return };
    let zoo = Zoo::connect("@local", root.to_str().unwrap(), "").unwrap();
    let bytes = std::fs::read(shared().join("images/cat_224.jpg")).unwrap();
    let name = "yolov8_dfl_heads--64x64_float_onnx_cpu_1";
    for (kind, tensor) in [
        ("DetectionYoloV10", "one output tensor"),
        ("PoseDetectionYoloV8", "keypoint"),
        ("Segmentation", "one element"),
        ("DetectionYolo", "OutputYoloAnchors"),
        ("Detection", "PostProcessorInputs"),
        ("HandDetection", "PostProcessorInputs"),
        ("SegmentationYoloV8", "prototype"),
    ] {
        let model = zoo.load_model(name, &json!({"output_postprocess_type": kind})).unwrap();
        let err = predict(&model, &[Input::Bytes(&bytes)]).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(tensor), "{kind}: {err}");
        if kind != "Segmentation" {
            assert!(err.contains(kind), "{kind}: {err}");
        }
        model.set_property("output_postprocess_type", &json!("DetectionYoloV8")).unwrap();
        assert!(!predict(&model, &[Input::Bytes(&bytes)]).unwrap().results.is_empty(), "{kind}: the model works again");
    }
    let model = zoo.load_model("yolov10--64x64_float_onnx_cpu_1", &json!({"output_postprocess_type": "DetectionYoloV8"})).unwrap();
    let err = predict(&model, &[Input::Bytes(&bytes)]).unwrap_err().to_string();
    assert!(err.contains("DetectionYoloV8") && err.contains("[1, 16, 6]"), "{err}");
}

/// Every family model of the extended zoo through our AI server (asio), RAW frames: the
/// server post-processes, the client maps coordinates; the same PySDK goldens.
#[test]
fn families_through_our_ai_server() {
    let Some(root) = family_zoo() else { return };
    let mut cfg = dgzoo_server::aiserver::Config::new(&root);
    cfg.port = 0;
    cfg.protocol = dgzoo_server::aiserver::Protocol::Asio;
    cfg.quiet = true;
    let server = dgzoo_server::aiserver::Server::start(cfg).expect("server starts");
    let addr = format!("127.0.0.1:{}", server.asio_addr().unwrap().port());
    check_server_zoo(&root, &addr, "our AI server");
}

/// PySDK's `output_class_set` filter keeps only dicts whose label (string set) or category_id
/// (int set) is in the set: other list elements are dropped, not kept. The real PySDK filters
/// a list injected through a `custom_postprocessor` (its `output_class_set` runs on it).
#[test]
fn output_class_set_drops_non_dicts_as_pysdk() {
    let Some(peer) = peer() else { return };
    let Some(root) = family_zoo() else { return };
    let list = json!([{"label": "a", "category_id": 1}, 7, "x", {"label": "b", "category_id": 2}, {"score": 0.5}, [1]]);
    let img = shared().join("images/cat_224.jpg");
    for set in [json!(["a"]), json!([2])] {
        let want = pysdk(
            &peer,
            r#"
import degirum as dg, json, sys
from degirum.postprocessor import InferenceResults
class PP(InferenceResults):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._inference_results = json.loads(sys.argv[3])
zoo = dg.connect(dg.LOCAL, sys.argv[1])
m = zoo.load_model(sys.argv[2], input_image_format="RAW")
m.custom_postprocessor = PP
m.output_class_set = set(json.loads(sys.argv[4]))
print(json.dumps(m(sys.argv[5]).results))
"#,
            &[root.to_str().unwrap(), "yolov10--64x64_float_onnx_cpu_1", &list.to_string(), &set.to_string(), img.to_str().unwrap()],
        );
        let mut got = list.as_array().unwrap().clone();
        dgzoo::postprocess::filter_class_set(&mut got, set.as_array().unwrap());
        assert_eq!(Value::Array(got), want, "set {set}");
    }
}

/// Every family model through our hub's cloud inference (`@cloud`, socket.io): the hub
/// post-processes, the client maps coordinates; the same PySDK goldens.
#[test]
fn families_through_our_hub_cloud_inference() {
    let Some(root) = family_zoo() else { return };
    let hub_root = tempfile::tempdir().unwrap();
    let zdir = hub_root.path().join("myorg/myzoo");
    std::fs::create_dir_all(&zdir).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("--")).collect();
    names.sort();
    for m in &names {
        dgzoo::cache::archive::pack_model(&root.join(m), &zdir.join(format!("{m}.zip"))).unwrap();
    }
    let token = "dg_family_token";
    std::fs::write(hub_root.path().join("tokens.json"), format!(r#"{{"{token}": {{"is_admin": false, "zoos": ["myorg/myzoo"]}}}}"#)).unwrap();
    let mut cfg = dgzoo_server::hub::HubConfig::new(hub_root.path());
    cfg.port = 0;
    let hub = dgzoo_server::hub::Hub::start(&cfg).expect("hub start");
    let cache = tempfile::tempdir().unwrap();
    let opts = dgzoo::zoo::ConnectOptions {
        cache: Some(dgzoo::cache::CacheConfig { root: cache.path().to_path_buf(), limit: dgzoo::cache::DEFAULT_LIMIT, offline: false }),
        offline: None,
        ..Default::default()
    };
    let zoo = Zoo::connect_with("@cloud", &format!("http://{}/myorg/myzoo", hub.addr()), token, &opts).unwrap();
    assert_eq!(zoo.list_names(&Default::default()).unwrap().len(), names.len());
    for name in &names {
        let model = zoo.load_model(name, &json!({"input_image_format": "RAW"})).unwrap_or_else(|e| panic!("{name}: {e}"));
        for img in ["cat_224", "car_416", "girls_256"] {
            let want = read_json(&root.join(format!("expected/{name}/{img}.json")));
            let want = want["results"].as_array().unwrap();
            let bytes = std::fs::read(shared().join(format!("images/{img}.jpg"))).unwrap();
            let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{name} on {img} via the hub: {e}"));
            let what = format!("{name}/{img} via our hub");
            if want.iter().any(|w| w["data"].get("__ndarray__").is_some()) {
                assert_raw_close(&got, want, &what);
            } else {
                assert_close(&got.results_inline(), want, &what);
            }
        }
    }
}

/// dgzoo as the client of the real DeGirum AI server (PySDK 1.5.0's `degirum server`) on the
/// family zoo: DeGirum's core post-processes, dgzoo's client maps coordinates (landmarks,
/// angles, raw tensors); the results equal PySDK's local goldens.
#[test]
fn families_from_the_real_degirum_server() {
    let Some(peer) = peer() else { return };
    let Some(root) = family_zoo() else { return };
    let server = aiserver_common::start_peer_server(&peer, &root, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    check_server_zoo(&root, &addr, "DeGirum's server");
}

/// Every model of the family zoo served at `addr`, on the shared images, against PySDK's local goldens.
fn check_server_zoo(root: &std::path::Path, addr: &str, via: &str) {
    let zoo = Zoo::connect(addr, "", "").unwrap();
    let names = zoo.list_names(&dgzoo::zoo::filter::Filters::default()).unwrap();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let model = zoo.load_model(&name, &json!({"input_image_format": "RAW"})).unwrap();
        for img in ["cat_224", "car_416", "girls_256"] {
            let want = read_json(&root.join(format!("expected/{name}/{img}.json")));
            let want = want["results"].as_array().unwrap();
            let bytes = std::fs::read(shared().join(format!("images/{img}.jpg"))).unwrap();
            let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("{name} on {img} via {via} at {addr}: {e}"));
            let what = format!("{name}/{img} via {via}");
            if want.iter().any(|w| w["data"].get("__ndarray__").is_some()) {
                assert_raw_close(&got, want, &what);
            } else {
                assert_close(&got.results_inline(), want, &what);
            }
        }
    }
}

/// `overlay_color` defaults to PySDK's per-class palette for detection-like and segmentation
/// models (yellow for the others): every model of the family zoo and the shared zoo, and a
/// segmentation model with a "background" label, against the real PySDK's property.
#[test]
fn overlay_color_default_matches_pysdk() {
    let Some(peer) = peer() else { return };
    let Some(root) = family_zoo() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The semantic model with a "background" label at 2, and one with no labels (OutputNumClasses only).
    let src = root.join("semantic_seg--64x64_float_onnx_cpu_1");
    for (name, labels) in [("seg_background", Some(json!({"0": "a", "1": "b", "2": "background", "3": "c", "4": "d"}))), ("seg_nolabels", None)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = read_json(&src.join("semantic_seg--64x64_float_onnx_cpu_1.json"));
        std::fs::copy(src.join("semantic_seg--64x64_float_onnx_cpu_1.onnx"), dir.join(format!("{name}.onnx"))).unwrap();
        cfg["MODEL_PARAMETERS"][0]["ModelPath"] = json!(format!("{name}.onnx"));
        match labels {
            Some(l) => std::fs::write(dir.join("labels.json"), l.to_string()).unwrap(),
            None => {
                cfg["POST_PROCESS"][0].as_object_mut().unwrap().remove("LabelsPath");
            }
        }
        std::fs::write(dir.join(format!("{name}.json")), cfg.to_string()).unwrap();
    }
    for zoo_dir in [root.clone(), tmp.path().to_path_buf(), shared()] {
        let want = pysdk(
            &peer,
            r#"
import degirum as dg, json, sys
zoo = dg.connect(dg.LOCAL, sys.argv[1])
out = {}
for name in zoo.list_models():
    c = zoo.load_model(name).overlay_color
    out[name] = [list(x) for x in c] if isinstance(c, list) else list(c)
print(json.dumps(out))
"#,
            &[zoo_dir.to_str().unwrap()],
        );
        let zoo = Zoo::connect("@local", zoo_dir.to_str().unwrap(), "").unwrap();
        let want = want.as_object().unwrap();
        assert!(!want.is_empty());
        for (name, colors) in want {
            let model = zoo.load_model(name, &Value::Null).unwrap();
            assert_eq!(&model.get_property("overlay_color").unwrap(), colors, "{name}");
        }
    }
}

/// Assigning `extra_device_params` replaces the dict (as PySDK), and a non-dict gets PySDK's
/// error text; both against the real PySDK.
#[test]
fn extra_device_params_assignment_replaces_as_pysdk() {
    let Some(peer) = peer() else { return };
    let Some(root) = family_zoo() else { return };
    let name = "yolov10--64x64_float_onnx_cpu_1";
    let want = pysdk(
        &peer,
        r#"
import degirum as dg, json, sys
m = dg.connect(dg.LOCAL, sys.argv[1]).load_model(sys.argv[2])
m.extra_device_params = {"A": 1, "C": 3}
m.extra_device_params = {"B": 2}
out = {"after": dict(m.extra_device_params), "errors": []}
for bad in (5, "x", [1], None, 1.5):
    try:
        m.extra_device_params = bad
        out["errors"].append(None)
    except Exception as e:
        out["errors"].append(str(e))
print(json.dumps(out))
"#,
        &[root.to_str().unwrap(), name],
    );
    let zoo = Zoo::connect("@local", root.to_str().unwrap(), "").unwrap();
    let model = zoo.load_model(name, &Value::Null).unwrap();
    model.set_property("extra_device_params", &json!({"A": 1, "C": 3})).unwrap();
    model.set_property("extra_device_params", &json!({"B": 2})).unwrap();
    assert_eq!(model.get_property("extra_device_params").unwrap(), want["after"]);
    for (bad, w) in [json!(5), json!("x"), json!([1]), Value::Null, json!(1.5)].iter().zip(want["errors"].as_array().unwrap()) {
        let e = model.set_property("extra_device_params", bad).unwrap_err();
        assert_eq!(json!(e.message), *w, "{bad}");
    }
}

/// `FaceDetection` on the real BlazeFace model of the shared zoo (its config says `None`;
/// both sides load it with `output_postprocess_type="FaceDetection"`), against the live PySDK.
#[test]
fn face_detection_on_blazeface_matches_pysdk() {
    let Some(peer) = peer() else { return };
    let name = "blazeface_short_range--128x128_float_tflite_cpu_1";
    let want = pysdk(
        &peer,
        r#"
import degirum as dg, json, sys
m = dg.connect(dg.LOCAL, sys.argv[1]).load_model(sys.argv[2], output_postprocess_type="FaceDetection", input_image_format="RAW")
print(json.dumps({img: m(f"{sys.argv[1]}/images/{img}.jpg").results for img in ("cat_224", "car_416", "girls_256")}))
"#,
        &[shared().to_str().unwrap(), name],
    );
    let zoo = Zoo::connect("@local", shared().to_str().unwrap(), "").unwrap();
    let model = zoo.load_model(name, &json!({"output_postprocess_type": "FaceDetection"})).unwrap();
    let mut faces = 0;
    for img in ["cat_224", "car_416", "girls_256"] {
        let bytes = std::fs::read(shared().join(format!("images/{img}.jpg"))).unwrap();
        let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap();
        let w = want[img].as_array().unwrap();
        assert_close(&got.results_inline(), w, &format!("{name}/{img} as FaceDetection"));
        faces += w.len();
    }
    assert!(faces >= 2, "girls_256 has faces");
}

#[test]
fn posenet_multi_pose() {
    check_family("posenet--64x64_float_onnx_cpu_1");
}

/// `model` of the family zoo on `n` varied frames (the shared images resized, flipped, noised
/// and rolled by PySDK's own OpenCV; `square` or of random aspect), live against the real
/// PySDK. Returns the number of results PySDK gave.
fn varied_frames_match_pysdk(name: &str, n: usize, square: bool) -> usize {
    let (Some(peer), Some(root)) = (peer(), family_zoo()) else { return usize::MAX };
    let tmp = tempfile::tempdir().unwrap();
    let want = pysdk(
        &peer,
        r#"
import cv2, glob, json, sys, numpy as np, degirum as dg
out_dir, zoo_dir, name, images, n, square = sys.argv[1:7]
rng = np.random.default_rng(7)
base = [cv2.imread(f) for f in sorted(glob.glob(images + "/*.jpg"))]
files = []
for i in range(int(n)):
    s = int(rng.integers(96, 320))
    t = s if square == "1" else int(rng.integers(60, 420))
    img = cv2.resize(base[i % len(base)], (s, t))
    if i % 3 == 0: img = cv2.flip(img, 1)
    if i % 4 == 1: img = np.clip(img.astype(np.int16) + rng.integers(-60, 60, img.shape), 0, 255).astype(np.uint8)
    if i % 5 == 2: img = np.roll(img, int(rng.integers(0, min(s, t))), axis=int(rng.integers(0, 2)))
    f = f"{out_dir}/p{i:02d}.png"
    cv2.imwrite(f, img)
    files.append(f)
m = dg.connect(dg.LOCAL, zoo_dir).load_model(name)
def plain(v):
    if isinstance(v, np.ndarray): return {"__ndarray__": True, "dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()}
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    return v
print(json.dumps([[f, plain(m(f).results)] for f in files]))
"#,
        &[
            tmp.path().to_str().unwrap(),
            root.to_str().unwrap(),
            name,
            shared().join("images").to_str().unwrap(),
            &n.to_string(),
            if square { "1" } else { "0" },
        ],
    );
    let zoo = Zoo::connect("@local", root.to_str().unwrap(), "").unwrap();
    let model = zoo.load_model(name, &Value::Null).unwrap();
    let mut results = 0;
    for pair in want.as_array().unwrap() {
        let (file, w) = (pair[0].as_str().unwrap(), pair[1].as_array().unwrap());
        let bytes = std::fs::read(file).unwrap();
        let got = predict(&model, &[Input::Bytes(&bytes)]).unwrap();
        assert_close(&got.results_inline(), w, file);
        results += w.len();
    }
    results
}

/// PoseNet on 24 varied square frames, live against the real PySDK: every pose, keypoint and
/// score. Poses rooted at an eye or ear exercise the backward edge-0 step that PySDK reads
/// differently.
#[test]
fn posenet_matches_pysdk_on_varied_frames() {
    let poses = varied_frames_match_pysdk("posenet--64x64_float_onnx_cpu_1", 24, true);
    assert!(poses >= 100, "the frames must carry many poses, PySDK found {poses}");
}

/// Instance masks on 16 frames of random aspect (letterboxed with padding into the 64x64
/// model), live against the real PySDK: boxes, scores and every mask's origin, shape and
/// pixels, including boxes at the padding's edge.
#[test]
fn segmentation_masks_match_pysdk_on_letterboxed_frames() {
    let masks = varied_frames_match_pysdk("yolov8_seg_heads--64x64_float_onnx_cpu_1", 16, false);
    assert!(masks >= 20, "the frames must carry many masks, PySDK found {masks}");
}
