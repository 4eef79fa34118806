//! Cloud token lookup (zoo-and-filters.md §3): when `connect` gets no token for a cloud zoo,
//! use the one PySDK's `degirum token install` saved for that cloud root in
//! `<appdata>/DeGirum/pysdk_cloud_token.json` (`DGZOO_TOKEN_FILE` overrides the path). As
//! PySDK, a saved token is looked up with `GET /api/v1/tokens/<t>/info` and renewed with
//! `PATCH /api/v1/tokens/<t>/refresh` when it expires within the hour; failures of either
//! leave the token as it is.
use crate::settings::Settings;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The token file PySDK reads.
pub fn token_file(settings: &Settings) -> Option<PathBuf> {
    if let Some(p) = &settings.token_file {
        return Some(p.clone());
    }
    super::degirum_appdata(settings).map(|d| d.join("pysdk_cloud_token.json"))
}

fn read_file(settings: &Settings) -> Option<Map<String, Value>> {
    let text = std::fs::read_to_string(token_file(settings)?).ok()?;
    serde_json::from_str::<Value>(&text).ok()?.as_object().cloned()
}

/// The saved token for `cloud_root` (`<scheme>://<host>`), or "" when none. A missing or
/// malformed file means no token, as in PySDK.
pub fn lookup(cloud_root: &str, settings: &Settings) -> String {
    read_file(settings).and_then(|m| m.get(cloud_root).and_then(|e| e.get("token")).and_then(Value::as_str).map(str::to_string)).unwrap_or_default()
}

/// `token` if given, else the saved one (renewed if about to expire).
pub fn resolve(token: &str, cloud_root: &str, settings: &Settings) -> String {
    if !token.is_empty() {
        return token.to_string();
    }
    let saved = lookup(cloud_root, settings);
    if saved.is_empty() {
        return saved;
    }
    match renew_if_expiring(cloud_root, &saved) {
        Some(new) => {
            save(cloud_root, &new, settings);
            new
        }
        None => saved,
    }
}

/// Seconds since the epoch of an ISO-8601 date-time (`2025-01-02T03:04:05[.fff][Z|±hh:mm]`,
/// no zone = UTC).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (proleptic Gregorian).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86_400 + h * 3600 + mi * 60 + se;
    let rest = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        let off = rest[1..].replace(':', "");
        let hh: i64 = off.get(0..2)?.parse().ok()?;
        let mm: i64 = off.get(2..4).and_then(|x| x.parse().ok()).unwrap_or(0);
        let o = hh * 3600 + mm * 60;
        t -= if sign == '+' { o } else { -o };
    }
    Some(t)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build()
}

/// `Some(new token)` when the cloud says the token expires within an hour and renews it.
fn renew_if_expiring(cloud_root: &str, token: &str) -> Option<String> {
    let t = super::quote_all(token);
    let info = agent().get(&format!("{cloud_root}/api/v1/tokens/{t}/info")).set("dg_version", super::DG_VERSION).call().ok()?.into_string().ok()?;
    let info: Value = serde_json::from_str(&info).ok()?;
    let exp = info.get("expiration")?.as_str()?;
    if exp.starts_with("0001-01-01T00:00:00") {
        return None; // never expires
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    if parse_iso8601(exp)? > now + 3600 {
        return None;
    }
    let r =
        agent().request("PATCH", &format!("{cloud_root}/api/v1/tokens/{t}/refresh")).set("dg_version", super::DG_VERSION).call().ok()?.into_string().ok()?;
    let r: Value = serde_json::from_str(&r).ok()?;
    r.get("value").and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Store a renewed token in the file, keeping the other fields (errors ignored, as PySDK).
fn save(cloud_root: &str, token: &str, settings: &Settings) {
    let (Some(path), Some(mut m)) = (token_file(settings), read_file(settings)) else { return };
    if let Some(Value::Object(e)) = m.get_mut(cloud_root) {
        e.insert("token".into(), Value::String(token.to_string()));
    }
    if let Ok(text) = serde_json::to_string_pretty(&Value::Object(m)) {
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn iso8601() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2000-03-01T00:00:00"), Some(951_868_800));
        assert_eq!(parse_iso8601("2024-02-29T12:30:15.123456+02:00"), Some(1_709_209_815 - 7200));
        assert_eq!(parse_iso8601("2024-02-29T12:30:15-01:30"), Some(1_709_209_815 + 5400));
        assert_eq!(parse_iso8601("garbage"), None);
    }
}
