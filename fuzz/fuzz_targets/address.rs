//! `dg_connect` designators and zoo URLs: the fuzzer's text split at the first newline into
//! (host, zoo_url), through the classification PySDK's `connect` does, and each parser alone.
#![no_main]
use dgzoo::address;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, zoo_url) = text.split_once('\n').unwrap_or((text, ""));
    let _ = address::parse_host(host);
    if let Ok(a) = address::ServerAddress::parse(host) {
        assert!(!a.host.is_empty());
    }
    if let Some(c) = address::parse_cloud_url(zoo_url) {
        assert!(c.scheme == "http" || c.scheme == "https");
        let _ = (c.base(), c.url());
    }
    let _ = address::classify(host, zoo_url);
    let _ = dgzoo::cache::archive::check_model_name(host);
    let _ = dgzoo::cache::archive::is_safe_segment(zoo_url);
});
