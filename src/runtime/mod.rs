//! Runtime agents: the inference engines behind `RUNTIME/DEVICE` pairs.
//!
//! Each agent loads its engine's shared library at run time (never linked), so a client-only
//! program needs none of them. An agent that fails to load is simply absent from system info.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod aligned;
pub mod heap;
pub mod onnx;
pub mod openvino;
pub mod tflite;

pub use aligned::{AlignedBuf, ALIGN};

/// Element type of a tensor, named as DeGirum names them (`DG_FLT`, `DG_UINT8`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F64,
    F16,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    Bool,
}

impl ElemType {
    /// DeGirum type name, as sent on the wire in raw-tensor results.
    pub fn dg_name(self) -> &'static str {
        match self {
            ElemType::F32 => "DG_FLT",
            ElemType::F64 => "DG_DBL",
            ElemType::F16 => "DG_FLT16",
            ElemType::U8 => "DG_UINT8",
            ElemType::I8 => "DG_INT8",
            ElemType::U16 => "DG_UINT16",
            ElemType::I16 => "DG_INT16",
            ElemType::U32 => "DG_UINT32",
            ElemType::I32 => "DG_INT32",
            ElemType::U64 => "DG_UINT64",
            ElemType::I64 => "DG_INT64",
            ElemType::Bool => "DG_UINT8",
        }
    }
    /// numpy dtype name (used by the golden results).
    pub fn numpy_name(self) -> &'static str {
        match self {
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
            ElemType::F16 => "float16",
            ElemType::U8 | ElemType::Bool => "uint8",
            ElemType::I8 => "int8",
            ElemType::U16 => "uint16",
            ElemType::I16 => "int16",
            ElemType::U32 => "uint32",
            ElemType::I32 => "int32",
            ElemType::U64 => "uint64",
            ElemType::I64 => "int64",
        }
    }
    pub fn size(self) -> usize {
        match self {
            ElemType::F64 | ElemType::U64 | ElemType::I64 => 8,
            ElemType::F32 | ElemType::U32 | ElemType::I32 => 4,
            ElemType::F16 | ElemType::U16 | ElemType::I16 => 2,
            ElemType::U8 | ElemType::I8 | ElemType::Bool => 1,
        }
    }
    pub fn is_integer(self) -> bool {
        !matches!(self, ElemType::F32 | ElemType::F64 | ElemType::F16)
    }
}

/// Affine quantisation: `real = scale[i] * (q - zero[i])`, `i` indexing `axis` (per-tensor: one entry, axis 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    pub axis: i32,
    pub scale: Vec<f32>,
    pub zero: Vec<i64>,
}

/// Static description of a model input or output. `shape` entries < 0 are dynamic.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: ElemType,
    pub quant: Option<Quant>,
    /// The engine's tensor index (TFLite tensor id), reported as `id` in raw-tensor results.
    pub id: Option<i64>,
}

impl TensorInfo {
    /// NHWC if the last dim is 1/3/4 channels and dim 1 is not; NCHW if dim 1 is. Rank-4 only.
    pub fn is_nchw(&self) -> bool {
        self.shape.len() == 4 && matches!(self.shape[1], 1 | 3 | 4) && !matches!(self.shape[3], 1 | 3 | 4)
    }
}

/// A concrete tensor: info with a fully known shape, plus its data.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub info: TensorInfo,
    pub data: AlignedBuf,
}

impl Tensor {
    pub fn num_elements(&self) -> usize {
        self.info.shape.iter().map(|&d| d.max(0) as usize).product()
    }
}

/// One value per model file (path, size, modification time) for as long as anything holds
/// it, so that the sessions of one model share it (weights, mappings).
pub(crate) struct PerModelFile<T>(once_cell::sync::Lazy<std::sync::Mutex<std::collections::HashMap<ModelFileKey, std::sync::Weak<T>>>>);

type ModelFileKey = (PathBuf, u64, Option<std::time::SystemTime>);

impl<T> PerModelFile<T> {
    pub(crate) const fn new() -> Self {
        PerModelFile(once_cell::sync::Lazy::new(Default::default))
    }

    /// The live value for `path` (as `meta` describes it), or a new one from `make`.
    pub(crate) fn get_or_make(&self, path: &Path, meta: Option<&std::fs::Metadata>, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let key = (path.to_path_buf(), meta.map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()));
        let mut live = self.0.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(v) = live.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(v);
        }
        let v = Arc::new(make()?);
        live.insert(key, Arc::downgrade(&v));
        Ok(v)
    }
}

/// Options for creating a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads (per frame); 0 = engine default.
    pub threads: usize,
    /// How many frames the session may run at once (1 but for the shared session of a
    /// [`Agent::concurrent`] runtime); OpenVINO sizes its streams by it.
    pub concurrency: usize,
    /// Device type (`CPU`); empty = the runtime's CPU.
    pub device: String,
    /// The model's `ExtraDeviceParams` (runtimes take the keys they know).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Keep memory low rather than shave allocation time (the AI server, where many models
    /// share a node): ONNX Runtime then runs without its CPU arena and memory patterns, which
    /// otherwise keep the largest activations of every concurrent run allocated for good.
    pub lean: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { threads: 0, concurrency: 1, device: String::new(), extra: Default::default(), lean: false }
    }
}

/// One loaded model instance. Not shared between threads at the same time (`&mut self`);
/// the model layer keeps a pool of sessions for concurrency.
pub trait Session: Send + Sync {
    fn inputs(&self) -> &[TensorInfo];
    fn outputs(&self) -> &[TensorInfo];
    /// Run one inference. `inputs[i]` is the tensor for model input `i`, with its concrete shape
    /// (batch dimension resolved) and the input's element type.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
    /// [`Session::run`] through a shared reference, from several threads at once; only for
    /// sessions of [`Agent::concurrent`] runtimes.
    fn run_shared(&self, _inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Err(Error::internal("this runtime runs one frame at a time per session"))
    }
}

/// A runtime agent: `RUNTIME` name (e.g. `ONNX`), its devices, and a session factory.
pub trait Agent: Send + Sync {
    /// Runtime name as in `RuntimeAgent` (`ONNX`, `TFLITE`).
    fn runtime(&self) -> &'static str;
    /// Device names this agent offers (`CPU`), with the per-device info for system info.
    fn devices(&self) -> Vec<(String, Vec<serde_json::Map<String, serde_json::Value>>)>;
    /// Engine version string (for system info).
    fn version(&self) -> String;
    /// Create a session for a model file.
    fn load(&self, model_path: &Path, opts: &SessionOptions) -> Result<Box<dyn Session>>;
    /// Whether several threads may run one session at once ([`Session::run_shared`]; ONNX
    /// Runtime allows it): an engine then needs no extra copies of the model.
    fn concurrent(&self) -> bool {
        false
    }
    /// How many frames one listed device runs at once (OpenVINO lists one CPU device that
    /// runs a frame per stream); the engine runs at most this many per selected device.
    fn frames_per_device(&self) -> usize {
        1
    }
}

/// Directories searched for runtime libraries, in order: `$DGZOO_RUNTIME_DIR`, then the
/// per-user data dir (the process's [`Settings`](crate::settings::Settings): libraries load
/// once per process). Plain library names (system path) are tried last by each agent. No
/// build-machine path is compiled in: inside the repository, cargo sets `DGZOO_RUNTIME_DIR`
/// to `runtimes/` for the processes it runs (.cargo/config.toml) unless it is already set.
pub fn runtime_dirs() -> Vec<PathBuf> {
    let settings = crate::settings::Settings::process();
    let mut dirs = settings.runtime_dirs.clone();
    if let Some(home) = &settings.home {
        dirs.push(home.join(".local/share/dgzoo/runtimes"));
    }
    dirs
}

/// Open the first library among `names`, looked up in [`runtime_dirs`] then on the system path.
pub(crate) fn open_library(names: &[&str]) -> Result<(libloading::Library, PathBuf)> {
    let mut tried = Vec::new();
    for dir in runtime_dirs() {
        for n in names {
            let p = dir.join(n);
            if p.exists() {
                // SAFETY: loading a runtime library runs its initialisers; these are the
                // engine libraries we ask for by name.
                match unsafe { libloading::Library::new(&p) } {
                    Ok(lib) => {
                        tracing::debug!(target: "dgzoo::runtime", path = %p.display(), "runtime library loaded");
                        return Ok((lib, p));
                    }
                    Err(e) => tried.push(format!("{}: {e}", p.display())),
                }
            }
        }
    }
    for n in names {
        // SAFETY: as above, system search path.
        match unsafe { libloading::Library::new(n) } {
            Ok(lib) => return Ok((lib, PathBuf::from(n))),
            Err(e) => tried.push(format!("{n}: {e}")),
        }
    }
    Err(Error::unsupported(format!("cannot load any of {names:?} ({})", tried.join("; "))))
}

/// The runtimes dgzoo has agents for, in system-info order.
pub const RUNTIMES: [&str; 3] = ["ONNX", "OPENVINO", "TFLITE"];

/// Load one runtime's agent, once per process. Runtimes load only when something needs
/// them, so a process running a TFLite model never maps ONNX Runtime (memory, start-up).
/// `DGZOO_NO_RUNTIMES=1` hides them all (client-only behaviour, tests).
fn discover(runtime: &str) -> Option<&'static std::result::Result<Arc<dyn Agent>, String>> {
    static CELLS: [once_cell::sync::OnceCell<std::result::Result<Arc<dyn Agent>, String>>; 3] =
        [once_cell::sync::OnceCell::new(), once_cell::sync::OnceCell::new(), once_cell::sync::OnceCell::new()];
    let i = RUNTIMES.iter().position(|r| *r == runtime)?;
    Some(CELLS[i].get_or_init(|| {
        if crate::settings::Settings::process().no_runtimes {
            return Err("runtimes are disabled by DGZOO_NO_RUNTIMES".into());
        }
        let agent: Result<Arc<dyn Agent>> = match i {
            0 => onnx::OnnxAgent::load().map(|a| Arc::new(a) as Arc<dyn Agent>),
            1 => openvino::OpenVinoAgent::load().map(|a| Arc::new(a) as Arc<dyn Agent>),
            _ => tflite::TfliteAgent::load().map(|a| Arc::new(a) as Arc<dyn Agent>),
        };
        agent.map_err(|e| e.message)
    }))
}

/// The runtime agents among `runtimes` that load on this machine, in [`RUNTIMES`] order.
pub fn agents_among(runtimes: &[&str]) -> Vec<Arc<dyn Agent>> {
    RUNTIMES.iter().filter(|r| runtimes.contains(r)).filter_map(|r| discover(r)?.as_ref().ok().cloned()).collect()
}

/// All runtime agents that load on this machine.
pub fn agents() -> Vec<Arc<dyn Agent>> {
    agents_among(&RUNTIMES)
}

/// Find the agent for a runtime name (loading that runtime only).
pub fn agent(runtime: &str) -> Result<Arc<dyn Agent>> {
    let why = match discover(runtime) {
        Some(Ok(a)) => return Ok(a.clone()),
        Some(Err(e)) => format!(" ({e})"),
        None => String::new(),
    };
    Err(Error::unsupported(format!(
        "runtime {runtime} is not available on this system{why}; install it with \
         scripts/install-runtimes.sh or point DGZOO_RUNTIME_DIR at a folder holding its library"
    )))
}

/// Why runtimes failed to load, for diagnostics (`dgzoo sys-info`); loads them all.
pub fn load_errors() -> Vec<(String, String)> {
    RUNTIMES
        .iter()
        .filter_map(|r| match discover(r)? {
            Err(e) => Some((r.to_string(), e.clone())),
            Ok(_) => None,
        })
        .collect()
}
