"""A minimal TFLite writer for probing PySDK's TFLite agent (which, unlike its ONNX agent, keeps
tensor names): one float32 input `images` and constant float32 outputs with the given names, each
an ADD of its constant and a zero. Needs the `tflite` (2.18, schema bindings) and `flatbuffers`
wheels. Used to probe DetectionYoloPlates (README, post-processing table):

    import tflite_writer; tflite_writer.write("m.tflite", [("pred", arr), ("xy_mul_concat", arr2)])

Output tensor ids (what PySDK's `PostProcessorInputs` and results call `id`) are 3, 5, 7, ... in
the order given.

An output given as `(name, int8_or_uint8_array, (scale, zero_point))` is a tensor of that type with that
per-tensor quantisation, a RESHAPE of its constant (no arithmetic, so every TFLite kernel set,
XNNPACK's included, gives the same bytes): the int8 variants of the family zoo."""
import flatbuffers, numpy as np
import importlib
M, SG, T, B, O, OC, Q = (importlib.import_module('tflite.' + n) for n in ('Model', 'SubGraph', 'Tensor', 'Buffer', 'Operator', 'OperatorCode', 'QuantizationParameters'))
from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType

def write(path, outputs, in_shape=(1,64,64,3)):
    b = flatbuffers.Builder(1024)
    bufs_data = [None]  # buffer 0 empty
    tensors = []  # (name, shape, buffer_idx, type, quant)
    tensors.append(("images", list(in_shape), 0, TensorType.FLOAT32, None))
    zero_idx = len(tensors); bufs_data.append(np.zeros([1], np.float32).tobytes()); tensors.append(("zero", [1], len(bufs_data)-1, TensorType.FLOAT32, None))
    ops = []  # (opcode index: 0 ADD, 1 RESHAPE; inputs; outputs)
    out_ids = []
    for out in outputs:
        name, arr = out[0], out[1]
        if len(out) > 2:
            arr = np.asarray(arr); q = out[2]
            ttype = {np.dtype(np.int8): TensorType.INT8, np.dtype(np.uint8): TensorType.UINT8}[arr.dtype]
            bufs_data.append(arr.tobytes()); ci = len(tensors); tensors.append((name + "_const", list(arr.shape), len(bufs_data)-1, ttype, q))
            bufs_data.append(np.asarray(arr.shape, np.int32).tobytes()); si = len(tensors); tensors.append((name + "_shape", [arr.ndim], len(bufs_data)-1, TensorType.INT32, None))
            bufs_data.append(None); oi = len(tensors); tensors.append((name, list(arr.shape), len(bufs_data)-1, ttype, q))
            ops.append((1, [ci, si], [oi])); out_ids.append(oi)
            continue
        arr = np.asarray(arr, np.float32)
        bufs_data.append(arr.tobytes()); ci = len(tensors); tensors.append((name + "_const", list(arr.shape), len(bufs_data)-1, TensorType.FLOAT32, None))
        bufs_data.append(None); oi = len(tensors); tensors.append((name, list(arr.shape), len(bufs_data)-1, TensorType.FLOAT32, None))
        ops.append((0, [ci, zero_idx], [oi])); out_ids.append(oi)
    # buffers
    buf_offs = []
    for d in bufs_data:
        if d is None:
            B.BufferStart(b); buf_offs.append(B.BufferEnd(b))
        else:
            b.StartVector(1, len(d), 16)
            for byte in reversed(d): b.PrependByte(byte)
            v = b.EndVector()
            B.BufferStart(b); B.BufferAddData(b, v); buf_offs.append(B.BufferEnd(b))
    def ivec(vals):
        b.StartVector(4, len(vals), 4)
        for x in reversed(vals): b.PrependInt32(x)
        return b.EndVector()
    t_offs = []
    for name, shape, bi, ttype, q in tensors:
        n = b.CreateString(name); sh = ivec(shape)
        qp = None
        if q is not None:
            b.StartVector(4, 1, 4); b.PrependFloat32(float(q[0])); sv = b.EndVector()
            b.StartVector(8, 1, 8); b.PrependInt64(int(q[1])); zv = b.EndVector()
            Q.QuantizationParametersStart(b); Q.QuantizationParametersAddScale(b, sv); Q.QuantizationParametersAddZeroPoint(b, zv)
            qp = Q.QuantizationParametersEnd(b)
        T.TensorStart(b); T.TensorAddShape(b, sh); T.TensorAddType(b, ttype); T.TensorAddBuffer(b, bi); T.TensorAddName(b, n)
        if qp is not None:
            T.TensorAddQuantization(b, qp)
        t_offs.append(T.TensorEnd(b))
    op_offs = []
    for code, ins, outs in ops:
        i = ivec(ins); o = ivec(outs)
        O.OperatorStart(b); O.OperatorAddOpcodeIndex(b, code); O.OperatorAddInputs(b, i); O.OperatorAddOutputs(b, o)
        op_offs.append(O.OperatorEnd(b))
    def ovec(offs):
        b.StartVector(4, len(offs), 4)
        for x in reversed(offs): b.PrependUOffsetTRelative(x)
        return b.EndVector()
    tv = ovec(t_offs); ov = ovec(op_offs); iv = ivec([0]); outv = ivec(out_ids)
    sgname = b.CreateString("main")
    SG.SubGraphStart(b); SG.SubGraphAddTensors(b, tv); SG.SubGraphAddInputs(b, iv); SG.SubGraphAddOutputs(b, outv); SG.SubGraphAddOperators(b, ov); SG.SubGraphAddName(b, sgname)
    sg = SG.SubGraphEnd(b)
    ocs = []
    for code in (BuiltinOperator.ADD, BuiltinOperator.RESHAPE):
        OC.OperatorCodeStart(b); OC.OperatorCodeAddBuiltinCode(b, code); OC.OperatorCodeAddDeprecatedBuiltinCode(b, code); OC.OperatorCodeAddVersion(b, 1)
        ocs.append(OC.OperatorCodeEnd(b))
    ocv = ovec(ocs); sgv = ovec([sg]); bv = ovec(buf_offs)
    desc = b.CreateString("dgzoo probe")
    M.ModelStart(b); M.ModelAddVersion(b, 3); M.ModelAddOperatorCodes(b, ocv); M.ModelAddSubgraphs(b, sgv); M.ModelAddBuffers(b, bv); M.ModelAddDescription(b, desc)
    m = M.ModelEnd(b)
    b.Finish(m, file_identifier=b"TFL3")
    open(path, "wb").write(b.Output())
