//! How the tool ends for scripts: the exit status of each error code, and errors as one JSON
//! object when the command was asked for JSON.
use dgzoo::error::Code;
use serde_json::json;
use std::process::ExitCode;

/// Exit status for command-line usage errors (clap's convention).
pub const USAGE: u8 = 2;
/// Exit status when the reader of stdout went away (`| head`): a shell's status for a tool
/// ended by SIGPIPE (128 + 13); the tool stops quietly instead of panicking on the write.
pub const BROKEN_PIPE: i32 = 141;
/// Exit status of an error with code `c`: 10 + its `dg_code` value, so statuses 1 and 2 keep
/// their usual meanings and every code has its own status.
pub fn status(c: Code) -> u8 {
    10 + c as u8
}

/// The table shown by `dgzoo --help` (and in docs/cli.md).
pub fn table() -> String {
    let mut s = String::from("Exit status:\n  0   success\n  2   command-line usage error\n  141 the reader of the output went away (as SIGPIPE)\n");
    for c in Code::ALL.into_iter().skip(1) {
        s.push_str(&format!("  {:<3} {} (dg_code DG_{} = {})\n", status(c), describe(c), c.name(), c as u8));
    }
    s.push_str("With --json an error is also one JSON object on stderr:\n  {\"error\": {\"code\": \"NOT_FOUND\", \"dg_code\": 2, \"message\": \"...\"}, \"exit_status\": 12}");
    s
}

fn describe(c: Code) -> &'static str {
    match c {
        Code::Ok => "success",
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found (model, zoo, file, cached model)",
        Code::Unsupported => "unsupported (no device can run the model)",
        Code::Io => "file or cache I/O",
        Code::Network => "network (server unreachable, transfer interrupted)",
        Code::Auth => "authentication (bad or missing token)",
        Code::Protocol => "protocol (ill-formed server reply)",
        Code::BadModel => "bad model (configuration, archive, checksum)",
        Code::Inference => "inference failed",
        Code::Timeout => "timeout",
        Code::Cancelled => "cancelled",
        Code::Internal => "internal error",
    }
}

/// Report `e` on stderr (text or one JSON object) and give its exit status.
pub fn fail(e: &dgzoo::Error, as_json: bool) -> ExitCode {
    let st = status(e.code);
    if as_json {
        eprintln!("{}", json!({"error": {"code": e.code.name(), "dg_code": e.code as u8, "message": e.message}, "exit_status": st}));
    } else {
        eprintln!("dgzoo: error: {e}");
    }
    ExitCode::from(st)
}
