//! Local zoos: a directory scanned recursively, or a single model config file.
use crate::error::Result;
use crate::params::ModelParams;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One model of a zoo snapshot: its name (config file stem) and parameters, with
/// `ModelPath`/`LabelsPath`/`PythonFile` made absolute.
#[derive(Debug, Clone)]
pub struct ZooEntry {
    pub name: String,
    pub params: ModelParams,
    pub config_path: PathBuf,
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        // Follow directory symlinks like glob does, but never loop: only real dirs recurse.
        if ft.is_dir() {
            collect_json(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn load_entry(path: &Path, require_zoo_model: bool) -> Option<ZooEntry> {
    let mut params = ModelParams::from_file(path).ok()?;
    if require_zoo_model && !params.is_zoo_model() {
        return None;
    }
    if let Some(dir) = path.parent() {
        params.absolutize_paths(dir).ok()?;
    }
    Some(ZooEntry { name: stem(path), params, config_path: path.to_path_buf() })
}

/// Scan a directory like PySDK: every `*.json` at any depth, in sorted path order; a file is a
/// model iff it parses, has `ModelPath`, a non-empty `Checksum` and `ConfigVersion` > 0; a later
/// file with the same stem replaces an earlier one (keeping its position). Files are parsed on
/// all cores.
pub fn scan_dir(dir: &Path) -> Vec<ZooEntry> {
    let mut files = Vec::new();
    collect_json(dir, &mut files);
    files.sort();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads.max(1)).max(1);
    let parsed: Vec<Option<ZooEntry>> = std::thread::scope(|s| {
        let handles: Vec<_> = files.chunks(chunk).map(|c| s.spawn(move || c.iter().map(|p| load_entry(p, true)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut out: Vec<ZooEntry> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    for e in parsed.into_iter().flatten() {
        match pos.get(&e.name) {
            Some(&i) => out[i] = e,
            None => {
                pos.insert(e.name.clone(), out.len());
                out.push(e);
            }
        }
    }
    out
}

/// A single-file zoo: the file is loaded unconditionally (no Checksum/ConfigVersion rule).
pub fn load_file(path: &Path) -> Result<Vec<ZooEntry>> {
    let mut params = ModelParams::from_file(path)?;
    if let Some(dir) = path.parent() {
        params.absolutize_paths(dir).map_err(|e| e.context(format!("model configuration '{}'", path.display())))?;
    }
    Ok(vec![ZooEntry { name: stem(path), params, config_path: path.to_path_buf() }])
}
