//! ONNX/CPU agent over ONNX Runtime, loaded at run time (`ort` with `load-dynamic`).
//! Built against ORT 1.20 (`ort` 2.0.0-rc.9); the library comes from the PyPI wheel
//! `onnxruntime==1.20.1` (see scripts/install-runtimes.sh).
use super::*;
use ort::session::{builder::GraphOptimizationLevel, Session as OrtSession};
use ort::tensor::TensorElementType as Ort;
use ort::value::{DynValue, Tensor as OrtTensor, ValueType};
use std::ffi::{c_char, CStr};

/// ONNX Runtime API version `ort` 2.0.0-rc.9 asks for (ORT 1.20).
const ORT_API_VERSION: u32 = 20;
const LIB_NAMES: &[&str] = &["libonnxruntime.so.1.20.1", "libonnxruntime.so.1", "libonnxruntime.so"];

#[repr(C)]
struct OrtApiBase {
    get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "C" fn() -> *const c_char,
}

/// ONNX Runtime's container of pre-packed weights, shared by the sessions of one model file
/// so that each packed weight is kept once.
struct SharedWeights(ort::session::builder::PrepackedWeights);
// SAFETY: ONNX Runtime synchronises access to the container internally (it exists to be
// shared between sessions created and run on different threads).
unsafe impl Send for SharedWeights {}
unsafe impl Sync for SharedWeights {}

/// The container for `path`, alive while any session of that file is.
fn shared_weights(path: &Path) -> Result<Arc<SharedWeights>> {
    static LIVE: PerModelFile<SharedWeights> = PerModelFile::new();
    LIVE.get_or_make(path, std::fs::metadata(path).ok().as_ref(), || Ok(SharedWeights(ort::session::builder::PrepackedWeights::new())))
}

pub struct OnnxAgent {
    version: String,
}

impl OnnxAgent {
    /// Find the library, check it offers our API version (so `ort` never panics on it), then
    /// hand its path to `ort`.
    pub fn load() -> Result<Self> {
        static INIT: once_cell::sync::OnceCell<std::result::Result<String, String>> = once_cell::sync::OnceCell::new();
        let r = INIT.get_or_init(|| {
            let (lib, path) = open_library(LIB_NAMES).map_err(|e| e.message)?;
            // SAFETY: OrtGetApiBase is the documented entry point; the struct layout is ORT's ABI.
            let version = unsafe {
                let f: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> =
                    lib.get(b"OrtGetApiBase\0").map_err(|e| format!("{}: not ONNX Runtime ({e})", path.display()))?;
                let base = f();
                if base.is_null() {
                    return Err("OrtGetApiBase returned NULL".to_string());
                }
                if ((*base).get_api)(ORT_API_VERSION).is_null() {
                    return Err(format!("{} does not provide ONNX Runtime API version {ORT_API_VERSION} (need 1.20 or newer)", path.display()));
                }
                CStr::from_ptr(((*base).get_version_string)()).to_string_lossy().into_owned()
            };
            // Keep our handle open: the library stays loaded for the process, as ort expects.
            std::mem::forget(lib);
            let committed = std::panic::catch_unwind(|| ort::init_from(path.to_string_lossy()).with_name("dgzoo").commit());
            match committed {
                Ok(Ok(_)) => Ok(version),
                Ok(Err(e)) => Err(format!("ONNX Runtime initialisation failed: {e}")),
                Err(_) => Err("ONNX Runtime initialisation panicked".to_string()),
            }
        });
        r.clone().map(|version| OnnxAgent { version }).map_err(Error::unsupported)
    }
}

impl Agent for OnnxAgent {
    fn runtime(&self) -> &'static str {
        "ONNX"
    }
    fn devices(&self) -> Vec<(String, Vec<serde_json::Map<String, serde_json::Value>>)> {
        let dev = |i: usize| {
            let mut m = serde_json::Map::new();
            m.insert("@Index".into(), i.into());
            m.insert("ONNXRuntimeVersion".into(), self.version.clone().into());
            m
        };
        vec![("CPU".to_string(), vec![dev(0), dev(1)])]
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    // ONNX Runtime documents `Run` as safe to call concurrently on one session.
    fn concurrent(&self) -> bool {
        true
    }
    fn load(&self, model_path: &Path, opts: &SessionOptions) -> Result<Box<dyn Session>> {
        let fail = |e: ort::Error| Error::bad_model(format!("ONNX Runtime cannot load model '{}': {e}", model_path.display()));
        let mut b = OrtSession::builder().map_err(fail)?.with_optimization_level(GraphOptimizationLevel::Level3).map_err(fail)?;
        if opts.threads > 0 {
            b = b.with_intra_threads(opts.threads).map_err(fail)?;
        }
        if opts.lean {
            // ort's CPU provider without `with_arena_allocator` disables the arena.
            b = b
                .with_execution_providers([ort::execution_providers::CPUExecutionProvider::default().build()])
                .map_err(fail)?
                .with_memory_pattern(false)
                .map_err(fail)?;
        }
        let weights = shared_weights(model_path)?;
        let session = b.with_prepacked_weights(&weights.0).map_err(fail)?.commit_from_file(model_path).map_err(fail)?;
        let describe = |name: &str, t: &ValueType| -> Result<TensorInfo> {
            match t {
                ValueType::Tensor { ty, dimensions, .. } => {
                    Ok(TensorInfo { name: name.to_string(), shape: dimensions.clone(), dtype: from_ort(*ty)?, quant: None, id: None })
                }
                other => Err(Error::unsupported(format!("ONNX model input/output '{name}' is not a tensor ({other:?})"))),
            }
        };
        let inputs = session.inputs.iter().map(|i| describe(&i.name, &i.input_type)).collect::<Result<Vec<_>>>()?;
        // PySDK's ONNX agent numbers tensors inputs first: output i is tensor `inputs + i`, and
        // its results name it by that number ("1" for a one-input model).
        let ort_names: Vec<String> = session.outputs.iter().map(|o| o.name.clone()).collect();
        let outputs = session
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let id = (inputs.len() + i) as i64;
                describe(&id.to_string(), &o.output_type).map(|t| TensorInfo { id: Some(id), ..t })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(OnnxSession { session, inputs, outputs, ort_names, _weights: weights }))
    }
}

fn from_ort(t: Ort) -> Result<ElemType> {
    Ok(match t {
        Ort::Float32 => ElemType::F32,
        Ort::Float64 => ElemType::F64,
        Ort::Uint8 => ElemType::U8,
        Ort::Int8 => ElemType::I8,
        Ort::Uint16 => ElemType::U16,
        Ort::Int16 => ElemType::I16,
        Ort::Uint32 => ElemType::U32,
        Ort::Int32 => ElemType::I32,
        Ort::Uint64 => ElemType::U64,
        Ort::Int64 => ElemType::I64,
        Ort::Bool => ElemType::Bool,
        other => return Err(Error::unsupported(format!("ONNX tensor element type {other:?} is not supported"))),
    })
}

struct OnnxSession {
    session: OrtSession,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    /// ONNX Runtime's own output names (`outputs` carry PySDK's numeric names).
    ort_names: Vec<String>,
    _weights: Arc<SharedWeights>,
}

fn to_value(t: &Tensor) -> std::result::Result<DynValue, ort::Error> {
    let shape = t.info.shape.clone();
    macro_rules! mk {
        ($ty:ty) => {
            OrtTensor::<$ty>::from_array((shape, t.data.as_slice::<$ty>().to_vec())).map(|v| v.into_dyn())
        };
    }
    match t.info.dtype {
        ElemType::F32 => mk!(f32),
        ElemType::F64 => mk!(f64),
        ElemType::U8 | ElemType::Bool => mk!(u8),
        ElemType::I8 => mk!(i8),
        ElemType::U16 | ElemType::F16 => mk!(u16),
        ElemType::I16 => mk!(i16),
        ElemType::U32 => mk!(u32),
        ElemType::I32 => mk!(i32),
        ElemType::U64 => mk!(u64),
        ElemType::I64 => mk!(i64),
    }
}

fn from_value(name: &str, v: &DynValue) -> Result<Tensor> {
    let ty = v.dtype().tensor_type().ok_or_else(|| Error::inference(format!("ONNX output '{name}' is not a tensor")))?;
    let dtype = from_ort(ty)?;
    macro_rules! get {
        ($ty:ty) => {{
            let (shape, data) = v.try_extract_raw_tensor::<$ty>().map_err(|e| Error::inference(format!("ONNX output '{name}': {e}")))?;
            (shape.to_vec(), AlignedBuf::from_bytes(bytemuck::cast_slice(data)))
        }};
    }
    let (shape, data) = match dtype {
        ElemType::F32 => get!(f32),
        ElemType::F64 => get!(f64),
        ElemType::U8 => get!(u8),
        ElemType::I8 => get!(i8),
        ElemType::I16 => get!(i16),
        ElemType::U16 => get!(u16),
        ElemType::I32 => get!(i32),
        ElemType::U32 => get!(u32),
        ElemType::I64 => get!(i64),
        ElemType::U64 => get!(u64),
        other => return Err(Error::unsupported(format!("ONNX output '{name}' has unsupported type {other:?}"))),
    };
    Ok(Tensor { info: TensorInfo { name: name.to_string(), shape, dtype, quant: None, id: None }, data })
}

impl Session for OnnxSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_inner(inputs)
    }
    fn run_shared(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_inner(inputs)
    }
}

impl OnnxSession {
    fn run_inner(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::invalid(format!("model takes {} input(s), got {}", self.inputs.len(), inputs.len())));
        }
        let mut values = Vec::with_capacity(inputs.len());
        for (t, info) in inputs.iter().zip(&self.inputs) {
            if t.info.dtype != info.dtype {
                return Err(Error::invalid(format!("input '{}' must be {:?}, got {:?}", info.name, info.dtype, t.info.dtype)));
            }
            let fits = t.info.shape.len() == info.shape.len() && t.info.shape.iter().zip(&info.shape).all(|(a, b)| *b < 0 || a == b);
            let expected = t.num_elements() * t.info.dtype.size();
            if !fits || t.data.len() != expected {
                return Err(Error::invalid(format!(
                    "input '{}' has shape {:?} ({} bytes); the model expects shape {:?}",
                    info.name,
                    t.info.shape,
                    t.data.len(),
                    info.shape
                )));
            }
            let v = to_value(t).map_err(|e| Error::inference(format!("ONNX input '{}': {e}", info.name)))?;
            values.push((info.name.clone(), v));
        }
        let out = self.session.run(values).map_err(|e| Error::inference(format!("ONNX Runtime inference failed: {e}")))?;
        self.outputs
            .iter()
            .zip(&self.ort_names)
            .map(|(o, n)| {
                from_value(&o.name, &out[n.as_str()]).map(|mut t| {
                    t.info.id = o.id;
                    t
                })
            })
            .collect()
    }
}
