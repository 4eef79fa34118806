//! Model JSON parameters (model-json.md) as a zoo, an archive or an AI server hands them over:
//! parse, validate, every typed accessor the loaders use, the full form, the post-processing
//! configuration read from them, and runtime-config merging.
#![no_main]
use dgzoo::params::{self, ModelParams};
use dgzoo::postprocess::PostConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = params::name_attributes(text);
    let Ok(mut p) = ModelParams::parse(text) else { return };
    let _ = p.validate();
    let _ = p.check_version();
    let _ = p.is_zoo_model();
    let _ = p.full_form();
    let _ = p.device_pairs();
    let _ = dgzoo::filter::supported_device_types(&p, &[]);
    let _ = PostConfig::from_params(&p);
    let _ = dgzoo::model::load_labels(&p);
    for i in 0..p.num_inputs().min(8) {
        let _ = p.input_shape(i, None);
        let _ = p.input_shape(i, Some(4));
        let _ = dgzoo::state::is_image_input(&p, i);
    }
    let cfg = p.to_value();
    p.merge_runtime(&cfg);
    let _ = p.absolutize_paths(std::path::Path::new("/nonexistent/fuzz"));
});
