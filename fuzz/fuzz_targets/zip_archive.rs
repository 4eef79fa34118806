//! Model archive extraction: the fuzzer's bytes as a downloaded archive, checked and
//! extracted into a fresh temp dir with small limits; whatever is written stays inside it
//! and within the byte limit.
#![no_main]
use dgzoo::cache::archive::{self, Limits};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// The model name the seeds' archives hold (scripts/fuzz-seeds.sh packs real zoo models).
const MODELS: [&str; 3] = ["m", "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1", "blazeface_short_range--128x128_float_tflite_cpu_1"];
const LIMITS: Limits = Limits { max_entries: 64, max_total_bytes: 8 << 20 };

/// Bytes under `dir` (no symlink followed), and that nothing but files and dirs is there.
fn tree_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let t = e.file_type().expect("file type");
        assert!(!t.is_symlink(), "extraction created a symlink {}", e.path().display());
        if t.is_dir() {
            n += tree_bytes(&e.path());
        } else {
            n += e.metadata().expect("metadata").len();
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("temp dir");
    let zip = tmp.path().join("model.zip");
    std::fs::write(&zip, data).expect("write archive");
    let model = MODELS.iter().copied().find(|m| data.windows(m.len() + 1).any(|w| w.starts_with(m.as_bytes()) && w[m.len()] == b'/')).unwrap_or("m");
    let _ = archive::precheck_model(&zip, model, None, LIMITS);
    let dest = tmp.path().join("out").join(model);
    std::fs::create_dir(tmp.path().join("out")).expect("out dir");
    let r = archive::extract_model(&zip, model, &dest, LIMITS);
    let out = tmp.path().join("out");
    let written = tree_bytes(&out);
    assert!(written <= LIMITS.max_total_bytes + 1, "extraction wrote {written} bytes, limit {}", LIMITS.max_total_bytes);
    // Only `out/<model>` may exist: nothing escaped beside it or above it.
    for e in std::fs::read_dir(&out).expect("read out") {
        assert_eq!(e.expect("entry").file_name(), model, "extraction wrote outside the model directory");
    }
    for e in std::fs::read_dir(tmp.path()).expect("read tmp") {
        let name = e.expect("entry").file_name();
        assert!(name == "out" || name == "model.zip", "extraction wrote {name:?} beside the archive");
    }
    if let Ok(n) = r {
        assert!(dest.join(format!("{model}.json")).is_file());
        assert!(n <= LIMITS.max_total_bytes);
    }
});
