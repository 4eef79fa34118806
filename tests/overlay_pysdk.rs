//! Overlays against the real PySDK 1.5.0's `image_overlay` (OpenCV backend, saved with cv2):
//! the pixels our overlay changes and the pixels PySDK's changes overlap with IoU >= 0.8, for
//! YOLOv8n detection on car_416.jpg and classification on cat_224.jpg (whose overlay is text
//! only, compared as text-line boxes since the fonts differ). Skipped (SKIP printed)
//! without the peer unless DGZOO_REQUIRE_PEER=1.
use dgzoo::inference::Input;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SHARED_ZOO: &str = concat!(env!("DGZOO_REPO"), "/../shared/zoo");

fn peer() -> Option<PathBuf> {
    let dir = std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("DGZOO_REPO")).join(".peer"));
    if dir.join("venv/bin/python").exists() {
        return Some(dir);
    }
    assert!(std::env::var("DGZOO_REQUIRE_PEER").as_deref() != Ok("1"), "PySDK peer not found at {}", dir.display());
    eprintln!("SKIP overlay_pysdk: PySDK peer not found at {}", dir.display());
    None
}

/// The model folders of the shared zoo only (its expected/ folder holds configs too).
fn clean_zoo(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        let dst = dir.path().join(m);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(Path::new(SHARED_ZOO).join(m)).unwrap().flatten() {
            std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

/// PySDK's overlay of `image` with `props`, as PNG in `out`.
fn pysdk_overlay(peer: &Path, zoo: &Path, model: &str, image: &Path, props: &Value, out: &Path) {
    let script = format!(
        "import degirum as dg, cv2, json\n\
         m = dg.connect(dg.LOCAL, {zoo:?}).load_model({model:?}, **json.loads({props:?}))\n\
         r = m({image:?})\n\
         cv2.imwrite({out:?}, r.image_overlay)\n",
        zoo = zoo.to_str().unwrap(),
        props = props.to_string(),
        image = image.to_str().unwrap(),
        out = out.to_str().unwrap(),
    );
    let o = std::process::Command::new(peer.join("venv/bin/python")).arg("-c").arg(script).env("HOME", zoo).output().expect("run PySDK");
    assert!(o.status.success(), "PySDK: {}", String::from_utf8_lossy(&o.stderr));
}

/// Pixels of `overlay` that differ from `original` (placed at the top left; pixels beyond it
/// compare against black, PySDK's fill of an extended image).
fn changed(overlay: &dgzoo::image_ops::RgbImage, original: &dgzoo::image_ops::RgbImage) -> Vec<bool> {
    let mut out = vec![false; (overlay.width * overlay.height) as usize];
    for y in 0..overlay.height {
        for x in 0..overlay.width {
            let i = ((y * overlay.width + x) * 3) as usize;
            let o = if x < original.width && y < original.height {
                let j = ((y * original.width + x) * 3) as usize;
                [original.data[j], original.data[j + 1], original.data[j + 2]]
            } else {
                [0, 0, 0]
            };
            // JPEG-free comparison (both sides are PNG / decoded pixels): any change counts.
            out[(y * overlay.width + x) as usize] = overlay.data[i..i + 3] != o;
        }
    }
    out
}

/// Text lines as boxes: each run of rows holding changed pixels becomes the rectangle from
/// its leftmost to its rightmost changed pixel (glyph shapes may differ: DejaVu Sans here,
/// OpenCV's Hershey font in PySDK; the lines' places and extents must not).
fn line_boxes(mask: &[bool], width: usize) -> Vec<bool> {
    let rows: Vec<Option<(usize, usize)>> = mask
        .chunks(width)
        .map(|r| {
            let l = r.iter().position(|&c| c)?;
            Some((l, r.iter().rposition(|&c| c).unwrap()))
        })
        .collect();
    let mut out = vec![false; mask.len()];
    let mut y = 0;
    while y < rows.len() {
        if rows[y].is_none() {
            y += 1;
            continue;
        }
        let start = y;
        let (mut l, mut r) = (usize::MAX, 0);
        while y < rows.len() {
            let Some((a, b)) = rows[y] else { break };
            l = l.min(a);
            r = r.max(b);
            y += 1;
        }
        for yy in start..y {
            out[yy * width + l..=yy * width + r].iter_mut().for_each(|c| *c = true);
        }
    }
    out
}

fn iou(a: &[bool], b: &[bool]) -> (f64, usize, usize) {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    (inter as f64 / union.max(1) as f64, a.iter().filter(|x| **x).count(), b.iter().filter(|x| **x).count())
}

fn check(model: &str, image: &str, props: Value, text_lines: bool) {
    let Some(peer) = peer() else { return };
    let zoo_dir = clean_zoo(&[model]);
    let img_path = Path::new(SHARED_ZOO).join("images").join(image);
    let theirs_path = zoo_dir.path().join("pysdk.png");
    pysdk_overlay(&peer, zoo_dir.path(), model, &img_path, &props, &theirs_path);
    let theirs = dgzoo::image_ops::decode(&std::fs::read(&theirs_path).unwrap()).unwrap();

    let zoo = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    let m = zoo.load_model(model, &props).unwrap();
    let frame = std::fs::read(&img_path).unwrap();
    let r = dgzoo::model::predict(&m, &[Input::Bytes(&frame)]).unwrap();
    assert!(!r.results.is_empty(), "{model} found nothing on {image}");
    let png = m.overlay(&frame, &r.results, dgzoo::overlay::Format::Png).unwrap();
    let ours = dgzoo::image_ops::decode(&png).unwrap();
    let original = dgzoo::image_ops::decode(&frame).unwrap();
    assert_eq!((ours.width, ours.height), (theirs.width, theirs.height), "{model}: overlay size ours vs PySDK's");
    let (mut a, mut b) = (changed(&ours, &original), changed(&theirs, &original));
    let (glyph_iou, _, _) = iou(&a, &b);
    if text_lines {
        a = line_boxes(&a, ours.width as usize);
        b = line_boxes(&b, theirs.width as usize);
    }
    let (v, n_ours, n_theirs) = iou(&a, &b);
    eprintln!("{model} on {image}: IoU {v:.3} of changed pixels (ours {n_ours}, PySDK's {n_theirs}; pixel-exact {glyph_iou:.3})");
    std::fs::write(std::env::temp_dir().join(format!("dgzoo-overlay-{model}.png")), &png).unwrap();
    assert!(v >= 0.8, "{model} on {image}: IoU {v:.3} < 0.8 (ours {n_ours} px, PySDK's {n_theirs} px)");
    if !text_lines {
        // Colours: boxes, blur and caption fills have PySDK's colours (all of them without
        // captions, the blur test: 1.000); the glyphs inside captions differ (about 22% of the
        // common pixels with captions), hence the bound.
        let both: Vec<usize> = a.iter().zip(&b).enumerate().filter(|(_, (x, y))| **x && **y).map(|(i, _)| i).collect();
        let same = both.iter().filter(|&&i| (0..3).all(|c| ours.data[i * 3 + c].abs_diff(theirs.data[i * 3 + c]) <= 8)).count();
        let frac = same as f64 / both.len().max(1) as f64;
        eprintln!("{model} on {image}: {:.3} of the common changed pixels have PySDK's colour", frac);
        let bound = if props.get("overlay_show_labels") == Some(&json!(false)) { 0.99 } else { 0.7 };
        assert!(frac >= bound, "{model} on {image}: only {frac:.3} of the common changed pixels have PySDK's colour");
    }
    // JPEG output decodes to the same size.
    let jpeg = m.overlay(&frame, &r.results, dgzoo::overlay::Format::Jpeg).unwrap();
    let j = dgzoo::image_ops::decode(&jpeg).unwrap();
    assert_eq!((j.width, j.height), (ours.width, ours.height));
}

#[test]
fn detection_overlay_matches_pysdk() {
    check("yolov8n_nudenet--320x320_float_tflite_cpu_1", "car_416.jpg", json!({}), false);
}

#[test]
fn detection_overlay_with_probabilities_and_one_colour_matches_pysdk() {
    check(
        "yolov8n_nudenet--320x320_float_tflite_cpu_1",
        "car_416.jpg",
        json!({"overlay_show_probabilities": true, "overlay_color": [0, 255, 0], "overlay_line_width": 2}),
        false,
    );
}

#[test]
fn blurred_detection_overlay_matches_pysdk() {
    check("yolov8n_nudenet--320x320_float_tflite_cpu_1", "car_416.jpg", json!({"overlay_blur": "all", "overlay_show_labels": false}), false);
}

#[test]
fn classification_overlay_matches_pysdk() {
    // Text only: compared as line boxes (see `line_boxes`).
    check("efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1", "cat_224.jpg", json!({}), true);
}
