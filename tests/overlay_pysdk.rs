//! Overlays against the real PySDK 1.5.0's `image_overlay` (OpenCV backend, saved with cv2):
//! the pixels our overlay changes and the pixels PySDK's changes overlap with IoU >= 0.8, for
//! YOLOv8n detection on car_416.jpg and classification on cat_224.jpg (whose overlay is text
//! only, compared as text-line boxes since the fonts differ); oriented boxes, pose with
//! connections and hand landmarks on the generated family zoo (`$DGZOO_FAMILY_ZOO`, made by
//! `scripts/make-test-zoo.sh`); instance masks (run-length, model-input coordinates, as
//! DeGirum's AI server sends them) and semantic class maps given to PySDK's own result classes
//! and to ours on a letterboxed frame. Skipped (SKIP printed) without the peer or the family
//! zoo unless DGZOO_REQUIRE_PEER=1.
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

fn family_zoo() -> Option<PathBuf> {
    let dir = std::env::var_os("DGZOO_FAMILY_ZOO").map(PathBuf::from).filter(|d| d.join("README.md").exists());
    if dir.is_none() {
        assert!(std::env::var("DGZOO_REQUIRE_PEER").as_deref() != Ok("1"), "DGZOO_FAMILY_ZOO is not a family zoo (scripts/make-test-zoo.sh)");
        eprintln!("SKIP overlay_pysdk: DGZOO_FAMILY_ZOO not set");
    }
    dir
}

/// The model folders of a zoo only (its expected/ folder holds configs too).
fn clean_zoo(root: &Path, models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        let dst = dir.path().join(m);
        std::fs::create_dir(&dst).unwrap();
        for f in std::fs::read_dir(root.join(m)).unwrap().flatten() {
            std::os::unix::fs::symlink(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

/// PySDK's overlay of `image` with `props`, as PNG in `out`. With `synth`, PySDK's result
/// object is built from those raw results (model-input coordinates, as its core or an AI
/// server hands them over; a list `data` becomes a uint8 ndarray) instead of the model's.
fn pysdk_overlay(peer: &Path, zoo: &Path, model: &str, image: &Path, props: &Value, synth: Option<&Value>, out: &Path) {
    let script = format!(
        "import degirum as dg, cv2, json, numpy as np\n\
         m = dg.connect(dg.LOCAL, {zoo:?}).load_model({model:?}, **json.loads({props:?}))\n\
         synth = json.loads({synth:?})\n\
         if synth is not None:\n\
         \x20   for e in synth:\n\
         \x20       if isinstance(e.get('data'), list): e['data'] = np.array(e['data'], dtype=np.uint8)\n\
         \x20   make = m._create_postprocessor\n\
         \x20   m._create_postprocessor = lambda res, info: make(synth, info)\n\
         r = m({image:?})\n\
         cv2.imwrite({out:?}, r.image_overlay)\n",
        zoo = zoo.to_str().unwrap(),
        props = props.to_string(),
        synth = synth.cloned().unwrap_or(Value::Null).to_string(),
        image = image.to_str().unwrap(),
        out = out.to_str().unwrap(),
    );
    let o = std::process::Command::new(peer.join("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .env("HOME", zoo)
        .env("LD_LIBRARY_PATH", peer.join("ort"))
        .output()
        .expect("run PySDK");
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
    check_in(Path::new(SHARED_ZOO), model, &Path::new(SHARED_ZOO).join("images").join(image), props, None, text_lines, 0.7);
}

/// One family zoo model on one shared image, both sides drawing their own results.
fn check_family(model: &str, image: &str, colour_bound: f64) {
    let Some(root) = family_zoo() else { return };
    check_in(&root, model, &Path::new(SHARED_ZOO).join("images").join(image), json!({}), None, false, colour_bound);
}

/// `synth`: (PySDK's raw results, ours for the same frame) instead of each side's prediction.
fn check_in(root: &Path, model: &str, img_path: &Path, props: Value, synth: Option<(Value, Vec<Value>)>, text_lines: bool, colour_bound: f64) {
    let Some(peer) = peer() else { return };
    let image = img_path.file_name().unwrap().to_string_lossy().into_owned();
    let zoo_dir = clean_zoo(root, &[model]);
    let theirs_path = zoo_dir.path().join("pysdk.png");
    pysdk_overlay(&peer, zoo_dir.path(), model, img_path, &props, synth.as_ref().map(|s| &s.0), &theirs_path);
    let theirs = dgzoo::image_ops::decode(&std::fs::read(&theirs_path).unwrap()).unwrap();

    let zoo = Zoo::connect("@local", zoo_dir.path().to_str().unwrap(), "").unwrap();
    let m = zoo.load_model(model, &props).unwrap();
    let frame = std::fs::read(img_path).unwrap();
    let (results, tensors) = match synth {
        Some((_, ours)) => (ours, Vec::new()),
        None => {
            let r = dgzoo::model::predict(&m, &[Input::Bytes(&frame)]).unwrap();
            (r.results, r.tensors)
        }
    };
    assert!(!results.is_empty(), "{model} found nothing on {image}");
    let png = m.overlay(&frame, &results, &tensors, dgzoo::overlay::Format::Png).unwrap();
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
        let bound = if props.get("overlay_show_labels") == Some(&json!(false)) { 0.99 } else { colour_bound };
        assert!(frac >= bound, "{model} on {image}: only {frac:.3} of the common changed pixels have PySDK's colour");
    }
    // JPEG output decodes to the same size.
    let jpeg = m.overlay(&frame, &results, &tensors, dgzoo::overlay::Format::Jpeg).unwrap();
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

#[test]
fn oriented_box_overlay_matches_pysdk() {
    check_family("yolov8_obb_heads--64x64_float_onnx_cpu_1", "car_416.jpg", 0.7);
}

#[test]
fn pose_overlay_with_connections_matches_pysdk() {
    check_family("yolov8_pose--64x64_float_onnx_cpu_1", "girls_256.jpg", 0.7);
}

#[test]
fn hand_landmark_overlay_matches_pysdk() {
    // Every landmark carries a label caption: glyphs differ, hence the lower colour bound.
    check_family("hand_landmarks--64x64_float_onnx_cpu_1", "girls_256.jpg", 0.5);
}

/// car_416.jpg cropped to 416x300 (PNG): a frame the 64x64 models letterbox with padding.
fn letterboxed_frame(dir: &Path) -> PathBuf {
    let img = dgzoo::image_ops::decode(&std::fs::read(Path::new(SHARED_ZOO).join("images/car_416.jpg")).unwrap()).unwrap();
    let cropped = dgzoo::image_ops::RgbImage { width: 416, height: 300, data: img.data[..416 * 300 * 3].to_vec() };
    let path = dir.join("car_416x300.png");
    std::fs::write(&path, dgzoo::overlay::encode(&cropped, dgzoo::overlay::Format::Png).unwrap()).unwrap();
    path
}

/// Run-length encoding of the wire: base64 of u32 LE values, then their run lengths.
fn rle(bits: &[bool]) -> String {
    use base64::Engine as _;
    let (mut vals, mut runs) = (Vec::<u32>::new(), Vec::<u32>::new());
    for &b in bits {
        match (vals.last(), runs.last_mut()) {
            (Some(&v), Some(r)) if v == b as u32 => *r += 1,
            _ => {
                vals.push(b as u32);
                runs.push(1);
            }
        }
    }
    let bytes: Vec<u8> = vals.iter().chain(&runs).flat_map(|w| w.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Instance masks as dgzoo's local inference returns them (float masks in the result's
/// tensors), drawn next to PySDK's overlay of its own prediction.
#[test]
fn predicted_instance_mask_overlay_matches_pysdk() {
    check_family("yolov8_seg_heads--64x64_float_onnx_cpu_1", "car_416.jpg", 0.6);
}

#[test]
fn instance_mask_overlay_matches_pysdk() {
    let Some(root) = family_zoo() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let frame = letterboxed_frame(tmp.path());
    // A box-cropped mask (an ellipse in its box) and a whole-input mask (a rectangle), in
    // 64x64 model-input coordinates, as SegmentationYoloV8 results travel from an AI server.
    let (bx, by, bw, bh) = (8i64, 14i64, 24usize, 18usize);
    let ellipse: Vec<bool> = (0..bw * bh)
        .map(|i| {
            let (x, y) = ((i % bw) as f64 + 0.5 - bw as f64 / 2.0, (i / bw) as f64 + 0.5 - bh as f64 / 2.0);
            (x / (bw as f64 / 2.0)).powi(2) + (y / (bh as f64 / 2.0)).powi(2) <= 1.0
        })
        .collect();
    let rect: Vec<bool> = (0..64 * 64).map(|i| (36..58).contains(&(i % 64)) && (20..44).contains(&(i / 64))).collect();
    let wire = json!([
        {"bbox": [bx, by, bx + bw as i64, by + bh as i64], "category_id": 1, "label": "bee", "score": 0.9,
         "mask": {"x_min": bx, "y_min": by, "width": bw, "height": bh, "data": rle(&ellipse)}},
        {"bbox": [36, 20, 58, 44], "category_id": 3, "label": "dog", "score": 0.8, "mask": {"data": rle(&rect)}},
    ]);
    // Ours: what dgzoo's AI-server client hands over (boxes in image coordinates, masks as sent).
    let img = dgzoo::image_ops::decode(&std::fs::read(&frame).unwrap()).unwrap();
    let fit = dgzoo::image_ops::fit(&img, 64, 64, dgzoo::image_ops::PadMethod::Letterbox, 1.0, dgzoo::image_ops::ResizeMethod::Bilinear, [0, 0, 0]).unwrap();
    let ours: Vec<Value> = wire
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let b: Vec<f64> = r["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let (p, q) = (fit.converter.to_original(b[0], b[1]), fit.converter.to_original(b[2], b[3]));
            let mut r = r.clone();
            r["bbox"] = json!([p.0, p.1, q.0, q.1]);
            r
        })
        .collect();
    check_in(&root, "yolov8_dfl_heads--64x64_float_onnx_cpu_1", &frame, json!({}), Some((wire, ours)), false, 0.6);
}

#[test]
fn semantic_segmentation_overlay_matches_pysdk() {
    let Some(root) = family_zoo() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let frame = letterboxed_frame(tmp.path());
    // A 64x64 class map (model-input size) of five classes in bands and blocks.
    let map: Vec<Vec<u8>> = (0..64).map(|y| (0..64).map(|x| ((x / 13 + y / 17) % 5) as u8).collect()).collect();
    let synth = json!([{"data": map}]);
    check_in(&root, "semantic_seg--64x64_float_onnx_cpu_1", &frame, json!({}), Some((synth.clone(), synth.as_array().unwrap().clone())), false, 0.9);
}
