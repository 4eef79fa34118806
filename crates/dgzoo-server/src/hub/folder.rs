//! Model folders (#13): a model stored as `<org>/<zoo>/<m>/` holding `<m>.json` and the files it
//! references (a local zoo's layout, `download-zoo`'s output) is served as the same ZIP an
//! archive model is (cloud-api.md §3: one top-level `<m>/` folder).
//!
//! The ZIP is built once per folder version ([`fingerprint`] of the files' names, sizes and
//! tags: mtimes on disk, ETags in S3) into a hub-owned scratch directory (never the zoo root,
//! which may be read-only): written to a temporary file and renamed into place under a per-model
//! lock (concurrent requests wait for one build), older builds of the model removed. The build is
//! deterministic (sorted entries, fixed timestamps and modes, stored), so its `ETag` (the
//! fingerprint) stays valid across restarts and replicas and a `Range` download resumes.
use super::store::{ModelKey, Storage, Version};
use dgzoo::cache::archive::Limits;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One file of a model folder, as its storage lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderFile {
    /// Relative to the folder, `/`-separated, every component an `is_safe_segment`.
    pub name: String,
    pub len: u64,
    /// What changes when the file does (mtime on disk, ETag in S3).
    pub tag: String,
}

/// A folder's version: a hash of its sorted files' names, sizes and tags.
pub fn fingerprint(files: &[FolderFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        // NUL-separated: names cannot hold NUL, so no two file lists hash alike by concatenation.
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(f.len.to_le_bytes());
        h.update(f.tag.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Sorted by name, the folder's own `<m>.json` present, and within the archive limits; else why not.
fn check(model: &str, files: &mut [FolderFile], limits: Limits) -> std::io::Result<bool> {
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let json = format!("{model}.json");
    if !files.iter().any(|f| f.name == json) {
        return Ok(false);
    }
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if files.len() > limits.max_entries {
        return Err(bad(format!("model folder {model} has {} files (limit {})", files.len(), limits.max_entries)));
    }
    let total = files.iter().fold(0u64, |t, f| t.saturating_add(f.len));
    if total > limits.max_total_bytes {
        return Err(bad(format!("model folder {model} holds {total} bytes (limit {})", limits.max_total_bytes)));
    }
    Ok(true)
}

/// The built archive of one folder version.
pub struct Built {
    pub path: PathBuf,
    pub version: Version,
}

/// The hub's builds of folder models.
#[derive(Default)]
pub struct Folders {
    scratch: OnceLock<Result<tempfile::TempDir, String>>,
    /// One lock per model: a second request for a version being built waits for it.
    locks: Mutex<HashMap<ModelKey, Arc<Mutex<()>>>>,
}

/// How often a build is retried when the folder changes while it is packed.
const ATTEMPTS: usize = 3;

impl Folders {
    fn scratch(&self) -> std::io::Result<&Path> {
        let dir = self.scratch.get_or_init(|| {
            tempfile::Builder::new().prefix("dgzoo-hub-folders-").tempdir().map_err(|e| format!("Cannot make the hub's folder-archive directory: {e}"))
        });
        dir.as_ref().map(|d| d.path()).map_err(|e| std::io::Error::other(e.clone()))
    }

    /// The archive of folder model `org/zoo/model` at its current version (built now if it is
    /// new); `None` when there is no such folder or it has no `<m>.json`.
    pub fn built(&self, storage: &dyn Storage, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Built>> {
        let limits = Limits::default();
        let key = (org.to_string(), zoo.to_string(), model.to_string());
        let lock = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default().clone();
        let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.scratch()?.join(org).join(zoo).join(model);
        for _ in 0..ATTEMPTS {
            let Some(mut files) = storage.folder_files(org, zoo, model)? else { return Ok(None) };
            if !check(model, &mut files, limits)? {
                return Ok(None);
            }
            let fp = fingerprint(&files);
            let path = dir.join(format!("{fp}.zip"));
            if !path.is_file() {
                std::fs::create_dir_all(&dir)?;
                let tmp = tempfile::Builder::new().prefix(".build-").tempfile_in(&dir)?;
                match pack(storage, org, zoo, model, &files, tmp.as_file()) {
                    Ok(()) => {}
                    // A file that changed length while it was read: list again.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => continue,
                    Err(e) => return Err(e),
                }
                // Changed while packed (same length, new mtime): the bytes may not be this version's.
                let mut now = storage.folder_files(org, zoo, model)?.unwrap_or_default();
                now.sort_by(|a, b| a.name.cmp(&b.name));
                if fingerprint(&now) != fp {
                    continue;
                }
                tmp.persist(&path).map_err(|e| e.error)?;
                remove_older(&dir, &path);
            }
            let meta = std::fs::metadata(&path)?;
            return Ok(Some(Built { version: Version { len: meta.len(), etag: format!("\"{fp}\""), modified: meta.modified().ok() }, path }));
        }
        Err(std::io::Error::other(format!("model folder {model} keeps changing while it is packed")))
    }
}

/// Every other build of the model: a newer version exists now.
fn remove_older(dir: &Path, keep: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p != keep && p.extension().is_some_and(|x| x == "zip") {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Write the folder's files as `<model>/<name>` entries, in the given (sorted) order, with fixed
/// timestamps and modes and no compression (model binaries barely compress; stored keeps
/// builds fast). A file shorter or longer than listed is `UnexpectedEof`.
fn pack(storage: &dyn Storage, org: &str, zoo: &str, model: &str, files: &[FolderFile], out: &std::fs::File) -> std::io::Result<()> {
    use zip::write::SimpleFileOptions;
    let zerr = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(out));
    let base =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).last_modified_time(zip::DateTime::default()).unix_permissions(0o755);
    zw.add_directory(format!("{model}/"), base).map_err(zerr)?;
    for f in files {
        let opts = base.unix_permissions(0o644).large_file(f.len >= u32::MAX as u64);
        zw.start_file(format!("{model}/{}", f.name), opts).map_err(zerr)?;
        let mut src = storage.folder_file(org, zoo, model, f)?.take(f.len.saturating_add(1));
        let n = std::io::copy(&mut src, &mut zw)?;
        if n != f.len {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{model}/{} changed while it was packed", f.name)));
        }
    }
    zw.finish().map_err(zerr)?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, len: u64, tag: &str) -> FolderFile {
        FolderFile { name: name.into(), len, tag: tag.into() }
    }

    #[test]
    fn fingerprints_change_with_any_field() {
        let a = fingerprint(&[f("m.json", 3, "1"), f("m.onnx", 9, "2")]);
        assert_eq!(a, fingerprint(&[f("m.json", 3, "1"), f("m.onnx", 9, "2")]));
        for other in [
            vec![f("m.json", 3, "1"), f("m.onnx", 9, "3")],
            vec![f("m.json", 3, "1"), f("m.onnx", 8, "2")],
            vec![f("m.json", 3, "1"), f("n.onnx", 9, "2")],
            vec![f("m.json", 3, "1")],
        ] {
            assert_ne!(a, fingerprint(&other));
        }
    }

    /// One build per version, rebuilt on a change with the older build removed, the same bytes
    /// from another hub (deterministic), nothing written into the zoo root.
    #[test]
    fn builds_once_per_version_and_drop_older_ones() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("o/z/m");
        std::fs::create_dir_all(m.join("sub")).unwrap();
        std::fs::write(m.join("m.json"), b"{}").unwrap();
        std::fs::write(m.join("sub/w.bin"), b"weights").unwrap();
        let storage = super::super::store::LocalDir::new(root.path());
        let folders = Folders::default();
        let a = folders.built(&storage, "o", "z", "m").unwrap().unwrap();
        let first_mtime = std::fs::metadata(&a.path).unwrap().modified().unwrap();
        let again = folders.built(&storage, "o", "z", "m").unwrap().unwrap();
        assert_eq!((&again.path, &again.version), (&a.path, &a.version));
        assert_eq!(std::fs::metadata(&a.path).unwrap().modified().unwrap(), first_mtime, "rebuilt an unchanged folder");
        let second_hub = Folders::default();
        let other = second_hub.built(&storage, "o", "z", "m").unwrap().unwrap();
        assert!(std::fs::read(&other.path).unwrap() == std::fs::read(&a.path).unwrap(), "builds differ");
        assert_eq!(other.version.etag, a.version.etag);
        let names: Vec<String> = zip::ZipArchive::new(std::fs::File::open(&a.path).unwrap()).unwrap().file_names().map(str::to_string).collect();
        assert_eq!(names, ["m/", "m/m.json", "m/sub/w.bin"]);
        std::fs::write(m.join("m.json"), b"{\"a\": 1}").unwrap();
        // Concurrent requests for the new version all get the same build.
        let all: Vec<Built> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| folders.built(&storage, "o", "z", "m").unwrap().unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let b = folders.built(&storage, "o", "z", "m").unwrap().unwrap();
        assert!(all.iter().all(|x| x.path == b.path && x.version == b.version));
        assert_eq!(std::fs::read_dir(b.path.parent().unwrap()).unwrap().count(), 1, "one build of the model left");
        assert_ne!(b.version.etag, a.version.etag);
        assert!(b.path.is_file() && !a.path.exists(), "the older build is kept");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "wrote into the zoo root");
        assert!(folders.built(&storage, "o", "z", "nofolder").unwrap().is_none());
    }

    #[test]
    fn folders_need_their_json_and_fit_the_limits() {
        let small = Limits { max_entries: 2, max_total_bytes: 10 };
        assert!(!check("m", &mut [f("n.json", 1, "")], small).unwrap());
        let mut ok = [f("m.onnx", 5, ""), f("m.json", 5, "")];
        assert!(check("m", &mut ok, small).unwrap());
        assert_eq!(ok[0].name, "m.json", "sorted");
        let e = check("m", &mut [f("m.json", 5, ""), f("a", 6, "")], small).unwrap_err();
        assert!(e.to_string().contains("holds 11 bytes (limit 10)"), "{e}");
        let e = check("m", &mut [f("m.json", 1, ""), f("a", 1, ""), f("b", 1, "")], small).unwrap_err();
        assert!(e.to_string().contains("has 3 files (limit 2)"), "{e}");
    }
}
