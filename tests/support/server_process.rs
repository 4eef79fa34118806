//! `dgzoo server start` as a child process, the one way tests spawn it: a free port pair (asio
//! on P, http on P+1), another pair when the child exits at start (the pair was taken between
//! the check and the bind: outgoing connections use the same port range), stderr kept in a file
//! for failure messages and the tests that read the log, ready before it is returned, killed
//! on drop.
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to become ready (or to exit when asked to).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `dgzoo` binary: only dgzoo-cli's tests have it (the C-ABI tests include this file too,
/// through `aiserver_common`, and never start it).
fn dgzoo_bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_dgzoo") {
        Some(b) => b,
        None => panic!("the dgzoo binary exists only for the dgzoo-cli crate's tests"),
    }
}

/// A port P with P and P+1 free on 127.0.0.1 (checked just before use).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

/// What to start: `[PREFIX] dgzoo server start --zoo ZOO --port P --protocol PROTOCOL ARGS...`.
pub struct Spawn {
    zoo: OsString,
    protocol: &'static str,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    shell_prefix: Option<String>,
    port: Option<u16>,
}

impl Spawn {
    /// `asio` (readiness: a ping), `http` or `both` (readiness: `/v2/health/ready`); `both`
    /// unless told.
    pub fn protocol(mut self, p: &'static str) -> Self {
        self.protocol = p;
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((k.into(), v.as_ref().to_owned()));
        self
    }
    /// Shell commands run before `exec dgzoo` (e.g. `ulimit -n 64;`).
    pub fn shell_prefix(mut self, prefix: &str) -> Self {
        self.shell_prefix = Some(prefix.to_string());
        self
    }
    /// This asio port (a restart in place), not a free pair: no retry on another one.
    pub fn port(mut self, p: u16) -> Self {
        self.port = Some(p);
        self
    }

    fn command(&self, port: u16, log: &std::fs::File) -> Command {
        let bin = dgzoo_bin();
        let mut cmd = match &self.shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("{prefix} exec \"$0\" \"$@\"")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["server", "start", "--port", &port.to_string(), "--protocol", self.protocol, "--zoo"]).arg(&self.zoo).args(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // A file, not a pipe: a pipe nobody reads could fill and block the server.
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.try_clone().unwrap());
        cmd
    }

    fn ready(&self, port: u16) -> bool {
        let http =
            |p: u16| dgzoo::protocol::http::request_full("127.0.0.1", p, "GET", "/v2/health/ready", None, Duration::from_secs(2)).is_ok_and(|r| r.0 == 200);
        match self.protocol {
            "asio" => {
                dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap()).ping().is_ok()
            }
            "http" => http(port),
            _ => http(port + 1),
        }
    }

    /// Start it and wait until it is ready; panics with its stderr when it cannot start.
    pub fn start(self) -> DgzooServer {
        for _ in 0..3 {
            let port = self.port.unwrap_or_else(free_port_pair);
            let log = tempfile::NamedTempFile::new().unwrap();
            let child = self.command(port, log.as_file()).spawn().expect("spawn dgzoo server start");
            let mut s = DgzooServer { child, port, log };
            let t0 = Instant::now();
            while s.alive() && !self.ready(port) {
                assert!(t0.elapsed() < START_TIMEOUT, "dgzoo server on port {port} not ready within {START_TIMEOUT:?}; its stderr:\n{}", s.log());
                std::thread::sleep(Duration::from_millis(50));
            }
            if s.alive() {
                return s;
            }
            eprintln!("dgzoo server on ports {port}/{} exited at start: {}", port + 1, s.log().trim());
            assert!(self.port.is_none(), "dgzoo server could not start on port {port}, the one it must use:\n{}", s.log());
        }
        panic!("dgzoo server exited at start three times");
    }
}

/// A running `dgzoo server start` child, killed (SIGKILL) and reaped on drop.
pub struct DgzooServer {
    child: Child,
    /// The asio port (http on `port + 1` with `both`).
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl DgzooServer {
    /// `dgzoo server start --zoo ZOO --protocol both`, configured before [`Spawn::start`].
    pub fn spawn(zoo: &Path) -> Spawn {
        Spawn { zoo: zoo.into(), protocol: "both", args: Vec::new(), env: Vec::new(), shell_prefix: None, port: None }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// `127.0.0.1:PORT`, the asio address.
    pub fn asio(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    /// kill -9, and wait until it is gone.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
    /// Wait for the server to exit by itself (after a shutdown command).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(t0.elapsed() < timeout, "dgzoo server did not exit within {timeout:?}; its stderr:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }
}

impl Drop for DgzooServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
