//! The msgpack result codec: any payload through `decode_results` (result lists, raw-tensor
//! entries with their `type`/`shape`/`quantization`, error maps), and what it decodes encoded
//! again and decoded back.
#![no_main]
use dgzoo::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::elem_type_from_dg(&String::from_utf8_lossy(&data[..data.len().min(16)]));
    let Ok(Ok((results, tensors))) = protocol::decode_results(data) else { return };
    for t in &tensors {
        let n: usize = t.info.shape.iter().map(|&d| d.max(0) as usize).product();
        assert_eq!(n * t.info.dtype.size(), t.data.as_bytes().len(), "tensor shape {:?} does not match its bytes", t.info.shape);
    }
    let again = protocol::encode_results(&results, &tensors);
    let decoded = protocol::decode_results(&again).expect("our own encoding decodes");
    if let Ok((r2, _)) = decoded {
        assert_eq!(r2.len(), results.len(), "result count changed through encode/decode");
    }
});
