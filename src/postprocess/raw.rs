//! Raw tensors (`None`, `Base`, `Null`) and `Dequantization`.
use super::{dequantize, tensor_entry, PostOutput};
use crate::runtime::{ElemType, Tensor};
use serde_json::{json, Value};

pub(super) fn raw(outputs: Vec<Tensor>, ids: &[i64]) -> PostOutput {
    let results = outputs.iter().enumerate().map(|(i, t)| tensor_entry(t, i, ids.get(i).copied().unwrap_or(i as i64))).collect();
    PostOutput { results, tensors: outputs, has_coordinates: false }
}

pub(super) fn dequantization(outputs: Vec<Tensor>, ids: &[i64]) -> PostOutput {
    let tensors: Vec<Tensor> = outputs
        .iter()
        .map(|t| {
            let v = dequantize(t);
            let mut info = t.info.clone();
            info.dtype = ElemType::F32;
            Tensor { info, data: crate::runtime::AlignedBuf::from_bytes(bytemuck::cast_slice(&v)) }
        })
        .collect();
    let mut results: Vec<Value> = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let mut e = tensor_entry(t, i, ids.get(i).copied().unwrap_or(i as i64));
        if let Some(q) = &outputs[i].info.quant {
            e["quantization"] = json!({"axis": q.axis, "scale": q.scale.iter().map(|&s| s as f64).collect::<Vec<_>>(), "zero": q.zero});
        }
        results.push(e);
    }
    PostOutput { results, tensors, has_coordinates: false }
}
