//! C ABI: log records. The core logs through `tracing`; `dg_set_log_callback` installs (once
//! per process) a subscriber that hands each record that passes the `DGZOO_LOG` filter to the
//! C callback. `DGZOO_LOG` takes tracing-subscriber's EnvFilter syntax: a level (`error`,
//! `warn`, `info`, `debug`, `trace`, `off`) and per-module directives such as
//! `warn,dgzoo::runtime=debug`; unset, it is `info`.
use super::{dg_error, guard};
use dgzoo_core::error::{Code, Error};
use std::ffi::{c_char, c_void, CString};
use std::fmt::Write as _;
use std::sync::{OnceLock, RwLock};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Severity of a log record.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_log_level {
    DG_LOG_ERROR = 1,
    DG_LOG_WARN = 2,
    DG_LOG_INFO = 3,
    DG_LOG_DEBUG = 4,
    DG_LOG_TRACE = 5,
}

/// Receives one log record: `target` is the module that logged it (for example
/// "dgzoo::model"), `message` the text followed by its fields as ` key=value`. Both strings
/// are valid only during the call. Called on whichever library thread logged the record,
/// possibly on several threads at once; it must not call dg_set_log_callback.
pub type dg_log_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, level: dg_log_level, target: *const c_char, message: *const c_char)>;

#[derive(Clone, Copy)]
struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, dg_log_level, *const c_char, *const c_char),
    /// The caller's opaque pointer, passed back untouched (the caller vouches for its threads).
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALLED: OnceLock<std::result::Result<(), (Code, String)>> = OnceLock::new();

/// A record's message and fields as one line.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

struct CallbackLayer;

impl<S: tracing::Subscriber> Layer<S> for CallbackLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(sink) = *SINK.read().unwrap_or_else(|p| p.into_inner()) else { return };
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => dg_log_level::DG_LOG_ERROR,
            tracing::Level::WARN => dg_log_level::DG_LOG_WARN,
            tracing::Level::INFO => dg_log_level::DG_LOG_INFO,
            tracing::Level::DEBUG => dg_log_level::DG_LOG_DEBUG,
            tracing::Level::TRACE => dg_log_level::DG_LOG_TRACE,
        };
        let mut line = Line(String::new());
        event.record(&mut line);
        let target = CString::new(meta.target().replace('\0', " ")).unwrap_or_default();
        let message = CString::new(line.0.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the callback and its user data come from dg_set_log_callback, whose caller
        // promised a function callable from any library thread; both strings outlive the call.
        unsafe { (sink.cb)(sink.user_data as *mut c_void, level, target.as_ptr(), message.as_ptr()) };
    }
}

fn install() -> std::result::Result<(), (Code, String)> {
    let filter = match &dgzoo_core::settings::Settings::process().log {
        Some(v) => tracing_subscriber::EnvFilter::try_new(v).map_err(|e| (Code::InvalidArgument, format!("DGZOO_LOG is not a valid filter: {e}")))?,
        None => tracing_subscriber::EnvFilter::new("info"),
    };
    let subscriber = tracing_subscriber::registry().with(CallbackLayer.with_filter(filter));
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| (Code::Unsupported, "another tracing subscriber is already installed in this process".to_string()))
}

/// Hand the library's log records to `callback` (NULL stops the records; the filter stays).
/// The first call installs the process-wide log subscriber with the `DGZOO_LOG` filter read
/// then (default `info`). Fails with DG_INVALID_ARGUMENT when `DGZOO_LOG` is malformed and
/// DG_UNSUPPORTED when the process already has another `tracing` subscriber.
#[no_mangle]
pub unsafe extern "C" fn dg_set_log_callback(callback: dg_log_callback, user_data: *mut c_void) -> *mut dg_error {
    guard(|| {
        if callback.is_some() {
            if let Err((code, msg)) = INSTALLED.get_or_init(install) {
                return Err(Error::new(*code, msg.clone()));
            }
        }
        *SINK.write().unwrap_or_else(|p| p.into_inner()) = callback.map(|cb| Sink { cb, user_data: user_data as usize });
        Ok(())
    })
}
