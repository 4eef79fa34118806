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
