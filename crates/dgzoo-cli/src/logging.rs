//! Log records of the core and the servers on stderr: human-readable text (the default) or
//! one JSON object per line (`--log-format json`, `DGZOO_LOG_FORMAT=json`), filtered by
//! `DGZOO_LOG`.
//!
//! In JSON mode the native runtimes (LiteRT, ONNX Runtime) would still write their own lines
//! to file descriptor 2; to keep every stderr line a JSON object, descriptor 2 becomes a pipe
//! whose lines are re-emitted as events of target `dgzoo_cli::stderr`, and the formatter
//! writes to a duplicate of the original stderr.
use crate::server::LogFormat;
use std::io::BufRead;
use std::os::fd::{FromRawFd, OwnedFd};

/// Target of the lines other code wrote straight to stderr (JSON mode).
const CAPTURED: &str = "dgzoo_cli::stderr";

/// Install the subscriber: `DGZOO_LOG` (an EnvFilter: a level such as `debug`, or per-module
/// directives such as `warn,dgzoo_server=debug`), else `default`.
pub fn init(default: &str, format: LogFormat) {
    let filter = match &dgzoo::settings::Settings::process().log {
        Some(v) => tracing_subscriber::EnvFilter::try_new(v).unwrap_or_else(|e| {
            eprintln!("dgzoo: DGZOO_LOG is not a valid filter ({e}); using '{default}'");
            tracing_subscriber::EnvFilter::new(default)
        }),
        None => tracing_subscriber::EnvFilter::new(default),
    };
    match format {
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
        }
        LogFormat::Json => {
            // Captured lines (and the CLI's own start lines) are shown whatever the filter, as
            // they would be in text mode.
            let filter = match "dgzoo_cli=info".parse() {
                Ok(d) => filter.add_directive(d),
                Err(_) => filter,
            };
            let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).json();
            let _ = match capture_stderr() {
                // `span` and `spans` of each object carry the request/stream ids.
                Ok(out) => fmt.with_writer(std::sync::Mutex::new(out)).try_init(),
                Err(e) => {
                    let r = fmt.with_writer(std::io::stderr).try_init();
                    tracing::warn!(target: "dgzoo_cli", "cannot capture stderr ({e}): lines of native libraries stay plain text");
                    r
                }
            };
        }
    }
}

/// Point descriptor 2 at a pipe read by a thread that re-emits each line as a log event;
/// returns the original stderr for the formatter.
fn capture_stderr() -> std::io::Result<std::fs::File> {
    let err = std::io::Error::last_os_error;
    // SAFETY: dup on descriptor 2 (open for the life of the process); the result is checked
    // and owned by `orig` alone.
    let orig = unsafe { libc::dup(2) };
    if orig < 0 {
        return Err(err());
    }
    // SAFETY: `orig` is a fresh descriptor nobody else owns.
    let orig = unsafe { std::fs::File::from_raw_fd(orig) };
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(err());
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup2 onto descriptor 2 atomically replaces stderr; `write` stays valid meanwhile
    // and is closed on drop (descriptor 2 keeps the pipe open).
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write), 2) } < 0 {
        return Err(err());
    }
    drop(write);
    std::thread::Builder::new().name("dgzoo-stderr".into()).spawn(move || {
        for line in std::io::BufReader::new(std::fs::File::from(read)).lines() {
            match line {
                Ok(l) if l.trim().is_empty() => {}
                Ok(l) => tracing::info!(target: CAPTURED, "{l}"),
                Err(_) => break,
            }
        }
    })?;
    Ok(orig)
}
