//! `dgzoo predict DIR|FILE... [--overlay OUT]`: every image of a folder through the pipelined
//! path, one JSON line each in order, a bad file reported by name without stopping the run, a
//! summary, and overlays at each image's size.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");
const MODEL: &str = "yolov8n_nudenet--320x320_float_tflite_cpu_1";

#[test]
fn predict_a_folder_with_a_bad_file_and_overlays() {
    let zoo = clean_zoo();
    let dir = tempfile::tempdir().unwrap();
    for i in IMAGES {
        std::fs::copy(image(i), dir.path().join(i)).unwrap();
    }
    std::fs::write(dir.path().join("broken.jpg"), b"not an image").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"skipped: not an image extension").unwrap();
    let out_dir = dir.path().join("overlays");
    let out = Command::new(BIN)
        .args(["predict", "--zoo", zoo.path().to_str().unwrap(), "--model", MODEL, "--json", "--overlay", out_dir.to_str().unwrap()])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Sorted by name: broken.jpg fails, the three images come back in order.
    let names: Vec<String> =
        lines.iter().map(|l| std::path::Path::new(l["image"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["car_416.jpg", "cat_224.jpg", "girls_256.jpg"], "{stdout}");
    for (l, img) in lines.iter().zip(["car_416.jpg", "cat_224.jpg", "girls_256.jpg"]) {
        compare(l["results"].as_array().unwrap(), &golden(MODEL, img), img).unwrap();
        let drawn = dgzoo::image_ops::decode(&std::fs::read(out_dir.join(img)).unwrap()).unwrap();
        let orig = dgzoo::image_ops::decode(&std::fs::read(image(img)).unwrap()).unwrap();
        assert_eq!((drawn.width, drawn.height), (orig.width, orig.height), "{img}");
    }
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    assert!(stderr.contains("3 frames, 1 errors"), "{stderr}");
    assert!(!out_dir.join("broken.jpg").exists());

    // One image: --overlay names the file, PNG by its extension.
    let png = dir.path().join("one.png");
    let out = Command::new(BIN)
        .args(["predict", "--zoo", zoo.path().to_str().unwrap(), "--model", MODEL, "--overlay", png.to_str().unwrap()])
        .arg(image("girls_256.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}
