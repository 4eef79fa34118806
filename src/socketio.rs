//! Engine.IO v4 over WebSocket with Socket.IO packets serialized as msgpack, as PySDK 1.5.0's
//! cloud inference uses it (cloud-api.md §5.1). Shared by the cloud client and the hub.
//!
//! Engine.IO control packets are WebSocket *text* frames (`0{open json}`, `1` close, `2` ping,
//! `3` pong, `6` noop); every Socket.IO packet is a *binary* frame holding one msgpack map
//! `{"type": int, "data": any, "nsp": "/", ["id": int]}` (no `4` prefix).
use crate::error::{Code, Error, Result};
use rmpv::Value as Mp;
use serde_json::{json, Value};

/// Path of the socket.io endpoint on the cloud server.
pub const PATH: &str = "/api/v2/socket.io";
/// Largest WebSocket message (python-socketio / aiohttp's 128 MiB).
pub const MAX_PAYLOAD: usize = 128 << 20;

/// Socket.IO packet types used with the msgpack serializer.
pub const CONNECT: u8 = 0;
pub const DISCONNECT: u8 = 1;
pub const EVENT: u8 = 2;
pub const ACK: u8 = 3;
pub const CONNECT_ERROR: u8 = 4;

/// Protocol marker prefixed to a `predict` payload.
const PAYLOAD_VERSION: u8 = b'0';

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: u8,
    pub data: Mp,
    pub nsp: String,
    pub id: Option<i64>,
}

impl Packet {
    pub fn new(kind: u8, data: Mp) -> Self {
        Packet { kind, data, nsp: "/".into(), id: None }
    }

    /// An EVENT `[name, args...]`.
    pub fn event(name: &str, args: Vec<Mp>) -> Self {
        let mut a = vec![Mp::from(name)];
        a.extend(args);
        Packet::new(EVENT, Mp::Array(a))
    }

    /// The event name and arguments of an EVENT packet.
    pub fn as_event(&self) -> Option<(&str, &[Mp])> {
        if self.kind != EVENT {
            return None;
        }
        let a = self.data.as_array()?;
        let name = a.first()?.as_str()?;
        Some((name, &a[1..]))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![(Mp::from("type"), Mp::from(self.kind)), (Mp::from("data"), self.data.clone()), (Mp::from("nsp"), Mp::from(self.nsp.as_str()))];
        if let Some(id) = self.id {
            m.push((Mp::from("id"), Mp::from(id)));
        }
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &Mp::Map(m));
        out
    }

    /// Decode a binary frame. The frame size is already capped by the WebSocket layer and
    /// rmpv caps pre-allocation and nesting depth, so a lying length cannot exhaust memory.
    pub fn decode(bytes: &[u8]) -> Result<Packet> {
        let bad = |m: String| Error::new(Code::Protocol, format!("malformed socket.io packet: {m}"));
        let mut rd = bytes;
        let v = rmpv::decode::read_value(&mut rd).map_err(|e| bad(e.to_string()))?;
        let Mp::Map(entries) = v else { return Err(bad("not a map".into())) };
        let mut kind = None;
        let mut data = Mp::Nil;
        let mut nsp = "/".to_string();
        let mut id = None;
        for (k, v) in entries {
            // msgpack_numpy may send keys as bin.
            let key = match &k {
                Mp::String(s) => s.as_str().unwrap_or_default().to_string(),
                Mp::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            match key.as_str() {
                "type" => kind = v.as_u64().filter(|&t| t <= 6).map(|t| t as u8),
                "data" => data = v,
                "nsp" => nsp = v.as_str().unwrap_or("/").to_string(),
                "id" => id = v.as_i64(),
                _ => {}
            }
        }
        let kind = kind.ok_or_else(|| bad("missing or invalid 'type'".into()))?;
        Ok(Packet { kind, data, nsp, id })
    }
}

/// An Engine.IO text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Open(Value),
    Close,
    Ping,
    Pong,
    Noop,
    /// A text-encoded message (`4...`): not used with the msgpack serializer.
    TextMessage(String),
}

pub fn parse_control(text: &str) -> Result<Control> {
    let bad = || Error::new(Code::Protocol, format!("malformed Engine.IO packet '{}'", text.chars().take(40).collect::<String>()));
    let mut chars = text.chars();
    let Some(t) = chars.next() else { return Err(bad()) };
    let rest = chars.as_str();
    Ok(match t {
        '0' => Control::Open(serde_json::from_str(rest).map_err(|_| bad())?),
        '1' => Control::Close,
        '2' => Control::Ping,
        '3' => Control::Pong,
        '6' => Control::Noop,
        '4' => Control::TextMessage(rest.to_string()),
        _ => return Err(bad()),
    })
}

/// The server's Engine.IO OPEN text frame.
pub fn open_text(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64) -> String {
    format!("0{}", json!({"sid": sid, "upgrades": [], "pingTimeout": ping_timeout_ms, "pingInterval": ping_interval_ms, "maxPayload": MAX_PAYLOAD}))
}

pub const PING: &str = "2";
pub const PONG: &str = "3";

/// `predict` payload: `b"0"` + msgpack array of one `bin` per model input.
pub fn encode_frame(inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![PAYLOAD_VERSION];
    let _ = rmpv::encode::write_value(&mut out, &Mp::Array(inputs.iter().map(|b| Mp::Binary(b.clone())).collect()));
    out
}

/// The inputs of a `predict` payload.
pub fn decode_frame(payload: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let Some((&v, mut rest)) = payload.split_first() else { return Err("empty frame payload".into()) };
    if v != PAYLOAD_VERSION {
        return Err(format!("unsupported frame payload version 0x{v:02x}"));
    }
    let val = rmpv::decode::read_value(&mut rest).map_err(|e| format!("malformed frame payload: {e}"))?;
    let Mp::Array(items) = val else { return Err("frame payload is not a list of inputs".into()) };
    items
        .into_iter()
        .map(|i| match i {
            Mp::Binary(b) => Ok(b),
            // A str input is taken as its bytes (msgpack_numpy encodes bytes as bin, but be lenient).
            Mp::String(s) => Ok(s.into_bytes()),
            _ => Err("frame input is not binary data".to_string()),
        })
        .collect()
}

/// msgpack bytes → value (for embedding a result packet in an event).
pub fn mp_from_bytes(bytes: &[u8]) -> Result<Mp> {
    let mut rd = bytes;
    rmpv::decode::read_value(&mut rd).map_err(|e| Error::new(Code::Protocol, format!("malformed msgpack: {e}")))
}

pub fn mp_to_bytes(v: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// JSON → msgpack value (for the CONNECT auth map): `crate::msgpack::from_json`.
pub fn mp_from_json(v: &Value) -> Mp {
    crate::msgpack::from_json(v, &|_| None)
}

/// msgpack value → JSON (binary data as lossy text; auth maps carry none): `crate::msgpack::to_json`.
pub fn mp_to_json(v: &Mp) -> Value {
    crate::msgpack::to_json(v.clone(), None)
}

/// A string or bin argument as text (frame numbers).
pub fn mp_text(v: &Mp) -> Option<String> {
    match v {
        Mp::String(s) => s.as_str().map(str::to_string),
        Mp::Binary(b) => String::from_utf8(b.clone()).ok(),
        Mp::Integer(i) => i.as_i64().map(|x| x.to_string()),
        _ => None,
    }
}

/// tungstenite settings for socket.io streams: messages capped at `max_message` bytes before
/// they are buffered; a server side accepts unmasked client frames (as python-engineio does).
pub fn ws_config(max_message: usize, server: bool) -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig {
        max_message_size: Some(max_message),
        max_frame_size: Some(max_message),
        accept_unmasked_frames: server,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_payload_layout() {
        // cloud-api.md §5.3: one 50-byte input → 30 91 c4 32 <50 bytes>.
        let p = encode_frame(&[vec![7u8; 50]]);
        assert_eq!(&p[..4], &[0x30, 0x91, 0xc4, 0x32]);
        assert_eq!(p.len(), 54);
        assert_eq!(decode_frame(&p).unwrap(), vec![vec![7u8; 50]]);
        assert!(decode_frame(b"1\x90").is_err());
        assert!(decode_frame(b"").is_err());
        assert!(decode_frame(b"0\xc6\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn packet_round_trip_and_garbage() {
        let p = Packet::event("predict", vec![Mp::Binary(vec![1, 2]), Mp::from("3")]);
        let q = Packet::decode(&p.encode()).unwrap();
        assert_eq!(p, q);
        let (name, args) = q.as_event().unwrap();
        assert_eq!(name, "predict");
        assert_eq!(mp_text(&args[1]).as_deref(), Some("3"));
        for junk in [&b""[..], b"\x93\x01\x02\x03", b"\x81\xa4type\xa1x", b"\xdd\xff\xff\xff\xff"] {
            assert!(Packet::decode(junk).is_err());
        }
        assert_eq!(parse_control("2").unwrap(), Control::Ping);
        assert!(matches!(parse_control(&open_text("a", 1, 2)).unwrap(), Control::Open(v) if v["sid"] == "a"));
        assert!(parse_control("0{bad").is_err());
        assert!(parse_control("").is_err());
    }
}
