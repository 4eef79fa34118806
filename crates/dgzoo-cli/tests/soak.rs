//! The soak (issue #14): for `DGZOO_SOAK_SECONDS` (default 600), at the same time,
//! - 64 inference streams on one AI server (`dgzoo server start`, both protocols): 28 dgzoo
//!   asio, 28 dgzoo WebSocket, 8 from the real PySDK 1.5.0 client (4 asio, 4 WebSocket);
//! - 16 cloud-inference streams (socket.io) on one hub (`dgzoo hub`);
//! - 32 clients downloading model archives from that hub;
//!
//! with the shared zoo's BlazeFace (float TFLite) and EfficientNet-Lite0 (int8 TFLite). Every
//! result is compared with the result of the same frame on the same path computed once at the
//! start; every archive with its SHA-256. Zero errors are allowed. The resident memory of the
//! server and the hub is sampled every `DGZOO_SOAK_SAMPLE_SECONDS` (default 2 s; the series
//! is printed) and may grow by at most 5% after the warm-up (the first quarter, at least 20 s:
//! engines load and the streams ramp up for about that long here).
//!
//! Not part of the normal test run (`#[ignore]`): `scripts/soak.sh [SECONDS]` runs it
//! (`scripts/test.sh` with 60 s).
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use aiserver_common::DgzooServer;
use cloud_common::*;
use dgzoo::inference::Input;
use dgzoo::pipeline::{predict_batch, OwnedInput};
use dgzoo::zoo::{ConnectOptions, Zoo};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODELS: [&str; 2] = [BLAZE, EFF_Q];
const IMAGES: [&str; 2] = ["cat_224.jpg", "girls_256.jpg"];
/// Frames per stream session (one stream connection each), so streams also open and close.
const FRAMES_PER_SESSION: usize = 8;

fn env_secs(name: &str, default: f64) -> Duration {
    Duration::from_secs_f64(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Numbers within 1e-4 (scores) / boxes within 1e-3 px, everything else exact.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-3,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

/// Counters of one kind of client.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        let mut f = self.first_errors.lock().unwrap();
        if f.len() < 5 {
            f.push(what);
        }
    }
    fn check(&self, got: &Value, want: &Value, what: &str) {
        if same(got, want) {
            self.ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.fail(format!("{what}: got {got}, want {want}"));
        }
    }
}

const PYSDK_STREAMS: &str = r#"
import json, sys, threading, time
import degirum as dg
addr, images_dir, models, seconds, streams = sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]), int(sys.argv[5])
images = ["cat_224.jpg", "girls_256.jpg"]
frames = [images_dir + "/" + i for i in images]
stats = {"frames": 0, "errors": 0, "mismatches": 0, "first_errors": []}
lock = threading.Lock()
def note(kind, msg):
    with lock:
        stats[kind] += 1
        if len(stats["first_errors"]) < 5:
            stats["first_errors"].append(msg)
def run(k):
    try:
        zoo = dg.connect(addr, "", "")
        model = zoo.load_model(models[k % len(models)])
        ref = {}
        for i, f in enumerate(frames):
            ref[i] = json.dumps(model.predict(f).results, sort_keys=True, default=str)
        end = time.time() + seconds
        n = 0
        while time.time() < end:
            batch = [(frames[(n + j) % 2], (n + j) % 2) for j in range(8)]
            n += 8
            for r in model.predict_batch(batch):
                got = json.dumps(r.results, sort_keys=True, default=str)
                if got != ref[r.info]:
                    note("mismatches", "frame %d: %s != %s" % (r.info, got[:200], ref[r.info][:200]))
                else:
                    with lock:
                        stats["frames"] += 1
    except Exception as e:
        note("errors", repr(e))
ts = [threading.Thread(target=run, args=(k,)) for k in range(streams)]
[t.start() for t in ts]
[t.join() for t in ts]
print("SOAK-JSON " + json.dumps(stats))
"#;

/// One client's stream sessions until the deadline: reference results of both frames first
/// (one frame each), then sessions of [`FRAMES_PER_SESSION`] frames from `session(n)` (the
/// frame index of result `i` is `n + i`), each result checked against its frame's reference.
fn stream_sessions(
    model: &dgzoo::model::Model,
    frames: &[Vec<u8>],
    deadline: Instant,
    stop: &AtomicBool,
    tally: &Tally,
    label: &str,
    session: impl Fn(usize) -> dgzoo::Result<Vec<(usize, dgzoo::Result<Value>)>>,
) -> dgzoo::Result<()> {
    let refs: Vec<Value> = frames
        .iter()
        .map(|f| dgzoo::model::predict(model, &[Input::Bytes(f)]).map(|r| serde_json::to_value(&r.results).unwrap()))
        .collect::<dgzoo::Result<_>>()?;
    let mut n = 0usize;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        let got = session(n)?;
        if got.len() != FRAMES_PER_SESSION {
            tally.fail(format!("{label}: {} results for {FRAMES_PER_SESSION} frames", got.len()));
        }
        for (i, r) in got {
            match r {
                Ok(r) => tally.check(&r, &refs[(n + i) % 2], &format!("{label} frame {}", n + i)),
                Err(e) => tally.fail(format!("{label} frame {}: {}", n + i, e.message)),
            }
        }
        n += FRAMES_PER_SESSION;
    }
    Ok(())
}

#[test]
#[ignore = "a soak of minutes: run by scripts/soak.sh [SECONDS] (scripts/test.sh: 60 s)"]
fn soak_streams_cloud_inference_and_downloads() {
    let duration = env_secs("DGZOO_SOAK_SECONDS", 600.0);
    let sample_every = env_secs("DGZOO_SOAK_SAMPLE_SECONDS", 2.0);
    let warmup = (duration / 4).max(Duration::from_secs(20));
    let peer = peer();

    // The AI server over the two model folders, the hub over their archives.
    let zoo = tempfile::tempdir().unwrap();
    for m in MODELS {
        std::fs::create_dir(zoo.path().join(m)).unwrap();
        for f in std::fs::read_dir(Path::new(ZOO).join(m)).unwrap().flatten() {
            std::os::unix::fs::symlink(f.path(), zoo.path().join(m).join(f.file_name())).unwrap();
        }
    }
    let server = DgzooServer::spawn(zoo.path()).args(&["--quiet", "--max-connections", "4096"]).start();
    let port = server.port;
    let root = hub_root(&MODELS);
    let (hub, hub_addr) = start_hub_process(root.path());
    let hub_url = format!("http://{hub_addr}/{ORG}/{ZOONAME}");
    let asio_addr = format!("127.0.0.1:{port}");
    let ws_addr = format!("http://127.0.0.1:{}", port + 1);
    let cache = tempfile::tempdir().unwrap();
    let cloud = Arc::new(
        Zoo::connect_with("@cloud", &hub_url, TOKEN, &ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() }).unwrap(),
    );
    let frames: Vec<Vec<u8>> = IMAGES.iter().map(|i| image(i)).collect();
    let archives: Vec<(String, String)> =
        MODELS.iter().map(|m| (m.to_string(), sha256_hex(&std::fs::read(zoo_dir(root.path()).join(format!("{m}.zip"))).unwrap()))).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + duration;
    let (asio, ws, cloud_t, dl) = (Arc::new(Tally::default()), Arc::new(Tally::default()), Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut threads = Vec::new();

    // PySDK: two processes (asio, WebSocket) of four streams each.
    let mut pysdk = Vec::new();
    if let Some(peer) = &peer {
        let script = cache.path().join("pysdk_streams.py");
        std::fs::write(&script, PYSDK_STREAMS).unwrap();
        for addr in [&asio_addr, &ws_addr] {
            let child = Command::new(peer.join("venv/bin/python"))
                .arg(&script)
                .args([addr.as_str(), &format!("{ZOO}/images"), &MODELS.join(","), &format!("{}", duration.as_secs_f64()), "4"])
                .env("LD_LIBRARY_PATH", ort_dir(peer))
                .env("HOME", cache.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            pysdk.push(child);
        }
    }
    let dgzoo_streams = if peer.is_some() { 28 } else { 32 };

    // dgzoo AI-server streams: per session FRAMES_PER_SESSION pipelined frames (alternating
    // images, so a result delivered to the wrong frame or stream shows).
    for k in 0..2 * dgzoo_streams {
        let (addr, tally) = if k % 2 == 0 { (asio_addr.clone(), asio.clone()) } else { (ws_addr.clone(), ws.clone()) };
        let (frames, stop) = (frames.clone(), stop.clone());
        let model_name = MODELS[(k / 2) % 2];
        threads.push(std::thread::spawn(move || {
            let label = format!("{addr} {model_name}");
            let run = || -> dgzoo::Result<()> {
                let zoo = Zoo::connect(&addr, "", "")?;
                let model = zoo.load_model(model_name, &json!({"frame_queue_depth": 4}))?;
                stream_sessions(&model, &frames, deadline, &stop, &tally, &label, |n| {
                    let batch: Vec<Vec<OwnedInput>> = (0..FRAMES_PER_SESSION).map(|j| vec![OwnedInput::Bytes(frames[(n + j) % 2].clone())]).collect();
                    Ok(predict_batch(&model, batch)?.into_iter().enumerate().map(|(j, r)| (j, r.map(|r| serde_json::to_value(&r.results).unwrap()))).collect())
                })
            };
            if let Err(e) = run() {
                tally.fail(format!("{label}: {}", e.message));
            }
        }));
    }

    // Cloud inference on the hub: 16 streams, one model object each.
    for k in 0..16 {
        let (cloud, frames, stop, tally) = (cloud.clone(), frames.clone(), stop.clone(), cloud_t.clone());
        let model_name = MODELS[k % 2];
        threads.push(std::thread::spawn(move || {
            let label = format!("cloud {model_name}");
            let run = || -> dgzoo::Result<()> {
                let model = cloud.load_model(model_name, &Value::Null)?;
                stream_sessions(&model, &frames, deadline, &stop, &tally, &label, |n| {
                    let batch: Vec<Vec<Input>> = (0..FRAMES_PER_SESSION).map(|j| vec![Input::Bytes(&frames[(n + j) % 2])]).collect();
                    let mut got = Vec::new();
                    dgzoo::model::cloud_predict_batch(&model, &batch, |i, r| got.push((i, Ok(serde_json::to_value(&r.results).unwrap()))))?;
                    Ok(got)
                })
            };
            if let Err(e) = run() {
                tally.fail(format!("{label}: {}", e.message));
            }
        }));
    }

    // 32 downloaders: whole archives, checked against their SHA-256.
    for k in 0..32 {
        let (archives, stop, tally, hub_addr) = (archives.clone(), stop.clone(), dl.clone(), hub_addr.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
            let mut n = k;
            while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                let (model, want) = &archives[n % archives.len()];
                n += 1;
                let url = format!("http://{hub_addr}/zoo/v1/public/models/{ORG}/{ZOONAME}/{model}");
                let got = agent.get(&url).set("token", TOKEN).call().map_err(|e| e.to_string()).and_then(|r| {
                    let mut body = Vec::new();
                    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).map_err(|e| e.to_string())?;
                    Ok(body)
                });
                match got {
                    Ok(body) if sha256_hex(&body) == *want => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(body) => tally.fail(format!("download {model}: {} bytes with another SHA-256", body.len())),
                    Err(e) => tally.fail(format!("download {model}: {e}")),
                }
                // Downloads share the two cores with 80 inference streams.
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }

    // Resident memory of the server and the hub, every few seconds.
    let start = Instant::now();
    let mut series: Vec<(f64, u64, u64)> = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(sample_every.min(deadline.saturating_duration_since(Instant::now())));
        series.push((start.elapsed().as_secs_f64(), rss_kib(server.pid()), rss_kib(hub.0.id())));
        let (a, w, c, d) = (&asio, &ws, &cloud_t, &dl);
        eprintln!(
            "soak t={:5.1}s server RSS {} KiB, hub RSS {} KiB; ok asio {} ws {} cloud {} downloads {}; errors {}",
            series.last().unwrap().0,
            series.last().unwrap().1,
            series.last().unwrap().2,
            a.ok.load(Ordering::SeqCst),
            w.ok.load(Ordering::SeqCst),
            c.ok.load(Ordering::SeqCst),
            d.ok.load(Ordering::SeqCst),
            [a, w, c, d].iter().map(|t| t.errors.load(Ordering::SeqCst)).sum::<u64>()
        );
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let mut py = Vec::new();
    for child in pysdk {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SOAK-JSON "))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("the PySDK client failed: {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
        py.push(v);
    }

    // Report.
    println!("soak: {:.0} s, RSS every {:?} (warm-up {:?}):", duration.as_secs_f64(), sample_every, warmup);
    println!("  t_s  server_kib  hub_kib");
    for (t, s, h) in &series {
        println!("{t:5.1} {s:11} {h:8}");
    }
    let secs = duration.as_secs_f64();
    for (name, t) in [("dgzoo asio frames", &asio), ("dgzoo websocket frames", &ws), ("hub cloud-inference frames", &cloud_t), ("archive downloads", &dl)] {
        let ok = t.ok.load(Ordering::SeqCst);
        println!("  {name}: {ok} correct ({:.1}/s), {} errors {:?}", ok as f64 / secs, t.errors.load(Ordering::SeqCst), t.first_errors.lock().unwrap());
    }
    for (addr, v) in [&asio_addr, &ws_addr].iter().zip(&py) {
        println!("  PySDK {addr}: {v}");
    }
    let mut failures = Vec::new();
    for (name, t) in [("asio", &asio), ("websocket", &ws), ("cloud", &cloud_t), ("download", &dl)] {
        if t.errors.load(Ordering::SeqCst) > 0 {
            failures.push(format!("{name}: {} errors, first {:?}", t.errors.load(Ordering::SeqCst), t.first_errors.lock().unwrap()));
        }
        if t.ok.load(Ordering::SeqCst) == 0 {
            failures.push(format!("{name}: nothing completed"));
        }
    }
    for v in &py {
        if v["errors"] != 0 || v["mismatches"] != 0 || v["frames"] == 0 {
            failures.push(format!("PySDK: {v}"));
        }
    }
    // Memory: the mean of the last three samples against the mean of the first three after
    // the warm-up.
    let after: Vec<&(f64, u64, u64)> = series.iter().filter(|s| s.0 >= warmup.as_secs_f64()).collect();
    if after.len() >= 6 {
        let mean = |xs: &[&(f64, u64, u64)], f: fn(&(f64, u64, u64)) -> u64| xs.iter().map(|x| f(x) as f64).sum::<f64>() / xs.len() as f64;
        for (name, f) in [("server", (|x: &(f64, u64, u64)| x.1) as fn(&(f64, u64, u64)) -> u64), ("hub", |x: &(f64, u64, u64)| x.2)] {
            let (first, last) = (mean(&after[..3], f), mean(&after[after.len() - 3..], f));
            let growth = (last / first - 1.0) * 100.0;
            println!("  {name} RSS after warm-up: {first:.0} -> {last:.0} KiB ({growth:+.1}%)");
            if growth > 5.0 {
                failures.push(format!("{name} RSS grew {growth:.1}% after the warm-up ({first:.0} -> {last:.0} KiB)"));
            }
        }
    } else {
        failures.push(format!("only {} RSS samples after the warm-up; run longer", after.len()));
    }
    assert!(failures.is_empty(), "soak failed:\n{}", failures.join("\n"));
}
