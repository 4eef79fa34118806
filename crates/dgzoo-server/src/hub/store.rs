//! The hub's on-disk zoo root, laid out as dg-zoo-server 0.3.0's: `<root>/tokens.json`
//! (`{"<token>": {"is_admin": bool, "zoos": ["org/zoo", ...]}}`) and `<root>/<org>/<zoo>/<m>.zip`.
//! Unlike dg-zoo-server, which scans once at start, archives and tokens are re-read when their
//! size or mtime changes, so a replaced archive is served (with its new checksum) at once.
use dgzoo::cache::archive::is_safe_segment;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// dg-zoo-server's temporary directory under the root; never a zoo.
pub const TEMP_SUBDIR: &str = "__dg_zoo_server_temp__";
/// Largest config/labels/readme member read from an archive.
const MAX_MEMBER: u64 = 64 << 20;

/// What the hub knows about one archive.
#[derive(Debug)]
pub struct ModelInfo {
    pub params: Value,
    pub labels: Value,
    pub readme: String,
    pub checksum: String,
}

/// A token's rights.
#[derive(Debug, Clone)]
pub struct TokenRights {
    pub is_admin: bool,
    pub zoos: Vec<String>,
}

type Stamp = (u64, Option<SystemTime>);

fn stamp(p: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// How an entry of `tokens.json` is shown in error texts: its first characters only (the
/// token is a secret, and the message goes to logs).
fn entry_name(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    if head.len() < token.len() {
        format!("\"{head}…\"")
    } else {
        format!("\"{head}\"")
    }
}

/// Parse `tokens.json` strictly: a JSON object of `{"is_admin": bool, "zoos": ["org/zoo", ...]}`
/// entries. Anything else is an error naming the file and the entry (a token file that does
/// not parse must never be taken as "no tokens").
pub fn parse_tokens(text: &str, path: &Path) -> Result<HashMap<String, TokenRights>, String> {
    let bad = |what: String| format!("Invalid token file '{}': {what}", path.display());
    let m: Map<String, Value> = serde_json::from_str(text).map_err(|e| bad(format!("not a JSON object of tokens ({e})")))?;
    let mut out = HashMap::with_capacity(m.len());
    for (k, v) in m {
        let name = entry_name(&k);
        if k.is_empty() {
            return Err(bad("an entry has an empty token".into()));
        }
        let o = v.as_object().ok_or_else(|| bad(format!("entry {name} is not an object")))?;
        let is_admin = match o.get("is_admin") {
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad(format!("entry {name}: \"is_admin\" is not true or false"))),
            None => return Err(bad(format!("entry {name} has no \"is_admin\""))),
        };
        let zoos = match o.get("zoos") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|z| z.as_str().map(str::to_string).ok_or_else(|| bad(format!("entry {name}: \"zoos\" holds a non-string {z}"))))
                .collect::<Result<Vec<String>, String>>()?,
            Some(_) => return Err(bad(format!("entry {name}: \"zoos\" is not a list"))),
            None => return Err(bad(format!("entry {name} has no \"zoos\""))),
        };
        out.insert(k, TokenRights { is_admin, zoos });
    }
    Ok(out)
}

#[derive(Default)]
struct Caches {
    /// The last token table that parsed, with the stamp of the file it was last checked at.
    tokens: Option<(Stamp, Arc<HashMap<String, TokenRights>>)>,
    models: HashMap<PathBuf, (Stamp, Option<Arc<ModelInfo>>)>,
}

pub struct Store {
    root: PathBuf,
    caches: Mutex<Caches>,
}

fn read_member(zip: &mut zip::ZipArchive<std::fs::File>, idx: usize) -> Option<Vec<u8>> {
    let e = zip.by_index(idx).ok()?;
    let mut buf = Vec::new();
    e.take(MAX_MEMBER).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn base_name(n: &str) -> &str {
    n.rsplit(['/', '\\']).next().unwrap_or(n)
}

/// Read config, labels and readme from an archive; `None` if it is not a model archive
/// (not a ZIP, no `<m>.json`, or no `Checksum`), which is then not listed.
pub fn read_model_info(path: &Path, model: &str) -> Option<ModelInfo> {
    let f = std::fs::File::open(path).ok()?;
    let mut zip = zip::ZipArchive::new(f).ok()?;
    // An archive with entries escaping its model folder is never listed or served.
    if dgzoo::cache::archive::unsafe_entry(&mut zip, model).is_some() {
        return None;
    }
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let json_name = format!("{model}.json");
    let preferred = format!("{model}/{json_name}");
    let idx = names.iter().position(|n| *n == preferred).or_else(|| names.iter().position(|n| base_name(n) == json_name))?;
    let params: Value = serde_json::from_slice(&read_member(&mut zip, idx)?).ok()?;
    let checksum = match params.get("Checksum")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let labels_name = params.pointer("/POST_PROCESS/0/LabelsPath").and_then(Value::as_str).map(str::to_string);
    let labels = labels_name
        .and_then(|ln| names.iter().position(|n| base_name(n) == ln))
        .and_then(|i| read_member(&mut zip, i))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let readme = names
        .iter()
        .position(|n| base_name(n).eq_ignore_ascii_case("readme.md"))
        .and_then(|i| read_member(&mut zip, i))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Some(ModelInfo { params, labels, readme, checksum })
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Store { root: root.to_path_buf(), caches: Mutex::new(Caches::default()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `tokens.json` read now, strictly ([`parse_tokens`]); a missing file is an empty table.
    /// The hub refuses to start when this fails, and token changes refuse to write over a file
    /// that does not parse.
    pub fn load_tokens(&self) -> Result<Arc<HashMap<String, TokenRights>>, String> {
        let path = self.root.join("tokens.json");
        let st = stamp(&path).unwrap_or((0, None));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from("{}"),
            Err(e) => return Err(format!("Cannot read token file '{}': {e}", path.display())),
        };
        let t = Arc::new(parse_tokens(&text, &path)?);
        self.lock().tokens = Some((st, t.clone()));
        Ok(t)
    }

    /// The token table, re-read when `tokens.json` changes. A file that stops parsing while
    /// the hub runs keeps the last table that did (reported on stderr), never an empty one.
    pub fn tokens(&self) -> Arc<HashMap<String, TokenRights>> {
        let path = self.root.join("tokens.json");
        let st = stamp(&path).unwrap_or((0, None));
        if let Some((s, t)) = &self.lock().tokens {
            if *s == st {
                return t.clone();
            }
        }
        match self.load_tokens() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("dgzoo hub: {e}; keeping the previous tokens");
                let mut c = self.lock();
                let t = c.tokens.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                c.tokens = Some((st, t.clone()));
                t
            }
        }
    }

    /// Write the token table (atomically: temp file + rename).
    pub fn save_tokens(&self, tokens: &HashMap<String, TokenRights>) -> std::io::Result<()> {
        let mut names: Vec<&String> = tokens.keys().collect();
        names.sort();
        let m: Map<String, Value> =
            names.into_iter().map(|k| (k.clone(), serde_json::json!({"is_admin": tokens[k].is_admin, "zoos": tokens[k].zoos}))).collect();
        let path = self.root.join("tokens.json");
        let tmp = self.root.join("tokens.json.tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Tokens are secrets: readable by the hub's user only.
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        // Forget the cached table: a same-size rewrite within the mtime granularity must not be missed.
        self.lock().tokens = None;
        Ok(())
    }

    /// The directory of zoo `org/zoo` if it exists.
    pub fn zoo_dir(&self, org: &str, zoo: &str) -> Option<PathBuf> {
        if !is_safe_segment(org) || !is_safe_segment(zoo) || org == TEMP_SUBDIR {
            return None;
        }
        let d = self.root.join(org).join(zoo);
        d.is_dir().then_some(d)
    }

    /// Zoos of an organization.
    pub fn zoos(&self, org: &str) -> Vec<String> {
        if !is_safe_segment(org) || org == TEMP_SUBDIR {
            return Vec::new();
        }
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(org))
            .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Model info of one archive, re-read when the file changed.
    pub fn model(&self, zoo_dir: &Path, model: &str) -> Option<Arc<ModelInfo>> {
        if !is_safe_segment(model) {
            return None;
        }
        let path = zoo_dir.join(format!("{model}.zip"));
        let st = stamp(&path)?;
        if let Some((s, info)) = self.lock().models.get(&path) {
            if *s == st {
                return info.clone();
            }
        }
        // Parse outside the lock: archives can be large.
        let info = read_model_info(&path, model).map(Arc::new);
        self.lock().models.insert(path, (st, info.clone()));
        info
    }

    /// All model archives of a zoo, sorted by name.
    pub fn models(&self, zoo_dir: &Path) -> Vec<(String, Arc<ModelInfo>)> {
        let mut names: Vec<String> = std::fs::read_dir(zoo_dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".zip").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.into_iter().filter_map(|n| self.model(zoo_dir, &n).map(|i| (n, i))).collect()
    }
}
