//! `dgzoo server start|rescan-zoo|cache-dump|shutdown` as processes, and (when the PySDK peer
//! is installed) PySDK's own `degirum server` commands against our server.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");

fn start(zoo: &std::path::Path) -> DgzooServer {
    DgzooServer::spawn(zoo).args(&["--quiet"]).start()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_exit(r: &mut DgzooServer) {
    assert!(r.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn dgzoo_server_commands() {
    let zoo = clean_zoo();
    let grace = Duration::from_secs(3);
    let mut server = DgzooServer::spawn(zoo.path()).args(&["--quiet", "--shutdown-grace", "3"]).start();
    let port = server.port;
    let p = port.to_string();
    let names = run(Command::new(BIN).args(["list", "--host", &format!("http://127.0.0.1:{}", port + 1), "--zoo", ""]));
    assert_eq!(names.lines().collect::<Vec<_>>(), MODELS);
    run(Command::new(BIN).args(["server", "rescan-zoo", "--port", &p]));
    let dump: serde_json::Value = serde_json::from_str(&run(Command::new(BIN).args(["server", "cache-dump", "--port", &p]))).unwrap();
    assert_eq!(dump["AgentCacheSize"], 0);
    let out = run(Command::new(BIN).args(["predict", "--host", &format!("127.0.0.1:{port}"), "--zoo", "", "--model", MODELS[2]]).arg(image("cat_224.jpg")));
    assert!(out.contains("Egyptian cat"), "{out}");
    let dump: serde_json::Value = serde_json::from_str(&run(Command::new(BIN).args(["server", "cache-dump", "--port", &p]))).unwrap();
    assert_eq!(dump["AgentCacheSize"], 1);
    let t = Instant::now();
    run(Command::new(BIN).args(["server", "shutdown", "--port", &p]));
    // `--shutdown-grace 3`: still served meanwhile, not ready (polled: the reply comes just
    // before readiness turns false), gone after it.
    loop {
        let ready = dgzoo::protocol::http::request("127.0.0.1", port + 1, "GET", "/v2/health/ready", None, Duration::from_secs(2)).map(|r| r.0);
        if matches!(ready, Ok(503)) {
            break;
        }
        assert!(t.elapsed() < grace, "readiness {ready:?} {:?} after the shutdown", t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_exit(&mut server);
    assert!(t.elapsed() >= grace, "exited {:?} after the shutdown, before its 3 s grace", t.elapsed());
}

#[test]
fn bad_shutdown_grace_is_refused() {
    let out = Command::new(BIN).args(["server", "start", "--port", "0", "--zoo", SHARED_ZOO, "--shutdown-grace=-1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--shutdown-grace -1 is not a non-negative number of seconds"), "{err}");
}

#[test]
fn pysdk_server_commands_against_our_server() {
    let Some(peer) = peer("pysdk_server_commands_against_our_server") else { return };
    let zoo = clean_zoo();
    let mut server = start(zoo.path());
    let port = server.port;
    let degirum = peer.join("venv/bin/degirum");
    let p = port.to_string();
    run(Command::new(&degirum).args(["server", "rescan-zoo", "--port", &p]));
    let out = run(Command::new(&degirum).args(["server", "cache-dump", "--port", &p]));
    assert!(out.contains("AgentCacheSize"), "{out}");
    // PySDK's shutdown connects once more after the reply to send a wake-up packet; it fails
    // with "Connection refused" unless the server still accepts for a moment.
    run(Command::new(&degirum).args(["server", "shutdown", "--port", &p]));
    wait_exit(&mut server);
}

/// Runtime libraries mapped by a live process (from /proc/PID/maps).
fn mapped_runtimes(pid: u32) -> Vec<&'static str> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    [("libopenvino", "OPENVINO"), ("libonnxruntime", "ONNX"), ("libLiteRt", "TFLITE")]
        .into_iter()
        .filter(|(lib, _)| maps.contains(lib))
        .map(|(_, rt)| rt)
        .collect()
}

/// The server lists every runtime of the machine (measured by a child `sys-info` probe) but
/// maps only those its models use: OpenVINO alone is 19 MiB resident.
#[test]
fn server_maps_only_the_runtimes_its_models_use() {
    let zoo = clean_zoo();
    let mut server = start(zoo.path());
    let port = server.port;
    let local: serde_json::Value = serde_json::from_str(&run(Command::new(BIN).args(["sys-info", "--json"]))).unwrap();
    let remote: serde_json::Value =
        serde_json::from_str(&run(Command::new(BIN).args(["sys-info", "--json", "--host", &format!("127.0.0.1:{port}"), "--zoo", ""]))).unwrap();
    let keys = |v: &serde_json::Value| v["Devices"].as_object().map(|d| d.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert!(!keys(&local).is_empty(), "{local}");
    assert_eq!(keys(&remote), keys(&local), "the server's system info is the machine's");
    assert_eq!(mapped_runtimes(server.pid()), Vec::<&str>::new(), "no model used yet: no runtime mapped");
    // MODELS[2] is a TFLite model: only LiteRT is mapped after it ran.
    let out = run(Command::new(BIN).args(["predict", "--host", &format!("127.0.0.1:{port}"), "--zoo", "", "--model", MODELS[2]]).arg(image("cat_224.jpg")));
    assert!(out.contains("Egyptian cat"), "{out}");
    assert_eq!(mapped_runtimes(server.pid()), vec!["TFLITE"]);
    assert!(server.alive());
}
