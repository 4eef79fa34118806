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

/// postprocess: a tensor whose byte length is not a multiple of its element size (the fuzz
/// target's tensors could be built so) made `AlignedBuf::as_slice` panic inside bytemuck while
/// dequantising. It now views the whole elements only.
#[test]
fn tensor_bytes_not_a_multiple_of_the_element_size_do_not_panic() {
    use dgzoo::runtime::{AlignedBuf, ElemType, Tensor, TensorInfo};
    let data = AlignedBuf::from_bytes(&[0, 0, 128, 63, 7, 7]);
    assert_eq!(data.as_slice::<f32>(), &[1.0f32]);
    assert_eq!(data.as_slice::<u64>(), &[] as &[u64]);
    let t = Tensor { info: TensorInfo { name: "t".into(), shape: vec![1], dtype: ElemType::F32, quant: None, id: None }, data };
    assert_eq!(dgzoo::postprocess::dequantize(&t), vec![1.0]);
}

/// postprocess: a classification output holding NaN scores made the top-k sort panic ("user-
/// provided comparison function does not correctly implement a total order"). NaN now ranks
/// last and the real scores keep their order.
#[test]
fn classification_scores_with_nan_rank_last_without_a_panic() {
    use dgzoo::params::ModelParams;
    use dgzoo::postprocess::{self, PostConfig};
    use dgzoo::runtime::{AlignedBuf, ElemType, Tensor, TensorInfo};
    let p = ModelParams::from_value(serde_json::json!({"POST_PROCESS": [{"OutputPostprocessType": "Classification", "OutputTopK": 4}]})).unwrap();
    let cfg = PostConfig::from_params(&p);
    let scores: Vec<f32> = (0..64).map(|i| if i % 3 == 0 { f32::NAN } else { (i % 7) as f32 / 7.0 }).collect();
    let t = Tensor {
        info: TensorInfo { name: "scores".into(), shape: vec![1, 64], dtype: ElemType::F32, quant: None, id: None },
        data: AlignedBuf::from_bytes(&scores.iter().flat_map(|f| f.to_ne_bytes()).collect::<Vec<u8>>()),
    };
    let out = postprocess::run(&cfg, vec![t], &[0], &Default::default(), (224.0, 224.0)).unwrap();
    let got: Vec<f64> = out.results.iter().map(|r| r["score"].as_f64().expect("a number, not NaN")).collect();
    assert_eq!(got.len(), 4);
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "{got:?}");
    assert!((got[0] - 6.0 / 7.0).abs() < 1e-6, "{got:?}");
}
