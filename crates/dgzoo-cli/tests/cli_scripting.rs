//! The CLI as a tool in scripts (#13): exit statuses from the error codes (the table in
//! `--help` and docs/cli.md), errors as one JSON object with `--json`, settings from the
//! environment, and download progress bars that show on a terminal only.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::Value;
use std::process::{Command, Output};

fn dgzoo(args: &[&str]) -> Command {
    let mut c = Command::new(dgzoo_bin());
    c.args(args);
    c
}

fn json_error(out: &Output) -> Value {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {err}"))
}

#[test]
fn exit_status_follows_the_error_code() {
    let zoo = format!("{ZOO}/{BLAZE}");
    // NOT_FOUND (dg_code 2) -> 12, as text and as JSON.
    let out = dgzoo(&["info", "--zoo", &zoo, "no_such_model"]).output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("dgzoo: error: "));
    let out = dgzoo(&["info", "--zoo", &zoo, "--json", "no_such_model"]).output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    let e = json_error(&out);
    assert_eq!(e["error"]["code"], "NOT_FOUND");
    assert_eq!(e["error"]["dg_code"], 2);
    assert_eq!(e["exit_status"], 12);
    assert!(e["error"]["message"].as_str().unwrap().contains("no_such_model"), "{e}");
    // INVALID_ARGUMENT (1) -> 11.
    let out = dgzoo(&["predict", "--zoo", &zoo, "--model", BLAZE, "--props", "{not json", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert_eq!(json_error(&out)["error"]["code"], "INVALID_ARGUMENT");
    // AUTH (6) -> 16, from a real hub refusing the token.
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let out = dgzoo(&["list", "--zoo", &hub_url(&hub), "--token", "wrong", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(16), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_error(&out)["error"]["code"], "AUTH");
    // NETWORK (5) -> 15: nothing listens there.
    let port = free_port();
    let out = dgzoo(&["list", "--zoo", &format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}"), "--token", TOKEN, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(15), "{}", String::from_utf8_lossy(&out.stderr));
    // A usage error is 2; with --json also a JSON object.
    let out = dgzoo(&["list", "--no-such-flag", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_error(&out)["error"]["code"], "INVALID_ARGUMENT");
    // The table is in --help.
    let help = String::from_utf8(dgzoo(&["--help"]).output().unwrap().stdout).unwrap();
    assert!(help.contains("Exit status:") && help.contains("12  not found") && help.contains("DG_AUTH = 6"), "{help}");
}

/// `dgzoo predict ... | head -1`: once the reader has gone, the tool stops with status 141
/// (a shell's status for a SIGPIPE'd tool), without a panic on stderr.
#[test]
fn predict_stops_quietly_when_the_reader_goes_away() {
    use std::io::BufRead;
    let zoo = format!("{ZOO}/{BLAZE}");
    let img = format!("{ZOO}/images/girls_256.jpg");
    // Enough lines that they cannot all sit in the pipe's buffer when the reader leaves.
    let mut cmd = dgzoo(&["predict", "--zoo", &zoo, "--model", BLAZE]);
    cmd.args(std::iter::repeat_n(img.as_str(), 600)).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with(r#"{"image":"#), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn settings_from_the_environment() {
    let root = hub_root(&[BLAZE]);
    let hub = start_hub(root.path());
    let cdir = tempfile::tempdir().unwrap();
    // --zoo, --token and --json from DGZOO_ZOO_URL, DGZOO_TOKEN, DGZOO_JSON.
    let out = dgzoo(&["list"]).env("DGZOO_ZOO_URL", hub_url(&hub)).env("DGZOO_TOKEN", TOKEN).env("DGZOO_JSON", "true").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names, serde_json::json!([BLAZE]));
    // An option given wins over the environment.
    let out = dgzoo(&["list", "--token", "wrong"]).env("DGZOO_ZOO_URL", hub_url(&hub)).env("DGZOO_TOKEN", TOKEN).env("DGZOO_JSON", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(16));
    assert_eq!(json_error(&out)["error"]["code"], "AUTH");
    // cache fetch: the URL and token from the environment.
    let out =
        dgzoo(&["cache", "fetch", BLAZE]).env("DGZOO_ZOO_URL", hub_url(&hub)).env("DGZOO_TOKEN", TOKEN).env("DGZOO_CACHE_DIR", cdir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The token's value is never shown in --help.
    let help = String::from_utf8(dgzoo(&["list", "--help"]).env("DGZOO_TOKEN", "secret-value").output().unwrap().stdout).unwrap();
    assert!(help.contains("DGZOO_TOKEN") && !help.contains("secret-value"), "{help}");
}

/// Runs `cmd` under `script` (a pseudo-terminal), returning everything it printed.
fn on_a_terminal(cmd: &str, cache: &std::path::Path) -> String {
    let out = Command::new("script").args(["-qec", cmd, "/dev/null"]).env("DGZOO_CACHE_DIR", cache).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bars_on_a_terminal_only() {
    let root = hub_root(&[BLAZE, EFF_F]);
    let hub = slow_hub(root.path());
    let url = hub_url(&hub);
    let cdir = tempfile::tempdir().unwrap();
    let bin = dgzoo_bin();
    let bar = |s: &str| s.contains("KiB/") || s.contains("MiB/");
    // cache fetch and predict's cloud load_model draw a bar on a terminal...
    let fetched = on_a_terminal(&format!("{bin} cache fetch --url {url} --token {TOKEN} {BLAZE}"), cdir.path());
    assert!(bar(&fetched), "{fetched}");
    let img = format!("{ZOO}/images/cat_224.jpg");
    let predicted = on_a_terminal(&format!("{bin} predict --zoo {url} --token {TOKEN} --model {EFF_F} {img}"), cdir.path());
    assert!(bar(&predicted), "{predicted}");
    // ... and none when stderr is not one.
    let other = tempfile::tempdir().unwrap();
    let out = dgzoo(&["cache", "fetch", "--url", &url, "--token", TOKEN, BLAZE]).env("DGZOO_CACHE_DIR", other.path()).output().unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A hub slow enough for a bar to be drawn (indicatif draws at most every 50 ms).
fn slow_hub(root: &std::path::Path) -> dgzoo_server::hub::Hub {
    let mut cfg = dgzoo_server::hub::HubConfig::new(root);
    cfg.port = 0;
    cfg.rate_limit = Some(4 << 20);
    dgzoo_server::hub::Hub::start(&cfg).unwrap()
}
