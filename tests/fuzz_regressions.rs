//! Inputs the fuzz targets (fuzz/fuzz_targets/) found crashing, hanging or exhausting memory,
//! each replayed through the same entry point with the outcome it must have now: a clear
//! error (or a result), never a panic.
use dgzoo::protocol;

/// msgpack_results: a result map whose `data` is a literal `{"__bin__": 5}` map (not a
/// binary) indexed a buffer list that has none: an index-out-of-range panic.
#[test]
fn result_naming_a_missing_binary_is_a_protocol_error() {
    // [{"data": {"__bin__": 5}}]
    let payload = [0x91, 0x81, 0xa4, b'd', b'a', b't', b'a', 0x81, 0xa7, b'_', b'_', b'b', b'i', b'n', b'_', b'_', 0x05];
    let e = protocol::decode_results(&payload).unwrap_err();
    assert_eq!(e.code, dgzoo::Code::Protocol);
    assert!(e.message.contains("refers to binary #5 of 0"), "{}", e.message);
    // With the binary present the same entry is a raw tensor.
    let mut ok = vec![0x91, 0x81, 0xa4, b'd', b'a', b't', b'a', 0xc4, 0x02, 1, 2];
    let (results, tensors) = protocol::decode_results(&ok).unwrap().unwrap();
    assert_eq!((results.len(), tensors.len(), tensors[0].data.as_bytes()), (1, 1, &[1u8, 2][..]));
    ok.truncate(7);
    assert!(protocol::decode_results(&ok).is_err(), "a cut payload is an error");
}
