//! OPENVINO agent over OpenVINO's C API (`libopenvino_c.so.2530` from the PyPI wheel
//! `openvino==2025.3.0`, see scripts/install-runtimes.sh), loaded at run time with libloading
//! the first time something needs the runtime.
//!
//! The declarations follow the `openvino/c/*.h` headers of OpenVINO 2025.3 (shipped in that
//! wheel). Flow: one `ov_core` per process → `ov_core_read_model` (ONNX, or IR `.xml` with its
//! `.bin`) → `ov_core_compile_model` with the session's properties (threads, streams, pinning,
//! precision, `CACHE_DIR`) → infer requests, one per frame running at once, kept in a pool.
//! Input tensors wrap the caller's buffers (no copy); outputs are copied out.
//!
//! `ExtraDeviceParams` takes PySDK's keys (`OPENVINO_NUM_STREAMS`, `OPENVINO_INFERENCE_NUM_THREADS`,
//! `OPENVINO_ENABLE_CPU_PINNING`, `OPENVINO_DENORMALS_OPTIMIZATION`) and passes any property the
//! device supports through (`INFERENCE_PRECISION_HINT`, `PERFORMANCE_HINT`, ...).
use super::*;
use serde_json::{Map, Value};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

/// The release whose C headers these declarations follow (install-runtimes.sh pins it).
const OPENVINO_VERSION: &str = "2025.3.0";
/// Library names tried, in each runtime directory then on the system path.
const LIB_NAMES: &[&str] = &["openvino/libopenvino_c.so.2530", "libopenvino_c.so.2530"];
/// How to install it, for error messages.
const INSTALL_HINT: &str = "install OpenVINO 2025.3 with scripts/install-runtimes.sh (it puts the openvino wheel's \
     libopenvino_c.so.2530 and its plugins in runtimes/openvino/) or point DGZOO_RUNTIME_DIR at a folder holding openvino/libopenvino_c.so.2530";

// ---------------------------------------------------------------------------------------------
// FFI types (ov_common.h, ov_core.h, ov_shape.h, ov_partial_shape.h, ov_dimension.h)
// ---------------------------------------------------------------------------------------------

type Status = i32; // ov_status_e; 0 = OK
type CoreH = *mut c_void;
type ModelH = *mut c_void;
type CompiledH = *mut c_void;
type RequestH = *mut c_void;
type TensorH = *mut c_void;
type PortH = *mut c_void;

#[repr(C)]
struct Version {
    build_number: *const c_char,
    description: *const c_char,
}

#[repr(C)]
struct AvailableDevices {
    devices: *mut *mut c_char,
    size: usize,
}

#[repr(C)]
struct Shape {
    rank: i64,
    dims: *mut i64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Dimension {
    min: i64,
    max: i64,
}

#[repr(C)]
struct PartialShape {
    rank: Dimension,
    dims: *mut Dimension,
}

const _: () = assert!(std::mem::size_of::<Shape>() == 16);
const _: () = assert!(std::mem::size_of::<PartialShape>() == 24);

// ov_element_type_e (OpenVINO 2025.x numbering)
const ET_BOOLEAN: i32 = 1;
const ET_BF16: i32 = 2;
const ET_F16: i32 = 3;
const ET_F32: i32 = 4;
const ET_F64: i32 = 5;
const ET_I8: i32 = 7;
const ET_I16: i32 = 8;
const ET_I32: i32 = 9;
const ET_I64: i32 = 10;
const ET_U8: i32 = 16;
const ET_U16: i32 = 17;
const ET_U32: i32 = 18;
const ET_U64: i32 = 19;

fn to_ov(t: ElemType) -> i32 {
    match t {
        ElemType::F32 => ET_F32,
        ElemType::F64 => ET_F64,
        ElemType::F16 => ET_F16,
        ElemType::U8 => ET_U8,
        ElemType::I8 => ET_I8,
        ElemType::U16 => ET_U16,
        ElemType::I16 => ET_I16,
        ElemType::U32 => ET_U32,
        ElemType::I32 => ET_I32,
        ElemType::U64 => ET_U64,
        ElemType::I64 => ET_I64,
        ElemType::Bool => ET_BOOLEAN,
    }
}

fn from_ov(t: i32, what: &str) -> Result<ElemType> {
    Ok(match t {
        ET_F32 => ElemType::F32,
        ET_F64 => ElemType::F64,
        ET_F16 => ElemType::F16,
        ET_U8 => ElemType::U8,
        ET_I8 => ElemType::I8,
        ET_U16 => ElemType::U16,
        ET_I16 => ElemType::I16,
        ET_U32 => ElemType::U32,
        ET_I32 => ElemType::I32,
        ET_U64 => ElemType::U64,
        ET_I64 => ElemType::I64,
        ET_BOOLEAN => ElemType::Bool,
        ET_BF16 => return Err(Error::unsupported(format!("OpenVINO {what} has element type bf16, which dgzoo does not take"))),
        other => return Err(Error::unsupported(format!("OpenVINO {what} has unsupported element type #{other}"))),
    })
}

// ---------------------------------------------------------------------------------------------
// Symbol table
// ---------------------------------------------------------------------------------------------

/// `ov_core_compile_model(core, model, device, property_args_size, compiled, ...)`: C-variadic,
/// the variadic part being `property_args_size` `const char*` (key, value, key, value, ...).
type CompileFn = unsafe extern "C" fn(CoreH, ModelH, *const c_char, usize, *mut CompiledH, ...) -> Status;

macro_rules! ov_api {
    ($( $field:ident = $sym:literal : fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Resolved `libopenvino_c.so` entry points. The library is never closed (OpenVINO's
        /// plugins and TBB keep threads and `atexit` handlers), so the pointers stay valid.
        struct Api {
            $( $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            compile_model: CompileFn,
            _lib: std::mem::ManuallyDrop<libloading::Library>,
        }

        impl Api {
            fn resolve(lib: libloading::Library, path: &Path) -> Result<Api> {
                let missing = |sym: &str, e: libloading::Error| Error::unsupported(format!(
                    "{} does not export {sym} (OpenVINO {OPENVINO_VERSION} C API expected): {e}", path.display()
                ));
                // SAFETY: each symbol is looked up by its exact C name and given the signature
                // declared for it in OpenVINO 2025.3's C headers.
                unsafe {
                    $(
                        let $field: unsafe extern "C" fn($($arg),*) $(-> $ret)? = *lib
                            .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!($sym, "\0").as_bytes())
                            .map_err(|e| missing($sym, e))?;
                    )*
                    let compile_model: CompileFn = *lib.get::<CompileFn>(b"ov_core_compile_model\0").map_err(|e| missing("ov_core_compile_model", e))?;
                    Ok(Api { $( $field, )* compile_model, _lib: std::mem::ManuallyDrop::new(lib) })
                }
            }
        }
    };
}

ov_api! {
    get_last_err_msg = "ov_get_last_err_msg": fn() -> *const c_char;
    free_str = "ov_free": fn(*const c_char);
    get_version = "ov_get_openvino_version": fn(*mut Version) -> Status;
    version_free = "ov_version_free": fn(*mut Version);
    core_create = "ov_core_create": fn(*mut CoreH) -> Status;
    core_get_available_devices = "ov_core_get_available_devices": fn(CoreH, *mut AvailableDevices) -> Status;
    available_devices_free = "ov_available_devices_free": fn(*mut AvailableDevices);
    core_get_property = "ov_core_get_property": fn(CoreH, *const c_char, *const c_char, *mut *mut c_char) -> Status;
    core_read_model = "ov_core_read_model": fn(CoreH, *const c_char, *const c_char, *mut ModelH) -> Status;
    model_free = "ov_model_free": fn(ModelH);
    compiled_inputs_size = "ov_compiled_model_inputs_size": fn(CompiledH, *mut usize) -> Status;
    compiled_outputs_size = "ov_compiled_model_outputs_size": fn(CompiledH, *mut usize) -> Status;
    compiled_input_by_index = "ov_compiled_model_input_by_index": fn(CompiledH, usize, *mut PortH) -> Status;
    compiled_output_by_index = "ov_compiled_model_output_by_index": fn(CompiledH, usize, *mut PortH) -> Status;
    compiled_create_request = "ov_compiled_model_create_infer_request": fn(CompiledH, *mut RequestH) -> Status;
    compiled_get_property = "ov_compiled_model_get_property": fn(CompiledH, *const c_char, *mut *mut c_char) -> Status;
    compiled_free = "ov_compiled_model_free": fn(CompiledH);
    port_get_any_name = "ov_port_get_any_name": fn(PortH, *mut *mut c_char) -> Status;
    port_get_partial_shape = "ov_port_get_partial_shape": fn(PortH, *mut PartialShape) -> Status;
    port_get_element_type = "ov_port_get_element_type": fn(PortH, *mut i32) -> Status;
    port_free = "ov_output_const_port_free": fn(PortH);
    partial_shape_free = "ov_partial_shape_free": fn(*mut PartialShape);
    request_set_input = "ov_infer_request_set_input_tensor_by_index": fn(RequestH, usize, TensorH) -> Status;
    request_get_output = "ov_infer_request_get_output_tensor_by_index": fn(RequestH, usize, *mut TensorH) -> Status;
    request_infer = "ov_infer_request_infer": fn(RequestH) -> Status;
    request_free = "ov_infer_request_free": fn(RequestH);
    tensor_create_from_host_ptr = "ov_tensor_create_from_host_ptr": fn(i32, Shape, *mut c_void, *mut TensorH) -> Status;
    tensor_get_shape = "ov_tensor_get_shape": fn(TensorH, *mut Shape) -> Status;
    tensor_get_element_type = "ov_tensor_get_element_type": fn(TensorH, *mut i32) -> Status;
    tensor_get_byte_size = "ov_tensor_get_byte_size": fn(TensorH, *mut usize) -> Status;
    tensor_data = "ov_tensor_data": fn(TensorH, *mut *mut c_void) -> Status;
    tensor_free = "ov_tensor_free": fn(TensorH);
    shape_free = "ov_shape_free": fn(*mut Shape) -> Status;
}

impl Api {
    /// An error for a failed call: OpenVINO's last error message (process-wide in the C API,
    /// so under concurrent failures it may be another call's).
    fn error(&self, what: &str, status: Status) -> String {
        // SAFETY: ov_get_last_err_msg returns NULL or a copy allocated by OpenVINO that we free
        // with ov_free once read.
        let msg = unsafe {
            let p = (self.get_last_err_msg)();
            if p.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                (self.free_str)(p);
                s
            }
        };
        let msg = msg.trim();
        if msg.is_empty() {
            format!("{what} failed (OpenVINO status {status})")
        } else {
            format!("{what} failed (OpenVINO status {status}): {msg}")
        }
    }

    /// Check a status.
    fn check(&self, what: &str, status: Status) -> std::result::Result<(), String> {
        if status == 0 {
            Ok(())
        } else {
            Err(self.error(what, status))
        }
    }

    /// A string OpenVINO allocated (freed here with ov_free).
    ///
    /// # Safety
    /// `p` is NULL or a NUL-terminated string allocated by OpenVINO and not used afterwards.
    unsafe fn take_string(&self, p: *mut c_char) -> String {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: per this function's contract.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: allocated by OpenVINO, freed once.
        unsafe { (self.free_str)(p) };
        s
    }

    /// A device property as a string (`ov_core_get_property`).
    fn device_property(&self, core: CoreH, device: &str, key: &str) -> Option<String> {
        let (d, k) = (CString::new(device).ok()?, CString::new(key).ok()?);
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: core is live; d and k are NUL-terminated; out receives a string we free.
        let st = unsafe { (self.core_get_property)(core, d.as_ptr(), k.as_ptr(), &mut out) };
        if st != 0 {
            // Read (and free) the message so it does not linger.
            let _ = self.error("ov_core_get_property", st);
            return None;
        }
        // SAFETY: on success out is an OpenVINO-allocated string.
        Some(unsafe { self.take_string(out) })
    }

    /// Compile with `props` (key, value pairs) through the C-variadic entry point.
    fn compile(&self, core: CoreH, model: ModelH, device: &CStr, props: &[(CString, CString)]) -> std::result::Result<CompiledH, String> {
        let a: Vec<*const c_char> = props.iter().flat_map(|(k, v)| [k.as_ptr(), v.as_ptr()]).collect();
        let mut out: CompiledH = std::ptr::null_mut();
        let (c, m, d, o) = (core, model, device.as_ptr(), &mut out as *mut CompiledH);
        macro_rules! call {
            ($($i:literal)*) => {
                // SAFETY: core and model are live; every variadic argument is a NUL-terminated
                // `const char*` (owned by `props` for the call), and property_args_size says
                // how many there are, as ov_core_compile_model documents.
                unsafe { (self.compile_model)(c, m, d, a.len(), o $(, a[$i])*) }
            };
        }
        let st = match a.len() {
            0 => call!(),
            2 => call!(0 1),
            4 => call!(0 1 2 3),
            6 => call!(0 1 2 3 4 5),
            8 => call!(0 1 2 3 4 5 6 7),
            10 => call!(0 1 2 3 4 5 6 7 8 9),
            12 => call!(0 1 2 3 4 5 6 7 8 9 10 11),
            14 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13),
            16 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
            18 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17),
            20 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19),
            22 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21),
            24 => call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23),
            n => return Err(format!("too many OpenVINO properties ({}; at most 12)", n / 2)),
        };
        self.check("ov_core_compile_model", st)?;
        if out.is_null() {
            return Err("ov_core_compile_model returned no compiled model".into());
        }
        Ok(out)
    }
}

/// The process's `ov_core` (thread-safe in OpenVINO: `ov::Core` methods may be called from
/// several threads). Created once and never freed.
#[derive(Clone, Copy)]
struct Core(CoreH);
// SAFETY: ov::Core is documented thread-safe; the pointer is never freed.
unsafe impl Send for Core {}
unsafe impl Sync for Core {}

pub struct OpenVinoAgent {
    api: &'static Api,
    core: Core,
    version: String,
    /// (device type, entries) for system info: `CPU` always, `GPU`/`NPU` when OpenVINO sees them.
    devices: Vec<(String, Vec<Map<String, Value>>)>,
    /// Read-write properties each device type supports (those ExtraDeviceParams may pass through).
    supported: Vec<(String, Vec<String>)>,
    /// Where compiled blobs go (`<dgzoo cache root>/openvino_cache`); `None`: no blob cache.
    cache_root: Option<PathBuf>,
}

impl OpenVinoAgent {
    pub fn load() -> Result<Self> {
        Self::load_from(LIB_NAMES)
    }

    /// [`OpenVinoAgent::load`] from the first of `names` that opens.
    fn load_from(names: &[&str]) -> Result<Self> {
        let (lib, path) = open_library(names).map_err(|e| Error::unsupported(format!("runtime OPENVINO: {}; {INSTALL_HINT}", e.message)))?;
        let api: &'static Api = Box::leak(Box::new(Api::resolve(lib, &path)?));
        let mut v = Version { build_number: std::ptr::null(), description: std::ptr::null() };
        // SAFETY: v is a valid out-struct; its strings are freed with ov_version_free.
        let version = unsafe {
            api.check("ov_get_openvino_version", (api.get_version)(&mut v)).map_err(Error::unsupported)?;
            let s = if v.build_number.is_null() { String::new() } else { CStr::from_ptr(v.build_number).to_string_lossy().into_owned() };
            (api.version_free)(&mut v);
            s
        };
        // The element-type numbering (and the rest of the ABI declared here) is 2025.x's.
        if !version.starts_with("2025.") {
            return Err(Error::unsupported(format!("{} is OpenVINO {version}; dgzoo's OPENVINO agent needs the 2025.x C API; {INSTALL_HINT}", path.display())));
        }
        let mut core: CoreH = std::ptr::null_mut();
        // SAFETY: core receives a new ov_core_t (kept for the process).
        api.check("ov_core_create", unsafe { (api.core_create)(&mut core) }).map_err(Error::unsupported)?;
        if core.is_null() {
            return Err(Error::unsupported("ov_core_create returned no core"));
        }
        let mut list = AvailableDevices { devices: std::ptr::null_mut(), size: 0 };
        // SAFETY: list receives OpenVINO's device array, freed with ov_available_devices_free.
        let names: Vec<String> = unsafe {
            api.check("ov_core_get_available_devices", (api.core_get_available_devices)(core, &mut list)).map_err(Error::unsupported)?;
            let names =
                (0..list.size).map(|i| *list.devices.add(i)).filter(|p| !p.is_null()).map(|p| CStr::from_ptr(p).to_string_lossy().into_owned()).collect();
            (api.available_devices_free)(&mut list);
            names
        };
        let mut devices: Vec<(String, Vec<Map<String, Value>>)> = Vec::new();
        let mut supported = Vec::new();
        for full in &names {
            let kind = full.split('.').next().unwrap_or(full).to_string();
            let mut m = Map::new();
            let index = devices.iter().find(|(k, _)| *k == kind).map_or(0, |(_, e)| e.len());
            m.insert("@Index".into(), index.into());
            let props = api.device_property(core, full, "SUPPORTED_PROPERTIES").unwrap_or_default();
            let mut rw = Vec::new();
            for p in props.split([' ', ',']).filter(|p| !p.is_empty()) {
                // "NAME" or "NAME:RW"/"NAME:RO" depending on how the list is printed.
                let (name, mode) = p.split_once(':').unwrap_or((p, ""));
                if mode != "RO" {
                    rw.push(name.to_string());
                }
                if matches!(name, "SUPPORTED_PROPERTIES" | "CACHING_PROPERTIES" | "SUPPORTED_METRICS" | "SUPPORTED_CONFIG_KEYS" | "CACHE_DIR") {
                    continue;
                }
                if let Some(v) = api.device_property(core, full, name) {
                    m.insert(name.to_string(), v.into());
                }
            }
            m.insert("VERSION".into(), version.clone().into());
            supported.push((kind.clone(), rw));
            match devices.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, e)) => e.push(m),
                None => devices.push((kind, vec![m])),
            }
        }
        if !devices.iter().any(|(k, _)| k == "CPU") {
            return Err(Error::unsupported(format!("OpenVINO {version} at {} sees no CPU device (its CPU plugin did not load)", path.display())));
        }
        // The blob cache sits in the model cache's root (Settings, not the cache module: the
        // runtimes stand below it).
        let settings = crate::settings::Settings::process();
        let cache_root = (!settings.openvino_cache_off).then(|| settings.cache_root().join("openvino_cache"));
        Ok(OpenVinoAgent { api, core: Core(core), version, devices, supported, cache_root })
    }

    /// The compile properties for a session: PySDK's `OPENVINO_*` keys, pass-through OpenVINO
    /// properties, dgzoo's thread split when nothing else says, and the cache folder.
    fn properties(&self, device: &str, model_path: &Path, opts: &SessionOptions) -> Result<Vec<(String, String)>> {
        let supported: &[String] = self.supported.iter().find(|(k, _)| k == device).map_or(&[], |(_, v)| v.as_slice());
        let mut props: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| {
            props.retain(|(pk, _)| pk != k);
            props.push((k.to_string(), v));
        };
        for (k, v) in &opts.extra {
            let (ov_key, is_flag) = match k.as_str() {
                "OPENVINO_NUM_STREAMS" => ("NUM_STREAMS", false),
                "OPENVINO_INFERENCE_NUM_THREADS" => ("INFERENCE_NUM_THREADS", false),
                "OPENVINO_ENABLE_CPU_PINNING" => ("ENABLE_CPU_PINNING", true),
                "OPENVINO_DENORMALS_OPTIMIZATION" => ("CPU_DENORMALS_OPTIMIZATION", true),
                other if supported.iter().any(|s| s == other) => (other, false),
                // Keys of other runtimes (or unknown ones) are not OpenVINO's business.
                _ => continue,
            };
            let text = match v {
                Value::Null => continue,
                Value::Bool(b) => yes_no(*b).to_string(),
                Value::Number(n) if is_flag => yes_no(n.as_f64().unwrap_or(0.0) != 0.0).to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) if is_flag => match s.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => "YES".to_string(),
                    "0" | "false" | "no" | "off" => "NO".to_string(),
                    _ => return Err(Error::invalid(format!("ExtraDeviceParams {k} must be a boolean, not '{s}'"))),
                },
                Value::String(s) => s.clone(),
                other => return Err(Error::invalid(format!("ExtraDeviceParams {k} must be a number, string or boolean, not {other}"))),
            };
            set(ov_key, text);
        }
        let has = |props: &[(String, String)], k: &str| props.iter().any(|(pk, _)| pk == k);
        // PySDK's defaults (CPU pinning on; threads and streams from the cores), unless a
        // performance hint was asked for, which then picks them.
        if device == "CPU" {
            if !has(&props, "PERFORMANCE_HINT") {
                let frames = opts.concurrency.max(1);
                if !has(&props, "NUM_STREAMS") {
                    props.push(("NUM_STREAMS".into(), frames.to_string()));
                }
                if !has(&props, "INFERENCE_NUM_THREADS") && opts.threads > 0 {
                    props.push(("INFERENCE_NUM_THREADS".into(), (opts.threads * frames).to_string()));
                }
            }
            if !has(&props, "ENABLE_CPU_PINNING") {
                props.push(("ENABLE_CPU_PINNING".into(), "YES".into()));
            }
        }
        if !has(&props, "CACHE_DIR") {
            if let Some(dir) = self.cache_root.as_deref().and_then(|root| cache_dir(root, model_path, &props)) {
                props.push(("CACHE_DIR".into(), dir.to_string_lossy().into_owned()));
            }
        }
        Ok(props)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

/// SHA-256 of the model's files (the `.bin` beside an IR `.xml` too), once per (file, size, mtime).
fn model_hash(model_path: &Path) -> Option<String> {
    use sha2::Digest;
    static HASHES: once_cell::sync::Lazy<Mutex<std::collections::HashMap<ModelFileKey, String>>> = once_cell::sync::Lazy::new(Default::default);
    let mut files = vec![model_path.to_path_buf()];
    if model_path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
        files.push(model_path.with_extension("bin"));
    }
    let mut h = sha2::Sha256::new();
    for f in files.iter().filter(|f| f.is_file()) {
        let meta = std::fs::metadata(f).ok()?;
        let key = (f.clone(), meta.len(), meta.modified().ok());
        let known = HASHES.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let one = match known {
            Some(s) => s,
            None => {
                let mut fh = sha2::Sha256::new();
                std::io::copy(&mut std::fs::File::open(f).ok()?, &mut fh).ok()?;
                let s: String = fh.finalize().iter().map(|b| format!("{b:02x}")).collect();
                HASHES.lock().unwrap_or_else(|p| p.into_inner()).insert(key, s.clone());
                s
            }
        };
        h.update(one.as_bytes());
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Where compiled blobs of this model and these properties go: `<root>/<key>` (root:
/// `<dgzoo cache root>/openvino_cache`; `DGZOO_OPENVINO_CACHE=0` turns the cache off), the key
/// hashing the model's content and the properties, so a changed model (or setting) never
/// meets a stale blob.
fn cache_dir(root: &Path, model_path: &Path, props: &[(String, String)]) -> Option<PathBuf> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(OPENVINO_VERSION.as_bytes());
    h.update(model_hash(model_path)?.as_bytes());
    let mut sorted: Vec<_> = props.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        h.update(format!("\0{k}={v}").as_bytes());
    }
    let key: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dir = root.join(key);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

impl Agent for OpenVinoAgent {
    fn runtime(&self) -> &'static str {
        "OPENVINO"
    }
    fn devices(&self) -> Vec<(String, Vec<Map<String, Value>>)> {
        self.devices.clone()
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    // Infer requests of one compiled model run at once (one per stream).
    fn concurrent(&self) -> bool {
        true
    }
    // One CPU device, a frame per stream: as many streams as cores at most.
    fn frames_per_device(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
    fn load(&self, model_path: &Path, opts: &SessionOptions) -> Result<Box<dyn Session>> {
        let api = self.api;
        let device = if opts.device.is_empty() { "CPU" } else { opts.device.as_str() };
        if !self.devices.iter().any(|(k, _)| k == device) {
            return Err(Error::unsupported(format!("OpenVINO sees no {device} device on this system")));
        }
        let bad = |e: String| Error::bad_model(format!("OpenVINO cannot load model '{}': {e}", model_path.display()));
        let path_c = CString::new(model_path.to_string_lossy().as_bytes()).map_err(|_| Error::invalid("model path contains a NUL byte"))?;
        let props = self.properties(device, model_path, opts)?;
        let props_c = props
            .iter()
            .map(|(k, v)| Ok((CString::new(k.as_str())?, CString::new(v.as_str())?)))
            .collect::<std::result::Result<Vec<_>, std::ffi::NulError>>()
            .map_err(|_| Error::invalid("an OpenVINO property contains a NUL byte"))?;
        let device_c = CString::new(device).map_err(|_| Error::invalid("device name contains a NUL byte"))?;
        let mut model: ModelH = std::ptr::null_mut();
        // SAFETY: core is live; path_c is NUL-terminated; a NULL weights path lets OpenVINO find
        // an IR's .bin beside its .xml (ONNX has none); model receives a new ov_model_t.
        api.check("ov_core_read_model", unsafe { (api.core_read_model)(self.core.0, path_c.as_ptr(), std::ptr::null(), &mut model) }).map_err(bad)?;
        let compiled = api.compile(self.core.0, model, &device_c, &props_c);
        // SAFETY: the compiled model does not need the source model object any more.
        unsafe { (api.model_free)(model) };
        let compiled = compiled.map_err(bad)?;
        let mut session = OvSession { api, compiled, requests: Mutex::new(Vec::new()), inputs: Vec::new(), outputs: Vec::new(), properties: props };
        session.inputs = session.ports(false).map_err(bad)?;
        session.outputs = session.ports(true).map_err(bad)?;
        Ok(Box::new(session))
    }
}

/// One compiled model and its idle infer requests.
struct OvSession {
    api: &'static Api,
    compiled: CompiledH,
    /// Idle requests; a running frame takes one (or makes one) and gives it back.
    requests: Mutex<Vec<Request>>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    /// The properties it was compiled with.
    #[allow(dead_code)]
    properties: Vec<(String, String)>,
}

// SAFETY: a compiled model may be used from several threads (OpenVINO documents
// ov::CompiledModel as thread-safe); each infer request is used by one thread at a time (taken
// out of the pool under its mutex).
unsafe impl Send for OvSession {}
unsafe impl Sync for OvSession {}

struct Request(RequestH);
// SAFETY: an infer request is moved between threads but used by one at a time.
unsafe impl Send for Request {}

impl Drop for OvSession {
    fn drop(&mut self) {
        let reqs = std::mem::take(self.requests.get_mut().unwrap_or_else(|p| p.into_inner()));
        // SAFETY: the requests and the compiled model are ours and no longer used (we own the
        // session exclusively here); requests go before their compiled model.
        unsafe {
            for r in reqs {
                (self.api.request_free)(r.0);
            }
            (self.api.compiled_free)(self.compiled);
        }
    }
}

/// An `ov_tensor_t` freed on drop.
struct OvTensor<'a>(&'a Api, TensorH);
impl Drop for OvTensor<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: created by OpenVINO for us and freed once.
            unsafe { (self.0.tensor_free)(self.1) };
        }
    }
}

impl OvSession {
    /// Describe the compiled model's inputs (or outputs).
    fn ports(&self, outputs: bool) -> std::result::Result<Vec<TensorInfo>, String> {
        let api = self.api;
        let mut n = 0usize;
        // SAFETY: compiled is live; n is a valid out-pointer.
        let st = unsafe {
            if outputs {
                (api.compiled_outputs_size)(self.compiled, &mut n)
            } else {
                (api.compiled_inputs_size)(self.compiled, &mut n)
            }
        };
        api.check("ov_compiled_model_inputs/outputs_size", st)?;
        let mut infos = Vec::with_capacity(n);
        for i in 0..n {
            let mut port: PortH = std::ptr::null_mut();
            // SAFETY: i < n; port receives a new const port freed below.
            let st = unsafe {
                if outputs {
                    (api.compiled_output_by_index)(self.compiled, i, &mut port)
                } else {
                    (api.compiled_input_by_index)(self.compiled, i, &mut port)
                }
            };
            api.check("ov_compiled_model_input/output_by_index", st)?;
            let described = (|| -> std::result::Result<TensorInfo, String> {
                let mut name: *mut c_char = std::ptr::null_mut();
                // SAFETY: port is live; a name is optional (unnamed tensors), so failure is fine.
                let name = if unsafe { (api.port_get_any_name)(port, &mut name) } == 0 {
                    // SAFETY: an OpenVINO-allocated string.
                    unsafe { api.take_string(name) }
                } else {
                    let _ = api.error("ov_port_get_any_name", -1);
                    format!("{}{i}", if outputs { "output" } else { "input" })
                };
                let mut et = 0i32;
                // SAFETY: port is live; et is a valid out-pointer.
                api.check("ov_port_get_element_type", unsafe { (api.port_get_element_type)(port, &mut et) })?;
                let dtype = from_ov(et, &format!("tensor '{name}'")).map_err(|e| e.message)?;
                let mut ps = PartialShape { rank: Dimension { min: 0, max: 0 }, dims: std::ptr::null_mut() };
                // SAFETY: port is live; ps receives dims we free with ov_partial_shape_free.
                api.check("ov_port_get_partial_shape", unsafe { (api.port_get_partial_shape)(port, &mut ps) })?;
                let shape = if ps.rank.min != ps.rank.max || ps.rank.min < 0 || (ps.rank.min > 0 && ps.dims.is_null()) {
                    None
                } else {
                    // SAFETY: rank.min dims are allocated by OpenVINO.
                    Some(
                        (0..ps.rank.min as usize)
                            .map(|d| unsafe { *ps.dims.add(d) })
                            .map(|d| if d.min == d.max && d.min >= 0 { d.min } else { -1 })
                            .collect::<Vec<i64>>(),
                    )
                };
                // SAFETY: frees what ov_port_get_partial_shape allocated.
                unsafe { (api.partial_shape_free)(&mut ps) };
                let shape = shape.ok_or_else(|| format!("tensor '{name}' has a dynamic rank, which dgzoo does not take"))?;
                Ok(TensorInfo { name, shape, dtype, quant: None, id: None })
            })();
            // SAFETY: the port is ours, freed once.
            unsafe { (api.port_free)(port) };
            infos.push(described?);
        }
        Ok(infos)
    }

    fn take_request(&self) -> Result<Request> {
        if let Some(r) = self.requests.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(r);
        }
        let mut r: RequestH = std::ptr::null_mut();
        // SAFETY: compiled is live; r receives a new infer request.
        self.api
            .check("ov_compiled_model_create_infer_request", unsafe { (self.api.compiled_create_request)(self.compiled, &mut r) })
            .map_err(Error::inference)?;
        Ok(Request(r))
    }

    fn run_inner(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::invalid(format!("model takes {} input(s), got {}", self.inputs.len(), inputs.len())));
        }
        for (t, info) in inputs.iter().zip(&self.inputs) {
            if t.info.dtype != info.dtype {
                return Err(Error::invalid(format!("input '{}' must be {:?}, got {:?}", info.name, info.dtype, t.info.dtype)));
            }
            let fits = t.info.shape.len() == info.shape.len() && t.info.shape.iter().zip(&info.shape).all(|(a, b)| *b < 0 || a == b);
            if !fits || t.info.shape.iter().any(|&d| d < 0) || t.data.len() != t.num_elements() * t.info.dtype.size() {
                return Err(Error::invalid(format!(
                    "input '{}' has shape {:?} ({} bytes); the model expects shape {:?}",
                    info.name,
                    t.info.shape,
                    t.data.len(),
                    info.shape
                )));
            }
        }
        let req = self.take_request()?;
        let out = self.infer(&req, inputs);
        // A request whose run failed is dropped rather than reused.
        match &out {
            Ok(_) => self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(req),
            // SAFETY: the request is ours and no longer used.
            Err(_) => unsafe { (self.api.request_free)(req.0) },
        }
        out
    }

    fn infer(&self, req: &Request, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let api = self.api;
        let fail = |e: String| Error::inference(format!("OpenVINO inference failed: {e}"));
        let mut held = Vec::with_capacity(inputs.len());
        for (i, t) in inputs.iter().enumerate() {
            let mut dims = t.info.shape.clone();
            let shape = Shape { rank: dims.len() as i64, dims: dims.as_mut_ptr() };
            let mut h: TensorH = std::ptr::null_mut();
            // SAFETY: the shape's dims live in `dims` for the call (OpenVINO copies them); the
            // tensor wraps `t.data`, which outlives the inference below and has exactly the
            // shape's byte size (checked in run_inner); OpenVINO only reads input tensors.
            let st = unsafe { (api.tensor_create_from_host_ptr)(to_ov(t.info.dtype), shape, t.data.as_bytes().as_ptr() as *mut c_void, &mut h) };
            api.check("ov_tensor_create_from_host_ptr", st).map_err(fail)?;
            let h = OvTensor(api, h);
            // SAFETY: req and the tensor are live; i < the model's input count.
            api.check("ov_infer_request_set_input_tensor_by_index", unsafe { (api.request_set_input)(req.0, i, h.1) }).map_err(fail)?;
            held.push(h);
        }
        // SAFETY: req is used by this thread only; its inputs are set.
        api.check("ov_infer_request_infer", unsafe { (api.request_infer)(req.0) }).map_err(fail)?;
        drop(held);
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (i, info) in self.outputs.iter().enumerate() {
            let mut h: TensorH = std::ptr::null_mut();
            // SAFETY: req is live; h receives a tensor handle freed by OvTensor.
            api.check("ov_infer_request_get_output_tensor_by_index", unsafe { (api.request_get_output)(req.0, i, &mut h) }).map_err(fail)?;
            let h = OvTensor(api, h);
            let mut et = 0i32;
            // SAFETY: h is live; et is a valid out-pointer.
            api.check("ov_tensor_get_element_type", unsafe { (api.tensor_get_element_type)(h.1, &mut et) }).map_err(fail)?;
            let dtype = from_ov(et, &format!("output '{}'", info.name))?;
            let mut s = Shape { rank: 0, dims: std::ptr::null_mut() };
            // SAFETY: h is live; s receives dims freed with ov_shape_free.
            api.check("ov_tensor_get_shape", unsafe { (api.tensor_get_shape)(h.1, &mut s) }).map_err(fail)?;
            let shape: Vec<i64> = if s.dims.is_null() {
                Vec::new()
            } else {
                // SAFETY: s.rank dims allocated by OpenVINO.
                unsafe { std::slice::from_raw_parts(s.dims, s.rank.max(0) as usize) }.to_vec()
            };
            // SAFETY: frees what ov_tensor_get_shape allocated.
            unsafe { (api.shape_free)(&mut s) };
            let mut bytes = 0usize;
            // SAFETY: h is live; bytes is a valid out-pointer.
            api.check("ov_tensor_get_byte_size", unsafe { (api.tensor_get_byte_size)(h.1, &mut bytes) }).map_err(fail)?;
            let n: usize = shape.iter().map(|&d| d.max(0) as usize).product();
            if bytes != n * dtype.size() {
                return Err(Error::inference(format!("OpenVINO output '{}' has {bytes} bytes for shape {shape:?}", info.name)));
            }
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: h is live; p receives its host data pointer.
            api.check("ov_tensor_data", unsafe { (api.tensor_data)(h.1, &mut p) }).map_err(fail)?;
            let data = if bytes == 0 {
                AlignedBuf::zeroed(0)
            } else if p.is_null() {
                return Err(Error::inference(format!("OpenVINO output '{}' has no data", info.name)));
            } else {
                // SAFETY: p points at `bytes` bytes of the output tensor, alive while h is.
                AlignedBuf::from_bytes(unsafe { std::slice::from_raw_parts(p as *const u8, bytes) })
            };
            outs.push(Tensor { info: TensorInfo { name: info.name.clone(), shape, dtype, quant: None, id: None }, data });
        }
        Ok(outs)
    }

    /// A compiled-model property (diagnostics and tests).
    #[allow(dead_code)]
    fn property(&self, key: &str) -> Option<String> {
        let k = CString::new(key).ok()?;
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: compiled is live; out receives a string we free.
        let st = unsafe { (self.api.compiled_get_property)(self.compiled, k.as_ptr(), &mut out) };
        if st != 0 {
            let _ = self.api.error("ov_compiled_model_get_property", st);
            return None;
        }
        // SAFETY: an OpenVINO-allocated string.
        Some(unsafe { self.api.take_string(out) })
    }
}

impl Session for OvSession {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_openvino_names_the_runtime_and_how_to_install_it() {
        let e = OpenVinoAgent::load_from(&["openvino/libopenvino_c.so.0-not-here"]).err().expect("no such library");
        assert!(e.message.contains("runtime OPENVINO"), "{}", e.message);
        assert!(e.message.contains("scripts/install-runtimes.sh"), "{}", e.message);
        assert!(e.message.contains("libopenvino_c.so.2530"), "{}", e.message);
    }

    fn agent() -> Option<OpenVinoAgent> {
        match OpenVinoAgent::load() {
            Ok(a) => Some(a),
            Err(e) if std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1") => {
                panic!("{}", e.message)
            }
            Err(e) => {
                eprintln!("SKIP: {}", e.message);
                None
            }
        }
    }

    fn model() -> PathBuf {
        let m = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo").join(m).join(format!("{m}.onnx"))
    }

    fn opts(extra: Value) -> SessionOptions {
        SessionOptions { threads: 1, concurrency: 2, device: "CPU".into(), extra: extra.as_object().cloned().unwrap_or_default(), lean: false }
    }

    /// PySDK's keys and pass-through properties reach the compiled model; absent ones get
    /// PySDK's defaults (pinning on, streams and threads from dgzoo's split) and OpenVINO's
    /// default precision.
    #[test]
    fn extra_device_params_reach_the_compiled_model() {
        let Some(mut a) = agent() else { return };
        let cache = tempfile::tempdir().unwrap();
        a.cache_root = Some(cache.path().join("openvino_cache"));
        let s = a.load(&model(), &opts(Value::Null)).unwrap();
        // SAFETY: the agent makes only OvSession sessions (a downcast of the trait object).
        let s: &OvSession = unsafe { &*(s.as_ref() as *const dyn Session as *const OvSession) };
        assert_eq!(s.property("NUM_STREAMS").as_deref(), Some("2"));
        assert_eq!(s.property("INFERENCE_NUM_THREADS").as_deref(), Some("2"));
        assert_eq!(s.property("ENABLE_CPU_PINNING").as_deref(), Some("YES"));
        let default_precision = a.device_property("CPU", "INFERENCE_PRECISION_HINT");
        assert_eq!(s.property("INFERENCE_PRECISION_HINT"), default_precision);
        let extra = serde_json::json!({
            "OPENVINO_NUM_STREAMS": 1, "OPENVINO_INFERENCE_NUM_THREADS": 1, "OPENVINO_ENABLE_CPU_PINNING": false,
            "OPENVINO_DENORMALS_OPTIMIZATION": true, "INFERENCE_PRECISION_HINT": "f32", "NOT_AN_OPENVINO_KEY": 3
        });
        let s2 = a.load(&model(), &opts(extra)).unwrap();
        // SAFETY: as above.
        let s2: &OvSession = unsafe { &*(s2.as_ref() as *const dyn Session as *const OvSession) };
        assert_eq!(s2.property("NUM_STREAMS").as_deref(), Some("1"));
        assert_eq!(s2.property("INFERENCE_NUM_THREADS").as_deref(), Some("1"));
        assert_eq!(s2.property("ENABLE_CPU_PINNING").as_deref(), Some("NO"));
        assert_eq!(s2.property("CPU_DENORMALS_OPTIMIZATION").as_deref(), Some("YES"));
        assert_eq!(s2.property("INFERENCE_PRECISION_HINT").as_deref(), Some("f32"));
        let bad = a.load(&model(), &opts(serde_json::json!({"OPENVINO_ENABLE_CPU_PINNING": "maybe"}))).err().unwrap();
        assert!(bad.message.contains("OPENVINO_ENABLE_CPU_PINNING"), "{}", bad.message);
        // The compiled blob landed in dgzoo's cache root.
        let blobs = walk(&cache.path().join("openvino_cache"));
        assert!(blobs.iter().any(|p| p.extension().is_some_and(|e| e == "blob")), "{blobs:?}");
    }

    impl OpenVinoAgent {
        fn device_property(&self, device: &str, key: &str) -> Option<String> {
            self.api.device_property(self.core.0, device, key)
        }
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    /// The cache folder follows the model's content and the properties: a changed model (same
    /// path, same size) or a changed setting never meets an old blob.
    #[test]
    fn the_blob_cache_is_keyed_by_model_content_and_properties() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("openvino_cache");
        let cache_dir = |m: &Path, p: &[(String, String)]| cache_dir(&root, m, p);
        let m = dir.path().join("m.onnx");
        std::fs::write(&m, b"model one").unwrap();
        let p = vec![("NUM_STREAMS".to_string(), "1".to_string())];
        let a = cache_dir(&m, &p).unwrap();
        assert!(a.starts_with(&root) && a.is_dir());
        assert_eq!(cache_dir(&m, &p).unwrap(), a);
        assert_ne!(cache_dir(&m, &[("NUM_STREAMS".to_string(), "2".to_string())]).unwrap(), a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&m, b"model two").unwrap();
        assert_ne!(cache_dir(&m, &p).unwrap(), a);
        // An IR's weights count too.
        let x = dir.path().join("m.xml");
        std::fs::write(&x, b"<net/>").unwrap();
        std::fs::write(dir.path().join("m.bin"), b"w1").unwrap();
        let b = cache_dir(&x, &p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("m.bin"), b"w2").unwrap();
        assert_ne!(cache_dir(&x, &p).unwrap(), b);
    }
}
