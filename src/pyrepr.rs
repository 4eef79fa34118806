//! Python `repr()` of JSON values, so error messages read exactly like PySDK's.
use serde_json::Value;

/// Format a JSON value the way Python prints the equivalent object.
pub fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!("{{{}}}", o.iter().map(|(k, v)| format!("'{k}': {}", repr(v))).collect::<Vec<_>>().join(", ")),
    }
}

/// Python float repr: shortest round-trip, always with a decimal point or exponent.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_like() {
        assert_eq!(repr(&json!(["FOO/BAR", 1, 2.5, null, true])), "['FOO/BAR', 1, 2.5, None, True]");
        assert_eq!(repr(&json!(3.0)), "3.0");
        assert_eq!(repr(&json!({"a": [1]})), "{'a': [1]}");
    }
}
