//! Model configuration JSON (`model-json.md`): the parameter table with sections, types,
//! defaults, runtime flags and fallbacks, plus [`ModelParams`] to read, edit, validate and
//! expand a config the way PySDK 1.5.0 does.
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// Highest `ConfigVersion` accepted (PySDK 1.5.0).
pub const CURRENT_CONFIG_VERSION: i64 = 14;
/// Lowest `ConfigVersion` accepted.
pub const MIN_CONFIG_VERSION: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Top,
    Device,
    PreProcess,
    ModelParameters,
    PostProcess,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Device, Section::PreProcess, Section::ModelParameters, Section::PostProcess];
    /// JSON key of the section (empty for top level).
    pub fn key(self) -> &'static str {
        match self {
            Section::Top => "",
            Section::Device => "DEVICE",
            Section::PreProcess => "PRE_PROCESS",
            Section::ModelParameters => "MODEL_PARAMETERS",
            Section::PostProcess => "POST_PROCESS",
        }
    }
}

/// Parameter value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PType {
    Str,
    Int,
    UInt,
    U64,
    F32,
    F64,
    Bool,
    Json,
    IntArr,
    UIntArr,
    F32Arr,
    F64Arr,
    StrArr,
    IntArr3,
    MapStrIntArr,
}

impl PType {
    fn describe(self) -> &'static str {
        match self {
            PType::Str => "a string",
            PType::Int => "an integer",
            PType::UInt | PType::U64 => "a non-negative integer",
            PType::F32 | PType::F64 => "a number",
            PType::Bool => "a boolean",
            PType::Json => "a JSON value",
            PType::IntArr => "a list of integers",
            PType::UIntArr => "a list of non-negative integers",
            PType::F32Arr | PType::F64Arr => "a list of numbers",
            PType::StrArr => "a list of strings",
            PType::IntArr3 => "a 3-level nested list of integers",
            PType::MapStrIntArr => "an object of integer lists",
        }
    }

    /// Does `v` have this type? Integral floats are accepted for integer types, integers for floats.
    pub fn accepts(self, v: &Value) -> bool {
        fn is_int(v: &Value) -> bool {
            v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        fn is_uint(v: &Value) -> bool {
            v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0 && f >= 0.0)
        }
        let arr = |f: fn(&Value) -> bool| v.as_array().is_some_and(|a| a.iter().all(f));
        match self {
            PType::Str => v.is_string(),
            PType::Int => is_int(v),
            PType::UInt | PType::U64 => is_uint(v),
            PType::F32 | PType::F64 => v.is_number(),
            PType::Bool => v.is_boolean(),
            PType::Json => true,
            PType::IntArr => arr(is_int),
            PType::UIntArr => arr(is_uint),
            PType::F32Arr | PType::F64Arr => arr(Value::is_number),
            PType::StrArr => arr(Value::is_string),
            PType::IntArr3 => v.as_array().is_some_and(|a| {
                a.iter().all(|b| b.as_array().is_some_and(|b| b.iter().all(|c| c.as_array().is_some_and(|c| c.iter().all(is_int)))))
            }),
            PType::MapStrIntArr => {
                v.as_object().is_some_and(|m| m.values().all(|x| x.as_array().is_some_and(|a| a.iter().all(is_int))))
            }
        }
    }
}

/// One row of the parameter table.
#[derive(Debug)]
pub struct ParamDef {
    pub name: &'static str,
    pub section: Section,
    pub ty: PType,
    /// Default as JSON text.
    pub default: &'static str,
    pub required: bool,
    /// Runtime parameter: may be overridden per inference session.
    pub runtime: bool,
    pub fallback: Option<&'static str>,
}

macro_rules! p {
    ($n:literal, $s:ident, $t:ident, $d:literal) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: false, runtime: false, fallback: None }
    };
    ($n:literal, $s:ident, $t:ident, $d:literal, rt) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: false, runtime: true, fallback: None }
    };
    ($n:literal, $s:ident, $t:ident, $d:literal, req) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: true, runtime: false, fallback: None }
    };
    ($n:literal, $s:ident, $t:ident, $d:literal, req rt) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: true, runtime: true, fallback: None }
    };
    ($n:literal, $s:ident, $t:ident, $d:literal, fb $f:literal) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: false, runtime: false, fallback: Some($f) }
    };
    ($n:literal, $s:ident, $t:ident, $d:literal, rt fb $f:literal) => {
        ParamDef { name: $n, section: Section::$s, ty: PType::$t, default: $d, required: false, runtime: true, fallback: Some($f) }
    };
}

/// Every parameter of model-json.md §5.
pub static PARAMS: &[ParamDef] = &[
    // top level
    p!("ConfigVersion", Top, Int, "0", req),
    p!("Checksum", Top, Str, "\"\"", req),
    p!("CloudURL", Top, Str, "\"\"", rt),
    p!("CloudModelName", Top, Str, "\"\"", req rt),
    p!("CloudToken", Top, Str, "\"\"", rt),
    p!("MeasureTime", Top, Bool, "false", rt),
    // DEVICE
    p!("DeviceType", Device, Str, "\"CPU\"", rt),
    p!("RuntimeAgent", Device, Str, "\"N2X\"", rt),
    p!("SupportedDeviceTypes", Device, Str, "\"\""),
    p!("DeviceMask", Device, U64, "18446744073709551615", rt),
    p!("DeviceTimeout_ms", Device, F64, "-1.0", rt),
    p!("EagerBatchSize", Device, UInt, "8", rt),
    p!("ExtraDeviceParams", Device, Json, "{}", rt),
    p!("ThreadPackSize", Device, UInt, "2", rt),
    p!("SimulateAbort", Device, Bool, "false", rt),
    p!("SimulateFail", Device, Int, "0", rt),
    p!("SimulateParams", Device, Bool, "false", rt),
    p!("SimulateTime_ms", Device, F64, "0.0", rt),
    p!("SimulatePreprocessor", Device, Bool, "false", rt),
    p!("FrameQueueDepth", Device, UInt, "8", rt),
    // PRE_PROCESS (one element per input)
    p!("InputN", PreProcess, Int, "0", rt fb "ModelInputN"),
    p!("InputH", PreProcess, Int, "0", rt fb "ModelInputH"),
    p!("InputW", PreProcess, Int, "0", rt fb "ModelInputW"),
    p!("InputC", PreProcess, Int, "0", rt fb "ModelInputC"),
    p!("InputShape", PreProcess, UIntArr, "[]", rt),
    p!("InputQuantEn", PreProcess, Bool, "false", fb "ModelQuantEn"),
    p!("InputType", PreProcess, Str, "\"Image\""),
    p!("InputFmt", PreProcess, Str, "\"auto\"", fb "ModelFmt"),
    p!("InputTensorLayout", PreProcess, Str, "\"auto\"", fb "InputFmt"),
    p!("InputImgFmt", PreProcess, Str, "\"JPEG\"", rt),
    p!("InputImgRawDataType", PreProcess, Str, "\"DG_UINT8\"", rt),
    p!("InputRawDataType", PreProcess, Str, "\"DG_UINT8\"", rt fb "InputImgRawDataType"),
    p!("InputImgRotation", PreProcess, Int, "0", rt),
    p!("InputColorSpace", PreProcess, Str, "\"RGB\"", rt),
    p!("InputResizeMethod", PreProcess, Str, "\"bilinear\""),
    p!("InputPadMethod", PreProcess, Str, "\"letterbox\""),
    p!("InputCropPercentage", PreProcess, F64, "1.0"),
    p!("ImageBackend", PreProcess, Str, "\"auto\""),
    p!("InputImgNormEn", PreProcess, Bool, "false"),
    p!("InputImgNormCoeff", PreProcess, F64, "0.00392156862745098"),
    p!("InputImgMean", PreProcess, F32Arr, "[]"),
    p!("InputImgStd", PreProcess, F32Arr, "[]"),
    p!("InputImgQuantOffset", PreProcess, F32, "0.0"),
    p!("InputImgQuantScale", PreProcess, F32, "1.0"),
    p!("InputImgSliceType", PreProcess, Str, "\"None\""),
    p!("InputQuantOffset", PreProcess, F32, "0.0", fb "InputImgQuantOffset"),
    p!("InputQuantScale", PreProcess, F32, "1.0", fb "InputImgQuantScale"),
    p!("InputFrameSize", PreProcess, Int, "400"),
    p!("InputFrameHopStepSize", PreProcess, Int, "160"),
    p!("InputSamplingRate", PreProcess, F64, "16000.0"),
    p!("InputWaveformSize", PreProcess, Int, "15600"),
    p!("InputMelFrequencyRange", PreProcess, F64Arr, "[]"),
    p!("InputNormEn", PreProcess, Bool, "false", fb "InputImgNormEn"),
    p!("InputNormCoeff", PreProcess, F64, "0.00392156862745098", fb "InputImgNormCoeff"),
    p!("InputNormMean", PreProcess, F32Arr, "[]", fb "InputImgMean"),
    p!("InputNormStd", PreProcess, F32Arr, "[]", fb "InputImgStd"),
    p!("InputScaleEn", PreProcess, Bool, "false", fb "InputNormEn"),
    p!("InputScaleCoeff", PreProcess, F64, "0.00392156862745098", fb "InputNormCoeff"),
    // MODEL_PARAMETERS
    p!("ModelPath", ModelParameters, Str, "\"\"", req),
    p!("ModelInputN", ModelParameters, Int, "0"),
    p!("ModelInputH", ModelParameters, Int, "0"),
    p!("ModelInputW", ModelParameters, Int, "0"),
    p!("ModelInputC", ModelParameters, Int, "0"),
    p!("ModelQuantEn", ModelParameters, Bool, "false"),
    p!("ModelFmt", ModelParameters, Str, "\"auto\""),
    p!("ModelSchedulerThreshold", ModelParameters, F64, "0.0"),
    p!("CalibrationFilePath", ModelParameters, Str, "\"\""),
    p!("UseFloat16", ModelParameters, Bool, "false"),
    p!("CompilerOptions", ModelParameters, Json, "{}", rt),
    p!("LLMMaxNewTokens", ModelParameters, Int, "100", rt),
    p!("LLMTemperature", ModelParameters, F32, "0.8", rt),
    p!("LLMTopK", ModelParameters, Int, "40", rt),
    p!("LLMTopP", ModelParameters, F32, "0.95", rt),
    p!("LLMContextSize", ModelParameters, Int, "4096", rt),
    p!("LLMMinP", ModelParameters, F32, "0.05", rt),
    // POST_PROCESS
    p!("OutputPostprocessType", PostProcess, Str, "\"None\"", rt),
    p!("InferenceResultsType", PostProcess, Str, "\"\"", rt),
    p!("OutputConfThreshold", PostProcess, F64, "0.3", rt),
    p!("OutputNMSThreshold", PostProcess, F64, "0.6", rt),
    p!("OutputTopK", PostProcess, UInt, "0", rt),
    p!("MaxDetections", PostProcess, Int, "100", rt),
    p!("MaxDetectionsPerClass", PostProcess, Int, "100", rt),
    p!("MaxClassesPerDetection", PostProcess, Int, "1", rt),
    p!("UseRegularNMS", PostProcess, Bool, "true", rt),
    p!("SigmoidOnCLS", PostProcess, Bool, "false", rt),
    p!("PythonFile", PostProcess, Str, "\"\"", rt),
    p!("PostProcessorInputs", PostProcess, IntArr, "[]"),
    p!("OutputNumClasses", PostProcess, Int, "20"),
    p!("OutputNumLandmarks", PostProcess, UInt, "17"),
    p!("OutputSoftmaxEn", PostProcess, Bool, "false"),
    p!("OutputClassIDAdjustment", PostProcess, Int, "0"),
    p!("OutputYoloAnchors", PostProcess, IntArr3, "[]"),
    p!("OutputYoloStrides", PostProcess, IntArr, "[8, 16, 32]"),
    p!("OutputYoloRegMax", PostProcess, Int, "16"),
    p!("OutputYoloBoxScales", PostProcess, F32Arr, "[]"),
    p!("OutputShapePerLandmark", PostProcess, Int, "3"),
    p!("OutputTensorLayout", PostProcess, Str, "\"NHWC\""),
    p!("YScale", PostProcess, F64, "1.0"),
    p!("XScale", PostProcess, F64, "1.0"),
    p!("HScale", PostProcess, F64, "1.0"),
    p!("WScale", PostProcess, F64, "1.0"),
    p!("NMSRadius", PostProcess, F64, "10.0"),
    p!("Stride", PostProcess, Int, "16"),
    p!("PoseThreshold", PostProcess, F64, "0.8", rt),
    p!("LabelsPath", PostProcess, Str, "\"\""),
    p!("LandmarkLabels", PostProcess, StrArr, "[]"),
    p!("Connections", PostProcess, MapStrIntArr, "{}"),
    p!("OutputQuantParams", PostProcess, Json, "{}"),
];

fn index() -> &'static HashMap<&'static str, &'static ParamDef> {
    static IDX: once_cell::sync::OnceCell<HashMap<&'static str, &'static ParamDef>> = once_cell::sync::OnceCell::new();
    IDX.get_or_init(|| PARAMS.iter().map(|d| (d.name, d)).collect())
}

/// Look up a parameter definition by name.
pub fn def(name: &str) -> Option<&'static ParamDef> {
    index().get(name).copied()
}

impl ParamDef {
    /// The default as a typed JSON value (f32 defaults are rounded to f32, as the C++ core stores them).
    pub fn default_value(&self) -> Value {
        let v: Value = serde_json::from_str(self.default).expect("parameter table default is valid JSON");
        match self.ty {
            PType::F32 => Value::from(v.as_f64().unwrap_or(0.0) as f32 as f64),
            _ => v,
        }
    }
}

/// A model configuration: the JSON object as read, plus typed access with fallbacks/defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    json: Map<String, Value>,
}

impl ModelParams {
    /// Parse config text. PySDK drops every `\n` before parsing; so do we.
    pub fn parse(text: &str) -> Result<Self> {
        let cleaned: String = text.chars().filter(|&c| c != '\n').collect();
        let v: Value = serde_json::from_str(&cleaned).map_err(|e| Error::bad_model(format!("invalid JSON: {e}")))?;
        Self::from_value(v)
    }

    pub fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Object(json) => Ok(ModelParams { json }),
            _ => Err(Error::bad_model("model configuration must be a JSON object")),
        }
    }

    /// Read a config file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read model configuration '{}': {e}", path.display())))?;
        Self::parse(&text).map_err(|e| e.context(format!("model configuration '{}'", path.display())))
    }

    pub fn as_json(&self) -> &Map<String, Value> {
        &self.json
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.json.clone())
    }

    /// Number of elements in a section (PRE_PROCESS: number of inputs).
    pub fn section_len(&self, s: Section) -> usize {
        self.json.get(s.key()).and_then(Value::as_array).map_or(0, Vec::len)
    }

    fn element(&self, s: Section, idx: usize) -> Option<&Map<String, Value>> {
        if s == Section::Top {
            return Some(&self.json);
        }
        self.json.get(s.key())?.as_array()?.get(idx)?.as_object()
    }

    /// Raw value as written in the config (no fallback, no default).
    pub fn raw(&self, name: &str, idx: usize) -> Option<&Value> {
        let d = def(name)?;
        let i = if d.section == Section::PreProcess { idx } else { 0 };
        self.element(d.section, i)?.get(name)
    }

    /// Is the parameter (or its fallback chain) present?
    pub fn exists(&self, name: &str, idx: usize) -> bool {
        if self.raw(name, idx).is_some() {
            return true;
        }
        def(name).and_then(|d| d.fallback).is_some_and(|f| self.exists(f, idx))
    }

    /// Effective value: the config's value, else the fallback's effective value, else the default.
    pub fn get(&self, name: &str, idx: usize) -> Value {
        if let Some(v) = self.raw(name, idx) {
            return v.clone();
        }
        match def(name) {
            Some(d) => match d.fallback {
                Some(f) if self.exists(f, idx) => self.get(f, idx),
                _ => d.default_value(),
            },
            None => Value::Null,
        }
    }

    pub fn str(&self, name: &str, idx: usize) -> String {
        match self.get(name, idx) {
            Value::String(s) => s,
            _ => String::new(),
        }
    }
    pub fn f64(&self, name: &str, idx: usize) -> f64 {
        self.get(name, idx).as_f64().unwrap_or(0.0)
    }
    pub fn i64(&self, name: &str, idx: usize) -> i64 {
        let v = self.get(name, idx);
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).unwrap_or(0)
    }
    pub fn u64(&self, name: &str, idx: usize) -> u64 {
        let v = self.get(name, idx);
        v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)).unwrap_or(0)
    }
    pub fn bool(&self, name: &str, idx: usize) -> bool {
        self.get(name, idx).as_bool().unwrap_or(false)
    }
    pub fn f32_vec(&self, name: &str, idx: usize) -> Vec<f32> {
        self.get(name, idx).as_array().map(|a| a.iter().filter_map(Value::as_f64).map(|f| f as f32).collect()).unwrap_or_default()
    }
    pub fn i64_vec(&self, name: &str, idx: usize) -> Vec<i64> {
        self.get(name, idx).as_array().map(|a| a.iter().filter_map(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))).collect()).unwrap_or_default()
    }

    /// Set a parameter, creating the section element if needed. Type-checked for known parameters.
    pub fn set(&mut self, name: &str, idx: usize, value: Value) -> Result<()> {
        let d = def(name).ok_or_else(|| Error::invalid(format!("unknown model parameter '{name}'")))?;
        if !d.ty.accepts(&value) {
            return Err(Error::invalid(format!("model parameter '{name}' must be {}", d.ty.describe())));
        }
        let obj = if d.section == Section::Top {
            &mut self.json
        } else {
            let i = if d.section == Section::PreProcess { idx } else { 0 };
            let arr = self.json.entry(d.section.key()).or_insert_with(|| Value::Array(Vec::new()));
            if !arr.is_array() {
                *arr = Value::Array(Vec::new());
            }
            let arr = arr.as_array_mut().expect("just ensured array");
            while arr.len() <= i {
                arr.push(Value::Object(Map::new()));
            }
            if !arr[i].is_object() {
                arr[i] = Value::Object(Map::new());
            }
            arr[i].as_object_mut().expect("just ensured object")
        };
        obj.insert(name.to_string(), value);
        Ok(())
    }

    /// Check the structure and every known parameter's type. Errors name the parameter and where it is.
    pub fn validate(&self) -> Result<()> {
        for s in Section::ALL {
            if let Some(v) = self.json.get(s.key()) {
                let arr = v.as_array().ok_or_else(|| Error::bad_model(format!("Incorrect JSON configuration: section '{}' must be a list of objects", s.key())))?;
                for (i, e) in arr.iter().enumerate() {
                    if !e.is_object() {
                        return Err(Error::bad_model(format!("Incorrect JSON configuration: section '{}[ {i} ]' must be an object", s.key())));
                    }
                }
            }
        }
        let check = |d: &ParamDef, v: &Value, where_: String| -> Result<()> {
            if d.ty.accepts(v) {
                Ok(())
            } else {
                Err(Error::bad_model(format!(
                    "Incorrect JSON configuration: parameter '{}'{where_} must be {}, not {v}",
                    d.name,
                    d.ty.describe()
                )))
            }
        };
        for d in PARAMS {
            if d.section == Section::Top {
                if let Some(v) = self.json.get(d.name) {
                    check(d, v, String::new())?;
                }
                continue;
            }
            if let Some(arr) = self.json.get(d.section.key()).and_then(Value::as_array) {
                for (i, e) in arr.iter().enumerate() {
                    if let Some(v) = e.get(d.name) {
                        check(d, v, format!(" in section '{}[ {i} ]'", d.section.key()))?;
                    }
                }
            }
        }
        for d in PARAMS.iter().filter(|d| d.required && d.section != Section::Top) {
            if self.raw(d.name, 0).is_none() {
                return Err(Error::bad_model(format!(
                    "Incorrect JSON configuration: parameter '{}' in section '{}[ 0 ]' is missing",
                    d.name,
                    d.section.key()
                )));
            }
        }
        Ok(())
    }

    /// The `ConfigVersion` range check done when a model is loaded for inference.
    pub fn check_version(&self) -> Result<()> {
        let v = self.i64("ConfigVersion", 0);
        let model = Path::new(&self.str("ModelPath", 0)).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if v < MIN_CONFIG_VERSION {
            return Err(Error::bad_model(format!(
                "[ERROR]Version is not supported\nThe version {v} of '{model}' model parameter collection is TOO OLD. \
                 The model version should be at least {MIN_CONFIG_VERSION}. Please upgrade your model zoo"
            )));
        }
        if v > CURRENT_CONFIG_VERSION {
            return Err(Error::bad_model(format!(
                "[ERROR]Version is not supported\nThe version {v} of '{model}' model parameter collection is NEWER than the \
                 current version {CURRENT_CONFIG_VERSION} of DeGirum framework software. Please upgrade your installation of DeGirum framework software"
            )));
        }
        Ok(())
    }

    /// Is this a zoo model (PySDK's directory-scan rule): `ModelPath` present, non-empty
    /// `Checksum`, `ConfigVersion` > 0.
    pub fn is_zoo_model(&self) -> bool {
        self.raw("ModelPath", 0).is_some()
            && self.raw("Checksum", 0).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
            && self.raw("ConfigVersion", 0).and_then(Value::as_f64).is_some_and(|v| v > 0.0)
    }

    /// Full form (`fullJsonGet`): every section present (missing → `[]`), every runtime parameter
    /// missing in an existing element filled in (fallback value, else default).
    pub fn full_form(&self) -> Value {
        let mut out = self.json.clone();
        for d in PARAMS.iter().filter(|d| d.runtime && d.section == Section::Top) {
            if !out.contains_key(d.name) {
                out.insert(d.name.to_string(), self.get(d.name, 0));
            }
        }
        for s in Section::ALL {
            let n = self.section_len(s);
            let mut arr = match out.get(s.key()) {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            for (i, elem) in arr.iter_mut().enumerate().take(n) {
                if let Value::Object(o) = elem {
                    for d in PARAMS.iter().filter(|d| d.runtime && d.section == s) {
                        if !o.contains_key(d.name) {
                            o.insert(d.name.to_string(), self.get(d.name, i));
                        }
                    }
                }
            }
            out.insert(s.key().to_string(), Value::Array(arr));
        }
        Value::Object(out)
    }

    /// Rewrite the file-name parameters (`ModelPath`, `LabelsPath`, `PythonFile`) as paths
    /// under `dir`, as PySDK's local loader does. Empty values stay empty. Like PySDK
    /// (`Path.with_name`), a value must be a plain file name: one with a path separator, or
    /// `.`, is refused, which also keeps a config from pointing outside its own directory.
    pub fn absolutize_paths(&mut self, dir: &Path) -> Result<()> {
        for name in ["ModelPath", "LabelsPath", "PythonFile"] {
            if let Some(Value::String(v)) = self.raw(name, 0).cloned() {
                if !v.is_empty() {
                    if v.contains('/') || v.contains('\\') || v == "." || v == ".." {
                        return Err(Error::bad_model(format!("Invalid {name} '{v}': it must be a file name in the directory of the model configuration")));
                    }
                    self.set(name, 0, Value::String(dir.join(&v).to_string_lossy().into_owned()))?;
                }
            }
        }
        Ok(())
    }

    /// Merge runtime parameters from a client config (AI server stream / cloud): only runtime
    /// parameters override; single-element sections use element 0; PRE_PROCESS element-wise.
    pub fn merge_runtime(&mut self, config: &Value) {
        let Some(cfg) = config.as_object() else { return };
        for (k, v) in cfg {
            if let Some(d) = def(k) {
                if d.runtime && d.section == Section::Top && d.ty.accepts(v) {
                    self.json.insert(k.clone(), v.clone());
                }
            }
        }
        for s in Section::ALL {
            let Some(arr) = cfg.get(s.key()).and_then(Value::as_array) else { continue };
            let n = if s == Section::PreProcess { arr.len().min(self.section_len(s)) } else { arr.len().min(1) };
            for (i, elem) in arr.iter().enumerate().take(n) {
                let Some(o) = elem.as_object() else { continue };
                for (k, v) in o {
                    if let Some(d) = def(k) {
                        if d.runtime && d.section == s && d.ty.accepts(v) {
                            let _ = self.set(k, i, v.clone());
                        }
                    }
                }
            }
        }
    }

    /// Number of model inputs.
    pub fn num_inputs(&self) -> usize {
        self.section_len(Section::PreProcess)
    }

    /// Input shape per model-json.md §4: `InputShape` if non-empty, else the positive values
    /// among N, H, W, C (or placed into a rank-`rank` shape when the rank is known).
    pub fn input_shape(&self, idx: usize, rank: Option<usize>) -> Vec<i64> {
        let shape = self.i64_vec("InputShape", idx);
        if !shape.is_empty() {
            return shape;
        }
        let nhwc = [self.i64("InputN", idx), self.i64("InputH", idx), self.i64("InputW", idx), self.i64("InputC", idx)];
        match rank {
            Some(r) => {
                let mut s = vec![1i64; r];
                for (i, v) in nhwc.iter().enumerate() {
                    if i < r && *v > 0 {
                        s[i] = *v;
                    }
                }
                s
            }
            None => nhwc.into_iter().filter(|&v| v > 0).collect(),
        }
    }

    /// The model's `RUNTIME/DEVICE` pairs: `[RuntimeAgent, DeviceType]` followed by
    /// `SupportedDeviceTypes` tokens (split on runs of `,`, `;`, space).
    pub fn device_pairs(&self) -> Result<Vec<(String, String)>> {
        let mut pairs = vec![(self.str("RuntimeAgent", 0), self.str("DeviceType", 0))];
        let sdt = self.str("SupportedDeviceTypes", 0);
        for tok in sdt.split([',', ';', ' ']).filter(|t| !t.is_empty()) {
            let mut it = tok.split('/');
            match (it.next(), it.next(), it.next()) {
                (Some(r), Some(d), None) => pairs.push((r.to_string(), d.to_string())),
                _ => {
                    return Err(Error::bad_model(format!(
                        "Invalid format of supported device list '{sdt}' for model '{}'",
                        self.str("ModelPath", 0)
                    )))
                }
            }
        }
        Ok(pairs)
    }
}

/// `QUANT`/`FLOAT` and `PRUNED`/`DENSE` derived from a zoo model name (model-json.md §7).
pub fn name_attributes(name: &str) -> (&'static str, &'static str) {
    let tail = name.rsplit("--").next().unwrap_or(name);
    let p: Vec<&str> = tail.split('_').rev().collect();
    let precision = if p.len() >= 4 && p[3].eq_ignore_ascii_case("QUANT") { "QUANT" } else { "FLOAT" };
    let density = if p.len() >= 5 && p[4].eq_ignore_ascii_case("PRUNED") { "PRUNED" } else { "DENSE" };
    (precision, density)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_config_full_form_matches_pysdk() {
        let p = ModelParams::parse("{}").unwrap();
        assert_eq!(
            p.full_form(),
            json!({"CloudModelName":"","CloudToken":"","CloudURL":"","DEVICE":[],"MODEL_PARAMETERS":[],"MeasureTime":false,"POST_PROCESS":[],"PRE_PROCESS":[]})
        );
    }

    #[test]
    fn fallback_chains() {
        let p = ModelParams::parse(r#"{"PRE_PROCESS":[{"InputImgNormEn":true,"InputImgNormCoeff":0.5,"InputImgMean":[1,2,3]}],
            "MODEL_PARAMETERS":[{"ModelPath":"m","ModelInputH":7}]}"#)
        .unwrap();
        assert!(p.bool("InputScaleEn", 0));
        assert_eq!(p.f64("InputScaleCoeff", 0), 0.5);
        assert_eq!(p.f32_vec("InputNormMean", 0), vec![1.0, 2.0, 3.0]);
        assert_eq!(p.i64("InputH", 0), 7);
        assert!(p.exists("InputScaleEn", 0));
        assert!(!p.exists("InputQuantEn", 0));
        assert_eq!(p.f64("InputQuantScale", 0), 1.0);
    }

    #[test]
    fn f32_defaults_are_f32_rounded() {
        let p = ModelParams::parse(r#"{"MODEL_PARAMETERS":[{"ModelPath":"m"}]}"#).unwrap();
        let f = p.full_form();
        assert_eq!(f["MODEL_PARAMETERS"][0]["LLMTemperature"], json!(0.800000011920929));
        assert_eq!(f["MODEL_PARAMETERS"][0]["LLMMinP"], json!(0.05000000074505806));
        assert_eq!(f["MODEL_PARAMETERS"][0]["ModelPath"], json!("m"));
        assert!(f["MODEL_PARAMETERS"][0].get("ModelFmt").is_none(), "non-runtime params are not added");
    }

    #[test]
    fn validation_names_parameter() {
        let p = ModelParams::parse(r#"{"DEVICE":[{"DeviceType":5}],"MODEL_PARAMETERS":[{"ModelPath":"m"}]}"#).unwrap();
        let e = p.validate().unwrap_err();
        assert!(e.message.contains("'DeviceType' in section 'DEVICE[ 0 ]'"), "{}", e.message);
        let p = ModelParams::parse(r#"{"DEVICE":{}}"#).unwrap();
        assert!(p.validate().unwrap_err().message.contains("section 'DEVICE'"));
        let p = ModelParams::parse(r#"{"ConfigVersion":3}"#).unwrap();
        assert_eq!(
            p.validate().unwrap_err().message,
            "Incorrect JSON configuration: parameter 'ModelPath' in section 'MODEL_PARAMETERS[ 0 ]' is missing"
        );
        assert!(ModelParams::parse("[1]").is_err());
        assert!(ModelParams::parse("{bad").is_err());
    }

    #[test]
    fn version_range() {
        let mk = |v: i64| ModelParams::parse(&format!(r#"{{"ConfigVersion":{v},"MODEL_PARAMETERS":[{{"ModelPath":"x/m.tflite"}}]}}"#)).unwrap();
        assert!(mk(1).check_version().is_ok());
        assert!(mk(14).check_version().is_ok());
        assert!(mk(0).check_version().unwrap_err().message.contains("The version 0 of 'm' model parameter collection is TOO OLD"));
        assert!(mk(15).check_version().unwrap_err().message.contains("NEWER than the current version 14"));
    }

    #[test]
    fn device_pairs_and_errors() {
        let p = ModelParams::parse(r#"{"DEVICE":[{"RuntimeAgent":"HAILORT","DeviceType":"HAILO8","SupportedDeviceTypes":"DUMMY/*, TFLITE/CPU"}]}"#).unwrap();
        assert_eq!(
            p.device_pairs().unwrap(),
            vec![("HAILORT".into(), "HAILO8".into()), ("DUMMY".into(), "*".into()), ("TFLITE".into(), "CPU".into())]
        );
        let p = ModelParams::parse(r#"{"DEVICE":[{"SupportedDeviceTypes":"TFLITE"}],"MODEL_PARAMETERS":[{"ModelPath":"a.tflite"}]}"#).unwrap();
        assert_eq!(p.device_pairs().unwrap_err().message, "Invalid format of supported device list 'TFLITE' for model 'a.tflite'");
    }

    #[test]
    fn merge_runtime_only() {
        let mut p = ModelParams::parse(r#"{"PRE_PROCESS":[{"InputH":4}],"POST_PROCESS":[{"OutputTopK":1,"LabelsPath":"l.json"}],"MODEL_PARAMETERS":[{"ModelPath":"m"}]}"#).unwrap();
        p.merge_runtime(&json!({"MeasureTime":true,"Checksum":"x","POST_PROCESS":[{"OutputTopK":2,"LabelsPath":"evil"}],
            "PRE_PROCESS":[{"InputImgFmt":"RAW","InputResizeMethod":"nearest"},{"InputImgFmt":"RAW"}],"MODEL_PARAMETERS":[{"ModelPath":"evil"}]}));
        assert!(p.bool("MeasureTime", 0));
        assert_eq!(p.raw("Checksum", 0), None);
        assert_eq!(p.u64("OutputTopK", 0), 2);
        assert_eq!(p.str("LabelsPath", 0), "l.json");
        assert_eq!(p.str("InputImgFmt", 0), "RAW");
        assert_eq!(p.str("InputResizeMethod", 0), "bilinear");
        assert_eq!(p.num_inputs(), 1);
        assert_eq!(p.str("ModelPath", 0), "m");
    }

    #[test]
    fn name_derived_attributes() {
        assert_eq!(name_attributes("yolo_v5s_coco--512x512_quant_n2x_orca1_1"), ("QUANT", "DENSE"));
        assert_eq!(name_attributes("resnet50_imagenet--224x224_pruned_quant_n2x_cpu_1"), ("QUANT", "PRUNED"));
        assert_eq!(name_attributes("dummy1"), ("FLOAT", "DENSE"));
        assert_eq!(name_attributes("a_quant_b_c_d"), ("QUANT", "DENSE"));
    }

    #[test]
    fn input_shape_rules() {
        let p = ModelParams::parse(r#"{"PRE_PROCESS":[{"InputN":1,"InputH":224,"InputW":224,"InputC":3},{"InputShape":[1,10]}]}"#).unwrap();
        assert_eq!(p.input_shape(0, None), vec![1, 224, 224, 3]);
        assert_eq!(p.input_shape(1, None), vec![1, 10]);
        let p = ModelParams::parse(r#"{"PRE_PROCESS":[{"InputN":1,"InputC":8}]}"#).unwrap();
        assert_eq!(p.input_shape(0, None), vec![1, 8]);
        assert_eq!(p.input_shape(0, Some(4)), vec![1, 1, 1, 8]);
    }
}
