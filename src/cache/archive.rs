//! Model archives (cloud-api.md §3): a ZIP with one top-level directory `<m>/` holding
//! `<m>.json` and its files. Everything is validated before anything is written: no Zip Slip
//! (`..`, absolute paths, drive letters, backslashes), no symlinks, bounded entry count and
//! total size (counted while writing, not trusted from headers).
use crate::error::{Code, Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Limits applied while extracting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 10_000, max_total_bytes: 8 << 30 }
    }
}

fn bad(archive: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(Code::BadModel, format!("Unsafe or invalid model archive '{}': {msg}", archive.display()))
}

/// Is `name` usable as one path segment (model, org or zoo name)? Not empty, not `.`/`..`, no
/// separators, drive colons, control characters, no leading dot (reserved for our temp files).
pub fn is_safe_segment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.chars().any(|c| matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control())
}

/// Check `name` as a model name; the error says why the name is refused.
pub fn check_model_name(name: &str) -> Result<()> {
    if is_safe_segment(name) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Model name '{}' is not a valid file name (it must be one path segment without '/', '\\\\', ':' or a leading '.')",
            name.escape_default()
        )))
    }
}

/// The relative path (inside `<m>/`) an entry would be written to, or why it is refused.
/// Directory entries (trailing `/`) return their path with `is_dir`.
fn entry_path(raw: &[u8], model: &str) -> std::result::Result<(PathBuf, bool), String> {
    let name = std::str::from_utf8(raw).map_err(|_| "entry name is not UTF-8".to_string())?;
    if name.contains('\\') || name.contains('\0') {
        return Err(format!("entry '{}' contains a backslash or NUL", name.escape_default()));
    }
    if name.starts_with('/') || (name.len() >= 2 && name.as_bytes()[1] == b':') {
        return Err(format!("entry '{name}' is an absolute path"));
    }
    let is_dir = name.ends_with('/');
    let parts: Vec<&str> = name.trim_end_matches('/').split('/').collect();
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." || p.contains(':') {
            return Err(format!("entry '{name}' has an unsafe path component '{p}'"));
        }
    }
    if parts[0] != model {
        return Err(format!("entry '{name}' is outside the model directory '{model}/'"));
    }
    Ok((parts[1..].iter().collect(), is_dir))
}

/// Why an archive must not be served or extracted as model `model`, from its central
/// directory alone: an entry that escapes `<model>/` (`..`, `.`, empty components, absolute
/// paths, drive letters, backslashes, another top directory) or is a symbolic link.
pub fn unsafe_entry<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, model: &str) -> Option<String> {
    for i in 0..zip.len() {
        let e = match zip.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => return Some(e.to_string()),
        };
        if let Err(m) = entry_path(e.name_raw(), model) {
            return Some(m);
        }
        if e.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Some(format!("entry '{}' is a symbolic link", e.name()));
        }
    }
    None
}

/// An I/O error while writing `path`; a full disk says so (not "invalid archive").
fn write_err(archive: &Path, path: &Path, rel: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(28) {
        Error::io(format!("Cannot write '{}': no space left on device", path.display()))
    } else {
        bad(archive, format!("cannot write '{}': {e}", rel.display()))
    }
}

/// Checks an archive's model before anything is extracted, reading it from the archive:
/// `<model>/<model>.json`'s `Checksum` is `expected` (when given), and when the checksum is a
/// SHA-256, the `ModelPath` entry's bytes hash to it (streamed, at most
/// `limits.max_total_bytes`). A bad or oversized archive then costs no disk space. Missing
/// members are left to [`extract_model`] and the checks after it.
pub fn precheck_model(archive: &Path, model: &str, expected: Option<&str>, limits: Limits) -> Result<()> {
    let f = std::fs::File::open(archive).map_err(|e| Error::io(format!("Cannot open model archive '{}': {e}", archive.display())))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| bad(archive, format!("not a ZIP archive: {e}")))?;
    let Some(idx) = zip.index_for_name(&format!("{model}/{model}.json")) else { return Ok(()) };
    let mut text = String::new();
    zip.by_index(idx).map_err(|e| bad(archive, e))?.take(64 << 20).read_to_string(&mut text).map_err(|e| bad(archive, e))?;
    let Ok(params) = crate::params::ModelParams::parse(&text) else { return Ok(()) };
    let have = params.str("Checksum", 0);
    if let Some(want) = expected {
        if have != want {
            return Err(Error::bad_model(format!(
                "Cloud model '{model}': the downloaded archive has checksum '{have}' but the zoo announced '{want}' (the model changed during the download?)"
            )));
        }
    }
    let want = have.to_ascii_lowercase();
    let rel = params.str("ModelPath", 0);
    if rel.is_empty() || want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) || !crate::settings::Settings::process().verify_checksums() {
        return Ok(());
    }
    let Some(bin) = zip.index_for_name(&format!("{model}/{rel}")) else { return Ok(()) };
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut entry = zip.by_index(bin).map_err(|e| bad(archive, e))?;
    let n = std::io::copy(&mut (&mut entry).take(limits.max_total_bytes.saturating_add(1)), &mut h)
        .map_err(|e| bad(archive, format!("entry '{model}/{rel}': {e}")))?;
    if n > limits.max_total_bytes {
        return Err(bad(archive, format!("uncompressed size exceeds the limit of {} bytes", limits.max_total_bytes)));
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != want {
        return Err(Error::bad_model(format!("Cloud model '{model}': SHA-256 of '{rel}' is {got}, its configuration says {want} (corrupt download?)")));
    }
    Ok(())
}

/// Validate the archive and extract the contents of its `<model>/` directory into `dest`
/// (created; must not exist). Returns the number of bytes written.
pub fn extract_model(archive: &Path, model: &str, dest: &Path, limits: Limits) -> Result<u64> {
    check_model_name(model)?;
    let f = std::fs::File::open(archive).map_err(|e| Error::io(format!("Cannot open model archive '{}': {e}", archive.display())))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| bad(archive, format!("not a ZIP archive: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(bad(archive, format!("{} entries (limit {})", zip.len(), limits.max_entries)));
    }
    let json_name = format!("{model}.json");
    let mut plan = Vec::with_capacity(zip.len());
    let mut declared = 0u64;
    let mut has_json = false;
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i).map_err(|e| bad(archive, e))?;
        let (rel, is_dir) = entry_path(e.name_raw(), model).map_err(|m| bad(archive, m))?;
        if e.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(bad(archive, format!("entry '{}' is a symbolic link", e.name())));
        }
        let is_dir = is_dir || e.is_dir();
        if !is_dir && rel.as_os_str().is_empty() {
            return Err(bad(archive, format!("entry '{}' is not a file", e.name())));
        }
        declared = declared.saturating_add(e.size());
        if declared > limits.max_total_bytes {
            return Err(bad(archive, format!("uncompressed size exceeds the limit of {} bytes", limits.max_total_bytes)));
        }
        has_json |= !is_dir && rel == Path::new(&json_name);
        plan.push((i, rel, is_dir));
    }
    if !has_json {
        return Err(bad(archive, format!("it has no '{model}/{json_name}'")));
    }
    std::fs::create_dir(dest).map_err(|e| Error::io(format!("Cannot create '{}': {e}", dest.display())))?;
    let mut written = 0u64;
    for (i, rel, is_dir) in plan {
        let target = dest.join(&rel);
        if is_dir {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(format!("Cannot create '{}': {e}", target.display())))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("Cannot create '{}': {e}", parent.display())))?;
        }
        let mut entry = zip.by_index(i).map_err(|e| bad(archive, e))?;
        // create_new: a duplicate entry is an error, and nothing pre-existing is followed.
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map_err(|e| write_err(archive, &target, &rel, e))?;
        let budget = limits.max_total_bytes - written;
        let mut limited = (&mut entry).take(budget.saturating_add(1));
        let n = copy(&mut limited, &mut out).map_err(|e| {
            if e.raw_os_error() == Some(28) {
                write_err(archive, &target, &rel, e)
            } else {
                bad(archive, format!("entry '{}': {e}", rel.display()))
            }
        })?;
        written += n;
        if written > limits.max_total_bytes {
            return Err(bad(archive, format!("uncompressed size exceeds the limit of {} bytes", limits.max_total_bytes)));
        }
    }
    Ok(written)
}

fn copy(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<u64> {
    std::io::copy(r, w)
}

/// Pack a model directory (`<dir>/<m>.json` + files) as `<m>/...` into a new ZIP at `out`.
/// Used by `dgzoo hub pack` and the tests.
pub fn pack_model(dir: &Path, out: &Path) -> Result<String> {
    let model = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::invalid(format!("'{}' has no directory name", dir.display())))?.to_string();
    check_model_name(&model)?;
    if !dir.join(format!("{model}.json")).is_file() {
        return Err(Error::invalid(format!("'{}' has no '{model}.json'", dir.display())));
    }
    let io = |e: std::io::Error| Error::io(format!("Cannot pack '{}' into '{}': {e}", dir.display(), out.display()));
    let f = std::fs::File::create(out).map_err(io)?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    let mut files = Vec::new();
    collect_files(dir, Path::new(""), &mut files).map_err(io)?;
    files.sort();
    for rel in files {
        let name = format!("{model}/{}", rel.to_string_lossy().replace('\\', "/"));
        zw.start_file(name, opts).map_err(|e| Error::io(e.to_string()))?;
        let mut src = std::fs::File::open(dir.join(&rel)).map_err(io)?;
        std::io::copy(&mut src, &mut zw).map_err(io)?;
    }
    zw.finish().map_err(|e| Error::io(e.to_string()))?.flush().map_err(io)?;
    Ok(model)
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let ft = e.file_type()?;
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            collect_files(root, &r, out)?;
        } else if ft.is_file() {
            out.push(r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn entry_paths() {
        assert_eq!(entry_path(b"m/m.json", "m").unwrap(), (PathBuf::from("m.json"), false));
        assert_eq!(entry_path(b"m/", "m").unwrap(), (PathBuf::new(), true));
        for evil in ["../x", "m/../../x", "/etc/passwd", "C:/x", "m\\..\\x", "m/./x", "m//x", "x/m.json", "m/..././x/../.."] {
            assert!(entry_path(evil.as_bytes(), "m").is_err(), "{evil}");
        }
    }
    #[test]
    fn segments() {
        for ok in ["yolov8n_nudenet--320x320_float_onnx_cpu_1", "a b", "m.1"] {
            assert!(is_safe_segment(ok), "{ok}");
        }
        for no in ["", ".", "..", "a/b", "a\\b", "c:", ".hidden", "a\nb"] {
            assert!(!is_safe_segment(no), "{no}");
        }
    }
}
