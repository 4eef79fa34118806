//! The DeGirum AI server wire format (aiserver-protocol.md), shared by our server and client:
//! asio packet framing, JSON command messages and replies, the msgpack result encoding,
//! error maps and the WebSocket configuration messages. No I/O policy lives here beyond
//! reading/writing one packet.
pub mod command;
pub mod http;
pub mod ws;

use crate::error::{Code, Error, Result};
use crate::runtime::{AlignedBuf, ElemType, Quant, Tensor, TensorInfo};
use rmpv::Value as Mp;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};

/// Key carrying the protocol version in command messages.
pub const VERSION_TAG: &str = "VERSION";
/// Current and minimum compatible protocol version.
pub const PROTOCOL_VERSION: i64 = 4;
/// Default largest packet accepted (the client asserts < 2^31; 1 GiB is far above any frame).
pub const DEFAULT_MAX_PACKET: usize = 1 << 30;
/// Default largest JSON message a server accepts (asio command packets, WebSocket text
/// messages, REST bodies): 1 MiB. JSON costs ~16x its size once parsed, so it gets its own
/// limit, far below the frame limit; longer messages are refused from their length prefix.
pub const DEFAULT_MAX_JSON: usize = 1 << 20;
/// Client connection / command-reply timeout.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

// ---------------------------------------------------------------------------------------
// asio framing

/// Read one packet: `Ok(None)` on a clean EOF before the header. A length above `max` is
/// refused before anything is allocated.
pub fn read_packet<R: Read>(r: &mut R, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut hdr = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a packet header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(hdr) as usize;
    if len > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("packet of {len} bytes exceeds the limit of {max} bytes")));
    }
    // Grow with the data actually received: a length prefix alone reserves little memory.
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a packet"));
    }
    Ok(Some(buf))
}

/// Write one packet (header and payload in one write so small packets leave in one segment).
pub fn write_packet<W: Write + ?Sized>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let len =
        u32::try_from(payload.len()).ok().filter(|&l| l < 1 << 31).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "packet too large"))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

// ---------------------------------------------------------------------------------------
// JSON commands

/// A command message: `fields` plus `op` and `VERSION`.
pub fn command(op: &str, fields: Value) -> Value {
    let mut m = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("op".into(), op.into());
    m.entry(VERSION_TAG).or_insert(json!(PROTOCOL_VERSION));
    Value::Object(m)
}

/// Successful command reply; `data` goes under a key named after the op.
pub fn reply_ok(op: &str, data: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert(VERSION_TAG.into(), json!(PROTOCOL_VERSION));
    m.insert("success".into(), json!(true));
    if let Some(d) = data {
        m.insert(op.into(), d);
    }
    Value::Object(m)
}

/// Failed command reply (also the stream-open error, in msgpack).
pub fn reply_err(msg: &str) -> Value {
    json!({VERSION_TAG: PROTOCOL_VERSION, "msg": msg, "success": false})
}

/// Per-frame error result (no `VERSION`), and the HTTP error body.
pub fn frame_err(msg: &str) -> Value {
    json!({"msg": msg, "success": false})
}

/// Does this result packet end the stream? A stream-open failure arrives as the first result
/// with `VERSION` (the server then ignores the stream); a per-frame error has none.
pub fn ends_stream(payload: &[u8]) -> bool {
    decode(payload).is_ok_and(|(v, _)| error_of(&v).is_some() && v.get(VERSION_TAG).is_some())
}

/// `errorCheck`: an object with `success: false` is an error; its message is `msg`.
pub fn error_of(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    if o.get("success").and_then(Value::as_bool) == Some(false) {
        Some(o.get("msg").and_then(Value::as_str).unwrap_or("unspecified error").to_string())
    } else {
        None
    }
}

/// Client-side checks of a command reply (`transmitCommand`): a JSON object with `VERSION`
/// and no `success: false`. Returns the op's data (`null` when absent).
pub fn check_reply(op: &str, payload: &[u8], server: &str) -> Result<Value> {
    let v: Value = serde_json::from_slice(payload)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| Error::new(Code::Protocol, format!("Response from server '{server}' is incorrect")))?;
    if v.get(VERSION_TAG).is_none() {
        return Err(Error::new(
            Code::Protocol,
            format!("AI server protocol version data is missing in the response from server '{server}'. Please upgrade AI server"),
        ));
    }
    if let Some(msg) = error_of(&v) {
        return Err(Error::new(Code::Protocol, msg));
    }
    Ok(v.get(op).cloned().unwrap_or(Value::Null))
}

/// DeGirum error text layout: `<TYPE><description>\n<message>\n` plus context lines.
pub fn dg_error_text(kind: &str, description: &str, message: &str, context: &[String]) -> String {
    let mut s = format!("[{kind}]{description}\n{message}\n");
    for c in context {
        s.push_str(c);
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------
// msgpack results

/// DeGirum element type name → element type.
pub fn elem_type_from_dg(name: &str) -> Option<ElemType> {
    Some(match name {
        "DG_FLT" => ElemType::F32,
        "DG_DBL" => ElemType::F64,
        "DG_FLT16" => ElemType::F16,
        "DG_UINT8" => ElemType::U8,
        "DG_INT8" => ElemType::I8,
        "DG_UINT16" => ElemType::U16,
        "DG_INT16" => ElemType::I16,
        "DG_UINT32" => ElemType::U32,
        "DG_INT32" => ElemType::I32,
        "DG_UINT64" => ElemType::U64,
        "DG_INT64" => ElemType::I64,
        _ => return None,
    })
}

/// JSON → msgpack (`crate::msgpack`); `{"__tensor__": i}` placeholders become the bytes of `tensors[i]`.
fn to_mp(v: &Value, tensors: &[Tensor]) -> Mp {
    crate::msgpack::from_json(v, &|o| {
        let i = o.get("__tensor__").and_then(Value::as_u64)?;
        tensors.get(i as usize).map(|t| Mp::Binary(t.data.as_bytes().to_vec()))
    })
}

/// Encode any JSON value as msgpack.
pub fn encode(v: &Value) -> Vec<u8> {
    encode_results_value(v, &[])
}

fn encode_results_value(v: &Value, tensors: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &to_mp(v, tensors));
    out
}

/// Encode a result list (with raw-tensor placeholders resolved) as one result packet.
pub fn encode_results(results: &[Value], tensors: &[Tensor]) -> Vec<u8> {
    encode_results_value(&Value::Array(results.to_vec()), tensors)
}

/// Decode any msgpack payload into JSON plus its binary buffers.
pub fn decode(payload: &[u8]) -> Result<(Value, Vec<Vec<u8>>)> {
    let mut rd = payload;
    let v = rmpv::decode::read_value(&mut rd).map_err(|e| Error::new(Code::Protocol, format!("malformed msgpack from AI server: {e}")))?;
    let mut bins = Vec::new();
    Ok((crate::msgpack::to_json(v, Some(&mut bins)), bins))
}

/// One frame's outcome as sent by the server: (results, tensors) or the error text.
pub type FrameResult = std::result::Result<(Vec<Value>, Vec<Tensor>), String>;

/// A decoded result packet: the result list (raw tensors as `{"__tensor__": i, dtype, shape}`
/// placeholders, like local results) and those tensors; `Err(msg)` for a `success: false` map.
pub fn decode_results(payload: &[u8]) -> Result<FrameResult> {
    let (v, mut bins) = decode(payload)?;
    if let Some(msg) = error_of(&v) {
        return Ok(Err(msg));
    }
    let list = match v {
        Value::Array(a) => a,
        // Any other value is not an error: PySDK wraps it as a one-element list.
        other => vec![other],
    };
    let mut tensors = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for mut r in list {
        if let Some(o) = r.as_object_mut() {
            if let Some(bi) = o.get("data").and_then(|d| d.get("__bin__")).and_then(Value::as_u64) {
                // A literal `{"__bin__": n}` map (not a binary) may name a buffer that is not there.
                let n = bins.len();
                let slot = usize::try_from(bi)
                    .ok()
                    .and_then(|i| bins.get_mut(i))
                    .ok_or_else(|| Error::new(Code::Protocol, format!("malformed result from AI server: raw tensor data refers to binary #{bi} of {n}")))?;
                let bytes = std::mem::take(slot);
                let t = tensor_from_entry(o, &bytes);
                o.insert("data".into(), json!({"__tensor__": tensors.len(), "dtype": t.info.dtype.numpy_name(), "shape": t.info.shape}));
                tensors.push(t);
            }
        }
        out.push(r);
    }
    Ok(Ok((out, tensors)))
}

/// A tensor from a raw-tensor result map: dtype from `type` and shape from `shape` when both
/// are present and consistent, else a flat uint8 array (PySDK's rule).
fn tensor_from_entry(o: &Map<String, Value>, bytes: &[u8]) -> Tensor {
    let dtype = o.get("type").and_then(Value::as_str).and_then(elem_type_from_dg);
    let shape: Option<Vec<i64>> = o.get("shape").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect());
    let (dtype, shape) = match (dtype, shape) {
        (Some(t), Some(s)) if s.iter().map(|&d| d.max(0) as usize).product::<usize>() * t.size() == bytes.len() => (t, s),
        (Some(t), None) if bytes.len() % t.size() == 0 => (t, vec![(bytes.len() / t.size()) as i64]),
        _ => (ElemType::U8, vec![bytes.len() as i64]),
    };
    let quant = o.get("quantization").and_then(|q| {
        let scale: Vec<f32> = q.get("scale")?.as_array()?.iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
        let zero: Vec<i64> = q.get("zero")?.as_array()?.iter().filter_map(Value::as_i64).collect();
        let axis = q.get("axis").and_then(Value::as_i64).unwrap_or(-1) as i32;
        let trivial = axis == -1 && scale == [1.0] && zero == [0];
        (!scale.is_empty() && !trivial).then_some(Quant { axis, scale, zero })
    });
    let info = TensorInfo {
        name: o.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
        shape,
        dtype,
        quant,
        id: o.get("id").and_then(Value::as_i64),
    };
    Tensor { info, data: AlignedBuf::from_bytes(bytes) }
}

// ---------------------------------------------------------------------------------------
// WebSocket messages

/// First client message on `/v1/stream`: `{"config": {...}, "name": "<model>"}` (JSON text).
pub fn ws_config_message(name: &str, config: &Value) -> String {
    json!({"config": config, "name": name}).to_string()
}

/// Server reply to a successful configuration (msgpack).
pub fn ws_config_ok(model_params: &Value) -> Vec<u8> {
    encode(&json!({"model_params": model_params, "success": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_roundtrip_and_limits() {
        let mut buf = Vec::new();
        write_packet(&mut buf, b"hello").unwrap();
        write_packet(&mut buf, b"").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 5]);
        let mut r = &buf[..];
        assert_eq!(read_packet(&mut r, 100).unwrap().unwrap(), b"hello");
        assert_eq!(read_packet(&mut r, 100).unwrap().unwrap(), b"");
        assert!(read_packet(&mut r, 100).unwrap().is_none());
        let huge = [0x80u8, 0, 0, 0];
        let e = read_packet(&mut &huge[..], 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let trunc = [0u8, 0, 0, 9, 1, 2];
        assert!(read_packet(&mut &trunc[..], 100).is_err());
    }

    #[test]
    fn msgpack_matches_captured_bytes() {
        // Captured from the PySDK server (aiserver-protocol.md §1.10): floats as f32, sorted keys.
        let r = vec![json!({"category_id": 285, "label": "Egyptian cat", "score": 0.44286})];
        let b = encode_results(&r, &[]);
        assert_eq!(&b[..3], &[0x91, 0x83, 0xab]);
        assert!(b.windows(3).any(|w| w == [0xcd, 0x01, 0x1d]));
        let back = decode_results(&b).unwrap().unwrap().0;
        assert_eq!(back[0]["category_id"], 285);
        assert!((back[0]["score"].as_f64().unwrap() - 0.44286).abs() < 1e-6);
        let err = encode(&frame_err("boom"));
        assert_eq!(decode_results(&err).unwrap().unwrap_err(), "boom");
    }
}
