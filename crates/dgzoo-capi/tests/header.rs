//! The checked-in C header (include/dgzoo.h) must equal a fresh cbindgen generation from this crate.
//! Set DGZOO_UPDATE_HEADER=1 to rewrite include/dgzoo.h instead of failing.
use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.join("../..");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new().with_crate(root).with_config(config).generate().expect("cbindgen generation").write(&mut fresh);
    let path = repo.join("include/dgzoo.h");
    if std::env::var_os("DGZOO_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(current == fresh, "include/dgzoo.h is stale: regenerate it with DGZOO_UPDATE_HEADER=1 cargo test -p dgzoo-capi --test header");
}

/// `dg_code` in the header, the core's `Code` and the three bindings' name tables list the same
/// codes with the same numbers (the bindings copy the names; this is where drift would show).
#[test]
fn error_codes_agree_everywhere() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let header = read("include/dgzoo.h");
    let end = header.find("} dg_code;").expect("dg_code in the header");
    let start = header[..end].rfind("typedef enum {").expect("dg_code's typedef");
    let from_header: Vec<(String, i64)> = header[start..end]
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().trim_end_matches(',').split_once(" = ")?;
            Some((name.trim_start_matches("DG_").to_string(), value.parse().ok()?))
        })
        .collect();
    // The core's codes, CamelCase to SCREAMING_SNAKE.
    let from_core: Vec<(String, i64)> = dgzoo_core::error::Code::ALL
        .iter()
        .map(|c| {
            let mut name = String::new();
            for (i, ch) in format!("{c:?}").chars().enumerate() {
                if ch.is_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(ch.to_ascii_uppercase());
            }
            (name, *c as i64)
        })
        .collect();
    assert_eq!(from_header, from_core, "include/dgzoo.h's dg_code and dgzoo::error::Code");
    let names: Vec<String> = from_header.iter().map(|(n, _)| n.clone()).collect();
    assert!(from_header.iter().enumerate().all(|(i, (_, v))| *v == i as i64), "dg_code values are 0..n in order (the bindings index by number)");
    // Quoted names inside the first [...] / {...} after the marker.
    let quoted = |text: &str, marker: &str, open: char, close: char| -> Vec<String> {
        let at = text.find(marker).unwrap_or_else(|| panic!("{marker} not found"));
        let from = at + text[at..].find(open).unwrap();
        let to = from + text[from..].find(close).unwrap();
        text[from..to].split(['\'', '"']).skip(1).step_by(2).map(str::to_string).collect()
    };
    assert_eq!(quoted(&read("bindings/node/index.js"), "const CODES", '[', ']'), names, "bindings/node/index.js CODES");
    assert_eq!(quoted(&read("bindings/csharp/Dgzoo.cs"), "string[] Codes", '{', '}'), names, "bindings/csharp/Dgzoo.cs Codes");
    let go = read("bindings/go/dgzoo.go");
    let go_map = quoted(&go, "var codeNames", '{', '}');
    assert_eq!(go_map, names, "bindings/go/dgzoo.go codeNames (names)");
    for n in &names {
        assert!(go.contains(&format!("C.DG_{n}: \"{n}\"")), "bindings/go/dgzoo.go maps C.DG_{n} to \"{n}\"");
    }
}
