//! Server-side input conversion (results-and-properties.md §3.4): a model-sized RGB image
//! becomes the model's input tensor — colour order, normalisation (coefficient, mean/std),
//! quantisation and NHWC/NCHW layout — driven by the model JSON. Shared by local inference and
//! the AI server; the client-side resize/pad lives in `image_ops`.
use crate::error::{Error, Result};
use crate::params::ModelParams;
use crate::runtime::{AlignedBuf, ElemType, Tensor, TensorInfo};

/// Per-input conversion settings read once from the parameters.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub bgr: bool,
    pub nchw: bool,
    pub dtype: ElemType,
    /// Concrete tensor shape fed to the runtime.
    pub shape: Vec<i64>,
    norm: Option<(f64, Vec<f32>, Vec<f32>)>,
    quant: Option<(f32, f32)>,
}

impl InputSpec {
    /// Settings for input `idx`, matched against the runtime's view of that input.
    pub fn new(params: &ModelParams, idx: usize, info: &TensorInfo) -> Result<Self> {
        let dims = params.input_shape(idx, None);
        let layout = params.str("InputTensorLayout", idx);
        let nchw = match layout.as_str() {
            "NCHW" => true,
            "NHWC" => false,
            _ => info.is_nchw(),
        };
        // Model-side H, W, C from the JSON (N,H,W,C); fall back to the runtime's shape.
        let (mut h, mut w, mut c) = if dims.len() == 4 { (dims[1], dims[2], dims[3]) } else { (0, 0, 0) };
        if h <= 0 || w <= 0 || c <= 0 {
            let s = &info.shape;
            if s.len() == 4 {
                (h, w, c) = if nchw { (s[2], s[3], s[1]) } else { (s[1], s[2], s[3]) };
            }
        }
        if h <= 0 || w <= 0 || c <= 0 {
            return Err(Error::bad_model(format!("cannot determine the image size of model input #{idx} (shape {dims:?}, runtime shape {:?})", info.shape)));
        }
        let shape = if nchw { vec![1, c, h, w] } else { vec![1, h, w, c] };
        if info.shape.len() == 4 && !info.shape.iter().zip(&shape).all(|(a, b)| *a < 0 || a == b) {
            return Err(Error::bad_model(format!(
                "model input #{idx} '{}' has shape {:?}, but the configuration describes {shape:?}",
                info.name, info.shape
            )));
        }
        let norm = params.bool("InputNormEn", idx).then(|| (params.f64("InputNormCoeff", idx), params.f32_vec("InputNormMean", idx), params.f32_vec("InputNormStd", idx)));
        let quant = (params.bool("InputQuantEn", idx) && info.dtype.is_integer())
            .then(|| (params.f64("InputQuantScale", idx) as f32, params.f64("InputQuantOffset", idx) as f32));
        Ok(InputSpec {
            width: w as usize,
            height: h as usize,
            channels: c as usize,
            bgr: params.str("InputColorSpace", idx) == "BGR",
            nchw,
            dtype: info.dtype,
            shape,
            norm,
            quant,
        })
    }

    /// Value for channel `c` and pixel value `p`, as f32 before the final cast.
    fn value(&self, c: usize, p: u8) -> f32 {
        let mut v = p as f32;
        if let Some((coeff, mean, std)) = &self.norm {
            v = (p as f64 * coeff) as f32;
            if !mean.is_empty() {
                v -= mean[c % mean.len()];
            }
            if !std.is_empty() {
                let s = std[c % std.len()];
                if s != 0.0 {
                    v /= s;
                }
            }
        }
        if let Some((scale, offset)) = self.quant {
            v = (v / if scale == 0.0 { 1.0 } else { scale } + offset).round();
        }
        v
    }

    /// Convert an interleaved RGB8 image of exactly `width`×`height` into the input tensor.
    pub fn image_to_tensor(&self, rgb: &[u8], info: &TensorInfo) -> Result<Tensor> {
        let (w, h, ch) = (self.width, self.height, self.channels);
        if rgb.len() != w * h * 3 {
            return Err(Error::invalid(format!("image data is {} bytes, expected {w}x{h}x3 = {}", rgb.len(), w * h * 3)));
        }
        if ch != 3 && ch != 1 {
            return Err(Error::unsupported(format!("image inputs with {ch} channels are not supported")));
        }
        // A lookup table per channel: every conversion step is a function of (channel, pixel).
        let lut: Vec<[f32; 256]> = (0..ch)
            .map(|c| {
                let mut t = [0f32; 256];
                for (p, slot) in t.iter_mut().enumerate() {
                    *slot = self.value(c, p as u8);
                }
                t
            })
            .collect();
        // Source channel for output channel c (model colour order).
        let src_ch = |c: usize| if ch == 1 { 0 } else if self.bgr { 2 - c } else { c };
        let n = w * h * ch;
        let mut out = AlignedBuf::zeroed(n * self.dtype.size());
        macro_rules! fill {
            ($t:ty, $conv:expr) => {{
                let dst = out.as_slice_mut::<$t>();
                let conv = $conv;
                if self.nchw {
                    for c in 0..ch {
                        let (sc, l) = (src_ch(c), &lut[c]);
                        let plane = &mut dst[c * w * h..(c + 1) * w * h];
                        for (i, d) in plane.iter_mut().enumerate() {
                            *d = conv(l[rgb[i * 3 + sc] as usize]);
                        }
                    }
                } else {
                    for i in 0..w * h {
                        for c in 0..ch {
                            dst[i * ch + c] = conv(lut[c][rgb[i * 3 + src_ch(c)] as usize]);
                        }
                    }
                }
            }};
        }
        match self.dtype {
            ElemType::F32 => fill!(f32, |v: f32| v),
            ElemType::F64 => fill!(f64, |v: f32| v as f64),
            ElemType::U8 => fill!(u8, |v: f32| v.round().clamp(0.0, 255.0) as u8),
            ElemType::I8 => fill!(i8, |v: f32| v.round().clamp(-128.0, 127.0) as i8),
            ElemType::I16 => fill!(i16, |v: f32| v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16),
            ElemType::U16 => fill!(u16, |v: f32| v.round().clamp(0.0, u16::MAX as f32) as u16),
            ElemType::I32 => fill!(i32, |v: f32| v.round() as i32),
            other => return Err(Error::unsupported(format!("image input tensors of type {} are not supported", other.dg_name()))),
        }
        Ok(Tensor { info: TensorInfo { name: info.name.clone(), shape: self.shape.clone(), dtype: self.dtype, quant: info.quant.clone(), id: info.id }, data: out })
    }
}

/// A raw tensor input (`InputType: Tensor`, or bytes already in the model's format): checked
/// against the model's shape and element type, then passed through.
pub fn raw_tensor(data: &[u8], info: &TensorInfo, shape: &[i64], idx: usize) -> Result<Tensor> {
    let n: i64 = shape.iter().product();
    let expected = n.max(0) as usize * info.dtype.size();
    if data.len() != expected {
        return Err(Error::invalid(format!(
            "Shape of input tensor #{idx} does not match the model: got {} bytes, expected {expected} bytes ({shape:?} of {})",
            data.len(),
            info.dtype.dg_name()
        )));
    }
    Ok(Tensor { info: TensorInfo { name: info.name.clone(), shape: shape.to_vec(), dtype: info.dtype, quant: info.quant.clone(), id: info.id }, data: AlignedBuf::from_bytes(data) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(shape: &[i64], dtype: ElemType) -> TensorInfo {
        TensorInfo { name: "x".into(), shape: shape.to_vec(), dtype, quant: None, id: None }
    }

    #[test]
    fn normalise_mean_std_nhwc() {
        let p = ModelParams::from_value(json!({"PRE_PROCESS":[{"InputN":1,"InputH":1,"InputW":2,"InputC":3,"InputImgNormEn":true,
            "InputImgNormCoeff":0.00392156862745098,"InputImgMean":[0.5,0.5,0.5],"InputImgStd":[0.5,0.5,0.5],"InputTensorLayout":"NHWC"}]}))
        .unwrap();
        let i = info(&[1, 1, 2, 3], ElemType::F32);
        let s = InputSpec::new(&p, 0, &i).unwrap();
        let t = s.image_to_tensor(&[0, 255, 51, 255, 0, 102], &i).unwrap();
        let v = t.data.as_slice::<f32>();
        assert!((v[0] + 1.0).abs() < 1e-6 && (v[1] - 1.0).abs() < 1e-6 && (v[2] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
        assert_eq!(t.info.shape, vec![1, 1, 2, 3]);
    }

    #[test]
    fn nchw_bgr_and_quant() {
        let p = ModelParams::from_value(json!({"PRE_PROCESS":[{"InputN":1,"InputH":1,"InputW":2,"InputC":3,"InputColorSpace":"BGR",
            "InputTensorLayout":"NCHW","InputQuantEn":true}]}))
        .unwrap();
        let i = info(&[1, 3, 1, 2], ElemType::U8);
        let s = InputSpec::new(&p, 0, &i).unwrap();
        let t = s.image_to_tensor(&[1, 2, 3, 4, 5, 6], &i).unwrap();
        // planes in BGR order: B = [3,6], G = [2,5], R = [1,4]
        assert_eq!(t.data.as_bytes(), &[3, 6, 2, 5, 1, 4]);
        assert!(s.image_to_tensor(&[1, 2, 3], &i).is_err());
    }

    #[test]
    fn raw_tensor_size_checked() {
        let i = info(&[1, 4], ElemType::F32);
        assert!(raw_tensor(&[0u8; 16], &i, &[1, 4], 0).is_ok());
        assert!(raw_tensor(&[0u8; 15], &i, &[1, 4], 0).unwrap_err().message.contains("does not match"));
    }
}
