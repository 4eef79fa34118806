//! Helpers shared by the fuzz targets: turning fuzzer bytes into the typed values the core's
//! entry points take, with sizes bounded so one input never costs more than a few MiB.
use arbitrary::{Arbitrary, Unstructured};
use dgzoo::runtime::{AlignedBuf, ElemType, Quant, Tensor, TensorInfo};

/// Every element type a runtime or the AI server can hand the core.
pub const ELEM_TYPES: [ElemType; 12] = [
    ElemType::F32,
    ElemType::F64,
    ElemType::F16,
    ElemType::U8,
    ElemType::I8,
    ElemType::U16,
    ElemType::I16,
    ElemType::U32,
    ElemType::I32,
    ElemType::U64,
    ElemType::I64,
    ElemType::Bool,
];

/// Largest element count of one fuzzed tensor.
pub const MAX_ELEMS: usize = 1 << 16;

/// A small integer, biased toward the values shapes and parameters actually take.
pub fn small(u: &mut Unstructured, max: i64) -> arbitrary::Result<i64> {
    Ok(match u8::arbitrary(u)? % 8 {
        0 => -1,
        1 => 0,
        _ => u.int_in_range(1..=max)?,
    })
}

/// A tensor with a fuzzed rank (0..=5), dims (some zero), dtype, optional quantisation, and
/// fuzzed values. Its data always holds exactly the elements its shape says, as every tensor
/// the core is handed does (runtimes, `protocol::decode_results`); shapes that do not fit the
/// post-processor are what is fuzzed.
pub fn tensor(u: &mut Unstructured) -> arbitrary::Result<Tensor> {
    let dtype = *u.choose(&ELEM_TYPES)?;
    let rank = u.int_in_range(0..=5)?;
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        shape.push(small(u, 96)?);
    }
    for d in &mut shape {
        *d = (*d).max(0);
    }
    let elems: Option<usize> = shape.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
    let len = match elems {
        Some(n) if n <= MAX_ELEMS => n * dtype.size(),
        // Too big for one input: a flat tensor of the fuzzer's size instead.
        _ => {
            let n = u.int_in_range(0..=1024usize)?;
            shape = vec![n as i64];
            n * dtype.size()
        }
    };
    let mut data = vec![0u8; len];
    // Values: fuzzer bytes first, the rest a repeating pattern (cheap, still varied).
    let avail = u.len().min(len);
    if avail > 0 {
        data[..avail].copy_from_slice(u.bytes(avail)?);
    }
    for (i, b) in data.iter_mut().enumerate().skip(avail) {
        *b = (i as u8).wrapping_mul(37);
    }
    let quant = if bool::arbitrary(u)? {
        let n = u.int_in_range(0..=4usize)?;
        let mut scale = Vec::new();
        let mut zero = Vec::new();
        for _ in 0..n {
            scale.push(f32::arbitrary(u)?);
            zero.push(i64::from(i16::arbitrary(u)?));
        }
        Some(Quant { axis: i32::from(i8::arbitrary(u)?), scale, zero })
    } else {
        None
    };
    let info = TensorInfo { name: String::arbitrary(u)?, shape, dtype, quant, id: Option::<i64>::arbitrary(u)? };
    Ok(Tensor { info, data: AlignedBuf::from_bytes(&data) })
}

/// Run `f` on a JSON value parsed from the fuzzer's bytes, if they are JSON.
pub fn json(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(bytes).ok()
}
