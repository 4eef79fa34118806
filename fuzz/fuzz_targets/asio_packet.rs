//! asio packet framing (a 4-byte big-endian length, then the payload) read from a stream that
//! delivers the fuzzer's bytes in fuzzed chunk sizes, then every packet through the protocol's
//! JSON reply checks and msgpack decoders, as the AI-server client sees them.
#![no_main]
use dgzoo::protocol;
use libfuzzer_sys::fuzz_target;
use std::io::Read;

/// A reader returning at most `chunk` bytes per call (short reads as TCP gives them).
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    // Limit: the JSON limit, the frame limit, or a tiny one; chunk size 1..=16 or whole reads.
    let max = match ctl & 3 {
        0 => protocol::DEFAULT_MAX_JSON,
        1 => protocol::DEFAULT_MAX_PACKET,
        2 => 64,
        _ => 0,
    };
    let chunk = if ctl >> 4 == 0 { usize::MAX } else { usize::from(ctl >> 4) };
    let mut r = Chunked { data: rest, chunk };
    for _ in 0..64 {
        let payload = match protocol::read_packet(&mut r, max) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => break,
        };
        assert!(payload.len() <= max, "read_packet returned {} bytes over the limit {max}", payload.len());
        // The JSON command replies (transmitCommand's checks) for each op the client sends.
        for op in ["modelzoo", "sysinfo", "label_dictionary", "trace_manage", "zoo_manage", "sleep", "shutdown", "device_manage"] {
            let _ = protocol::check_reply(op, &payload, "fuzz");
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) {
            let _ = protocol::error_of(&v);
        }
        // The result stream's packets (msgpack).
        let _ = protocol::ends_stream(&payload);
        let _ = protocol::decode(&payload);
        let _ = protocol::decode_results(&payload);
        // Framing round trip: what we write, we read back unchanged.
        let mut out = Vec::new();
        protocol::write_packet(&mut out, &payload).expect("write_packet into a Vec");
        let back = protocol::read_packet(&mut out.as_slice(), usize::MAX).expect("re-read").expect("one packet");
        assert_eq!(back, payload);
    }
});
