//! Segmentation overlays: instance masks of `SegmentationYoloV8` results and class maps of
//! semantic `Segmentation` results, turned into a per-pixel class index over the original
//! image (0 = no mask) and blended with their class colour, as PySDK's `image_overlay` does.
use super::Geometry;
use crate::error::{Error, Result};
use crate::runtime::Tensor;
use base64::Engine as _;
use serde_json::Value;

/// Per-pixel class indices over the original image, `w * h`, 0 where nothing is drawn.
pub(super) struct ClassMap {
    pub w: u32,
    pub h: u32,
    pub ids: Vec<u8>,
}

/// The model-to-image mapping as an affine map fitted from two points near the model
/// input's centre (PySDK inverts its converter the same way), and its inverse.
struct Affine {
    a: (f64, f64),
    b: (f64, f64),
}

impl Affine {
    fn new(g: &Geometry) -> Affine {
        let (mw, mh) = (g.model_w as f64, g.model_h as f64);
        let p1 = (mw / 2.0, mh / 2.0);
        let p2 = (mw / 2.0 - 1.0, mh / 2.0 - 1.0);
        let f1 = g.converter.to_original(p1.0, p1.1);
        let f2 = g.converter.to_original(p2.0, p2.1);
        let a = ((f2.0 - f1.0) / (p2.0 - p1.0), (f2.1 - f1.1) / (p2.1 - p1.1));
        let a = (if a.0.abs() < 1e-12 { 1.0 } else { a.0 }, if a.1.abs() < 1e-12 { 1.0 } else { a.1 });
        Affine { a, b: (f1.0 - p1.0 * a.0, f1.1 - p1.1 * a.1) }
    }
    /// Image coordinates to model-input coordinates.
    fn to_model(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.b.0) / self.a.0, (y - self.b.1) / self.a.1)
    }
}

/// A JSON array of numbers of any nesting, flattened row-major, with its shape; or PySDK's
/// JSON form of an ndarray (`{"__ndarray__": true, "shape", "data"}`).
fn json_array(v: &Value) -> Option<(Vec<usize>, Vec<f64>)> {
    if let Some(o) = v.as_object() {
        let inner = o.get("data")?;
        let (_, flat) = json_array(inner)?;
        let shape: Vec<usize> = o.get("shape")?.as_array()?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<_>>()?;
        return (shape.iter().product::<usize>() == flat.len()).then_some((shape, flat));
    }
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f64>) -> Option<()> {
        match v {
            Value::Array(a) => {
                if shape.len() == depth {
                    shape.push(a.len());
                } else if shape[depth] != a.len() {
                    return None;
                }
                a.iter().try_for_each(|x| walk(x, depth + 1, shape, out))
            }
            Value::Number(n) => (shape.len() == depth).then(|| out.push(n.as_f64().unwrap_or(0.0))),
            _ => None,
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out)?;
    Some((shape, out))
}

/// The tensor a result's `data` refers to (`{"__tensor__": i}`) as (shape, values); `None` when
/// `data` refers to none, an error naming `what` when the tensor is not in `tensors`.
fn referenced_tensor(data: &Value, tensors: &[Tensor], what: &str) -> Result<Option<(Vec<usize>, Vec<f64>)>> {
    let Some(i) = data.get("__tensor__").and_then(Value::as_u64) else { return Ok(None) };
    let t = tensors.get(i as usize).ok_or_else(|| Error::invalid(format!("{what}: the result's tensor #{i} is missing")))?;
    Ok(Some((t.info.shape.iter().map(|&d| d.max(0) as usize).collect(), crate::postprocess::dequantize(t).into_iter().map(f64::from).collect())))
}

/// The class map of a semantic `Segmentation` result (its `data`: a JSON array, PySDK's ndarray
/// form, or a tensor of the result) as `(width, height, ids)` in model-output coordinates.
/// Unit dimensions are dropped; a 3-D array is taken as class scores and reduced by argmax
/// over its class axis (the shorter of the first and the last).
fn semantic_map(data: &Value, tensors: &[Tensor]) -> Result<(usize, usize, Vec<u8>)> {
    let (shape, values) = if let Some(t) = referenced_tensor(data, tensors, "Segmentation overlay")? {
        t
    } else {
        json_array(data).ok_or_else(|| Error::invalid("Segmentation overlay: the result's 'data' must be an array of class ids"))?
    };
    let dims: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
    match dims.as_slice() {
        [h, w] => Ok((*w, *h, values.iter().map(|&v| v as i64 as u8).collect())),
        [a, h, w] if a <= w => {
            let (c, n) = (*a, h * w);
            Ok((*w, *h, (0..n).map(|p| argmax((0..c).map(|i| values[i * n + p]))).collect()))
        }
        [h, w, c] => {
            let c = *c;
            Ok((*w, *h, (0..h * w).map(|p| argmax((0..c).map(|i| values[p * c + i]))).collect()))
        }
        _ => Err(Error::invalid(format!("Segmentation overlay: class map of shape {shape:?} is not 2-D (after dropping unit dimensions)"))),
    }
}

/// Index of the first largest value (numpy's argmax), as a class id.
fn argmax(v: impl Iterator<Item = f64>) -> u8 {
    let mut best = (0usize, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0 as u8
}

/// PySDK's `SegmentationResults.image_overlay` class indices: the original image's corners
/// mapped into the map, the map cropped (or padded with 0) to them and resized to the image
/// with nearest-neighbour sampling.
pub(super) fn semantic(result: &Value, tensors: &[Tensor], g: &Geometry, iw: u32, ih: u32) -> Result<ClassMap> {
    let data = result.get("data").ok_or_else(|| Error::invalid("Segmentation overlay: the result has no 'data'"))?;
    let (mw, mh, map) = semantic_map(data, tensors)?;
    let aff = Affine::new(g);
    let p1 = aff.to_model(0.0, 0.0);
    let p2 = aff.to_model(iw as f64, ih as f64);
    let (x0, y0, x1, y1) = (p1.0 as i64, p1.1 as i64, p2.0 as i64, p2.1 as i64);
    let (cw, ch) = ((x1 - x0).max(1), (y1 - y0).max(1));
    let mut ids = vec![0u8; (iw * ih) as usize];
    for y in 0..ih as i64 {
        // Nearest neighbour: the source pixel whose centre is closest.
        let sy = y0 + ((y as f64 + 0.5) * ch as f64 / ih as f64) as i64;
        if sy < 0 || sy >= mh as i64 {
            continue;
        }
        for x in 0..iw as i64 {
            let sx = x0 + ((x as f64 + 0.5) * cw as f64 / iw as f64) as i64;
            if sx >= 0 && sx < mw as i64 {
                ids[(y * iw as i64 + x) as usize] = map[sy as usize * mw + sx as usize];
            }
        }
    }
    Ok(ClassMap { w: iw, h: ih, ids })
}

/// A run-length mask of the wire (`{"x_min", "y_min", "width", "height", "data": base64 of
/// little-endian u32 values then run lengths}`) expanded to `height x width`.
fn decode_rle(m: &Value, g: &Geometry) -> Result<(i64, i64, usize, usize, Vec<bool>)> {
    let get = |k: &str, d: i64| m.get(k).and_then(Value::as_i64).unwrap_or(d);
    let (x_min, y_min) = (get("x_min", 0), get("y_min", 0));
    let (w, h) = (get("width", g.model_w as i64), get("height", g.model_h as i64));
    if w < 0 || h < 0 || w * h > 1 << 26 {
        return Err(Error::invalid(format!("mask overlay: bad mask size {w}x{h}")));
    }
    let b64 = m["data"].as_str().unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| Error::invalid(format!("mask overlay: mask data is not base64: {e}")))?;
    if raw.len() % 8 != 0 {
        return Err(Error::invalid("mask overlay: mask data is not pairs of u32 values and run lengths"));
    }
    let words: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (vals, runs) = words.split_at(words.len() / 2);
    let n = (w * h) as usize;
    let mut out = Vec::with_capacity(n);
    for (&v, &r) in vals.iter().zip(runs) {
        let r = (r as usize).min(n - out.len());
        out.resize(out.len() + r, v != 0);
    }
    out.resize(n, false);
    Ok((x_min, y_min, w as usize, h as usize, out))
}

/// One instance mask merged into `map` with index `id` (later masks win where they are set).
/// Wire masks (run-length, model-input coordinates) of a result with a `bbox` (image
/// coordinates) are first converted as PySDK's result class converts them (its overlay draws
/// only converted masks: a pixel is set where the bilinear mask is above 0); without a box they
/// are sampled through the model's converter. Masks already in image coordinates (`data` an
/// array, PySDK's converted form) are placed at their `x_min`/`y_min`.
pub(super) fn merge_instance(map: &mut ClassMap, mask: &Value, bbox: Option<&Value>, id: u8, g: Option<&Geometry>, tensors: &[Tensor]) -> Result<()> {
    let (iw, ih) = (map.w as i64, map.h as i64);
    let (x0, y0) = (mask.get("x_min").and_then(Value::as_i64).unwrap_or(0), mask.get("y_min").and_then(Value::as_i64).unwrap_or(0));
    if mask["data"].is_string() {
        let g = g.ok_or_else(|| Error::invalid("mask overlay: a run-length mask needs the model's input geometry"))?;
        let aff = Affine::new(g);
        let b: Vec<f64> = bbox.and_then(Value::as_array).map(|b| b.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        if let (&[x1, y1, x2, y2], Some(m)) = (b.as_slice(), mask.as_object()) {
            let (p, q) = (aff.to_model(x1, y1), aff.to_model(x2, y2));
            let conv = |x: f64, y: f64| g.converter.to_original(x, y);
            let converted = crate::postprocess::instance_mask_to_image(
                m,
                [p.0, p.1, q.0, q.1],
                [x1, y1, x2, y2],
                (g.model_w as f64, g.model_h as f64),
                (iw as f64, ih as f64),
                &conv,
            )
            .map_err(|e| Error::invalid(format!("mask overlay: {}", e.message)))?;
            let t = &converted.values;
            let (h, w) = (t.info.shape[0] as usize, t.info.shape[1] as usize);
            place(map, converted.x_min, converted.y_min, w, h, t.data.as_slice::<f32>().iter().map(|&v| v as f64), id);
            return Ok(());
        }
        let (x_min, y_min, w, h, bits) = decode_rle(mask, g)?;
        // Only the image pixels whose model coordinates fall inside the mask rectangle.
        let c0 = g.converter.to_original(x_min as f64, y_min as f64);
        let c1 = g.converter.to_original((x_min + w as i64) as f64, (y_min + h as i64) as f64);
        let (ix0, iy0) = ((c0.0.floor() as i64).clamp(0, iw), (c0.1.floor() as i64).clamp(0, ih));
        let (ix1, iy1) = ((c1.0.ceil() as i64).clamp(0, iw), (c1.1.ceil() as i64).clamp(0, ih));
        for y in iy0..iy1 {
            for x in ix0..ix1 {
                let (mx, my) = aff.to_model(x as f64 + 0.5, y as f64 + 0.5);
                let (mx, my) = (mx.floor() as i64 - x_min, my.floor() as i64 - y_min);
                if mx >= 0 && my >= 0 && (mx as usize) < w && (my as usize) < h && bits[my as usize * w + mx as usize] {
                    map.ids[(y * iw + x) as usize] = id;
                }
            }
        }
        return Ok(());
    }
    // A converted mask: in a tensor of the result (dgzoo's form) or a JSON array (PySDK's).
    let (shape, vals) = if let Some(t) = referenced_tensor(&mask["data"], tensors, "mask overlay")? {
        t
    } else {
        json_array(&mask["data"]).ok_or_else(|| Error::invalid("mask overlay: the mask's 'data' is neither run-length base64 nor an array"))?
    };
    let &[h, w] = shape.as_slice() else { return Err(Error::invalid(format!("mask overlay: mask of shape {shape:?} is not 2-D"))) };
    place(map, x0, y0, w, h, vals.into_iter(), id);
    Ok(())
}

/// A `h x w` float mask at (`x0`, `y0`) into `map`: `id` where a value is above 0 (PySDK's overlay).
fn place(map: &mut ClassMap, x0: i64, y0: i64, w: usize, h: usize, mut vals: impl Iterator<Item = f64>, id: u8) {
    let (iw, ih) = (map.w as i64, map.h as i64);
    for my in 0..h as i64 {
        for mx in 0..w as i64 {
            let Some(v) = vals.next() else { return };
            let (x, y) = (x0 + mx, y0 + my);
            if x >= 0 && y >= 0 && x < iw && y < ih && v > 0.0 {
                map.ids[(y * iw + x) as usize] = id;
            }
        }
    }
}
