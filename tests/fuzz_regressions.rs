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
    let p = ModelParams::from_value(serde_json::json!({"POST_PROCESS": [{"OutputPostprocessType": "Classification", "OutputTopK": 4}]})).unwrap();
    let cfg = PostConfig::from_params(&p);
    let scores: Vec<f32> = (0..64).map(|i| if i % 3 == 0 { f32::NAN } else { (i % 7) as f32 / 7.0 }).collect();
    let t = f32_tensor("scores", &[1, 64], &scores);
    let out = postprocess::run(&cfg, vec![t], &[0], &Default::default(), (224.0, 224.0)).unwrap();
    let got: Vec<f64> = out.results.iter().map(|r| r["score"].as_f64().expect("a number, not NaN")).collect();
    assert_eq!(got.len(), 4);
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "{got:?}");
    assert!((got[0] - 6.0 / 7.0).abs() < 1e-6, "{got:?}");
}

/// postprocess: a DetectionYoloHailo tensor whose first class count is huge (a float that
/// saturates to `usize::MAX`) overflowed `pos + 5 * n` while slicing the rows. It is now the
/// "ends inside the boxes" error, and a NaN count reads as zero boxes.
#[test]
fn hailo_box_count_that_overflows_the_row_range_is_an_error() {
    use dgzoo::params::ModelParams;
    use dgzoo::postprocess::{self, PostConfig};
    let p = ModelParams::from_value(serde_json::json!({"POST_PROCESS": [{"OutputPostprocessType": "DetectionYoloHailo", "OutputNumClasses": 2}]})).unwrap();
    let cfg = PostConfig::from_params(&p);
    let tensor = |vals: &[f32]| f32_tensor("nms", &[vals.len() as i64], vals);
    for count in [f32::MAX, 1e30, (usize::MAX / 5) as f32] {
        let e = postprocess::run(&cfg, vec![tensor(&[count, 0.1, 0.1, 0.5, 0.5, 0.9])], &[0], &Default::default(), (64.0, 64.0)).unwrap_err();
        assert!(e.message.contains("ends inside the"), "{}", e.message);
    }
    // NaN boxes of class 0, then one box of class 1: the model still gives its one detection.
    let out = postprocess::run(&cfg, vec![tensor(&[f32::NAN, 1.0, 0.25, 0.25, 0.75, 0.75, 0.9])], &[0], &Default::default(), (64.0, 64.0)).unwrap();
    assert_eq!(out.results.len(), 1, "{:?}", out.results);
    assert_eq!(out.results[0]["category_id"], 1);
}

/// A float tensor as a runtime hands it to the post-processors.
fn f32_tensor(name: &str, shape: &[i64], vals: &[f32]) -> dgzoo::runtime::Tensor {
    use dgzoo::runtime::{AlignedBuf, ElemType, Tensor, TensorInfo};
    Tensor {
        info: TensorInfo { name: name.into(), shape: shape.to_vec(), dtype: ElemType::F32, quant: None, id: None },
        data: AlignedBuf::from_bytes(bytemuck::cast_slice(vals)),
    }
}

/// `image_preprocess` (a 5-minute run): a crop-last fit with a small crop percentage resized
/// the image to (model size / crop percentage) first. 0.01 cost 1.5 GB and 3 s for one
/// 224x224 frame; 0.001 asked for a 150 GB buffer and aborted the process; a tiny one
/// overflowed the size arithmetic. Past the image limits it is now an error, and the model
/// stays usable.
#[test]
fn crop_last_with_a_tiny_crop_percentage_is_refused_not_an_abort() {
    use dgzoo::image_ops::{self, PadMethod, ResizeMethod, RgbImage};
    let img = RgbImage::filled(224, 224, [10, 20, 30]);
    for cp in [0.001, 1e-300, f64::MIN_POSITIVE] {
        let Err(e) = image_ops::fit(&img, 224, 224, PadMethod::CropLast, cp, ResizeMethod::Bilinear, [0, 0, 0]) else {
            panic!("crop percentage {cp} was not refused")
        };
        assert!(e.message.contains("crop-last") && e.message.contains("before the centre crop"), "{}", e.message);
        assert_eq!(
            image_ops::fit_converter(224, 224, 224, 224, PadMethod::CropLast, cp),
            image_ops::fit_converter(224, 224, 224, 224, PadMethod::Stretch, 1.0)
        );
    }
    // Within the limits it still fits, to the model size.
    let fit = image_ops::fit(&img, 224, 224, PadMethod::CropLast, 0.5, ResizeMethod::Bilinear, [0, 0, 0]).unwrap();
    assert_eq!((fit.image.width, fit.image.height), (224, 224));
    assert_eq!(image_ops::crop_last_size(224, 224, 224, 224, 0.5).unwrap(), (448, 448));
}
