//! Property JSON: a real model from the shared zoo, loaded with a fuzzed property object
//! (`load_model(name, **properties)`) and then given each fuzzed `key: value` through
//! `set_property`, every property read back with `get_property`. The zoo directory is
//! DGZOO_FUZZ_ZOO, else ../shared/zoo beside the repository.
#![no_main]
use dgzoo::zoo::Zoo;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

const MODEL: &str = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";

/// Every property name PySDK's model has, plus a method name and an unknown one.
const KEYS: &[&str] = &[
    "custom_postprocessor",
    "device_type",
    "devices_available",
    "devices_selected",
    "eager_batch_size",
    "extra_device_params",
    "frame_queue_depth",
    "image_backend",
    "inference_timeout_s",
    "input_crop_percentage",
    "input_image_format",
    "input_letterbox_fill_color",
    "input_numpy_colorspace",
    "input_pad_method",
    "input_resize_method",
    "input_shape",
    "label_dictionary",
    "measure_time",
    "model_info",
    "non_blocking_batch_predict",
    "output_class_set",
    "output_confidence_threshold",
    "output_max_classes_per_detection",
    "output_max_detections",
    "output_max_detections_per_class",
    "output_nms_threshold",
    "output_pose_threshold",
    "output_postprocess_type",
    "output_top_k",
    "output_use_regular_nms",
    "overlay_alpha",
    "overlay_blur",
    "overlay_color",
    "overlay_fill_color",
    "overlay_font_scale",
    "overlay_line_width",
    "overlay_show_labels",
    "overlay_show_probabilities",
    "save_model_image",
    "supported_device_types",
    "update_if_newer",
    "predict",
    "no_such_property",
];

fn zoo() -> &'static Zoo {
    static ZOO: OnceLock<Zoo> = OnceLock::new();
    ZOO.get_or_init(|| {
        let dir = std::env::var("DGZOO_FUZZ_ZOO").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/zoo").to_string());
        Zoo::connect("@local", &dir, "").unwrap_or_else(|e| panic!("cannot open the zoo {dir}: {}", e.message))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(Value::Object(props)) = dgzoo_fuzz::json(data) else { return };
    // Half the inputs go through load_model's properties, all through set_property.
    let at_load = props.len() % 2 == 0;
    let model = match zoo().load_model(MODEL, &if at_load { Value::Object(props.clone()) } else { Value::Object(Default::default()) }) {
        Ok(m) => m,
        Err(_) => return,
    };
    for (k, v) in &props {
        // A short key picks a known property (the fuzzer rarely spells one out).
        let key = match k.parse::<usize>() {
            Ok(i) => KEYS[i % KEYS.len()],
            Err(_) => k.as_str(),
        };
        let _ = model.set_property(key, v);
    }
    for key in KEYS {
        let _ = model.get_property(key);
    }
});
