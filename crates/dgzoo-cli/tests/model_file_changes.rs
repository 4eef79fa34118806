//! A model file changed on disk while it is loaded (issue #14): truncated in place, overwritten
//! in place with other bytes, and replaced by rename. The AI server holding it (its own
//! process, so a crash shows as a dead server) keeps answering every frame: with the result
//! it gave before or a clear error, never a crash; the next load sees the new file.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::protocol::{self, read_packet, write_packet};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TFLITE: &str = "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1";
const TFLITE_F: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";
const ONNX: &str = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";

/// Real copies (not links) of the model folders: the test changes them.
fn copied_zoo(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        let dst = dir.path().join(m);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(Path::new(SHARED_ZOO).join(m)).unwrap().flatten() {
            std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

fn model_file(zoo: &Path, m: &str) -> PathBuf {
    let ext = if m.contains("_onnx_") { "onnx" } else { "tflite" };
    zoo.join(m).join(format!("{m}.{ext}"))
}

fn start(zoo: &Path) -> DgzooServer {
    DgzooServer::spawn(zoo).protocol("asio").args(&["--quiet"]).start()
}

fn open_stream(port: u16, m: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write_packet(&mut s, json!({"VERSION": 4, "op": "stream", "name": m, "config": {}}).to_string().as_bytes()).unwrap();
    s
}

/// One frame on `s`: the results, or the error text; `None` when the connection died.
fn frame(s: &mut TcpStream, jpeg: &[u8]) -> Option<Result<Value, String>> {
    write_packet(s, jpeg).ok()?;
    let p = read_packet(s, 1 << 26).ok()??;
    Some(protocol::decode_results(&p).ok()?.map(|(v, _)| serde_json::to_value(v).unwrap()))
}

/// Frames on the open stream and on a new one after a change: each is the old result or an
/// error that says what is wrong; the server stays up.
fn check_after(server: &mut DgzooServer, old: &mut TcpStream, m: &str, want: &Value, what: &str) -> (usize, Vec<String>) {
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let (mut same, mut errors) = (0, Vec::new());
    let mut new = open_stream(server.port, m);
    for s in [old, &mut new] {
        for _ in 0..3 {
            match frame(s, &jpeg) {
                Some(Ok(v)) => {
                    assert_eq!(&v, want, "{m} {what}: a frame gave another result");
                    same += 1;
                }
                Some(Err(e)) => errors.push(e),
                None => {
                    assert!(server.alive(), "{m} {what}: the server died");
                    errors.push("connection closed".into());
                    break;
                }
            }
        }
    }
    assert!(server.alive(), "{m} {what}: the server died");
    (same, errors)
}

#[test]
fn a_model_file_changed_while_loaded_never_crashes_the_server() {
    let zoo = copied_zoo(&[TFLITE, ONNX]);
    let mut server = start(zoo.path());
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    for m in [TFLITE, ONNX] {
        let file = model_file(zoo.path(), m);
        let original = std::fs::read(&file).unwrap();
        let mut s = open_stream(server.port, m);
        let want = frame(&mut s, &jpeg).unwrap().unwrap();
        // Truncated in place to half its size.
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(original.len() as u64 / 2).unwrap();
        let (same, errors) = check_after(&mut server, &mut s, m, &want, "truncated in place");
        eprintln!("{m}, truncated in place: {same} frames as before, errors {errors:?}");
        // Overwritten in place with other bytes of the original length.
        let mut junk = original.clone();
        for (i, b) in junk.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ 0xA5;
        }
        std::fs::write(&file, &junk).unwrap();
        let (same, errors) = check_after(&mut server, &mut s, m, &want, "overwritten in place");
        eprintln!("{m}, overwritten in place: {same} frames as before, errors {errors:?}");
        // Restored by rename (a new file): the next load works again.
        let tmp = file.with_extension("new");
        std::fs::write(&tmp, &original).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let mut s2 = open_stream(server.port, m);
        assert_eq!(frame(&mut s2, &jpeg).unwrap().as_ref(), Ok(&want), "{m}: restored");
    }
    assert!(server.alive());
}

/// In-process: a loaded model keeps its results when its file is replaced; a new load of the
/// same name sees the new file (here the quantized model's bytes under the float model's
/// name: other scores).
#[test]
fn the_next_load_sees_the_new_file() {
    let zoo = copied_zoo(&[TFLITE_F]);
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let predict = |m: &dgzoo::model::Model| serde_json::to_value(dgzoo::model::predict(m, &[dgzoo::inference::Input::Bytes(&jpeg)]).unwrap().results).unwrap();
    let local = dgzoo::zoo::Zoo::connect("@local", zoo.path().to_str().unwrap(), "").unwrap();
    let loaded = local.load_model(TFLITE_F, &Value::Null).unwrap();
    let before = predict(&loaded);
    // The quantized model under the float model's name (its config too, checksum included).
    let dir = zoo.path().join(TFLITE_F);
    let src = Path::new(SHARED_ZOO).join(TFLITE);
    let cfg: String = std::fs::read_to_string(src.join(format!("{TFLITE}.json"))).unwrap().replace(TFLITE, TFLITE_F);
    for (from, to) in
        [(src.join(format!("{TFLITE}.tflite")), dir.join(format!("{TFLITE_F}.tflite"))), (src.join("labels_ImageNet.json"), dir.join("labels_ImageNet.json"))]
    {
        std::fs::copy(&from, to.with_extension("tmp")).unwrap();
        std::fs::rename(to.with_extension("tmp"), &to).unwrap();
    }
    std::fs::write(dir.join("cfg.tmp"), cfg).unwrap();
    std::fs::rename(dir.join("cfg.tmp"), dir.join(format!("{TFLITE_F}.json"))).unwrap();
    assert_eq!(predict(&loaded), before, "the loaded model changed its results");
    let again = dgzoo::zoo::Zoo::connect("@local", zoo.path().to_str().unwrap(), "").unwrap().load_model(TFLITE_F, &Value::Null).unwrap();
    let after = predict(&again);
    assert_ne!(after, before, "the new load did not see the new file");
    assert_eq!(after[0]["label"], before[0]["label"], "same top class, other scores: {after} vs {before}");
}
