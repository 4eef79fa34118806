//! socket.io packets (msgpack serializer) and Engine.IO text frames, as the cloud-inference
//! client and the hub read them: decode, the event view, re-encode / decode round trip, the
//! predict frame layout, and the msgpack <-> JSON conversion.
#![no_main]
use dgzoo::socketio::{self, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        let _ = p.as_event();
        let back = Packet::decode(&p.encode()).expect("our own packet decodes");
        assert_eq!(back.kind, p.kind);
        assert_eq!(back.nsp, p.nsp);
        assert_eq!(back.id, p.id);
        let j = socketio::mp_to_json(&p.data);
        let _ = socketio::mp_from_json(&j);
        let _ = socketio::mp_text(&p.data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = socketio::parse_control(text);
    }
    if let Ok(inputs) = socketio::decode_frame(data) {
        let again = socketio::encode_frame(&inputs);
        assert_eq!(socketio::decode_frame(&again).expect("our own frame decodes"), inputs);
    }
    if let Ok(v) = socketio::mp_from_bytes(data) {
        let _ = socketio::mp_to_bytes(&v);
    }
});
