//! Image operations against the real OpenCV that PySDK uses (cv2 from the PySDK peer venv):
//! JPEG decoding equals cv2.imread, every resize method equals cv2.resize (within the stated
//! grey levels), and JPEG encoding equals cv2.imencode(".jpg", q=95) byte for byte.
use dgzoo::image_ops::{self, ResizeMethod, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;

fn peer_python() -> Option<PathBuf> {
    let peer = std::env::var_os("DGZOO_PEER").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".peer"));
    let py = peer.join("venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    if std::env::var_os("DGZOO_REQUIRE_PEER").is_some() {
        panic!("the PySDK peer is required (DGZOO_REQUIRE_PEER) but {} is missing: run scripts/setup-peer.sh", py.display());
    }
    eprintln!("SKIP: no PySDK peer at {} (scripts/setup-peer.sh)", py.display());
    None
}

const IMAGES: [&str; 3] = ["cat_224", "car_416", "girls_256"];
/// (width, height) targets: down, up, odd ratios.
const SIZES: [(u32, u32); 5] = [(224, 224), (320, 320), (97, 131), (500, 280), (128, 128)];
const METHODS: [(&str, ResizeMethod, &str, u8); 5] = [
    ("nearest", ResizeMethod::Nearest, "INTER_NEAREST", 0),
    ("bilinear", ResizeMethod::Bilinear, "INTER_LINEAR", 0),
    ("area", ResizeMethod::Area, "INTER_AREA", 0),
    // opencv-python hands 8-bit bicubic to Intel IPP, which rounds some pixels 1 level differently.
    ("bicubic", ResizeMethod::Bicubic, "INTER_CUBIC", 1),
    ("lanczos", ResizeMethod::Lanczos, "INTER_LANCZOS4", 0),
];

fn rgb_of_bgr(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
    v
}

#[test]
fn decode_resize_and_encode_match_opencv() {
    let Some(py) = peer_python() else { return };
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo/images");
    let out = tempfile::tempdir().unwrap();
    let sizes: Vec<String> = SIZES.iter().map(|(w, h)| format!("({w},{h})")).collect();
    let methods: Vec<String> = METHODS.iter().map(|m| format!("('{}', cv2.{})", m.0, m.2)).collect();
    let script = format!(
        r#"
import cv2, sys
zoo, out = sys.argv[1], sys.argv[2]
for name in {IMAGES:?}:
    img = cv2.imread(f"{{zoo}}/{{name}}.jpg")
    open(f"{{out}}/{{name}}.bgr", "wb").write(img.tobytes())
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    open(f"{{out}}/{{name}}.q95.jpg", "wb").write(enc.tobytes())
    for (w, h) in [{sizes}]:
        for (mname, m) in [{methods}]:
            r = cv2.resize(img, (w, h), interpolation=m)
            open(f"{{out}}/{{name}}.{{w}}x{{h}}.{{mname}}.bgr", "wb").write(r.tobytes())
"#,
        sizes = sizes.join(","),
        methods = methods.join(",")
    );
    let st = Command::new(&py).arg("-c").arg(&script).arg(&zoo).arg(out.path()).status().unwrap();
    assert!(st.success(), "the OpenCV script failed");

    let mut worst_by_method = vec![0u8; METHODS.len()];
    for name in IMAGES {
        let bytes = std::fs::read(zoo.join(format!("{name}.jpg"))).unwrap();
        let img = image_ops::decode(&bytes).unwrap();
        let cv = std::fs::read(out.path().join(format!("{name}.bgr"))).unwrap();
        assert!(img.data == rgb_of_bgr(&cv), "{name}: decoded pixels differ from cv2.imread");

        let ours = image_ops::encode_jpeg(&img, 95).unwrap();
        let theirs = std::fs::read(out.path().join(format!("{name}.q95.jpg"))).unwrap();
        assert!(ours == theirs, "{name}: JPEG bytes differ from cv2.imencode (sizes {} vs {})", ours.len(), theirs.len());

        for (w, h) in SIZES {
            for (mi, (mname, m, _, _)) in METHODS.iter().enumerate() {
                let r: RgbImage = image_ops::resize(&img, w, h, *m);
                let cv = rgb_of_bgr(&std::fs::read(out.path().join(format!("{name}.{w}x{h}.{mname}.bgr"))).unwrap());
                assert_eq!(r.data.len(), cv.len(), "{name} {w}x{h} {mname}: size");
                let worst = r.data.iter().zip(&cv).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
                worst_by_method[mi] = worst_by_method[mi].max(worst);
            }
        }
    }
    for (mi, (mname, _, _, allowed)) in METHODS.iter().enumerate() {
        eprintln!("{mname}: max difference from OpenCV {} grey levels", worst_by_method[mi]);
        assert!(worst_by_method[mi] <= *allowed, "{mname}: differs from OpenCV by {} grey levels (allowed {allowed})", worst_by_method[mi]);
    }
}
