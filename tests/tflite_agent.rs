//! TFLITE/CPU agent against the real LiteRT library and the real models of the shared zoo.
//! Skips (with a message) only when libLiteRt.so cannot be found.
use dgzoo::runtime::{tflite::TfliteAgent, Agent, AlignedBuf, ElemType, Session, SessionOptions, Tensor};
use std::path::PathBuf;

const ZOO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/zoo");
const EFF_F: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";
const EFF_Q: &str = "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1";
const YOLO: &str = "yolov8n_nudenet--320x320_float_tflite_cpu_1";
const BLAZE: &str = "blazeface_short_range--128x128_float_tflite_cpu_1";

fn agent() -> Option<TfliteAgent> {
    match TfliteAgent::load() {
        Ok(a) => Some(a),
        Err(e) if e.message.contains("cannot load any of") => {
            eprintln!("SKIP: LiteRT library not found ({})", e.message);
            None
        }
        Err(e) => panic!("LiteRT library found but the agent failed to load: {}", e.message),
    }
}

fn model_path(name: &str) -> PathBuf {
    PathBuf::from(ZOO).join(name).join(format!("{name}.tflite"))
}

fn load(a: &TfliteAgent, name: &str, threads: usize) -> Box<dyn Session> {
    a.load(&model_path(name), &SessionOptions { threads, ..Default::default() }).unwrap_or_else(|e| panic!("loading {name}: {}", e.message))
}

fn tensor_like(s: &dyn Session, i: usize, bytes: &[u8]) -> Tensor {
    Tensor { info: s.inputs()[i].clone(), data: AlignedBuf::from_bytes(bytes) }
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// cat_224.jpg → 256x256 bilinear → centre 224x224, RGB HWC u8.
fn cat_pixels() -> Vec<u8> {
    let bytes = std::fs::read(PathBuf::from(ZOO).join("images/cat_224.jpg")).expect("cat image");
    let img = image::load_from_memory(&bytes).expect("decode").to_rgb8();
    let r = image::imageops::resize(&img, 256, 256, image::imageops::FilterType::Triangle);
    let off = (256 - 224) / 2;
    let mut out = Vec::with_capacity(224 * 224 * 3);
    for y in 0..224 {
        for x in 0..224 {
            out.extend_from_slice(&r.get_pixel(x + off, y + off).0);
        }
    }
    out
}

#[test]
fn agent_info() {
    let Some(a) = agent() else { return };
    assert_eq!(a.runtime(), "TFLITE");
    let devs = a.devices();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].0, "CPU");
    assert_eq!(devs[0].1.len(), 2);
    assert_eq!(devs[0].1[0]["@Index"], 0);
    assert_eq!(devs[0].1[1]["@Index"], 1);
    assert!(a.version().contains("2.1"), "version {}", a.version());
}

#[test]
fn model_io_info() {
    let Some(a) = agent() else { return };

    let s = load(&a, EFF_F, 0);
    assert_eq!(s.inputs().len(), 1);
    assert_eq!(s.inputs()[0].shape, vec![1, 224, 224, 3]);
    assert_eq!(s.inputs()[0].dtype, ElemType::F32);
    assert!(s.inputs()[0].quant.is_none());
    assert_eq!(s.outputs().len(), 1);
    assert_eq!(s.outputs()[0].shape, vec![1, 1000]);
    assert_eq!(s.outputs()[0].dtype, ElemType::F32);

    let s = load(&a, EFF_Q, 0);
    let i = &s.inputs()[0];
    assert_eq!(i.shape, vec![1, 224, 224, 3]);
    assert_eq!(i.dtype, ElemType::U8);
    let q = i.quant.as_ref().expect("input quant");
    assert_eq!((q.axis, q.scale.len(), q.zero.clone()), (0, 1, vec![0]));
    assert!((q.scale[0] - 1.0).abs() < 1e-6, "input scale {}", q.scale[0]);
    let o = &s.outputs()[0];
    assert_eq!(o.shape, vec![1, 1000]);
    assert_eq!(o.dtype, ElemType::U8);
    let q = o.quant.as_ref().expect("output quant");
    assert!((q.scale[0] - 0.06831).abs() < 1e-4, "output scale {}", q.scale[0]);
    assert_eq!(q.zero, vec![78]);

    let s = load(&a, YOLO, 0);
    assert_eq!(s.inputs()[0].shape, vec![1, 320, 320, 3]);
    assert_eq!(s.inputs()[0].dtype, ElemType::F32);
    assert_eq!(s.outputs().len(), 1);
    assert_eq!(s.outputs()[0].shape, vec![1, 22, 2100]);
    assert_eq!(s.outputs()[0].dtype, ElemType::F32);

    let s = load(&a, BLAZE, 0);
    assert_eq!(s.inputs()[0].shape, vec![1, 128, 128, 3]);
    assert_eq!(s.inputs()[0].dtype, ElemType::F32);
    let outs: Vec<(&str, &[i64])> = s.outputs().iter().map(|o| (o.name.as_str(), o.shape.as_slice())).collect();
    assert_eq!(outs, vec![("regressors", &[1, 896, 16][..]), ("classificators", &[1, 896, 1][..])]);
    assert!(s.outputs().iter().all(|o| o.dtype == ElemType::F32));
}

#[test]
fn constant_inputs_are_deterministic() {
    let Some(a) = agent() else { return };

    let mut s = load(&a, EFF_F, 2);
    let x: Vec<f32> = vec![0.25; 224 * 224 * 3];
    let t = tensor_like(s.as_ref(), 0, bytemuck::cast_slice(&x));
    let o1 = s.run(std::slice::from_ref(&t)).expect("run float");
    let o2 = s.run(std::slice::from_ref(&t)).expect("run float again");
    assert_eq!(o1.len(), 1);
    assert_eq!(o1[0].info.shape, vec![1, 1000]);
    assert_eq!(o1[0].num_elements(), 1000);
    assert_eq!(o1[0].data.len(), 4000);
    assert!(o1[0].data.as_slice::<f32>().iter().all(|v| v.is_finite()));
    assert_eq!(o1[0].data.as_bytes(), o2[0].data.as_bytes());

    let mut s = load(&a, EFF_Q, 2);
    let t = tensor_like(s.as_ref(), 0, &vec![128u8; 224 * 224 * 3]);
    let o1 = s.run(std::slice::from_ref(&t)).expect("run quant");
    let o2 = s.run(std::slice::from_ref(&t)).expect("run quant again");
    assert_eq!(o1[0].info.shape, vec![1, 1000]);
    assert_eq!(o1[0].info.dtype, ElemType::U8);
    assert_eq!(o1[0].data.len(), 1000);
    assert_eq!(o1[0].data.as_bytes(), o2[0].data.as_bytes());
    assert!(o1[0].data.as_bytes().iter().any(|&v| v != o1[0].data.as_bytes()[0]), "all-equal output");

    // The detection and face models run too, with outputs of the declared sizes.
    for (name, n_in) in [(YOLO, 320 * 320 * 3), (BLAZE, 128 * 128 * 3)] {
        let mut s = load(&a, name, 0);
        let x: Vec<f32> = vec![0.5; n_in];
        let t = tensor_like(s.as_ref(), 0, bytemuck::cast_slice(&x));
        let out = s.run(&[t]).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        assert_eq!(out.len(), s.outputs().len());
        for (o, info) in out.iter().zip(s.outputs()) {
            assert_eq!(o.info.shape, info.shape);
            assert_eq!(o.data.len(), o.num_elements() * 4);
            assert!(o.data.as_slice::<f32>().iter().all(|v| v.is_finite()), "{name}: non-finite output");
        }
    }
}

#[test]
fn cat_is_a_cat() {
    let Some(a) = agent() else { return };
    let px = cat_pixels();

    let mut s = load(&a, EFF_F, 0);
    let x: Vec<f32> = px.iter().map(|&p| (p as f32 - 127.0) / 128.0).collect();
    let out = s.run(&[tensor_like(s.as_ref(), 0, bytemuck::cast_slice(&x))]).expect("run float");
    let top = argmax(out[0].data.as_slice::<f32>());
    assert!((281..=285).contains(&top), "float EfficientNet top class {top} is not a cat");

    let mut s = load(&a, EFF_Q, 0);
    let out = s.run(&[tensor_like(s.as_ref(), 0, &px)]).expect("run quant");
    let logits: Vec<f32> = out[0].data.as_bytes().iter().map(|&q| q as f32).collect();
    let top = argmax(&logits);
    assert!((281..=285).contains(&top), "quant EfficientNet top class {top} is not a cat");
}

#[test]
fn errors_do_not_break_anything() {
    let Some(a) = agent() else { return };

    // Not a model.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tflite");
    std::fs::write(&junk, (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let e = a.load(&junk, &SessionOptions::default()).err().expect("garbage must not load");
    assert_eq!(e.code, dgzoo::Code::BadModel, "{}", e.message);
    let empty = dir.path().join("empty.tflite");
    std::fs::write(&empty, b"").unwrap();
    assert!(a.load(&empty, &SessionOptions::default()).is_err());
    assert!(a.load(&dir.path().join("missing.tflite"), &SessionOptions::default()).is_err());
    // A truncated real model, and garbage behind a TFLite file identifier.
    let real = std::fs::read(model_path(BLAZE)).unwrap();
    let cut = dir.path().join("cut.tflite");
    std::fs::write(&cut, &real[..real.len() / 3]).unwrap();
    assert!(a.load(&cut, &SessionOptions::default()).is_err());
    let mut fake = vec![0x1cu8, 0, 0, 0, b'T', b'F', b'L', b'3'];
    fake.extend((0..2048u32).map(|i| (i * 31 % 256) as u8));
    let fake_p = dir.path().join("fake.tflite");
    std::fs::write(&fake_p, &fake).unwrap();
    assert!(a.load(&fake_p, &SessionOptions::default()).is_err());

    // Wrong input byte size, wrong input count; the session keeps working.
    let mut s = load(&a, EFF_Q, 0);
    let short = tensor_like(s.as_ref(), 0, &[1u8; 1000]);
    let e = s.run(&[short]).expect_err("short input must fail");
    assert_eq!(e.code, dgzoo::Code::InvalidArgument, "{}", e.message);
    assert!(s.run(&[]).is_err());
    let good = tensor_like(s.as_ref(), 0, &vec![100u8; 224 * 224 * 3]);
    let out = s.run(std::slice::from_ref(&good)).expect("session still works");
    assert_eq!(out[0].data.len(), 1000);
}

/// Running a TFLite model maps LiteRT and never ONNX Runtime (memory, start-up time). Checked
/// in a child process of this test binary, whose other tests may load any runtime.
#[test]
fn a_tflite_model_loads_only_its_runtime() {
    if agent().is_none() {
        return;
    }
    let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
    if std::env::var_os("DGZOO_CHILD_TFLITE_ONLY").is_some() {
        assert!(!maps().contains("libonnxruntime"), "ONNX Runtime mapped before any model ran");
        assert!(!maps().contains("libopenvino"), "OpenVINO mapped before any model ran");
        let zoo = dgzoo::zoo::Zoo::connect("@local", &format!("{}/demo/zoo", env!("CARGO_MANIFEST_DIR")), "").unwrap();
        // Listing a TFLite-only zoo loads only the runtimes its models name.
        let names = zoo.list_names(&dgzoo::filter::Filters::default()).unwrap();
        assert!(names.iter().any(|n| n == EFF_Q), "{names:?}");
        assert!(!maps().contains("libonnxruntime"), "listing a TFLite-only zoo mapped ONNX Runtime");
        assert!(!maps().contains("libopenvino"), "listing a TFLite-only zoo mapped OpenVINO");
        let m = zoo.load_model(EFF_Q, &serde_json::Value::Null).unwrap();
        let img = std::fs::read(format!("{ZOO}/images/cat_224.jpg")).unwrap();
        let r = dgzoo::model::predict(&m, &[dgzoo::inference::Input::Bytes(&img)]).unwrap();
        assert!(!r.results.is_empty());
        let maps = maps();
        assert!(maps.contains("libLiteRt"), "LiteRT is not mapped after a TFLite inference");
        assert!(!maps.contains("libonnxruntime"), "a TFLite inference mapped ONNX Runtime");
        assert!(!maps.contains("libopenvino"), "a TFLite inference mapped OpenVINO");
        // Asking for the whole system info loads the other runtime too.
        assert!(zoo.system_info()["Devices"].get("TFLITE/CPU").is_some());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_tflite_model_loads_only_its_runtime", "--nocapture", "--test-threads=1"])
        .env("DGZOO_CHILD_TFLITE_ONLY", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "child test failed:\n{text}");
}
