//! Cloud token lookup (zoo-and-filters.md §3): when `connect` gets no token for a cloud zoo,
//! use the one PySDK's `degirum token install` saved for that cloud root in
//! `<appdata>/DeGirum/pysdk_cloud_token.json`. `DGZOO_TOKEN_FILE` overrides the file path.
use serde_json::Value;
use std::path::PathBuf;

/// The token file PySDK reads.
pub fn token_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DGZOO_TOKEN_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    super::degirum_appdata().map(|d| d.join("pysdk_cloud_token.json"))
}

/// The saved token for `cloud_root` (`<scheme>://<host>`), or "" when none. A missing or
/// malformed file means no token, as in PySDK.
pub fn lookup(cloud_root: &str) -> String {
    let Some(path) = token_file() else { return String::new() };
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let Ok(v) = serde_json::from_str::<Value>(&text) else { return String::new() };
    v.get(cloud_root).and_then(|e| e.get("token")).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// `token` if given, else the saved one.
pub fn resolve(token: &str, cloud_root: &str) -> String {
    if token.is_empty() {
        lookup(cloud_root)
    } else {
        token.to_string()
    }
}
