//! The one msgpack <-> JSON conversion, shared by the AI-server result codec (`protocol`) and
//! the socket.io payloads (`socketio`).
use rmpv::Value as Mp;
use serde_json::{json, Map, Value};

/// JSON -> msgpack. Floats exactly representable as f32 are sent as f32, like DeGirum's
/// server; `object` may replace a JSON object by a value of its own (placeholders for binary
/// data), else objects become maps in serde_json's (sorted) key order.
pub fn from_json(v: &Value, object: &dyn Fn(&Map<String, Value>) -> Option<Mp>) -> Mp {
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if (f as f32) as f64 == f {
                    Mp::F32(f as f32)
                } else {
                    Mp::F64(f)
                }
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(a) => Mp::Array(a.iter().map(|x| from_json(x, object)).collect()),
        Value::Object(o) => object(o).unwrap_or_else(|| Mp::Map(o.iter().map(|(k, x)| (Mp::from(k.as_str()), from_json(x, object))).collect())),
    }
}

/// msgpack -> JSON. Binary data (bin and ext) goes into `bins`, replaced by `{"__bin__": i}`;
/// without `bins` it becomes (lossy) text. Map keys that are not strings become text. Takes
/// the value so binary buffers (result tensors) move instead of being copied.
pub fn to_json(v: Mp, mut bins: Option<&mut Vec<Vec<u8>>>) -> Value {
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => json!(b),
        Mp::Integer(i) => i.as_u64().map(|u| json!(u)).or_else(|| i.as_i64().map(|x| json!(x))).unwrap_or(Value::Null),
        Mp::F32(f) => json!(f as f64),
        Mp::F64(f) => json!(f),
        Mp::String(s) => Value::String(s.into_str().unwrap_or_default()),
        Mp::Binary(b) | Mp::Ext(_, b) => match bins {
            Some(bins) => {
                bins.push(b);
                json!({"__bin__": bins.len() - 1})
            }
            None => json!(String::from_utf8_lossy(&b)),
        },
        Mp::Array(a) => Value::Array(a.into_iter().map(|x| to_json(x, bins.as_deref_mut())).collect()),
        Mp::Map(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                let key = match k {
                    Mp::String(s) => s.into_str().unwrap_or_default(),
                    Mp::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.to_string(),
                };
                o.insert(key, to_json(x, bins.as_deref_mut()));
            }
            Value::Object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binary_placeholders() {
        let v = json!({"a": [1, -2, 0.5, 0.1, "s", null, true], "b": {"c": 18446744073709551615u64}});
        let back = to_json(from_json(&v, &|_| None), None);
        assert_eq!(back, v);
        let mp = Mp::Array(vec![Mp::Binary(vec![1, 2]), Mp::Binary(b"hi".to_vec())]);
        let mut bins = Vec::new();
        assert_eq!(to_json(mp.clone(), Some(&mut bins)), json!([{"__bin__": 0}, {"__bin__": 1}]));
        assert_eq!(bins, vec![vec![1, 2], b"hi".to_vec()]);
        assert_eq!(to_json(mp, None), json!(["\u{1}\u{2}", "hi"]));
    }
}
