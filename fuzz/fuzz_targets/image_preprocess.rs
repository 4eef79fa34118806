//! Image decoding and the whole pre-processing chain with fuzzed parameters: an encoded image
//! (JPEG/PNG/BMP) or raw pixels with a fuzzed stride and colour order, header dimensions,
//! decode, PySDK's fit (pad method, crop percentage, resize method, fill colour) to a fuzzed
//! model size, the optional JPEG round trip, and the tensor conversion (layout, dtype,
//! normalisation, quantisation) read from model parameters, as `predict_local` runs them.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use dgzoo::image_ops::{self, PadMethod, ResizeMethod};
use dgzoo::params::ModelParams;
use dgzoo::preprocess::InputSpec;
use dgzoo::runtime::TensorInfo;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const PADS: [&str; 4] = ["stretch", "letterbox", "crop-first", "crop-last"];
const RESIZES: [&str; 5] = ["nearest", "bilinear", "area", "bicubic", "lanczos"];
/// Largest decoded image the target goes on to fit (bigger ones are decoded, then dropped:
/// the decode limits are what is under test there, not the resize speed).
const MAX_FIT_PIXELS: u64 = 1 << 22;

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let w = u.int_in_range(0..=320u32)?;
    let h = u.int_in_range(0..=320u32)?;
    let pad = PadMethod::parse(u.choose(&PADS)?).expect("known pad");
    let resize = ResizeMethod::parse(u.choose(&RESIZES)?).expect("known resize");
    let crop = match u8::arbitrary(u)? % 4 {
        0 => f64::arbitrary(u)?,
        _ => f64::from(u.int_in_range(0..=110u8)?) / 100.0,
    };
    let fill = <[u8; 3]>::arbitrary(u)?;
    let raw = bool::arbitrary(u)?;
    let img = if raw {
        let (rw, rh) = (u.int_in_range(0..=300u32)?, u.int_in_range(0..=300u32)?);
        let stride = match u8::arbitrary(u)? % 4 {
            0 => 0,
            1 => usize::arbitrary(u)?,
            _ => rw as usize * 3 + usize::from(u.int_in_range(0..=7u8)?),
        };
        let bgr = bool::arbitrary(u)?;
        let len = u.arbitrary_len::<u8>()?.min(1 << 20);
        let data = u.bytes(len)?;
        match image_ops::from_raw(data, rw, rh, stride, bgr) {
            Ok(i) => i,
            Err(_) => return Ok(()),
        }
    } else {
        let n = u.len();
        let bytes = u.bytes(n)?;
        let dims = image_ops::dimensions(bytes);
        let decoded = image_ops::decode(bytes);
        match (&dims, &decoded) {
            // The header's size is what decoding gives.
            (Ok((dw, dh)), Ok(i)) => assert_eq!((*dw, *dh), (i.width, i.height), "header size differs from the decoded size"),
            (Err(_), Ok(i)) => panic!("decoded a {}x{} image whose header check failed", i.width, i.height),
            _ => {}
        }
        match decoded {
            Ok(i) if u64::from(i.width) * u64::from(i.height) <= MAX_FIT_PIXELS => i,
            _ => return Ok(()),
        }
    };
    // A crop-last fit resizes to (model size / crop percentage) first: past MAX_FIT_PIXELS that
    // is resize speed again (refused beyond the image limits: `crop_last_size`).
    let cp = if crop.is_finite() && crop > 0.0 && crop <= 1.0 { crop } else { 1.0 };
    let big = matches!(pad, PadMethod::CropLast)
        && image_ops::crop_last_size(i64::from(img.width), i64::from(img.height), i64::from(w), i64::from(h), cp).is_ok_and(|(nw, nh)| (nw * nh) as u64 > MAX_FIT_PIXELS);
    if big {
        return Ok(());
    }
    let Ok(fit) = image_ops::fit(&img, w, h, pad, crop, resize, fill) else { return Ok(()) };
    if w > 0 && h > 0 && !img.is_empty() {
        assert_eq!((fit.image.width, fit.image.height), (w, h), "fit did not produce the model size");
    }
    let _ = fit.converter.to_original(f64::from(w) / 2.0, f64::from(h) / 2.0);
    let fitted = if bool::arbitrary(u).unwrap_or(false) { image_ops::jpeg_roundtrip(&fit.image).unwrap_or(fit.image) } else { fit.image };
    // The tensor conversion for this model size with fuzzed layout/normalisation/quantisation.
    let dtype = *u.choose(&dgzoo_fuzz::ELEM_TYPES).unwrap_or(&dgzoo::runtime::ElemType::U8);
    let nchw = bool::arbitrary(u).unwrap_or(false);
    let c = if bool::arbitrary(u).unwrap_or(true) { 3 } else { 1 };
    let params = json!({
        "ConfigVersion": 11,
        "InputType": ["Image"],
        "InputN": [1], "InputH": [h], "InputW": [w], "InputC": [c],
        "InputTensorLayout": [if nchw { "NCHW" } else { "NHWC" }],
        "InputColorSpace": [if bool::arbitrary(u).unwrap_or(false) { "BGR" } else { "RGB" }],
        "InputNormEn": [bool::arbitrary(u).unwrap_or(false)],
        "InputNormCoeff": [f64::from(f32::arbitrary(u).unwrap_or(1.0))],
        "InputNormMean": [f32::arbitrary(u).unwrap_or(0.0), 0.5, 0.25],
        "InputNormStd": [f32::arbitrary(u).unwrap_or(1.0)],
        "InputQuantEn": [bool::arbitrary(u).unwrap_or(false)],
        "InputQuantScale": [f64::from(f32::arbitrary(u).unwrap_or(1.0))],
        "InputQuantOffset": [f64::from(f32::arbitrary(u).unwrap_or(0.0))],
    });
    let Ok(p) = ModelParams::from_value(params) else { return Ok(()) };
    let shape = if nchw { vec![1, c, i64::from(h), i64::from(w)] } else { vec![1, i64::from(h), i64::from(w), c] };
    let info = TensorInfo { name: "input".into(), shape, dtype, quant: None, id: None };
    if let Ok(spec) = InputSpec::new(&p, 0, &info) {
        if let Ok(t) = spec.image_to_tensor(&fitted.data, &info) {
            assert_eq!(t.data.as_bytes().len(), t.num_elements() * t.info.dtype.size());
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
