//! The core's layering, checked from the sources: no `use crate::` import cycle between
//! top-level modules, every module documented in docs/architecture.md, and the core free of
//! the C ABI, the servers and the CLI (those live in crates/).
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level modules declared in src/lib.rs (`mod x;` / `pub mod x;`).
fn top_modules(root: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("pub(crate) mod ")).or_else(|| l.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_string)
        })
        .collect()
}

/// The top-level modules a source text names through `crate::` paths, including
/// `crate::{a, b::c}` groups.
fn crate_refs(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for part in body.split(',') {
                let head = part.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(head) {
                    out.insert(head.to_string());
                }
            }
        } else {
            let head: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if modules.contains(&head) {
                out.insert(head);
            }
        }
        rest = after;
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Edges module -> modules it imports, from every file under src/.
fn module_graph(root: &Path) -> Graph {
    let modules = top_modules(root);
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    let mut g: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in files {
        let rel = f.strip_prefix(root.join("src")).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if !modules.contains(&first) {
            continue; // lib.rs
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for m in crate_refs(&text, &modules) {
            if m != first {
                g.get_mut(&first).unwrap().insert(m);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan), i.e. the import cycles.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let mut g: Graph = Graph::new();
    g.insert("a".into(), crate_refs("use crate::b::X;", &modules));
    g.insert("b".into(), crate_refs("use crate::{c, error::E};\nfn f() { crate::d::g() }", &modules));
    g.insert("c".into(), crate_refs("use crate::{a::Y, d};", &modules));
    g.insert("d".into(), BTreeSet::new());
    assert_eq!(g["b"], ["c", "d"].iter().map(|s| s.to_string()).collect());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    g.get_mut("c").unwrap().remove("a");
    assert!(cycles(&g).is_empty());
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = module_graph(root);
    assert!(g.len() > 10, "found only {:?}", g.keys());
    let found = cycles(&g);
    let show: Vec<String> = found
        .iter()
        .map(|scc| {
            let edges: Vec<String> = scc.iter().flat_map(|a| g[a].iter().filter(|b| scc.contains(b)).map(move |b| format!("{a} -> {b}"))).collect();
            format!("{{{}}}: {}", scc.join(", "), edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "`use crate::` import cycles between top-level modules:\n{}", show.join("\n"));
}

#[test]
fn every_module_is_in_the_architecture_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    for m in top_modules(root) {
        assert!(doc.contains(&format!("`{m}`")), "docs/architecture.md does not describe module `{m}`");
    }
}

#[test]
fn the_core_has_no_c_abi_servers_or_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for dep in ["clap", "indicatif", "tiny_http", "cbindgen"] {
        assert!(!deps.lines().any(|l| l.trim_start().starts_with(dep)), "the core depends on {dep}");
    }
    assert!(manifest.contains("crate-type = [\"rlib\"]"), "the core is an rlib only");
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("#[no_mangle]"), "{} exports C symbols: the C ABI belongs in crates/dgzoo-capi", f.display());
    }
}

/// Settings are read from the environment once and passed down: `Settings::from_env()` is
/// called only by `Zoo::connect_with` (a connect that brings no settings) and by
/// `Settings::process()`; no source of the workspace compiles a build-machine path
/// (`CARGO_MANIFEST_DIR`) into a library or binary outside its tests.
#[test]
fn settings_are_read_once_and_no_build_path_is_compiled_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    for c in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        if c.path().join("src").is_dir() {
            rs_files(&c.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "the sources were not found ({} files)", files.len());
    let mut readers = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may read the environment and the checkout; production code may not.
        let prod = text.split("#[cfg(test)]").next().unwrap();
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let unit_test_file = rel.contains("/tests/") || rel.ends_with("/tests.rs");
        if unit_test_file {
            continue;
        }
        for (i, line) in prod.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if line.contains("Settings::from_env") {
                readers.push(format!("{rel}:{}", i + 1));
            }
            assert!(!line.contains("CARGO_MANIFEST_DIR"), "{rel}:{}: a build-machine path is compiled in", i + 1);
            if !rel.ends_with("src/settings.rs") && !rel.contains("hub/s3.rs") {
                assert!(!line.contains("env::var"), "{rel}:{}: reads the environment outside Settings", i + 1);
            }
        }
    }
    let mut readers: Vec<&str> = readers.iter().map(|r| r.split(':').next().unwrap()).collect();
    readers.sort();
    readers.dedup();
    assert_eq!(readers, vec!["src/settings.rs", "src/zoo/mod.rs"], "Settings::from_env() callers: {readers:?}");
}
