//! Inference through an AI server (PySDK's AI-server model): client-side fit
//! (`image_ops::fit`), JPEG or RAW encoding of the model-sized image, one frame on a stream,
//! msgpack results mapped back to the original image. Streams are pooled per model and
//! re-opened when the parameters change, so concurrent `predict` callers each get one (batch
//! and async pipeline frames on a stream of their own: `pipeline::remote`).
use crate::aiclient::{AiServerClient, RemoteStream};
use crate::error::{Code, Error, Result};
use crate::frame::{InferenceResult, Input};
use crate::image_ops::{self, CoordConverter, RgbImage};
use crate::params::ModelParams;
use crate::postprocess;
use crate::protocol;
use crate::state::{is_image_input, ModelState};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration;

/// The remote side of a model.
pub struct RemoteBackend {
    pub client: AiServerClient,
    /// Idle streams with the configuration they were opened with.
    pool: Mutex<Vec<(String, RemoteStream)>>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteBackend({})", self.client.server())
    }
}

impl RemoteBackend {
    pub fn new(client: AiServerClient) -> Self {
        RemoteBackend { client, pool: Mutex::new(Vec::new()) }
    }

    fn take(&self, key: &str) -> Option<RemoteStream> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        // Streams opened with other settings are stale: end them.
        let (keep, stale): (Vec<_>, Vec<_>) = pool.drain(..).partition(|(k, _)| k == key);
        *pool = keep;
        for (_, s) in stale {
            s.close();
        }
        pool.pop().map(|(_, s)| s)
    }

    fn clear(&self) {
        let idle: Vec<_> = self.pool.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for (_, s) in idle {
            s.close();
        }
    }

    fn give_back(&self, key: String, s: RemoteStream) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).push((key, s));
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        for (_, s) in self.pool.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            s.close();
        }
    }
}

/// The model parameters a server gets for this model's frames: the model's own, with
/// `OutputPostprocessType` "None" while a custom post-processor is set (it needs the raw
/// output tensors, which [`finish`] hands to it).
pub(crate) fn wire_params(st: &ModelState) -> ModelParams {
    let mut p = st.params.clone();
    if st.custom_post.is_set() {
        let _ = p.set("OutputPostprocessType", 0, json!("None"));
    }
    p
}

/// The stream configuration PySDK sends: the model JSON with its edits, plus the inference
/// timeout as `DeviceTimeout_ms`.
pub(crate) fn stream_config(st: &ModelState) -> Value {
    let mut p = wire_params(st);
    let _ = p.set("DeviceTimeout_ms", 0, json!(st.inference_timeout_s * 1000.0));
    p.to_value()
}

/// Model-sized pixels as the RAW frame: interleaved, `InputColorSpace` order, `uint8` or
/// `float32` per `InputRawDataType`.
fn raw_frame(p: &ModelParams, i: usize, img: &RgbImage) -> Result<Vec<u8>> {
    let px = if p.str("InputColorSpace", i) == "BGR" { img.to_bgr() } else { img.data.clone() };
    match p.str("InputRawDataType", i).as_str() {
        "DG_UINT8" => Ok(px),
        "DG_FLT" => Ok(px.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()),
        other => Err(Error::unsupported(format!("Model image format 'RAW/{other}' is not supported by preprocessor"))),
    }
}

/// Model input size (W, H) from the configured shape `[N, H, W, C]`.
fn model_wh(p: &ModelParams, i: usize) -> Result<(u32, u32)> {
    let s = p.input_shape(i, None);
    if s.len() == 4 && s[1] > 0 && s[2] > 0 {
        Ok((s[2] as u32, s[1] as u32))
    } else {
        Err(Error::bad_model(format!("cannot determine the image size of model input #{i} (shape {s:?})")))
    }
}

/// Client-side pre-processing of one frame: packets to send and the coordinate converter.
pub(crate) fn encode_frame(st: &ModelState, inputs: &[Input]) -> Result<(Vec<Vec<u8>>, CoordConverter)> {
    let p = &st.params;
    let n = p.num_inputs();
    if inputs.len() != n {
        return Err(Error::invalid(format!("The length of input data list {} does not match to the number of model inputs {n}", inputs.len())));
    }
    let mut packets = Vec::with_capacity(inputs.len());
    let mut converter = CoordConverter::identity();
    for (i, input) in inputs.iter().enumerate() {
        if !is_image_input(p, i) {
            match input {
                Input::Bytes(b) => packets.push(b.to_vec()),
                Input::Pixels { .. } => return Err(Error::invalid(format!("model input #{i} is a tensor input: pass its raw bytes, not pixels"))),
            }
            continue;
        }
        let img = match input {
            // Bytes that are not an image we can decode are sent as they are (already in the
            // model's input format), like PySDK does for bytes.
            Input::Bytes(b) => match image_ops::decode(b) {
                Ok(img) => img,
                Err(_) => {
                    let (w, h) = model_wh(p, i)?;
                    if p.str("InputImgFmt", i) == "JPEG" && b.len() == w as usize * h as usize * 3 {
                        // Model-sized pixels in the model's colour order (what dg_predict
                        // takes as the model's raw input) still travel as JPEG.
                        let bgr = p.str("InputColorSpace", i) == "BGR";
                        let img = image_ops::from_raw(b, w, h, w as usize * 3, bgr)?;
                        packets.push(image_ops::encode_jpeg(&img, 95)?);
                    } else {
                        packets.push(b.to_vec());
                    }
                    continue;
                }
            },
            Input::Pixels { data, width, height, stride, bgr } => image_ops::from_raw(data, *width, *height, *stride, *bgr)?,
        };
        let (w, h) = model_wh(p, i)?;
        let fit = image_ops::fit(&img, w, h, st.pre.pad, st.pre.crop_percentage, st.pre.resize, st.pre.fill_rgb)?;
        converter = fit.converter;
        let packet = if p.str("InputImgFmt", i) == "JPEG" { image_ops::encode_jpeg(&fit.image, 95)? } else { raw_frame(p, i, &fit.image)? };
        packets.push(packet);
    }
    Ok((packets, converter))
}

/// Send one frame and read its result, on a pooled stream (re-opened once if a pooled
/// stream turns out to be dead).
fn exchange(rb: &RemoteBackend, st: &ModelState, packets: &[Vec<u8>]) -> Result<Vec<u8>> {
    let config = stream_config(st);
    let key = config.to_string();
    let timeout = Duration::from_secs_f64(st.inference_timeout_s.max(0.001));
    let mut reused = rb.take(&key);
    loop {
        let was_pooled = reused.is_some();
        let mut s = match reused.take() {
            Some(s) => s,
            None => rb.client.open_stream(&st.name, &config)?,
        };
        let r = s.send_frame(packets).and_then(|_| s.recv(timeout));
        match r {
            Ok(bytes) => {
                rb.give_back(key, s);
                return Ok(bytes);
            }
            // An idle pooled stream may have been closed by the server: retry on a new one.
            Err(e) if was_pooled && e.code == Code::Network => continue,
            Err(e) => return Err(e),
        }
    }
}

/// PySDK's text for a frame that failed on (or on the way to) the AI server; `code` says why.
pub(crate) fn inference_error(model: &str, code: Code, msg: &str) -> Error {
    Error::new(code, format!("Failed to perform model '{model}' inference: {msg}"))
}

/// A frame's result packet → its result (a per-frame error from the server is the frame's error).
pub(crate) fn complete(st: &ModelState, packet: &[u8], converter: &CoordConverter) -> Result<InferenceResult> {
    match protocol::decode_results(packet).map_err(|e| inference_error(&st.name, Code::Inference, &e.message))? {
        Ok((results, tensors)) => finish(st, results, tensors, converter),
        Err(msg) => Err(inference_error(&st.name, Code::Inference, &msg)),
    }
}

/// Run one frame on an AI-server model.
pub fn predict(rb: &RemoteBackend, st: &ModelState, inputs: &[Input]) -> Result<InferenceResult> {
    let t0 = std::time::Instant::now();
    let (packets, converter) = encode_frame(st, inputs)?;
    let pre_ms = measured_since(st, t0);
    let bytes = exchange(rb, st, &packets).map_err(|e| inference_error(&st.name, e.code, &e.message))?;
    let r = complete(st, &bytes, &converter).map(|mut r| {
        r.pre_ms = pre_ms;
        r
    });
    if r.is_err() {
        // After an error the server-side stream may be unusable: end the pooled streams.
        rb.clear();
    }
    r
}

/// Milliseconds since `t0` when the model measures time (the client-side pre-processing of a
/// frame: decode, fit, encode).
pub(crate) fn measured_since(st: &ModelState, t0: std::time::Instant) -> Option<f64> {
    st.params.bool("MeasureTime", 0).then(|| t0.elapsed().as_secs_f64() * 1000.0)
}

/// The custom post-processor's results for a frame whose server sent raw tensors (one
/// raw-tensor result per tensor: `wire_params` asked for them), or None when no custom
/// post-processor is set or the frame left with the built-in one.
fn run_custom(st: &ModelState, results: &[Value], tensors: &[crate::runtime::Tensor], converter: &CoordConverter) -> Option<Result<Vec<Value>>> {
    let raw = !tensors.is_empty() && results.len() == tensors.len() && results.iter().all(|r| r["data"].get("__tensor__").is_some());
    if !raw || !st.custom_post.is_set() {
        return None;
    }
    let ids: Vec<i64> = results.iter().enumerate().map(|(i, r)| r["id"].as_i64().unwrap_or(i as i64)).collect();
    let (input_width, input_height) = model_wh(&st.params, 0).unwrap_or((1, 1));
    let (image_width, image_height) = converter.image_size().unwrap_or((input_width, input_height));
    let frame = postprocess::custom::FrameInfo { image_width, image_height, input_width, input_height, converter: converter.clone() };
    st.custom_post.run(tensors, &ids, &frame)
}

/// Client-side completion of a decoded result list (AI server and cloud): the server's
/// timing moved out of the first result, coordinates mapped back to the original image,
/// `output_class_set` applied.
pub(crate) fn finish(
    st: &ModelState,
    mut results: Vec<Value>,
    mut tensors: Vec<crate::runtime::Tensor>,
    converter: &CoordConverter,
) -> Result<InferenceResult> {
    // PySDK moves the server's timing out of the first result.
    let mut timing = None;
    if let Some(first) = results.first_mut().and_then(Value::as_object_mut) {
        timing = first.remove("Timing");
        if timing.is_some() && first.is_empty() {
            results.remove(0);
        }
    }
    let p = &st.params;
    if let Some(custom) = run_custom(st, &results, &tensors, converter) {
        let mut results = custom.map_err(|e| inference_error(&st.name, e.code, &e.message))?;
        postprocess::filter_class_set(&mut results, &st.class_set);
        return Ok(InferenceResult { results, tensors: Vec::new(), timing, pre_ms: None, model: st.name.clone() });
    }
    let kind = {
        let t = p.str("InferenceResultsType", 0);
        if t.is_empty() {
            p.str("OutputPostprocessType", 0)
        } else {
            t
        }
    };
    let kind = postprocess::PostprocessType::parse(&kind);
    if kind.has_image_coordinates() {
        // Run-length masks need the model input size; a model without one has no masks to map.
        let wh = model_wh(p, 0).map(|(w, h)| (w as f64, h as f64)).unwrap_or((1.0, 1.0));
        let image = converter.image_size().map(|(w, h)| (w as f64, h as f64)).unwrap_or(wh);
        postprocess::map_coordinates_with_model(&mut results, &mut tensors, &kind, wh, image, &|x, y| converter.to_original(x, y))
            .map_err(|e| inference_error(&st.name, e.code, &e.message))?;
    }
    postprocess::filter_class_set(&mut results, &st.class_set);
    Ok(InferenceResult { results, tensors, timing, pre_ms: None, model: st.name.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(color: &str, raw: &str) -> ModelParams {
        ModelParams::parse(&format!(
            r#"{{"ConfigVersion": 14, "PRE_PROCESS": [{{"InputType": "Image", "InputN": 1, "InputH": 2, "InputW": 3, "InputC": 3, "InputColorSpace": "{color}", "InputRawDataType": "{raw}"}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn raw_frames_follow_colour_order_and_type() {
        let img = RgbImage { width: 3, height: 2, data: (0..18).collect() };
        assert_eq!(model_wh(&params("RGB", "DG_UINT8"), 0).unwrap(), (3, 2));
        assert_eq!(raw_frame(&params("RGB", "DG_UINT8"), 0, &img).unwrap(), img.data);
        let bgr = raw_frame(&params("BGR", "DG_UINT8"), 0, &img).unwrap();
        assert_eq!(&bgr[..6], &[2, 1, 0, 5, 4, 3]);
        let f = raw_frame(&params("RGB", "DG_FLT"), 0, &img).unwrap();
        assert_eq!(f.len(), 18 * 4);
        assert_eq!(f32::from_le_bytes([f[4], f[5], f[6], f[7]]), 1.0);
        assert!(raw_frame(&params("RGB", "DG_INT16"), 0, &img).unwrap_err().message.contains("RAW/DG_INT16"));
    }
}
