//! `dgzoo server start|rescan-zoo|cache-dump|shutdown` as processes, and (when the PySDK peer
//! is installed) PySDK's own `degirum server` commands against our server.
mod aiserver_common;
use aiserver_common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(zoo: &std::path::Path, port: u16) -> Running {
    let child = Command::new(BIN)
        .args(["server", "start", "--zoo", zoo.to_str().unwrap(), "--port", &port.to_string(), "--protocol", "both", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.ping().is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Running(child)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_exit(r: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = r.0.try_wait().unwrap() {
            assert!(st.success());
            return;
        }
        assert!(Instant::now() < deadline, "server did not exit after shutdown");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dgzoo_server_commands() {
    let zoo = clean_zoo();
    let port = free_port_pair();
    let mut server = start(zoo.path(), port);
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
    run(Command::new(BIN).args(["server", "shutdown", "--port", &p]));
    wait_exit(&mut server);
}

#[test]
fn pysdk_server_commands_against_our_server() {
    let Some(peer) = peer("pysdk_server_commands_against_our_server") else { return };
    let zoo = clean_zoo();
    let port = free_port_pair();
    let mut server = start(zoo.path(), port);
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
