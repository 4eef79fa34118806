//! Every post-processor with fuzzed tensor shapes, dtypes, quantisation and values, and fuzzed
//! settings (thresholds, top-k, class counts, strides, anchors, DFL bins, landmarks), then the
//! coordinate mapping, class filter and result JSON that follow it in every inference path.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use dgzoo::params::ModelParams;
use dgzoo::postprocess::{self, PostConfig, PostprocessType};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Every known type plus the empty name (None) and one PySDK does not know.
fn kinds() -> impl Iterator<Item = &'static str> {
    ["", "NoSuchType"].into_iter().chain(PostprocessType::KNOWN.iter().map(|(n, _)| *n))
}

fn threshold(u: &mut Unstructured) -> arbitrary::Result<f64> {
    Ok(match u8::arbitrary(u)? % 4 {
        0 => f64::arbitrary(u)?,
        _ => f64::from(u.int_in_range(0..=100u8)?) / 100.0,
    })
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let names: Vec<&str> = kinds().collect();
    let kind_name = *u.choose(&names)?;
    let kind = PostprocessType::parse(kind_name);
    // Settings only the parameter reader builds (tensor wiring, SSD scales, pose connections)
    // come from fuzzed model JSON; the numeric ones are set directly below.
    let mut pj = json!({"POST_PROCESS": [{"OutputPostprocessType": kind_name}]});
    let pp = &mut pj["POST_PROCESS"][0];
    if bool::arbitrary(u)? {
        let n = u.int_in_range(0..=5usize)?;
        pp["PostProcessorInputs"] = json!((0..n).map(|_| Ok(i64::from(u.int_in_range(0..=6u8)?))).collect::<arbitrary::Result<Vec<i64>>>()?);
    }
    for k in ["YScale", "XScale", "HScale", "WScale"] {
        if bool::arbitrary(u)? {
            pp[k] = json!(f64::from(f32::arbitrary(u)?));
        }
    }
    if bool::arbitrary(u)? {
        let from = u.int_in_range(0..=20u8)?;
        pp["Connections"] = json!({from.to_string(): [u.int_in_range(0..=20u8)?, i64::from(i8::arbitrary(u)?)]});
    }
    let base = PostConfig::from_params(&ModelParams::from_value(pj).expect("an object"));
    let nscales = u.int_in_range(0..=4usize)?;
    let mut strides = Vec::new();
    let mut anchors = Vec::new();
    for _ in 0..nscales {
        strides.push(dgzoo_fuzz::small(u, 64)?);
        let n = u.int_in_range(0..=4usize)?;
        anchors.push((0..n).map(|_| Ok([f32::arbitrary(u)?, f32::arbitrary(u)?])).collect::<arbitrary::Result<Vec<_>>>()?);
    }
    let cfg = PostConfig {
        kind,
        conf_threshold: threshold(u)?,
        nms_threshold: threshold(u)?,
        top_k: u.int_in_range(0..=1100usize)?,
        max_detections: u.int_in_range(0..=300usize)?,
        max_detections_per_class: u.int_in_range(0..=300usize)?,
        max_classes_per_detection: u.int_in_range(1..=8usize)?,
        regular_nms: bool::arbitrary(u)?,
        softmax: bool::arbitrary(u)?,
        sigmoid_cls: bool::arbitrary(u)?,
        num_classes: dgzoo_fuzz::small(u, 100)?.max(0) as usize,
        class_id_adjustment: i64::from(i8::arbitrary(u)?),
        reg_max: u.int_in_range(1..=20usize)?,
        strides,
        anchors,
        num_landmarks: u.int_in_range(0..=20usize)?,
        ..base
    };
    let n = u.int_in_range(0..=6usize)?;
    let mut outputs = Vec::with_capacity(n);
    for _ in 0..n {
        outputs.push(dgzoo_fuzz::tensor(u)?);
    }
    let ids: Vec<i64> = (0..n as i64).collect();
    let labels: BTreeMap<i64, String> = (0..u.int_in_range(0..=10i64)?).map(|i| (i, format!("label{i}"))).collect();
    let input_wh = (f32::from(u.int_in_range(0..=640u16)?), f32::from(u.int_in_range(0..=640u16)?));
    let Ok(mut out) = postprocess::run(&cfg, outputs, &ids, &labels, input_wh) else { return Ok(()) };
    for r in &out.results {
        if let Some(i) = r.get("data").and_then(|d| d.get("__tensor__")).and_then(Value::as_u64) {
            assert!((i as usize) < out.tensors.len(), "result references tensor {i} of {}", out.tensors.len());
        }
    }
    if out.has_coordinates {
        postprocess::map_coordinates(&mut out.results, &cfg.kind, &|x, y| (x * 2.0, y * 0.5));
    }
    let class_set: Vec<Value> = if bool::arbitrary(u)? { vec![Value::from(1), Value::from(3)] } else { vec![Value::from("label1")] };
    postprocess::filter_class_set(&mut out.results, &class_set);
    let _ = postprocess::to_json(&out.results);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
