//! Multi-input models and dynamic batch dimensions on the ONNX runtime, with a model written
//! here byte by byte (ONNX protobuf): sum = Add(a, b), a and b float [N, 4] with N dynamic.
use dgzoo::inference::Input;
use dgzoo::model::predict;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};

/// Minimal protobuf writer: length-delimited fields and varints are all ONNX needs here.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn field_bytes(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(((num as u64) << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
fn field_varint(num: u32, v: u64, out: &mut Vec<u8>) {
    varint((num as u64) << 3, out);
    varint(v, out);
}

/// ValueInfoProto for a float tensor with a symbolic batch dimension and a fixed width.
fn value_info(name: &str, width: u64) -> Vec<u8> {
    let mut dim_n = Vec::new();
    field_bytes(2, b"N", &mut dim_n); // dim_param
    let mut dim_w = Vec::new();
    field_varint(1, width, &mut dim_w); // dim_value
    let mut shape = Vec::new();
    field_bytes(1, &dim_n, &mut shape);
    field_bytes(1, &dim_w, &mut shape);
    let mut tensor = Vec::new();
    field_varint(1, 1, &mut tensor); // elem_type FLOAT
    field_bytes(2, &shape, &mut tensor);
    let mut ty = Vec::new();
    field_bytes(1, &tensor, &mut ty);
    let mut vi = Vec::new();
    field_bytes(1, name.as_bytes(), &mut vi);
    field_bytes(2, &ty, &mut vi);
    vi
}

fn add_model() -> Vec<u8> {
    let mut node = Vec::new();
    field_bytes(1, b"a", &mut node);
    field_bytes(1, b"b", &mut node);
    field_bytes(2, b"sum", &mut node);
    field_bytes(3, b"add", &mut node);
    field_bytes(4, b"Add", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"g", &mut graph);
    field_bytes(11, &value_info("a", 4), &mut graph);
    field_bytes(11, &value_info("b", 4), &mut graph);
    field_bytes(12, &value_info("sum", 4), &mut graph);
    let mut opset = Vec::new();
    field_bytes(1, b"", &mut opset);
    field_varint(2, 13, &mut opset);
    let mut model = Vec::new();
    field_varint(1, 8, &mut model); // ir_version
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn two_input_model_with_dynamic_batch() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let bin = add_model();
    std::fs::write(tmp.path().join("adder.onnx"), &bin).unwrap();
    let checksum: String = sha2::Sha256::digest(&bin).iter().map(|b| format!("{b:02x}")).collect();
    let tensor_input = json!({"InputType": "Tensor", "InputShape": [1, 4], "InputRawDataType": "DG_FLT"});
    let cfg = json!({
        "ConfigVersion": 14, "Checksum": checksum,
        "DEVICE": [{"DeviceType": "CPU", "RuntimeAgent": "ONNX", "SupportedDeviceTypes": "ONNX/CPU"}],
        "PRE_PROCESS": [tensor_input, tensor_input],
        "MODEL_PARAMETERS": [{"ModelPath": "adder.onnx"}],
        "POST_PROCESS": [{"OutputPostprocessType": "None"}]
    });
    std::fs::write(tmp.path().join("adder.json"), cfg.to_string()).unwrap();
    let zoo = Zoo::connect("@local", tmp.path().to_str().unwrap(), "").unwrap();
    let model = zoo.load_model("adder", &Value::Null).unwrap();

    let a = f32s(&[1.0, 2.0, 3.0, 4.0]);
    let b = f32s(&[10.0, 20.0, 30.0, 40.0]);
    let r = predict(&model, &[Input::Bytes(&a), Input::Bytes(&b)]).unwrap();
    assert_eq!(r.tensors.len(), 1);
    assert_eq!(r.tensors[0].info.shape, vec![1, 4]);
    assert_eq!(r.tensors[0].data.as_slice::<f32>(), &[11.0, 22.0, 33.0, 44.0]);
    // PySDK 1.5.0's ONNX agent numbers tensors inputs first and names outputs by that number:
    // for this two-input model it reports the output as id 2, name "2" (checked with the real
    // PySDK on the same graph), not by its ONNX name "sum".
    assert_eq!(r.results[0]["name"], "2");
    assert_eq!(r.results[0]["id"], 2);
    assert_eq!(r.results[0]["type"], "DG_FLT");

    // One input only, or a wrongly sized one: clear errors, the model stays usable.
    let e = predict(&model, &[Input::Bytes(&a)]).unwrap_err();
    assert!(e.message.contains("does not match to the number of model inputs 2"), "{e}");
    let e = predict(&model, &[Input::Bytes(&a), Input::Bytes(&a[..12])]).unwrap_err();
    assert!(!e.message.is_empty());

    // A batch of 3 through the dynamic dimension.
    model.set_property("input_shape", &json!([[3, 4], [3, 4]])).unwrap();
    let a3 = f32s(&(0..12).map(|i| i as f32).collect::<Vec<_>>());
    let b3 = f32s(&[0.5; 12]);
    let r = predict(&model, &[Input::Bytes(&a3), Input::Bytes(&b3)]).unwrap();
    assert_eq!(r.tensors[0].info.shape, vec![3, 4]);
    assert_eq!(r.tensors[0].data.as_slice::<f32>(), (0..12).map(|i| i as f32 + 0.5).collect::<Vec<_>>().as_slice());
    let again = predict(&model, &[Input::Bytes(&a), Input::Bytes(&b)]);
    assert!(again.is_err(), "a [1,4] frame no longer fits the [3,4] input shape");
}
