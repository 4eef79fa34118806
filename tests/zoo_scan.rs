//! Local zoo scanning and connect() on generated zoos (zoo-and-filters.md, model-json.md §3).
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use dgzoo::Code;
use serde_json::{json, Value};
use std::path::Path;

fn config(runtime: &str, checksum: &str, version: i64) -> Value {
    json!({
        "ConfigVersion": version,
        "Checksum": checksum,
        "DEVICE": [{"DeviceType": "CPU", "RuntimeAgent": runtime, "SupportedDeviceTypes": format!("{runtime}/CPU")}],
        "PRE_PROCESS": [{"InputType": "Image", "InputN": 1, "InputH": 8, "InputW": 8, "InputC": 3}],
        "MODEL_PARAMETERS": [{"ModelPath": "m.tflite"}],
        "POST_PROCESS": [{"OutputPostprocessType": "None"}]
    })
}

fn write(dir: &Path, rel: &str, v: &Value) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn names(zoo: &Zoo) -> Vec<String> {
    zoo.list_names(&Filters::default()).unwrap()
}

#[test]
fn scan_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "a/model_a.json", &config("TFLITE", "abc", 14));
    write(d, "deep/er/still/model_b.json", &config("TFLITE", "abc", 1));
    write(d, "root_model.json", &config("TFLITE", "abc", 14));
    write(d, "no_checksum.json", &config("TFLITE", "", 14));
    write(d, "zero_version.json", &config("TFLITE", "abc", 0));
    write(d, "labels.json", &json!({"0": "cat", "1": "dog"}));
    write(d, "sub/nested_path.json", &{
        let mut c = config("TFLITE", "abc", 14);
        c["MODEL_PARAMETERS"][0]["ModelPath"] = json!("../escape.tflite");
        c
    });
    std::fs::write(d.join("broken.json"), "{ not json").unwrap();
    std::fs::write(d.join("README.md"), "# not a model").unwrap();
    let zoo = Zoo::connect("@local", d.to_str().unwrap(), "").unwrap();
    assert_eq!(names(&zoo), ["model_a", "model_b", "root_model"]);
    let info = zoo.model_info("model_b").unwrap();
    let mp = info["MODEL_PARAMETERS"][0]["ModelPath"].as_str().unwrap();
    assert_eq!(Path::new(mp), d.join("deep/er/still/m.tflite"), "paths are made absolute beside the JSON");
}

#[test]
fn later_file_with_the_same_stem_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "a/dup.json", &config("TFLITE", "first", 14));
    write(d, "b/dup.json", &config("ONNX", "second", 14));
    let zoo = Zoo::connect("@local", d.to_str().unwrap(), "").unwrap();
    assert_eq!(zoo.model_info("dup").unwrap()["Checksum"], "second");
}

#[test]
fn single_file_zoo_loads_unconditionally() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "only.json", &config("TFLITE", "", 0));
    let f = tmp.path().join("only.json");
    let zoo = Zoo::connect("@local", f.to_str().unwrap(), "").unwrap();
    assert_eq!(zoo.model_info("only").unwrap()["ConfigVersion"], 0);
    // file:// URLs name the same file.
    let zoo = Zoo::connect("@local", &format!("file://{}", f.display()), "").unwrap();
    assert!(zoo.model_info("only").is_ok());
    // A single-file zoo that is not JSON is an error naming the file.
    std::fs::write(tmp.path().join("bad.json"), "[1,").unwrap();
    let e = Zoo::connect("@local", tmp.path().join("bad.json").to_str().unwrap(), "").unwrap_err();
    assert!(e.message.contains("bad.json"), "{e}");
}

#[test]
fn connect_errors_match_pysdk() {
    let e = Zoo::connect("@local", "/definitely/not/here", "").unwrap_err();
    assert_eq!(e.message, "ZooManager: incorrect local model zoo URL '/definitely/not/here': path '/definitely/not/here' does not exist");
    let tmp = tempfile::tempdir().unwrap();
    let e = Zoo::connect("@cloud", tmp.path().to_str().unwrap(), "").unwrap_err();
    assert_eq!(e.message, format!("ZooManager: incorrect cloud model zoo URL '{}'", tmp.path().display()));
    let e = Zoo::connect("@nowhere", "", "").unwrap_err();
    assert!(e.message.starts_with("Incorrect inference host address '@nowhere'"), "{e}");
    let zoo = Zoo::connect("@local", tmp.path().to_str().unwrap(), "").unwrap();
    let e = zoo.model_info("x").unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    assert_eq!(e.message, format!("Model 'x' is not found in model zoo '{}'", tmp.path().display()));
}

#[test]
fn system_device_filter_hides_models_without_a_runtime_here() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "hailo_model.json", &config("HAILORT", "abc", 14));
    write(d, "wild.json", &{
        let mut c = config("HAILORT", "abc", 14);
        c["DEVICE"][0]["SupportedDeviceTypes"] = json!("HAILORT/HAILO8, TFLITE/*");
        c
    });
    let zoo = Zoo::connect("@local", d.to_str().unwrap(), "").unwrap();
    let have_tflite = zoo.supported_device_types().iter().any(|t| t == "TFLITE/CPU");
    assert!(have_tflite, "the TFLite runtime must be installed for this test (scripts/install-runtimes.sh)");
    assert_eq!(names(&zoo), ["wild"]);
    let e = zoo.load_model("hailo_model", &Value::Null).unwrap_err();
    assert_eq!(e.message, "Model 'hailo_model' does not have any supported runtime/device combinations that will work on this system.");
    let m = zoo.load_model("wild", &Value::Null).unwrap();
    assert_eq!(m.get_property("supported_device_types").unwrap(), json!(["TFLITE/CPU"]));
}
