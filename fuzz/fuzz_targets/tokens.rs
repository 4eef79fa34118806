//! The hub's `tokens.json` parser (a pure function of dgzoo-server, used read-only here):
//! any text either parses into a table whose every entry has `is_admin` and `zoos`, or fails
//! with the file named in the message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/fuzz/tokens.json");
    match dgzoo_server::hub::store::parse_tokens(text, path) {
        Ok(t) => assert!(t.keys().all(|k| !k.is_empty())),
        Err(e) => assert!(e.contains("/fuzz/tokens.json"), "error does not name the file: {e}"),
    }
});
