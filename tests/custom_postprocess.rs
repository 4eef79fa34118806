//! PySDK's `custom_postprocessor` in the core: a closure given the raw output tensors replaces
//! the built-in post-processor on every local predict path, on the shared zoo's real models.
use dgzoo::error::{Code, Error};
use dgzoo::inference::Input;
use dgzoo::model::{predict, Model};
use dgzoo::pipeline::OwnedInput;
use dgzoo::postprocess::custom::{FrameInfo, TensorView};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A call's frame info: image and input sizes, and where the input's centre lies in the image.
type Seen = (u32, u32, u32, u32, (f64, f64));

const FLOAT: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";

fn zoo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo").canonicalize().expect("../shared/zoo must exist beside the repo")
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(zoo_root().join("images").join(name)).unwrap()
}

fn load(props: Value) -> Model {
    Zoo::connect("@local", zoo_root().to_str().unwrap(), "").unwrap().load_model(FLOAT, &props).unwrap()
}

/// Top-1 of softmaxed logits, as the built-in Classification post-processor reports it.
fn top1(views: &[TensorView], labels: &std::collections::BTreeMap<i64, String>) -> Value {
    let logits: &[f32] = views[0].tensor.data.as_slice();
    let (best, &max) = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    json!([{"category_id": best, "label": labels[&(best as i64)], "score": 1.0 / sum}])
}

fn assert_same_top1(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["category_id"], want[0]["category_id"]);
    assert_eq!(got[0]["label"], want[0]["label"]);
    let (g, w) = (got[0]["score"].as_f64().unwrap(), want[0]["score"].as_f64().unwrap());
    assert!((g - w).abs() < 1e-5, "score {g} vs built-in {w}");
}

#[test]
fn a_custom_postprocessor_replaces_the_built_in_one_on_every_path() {
    let model = load(json!({"output_top_k": 1}));
    let raw = load(json!({"output_postprocess_type": "None"}));
    let cat = image("cat_224.jpg");
    let car = image("car_416.jpg");
    let builtin = predict(&model, &[Input::Bytes(&cat)]).unwrap().results;
    let builtin_car = predict(&model, &[Input::Bytes(&car)]).unwrap().results;
    let raw_tensor = predict(&raw, &[Input::Bytes(&cat)]).unwrap().tensors.remove(0);

    let labels = model.labels().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let frames: Arc<Mutex<Vec<Seen>>> = Default::default();
    let (c, f, want_info) = (calls.clone(), frames.clone(), raw_tensor.info.clone());
    model
        .set_custom_postprocessor(Some(Arc::new(move |views: &[TensorView], fi: &FrameInfo| {
            c.fetch_add(1, Ordering::SeqCst);
            // The views are the tensors raw-output mode gives: same name, type, shape.
            assert_eq!(views.len(), 1);
            let t = &views[0].tensor.info;
            assert_eq!((&t.name, &t.shape, t.dtype), (&want_info.name, &want_info.shape, want_info.dtype));
            f.lock().unwrap().push((fi.image_width, fi.image_height, fi.input_width, fi.input_height, fi.to_original(112.0, 112.0)));
            Ok(top1(views, &labels))
        })))
        .unwrap();

    let r = predict(&model, &[Input::Bytes(&cat)]).unwrap();
    assert_same_top1(&r.results, &builtin);
    assert!(r.tensors.is_empty());
    let batch = dgzoo::pipeline::predict_batch(&model, vec![vec![OwnedInput::Bytes(cat.clone())], vec![OwnedInput::Bytes(car.clone())]]).unwrap();
    assert_same_top1(&batch[0].as_ref().unwrap().results, &builtin);
    assert_same_top1(&batch[1].as_ref().unwrap().results, &builtin_car);
    let mut frames_left = vec![cat.clone(), car.clone()].into_iter();
    let mut streamed = Vec::new();
    dgzoo::pipeline::predict_stream(&model, 2, || frames_left.next().map(|b| (Ok(vec![OwnedInput::Bytes(b)]), ())), |_, r| streamed.push(r.unwrap().results))
        .unwrap();
    assert_same_top1(&streamed[0], &builtin);
    assert_same_top1(&streamed[1], &builtin_car);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // The frame's geometry: cat_224 is model-sized, car_416 is cropped around its centre.
    let seen = frames.lock().unwrap().clone();
    assert_eq!((seen[0].0, seen[0].1, seen[0].2, seen[0].3), (224, 224, 224, 224));
    assert!(seen.iter().any(|s| s.0 == 416 && s.1 == 416 && (s.4 .0 - 208.0).abs() <= 1.0 && (s.4 .1 - 208.0).abs() <= 1.0), "{seen:?}");

    // output_class_set filters the custom results, as PySDK filters its result class's.
    model.set_property("output_class_set", &json!(["tench"])).unwrap();
    assert_eq!(predict(&model, &[Input::Bytes(&cat)]).unwrap().results, Vec::<Value>::new());
    model.set_property("output_class_set", &Value::Null).unwrap();

    // None restores the built-in post-processor.
    model.set_custom_postprocessor(None).unwrap();
    assert_eq!(predict(&model, &[Input::Bytes(&cat)]).unwrap().results, builtin);
}

#[test]
fn custom_postprocessor_failures_are_frame_errors_and_the_model_stays_usable() {
    let model = load(json!({"output_top_k": 1}));
    let cat = image("cat_224.jpg");
    let builtin = predict(&model, &[Input::Bytes(&cat)]).unwrap().results;
    type Pp = Arc<dgzoo::postprocess::custom::PostprocessFn>;
    let cases: Vec<(Pp, Code, &str)> = vec![
        (Arc::new(|_: &[TensorView], _: &FrameInfo| Err(Error::inference("no luck"))), Code::Inference, "no luck"),
        (Arc::new(|_: &[TensorView], _: &FrameInfo| panic!("boom")), Code::Inference, "panicked: boom"),
        (Arc::new(|_: &[TensorView], _: &FrameInfo| Ok(json!({"label": "x"}))), Code::Inference, "must return a JSON array"),
    ];
    for (pp, code, text) in cases {
        model.set_custom_postprocessor(Some(pp)).unwrap();
        let e = predict(&model, &[Input::Bytes(&cat)]).unwrap_err();
        assert_eq!(e.code, code, "{}", e.message);
        assert!(e.message.contains(text) && e.message.contains(FLOAT), "{}", e.message);
        let batch = dgzoo::pipeline::predict_batch(&model, vec![vec![OwnedInput::Bytes(cat.clone())]]).unwrap();
        assert!(batch[0].as_ref().unwrap_err().message.contains(text));
        model.set_custom_postprocessor(None).unwrap();
        assert_eq!(predict(&model, &[Input::Bytes(&cat)]).unwrap().results, builtin, "usable after '{text}'");
    }
}
