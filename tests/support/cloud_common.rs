//! Shared helpers of the cloud tests: hub roots packed from the real shared zoo, our hub
//! in-process, the real dg-zoo-server and PySDK from the peer environment.
#![allow(dead_code)]
use dgzoo::cache::archive::pack_model;
use dgzoo::cache::CacheConfig;
use dgzoo::zoo::{ConnectOptions, Zoo};
use dgzoo_server::hub::{Hub, HubConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ZOO: &str = concat!(env!("DGZOO_REPO"), "/../shared/zoo");
pub const ORG: &str = "myorg";
pub const ZOONAME: &str = "myzoo";
pub const TOKEN: &str = "dg_test_token_1";
pub const EFF_F: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";
pub const EFF_Q: &str = "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1";
pub const EFF_ONNX: &str = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";
pub const YOLO: &str = "yolov8n_nudenet--320x320_float_tflite_cpu_1";
pub const BLAZE: &str = "blazeface_short_range--128x128_float_tflite_cpu_1";

/// The peer environment (real PySDK and dg-zoo-server): `$DGZOO_PEER`, else
/// `<manifest>/.peer`. `None` (after printing SKIP) when absent, unless
/// `DGZOO_REQUIRE_PEER=1`, which makes its absence a failure.
pub fn peer() -> Option<PathBuf> {
    let p = std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(concat!(env!("DGZOO_REPO"), "/.peer")));
    if p.join("venv/bin/python").exists() && p.join("zoovenv/bin/python").exists() {
        return Some(p);
    }
    if std::env::var("DGZOO_REQUIRE_PEER").is_ok_and(|v| v == "1") {
        panic!("peer environment not found at {} and DGZOO_REQUIRE_PEER=1", p.display());
    }
    eprintln!("SKIP: peer environment (PySDK, dg-zoo-server) not found at {}", p.display());
    None
}

/// A hub root with `tokens.json` (TOKEN → myorg/myzoo) and the given shared-zoo models packed
/// into `myorg/myzoo/<m>.zip`.
pub fn hub_root(models: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let zdir = root.path().join(ORG).join(ZOONAME);
    std::fs::create_dir_all(&zdir).unwrap();
    for m in models {
        pack_model(&Path::new(ZOO).join(m), &zdir.join(format!("{m}.zip"))).unwrap();
    }
    std::fs::write(root.path().join("tokens.json"), format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}}}"#)).unwrap();
    root
}

pub fn zoo_dir(root: &Path) -> PathBuf {
    root.join(ORG).join(ZOONAME)
}

pub fn start_hub(root: &Path) -> Hub {
    let mut cfg = HubConfig::new(root);
    cfg.port = 0;
    Hub::start(&cfg).expect("hub start")
}

pub fn hub_url(hub: &Hub) -> String {
    format!("http://{}/{ORG}/{ZOONAME}", hub.addr())
}

pub fn cache_cfg(dir: &Path) -> CacheConfig {
    CacheConfig { root: dir.to_path_buf(), limit: dgzoo::cache::DEFAULT_LIMIT, offline: false }
}

pub fn connect(url: &str, token: &str, cache: &CacheConfig) -> dgzoo::Result<Zoo> {
    Zoo::connect_with("@local", url, token, &ConnectOptions { cache: Some(cache.clone()), offline: None, ..Default::default() })
}

pub fn image(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(ZOO).join("images").join(name)).unwrap()
}

pub fn predict(zoo: &Zoo, model: &str, img: &str) -> Value {
    let m = zoo.load_model(model, &Value::Null).unwrap_or_else(|e| panic!("load {model}: {}", e.message));
    let r = dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&image(img))]).unwrap_or_else(|e| panic!("predict {model}: {}", e.message));
    serde_json::to_value(&r.results).unwrap()
}

/// Results of the same model from the local shared zoo directory.
pub fn local_predict(model: &str, img: &str) -> Value {
    let zoo = Zoo::connect("@local", &format!("{ZOO}/{model}"), "").unwrap();
    predict(&zoo, model, img)
}

pub fn golden(model: &str, img: &str) -> Value {
    let stem = img.trim_end_matches(".jpg");
    let t = std::fs::read_to_string(format!("{ZOO}/expected/{model}/{stem}.json")).unwrap();
    serde_json::from_str::<Value>(&t).unwrap()["results"].clone()
}

/// Labels exact, numbers (scores, boxes) within `tol`.
pub fn assert_close(got: &Value, want: &Value, tol: f64, what: &str) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}: lengths differ: {got} vs {want}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, tol, &format!("{what}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "{what}: keys differ");
            for (k, x) in a {
                assert_close(x, &b[k], tol, &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until `127.0.0.1:port` accepts connections; false after `timeout`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real dg-zoo-server 0.3.0 on 127.0.0.1 (its CLI binds 0.0.0.0, so it is started through
/// uvicorn with its own argument parser and app).
pub fn start_dg_zoo_server(peer: &Path, root: &Path) -> (ChildGuard, u16) {
    let port = free_port();
    let script = format!(
        "import uvicorn\nfrom dg_zoo_server.args import get_args\na = get_args('--zoo {} --port {port}')\nfrom dg_zoo_server import app\nuvicorn.run(app, host='127.0.0.1', port=a.port, log_level='warning')\n",
        root.display()
    );
    let child =
        Command::new(peer.join("zoovenv/bin/python")).arg("-c").arg(script).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start dg-zoo-server");
    let g = ChildGuard(child);
    assert!(wait_port(port, Duration::from_secs(30)), "dg-zoo-server did not start on port {port}");
    (g, port)
}

/// Run a Python script with the peer's PySDK; HOME (so PySDK's app data and native model
/// cache) points into `home`. Returns (success, stdout, stderr).
pub fn run_pysdk(peer: &Path, home: &Path, script: &str, args: &[&str]) -> (bool, String, String) {
    let out = pysdk_command(peer, home, script, args).output().expect("run python");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The peer's Python running `script` (written to `home/script.py`) with `args`, `HOME` set to
/// `home` and PySDK's onnxruntime on the library path; the caller picks how to run it.
pub fn pysdk_command(peer: &Path, home: &Path, script: &str, args: &[&str]) -> Command {
    let file = home.join("script.py");
    std::fs::write(&file, script).unwrap();
    let mut c = Command::new(peer.join("venv/bin/python"));
    c.arg(&file).args(args).env("HOME", home).env("LD_LIBRARY_PATH", ort_dir(peer));
    c
}

/// onnxruntime 1.20.1 for PySDK's ONNX agent: `<peer>/ort` or setup-peer.sh's `<peer>/ort-1.20.1/lib`.
pub fn ort_dir(peer: &Path) -> PathBuf {
    let a = peer.join("ort");
    if a.join("libonnxruntime.so.1").exists() {
        a
    } else {
        peer.join("ort-1.20.1/lib")
    }
}

pub fn dgzoo_bin() -> &'static str {
    // Only the dgzoo-cli crate's tests have the binary; the C-ABI tests never start it.
    match option_env!("CARGO_BIN_EXE_dgzoo") {
        Some(b) => b,
        None => panic!("the dgzoo binary exists only for the dgzoo-cli crate's tests"),
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1: `answer(method, path, token header)` gives
/// (status, JSON body); every request is recorded as "METHOD path token=<t>".
pub fn raw_server(answer: impl Fn(&str, &str, Option<&str>) -> (u16, String) + Send + 'static) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let mut token = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("token") {
                        token = Some(v.trim().to_string());
                    }
                }
            }
            let mut parts = first.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            log2.lock().unwrap().push(format!("{method} {path} token={}", token.clone().unwrap_or_default()));
            let (status, body) = answer(&method, &path, token.as_deref());
            let mut s = s;
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (port, log)
}

/// `dgzoo hub --port 0` as a child process: (guard, "127.0.0.1:port").
pub fn start_hub_process(root: &Path) -> (ChildGuard, String) {
    let mut child = Command::new(dgzoo_bin()).args(["hub", "--port", "0", "--zoo"]).arg(root).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let guard = ChildGuard(child);
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    (guard, addr)
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Repack `model` with `extra` zero bytes appended to its binary and the config's checksum
/// updated, replacing `<root>/myorg/myzoo/<model>.zip` atomically (as a publisher would).
/// Returns the new binary.
pub fn publish_new_version(root: &Path, model: &str, extra: usize) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join(model);
    std::fs::create_dir(&dir).unwrap();
    for f in std::fs::read_dir(format!("{ZOO}/{model}")).unwrap().flatten() {
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let bin = dir.join(format!("{model}.tflite"));
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, extra));
    std::fs::write(&bin, &bytes).unwrap();
    let cfgp = dir.join(format!("{model}.json"));
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfgp).unwrap()).unwrap();
    cfg["Checksum"] = Value::String(sha256_hex(&bytes));
    std::fs::write(&cfgp, cfg.to_string()).unwrap();
    let tmp = zoo_dir(root).join("upload.tmp");
    pack_model(&dir, &tmp).unwrap();
    std::fs::rename(&tmp, zoo_dir(root).join(format!("{model}.zip"))).unwrap();
    bytes
}

/// A multipart/form-data body (boundary `dgzooBOUNDARY`) with one `file` part: the hub's
/// upload routes.
pub fn multipart(filename: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"--dgzooBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"");
    b.extend_from_slice(filename.as_bytes());
    b.extend_from_slice(b"\"\r\nContent-Type: application/zip\r\n\r\n");
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n--dgzooBOUNDARY--\r\n");
    b
}
