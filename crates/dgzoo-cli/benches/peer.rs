//! dgzoo next to the real PySDK 1.5.0 on this machine, same inputs, ratios printed.
//!   cargo bench --bench peer                 (all)
//!   cargo bench --bench peer -- startup|list|predict|openvino|aiserver|download|cache|metrics|overlay|hubdl|postprocess (some groups)
//! Needs the runtimes (scripts/install-runtimes.sh) and the peer (scripts/setup-peer.sh; found
//! at $DGZOO_PEER or <repo>/.peer). Run it on an otherwise idle machine.
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::pipeline::{predict_batch, OwnedInput};
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/cloud_common.rs"]
#[allow(unused)]
mod cloud_common;
#[path = "../../../tests/support/seaweedfs.rs"]
mod seaweedfs;

const REPO: &str = env!("DGZOO_REPO");

fn peer() -> PathBuf {
    std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| Path::new(REPO).join(".peer"))
}

fn zoo_dir() -> PathBuf {
    Path::new(REPO).join("../shared/zoo").canonicalize().expect("../shared/zoo")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Run a Python snippet with the PySDK venv; it prints one JSON object on its last line.
fn pysdk(script: &str) -> Value {
    let p = peer();
    let out = Command::new(p.join("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .env("LD_LIBRARY_PATH", p.join("ort"))
        .output()
        .expect("run the PySDK peer (scripts/setup-peer.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| panic!("PySDK script failed: {}\n{}", text, String::from_utf8_lossy(&out.stderr)))
}

/// Wall time (ms) and peak RSS (KiB) of one child process, from wait4's rusage.
// The child is reaped by wait4 (which also gives its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("spawn");
    let mut status = 0i32;
    // SAFETY: all-zero is a valid rusage; wait4 reaps our own child and fills both out-pointers.
    let mut ru: Rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both out-pointers point at live locals of the right types.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64() * 1000.0;
    assert!(pid > 0 && status == 0, "{cmd:?} failed (status {status})");
    (wall, ru.ru_maxrss as u64)
}

#[repr(C)]
struct Rusage {
    ru_utime: [i64; 2],
    ru_stime: [i64; 2],
    ru_maxrss: i64,
    _rest: [i64; 13],
}
extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
}

fn row(what: &str, ours: f64, theirs: f64, unit: &str, target: &str) {
    println!("{what:<58} dgzoo {ours:>9.2} {unit:<5} PySDK {theirs:>9.2} {unit:<5} ratio {:>6.3}  (target {target})", ours / theirs);
}

fn bench_list() {
    println!("\n== connect + list_models on a generated 10,000-model zoo ==");
    let tmp = tempfile::tempdir().unwrap();
    let src = zoo_dir().join("efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1/efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1.json");
    let cfg = std::fs::read_to_string(src).unwrap();
    for i in 0..10_000 {
        let d = tmp.path().join(format!("dir{:03}", i / 100));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("model{i:05}_imagenet--224x224_float_tflite_cpu_1.json")), &cfg).unwrap();
    }
    let dir = tmp.path().to_str().unwrap().to_string();
    let mut ours = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let zoo = Zoo::connect("@local", &dir, "").unwrap();
        let n = zoo.list_names(&Filters::default()).unwrap().len();
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, 10_000);
    }
    let theirs = pysdk(&format!(
        r#"
import time, json, degirum as dg
ts = []
for _ in range(3):
    t = time.perf_counter(); z = dg.connect(dg.LOCAL, {dir:?}); n = len(z.list_models()); ts.append((time.perf_counter() - t) * 1000)
    assert n == 10000, n
print(json.dumps({{"ms": sorted(ts)[1]}}))
"#
    ));
    row("connect + list_models (10,000 models), median", median(ours), theirs["ms"].as_f64().unwrap(), "ms", "<= 0.2");
}

const MODELS: [&str; 6] = [
    "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1",
    "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1",
    "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1",
    "yolov8n_nudenet--320x320_float_onnx_cpu_1",
    "yolov8n_nudenet--320x320_float_tflite_cpu_1",
    "blazeface_short_range--128x128_float_tflite_cpu_1",
];

/// A PySDK process holding one loaded model and answering `lat N` (N single-frame
/// latencies, ms) and `batch N` (frames/s of one `predict_batch` of N frames), so the two
/// stacks can be measured in alternation: this VM's speed drifts by tens of percent over
/// minutes, and alternating keeps the drift out of the ratios.
struct PeerModel {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl PeerModel {
    fn start(name: &str, zoo: &Path, img: &Path) -> PeerModel {
        Self::start_with(name, zoo, img, &peer().join("ort").to_string_lossy(), None)
    }

    /// With `ld` as LD_LIBRARY_PATH (PySDK's OPENVINO agent needs the new-ABI OpenVINO first)
    /// and, if given, a scratch HOME (PySDK's OpenVINO blob cache lives there).
    fn start_with(name: &str, zoo: &Path, img: &Path, ld: &str, home: Option<&Path>) -> PeerModel {
        let script = format!(
            r#"
import sys, time, json, degirum as dg
m = dg.load_model({name:?}, dg.LOCAL, {zoo:?})
p = {img:?}
for _ in range(3): m.predict(p)
print("ready", flush=True)
for line in sys.stdin:
    cmd, n = line.split()
    n = int(n)
    if cmd == "lat":
        ts = []
        for _ in range(n):
            t = time.perf_counter(); m.predict(p); ts.append((time.perf_counter() - t) * 1000)
        print(json.dumps(ts), flush=True)
    else:
        t = time.perf_counter()
        k = sum(1 for _ in m.predict_batch([p] * n))
        print(json.dumps(k / (time.perf_counter() - t)), flush=True)
"#,
            zoo = zoo.to_str().unwrap(),
            img = img.to_str().unwrap()
        );
        let mut cmd = Command::new(peer().join("venv/bin/python"));
        if let Some(h) = home {
            cmd.env("HOME", h);
        }
        let mut child = cmd
            .arg("-c")
            .arg(script)
            .env("LD_LIBRARY_PATH", ld)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the PySDK peer (scripts/setup-peer.sh)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "PySDK could not load {name}");
        PeerModel { child, stdin, stdout }
    }

    fn ask(&mut self, cmd: &str) -> Value {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("PySDK peer answered {line:?} to {cmd}"))
    }
}

impl Drop for PeerModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_predict() {
    let zoo_path = zoo_dir();
    let zoo = Zoo::connect("@local", zoo_path.to_str().unwrap(), "").unwrap();
    let img_path = zoo_path.join("images/car_416.jpg");
    let img = std::fs::read(&img_path).unwrap();
    const ROUNDS: usize = 5;
    const N: usize = 10;
    const BATCH: usize = 64;
    println!(
        "\n== single-frame latency (median of {}) and batch throughput (median of {ROUNDS} x {BATCH} frames), car_416.jpg, the two stacks alternating ==",
        ROUNDS * N
    );
    for name in MODELS {
        let model = zoo.load_model(name, &Value::Null).unwrap();
        for _ in 0..3 {
            predict(&model, &[Input::Bytes(&img)]).unwrap();
        }
        let mut theirs = PeerModel::start(name, &zoo_path, &img_path);
        let (mut lat, mut their_lat) = (Vec::new(), Vec::new());
        let (mut fps, mut their_fps) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for _ in 0..N {
                let t = Instant::now();
                predict(&model, &[Input::Bytes(&img)]).unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            their_lat.extend(theirs.ask(&format!("lat {N}")).as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
            let frames: Vec<Vec<OwnedInput>> = (0..BATCH).map(|_| vec![OwnedInput::Bytes(img.clone())]).collect();
            let t = Instant::now();
            let out = predict_batch(&model, frames).unwrap();
            fps.push(BATCH as f64 / t.elapsed().as_secs_f64());
            assert!(out.iter().all(|r| r.is_ok()));
            their_fps.push(theirs.ask(&format!("batch {BATCH}")).as_f64().unwrap());
        }
        let target = if name.contains("quant") { "<= 0.2" } else { "<= 0.8" };
        row(&format!("{name} latency"), median(lat), median(their_lat), "ms", target);
        row(&format!("{name} batch"), median(fps), median(their_fps), "fps", ">= 1.5");
    }
}

/// Latency of `n` lone frames and throughput of one batch of `batch` frames, dgzoo side.
fn measure(model: &dgzoo::model::Model, img: &[u8], n: usize, batch: usize) -> (Vec<f64>, f64) {
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        predict(model, &[Input::Bytes(img)]).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let frames: Vec<Vec<OwnedInput>> = (0..batch).map(|_| vec![OwnedInput::Bytes(img.to_vec())]).collect();
    let t = Instant::now();
    let out = predict_batch(model, frames).unwrap();
    assert!(out.iter().all(|r| r.is_ok()));
    (lat, batch as f64 / t.elapsed().as_secs_f64())
}

/// OPENVINO/CPU: dgzoo's agent next to PySDK's OPENVINO agent (both in OpenVINO's default
/// precision, the same ONNX file and image, alternating), and dgzoo's OPENVINO next to
/// dgzoo's ONNX/CPU on that file. Needs scripts/setup-openvino-peer.sh.
fn bench_openvino() {
    let onnx = ["efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1", "yolov8n_nudenet--320x320_float_onnx_cpu_1"];
    let ov_zoo = tempfile::tempdir().unwrap();
    for m in onnx {
        let name = m.replace("_onnx_", "_openvino_");
        let dst = ov_zoo.path().join(&name);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(zoo_dir().join(m)).unwrap().flatten() {
            if f.file_name().to_string_lossy() == format!("{m}.json") {
                let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap()).unwrap();
                cfg["DEVICE"] = serde_json::json!([{"DeviceType": "CPU", "RuntimeAgent": "OPENVINO", "SupportedDeviceTypes": "OPENVINO/CPU"}]);
                std::fs::write(dst.join(format!("{name}.json")), cfg.to_string()).unwrap();
            } else {
                std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
            }
        }
    }
    let img_path = zoo_dir().join("images/car_416.jpg");
    let img = std::fs::read(&img_path).unwrap();
    let ours_zoo = Zoo::connect("@local", ov_zoo.path().to_str().unwrap(), "").unwrap();
    let onnx_zoo = Zoo::connect("@local", zoo_dir().to_str().unwrap(), "").unwrap();
    let ld = format!("{}:{}", peer().join("ov-2025.3").display(), peer().join("ort").display());
    let home = tempfile::tempdir().unwrap();
    const ROUNDS: usize = 5;
    const N: usize = 10;
    const BATCH: usize = 64;
    println!("\n== OPENVINO/CPU, default precision: latency (median of {}) and batch (median of {ROUNDS} x {BATCH}), car_416.jpg, alternating ==", ROUNDS * N);
    for m in onnx {
        let name = m.replace("_onnx_", "_openvino_");
        let model = ours_zoo.load_model(&name, &Value::Null).unwrap();
        let onnx_model = onnx_zoo.load_model(m, &Value::Null).unwrap();
        for _ in 0..3 {
            predict(&model, &[Input::Bytes(&img)]).unwrap();
            predict(&onnx_model, &[Input::Bytes(&img)]).unwrap();
        }
        let mut theirs = PeerModel::start_with(&name, ov_zoo.path(), &img_path, &ld, Some(home.path()));
        let (mut lat, mut their_lat, mut onnx_lat) = (Vec::new(), Vec::new(), Vec::new());
        let (mut fps, mut their_fps, mut onnx_fps) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (l, f) = measure(&model, &img, N, BATCH);
            lat.extend(l);
            fps.push(f);
            their_lat.extend(theirs.ask(&format!("lat {N}")).as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
            their_fps.push(theirs.ask(&format!("batch {BATCH}")).as_f64().unwrap());
            let (l, f) = measure(&onnx_model, &img, N, BATCH);
            onnx_lat.extend(l);
            onnx_fps.push(f);
        }
        let (lat, fps) = (median(lat), median(fps));
        row(&format!("{name} latency vs PySDK OPENVINO"), lat, median(their_lat), "ms", "<= 0.8");
        row(&format!("{name} batch vs PySDK OPENVINO"), fps, median(their_fps), "fps", ">= 1.5");
        row(&format!("{name} latency vs dgzoo ONNX/CPU"), lat, median(onnx_lat), "ms", "(which to deploy)");
        row(&format!("{name} batch vs dgzoo ONNX/CPU"), fps, median(onnx_fps), "fps", "(which to deploy)");
    }
}

/// The six model folders of the shared zoo (files symlinked): the shared zoo's `expected/`
/// holds configs with the same names that a recursive scan would take instead.
fn clean_zoo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in MODELS {
        let dst = dir.path().join(m);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(zoo_dir().join(m)).unwrap().flatten() {
            std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// Peak resident memory (VmHWM, KiB) of a live process.
fn vm_hwm(pid: u32) -> u64 {
    vm_status(pid, "VmHWM:")
}

/// A `/proc/<pid>/status` line's value in KiB (`VmRSS:`, `VmHWM:`).
fn vm_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn release_bin() -> PathBuf {
    // DGZOO_BENCH_BIN: another build of the CLI (a debug one for a quick run of a group).
    if let Some(b) = std::env::var_os("DGZOO_BENCH_BIN") {
        return PathBuf::from(b);
    }
    let bin = Path::new(REPO).join("target/release/dgzoo");
    assert!(bin.exists(), "build the CLI first: cargo build --release --bin dgzoo");
    bin
}

/// The real PySDK client against our AI server and against PySDK's own, same zoo, same frames.
fn bench_aiserver() {
    println!("\n== AI server: the PySDK 1.5.0 client over asio against our server and PySDK's ==");
    let zoo = clean_zoo();
    let zoo_s = zoo.path().to_str().unwrap().to_string();
    let (ours_port, theirs_port) = (free_port(), free_port());
    let mut ours = Command::new(release_bin())
        .args(["server", "start", "--zoo", &zoo_s, "--port", &ours_port.to_string(), "--protocol", "asio", "--quiet"])
        .spawn()
        .unwrap();
    // PySDK's server binds 0.0.0.0 (it has no host option); the client only talks to 127.0.0.1.
    let mut theirs = Command::new(peer().join("venv/bin/degirum"))
        .args(["server", "start", "--zoo", &zoo_s, "--port", &theirs_port.to_string(), "--protocol", "asio"])
        .env("LD_LIBRARY_PATH", peer().join("ort"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_port(ours_port);
    wait_port(theirs_port);
    let img = zoo_dir().join("images/car_416.jpg");
    // One model per client process, the two servers alternating, two rounds each (the
    // VM's speed drifts), averaged.
    let run = |port: u16, name: &str| {
        pysdk(&format!(
            r#"
import time, json, degirum as dg
img = {img:?}
m = dg.load_model({name:?}, "127.0.0.1:{port}", "", input_image_format="RAW")
with m:
    for _ in range(3): m.predict(img)
    ts = []
    for _ in range(30):
        t = time.perf_counter(); m.predict(img); ts.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    n = sum(1 for _ in m.predict_batch([img] * 100))
    print(json.dumps({{"ms": sorted(ts)[15], "fps": n / (time.perf_counter() - t)}}))
"#,
            img = img.to_str().unwrap(),
        ))
    };
    let mut o = serde_json::Map::new();
    let mut t = serde_json::Map::new();
    for name in MODELS {
        let (mut ofps, mut tfps, mut oms, mut tms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            let a = run(ours_port, name);
            let b = run(theirs_port, name);
            ofps.push(a["fps"].as_f64().unwrap());
            oms.push(a["ms"].as_f64().unwrap());
            tfps.push(b["fps"].as_f64().unwrap());
            tms.push(b["ms"].as_f64().unwrap());
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        o.insert(name.to_string(), serde_json::json!({"fps": mean(&ofps), "ms": mean(&oms)}));
        t.insert(name.to_string(), serde_json::json!({"fps": mean(&tfps), "ms": mean(&tms)}));
    }
    for name in MODELS {
        row(&format!("{name} fps, PySDK client, asio"), o[name]["fps"].as_f64().unwrap(), t[name]["fps"].as_f64().unwrap(), "fps", ">= 1.2");
    }
    // Per-frame overhead of the server path over local inference, same PySDK client: PySDK
    // local, PySDK client -> our server, PySDK client -> PySDK's server, in alternating rounds.
    let lat = pysdk(&format!(
        r#"
import time, json, statistics, degirum as dg
img = {img:?}
ms = {{"local": dg.load_model({name:?}, dg.LOCAL, {zoo:?}, input_image_format="RAW"),
      "ours": dg.load_model({name:?}, "127.0.0.1:{ours_port}", "", input_image_format="RAW"),
      "theirs": dg.load_model({name:?}, "127.0.0.1:{theirs_port}", "", input_image_format="RAW")}}
ts = {{k: [] for k in ms}}
for m in ms.values():
    for _ in range(5): m.predict(img)
for _ in range(10):
    for k, m in ms.items():
        for _ in range(20):
            t = time.perf_counter(); m.predict(img); ts[k].append((time.perf_counter() - t) * 1000)
print(json.dumps({{k: statistics.median(v) for k, v in ts.items()}}))
"#,
        name = MODELS[5],
        zoo = zoo_s,
        img = img.to_str().unwrap()
    ));
    let ms = |k: &str| lat[k].as_f64().unwrap();
    row("BlazeFace latency, PySDK client, through each server", ms("ours"), ms("theirs"), "ms", "");
    // Each stack's own overhead: its client through its server minus its own local inference,
    // in alternating rounds (dgzoo here; PySDK's from the script above).
    let img_bytes = std::fs::read(&img).unwrap();
    let raw = serde_json::json!({"input_image_format": "RAW"});
    let local_zoo = Zoo::connect("@local", &zoo_s, "").unwrap();
    let server_zoo = Zoo::connect(&format!("127.0.0.1:{ours_port}"), "", "").unwrap();
    let ours_local = local_zoo.load_model(MODELS[5], &raw).unwrap();
    let ours_remote = server_zoo.load_model(MODELS[5], &raw).unwrap();
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for (m, v) in [(&ours_local, &mut l), (&ours_remote, &mut r)] {
        for _ in 0..5 {
            predict(m, &[Input::Bytes(&img_bytes)]).unwrap();
        }
        v.clear();
    }
    for _ in 0..10 {
        for (m, v) in [(&ours_local, &mut l), (&ours_remote, &mut r)] {
            for _ in 0..20 {
                let t = Instant::now();
                predict(m, &[Input::Bytes(&img_bytes)]).unwrap();
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    println!(
        "{:<58} dgzoo {:>9.2} ms    PySDK {:>9.2} ms    (each stack: its client through its server minus its local latency)",
        "BlazeFace per-frame overhead of the AI server path",
        median(r) - median(l),
        ms("theirs") - ms("local"),
    );
    // Resident memory once every stream closed (what the node holds while it serves nothing),
    // after the trim a stream's end starts has run, and the peak (VmHWM) for the whole run.
    std::thread::sleep(Duration::from_millis(500));
    row(
        "server resident memory after serving all six models",
        vm_status(ours.id(), "VmRSS:") as f64 / 1024.0,
        vm_status(theirs.id(), "VmRSS:") as f64 / 1024.0,
        "MiB",
        "<= 0.5",
    );
    row("server peak resident memory while serving all six models", vm_hwm(ours.id()) as f64 / 1024.0, vm_hwm(theirs.id()) as f64 / 1024.0, "MiB", "<= 0.5");
    for port in [ours_port, theirs_port] {
        let _ = Command::new(peer().join("venv/bin/degirum")).args(["server", "shutdown", "--port", &port.to_string()]).output();
    }
    for c in [&mut ours, &mut theirs] {
        for _ in 0..50 {
            if c.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The cost of `/metrics` on AI-server throughput: our client's pipelined fps over asio with
/// a Prometheus-like scraper fetching `/metrics` every second, against the same server with no
/// scraper, in alternating rounds (target: < 2% lower). `DGZOO_BENCH_QUICK=1`: one short round
/// (checks that the group runs; its numbers mean nothing).
fn bench_metrics() {
    println!("\n== /metrics: AI-server fps with a scraper every second vs without ==");
    let quick = std::env::var("DGZOO_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (rounds, frames) = if quick { (1, 20) } else { (4, 400) };
    let zoo = clean_zoo();
    let port = loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let mut server = Command::new(release_bin())
        .args(["server", "start", "--zoo", zoo.path().to_str().unwrap(), "--port", &port.to_string(), "--protocol", "both", "--quiet"])
        .spawn()
        .unwrap();
    wait_port(port);
    wait_port(port + 1);
    let img = std::fs::read(zoo_dir().join("images/car_416.jpg")).unwrap();
    let zoo_c = Zoo::connect(&format!("127.0.0.1:{port}"), "", "").unwrap();
    let model = zoo_c.load_model(MODELS[1], &serde_json::json!({"input_image_format": "RAW"})).unwrap();
    let fps = |n: usize| {
        let batch: Vec<Vec<OwnedInput>> = (0..n).map(|_| vec![OwnedInput::Bytes(img.clone())]).collect();
        let t = Instant::now();
        let out = predict_batch(&model, batch).unwrap();
        assert!(out.iter().all(|r| r.is_ok()));
        n as f64 / t.elapsed().as_secs_f64()
    };
    fps(frames / 10 + 1);
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(fps(frames));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let scraper = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, body) =
                        dgzoo::protocol::http::request("127.0.0.1", port + 1, "GET", "/metrics", None, std::time::Duration::from_secs(5)).unwrap();
                    assert!(status == 200 && body.starts_with(b"# "), "scrape failed: {status}");
                    scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let t = Instant::now();
                    while t.elapsed().as_secs_f64() < 1.0 && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            })
        };
        with.push(fps(frames));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        scraper.join().unwrap();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (w, wo) = (mean(&with), mean(&without));
    println!(
        "{:<58} with {w:>9.2} fps  without {wo:>9.2} fps  cost {:>6.2} %  ({} scrapes; target < 2 %)",
        format!("{} fps, our client, asio, /metrics every 1 s", MODELS[1]),
        (1.0 - w / wo) * 100.0,
        scrapes.load(std::sync::atomic::Ordering::SeqCst)
    );
    // The scrape's own cost, steadier than fps on a busy machine: the server time of one
    // `/metrics` (render of every series above) bounds the share of a core it takes at 1 Hz.
    let mut lat: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let (status, _) = dgzoo::protocol::http::request("127.0.0.1", port + 1, "GET", "/metrics", None, std::time::Duration::from_secs(5)).unwrap();
            assert_eq!(status, 200);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "{:<58} {:>9.3} ms median per scrape: at most {:.3} % of one core at one scrape a second",
        "/metrics scrape time (client-measured)",
        lat[10],
        lat[10] / 10.0
    );
    drop(model);
    let _ = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap()).shutdown();
    for _ in 0..50 {
        if server.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// A hub root holding the six test models as `org/zoo`, readable with token `benchtoken`.
fn hub_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<String> = MODELS.iter().map(|m| zoo_dir().join(m).to_str().unwrap().to_string()).collect();
    let st = Command::new(release_bin()).arg("pack-model").arg("--out").arg(root.path().join("org/zoo")).args(&dirs).output().unwrap();
    assert!(st.status.success(), "pack-model: {}", String::from_utf8_lossy(&st.stderr));
    std::fs::write(root.path().join("tokens.json"), r#"{"benchtoken": {"is_admin": false, "zoos": ["org/zoo"]}}"#).unwrap();
    root
}

/// Local inference with a cloud zoo (our hub): a fresh process loads a model and runs one frame,
/// first with an empty model cache (download), then with the model cached. Hub requests counted.
fn bench_cache() {
    println!("\n== cloud zoo model cache: fresh process, load_model + one frame, from our hub ==");
    let root = hub_root();
    let mut cfg = dgzoo_server::hub::HubConfig::new(root.path());
    cfg.port = 0;
    let hub = dgzoo_server::hub::Hub::start(&cfg).unwrap();
    let url = format!("http://{}/org/zoo", hub.addr());
    let name = MODELS[0];
    let size = std::fs::metadata(root.path().join(format!("org/zoo/{name}.zip"))).unwrap().len() as f64;
    let img = zoo_dir().join("images/car_416.jpg");
    let measure = |make: &dyn Fn() -> Command| {
        let mut runs = Vec::new();
        for _ in 0..4 {
            let r0 = hub.request_count();
            let t = Instant::now();
            let out = make().output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            runs.push((t.elapsed().as_secs_f64() * 1000.0, hub.request_count() - r0));
        }
        let cold = runs[0];
        let hit = median(runs[1..].iter().map(|r| r.0).collect());
        (cold, hit, runs[1].1)
    };
    let ours_cache = tempfile::tempdir().unwrap();
    let ours = measure(&|| {
        let mut c = Command::new(release_bin());
        c.args(["predict", "--zoo", &url, "--token", "benchtoken", "--model", name]).arg(&img).env("DGZOO_CACHE_DIR", ours_cache.path());
        c
    });
    let home = tempfile::tempdir().unwrap();
    let script = format!("import degirum as dg; m = dg.load_model({name:?}, dg.LOCAL, {url:?}, 'benchtoken'); m.predict({:?})", img.to_str().unwrap());
    let theirs = measure(&|| {
        let mut c = Command::new(peer().join("venv/bin/python"));
        c.args(["-c", &script]).env("HOME", home.path()).env("LD_LIBRARY_PATH", peer().join("ort"));
        c
    });
    row(&format!("cold: download ({:.1} MB) + load + 1 frame", size / 1e6), ours.0 .0, theirs.0 .0, "ms", "-");
    row("cache hit: load + 1 frame, median of 3", ours.1, theirs.1, "ms", "-");
    // dgzoo: `predict --model` skips the connect-time zoo check, so a hit is the checksum check
    // alone and a cold load the info and the archive (#13).
    row("hub requests on a cache hit", ours.2 as f64, theirs.2 as f64, "req", "-");
    row("hub requests on a cold load", ours.0 .1 as f64, theirs.0 .1 as f64, "req", "-");
}

/// `download-zoo` of the test zoo from our hub: dgzoo's CLI next to PySDK's.
fn bench_download() {
    println!("\n== download-zoo of the six test models from our hub ==");
    let root = hub_root();
    let port = free_port();
    let mut hub = Command::new(release_bin()).args(["hub", "--zoo", root.path().to_str().unwrap(), "--port", &port.to_string()]).spawn().unwrap();
    wait_port(port);
    let url = format!("http://127.0.0.1:{port}/org/zoo");
    // Median of 3 runs, each into a fresh destination.
    let time_it = |make: &dyn Fn(&Path) -> Command| {
        let v = (0..3)
            .map(|_| {
                let dest = tempfile::tempdir().unwrap();
                let mut cmd = make(dest.path());
                let t = Instant::now();
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        median(v)
    };
    let ours = time_it(&|dest| {
        let mut c = Command::new(release_bin());
        c.args(["download-zoo", "--url", &url, "--token", "benchtoken", "--path"]).arg(dest);
        c
    });
    let home = tempfile::tempdir().unwrap();
    let theirs = time_it(&|dest| {
        let mut c = Command::new(peer().join("venv/bin/degirum"));
        c.args(["download-zoo", "--url", &url, "--token", "benchtoken", "--path"])
            .arg(dest)
            .env("HOME", home.path())
            .env("LD_LIBRARY_PATH", peer().join("ort"));
        c
    });
    row("download-zoo, 6 models (66 MB), median of 3", ours, theirs, "ms", "<= 0.5");
    let _ = hub.kill();
    let _ = hub.wait();
}

/// Aggregate MB/s of `clients` threads each downloading `per_client` copies of `model`.
fn download_rate(addr: &str, model: &str, clients: usize, per_client: usize) -> f64 {
    let url = format!("http://{addr}/zoo/v1/public/models/org/zoo/{model}");
    let t = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                (0..per_client)
                    .map(|_| {
                        let r = agent.get(&url).set("token", "benchtoken").call().unwrap_or_else(|e| panic!("{url}: {e}"));
                        std::io::copy(&mut r.into_reader(), &mut std::io::sink()).unwrap()
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let bytes: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
}

/// Hub download throughput with 1 and 32 concurrent clients: our hub (release binary) serving
/// the largest test archive from local disk and from SeaweedFS (`--zoo s3://...`), next to the
/// real dg-zoo-server 0.3.0 serving the same files from disk (#13: >= 2x its aggregate at 32).
fn bench_hubdl() {
    println!(
        "
== hub downloads: aggregate MB/s, the largest test archive, 1 and 32 clients; ratio vs dg-zoo-server 0.3.0 =="
    );
    let root = hub_root();
    let (model, size) =
        MODELS.iter().map(|m| (m.to_string(), std::fs::metadata(root.path().join(format!("org/zoo/{m}.zip"))).unwrap().len())).max_by_key(|(_, n)| *n).unwrap();
    println!("({model}: {:.1} MB)", size as f64 / 1e6);
    let start_hub = |zoo: &str, env: Vec<(&'static str, String)>| {
        let port = free_port();
        let c =
            Command::new(release_bin()).args(["hub", "--zoo", zoo, "--port", &port.to_string()]).envs(env).stdout(std::process::Stdio::null()).spawn().unwrap();
        wait_port(port);
        (cloud_common::ChildGuard(c), format!("127.0.0.1:{port}"))
    };
    let (_disk, disk) = start_hub(root.path().to_str().unwrap(), Vec::new());
    let sw = seaweedfs::shared().expect("SeaweedFS (scripts/setup-seaweedfs.sh)");
    sw.create_bucket("bench");
    let bucket = dgzoo_server::hub::s3::S3Zoo::open("s3://bench/zoo", std::time::Duration::ZERO).unwrap();
    bucket.put_file(&["tokens.json"], &root.path().join("tokens.json")).unwrap();
    bucket.put_file(&["org", "zoo", &format!("{model}.zip")], &root.path().join(format!("org/zoo/{model}.zip"))).unwrap();
    let (_s3, s3) = start_hub("s3://bench/zoo", sw.env());
    let (_peer, peer_port) = cloud_common::start_dg_zoo_server(&peer(), root.path());
    let theirs = format!("127.0.0.1:{peer_port}");
    for (clients, per) in [(1, 3), (32, 1)] {
        let t = download_rate(&theirs, &model, clients, per);
        let target = if clients == 32 { ">= 2" } else { "-" };
        row(&format!("{clients} client(s), local disk vs dg-zoo-server"), download_rate(&disk, &model, clients, per), t, "MB/s", target);
        row(&format!("{clients} client(s), SeaweedFS vs dg-zoo-server (disk)"), download_rate(&s3, &model, clients, per), t, "MB/s", target);
    }
}

/// Cold start and peak memory of one process each. Runs first, while this process is small:
/// a child's peak RSS starts from its parent's size at fork (Linux keeps it across exec).
fn bench_startup() {
    let zoo_path = zoo_dir();
    let img_path = zoo_path.join("images/car_416.jpg");
    println!("\n== cold start (process start to first result) and peak memory, int8 EfficientNet ==");
    let name = MODELS[2];
    let bin = release_bin();
    let mut ours = Vec::new();
    let mut our_rss = 0;
    for _ in 0..5 {
        let (ms, rss) = run_measured(Command::new(&bin).args(["predict", "--zoo", zoo_path.to_str().unwrap(), "--model", name, img_path.to_str().unwrap()]));
        ours.push(ms);
        our_rss = rss;
    }
    let script = format!(
        "import degirum as dg; m = dg.load_model({name:?}, dg.LOCAL, {:?}); print(m.predict({:?}).results[0])",
        zoo_path.to_str().unwrap(),
        img_path.to_str().unwrap()
    );
    let mut theirs = Vec::new();
    let mut their_rss = 0;
    for _ in 0..3 {
        let (ms, rss) = run_measured(Command::new(peer().join("venv/bin/python")).args(["-c", &script]).env("LD_LIBRARY_PATH", peer().join("ort")));
        theirs.push(ms);
        their_rss = rss;
    }
    row("cold start, median", median(ours), median(theirs), "ms", "<= 0.2");
    row("peak resident memory of the process", our_rss as f64 / 1024.0, their_rss as f64 / 1024.0, "MiB", "<= 0.25");
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |g: &str| which.is_empty() || which.iter().any(|w| w == g);
    if want("startup") {
        bench_startup();
    }
    if want("list") {
        bench_list();
    }
    if want("predict") {
        bench_predict();
    }
    if want("openvino") {
        bench_openvino();
    }
    if want("aiserver") {
        bench_aiserver();
    }
    if want("download") {
        bench_download();
    }
    if want("cache") {
        bench_cache();
    }
    if want("metrics") {
        bench_metrics();
    }
    if want("overlay") {
        bench_overlay();
    }
    if want("hubdl") {
        bench_hubdl();
    }
    if want("postprocess") {
        bench_postprocess();
    }
}

/// Post-processing time per family: `CorePostprocessDuration_ms` (PySDK's `measure_time` key,
/// which dgzoo reports the same way: the post-processor's own time, without the mapping into
/// the image that PySDK does in Python after its core) of every model of the family zoo (`$DGZOO_FAMILY_ZOO`,
/// scripts/make-test-zoo.sh) and of the shared zoo's YOLOv8n ONNX and BlazeFace, on
/// car_416.jpg. The two stacks take turns: a PySDK process runs every model, then dgzoo does,
/// three rounds; the average over all rounds' frames is reported.
fn bench_postprocess() {
    const FRAMES: usize = 20;
    const ROUNDS: usize = 3;
    let Some(family) = std::env::var_os("DGZOO_FAMILY_ZOO").map(PathBuf::from) else {
        println!("\n== post-processing per family: skipped (set DGZOO_FAMILY_ZOO; scripts/make-test-zoo.sh DIR) ==");
        return;
    };
    let shared = clean_zoo();
    let mut models: Vec<(PathBuf, String)> = Vec::new();
    for e in std::fs::read_dir(&family).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.contains("--") {
            models.push((family.clone(), n));
        }
    }
    models.sort_by(|a, b| a.1.cmp(&b.1));
    for n in ["yolov8n_nudenet--320x320_float_onnx_cpu_1", "blazeface_short_range--128x128_float_tflite_cpu_1"] {
        models.push((shared.path().to_path_buf(), n.to_string()));
    }
    let img = zoo_dir().join("images/car_416.jpg");
    let list: Vec<Value> = models.iter().map(|(z, n)| serde_json::json!([z, n])).collect();
    let script = format!(
        "import degirum as dg, json\n\
         out = {{}}\n\
         for z, n in {list}:\n\
         \x20   m = dg.connect(dg.LOCAL, z).load_model(n)\n\
         \x20   m({img:?})\n\
         \x20   m.measure_time = True\n\
         \x20   for _ in range({FRAMES}): m({img:?})\n\
         \x20   st = m.time_stats()\n\
         \x20   out[n] = [[st[k].avg * st[k].cnt, st[k].cnt] for k in ('CorePostprocessDuration_ms', 'FrameTotalDuration_ms')]\n\
         print(json.dumps(out))\n",
        list = serde_json::to_string(&list).unwrap(),
        img = img.to_str().unwrap(),
    );
    let bytes = std::fs::read(&img).unwrap();
    let loaded: Vec<_> = models
        .iter()
        .map(|(z, n)| {
            let m = Zoo::connect("@local", z.to_str().unwrap(), "").unwrap().load_model(n, &Value::Null).unwrap();
            predict(&m, &[Input::Bytes(&bytes)]).unwrap();
            m.set_property("measure_time", &Value::Bool(true)).unwrap();
            m
        })
        .collect();
    const KEYS: [&str; 2] = ["CorePostprocessDuration_ms", "FrameTotalDuration_ms"];
    // Per model and key: (sum of ms, frames).
    let (mut theirs, mut ours) = (vec![[(0.0, 0.0); 2]; models.len()], vec![[(0.0, 0.0); 2]; models.len()]);
    for _ in 0..ROUNDS {
        let t = pysdk(&script);
        for (i, (_, n)) in models.iter().enumerate() {
            for k in 0..2 {
                theirs[i][k].0 += t[n][k][0].as_f64().unwrap();
                theirs[i][k].1 += t[n][k][1].as_f64().unwrap();
            }
        }
        for (i, m) in loaded.iter().enumerate() {
            m.reset_time_stats();
            for _ in 0..FRAMES {
                predict(m, &[Input::Bytes(&bytes)]).unwrap();
            }
            let st = m.time_stats();
            for (k, key) in KEYS.iter().enumerate() {
                let s = st.get(key).expect("measure_time records the key");
                ours[i][k].0 += s.sum;
                ours[i][k].1 += s.count as f64;
            }
        }
    }
    println!(
        "\n== post-processing per family (car_416.jpg, {ROUNDS} x {FRAMES} frames each, alternating; post = CorePostprocessDuration_ms, \
         frame = FrameTotalDuration_ms: the mapping into the image, e.g. segmentation masks, is in the frame only, in both stacks) =="
    );
    let avg = |v: (f64, f64)| v.0 / v.1;
    for (i, (_, n)) in models.iter().enumerate() {
        let json: Value = serde_json::from_slice(&std::fs::read(models[i].0.join(n).join(format!("{n}.json"))).unwrap()).unwrap();
        let family = json["POST_PROCESS"][0]["OutputPostprocessType"].as_str().unwrap_or("?").to_string();
        let short = n.split("--").next().unwrap();
        let short = if n.contains("_quant_") { format!("{short}, uint8") } else { short.to_string() };
        row(&format!("post, {family} ({short})"), avg(ours[i][0]), avg(theirs[i][0]), "ms", "-");
        row(&format!("frame, {family} ({short})"), avg(ours[i][1]), avg(theirs[i][1]), "ms", "-");
    }
}

/// Overlay drawing of a 1920x1080 frame with 20 captioned boxes: PySDK's `image_overlay`
/// (OpenCV backend) and dgzoo's `Model::overlay_image` on the same frame and results (PySDK's
/// own results object is built from 20 boxes, ours draws PySDK's converted boxes).
fn bench_overlay() {
    const N: usize = 20;
    let zoo = clean_zoo();
    let name = "yolov8n_nudenet--320x320_float_onnx_cpu_1";
    let script = format!(
        "import degirum as dg, numpy as np, json, time\n\
         m = dg.connect(dg.LOCAL, {zoo:?}).load_model({name:?})\n\
         boxes = [{{'bbox': [10 + 14*i, 75 + 7*i, 40 + 14*i, 100 + 7*i], 'category_id': i % 5, 'label': 'class_%d' % i, 'score': 0.5}} for i in range(20)]\n\
         make = m._create_postprocessor\n\
         m._create_postprocessor = lambda res, info: make([dict(b) for b in boxes], info)\n\
         frame = np.full((1080, 1920, 3), 90, np.uint8)\n\
         r = m(frame)\n\
         r.image_overlay\n\
         ts = []\n\
         for _ in range({N}):\n\
         \x20   t = time.perf_counter(); r.image_overlay; ts.append((time.perf_counter() - t) * 1000)\n\
         print(json.dumps({{'ms': sorted(ts)[len(ts) // 2], 'results': r.results}}))\n",
        zoo = zoo.path().to_str().unwrap(),
    );
    let theirs = pysdk(&script);
    let results: Vec<Value> = theirs["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 20);
    let z = Zoo::connect("@local", zoo.path().to_str().unwrap(), "").unwrap();
    let model = z.load_model(name, &Value::Null).unwrap();
    let frame = dgzoo::image_ops::RgbImage { width: 1920, height: 1080, data: vec![90; 1920 * 1080 * 3] };
    let mut pixels = frame.data.clone();
    // Warm-up: the first frames rasterise the captions' glyphs into the cache.
    model.overlay_image(&frame, &results).unwrap();
    model.overlay_into(&mut pixels, 1920, 1080, 1920 * 3, false, &results, &[]).unwrap();
    // The three measures alternate frame by frame, so drifts of the machine hit them alike.
    let (mut copying, mut in_place, mut copy_only) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..N {
        let t = Instant::now();
        std::hint::black_box(model.overlay_image(&frame, &results).unwrap());
        copying.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        model.overlay_into(std::hint::black_box(&mut pixels), 1920, 1080, 1920 * 3, false, &results, &[]).unwrap();
        in_place.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        std::hint::black_box(frame.clone());
        copy_only.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let pysdk_ms = theirs["ms"].as_f64().unwrap();
    println!("\n== overlay drawing, 1920x1080 frame, 20 captioned boxes (median of {N}), next to PySDK's image_overlay (a copy, then OpenCV) ==");
    row("overlay, copying (overlay_image: new image)", median(copying), pysdk_ms, "ms", "-");
    row("overlay, in place (overlay_into / dg_result_overlay_draw)", median(in_place), pysdk_ms, "ms", "<= 0.333");
    row("floor: the 6 MB frame copy alone", median(copy_only), pysdk_ms, "ms", "-");
}
