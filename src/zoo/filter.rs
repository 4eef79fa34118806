//! `list_models` filters and runtime/device matching (zoo-and-filters.md §5).
use crate::error::{Error, Result};
use crate::params::{name_attributes, ModelParams};
use regex::Regex;
use serde_json::Value;

/// A `RUNTIME/DEVICE` pair.
pub type DevicePair = (String, String);

/// `model_family`: substrings, or one regex matched at the start of the name.
#[derive(Debug, Clone)]
pub enum Family {
    Substrings(Vec<String>),
    Pattern(Regex),
}

/// Normalised filters. Empty lists mean "no filter" except `device_type`, which defaults to
/// `*/*` so the system-device filter always applies.
#[derive(Debug, Clone)]
pub struct Filters {
    pub model_family: Option<Family>,
    pub runtime: Vec<String>,
    pub device: Vec<String>,
    pub device_type: Vec<String>,
    pub precision: Vec<String>,
    pub pruned: Vec<String>,
    pub postprocess_type: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            model_family: None,
            runtime: Vec::new(),
            device: Vec::new(),
            device_type: vec!["*/*".to_string()],
            precision: Vec::new(),
            pruned: Vec::new(),
            postprocess_type: Vec::new(),
        }
    }
}

const FILTER_NAMES: &[&str] = &["model_family", "runtime", "device", "device_type", "precision", "pruned", "postprocess_type"];

fn unsupported(name: &str, v: &Value, possible: &str) -> Error {
    let shown = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Error::invalid(format!("Filter '{name}' has unsupported value '{shown}'. Possible values are: {possible}"))
}

/// Falsy → empty; scalar → one-element list; list → itself.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::Bool(false) => Vec::new(),
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn strings(name: &str, v: &Value, possible: &str, check: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    items(v)
        .iter()
        .map(|it| match it.as_str() {
            Some(s) if check(s) => Ok(s.to_string()),
            _ => Err(unsupported(name, it, possible)),
        })
        .collect()
}

impl Filters {
    /// Parse the filter JSON object of `dg_list_models`. `model_family` may be a string, a list
    /// of strings, or `{"regex": "..."}`. Errors are worded as PySDK's.
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut f = Filters::default();
        let obj = match v {
            Value::Null => return Ok(f),
            Value::Object(o) => o,
            _ => return Err(Error::invalid("filters must be a JSON object")),
        };
        for (k, val) in obj {
            match k.as_str() {
                "model_family" => {
                    const POSSIBLE: &str = "['yolo', 'mobilenet', '...']";
                    f.model_family = match val {
                        Value::Object(o) if o.len() == 1 && o.get("regex").is_some_and(Value::is_string) => {
                            let re = o["regex"].as_str().unwrap_or_default();
                            let re = Regex::new(&format!("^(?:{re})"))
                                .map_err(|e| Error::invalid(format!("Filter 'model_family' has an invalid regular expression '{re}': {e}")))?;
                            Some(Family::Pattern(re))
                        }
                        _ => {
                            let s = strings(k, val, POSSIBLE, |_| true)?;
                            (!s.is_empty()).then_some(Family::Substrings(s))
                        }
                    }
                }
                "runtime" => f.runtime = strings(k, val, "['N2X', 'TFLITE', '...']", |_| true)?,
                "device" => f.device = strings(k, val, "['ORCA1', 'CPU', '...']", |_| true)?,
                "device_type" => {
                    let dt = strings(k, val, "['N2X/ORCA1', 'TFLITE/CPU', '...']", |s| s.matches('/').count() == 1)?;
                    f.device_type = if dt.is_empty() { vec!["*/*".to_string()] } else { dt };
                }
                "precision" => {
                    f.precision = strings(k, val, "['QUANT', 'FLOAT']", |s| matches!(s.to_uppercase().as_str(), "QUANT" | "FLOAT"))?
                        .into_iter()
                        .map(|s| s.to_uppercase())
                        .collect()
                }
                "pruned" => {
                    f.pruned = strings(k, val, "['PRUNED', 'DENSE']", |s| matches!(s.to_uppercase().as_str(), "PRUNED" | "DENSE"))?
                        .into_iter()
                        .map(|s| s.to_uppercase())
                        .collect()
                }
                "postprocess_type" => f.postprocess_type = strings(k, val, "['Detection', 'Classification', '...']", |_| true)?,
                other => {
                    return Err(Error::invalid(format!("Unknown filter '{other}'. Possible filters are: {}", FILTER_NAMES.join(", "))));
                }
            }
        }
        Ok(f)
    }
}

/// PySDK's `check_runtime_device_supported`: does the model run on `(runtime, device)`
/// (`None` or `"*"` = any), given the system's device pairs (empty = no system filter)?
pub fn supported(runtime: Option<&str>, device: Option<&str>, model_pairs: &[DevicePair], system: &[DevicePair]) -> bool {
    let runtime = runtime.filter(|r| *r != "*");
    let device = device.filter(|d| *d != "*");
    let matches: Vec<(&str, &str)> = model_pairs
        .iter()
        .filter(|(r, d)| runtime.is_none_or(|x| r == "*" || r == x) && device.is_none_or(|x| d == "*" || d == x))
        .map(|(r, d)| (runtime.unwrap_or(r), device.unwrap_or(d)))
        .collect();
    if system.is_empty() {
        return !matches.is_empty();
    }
    system.iter().any(|(sr, sd)| matches.iter().any(|(mr, md)| (*mr == "*" || sr == mr) && (*md == "*" || sd == md)))
}

/// The system pairs a model supports, formatted `RT/DEV`, in system order.
pub fn supported_device_types(params: &ModelParams, system: &[DevicePair]) -> Result<Vec<String>> {
    let pairs = params.device_pairs()?;
    Ok(system.iter().filter(|(r, d)| supported(Some(r), Some(d), &pairs, system)).map(|(r, d)| format!("{r}/{d}")).collect())
}

/// Apply filters in PySDK's order; returns the indices of the models that pass.
pub fn apply(models: &[(&str, &ModelParams)], f: &Filters, system: &[DevicePair]) -> Vec<usize> {
    let mut out = Vec::new();
    'models: for (i, (name, params)) in models.iter().enumerate() {
        match &f.model_family {
            Some(Family::Substrings(s)) if !s.iter().any(|x| name.contains(x.as_str())) => continue,
            Some(Family::Pattern(re)) if !re.is_match(name) => continue,
            _ => {}
        }
        // A model with a malformed device list supports nothing.
        let Ok(pairs) = params.device_pairs() else { continue };
        if !f.runtime.is_empty() && !f.runtime.iter().any(|r| supported(Some(r), None, &pairs, system)) {
            continue;
        }
        if !f.device.is_empty() && !f.device.iter().any(|d| supported(None, Some(d), &pairs, system)) {
            continue;
        }
        let dt_ok = f.device_type.iter().any(|t| {
            let (r, d) = t.split_once('/').unwrap_or((t, "*"));
            supported(Some(r), Some(d), &pairs, system)
        });
        if !dt_ok {
            continue;
        }
        let (precision, density) = name_attributes(name);
        if !f.precision.is_empty() && !f.precision.iter().any(|p| p == precision) {
            continue;
        }
        if !f.pruned.is_empty() && !f.pruned.iter().any(|p| p == density) {
            continue;
        }
        if !f.postprocess_type.is_empty() {
            let pt = params.str("OutputPostprocessType", 0);
            if !f.postprocess_type.iter().any(|p| *p == pt) {
                continue 'models;
            }
        }
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(v: &[(&str, &str)]) -> Vec<DevicePair> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn model(rt: &str, dev: &str, sdt: &str, pp: &str) -> ModelParams {
        ModelParams::from_value(json!({"DEVICE":[{"RuntimeAgent":rt,"DeviceType":dev,"SupportedDeviceTypes":sdt}],
            "POST_PROCESS":[{"OutputPostprocessType":pp}],"MODEL_PARAMETERS":[{"ModelPath":"m"}]}))
        .unwrap()
    }

    #[test]
    fn verified_dummy_tflite_case() {
        // PySDK verified: system {DUMMY/DUMMY, N2X/CPU, TFLITE/CPU}, model HAILORT/HAILO8 with
        // SupportedDeviceTypes "DUMMY/*, TFLITE/CPU".
        let sys = pairs(&[("DUMMY", "DUMMY"), ("N2X", "CPU"), ("TFLITE", "CPU")]);
        let m = model("HAILORT", "HAILO8", "DUMMY/*, TFLITE/CPU", "None");
        let list = [("hailo_model", &m)];
        assert_eq!(apply(&list, &Filters::default(), &sys), vec![0]);
        let f = Filters::from_json(&json!({"runtime": "TFLITE"})).unwrap();
        assert_eq!(apply(&list, &f, &sys), vec![0]);
        let f = Filters::from_json(&json!({"device_type": ["TFLITE/CPU"]})).unwrap();
        assert_eq!(apply(&list, &f, &sys), vec![0]);
        let f = Filters::from_json(&json!({"runtime": "HAILORT"})).unwrap();
        assert!(apply(&list, &f, &sys).is_empty());
        assert_eq!(supported_device_types(&m, &sys).unwrap(), vec!["DUMMY/DUMMY", "TFLITE/CPU"]);
    }

    #[test]
    fn system_filter_always_applies() {
        let m = model("ONNX", "CPU", "ONNX/CPU", "None");
        let list = [("m", &m)];
        assert!(apply(&list, &Filters::default(), &pairs(&[("TFLITE", "CPU")])).is_empty());
        assert_eq!(apply(&list, &Filters::default(), &pairs(&[("ONNX", "CPU")])), vec![0]);
        // No system devices at all: only the model's own list counts.
        assert_eq!(apply(&list, &Filters::default(), &[]), vec![0]);
    }

    #[test]
    fn wildcards_and_case() {
        let sys = pairs(&[("TFLITE", "CPU"), ("ONNX", "CPU")]);
        let m = model("TFLITE", "CPU", "*/CPU", "None");
        let list = [("m", &m)];
        let f = Filters::from_json(&json!({"device_type": "ONNX/CPU"})).unwrap();
        assert_eq!(apply(&list, &f, &sys), vec![0]);
        let f = Filters::from_json(&json!({"runtime": "tflite"})).unwrap();
        assert!(apply(&list, &f, &sys).is_empty(), "comparisons are case-sensitive");
        let f = Filters::from_json(&json!({"device": ["GPU", "CPU"]})).unwrap();
        assert_eq!(apply(&list, &f, &sys), vec![0]);
    }

    #[test]
    fn family_precision_pruned_postprocess() {
        let sys = pairs(&[("TFLITE", "CPU")]);
        let a = model("TFLITE", "CPU", "", "Classification");
        let b = model("TFLITE", "CPU", "", "DetectionYoloV8");
        let list = [("mobilenet_v2--224x224_pruned_quant_tflite_cpu_1", &a), ("yolov8n--320x320_float_tflite_cpu_1", &b)];
        let run = |j: Value| apply(&list, &Filters::from_json(&j).unwrap(), &sys);
        assert_eq!(run(json!({"model_family": "net"})), vec![0]);
        assert_eq!(run(json!({"model_family": ["yolo", "mobile"]})), vec![0, 1]);
        assert_eq!(run(json!({"model_family": {"regex": "yolo"}})), vec![1]);
        assert_eq!(run(json!({"model_family": {"regex": "v8"}})), Vec::<usize>::new(), "regex is anchored at the start");
        assert_eq!(run(json!({"precision": "quant"})), vec![0]);
        assert_eq!(run(json!({"precision": ["FLOAT"]})), vec![1]);
        assert_eq!(run(json!({"pruned": "PRUNED"})), vec![0]);
        assert_eq!(run(json!({"pruned": "dense"})), vec![1]);
        assert_eq!(run(json!({"postprocess_type": "DetectionYoloV8"})), vec![1]);
        assert_eq!(run(json!({"postprocess_type": "detectionyolov8"})), Vec::<usize>::new());
        assert_eq!(run(json!({"model_family": "", "runtime": null, "device": []})), vec![0, 1], "falsy = no filter");
    }

    #[test]
    fn validation_messages() {
        let e = |j: Value| Filters::from_json(&j).unwrap_err().message;
        assert_eq!(e(json!({"precision": "HALF"})), "Filter 'precision' has unsupported value 'HALF'. Possible values are: ['QUANT', 'FLOAT']");
        assert_eq!(e(json!({"pruned": ["DENSE", "x"]})), "Filter 'pruned' has unsupported value 'x'. Possible values are: ['PRUNED', 'DENSE']");
        assert_eq!(
            e(json!({"device_type": "TFLITE"})),
            "Filter 'device_type' has unsupported value 'TFLITE'. Possible values are: ['N2X/ORCA1', 'TFLITE/CPU', '...']"
        );
        assert_eq!(e(json!({"runtime": 5})), "Filter 'runtime' has unsupported value '5'. Possible values are: ['N2X', 'TFLITE', '...']");
        assert_eq!(e(json!({"device": [1]})), "Filter 'device' has unsupported value '1'. Possible values are: ['ORCA1', 'CPU', '...']");
        assert_eq!(
            e(json!({"model_family": 3})),
            "Filter 'model_family' has unsupported value '3'. Possible values are: ['yolo', 'mobilenet', '...']"
        );
        assert!(e(json!({"colour": "x"})).starts_with("Unknown filter 'colour'"));
        assert!(e(json!({"model_family": {"regex": "("}})).contains("invalid regular expression"));
        assert!(Filters::from_json(&json!([1])).is_err());
    }
}
