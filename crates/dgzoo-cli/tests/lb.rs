//! #13 behind a real load balancer and #14's kill -9 of the AI server, with real processes
//! only: `dgzoo server` and `dgzoo hub` children, Debian's HAProxy running `docs/haproxy.cfg`
//! (the deployment recipe of docs/deploy.md, filled in through its environment variables with
//! free 127.0.0.1 ports), the real PySDK 1.5.0 client and dgzoo's own client.
//!
//! Every batch sends frame `i` as image `IMAGES[i % 3]` with `i` as its id, so each result is
//! checked against its own frame (the three images have different top classes), and frames sent
//! are counted against results plus errors: nothing silently dropped, nothing answered twice.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use aiserver_common::{free_port_pair, image, peer, peer_ld_path, IMAGES, MODELS};
use dgzoo::pipeline::{AsyncPredictor, OwnedInput};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");
/// The smallest classifier of the shared zoo (EfficientNet-Lite0, TFLite float).
const EFF: &str = MODELS[2];
/// The start of PySDK's text for every frame lost with its connection (asio and WebSocket).
const LOST: &str = "[CRITICAL]Operation failed\n";

fn lost_prefix() -> String {
    format!("Failed to perform model '{EFF}' inference: {LOST}")
}

/// HAProxy's binary, or `None` (after printing SKIP) when it is not installed, unless
/// `DGZOO_REQUIRE_PEER=1` (CI: `scripts/bootstrap.sh haproxy` installs it), which fails.
fn haproxy(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).map(|d| d.join("haproxy")).find(|f| f.is_file()))
        .unwrap_or(None);
    if found.is_none() {
        if std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1") {
            panic!("{test}: haproxy not found and DGZOO_REQUIRE_PEER=1 (scripts/bootstrap.sh haproxy installs it)");
        }
        eprintln!("SKIP {test}: haproxy not found (scripts/bootstrap.sh haproxy installs it)");
    }
    found
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// kill -9, and wait until it is gone.
    fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

/// Bytes a process has read (`rchar` of /proc/PID/io): tells which server carries a stream.
fn read_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("rchar: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}
/// Bytes a process has written (`wchar`): tells which hub serves a download.
fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("wchar: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    dgzoo::protocol::http::request_full("127.0.0.1", port, "GET", path, None, Duration::from_secs(2)).ok().map(|(s, _, _)| s)
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dgzoo server start --protocol both` (asio on `port`, http on `port + 1`), ready.
struct AiServer {
    proc: Proc,
    port: u16,
}
impl AiServer {
    fn start(zoo: &Path, port: Option<u16>) -> AiServer {
        let port = port.unwrap_or_else(free_port_pair);
        let child = Command::new(BIN)
            .args(["server", "start", "--zoo", zoo.to_str().unwrap(), "--port", &port.to_string(), "--protocol", "both"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = AiServer { proc: Proc(child), port };
        wait_until("AI server ready", Duration::from_secs(30), || http_status(port + 1, "/v2/health/ready") == Some(200));
        s
    }
    fn asio(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// HAProxy on `docs/haproxy.cfg` with free ports for its three fronts.
struct Lb {
    _proc: Proc,
    asio: u16,
    http: u16,
    hub: u16,
}

fn free_port() -> u16 {
    cloud_common::free_port()
}

impl Lb {
    /// `ai`: the two AI servers' asio ports (http = +1); `hubs`: the two hub ports (any free
    /// port when the test has no hub: its backend is simply down).
    fn start(bin: &Path, ai: [u16; 2], hubs: Option<[u16; 2]>) -> Lb {
        let (asio, http, hub) = (free_port(), free_port(), free_port());
        let hubs = hubs.unwrap_or_else(|| [free_port(), free_port()]);
        let cfg = Path::new(env!("DGZOO_REPO")).join("docs/haproxy.cfg");
        let a = |p: u16| format!("127.0.0.1:{p}");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("DGZOO_LB_ASIO", a(asio))
            .env("DGZOO_LB_HTTP", a(http))
            .env("DGZOO_LB_HUB", a(hub))
            .env("DGZOO_AI1", a(ai[0]))
            .env("DGZOO_AI2", a(ai[1]))
            .env("DGZOO_AI1_HTTP", a(ai[0] + 1))
            .env("DGZOO_AI2_HTTP", a(ai[1] + 1))
            .env("DGZOO_AI1_HTTP_PORT", (ai[0] + 1).to_string())
            .env("DGZOO_AI2_HTTP_PORT", (ai[1] + 1).to_string())
            .env("DGZOO_HUB1", a(hubs[0]))
            .env("DGZOO_HUB2", a(hubs[1]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lb = Lb { _proc: Proc(child), asio, http, hub };
        wait_until("HAProxy listening", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", asio)).is_ok());
        lb
    }
    fn asio(&self) -> String {
        format!("127.0.0.1:{}", self.asio)
    }
    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

/// The frames of a batch: frame `i` is image `IMAGES[i % 3]`.
fn frame(i: usize) -> Vec<OwnedInput> {
    vec![OwnedInput::Bytes(std::fs::read(image(IMAGES[i % IMAGES.len()])).unwrap())]
}

/// The top class of each of the three images (from a model on `host`).
fn labels(host: &str) -> Vec<String> {
    let m = Zoo::connect(host, "", "").unwrap().load_model(EFF, &Value::Null).unwrap();
    (0..IMAGES.len())
        .map(|i| {
            let inputs = frame(i);
            let r = dgzoo::model::predict(&m, &inputs.iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
            r.results[0]["label"].as_str().unwrap().to_string()
        })
        .collect()
}

type Outcomes = Arc<Mutex<Vec<(u64, dgzoo::Result<String>)>>>;

/// Run `n` frames through `model` on an async predictor; `during(results so far)` is called
/// while they run (it may kill a server). Returns each frame's outcome by id.
fn run_batch(model: &dgzoo::model::Model, n: usize, mut during: impl FnMut(&Outcomes)) -> Vec<(u64, dgzoo::Result<String>)> {
    let out: Outcomes = Arc::default();
    let o = out.clone();
    let p = AsyncPredictor::new(
        model.clone(),
        8,
        Box::new(move |id, r| o.lock().unwrap().push((id, r.map(|r| r.results[0]["label"].as_str().unwrap_or_default().to_string())))),
    )
    .unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit(i as u64, frame(i)).unwrap();
        during(&out);
    }
    p.wait();
    during(&out);
    assert!(t0.elapsed() < Duration::from_secs(60), "the batch hung: {:?}", t0.elapsed());
    let mut got = out.lock().unwrap().clone();
    got.sort_by_key(|(id, _)| *id);
    got
}

/// Every frame answered exactly once, each result the top class of its own image, each error
/// PySDK's connection-lost text; the errors are the frames in flight at the kill (`at_least`
/// of them, one run of consecutive ids), every later frame succeeds. Returns the error count.
fn check_batch(got: &[(u64, dgzoo::Result<String>)], n: usize, want: &[String], at_least: usize) -> usize {
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..n as u64).collect::<Vec<_>>(), "each frame answered once");
    let mut errs = Vec::new();
    for (id, r) in got {
        match r {
            Ok(label) => assert_eq!(label, &want[*id as usize % want.len()], "frame {id} got another frame's result"),
            Err(e) => {
                assert!(e.message.starts_with(&lost_prefix()), "frame {id}: {:?}", e.message);
                assert_eq!(e.code, dgzoo::Code::Network, "frame {id}");
                errs.push(*id);
            }
        }
    }
    assert!(errs.len() >= at_least, "{} frames failed, expected at least {at_least}", errs.len());
    if let (Some(a), Some(b)) = (errs.first(), errs.last()) {
        assert_eq!((b - a + 1) as usize, errs.len(), "the lost frames are the ones in flight at the kill: {errs:?}");
        assert!((*b as usize) < n - 1, "frames after the kill succeed: {errs:?}");
    }
    errs.len()
}

/// dgzoo's client through HAProxy (asio and http fronts): kill -9 the server carrying a
/// batch in its middle; the frames in flight get PySDK's connection-lost error, the rest of
/// the batch and the next connect land on the survivor.
#[test]
fn dgzoo_client_behind_haproxy_survives_kill9() {
    let Some(hap) = haproxy("dgzoo_client_behind_haproxy_survives_kill9") else { return };
    let zoo = aiserver_common::clean_zoo();
    for front in ["asio", "http"] {
        let mut servers = [AiServer::start(zoo.path(), None), AiServer::start(zoo.path(), None)];
        let lb = Lb::start(&hap, [servers[0].port, servers[1].port], None);
        let host = if front == "asio" { lb.asio() } else { lb.http() };
        let want = labels(&servers[0].asio());
        let model = Zoo::connect(&host, "", "").unwrap().load_model(EFF, &json!({"inference_timeout_s": 10})).unwrap();
        const N: usize = 40;
        let base: Vec<u64> = servers.iter().map(|s| read_bytes(s.proc.pid())).collect();
        let mut killed = None;
        let got = run_batch(&model, N, |out| {
            if killed.is_none() && out.lock().unwrap().len() >= 10 {
                let busy = (0..2).max_by_key(|&i| read_bytes(servers[i].proc.pid()).saturating_sub(base[i])).unwrap();
                servers[busy].proc.kill9();
                killed = Some(busy);
            }
        });
        let dead = killed.expect("the batch ended before the kill");
        let lost = check_batch(&got, N, &want, 1);
        eprintln!("{front} through HAProxy: server {dead} killed, {lost} of {N} frames lost, the rest answered");
        // The next connect lands on the survivor.
        let survivor = 1 - dead;
        assert!(servers[survivor].proc.alive());
        let again = labels(&host);
        assert_eq!(again, want, "{front}: the survivor answers");
    }
}
