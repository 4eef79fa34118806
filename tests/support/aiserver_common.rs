//! Shared helpers of the AI-server tests: a clean copy of the shared zoo, servers on
//! 127.0.0.1 with ephemeral ports, the golden comparison and the PySDK peer location.
#![allow(dead_code)]
use dgzoo::inference::InferenceResult;
use dgzoo_server::aiserver::{Config, Protocol, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[path = "server_process.rs"]
mod server_process;
pub use server_process::free_port_pair;
// Not every test that includes this file spawns `dgzoo server` processes.
#[allow(unused_imports)]
pub use server_process::DgzooServer;

/// The shared test zoo beside the repository (`../shared/zoo`).
pub const SHARED_ZOO: &str = concat!(env!("DGZOO_REPO"), "/../shared/zoo");

pub const MODELS: &[&str] = &[
    "blazeface_short_range--128x128_float_tflite_cpu_1",
    "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1",
    "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1",
    "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1",
    "yolov8n_nudenet--320x320_float_onnx_cpu_1",
    "yolov8n_nudenet--320x320_float_tflite_cpu_1",
];
pub const IMAGES: &[&str] = &["car_416.jpg", "cat_224.jpg", "girls_256.jpg"];

pub fn image(name: &str) -> PathBuf {
    Path::new(SHARED_ZOO).join("images").join(name)
}

/// The six model folders only (real directories, files symlinked). The shared zoo also holds
/// `expected/model_info/<model>.json`, valid model configs with the same names that a
/// recursive scan would pick up in place of the real ones.
pub fn clean_zoo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for m in MODELS {
        let src = Path::new(SHARED_ZOO).join(m);
        let dst = dir.path().join(m);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(&src).unwrap().flatten() {
            std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

/// Our server on 127.0.0.1, ephemeral port(s).
pub fn start_server(zoo: &Path, protocol: Protocol) -> Server {
    let mut cfg = Config::new(zoo);
    cfg.port = 0;
    cfg.protocol = protocol;
    cfg.quiet = true;
    Server::start(cfg).expect("server starts")
}

pub fn golden(model: &str, image: &str) -> Value {
    let p = Path::new(SHARED_ZOO).join("expected").join(model).join(image.replace(".jpg", ".json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("golden file")).expect("golden json");
    v["results"].clone()
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other.as_f64().unwrap_or(f64::NAN)),
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Compare one result list (JSON, raw tensors as `{"__ndarray__", dtype, shape, data}`) with
/// the golden list: labels/ids/names exact, scores 1e-4, boxes 0.5 px, tensor values 1e-4.
pub fn compare(got: &[Value], want: &Value, what: &str) -> Result<(), String> {
    let want = want.as_array().ok_or("golden is not a list")?;
    if got.len() != want.len() {
        return Err(format!("{what}: {} results, golden has {}: got {}", got.len(), want.len(), Value::Array(got.to_vec())));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_object().ok_or("result not a map")?, w.as_object().ok_or("golden not a map")?);
        let mut gk: Vec<&String> = g.keys().collect();
        let mut wk: Vec<&String> = w.keys().collect();
        gk.sort();
        wk.sort();
        if gk != wk {
            return Err(format!("{what}[{i}]: keys {gk:?} != golden {wk:?}"));
        }
        for (k, wv) in w {
            let gv = &g[k];
            let ok = match k.as_str() {
                "score" => close(gv.as_f64().unwrap_or(f64::NAN), wv.as_f64().unwrap_or(0.0), 1e-4),
                "bbox" => {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    flatten(gv, &mut a);
                    flatten(wv, &mut b);
                    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| close(*x, *y, 0.5))
                }
                "data" if wv.get("__ndarray__").is_some() => {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    flatten(&gv["data"], &mut a);
                    flatten(&wv["data"], &mut b);
                    gv["dtype"] == wv["dtype"]
                        && gv["shape"] == wv["shape"]
                        && a.len() == b.len()
                        && a.iter().zip(&b).all(|(x, y)| close(*x, *y, 1e-4 + 1e-5 * y.abs()))
                }
                "quantization" => {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    flatten(&gv["scale"], &mut a);
                    flatten(&wv["scale"], &mut b);
                    gv["axis"] == wv["axis"] && gv["zero"] == wv["zero"] && a.iter().zip(&b).all(|(x, y)| close(*x, *y, 1e-6 * y.abs().max(1.0)))
                }
                _ => gv == wv,
            };
            if !ok {
                let shown = |v: &Value| v.to_string().chars().take(200).collect::<String>();
                return Err(format!("{what}[{i}].{k}: got {} want {}", shown(gv), shown(wv)));
            }
        }
    }
    Ok(())
}

/// Our results in the golden's JSON form (tensors expanded into nested `__ndarray__` data).
pub fn to_golden_form(r: &InferenceResult) -> Vec<Value> {
    r.results_inline()
}

/// The PySDK 1.5.0 peer installation: `$DGZOO_PEER`, else `<crate>/.peer`. `None` (after
/// printing SKIP) when absent, unless `DGZOO_REQUIRE_PEER=1`, which makes it a failure.
pub fn peer(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("DGZOO_REPO")).join(".peer"));
    if dir.join("venv/bin/python").exists() {
        return Some(dir);
    }
    if std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1") {
        panic!("{test}: PySDK peer not found at {} and DGZOO_REQUIRE_PEER=1", dir.display());
    }
    eprintln!("SKIP {test}: PySDK peer not found at {} (set DGZOO_PEER)", dir.display());
    None
}

/// The peer's onnxruntime 1.20.1 library directory.
pub fn peer_ld_path(peer: &Path) -> String {
    for d in ["ort", "ort-1.20.1/lib"] {
        if peer.join(d).join("libonnxruntime.so.1").exists() {
            return peer.join(d).to_string_lossy().into_owned();
        }
    }
    peer.join("ort").to_string_lossy().into_owned()
}

/// The PySDK AI server as a child process (asio on `port`, http on `port + 1`); shut down
/// (and killed if need be) on drop.
pub struct PeerServer {
    child: std::process::Child,
    pub port: u16,
    peer: PathBuf,
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        let _ = std::process::Command::new(self.peer.join("venv/bin/degirum"))
            .args(["server", "shutdown", "--port", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // Its http listener stays up after an asio shutdown: stop it too.
        let _ = dgzoo::protocol::http::request("127.0.0.1", self.port + 1, "POST", "/v1/shutdown", None, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `degirum server start --protocol both` on `zoo` and wait (60 s at most) until it
/// answers a ping. `env` adds variables (e.g. `HOME` for its cloud model cache).
pub fn start_peer_server(peer: &Path, zoo: &Path, env: &[(&str, &Path)]) -> PeerServer {
    use std::time::{Duration, Instant};
    let port = free_port_pair();
    let mut cmd = std::process::Command::new(peer.join("venv/bin/degirum"));
    cmd.args(["server", "start", "--zoo", zoo.to_str().unwrap(), "--port", &port.to_string(), "--protocol", "both"])
        .env("LD_LIBRARY_PATH", peer_ld_path(peer))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start the PySDK server");
    let server = PeerServer { child, port, peer: peer.to_path_buf() };
    let client = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.ping().is_err() {
        assert!(Instant::now() < deadline, "the PySDK server did not come up within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    server
}

/// An asio proxy in front of an AI server that watches its inference streams: how many were
/// opened and the most frames one had in flight (sent by the client, result not yet passed
/// back; one packet per frame, i.e. single-input models). Each result is held back until
/// the client has `settle` frames in flight or has sent nothing for 300 ms, so a client
/// that pipelines reliably reaches its window. With `hold` set, results are not passed on
/// at all (a hung server).
pub struct StreamProxy {
    pub addr: String,
    stats: std::sync::Arc<ProxyStats>,
}

#[derive(Default)]
struct ProxyStats {
    streams: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    hold: std::sync::atomic::AtomicBool,
}

impl StreamProxy {
    pub fn start(upstream: &str, settle: usize) -> StreamProxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
        let stats = std::sync::Arc::new(ProxyStats::default());
        let (up, st) = (upstream.to_string(), stats.clone());
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let (up, st) = (up.clone(), st.clone());
                std::thread::spawn(move || proxy_connection(client, &up, st, settle));
            }
        });
        StreamProxy { addr, stats }
    }

    pub fn streams(&self) -> usize {
        self.stats.streams.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.stats.streams.store(0, std::sync::atomic::Ordering::SeqCst);
        self.stats.max_in_flight.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn hold(&self, on: bool) {
        self.stats.hold.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

fn proxy_connection(mut client: std::net::TcpStream, upstream: &str, stats: std::sync::Arc<ProxyStats>, settle: usize) {
    use dgzoo::protocol::{read_packet, write_packet};
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};
    let Ok(mut server) = std::net::TcpStream::connect(upstream) else { return };
    let Ok(Some(first)) = read_packet(&mut client, usize::MAX) else { return };
    let _ = write_packet(&mut server, &first);
    let is_stream = serde_json::from_slice::<Value>(&first).is_ok_and(|v| v["op"] == "stream");
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    if !is_stream {
        // Commands: bytes through as they are.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut client, &mut server);
        let _ = server.shutdown(std::net::Shutdown::Write);
        return;
    }
    stats.streams.fetch_add(1, SeqCst);
    // (frames sent, results passed back)
    let counts = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
    let (cnt, st) = (counts.clone(), stats.clone());
    std::thread::spawn(move || {
        while let Ok(Some(result)) = read_packet(&mut s2, usize::MAX) {
            let (m, cv) = &*cnt;
            let mut g = m.lock().unwrap();
            let mut last = (g.0, Instant::now());
            loop {
                let (sent, answered) = *g;
                if last.0 != sent {
                    last = (sent, Instant::now());
                }
                let settled = sent - answered >= settle || last.1.elapsed() >= Duration::from_millis(300);
                if settled && !st.hold.load(SeqCst) {
                    break;
                }
                g = cv.wait_timeout(g, Duration::from_millis(20)).unwrap().0;
            }
            g.1 += 1;
            drop(g);
            if write_packet(&mut c2, &result).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(std::net::Shutdown::Both);
    });
    while let Ok(Some(frame)) = read_packet(&mut client, usize::MAX) {
        if !frame.is_empty() {
            let (m, cv) = &*counts;
            let mut g = m.lock().unwrap();
            g.0 += 1;
            stats.max_in_flight.fetch_max(g.0 - g.1, SeqCst);
            cv.notify_all();
        }
        if write_packet(&mut server, &frame).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// Read the next server WebSocket frame (unmasked, possibly with an extended length), skipping
/// pings: (opcode, payload).
pub fn ws_read(s: &mut impl std::io::Read) -> (u8, Vec<u8>) {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        let mut len = (h[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut p = vec![0u8; len as usize];
        s.read_exact(&mut p).unwrap();
        if h[0] & 0x0f != 9 {
            return (h[0] & 0x0f, p);
        }
    }
}

/// Write an **unmasked** client frame, as DeGirum's client does; `first` is the frame's first
/// byte (FIN, RSV bits and opcode: 0x81 text, 0x82 binary).
pub fn ws_write(s: &mut impl std::io::Write, first: u8, payload: &[u8]) {
    let mut f = vec![first];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else if payload.len() < 65536 {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    s.write_all(&f).unwrap();
}
