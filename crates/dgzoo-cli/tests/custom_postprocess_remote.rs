//! PySDK's `custom_postprocessor` on remote models: while a callback is set, an AI-server or
//! cloud model asks its server for raw output tensors and runs the callback in the client.
//! Through our AI server (asio and HTTP/WebSocket), the real DeGirum server and our hub's cloud
//! inference; the callback's top-1 equals the server's own built-in classification.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
#[allow(unused)]
mod cloud_common;

use dgzoo::inference::Input;
use dgzoo::model::{predict, Model};
use dgzoo::pipeline::OwnedInput;
use dgzoo::postprocess::custom::{FrameInfo, TensorView};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A call's frame info: image and input sizes, and where the input's centre lies in the image.
type Seen = (u32, u32, u32, u32, (f64, f64));

const FLOAT: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";

fn shared() -> PathBuf {
    Path::new(env!("DGZOO_REPO")).join("../shared/zoo").canonicalize().expect("../shared/zoo must exist beside the repo")
}

/// A zoo of the one model (its folder linked, not the shared zoo's other configs).
fn one_model_zoo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join(FLOAT);
    std::fs::create_dir(&dst).unwrap();
    for f in std::fs::read_dir(shared().join(FLOAT)).unwrap().flatten() {
        std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
    }
    dir
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(shared().join("images").join(name)).unwrap()
}

/// Top-1 of softmaxed logits, as the built-in Classification post-processor reports it.
fn top1(views: &[TensorView], labels: &std::collections::BTreeMap<i64, String>) -> Value {
    let logits: &[f32] = views[0].tensor.data.as_slice();
    let (best, &max) = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    json!([{"category_id": best, "label": labels[&(best as i64)], "score": 1.0 / sum}])
}

fn assert_same_top1(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), 1, "{what}: {got:?}");
    assert_eq!((&got[0]["category_id"], &got[0]["label"]), (&want[0]["category_id"], &want[0]["label"]), "{what}");
    let (g, w) = (got[0]["score"].as_f64().unwrap(), want[0]["score"].as_f64().unwrap());
    assert!((g - w).abs() < 1e-4, "{what}: score {g} vs the server's built-in {w}");
}

/// The callback replaces the server's post-processing on single frames and pipelined batches,
/// sees the frame's geometry, and `None` restores the server's results.
fn check(model: &Model, via: &str) {
    let (cat, car) = (image("cat_224.jpg"), image("car_416.jpg"));
    let builtin = predict(model, &[Input::Bytes(&cat)]).unwrap().results;
    let builtin_car = predict(model, &[Input::Bytes(&car)]).unwrap().results;
    assert_eq!(builtin.len(), 1, "{via}: output_top_k 1");
    let labels = model.labels().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let (c, s) = (calls.clone(), seen.clone());
    model
        .set_custom_postprocessor(Some(Arc::new(move |views: &[TensorView], fi: &FrameInfo| {
            c.fetch_add(1, Ordering::SeqCst);
            assert_eq!(views.len(), 1);
            assert_eq!(views[0].tensor.info.shape, vec![1, 1000]);
            s.lock().unwrap().push((fi.image_width, fi.image_height, fi.input_width, fi.input_height, fi.to_original(112.0, 112.0)));
            Ok(top1(views, &labels))
        })))
        .unwrap();
    let r = predict(model, &[Input::Bytes(&cat)]).unwrap();
    assert_same_top1(&r.results, &builtin, via);
    assert!(r.tensors.is_empty(), "{via}: the callback's results carry no raw tensors");
    let batch = dgzoo::pipeline::predict_batch(model, vec![vec![OwnedInput::Bytes(cat.clone())], vec![OwnedInput::Bytes(car.clone())]]).unwrap();
    assert_same_top1(&batch[0].as_ref().unwrap().results, &builtin, via);
    assert_same_top1(&batch[1].as_ref().unwrap().results, &builtin_car, via);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "{via}: one call per frame");
    let seen = seen.lock().unwrap().clone();
    assert_eq!((seen[0].0, seen[0].1, seen[0].2, seen[0].3), (224, 224, 224, 224), "{via}: {seen:?}");
    assert!(seen.iter().any(|s| (s.0, s.1) == (416, 416) && (s.4 .0 - 208.0).abs() <= 1.0 && (s.4 .1 - 208.0).abs() <= 1.0), "{via}: {seen:?}");
    // output_class_set filters the callback's results.
    model.set_property("output_class_set", &json!(["tench"])).unwrap();
    assert_eq!(predict(model, &[Input::Bytes(&cat)]).unwrap().results, Vec::<Value>::new(), "{via}");
    model.set_property("output_class_set", &Value::Null).unwrap();
    // A failing callback fails that frame only.
    model.set_custom_postprocessor(Some(Arc::new(|_: &[TensorView], _: &FrameInfo| Err(dgzoo::Error::invalid("no thanks"))))).unwrap();
    let e = predict(model, &[Input::Bytes(&cat)]).unwrap_err();
    assert!(e.message.contains("no thanks"), "{via}: {e}");
    model.set_custom_postprocessor(None).unwrap();
    assert_same_top1(&predict(model, &[Input::Bytes(&cat)]).unwrap().results, &builtin, via);
    assert!(predict(model, &[Input::Bytes(&cat)]).unwrap().tensors.is_empty(), "{via}: built-in results again");
}

fn our_server(zoo: &Path, protocol: dgzoo_server::aiserver::Protocol) -> dgzoo_server::aiserver::Server {
    let mut cfg = dgzoo_server::aiserver::Config::new(zoo);
    cfg.port = 0;
    cfg.protocol = protocol;
    cfg.quiet = true;
    dgzoo_server::aiserver::Server::start(cfg).expect("server starts")
}

#[test]
fn custom_postprocessor_on_our_ai_server_asio_and_http() {
    let zoo = one_model_zoo();
    let server = our_server(zoo.path(), dgzoo_server::aiserver::Protocol::Both);
    let asio = format!("127.0.0.1:{}", server.asio_addr().unwrap().port());
    let http = format!("http://127.0.0.1:{}", server.http_addr().unwrap().port());
    for (host, via) in [(asio, "our AI server over asio"), (http, "our AI server over HTTP/WebSocket")] {
        let model = Zoo::connect(&host, "", "").unwrap().load_model(FLOAT, &json!({"output_top_k": 1})).unwrap();
        check(&model, via);
    }
}

#[test]
fn custom_postprocessor_on_the_real_degirum_server() {
    let Some(peer) = aiserver_common::peer("custom_postprocessor_on_the_real_degirum_server") else { return };
    let zoo = one_model_zoo();
    let server = aiserver_common::start_peer_server(&peer, zoo.path(), &[]);
    let model = Zoo::connect(&format!("127.0.0.1:{}", server.port), "", "").unwrap().load_model(FLOAT, &json!({"output_top_k": 1})).unwrap();
    check(&model, "DeGirum's server");
}

#[test]
fn custom_postprocessor_on_our_hub_cloud_inference() {
    use cloud_common::*;
    let root = hub_root(&[FLOAT]);
    let hub = start_hub(root.path());
    let cache = tempfile::tempdir().unwrap();
    let opts = dgzoo::zoo::ConnectOptions { cache: Some(cache_cfg(cache.path())), offline: None, ..Default::default() };
    let zoo = Zoo::connect_with("@cloud", &hub_url(&hub), TOKEN, &opts).unwrap();
    let model = zoo.load_model(FLOAT, &json!({"output_top_k": 1})).unwrap();
    check(&model, "our hub's cloud inference");
}
