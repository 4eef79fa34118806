//! TFLITE/CPU agent over LiteRT's C API (`libLiteRt.so` from the PyPI wheel
//! `ai-edge-litert==2.1.4`, see scripts/install-runtimes.sh), loaded at run time.
//!
//! That library exports only the LiteRT "CompiledModel" C API (no classic `TfLiteInterpreter`
//! API). The declarations below follow the `litert/c/*.h` headers of LiteRT release v2.1.4;
//! later releases (2.3.0) changed the ABI, so do not mix.
//!
//! Flow per session: environment (CPU accelerator only) → model from file → options
//! (CPU accelerator, optional XNNPACK opaque options carrying `num_threads`) → compiled model.
//! Inputs/outputs are described from signature 0's subgraph (subgraph order, which is the order
//! `LiteRtRunCompiledModel` expects buffers in). Host-memory tensor buffers are created once from
//! the compiled model's buffer requirements and reused across runs; they are recreated only when
//! an input is resized.
use super::*;
use std::ffi::{c_char, c_void, CStr, CString};

/// The release whose headers these declarations follow (and that install-runtimes.sh installs).
const LITERT_VERSION: &str = "2.1.4";

// ---------------------------------------------------------------------------------------------
// FFI types (litert_common.h, litert_layout.h, litert_model_types.h, litert_any.h,
// litert_environment_options.h)
// ---------------------------------------------------------------------------------------------

type Status = i32; // LiteRtStatus; 0 = kLiteRtStatusOk
type ParamIndex = usize; // LiteRtParamIndex = size_t

type EnvH = *mut c_void;
type ModelH = *mut c_void;
type SignatureH = *mut c_void;
type SubgraphH = *mut c_void;
type TensorH = *mut c_void;
type OptionsH = *mut c_void;
type OpaqueOptionsH = *mut c_void;
type CompiledModelH = *mut c_void;
type BufferH = *mut c_void;
type BufferReqH = *mut c_void;

const MAX_RANK: usize = 8;

/// `LiteRtLayout`: `unsigned rank:7; bool has_strides:1;` packed in the first 4 bytes,
/// then `int32_t dimensions[8]`, `uint32_t strides[8]` (68 bytes on 64-bit Linux).
#[repr(C)]
#[derive(Clone, Copy)]
struct Layout {
    bits: u32,
    dims: [i32; MAX_RANK],
    strides: [u32; MAX_RANK],
}

impl Layout {
    fn zeroed() -> Self {
        Layout { bits: 0, dims: [0; MAX_RANK], strides: [0; MAX_RANK] }
    }
    fn rank(&self) -> usize {
        (self.bits & 0x7f) as usize
    }
    fn dims(&self) -> &[i32] {
        &self.dims[..self.rank().min(MAX_RANK)]
    }
    fn from_dims(dims: &[i64]) -> Self {
        let mut l = Layout::zeroed();
        l.bits = dims.len() as u32 & 0x7f; // has_strides = false
        for (d, &v) in l.dims.iter_mut().zip(dims) {
            *d = v as i32;
        }
        l
    }
}

/// `LiteRtRankedTensorType` (72 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct RankedTensorType {
    element_type: i32,
    layout: Layout,
}

/// `LiteRtQuantizationPerTensor`.
#[repr(C)]
struct QuantPerTensor {
    scale: f32,
    zero_point: i64,
}

/// `LiteRtQuantizationPerChannel`.
#[repr(C)]
struct QuantPerChannel {
    quantized_dimension: i32,
    num_channels: u64,
    scales: *mut f32,
    zero_points: *mut i64,
}

/// `LiteRtAny` (only the int member of its union is used here).
#[repr(C)]
#[derive(Clone, Copy)]
struct Any {
    kind: i32,
    int_value: i64,
}

/// `LiteRtEnvOption`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EnvOption {
    tag: i32,
    value: Any,
}

const _: () = assert!(std::mem::size_of::<Layout>() == 68);
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);
const _: () = assert!(std::mem::size_of::<QuantPerTensor>() == 16);
const _: () = assert!(std::mem::size_of::<QuantPerChannel>() == 32);
const _: () = assert!(std::mem::size_of::<EnvOption>() == 24);

// LiteRtElementType
const ET_FLOAT32: i32 = 1;
const ET_INT32: i32 = 2;
const ET_UINT8: i32 = 3;
const ET_INT64: i32 = 4;
const ET_BOOL: i32 = 6;
const ET_INT16: i32 = 7;
const ET_INT8: i32 = 9;
const ET_FLOAT16: i32 = 10;
const ET_FLOAT64: i32 = 11;
const ET_UINT64: i32 = 13;
const ET_UINT32: i32 = 16;
const ET_UINT16: i32 = 17;

// LiteRtTensorTypeId
const RANKED_TENSOR_TYPE: i32 = 0;
// LiteRtQuantizationTypeId
const QUANT_NONE: i32 = 0;
const QUANT_PER_TENSOR: i32 = 1;
const QUANT_PER_CHANNEL: i32 = 2;
// LiteRtHwAccelerators
const HW_CPU: i32 = 1;
// LiteRtTensorBufferLockMode
const LOCK_READ: i32 = 0;
const LOCK_WRITE: i32 = 1;
// LiteRtEnvOptionTag / LiteRtAnyType
const ENV_TAG_AUTO_REGISTER_ACCELERATORS: i32 = 24;
const ENV_TAG_MIN_LOGGER_SEVERITY: i32 = 25;
const ANY_INT: i32 = 2;
// LiteRtLogSeverity
const LOG_SEVERITY_ERROR: i64 = 3;
/// Identifier of the CPU (XNNPACK) accelerator's opaque options (`LrtGetCpuOptionsIdentifier`).
/// The payload is a NUL-terminated TOML string (`num_threads = N`), parsed by the runtime.
const CPU_OPTIONS_ID: &CStr = c"xnnpack";

/// Name of a LiteRtStatus (litert_common.h; `LiteRtGetStatusString` is not exported).
fn status_name(s: Status) -> &'static str {
    match s {
        0 => "Ok",
        1 => "ErrorInvalidArgument",
        2 => "ErrorMemoryAllocationFailure",
        3 => "ErrorRuntimeFailure",
        4 => "ErrorMissingInputTensor",
        5 => "ErrorUnsupported",
        6 => "ErrorNotFound",
        7 => "ErrorTimeoutExpired",
        8 => "ErrorWrongVersion",
        9 => "ErrorUnknown",
        10 => "ErrorAlreadyExists",
        100 => "Cancelled",
        500 => "ErrorFileIO",
        501 => "ErrorInvalidFlatbuffer",
        502 => "ErrorDynamicLoading",
        503 => "ErrorSerialization",
        504 => "ErrorCompilation",
        1000 => "ErrorIndexOOB",
        1001 => "ErrorInvalidIrType",
        1002 => "ErrorInvalidGraphInvariant",
        1003 => "ErrorGraphModification",
        4000 => "ErrorUnsupportedRuntimeVersion",
        4001 => "ErrorUnsupportedCompilerVersion",
        4002 => "ErrorIncompatibleByteCodeVersion",
        5000 => "ErrorUnsupportedOpShapeInferer",
        5001 => "ErrorShapeInferenceFailed",
        _ => "unknown status",
    }
}

// ---------------------------------------------------------------------------------------------
// Symbol table
// ---------------------------------------------------------------------------------------------

macro_rules! litert_api {
    ($( $field:ident = $sym:literal : fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Resolved `libLiteRt.so` entry points. The function pointers stay valid while `_lib`
        /// is loaded, which is forever: the library registers `atexit` handlers, so unloading it
        /// (dlclose) before the process exits makes the exit crash. It is therefore never closed.
        struct Api {
            $( $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            _lib: std::mem::ManuallyDrop<libloading::Library>,
        }

        impl Api {
            fn resolve(lib: libloading::Library, path: &Path) -> Result<Api> {
                // SAFETY: each symbol is looked up by its exact C name and given the signature
                // declared for it in LiteRT v2.1.4's C headers.
                unsafe {
                    $(
                        let $field: unsafe extern "C" fn($($arg),*) $(-> $ret)? = *lib
                            .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!($sym, "\0").as_bytes(),
                            )
                            .map_err(|e| Error::unsupported(format!(
                                "{} does not export {} (LiteRT {LITERT_VERSION} C API expected): {e}",
                                path.display(), $sym
                            )))?;
                    )*
                    Ok(Api { $( $field, )* _lib: std::mem::ManuallyDrop::new(lib) })
                }
            }
        }
    };
}

litert_api! {
    create_environment = "LiteRtCreateEnvironment": fn(i32, *const EnvOption, *mut EnvH) -> Status;
    destroy_environment = "LiteRtDestroyEnvironment": fn(EnvH);

    create_model_from_file = "LiteRtCreateModelFromFile": fn(*const c_char, *mut ModelH) -> Status;
    create_model_from_buffer = "LiteRtCreateModelFromBuffer": fn(*const c_void, usize, *mut ModelH) -> Status;
    destroy_model = "LiteRtDestroyModel": fn(ModelH);
    get_num_model_signatures = "LiteRtGetNumModelSignatures": fn(ModelH, *mut ParamIndex) -> Status;
    get_model_signature = "LiteRtGetModelSignature": fn(ModelH, ParamIndex, *mut SignatureH) -> Status;
    get_signature_subgraph = "LiteRtGetSignatureSubgraph": fn(SignatureH, *mut SubgraphH) -> Status;
    get_num_subgraph_inputs = "LiteRtGetNumSubgraphInputs": fn(SubgraphH, *mut ParamIndex) -> Status;
    get_num_subgraph_outputs = "LiteRtGetNumSubgraphOutputs": fn(SubgraphH, *mut ParamIndex) -> Status;
    get_subgraph_input = "LiteRtGetSubgraphInput": fn(SubgraphH, ParamIndex, *mut TensorH) -> Status;
    get_subgraph_output = "LiteRtGetSubgraphOutput": fn(SubgraphH, ParamIndex, *mut TensorH) -> Status;
    get_tensor_name = "LiteRtGetTensorName": fn(TensorH, *mut *const c_char) -> Status;
    get_tensor_index = "LiteRtGetTensorIndex": fn(TensorH, *mut u32) -> Status;
    get_tensor_type_id = "LiteRtGetTensorTypeId": fn(TensorH, *mut i32) -> Status;
    get_ranked_tensor_type = "LiteRtGetRankedTensorType": fn(TensorH, *mut RankedTensorType) -> Status;
    get_quantization_type_id = "LiteRtGetQuantizationTypeId": fn(TensorH, *mut i32) -> Status;
    get_per_tensor_quantization = "LiteRtGetPerTensorQuantization": fn(TensorH, *mut QuantPerTensor) -> Status;
    get_per_channel_quantization = "LiteRtGetPerChannelQuantization": fn(TensorH, *mut QuantPerChannel) -> Status;

    create_options = "LiteRtCreateOptions": fn(*mut OptionsH) -> Status;
    destroy_options = "LiteRtDestroyOptions": fn(OptionsH);
    set_options_hardware_accelerators = "LiteRtSetOptionsHardwareAccelerators": fn(OptionsH, i32) -> Status;
    create_opaque_options = "LiteRtCreateOpaqueOptions":
        fn(*const c_char, *mut c_void, Option<unsafe extern "C" fn(*mut c_void)>, *mut OpaqueOptionsH) -> Status;
    destroy_opaque_options = "LiteRtDestroyOpaqueOptions": fn(OpaqueOptionsH);
    add_opaque_options = "LiteRtAddOpaqueOptions": fn(OptionsH, OpaqueOptionsH) -> Status;

    create_compiled_model = "LiteRtCreateCompiledModel": fn(EnvH, ModelH, OptionsH, *mut CompiledModelH) -> Status;
    destroy_compiled_model = "LiteRtDestroyCompiledModel": fn(CompiledModelH);
    get_input_buffer_requirements = "LiteRtGetCompiledModelInputBufferRequirements":
        fn(CompiledModelH, ParamIndex, ParamIndex, *mut BufferReqH) -> Status;
    get_output_buffer_requirements = "LiteRtGetCompiledModelOutputBufferRequirements":
        fn(CompiledModelH, ParamIndex, ParamIndex, *mut BufferReqH) -> Status;
    get_input_tensor_layout = "LiteRtGetCompiledModelInputTensorLayout":
        fn(CompiledModelH, ParamIndex, ParamIndex, *mut Layout) -> Status;
    get_output_tensor_layouts = "LiteRtGetCompiledModelOutputTensorLayouts":
        fn(CompiledModelH, ParamIndex, usize, *mut Layout, bool) -> Status;
    resize_input_tensor = "LiteRtCompiledModelResizeInputTensor":
        fn(CompiledModelH, ParamIndex, ParamIndex, *const i32, usize) -> Status;
    run_compiled_model = "LiteRtRunCompiledModel":
        fn(CompiledModelH, ParamIndex, usize, *mut BufferH, usize, *mut BufferH) -> Status;

    get_buffer_requirements_size = "LiteRtGetTensorBufferRequirementsBufferSize": fn(BufferReqH, *mut usize) -> Status;
    create_managed_buffer_from_requirements = "LiteRtCreateManagedTensorBufferFromRequirements":
        fn(EnvH, *const RankedTensorType, BufferReqH, *mut BufferH) -> Status;
    get_tensor_buffer_size = "LiteRtGetTensorBufferSize": fn(BufferH, *mut usize) -> Status;
    lock_tensor_buffer = "LiteRtLockTensorBuffer": fn(BufferH, *mut *mut c_void, i32) -> Status;
    unlock_tensor_buffer = "LiteRtUnlockTensorBuffer": fn(BufferH) -> Status;
    destroy_tensor_buffer = "LiteRtDestroyTensorBuffer": fn(BufferH);
}

/// Turn a LiteRtStatus into a Result, naming the function.
fn check(status: Status, func: &str) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::inference(format!("LiteRT {func} failed: status {status} ({})", status_name(status))))
    }
}

/// Payload destructor handed to `LiteRtCreateOpaqueOptions` for the CString payloads we create.
unsafe extern "C" fn free_cstring_payload(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: `p` came from `CString::into_raw` in `cpu_options`.
        drop(unsafe { CString::from_raw(p as *mut c_char) });
    }
}

fn elem_type(t: i32) -> Option<ElemType> {
    Some(match t {
        ET_FLOAT32 => ElemType::F32,
        ET_FLOAT64 => ElemType::F64,
        ET_FLOAT16 => ElemType::F16,
        ET_UINT8 => ElemType::U8,
        ET_INT8 => ElemType::I8,
        ET_UINT16 => ElemType::U16,
        ET_INT16 => ElemType::I16,
        ET_UINT32 => ElemType::U32,
        ET_INT32 => ElemType::I32,
        ET_UINT64 => ElemType::U64,
        ET_INT64 => ElemType::I64,
        ET_BOOL => ElemType::Bool,
        _ => return None,
    })
}

fn elem_type_name(t: i32) -> String {
    match t {
        0 => "none".into(),
        5 => "string".into(),
        8 => "complex64".into(),
        12 => "complex128".into(),
        14 => "resource".into(),
        15 => "variant".into(),
        18 => "int4".into(),
        19 => "bfloat16".into(),
        20 => "int2".into(),
        _ => format!("element type {t}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Agent
// ---------------------------------------------------------------------------------------------

/// The TFLITE/CPU runtime agent (LiteRT CompiledModel API on the CPU/XNNPACK accelerator).
pub struct TfliteAgent {
    api: Arc<Api>,
    path: PathBuf,
}

impl TfliteAgent {
    /// Open `libLiteRt.so` and resolve every entry point used by the sessions.
    pub fn load() -> Result<Self> {
        let (lib, path) = open_library(&["libLiteRt.so"])?;
        let api = Api::resolve(lib, &path)?;
        Ok(TfliteAgent { api: Arc::new(api), path })
    }

    /// Where the library was loaded from.
    pub fn library_path(&self) -> &Path {
        &self.path
    }
}

impl Agent for TfliteAgent {
    fn runtime(&self) -> &'static str {
        "TFLITE"
    }
    fn devices(&self) -> Vec<(String, Vec<serde_json::Map<String, serde_json::Value>>)> {
        let dev = |i: i64| {
            let mut m = serde_json::Map::new();
            m.insert("@Index".into(), serde_json::Value::from(i));
            m
        };
        vec![("CPU".to_string(), vec![dev(0), dev(1)])]
    }
    fn version(&self) -> String {
        // libLiteRt.so exports no version query; this is the release the ABI is declared for.
        LITERT_VERSION.to_string()
    }
    fn load(&self, model_path: &Path, opts: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(TfliteSession::new(self.api.clone(), model_path, opts)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

/// Owned LiteRT handles, destroyed in dependency order (buffers → compiled model → options →
/// model → environment). Null handles are skipped, so a partly built session frees cleanly.
struct Handles {
    api: Arc<Api>,
    env: EnvH,
    model: ModelH,
    options: OptionsH,
    compiled: CompiledModelH,
    inputs: Vec<BufferH>,
    outputs: Vec<BufferH>,
    /// The flatbuffer the model reads (a private copy of the file); a field, so it is
    /// dropped after the model (fields drop after `Drop::drop`).
    model_data: Option<Arc<AlignedBuf>>,
}

impl Handles {
    fn destroy_buffer(&self, b: BufferH) {
        if !b.is_null() {
            // SAFETY: `b` is a tensor buffer we created and still own.
            unsafe { (self.api.destroy_tensor_buffer)(b) }
        }
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        let bufs: Vec<BufferH> = std::mem::take(&mut self.inputs).into_iter().chain(std::mem::take(&mut self.outputs)).collect();
        for b in bufs {
            self.destroy_buffer(b);
        }
        // SAFETY: each handle was created by the matching LiteRtCreate* call and is destroyed
        // once; the compiled model references the model and environment, so it goes first.
        unsafe {
            if !self.compiled.is_null() {
                (self.api.destroy_compiled_model)(self.compiled);
            }
            if !self.options.is_null() {
                (self.api.destroy_options)(self.options);
            }
            if !self.model.is_null() {
                (self.api.destroy_model)(self.model);
            }
            if !self.env.is_null() {
                (self.api.destroy_environment)(self.env);
            }
        }
    }
}

struct TfliteSession {
    h: Handles,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    /// LiteRT element type of each input / output (for buffer tensor types).
    in_etype: Vec<i32>,
    out_etype: Vec<i32>,
    /// Current runtime shapes (what the buffers are sized for).
    in_dims: Vec<Vec<i64>>,
    out_dims: Vec<Vec<i64>>,
    /// Byte size of each buffer's payload (the tensor's bytes).
    in_bytes: Vec<usize>,
    out_bytes: Vec<usize>,
    model_path: PathBuf,
    /// An input was resized since the output buffers were made.
    outputs_stale: bool,
}

// SAFETY: the LiteRT handles are owned exclusively by this session and only used through
// `&mut self` (or `&self` for read-only metadata held in Rust), never from two threads at once.
unsafe impl Send for TfliteSession {}
// SAFETY: through `&self` only the Rust-side metadata is read; every LiteRT call needs `&mut`.
unsafe impl Sync for TfliteSession {}

const SIG: ParamIndex = 0;

impl TfliteSession {
    fn new(api: Arc<Api>, path: &Path, opts: &SessionOptions) -> Result<Self> {
        let ctx = |e: Error| e.context(format!("TFLITE model {}", path.display()));
        if !path.is_file() {
            return Err(Error::not_found(format!("model file {} does not exist", path.display())));
        }
        let cpath =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::invalid(format!("model path {} contains a NUL byte", path.display())))?;
        let mut h = Handles {
            api: api.clone(),
            env: std::ptr::null_mut(),
            model: std::ptr::null_mut(),
            options: std::ptr::null_mut(),
            compiled: std::ptr::null_mut(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            model_data: None,
        };

        // Environment: register only the CPU accelerator (no GPU/NPU probing) and ask for
        // error-level logging (the 2.1.4 wheel seems to ignore this tag and logs at INFO).
        let env_opts = [
            EnvOption { tag: ENV_TAG_AUTO_REGISTER_ACCELERATORS, value: Any { kind: ANY_INT, int_value: HW_CPU as i64 } },
            EnvOption { tag: ENV_TAG_MIN_LOGGER_SEVERITY, value: Any { kind: ANY_INT, int_value: LOG_SEVERITY_ERROR } },
        ];
        // SAFETY: valid option array and out-pointer.
        check(unsafe { (api.create_environment)(env_opts.len() as i32, env_opts.as_ptr(), &mut h.env) }, "LiteRtCreateEnvironment").map_err(ctx)?;

        // Model. LiteRtCreateModelFromFile does not verify the flatbuffer (a truncated model
        // crashes it) while LiteRtCreateModelFromBuffer does, so the model is made from the
        // file read by us: one copy per file, shared by all sessions of the model.
        let (st, what) = match read_model_file(path)? {
            Some(map) => {
                let data = h.model_data.insert(map);
                // SAFETY: the buffer lives in `h` until after the model is destroyed.
                let st = unsafe { (api.create_model_from_buffer)(data.as_bytes().as_ptr() as *const c_void, data.as_bytes().len(), &mut h.model) };
                (st, "LiteRtCreateModelFromBuffer")
            }
            // SAFETY: NUL-terminated path, valid out-pointer.
            None => (unsafe { (api.create_model_from_file)(cpath.as_ptr(), &mut h.model) }, "LiteRtCreateModelFromFile"),
        };
        if st != 0 || h.model.is_null() {
            return Err(Error::bad_model(format!("{} is not a valid TFLite model ({what}: status {st} ({}))", path.display(), status_name(st))));
        }

        // Describe inputs/outputs from signature 0's subgraph.
        let (inputs, in_etype, outputs, out_etype) = describe(&api, h.model).map_err(ctx)?;

        // Compilation options: CPU accelerator, thread count through XNNPACK's opaque options.
        // SAFETY: valid out-pointer; the options object is owned by `h`.
        check(unsafe { (api.create_options)(&mut h.options) }, "LiteRtCreateOptions").map_err(ctx)?;
        check(unsafe { (api.set_options_hardware_accelerators)(h.options, HW_CPU) }, "LiteRtSetOptionsHardwareAccelerators").map_err(ctx)?;
        if opts.threads > 0 {
            add_cpu_options(&api, h.options, opts.threads).map_err(ctx)?;
        }

        // SAFETY: env, model and options are live; out-pointer valid.
        let st = unsafe { (api.create_compiled_model)(h.env, h.model, h.options, &mut h.compiled) };
        if st != 0 || h.compiled.is_null() {
            return Err(Error::bad_model(format!(
                "cannot compile TFLite model {} for CPU (LiteRtCreateCompiledModel: status {st} ({}))",
                path.display(),
                status_name(st)
            )));
        }

        let n_in = inputs.len();
        let n_out = outputs.len();
        let mut s = TfliteSession {
            h,
            inputs,
            outputs,
            in_etype,
            out_etype,
            in_dims: vec![Vec::new(); n_in],
            out_dims: vec![Vec::new(); n_out],
            in_bytes: vec![0; n_in],
            out_bytes: vec![0; n_out],
            model_path: path.to_path_buf(),
            outputs_stale: false,
        };
        s.h.inputs = vec![std::ptr::null_mut(); n_in];
        s.h.outputs = vec![std::ptr::null_mut(); n_out];
        for i in 0..n_in {
            let mut l = Layout::zeroed();
            // SAFETY: live compiled model, index in range, out-pointer valid.
            check(unsafe { (s.h.api.get_input_tensor_layout)(s.h.compiled, SIG, i, &mut l) }, "LiteRtGetCompiledModelInputTensorLayout").map_err(ctx)?;
            s.in_dims[i] = l.dims().iter().map(|&d| d as i64).collect();
            s.make_input_buffer(i).map_err(ctx)?;
        }
        s.refresh_outputs().map_err(ctx)?;
        Ok(s)
    }

    /// (Re)create the host buffer of input `i` for its current dims.
    fn make_input_buffer(&mut self, i: usize) -> Result<()> {
        let api = &self.h.api;
        let mut req: BufferReqH = std::ptr::null_mut();
        // SAFETY: live compiled model; the requirements stay owned by it.
        check(unsafe { (api.get_input_buffer_requirements)(self.h.compiled, SIG, i, &mut req) }, "LiteRtGetCompiledModelInputBufferRequirements")?;
        let buf = self.create_buffer(req, self.in_etype[i], &self.in_dims[i])?;
        let old = std::mem::replace(&mut self.h.inputs[i], buf.0);
        self.h.destroy_buffer(old);
        self.in_bytes[i] = buf.1;
        Ok(())
    }

    /// Query the current output shapes (allocating if an input was resized) and (re)create the
    /// output buffers whose shape changed.
    fn refresh_outputs(&mut self) -> Result<()> {
        let n = self.outputs.len();
        let mut layouts = vec![Layout::zeroed(); n];
        // SAFETY: `layouts` holds exactly `n` entries as the function requires.
        check(
            unsafe { (self.h.api.get_output_tensor_layouts)(self.h.compiled, SIG, n, layouts.as_mut_ptr(), true) },
            "LiteRtGetCompiledModelOutputTensorLayouts",
        )?;
        for (i, l) in layouts.iter().enumerate() {
            let dims: Vec<i64> = l.dims().iter().map(|&d| d as i64).collect();
            if dims == self.out_dims[i] && !self.h.outputs[i].is_null() {
                continue;
            }
            self.out_dims[i] = dims;
            let mut req: BufferReqH = std::ptr::null_mut();
            // SAFETY: as in make_input_buffer.
            check(unsafe { (self.h.api.get_output_buffer_requirements)(self.h.compiled, SIG, i, &mut req) }, "LiteRtGetCompiledModelOutputBufferRequirements")?;
            let buf = self.create_buffer(req, self.out_etype[i], &self.out_dims[i])?;
            let old = std::mem::replace(&mut self.h.outputs[i], buf.0);
            self.h.destroy_buffer(old);
            self.out_bytes[i] = buf.1;
        }
        Ok(())
    }

    /// Create a managed host buffer from requirements; returns (buffer, tensor byte size).
    fn create_buffer(&self, req: BufferReqH, etype: i32, dims: &[i64]) -> Result<(BufferH, usize)> {
        let api = &self.h.api;
        if dims.iter().any(|&d| d <= 0) || dims.len() > MAX_RANK {
            return Err(Error::unsupported(format!("tensor shape {dims:?} is not static; cannot allocate a buffer for it")));
        }
        let tt = RankedTensorType { element_type: etype, layout: Layout::from_dims(dims) };
        let mut req_size = 0usize;
        // SAFETY: `req` is a live requirements handle owned by the compiled model.
        check(unsafe { (api.get_buffer_requirements_size)(req, &mut req_size) }, "LiteRtGetTensorBufferRequirementsBufferSize")?;
        let mut buf: BufferH = std::ptr::null_mut();
        // SAFETY: valid tensor type, live env and requirements, out-pointer valid.
        check(unsafe { (api.create_managed_buffer_from_requirements)(self.h.env, &tt, req, &mut buf) }, "LiteRtCreateManagedTensorBufferFromRequirements")?;
        let elem = elem_type(etype).map(|e| e.size()).unwrap_or(1);
        let bytes = dims.iter().product::<i64>() as usize * elem;
        let mut have = 0usize;
        // SAFETY: live buffer.
        let st = unsafe { (api.get_tensor_buffer_size)(buf, &mut have) };
        if st != 0 || have < bytes {
            self.h.destroy_buffer(buf);
            check(st, "LiteRtGetTensorBufferSize")?;
            return Err(Error::internal(format!("LiteRT buffer of {have} bytes is smaller than the tensor ({bytes} bytes; requirement {req_size})")));
        }
        Ok((buf, bytes))
    }

    /// Make input `i`'s runtime shape equal `want`. Only inputs with dynamic dims in the model
    /// (e.g. a `-1` batch) can be resized, and only in those dims (strict resize). A fully static
    /// model is not resized: LiteRT 2.1.4's non-strict resize is accepted by the API but the
    /// XNNPACK delegate then fails to reshape ("failed to reshape runtime").
    fn ensure_input_shape(&mut self, i: usize, want: &[i64]) -> Result<()> {
        if want == self.in_dims[i].as_slice() {
            return Ok(());
        }
        let info = &self.inputs[i];
        let bad = |why: String| Error::invalid(format!("input {i} ('{}') has shape {want:?} but the model expects {:?}{why}", info.name, self.in_dims[i]));
        let fits = want.len() == info.shape.len() && info.shape.iter().zip(want).all(|(&m, &w)| w > 0 && w <= i32::MAX as i64 && (m < 0 || m == w));
        if !fits {
            return Err(bad(String::new()));
        }
        let dims: Vec<i32> = want.iter().map(|&d| d as i32).collect();
        // SAFETY: live compiled model; `dims` outlives the call.
        let st = unsafe { (self.h.api.resize_input_tensor)(self.h.compiled, SIG, i, dims.as_ptr(), dims.len()) };
        if st != 0 {
            return Err(bad(format!(" and LiteRtCompiledModelResizeInputTensor failed: status {st} ({})", status_name(st))));
        }
        self.in_dims[i] = want.to_vec();
        self.outputs_stale = true;
        self.make_input_buffer(i)?;
        Ok(())
    }

    fn run_inner(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::invalid(format!("model {} takes {} input(s), got {}", self.model_path.display(), self.inputs.len(), inputs.len())));
        }
        // Shapes first (a resize reallocates buffers), then data. A tensor with exactly the
        // bytes of the current input is fed as is; otherwise its shape must be a valid resize.
        for (i, t) in inputs.iter().enumerate() {
            let info = &self.inputs[i];
            if t.info.dtype.size() != info.dtype.size() {
                return Err(Error::invalid(format!("input {i} ('{}') has element type {:?} but the model expects {:?}", info.name, t.info.dtype, info.dtype)));
            }
            if t.data.len() == self.in_bytes[i] {
                continue;
            }
            let shape_bytes = t.info.shape.iter().map(|&d| d.max(0) as usize).product::<usize>() * info.dtype.size();
            if shape_bytes != t.data.len() || t.info.shape == self.in_dims[i] {
                return Err(Error::invalid(format!(
                    "input {i} ('{}') has {} bytes (shape {:?}) but the model expects {} bytes (shape {:?}, {:?})",
                    info.name,
                    t.data.len(),
                    t.info.shape,
                    self.in_bytes[i],
                    self.in_dims[i],
                    info.dtype
                )));
            }
            self.ensure_input_shape(i, &t.info.shape)?;
        }
        if self.outputs_stale {
            self.refresh_outputs().map_err(|e| e.context(format!("cannot prepare the model for input shapes {:?}", self.in_dims)))?;
            self.outputs_stale = false;
        }
        let api = self.h.api.clone();
        for (i, t) in inputs.iter().enumerate() {
            let buf = self.h.inputs[i];
            let n = self.in_bytes[i];
            if t.data.len() != n {
                return Err(Error::invalid(format!("input {i} ('{}') has {} bytes but the model expects {n} bytes", self.inputs[i].name, t.data.len())));
            }
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: live buffer, not locked by anyone else.
            check(unsafe { (api.lock_tensor_buffer)(buf, &mut p, LOCK_WRITE) }, "LiteRtLockTensorBuffer")?;
            if p.is_null() {
                // SAFETY: locked above.
                unsafe { (api.unlock_tensor_buffer)(buf) };
                return Err(Error::internal("LiteRtLockTensorBuffer returned a null address"));
            }
            // SAFETY: the buffer holds at least `n` bytes (checked at creation).
            unsafe { std::ptr::copy_nonoverlapping(t.data.as_bytes().as_ptr(), p as *mut u8, n) };
            check(unsafe { (api.unlock_tensor_buffer)(buf) }, "LiteRtUnlockTensorBuffer")?;
        }

        // SAFETY: buffer arrays match the signature's input/output counts and stay alive.
        check(
            unsafe {
                (api.run_compiled_model)(
                    self.h.compiled,
                    SIG,
                    self.h.inputs.len(),
                    self.h.inputs.as_mut_ptr(),
                    self.h.outputs.len(),
                    self.h.outputs.as_mut_ptr(),
                )
            },
            "LiteRtRunCompiledModel",
        )?;

        let mut out = Vec::with_capacity(self.outputs.len());
        for (i, info) in self.outputs.iter().enumerate() {
            let buf = self.h.outputs[i];
            let n = self.out_bytes[i];
            let mut data = AlignedBuf::zeroed(n);
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: live buffer, unlocked after the run.
            check(unsafe { (api.lock_tensor_buffer)(buf, &mut p, LOCK_READ) }, "LiteRtLockTensorBuffer")?;
            if p.is_null() {
                unsafe { (api.unlock_tensor_buffer)(buf) };
                return Err(Error::internal("LiteRtLockTensorBuffer returned a null address"));
            }
            // SAFETY: the buffer holds at least `n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(p as *const u8, data.as_bytes_mut().as_mut_ptr(), n) };
            check(unsafe { (api.unlock_tensor_buffer)(buf) }, "LiteRtUnlockTensorBuffer")?;
            out.push(Tensor {
                info: TensorInfo { name: info.name.clone(), shape: self.out_dims[i].clone(), dtype: info.dtype, quant: info.quant.clone(), id: info.id },
                data,
            });
        }
        Ok(out)
    }
}

impl Session for TfliteSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_inner(inputs)
    }
}

/// The model file read into memory, for LiteRtCreateModelFromBuffer (which runs the
/// flatbuffer verifier on models under 2e9 bytes): one copy per (file, size, mtime) while any
/// session uses it, so sessions of one model share it. `None` for larger files, which LiteRT
/// maps itself and does not verify either.
///
/// A copy, not a mapping: a mapped file that is overwritten or truncated in place while the
/// model is loaded changes the bytes under LiteRT (a loaded int8 EfficientNet then gave other
/// scores without any error; past a truncation, a read is SIGBUS). Resident memory is the
/// same as a fully touched mapping's.
fn read_model_file(path: &Path) -> Result<Option<Arc<AlignedBuf>>> {
    static COPIES: PerModelFile<AlignedBuf> = PerModelFile::new();
    let io = |e: std::io::Error| Error::io(format!("cannot read model file {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if meta.len() >= 2_000_000_000 {
        return Ok(None);
    }
    if meta.len() == 0 {
        return Err(Error::bad_model(format!("{} is not a valid TFLite model (the file is empty)", path.display())));
    }
    COPIES
        .get_or_make(path, Some(&meta), || {
            // Read exactly the size the key was made from: a file that changes meanwhile is
            // an error here, not a short model.
            let mut buf = AlignedBuf::zeroed(meta.len() as usize);
            std::io::Read::read_exact(&mut f, buf.as_bytes_mut()).map_err(io)?;
            Ok(buf)
        })
        .map(Some)
}

/// Append XNNPACK CPU options (`num_threads = N`) to `options`.
fn add_cpu_options(api: &Api, options: OptionsH, threads: usize) -> Result<()> {
    let toml = CString::new(format!("num_threads = {}\n", threads.min(i32::MAX as usize))).expect("no NUL");
    let payload = toml.into_raw() as *mut c_void;
    let mut opaque: OpaqueOptionsH = std::ptr::null_mut();
    // SAFETY: identifier is a static C string (copied by LiteRT); the payload is owned by the
    // opaque options from here on and freed through `free_cstring_payload`.
    let st = unsafe { (api.create_opaque_options)(CPU_OPTIONS_ID.as_ptr(), payload, Some(free_cstring_payload), &mut opaque) };
    if st != 0 || opaque.is_null() {
        // SAFETY: not taken over by LiteRT.
        unsafe { free_cstring_payload(payload) };
        check(st, "LiteRtCreateOpaqueOptions")?;
        return Err(Error::internal("LiteRtCreateOpaqueOptions returned null"));
    }
    // SAFETY: both handles live; on success `options` owns `opaque`.
    let st = unsafe { (api.add_opaque_options)(options, opaque) };
    if st != 0 {
        unsafe { (api.destroy_opaque_options)(opaque) };
        check(st, "LiteRtAddOpaqueOptions")?;
    }
    Ok(())
}

type Described = (Vec<TensorInfo>, Vec<i32>, Vec<TensorInfo>, Vec<i32>);

/// Read names, shapes, element types and quantisation of signature 0's subgraph inputs/outputs.
fn describe(api: &Api, model: ModelH) -> Result<Described> {
    let mut nsig: ParamIndex = 0;
    // SAFETY: live model, valid out-pointers throughout; returned handles are owned by the model.
    unsafe {
        check((api.get_num_model_signatures)(model, &mut nsig), "LiteRtGetNumModelSignatures")?;
        if nsig == 0 {
            return Err(Error::bad_model("the model has no signature (entry point)"));
        }
        let mut sig: SignatureH = std::ptr::null_mut();
        check((api.get_model_signature)(model, SIG, &mut sig), "LiteRtGetModelSignature")?;
        let mut sub: SubgraphH = std::ptr::null_mut();
        check((api.get_signature_subgraph)(sig, &mut sub), "LiteRtGetSignatureSubgraph")?;
        let (mut ni, mut no) = (0usize, 0usize);
        check((api.get_num_subgraph_inputs)(sub, &mut ni), "LiteRtGetNumSubgraphInputs")?;
        check((api.get_num_subgraph_outputs)(sub, &mut no), "LiteRtGetNumSubgraphOutputs")?;
        let mut ins = Vec::with_capacity(ni);
        let mut in_et = Vec::with_capacity(ni);
        for i in 0..ni {
            let mut t: TensorH = std::ptr::null_mut();
            check((api.get_subgraph_input)(sub, i, &mut t), "LiteRtGetSubgraphInput")?;
            let (info, et) = tensor_info(api, t, "input", i)?;
            ins.push(info);
            in_et.push(et);
        }
        let mut outs = Vec::with_capacity(no);
        let mut out_et = Vec::with_capacity(no);
        for i in 0..no {
            let mut t: TensorH = std::ptr::null_mut();
            check((api.get_subgraph_output)(sub, i, &mut t), "LiteRtGetSubgraphOutput")?;
            let (info, et) = tensor_info(api, t, "output", i)?;
            outs.push(info);
            out_et.push(et);
        }
        Ok((ins, in_et, outs, out_et))
    }
}

/// Describe one model tensor.
///
/// # Safety
/// `t` must be a live tensor handle of a live model.
unsafe fn tensor_info(api: &Api, t: TensorH, kind: &str, idx: usize) -> Result<(TensorInfo, i32)> {
    let mut name_p: *const c_char = std::ptr::null();
    check(unsafe { (api.get_tensor_name)(t, &mut name_p) }, "LiteRtGetTensorName")?;
    let name = if name_p.is_null() {
        String::new()
    } else {
        // SAFETY: NUL-terminated string owned by the model.
        unsafe { CStr::from_ptr(name_p) }.to_string_lossy().into_owned()
    };
    let mut type_id = -1i32;
    check(unsafe { (api.get_tensor_type_id)(t, &mut type_id) }, "LiteRtGetTensorTypeId")?;
    if type_id != RANKED_TENSOR_TYPE {
        return Err(Error::unsupported(format!("{kind} {idx} ('{name}') has an unranked (dynamic-rank) shape")));
    }
    let mut rt = RankedTensorType { element_type: 0, layout: Layout::zeroed() };
    check(unsafe { (api.get_ranked_tensor_type)(t, &mut rt) }, "LiteRtGetRankedTensorType")?;
    let dtype =
        elem_type(rt.element_type).ok_or_else(|| Error::unsupported(format!("{kind} {idx} ('{name}') has unsupported {}", elem_type_name(rt.element_type))))?;
    let shape: Vec<i64> = rt.layout.dims().iter().map(|&d| d as i64).collect();

    let mut qt = QUANT_NONE;
    check(unsafe { (api.get_quantization_type_id)(t, &mut qt) }, "LiteRtGetQuantizationTypeId")?;
    let quant = match qt {
        QUANT_PER_TENSOR => {
            let mut q = QuantPerTensor { scale: 0.0, zero_point: 0 };
            check(unsafe { (api.get_per_tensor_quantization)(t, &mut q) }, "LiteRtGetPerTensorQuantization")?;
            Some(Quant { axis: 0, scale: vec![q.scale], zero: vec![q.zero_point] })
        }
        QUANT_PER_CHANNEL => {
            let mut q = QuantPerChannel { quantized_dimension: 0, num_channels: 0, scales: std::ptr::null_mut(), zero_points: std::ptr::null_mut() };
            check(unsafe { (api.get_per_channel_quantization)(t, &mut q) }, "LiteRtGetPerChannelQuantization")?;
            let n = q.num_channels as usize;
            // SAFETY: arrays of `num_channels` entries owned by the model (null when empty).
            let scale = if q.scales.is_null() { vec![] } else { unsafe { std::slice::from_raw_parts(q.scales, n) }.to_vec() };
            let zero = if q.zero_points.is_null() { vec![0; n] } else { unsafe { std::slice::from_raw_parts(q.zero_points, n) }.to_vec() };
            Some(Quant { axis: q.quantized_dimension, scale, zero })
        }
        _ => None,
    };
    let mut index = 0u32;
    check(unsafe { (api.get_tensor_index)(t, &mut index) }, "LiteRtGetTensorIndex")?;
    Ok((TensorInfo { name, shape, dtype, quant, id: Some(index as i64) }, rt.element_type))
}
