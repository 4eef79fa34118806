//! Frames per second through the hub's cloud inference (socket.io) next to the AI-server
//! path (asio and HTTP/WebSocket), same models, images and client-side work.
//!   cargo bench --bench cloudinfer [-- N]     (N frames per case, default 200)
//! Needs the runtimes; everything runs in-process on 127.0.0.1. Run on an idle machine.
use dgzoo::cache::archive::pack_model;
use dgzoo::cache::CacheConfig;
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::model::Model;
use dgzoo::pipeline::{predict_batch, OwnedInput};
use dgzoo::zoo::{ConnectOptions, Zoo};
use dgzoo_server::aiserver::{Config, Protocol, Server};
use dgzoo_server::hub::{Hub, HubConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

const REPO: &str = env!("DGZOO_REPO");
const MODELS: [&str; 2] = ["efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1", "yolov8n_nudenet--320x320_float_tflite_cpu_1"];
const IMAGES: [&str; 3] = ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"];

fn shared() -> PathBuf {
    Path::new(REPO).join("../shared/zoo").canonicalize().expect("../shared/zoo")
}

/// (sequential predict fps, pipelined fps)
fn measure(model: &Model, frames: &[Vec<u8>], pipelined: &dyn Fn(&Model, &[Vec<u8>]) -> usize) -> (f64, f64) {
    // Warm-up: engine load on the server, connection set-up.
    predict(model, &[Input::Bytes(&frames[0])]).expect("warm-up");
    let t = Instant::now();
    for f in frames {
        predict(model, &[Input::Bytes(f)]).expect("predict");
    }
    let seq = frames.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    assert_eq!(pipelined(model, frames), frames.len());
    (seq, frames.len() as f64 / t.elapsed().as_secs_f64())
}

fn via_pipeline(m: &Model, frames: &[Vec<u8>]) -> usize {
    let r = predict_batch(m, frames.iter().map(|f| vec![OwnedInput::Bytes(f.clone())]).collect()).expect("batch");
    r.into_iter().filter(|x| x.is_ok()).count()
}

fn via_socketio_stream(m: &Model, frames: &[Vec<u8>]) -> usize {
    let inputs: Vec<Vec<Input>> = frames.iter().map(|f| vec![Input::Bytes(f)]).collect();
    let mut n = 0;
    dgzoo::model::cloud_predict_batch(m, &inputs, |_, _| n += 1).expect("stream");
    n
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let zoo_src = shared();
    let images: Vec<Vec<u8>> = IMAGES.iter().map(|i| std::fs::read(zoo_src.join("images").join(i)).unwrap()).collect();
    let frames: Vec<Vec<u8>> = images.iter().cycle().take(n).cloned().collect();

    // Hub root: tokens + packed archives.
    let root = tempfile::tempdir().unwrap();
    let zdir = root.path().join("bench/zoo");
    std::fs::create_dir_all(&zdir).unwrap();
    for m in MODELS {
        pack_model(&zoo_src.join(m), &zdir.join(format!("{m}.zip"))).unwrap();
    }
    std::fs::write(root.path().join("tokens.json"), r#"{"bench": {"is_admin": true, "zoos": []}}"#).unwrap();
    let mut hcfg = HubConfig::new(root.path());
    hcfg.port = 0;
    let hub = Hub::start(&hcfg).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let opts = ConnectOptions {
        cache: Some(CacheConfig { root: cache.path().to_path_buf(), limit: dgzoo::cache::DEFAULT_LIMIT, offline: false }),
        offline: None,
        ..Default::default()
    };
    let cloud = Zoo::connect_with("@cloud", &format!("http://{}/bench/zoo", hub.addr()), "bench", &opts).unwrap();

    // AI server over the same model directories.
    let mut scfg = Config::new(&zoo_src);
    scfg.port = 0;
    scfg.protocol = Protocol::Both;
    scfg.quiet = true;
    let server = Server::start(scfg).unwrap();
    let asio = Zoo::connect(&format!("127.0.0.1:{}", server.asio_addr().unwrap().port()), "", "").unwrap();
    let http = Zoo::connect(&format!("http://127.0.0.1:{}", server.http_addr().unwrap().port()), "", "").unwrap();

    println!("{n} frames per case, RAW frames, frame_queue_depth 8; frames/s (sequential predict | pipelined)");
    for m in MODELS {
        let props = json!({"input_image_format": "RAW", "frame_queue_depth": 8});
        let hub_model = cloud.load_model(m, &props).unwrap();
        let asio_model = asio.load_model(m, &props).unwrap();
        let http_model = http.load_model(m, &props).unwrap();
        let (hs, hp) = measure(&hub_model, &frames, &via_socketio_stream);
        let (hs2, hp2) = measure(&hub_model, &frames, &via_pipeline);
        let (as_, ap) = measure(&asio_model, &frames, &via_pipeline);
        let (ws, wp) = measure(&http_model, &frames, &via_pipeline);
        println!("{m}");
        println!("  hub socket.io, one stream     {hs:8.1} | {hp:8.1}");
        println!("  hub socket.io, async workers  {hs2:8.1} | {hp2:8.1}");
        println!("  AI server asio                {as_:8.1} | {ap:8.1}   (hub/asio pipelined {:.2})", hp / ap);
        println!("  AI server http/ws             {ws:8.1} | {wp:8.1}   (hub/ws pipelined {:.2})", hp / wp);
    }
}
