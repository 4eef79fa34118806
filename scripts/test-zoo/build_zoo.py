"""Builds dgzoo's extended test zoo: one small deterministic ONNX model per PySDK post-processing
family, in the output layout PySDK 1.5.0 expects for it. Graphs are built directly with the `onnx`
package from fixed-seed weights (no training framework, nothing downloaded but the pinned wheels).
Usage: build_zoo.py DIR [MODEL...]"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

S = 64  # model input size (square)


class Graph:
    """A tiny ONNX graph: image input [1,3,S,S] (NCHW, /255), conv heads on it."""

    def __init__(self, seed, size=S):
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.nodes, self.inits, self.outputs, self.n = [], [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}_{self.n}"

    def const(self, arr, p="c"):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), n))
        return n

    def op(self, op, ins, p=None, **attrs):
        out = self.name(p or op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k, gain=1.0, bias=0.0):
        """Conv k x k, stride k: a [1,cout,H/k,W/k] map that depends on the image."""
        w = self.rng.normal(0, gain / np.sqrt(cin * k * k), (cout, cin, k, k))
        b = np.broadcast_to(np.asarray(bias, dtype=np.float64), (cout,)) + self.rng.normal(0, 0.1 * gain, cout)
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], kernel_shape=[k, k], strides=[k, k])

    def affine(self, x, scale, offset, axis_len, axis=1, rank=3):
        """sigmoid(x) * scale + offset, per channel along `axis`."""
        shape = [1] * rank
        shape[axis] = axis_len
        sc = self.const(np.asarray(scale, dtype=np.float64).reshape(shape))
        of = self.const(np.asarray(offset, dtype=np.float64).reshape(shape))
        return self.op("Add", [self.op("Mul", [self.op("Sigmoid", [x]), sc]), of])

    def flat(self, x, c):
        """[1,c,h,w] -> [1,c,h*w]."""
        return self.op("Reshape", [x, self.ic([1, c, -1])])

    def ic(self, arr):
        n = self.name("i")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.int64), n))
        return n

    def nhwc(self, x):
        return self.op("Transpose", [x], perm=[0, 2, 3, 1])

    def output(self, x, name, shape, dtype=TensorProto.FLOAT):
        self.nodes.append(helper.make_node("Identity", [x], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def u8(self, x):
        """Cast to uint8: the 8-bit tensor a quantised model emits (ONNX tensors carry no scale:
        PySDK reads them with scale 1, zero point 0). Values must already lie in [0, 255]."""
        return self.op("Cast", [self.op("Floor", [x])], to=TensorProto.UINT8)

    def save(self, path):
        inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, self.size, self.size])
        g = helper.make_graph(self.nodes, "g", [inp], self.outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="dgzoo-make-test-zoo")
        m.ir_version = 8
        onnx.checker.check_model(m)
        onnx.save(m, path)


def pre(size=S, layout="NCHW"):
    return {
        "InputType": "Image", "InputN": 1, "InputH": size, "InputW": size, "InputC": 3,
        "InputResizeMethod": "bilinear", "InputPadMethod": "letterbox", "ImageBackend": "auto",
        "InputColorSpace": "RGB", "InputQuantEn": False, "InputImgNormEn": True,
        "InputImgNormCoeff": 1 / 255, "InputTensorLayout": layout,
    }


def write(root, name, graph, post, labels, pre_process=None):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    binary = os.path.join(d, name + ".onnx")
    graph.save(binary)
    sha = hashlib.sha256(open(binary, "rb").read()).hexdigest()
    post = dict(post)
    if labels is not None:
        post["LabelsPath"] = "labels.json"
        json.dump({str(i): l for i, l in enumerate(labels)}, open(os.path.join(d, "labels.json"), "w"), indent=1)
    cfg = {
        "ConfigVersion": 14, "Checksum": sha,
        "DEVICE": [{"DeviceType": "CPU", "RuntimeAgent": "ONNX", "SupportedDeviceTypes": "ONNX/CPU"}],
        "PRE_PROCESS": [pre_process or pre()],
        "MODEL_PARAMETERS": [{"ModelPath": name + ".onnx"}],
        "POST_PROCESS": [post],
    }
    json.dump(cfg, open(os.path.join(d, name + ".json"), "w"), indent=2)


LABELS5 = ["ant", "bee", "cat", "dog", "eel"]
MODELS = {}


def model(f):
    MODELS[f.__name__] = f
    return f


@model
def yolov8_dfl_heads(root):
    """DetectionYoloV8 with separate per-scale heads (NHWC) and DFL box regression."""
    g = Graph(801)
    nc, reg = len(LABELS5), 16
    for s in (8, 16, 32):
        gs = S // s
        # DFL logits favouring short distances (1-3 cells), so boxes stay inside the image
        box = g.nhwc(g.conv("images", 3, 4 * reg, s, gain=3.0, bias=np.tile(-0.6 * np.arange(reg), 4)))
        g.output(box, f"box{s}", [1, gs, gs, 4 * reg])
        cls = g.nhwc(g.conv("images", 3, nc, s, gain=4.0, bias=-2.5))  # logits: PySDK applies the sigmoid
        g.output(cls, f"cls{s}", [1, gs, gs, nc])
    write(root, "yolov8_dfl_heads--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloV8", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": reg,
        "OutputYoloStrides": [8, 16, 32],
    }, LABELS5)


def fused_v8(g, nc, extra_scale, extra_off, cls_bias=-2.5, stride=8):
    """A fused YOLOv8-style [1, 4+nc+k, N] tensor: cx, cy in [0,S], w, h in [6, 30] px,
    class scores in (0,1), then k extra channels sigmoid*scale+offset."""
    k = len(extra_scale)
    c = 4 + nc + k
    x = g.flat(g.conv("images", 3, c, stride, gain=3.0, bias=[0, 0, 0, 0] + [cls_bias] * nc + [0] * k), c)
    scale = [S, S, 24, 24] + [1] * nc + list(extra_scale)
    off = [0, 0, 6, 6] + [0] * nc + list(extra_off)
    return g.affine(x, scale, off, c), c


# Not built yet: PySDK 1.5.0 refuses this fused form (it wants per-scale tensors).
def yolov8_obb(root):
    """DetectionYoloV8OBB: fused [1, 4+nc+1, N], angle (radians) last."""
    g = Graph(802)
    nc = len(LABELS5)
    x, c = fused_v8(g, nc, [np.pi / 2], [-np.pi / 4])
    g.output(x, "output0", [1, c, (S // 8) ** 2])
    write(root, "yolov8_obb--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloV8OBB", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True,
    }, LABELS5)


# COCO keypoint skeleton as PySDK model zoos write it: keypoint -> the keypoints it connects to
# (PySDK copies Connections[k] into landmark k's "connect"; keypoints not named get []).
COCO_CONNECTIONS = {"0": [1, 2], "1": [3], "2": [4], "5": [6, 7, 11], "6": [8, 12], "7": [9], "8": [10], "11": [12, 13], "12": [14], "13": [15], "14": [16]}


@model
def yolov8_pose(root):
    """PoseDetectionYoloV8: fused [1, 4+1+17*3, N]: box, person score, keypoints (x, y, visibility)."""
    g = Graph(803)
    kp = 17
    x, c = fused_v8(g, 1, [S, S, 1] * kp, [0, 0, 0] * kp, cls_bias=-1.0)
    g.output(x, "output0", [1, c, (S // 8) ** 2])
    write(root, "yolov8_pose--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "PoseDetectionYoloV8", "OutputNumClasses": 1, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "Connections": COCO_CONNECTIONS,
    }, ["person"])


# Not built yet: PySDK 1.5.0 refuses this fused form (it wants per-scale tensors).
def yolov8_seg(root):
    """SegmentationYoloV8: fused [1, 4+nc+32, N] and prototypes [1, 32, 16, 16]."""
    g = Graph(804)
    nc = len(LABELS5)
    x, c = fused_v8(g, nc, [2] * 32, [-1] * 32)
    g.output(x, "output0", [1, c, (S // 8) ** 2])
    g.output(g.conv("images", 3, 32, 4, gain=3.0), "output1", [1, 32, S // 4, S // 4])
    write(root, "yolov8_seg--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "SegmentationYoloV8", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True,
    }, LABELS5)


@model
def semantic_seg(root):
    """Segmentation (semantic): class logits [1, nc, 16, 16]."""
    g = Graph(805)
    nc = len(LABELS5)
    g.output(g.conv("images", 3, nc, 4, gain=3.0), "output0", [1, nc, S // 4, S // 4])
    write(root, "semantic_seg--64x64_float_onnx_cpu_1", g, {"OutputPostprocessType": "Segmentation", "OutputNumClasses": nc}, LABELS5)


@model
def multilabel(root):
    """MultiLabelClassification: [1, nc] scores."""
    g = Graph(806)
    nc = len(LABELS5)
    x = g.op("Reshape", [g.conv("images", 3, nc, S, gain=3.0), g.ic([1, nc])])
    g.output(x, "output0", [1, nc])
    write(root, "multilabel--64x64_float_onnx_cpu_1", g, {"OutputPostprocessType": "MultiLabelClassification", "OutputNumClasses": nc, "OutputConfThreshold": 0.3}, LABELS5)


@model
def yolov10(root):
    """DetectionYoloV10: [1, N, 6] rows of x1, y1, x2, y2, score, class id (NMS-free)."""
    g = Graph(807)
    nc = len(LABELS5)
    main = g.affine(g.flat(g.conv("images", 3, 5, 16, gain=3.0, bias=[0, 0, 0, 0, -1.0]), 5), [40, 40, 24, 24, 1], [0, 0, 6, 6, 0], 5)
    m = np.eye(5)
    m[0, 2] = m[1, 3] = 1  # x2 = x1 + w, y2 = y1 + h
    main = g.op("MatMul", [g.op("Transpose", [main], perm=[0, 2, 1]), g.const(m)])
    cls = g.op("Floor", [g.affine(g.flat(g.conv("images", 3, 1, 16, gain=3.0), 1), [nc - 0.001], [0], 1)])
    out = g.op("Concat", [main, g.op("Transpose", [cls], perm=[0, 2, 1])], axis=2)
    g.output(out, "output0", [1, (S // 16) ** 2, 6])
    write(root, "yolov10--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloV10", "OutputNumClasses": nc, "PostProcessorInputs": [0], "OutputConfThreshold": 0.3,
        "MaxDetections": 100,
    }, LABELS5)


ANCHORS = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]


@model
def yolov5_anchors(root):
    """DetectionYolo (v5) with per-scale heads [1, g, g, 3*(5+nc)] and OutputYoloAnchors."""
    g = Graph(808)
    nc = len(LABELS5)
    for s in (8, 16, 32):
        gs = S // s
        c = 3 * (5 + nc)
        bias = np.tile([0, 0, -1.0, -1.0, -2.0] + [0] * nc, 3)
        g.output(g.nhwc(g.conv("images", 3, c, s, gain=3.0, bias=bias)), f"out{s}", [1, gs, gs, c])
    write(root, "yolov5_anchors--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYolo", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloStrides": [8, 16, 32],
        "OutputYoloAnchors": ANCHORS,
    }, LABELS5)


@model
def yolov8_obb_heads(root):
    """DetectionYoloV8OBB with per-scale heads (NHWC): box DFL [1,g,g,64], class logits [1,g,g,nc],
    angle logit [1,g,g,1]."""
    g = Graph(809)
    nc, reg = len(LABELS5), 16
    for s in (8, 16, 32):
        gs = S // s
        box = g.nhwc(g.conv("images", 3, 4 * reg, s, gain=3.0, bias=np.tile(-0.6 * np.arange(reg), 4)))
        g.output(box, f"box{s}", [1, gs, gs, 4 * reg])
        g.output(g.nhwc(g.conv("images", 3, nc, s, gain=4.0, bias=-2.5)), f"cls{s}", [1, gs, gs, nc])
        g.output(g.nhwc(g.conv("images", 3, 1, s, gain=3.0)), f"ang{s}", [1, gs, gs, 1])
    write(root, "yolov8_obb_heads--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloV8OBB", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": reg,
        "OutputYoloStrides": [8, 16, 32],
    }, LABELS5)


@model
def yolov8_pose_heads(root):
    """PoseDetectionYoloV8 with per-scale heads (NHWC): box DFL [1,g,g,64], person logit
    [1,g,g,1], keypoints [1,g,g,17*3] (x, y offsets and visibility logit)."""
    g = Graph(812)
    reg, kp = 16, 17
    for s in (8, 16, 32):
        gs = S // s
        box = g.nhwc(g.conv("images", 3, 4 * reg, s, gain=3.0, bias=np.tile(-0.6 * np.arange(reg), 4)))
        g.output(box, f"box{s}", [1, gs, gs, 4 * reg])
        g.output(g.nhwc(g.conv("images", 3, 1, s, gain=4.0, bias=-1.5)), f"cls{s}", [1, gs, gs, 1])
        g.output(g.nhwc(g.conv("images", 3, 3 * kp, s, gain=2.0)), f"kpt{s}", [1, gs, gs, 3 * kp])
    write(root, "yolov8_pose_heads--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "PoseDetectionYoloV8", "OutputNumClasses": 1, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": reg,
        "OutputYoloStrides": [8, 16, 32],
    }, ["person"])


@model
def yolo_hailo(root):
    """DetectionYoloHailo: HailoRT's by-class NMS output, packed: for each class its box count,
    then that many (y1, x1, y2, x2, score) rows, normalised (counts fixed at 2 here)."""
    g = Graph(815)
    nc, mx = len(LABELS5), 2
    parts = []
    for c in range(nc):
        parts.append(g.const(np.array([[2.0]])))
        v = g.affine(g.flat(g.conv("images", 3, 5 * mx, 64, gain=3.0), 5 * mx), [0.4, 0.4, 0.4, 0.4, 0.8] * mx, [0.05, 0.05, 0.55, 0.55, 0.2] * mx, 5 * mx)
        parts.append(g.op("Reshape", [v, g.ic([1, 5 * mx])]))
    g.output(g.op("Concat", parts, axis=1), "nms", [1, nc * (1 + 5 * mx)])
    write(root, "yolo_hailo--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloHailo", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "MaxDetections": 100,
    }, LABELS5)


@model
def ssd_quant(root):
    """Detection (SSD, box decoding in the post-processor), the form PySDK 1.5.0's core takes:
    box encodings uint8 [1,N,4] (ty, tx, th, tw), class logits uint8 [1,N,1+nc] (background
    first) and float anchors [N,4] (y, x centre, height, width; normalised), named by tensor id
    in PostProcessorInputs as anchors, boxes, scores. Two anchor sizes per 4x4 cell, so boxes
    overlap and NMS has work. (PySDK refuses float box/score tensors, and the 4-output
    TFLite_Detection_PostProcess form: "number of input tensors == 3".)"""
    g = Graph(814)
    nc = len(LABELS5)
    gs, per = S // 16, 2
    n = gs * gs * per
    enc = g.affine(g.op("Reshape", [g.conv("images", 3, 4 * per, 16, gain=2.0), g.ic([1, 4, -1])]), [40] * 4, [0] * 4, 4)
    g.output(g.u8(g.op("Transpose", [enc], perm=[0, 2, 1])), "box_encodings", [1, n, 4], TensorProto.UINT8)
    cls = g.affine(g.op("Reshape", [g.conv("images", 3, (nc + 1) * per, 16, gain=4.0, bias=-4.0), g.ic([1, nc + 1, -1])]), [5.99] * (nc + 1), [0] * (nc + 1), nc + 1)
    g.output(g.u8(g.op("Transpose", [cls], perm=[0, 2, 1])), "class_logits", [1, n, nc + 1], TensorProto.UINT8)
    # Anchor order follows the reshapes above: channel-major, so anchor k = (size p, cell j).
    cells = [((j // gs + 0.5) / gs, (j % gs + 0.5) / gs) for j in range(gs * gs)]
    anchors = [[y, x, sz, sz] for sz in (0.2, 0.35) for (y, x) in cells]
    g.output(g.op("Identity", [g.const(anchors)]), "anchors", [n, 4])
    write(root, "ssd_quant--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "Detection", "OutputNumClasses": nc, "OutputConfThreshold": 0.85,
        "OutputNMSThreshold": 0.5, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "PostProcessorInputs": [3, 1, 2],
        "YScale": 40.0, "XScale": 40.0, "HScale": 40.0, "WScale": 40.0,
    }, LABELS5)


@model
def hand_landmarks(root):
    """HandDetection (MediaPipe hand landmarks): landmarks [1,63] (21 x (x, y, z), input pixels),
    hand score [1,1], handedness [1,1], world landmarks [1,63], named by tensor id in
    PostProcessorInputs in that order; the model emits them in another order (world,
    handedness, landmarks, score: ids 1-4) so the id wiring is exercised."""
    g = Graph(816)
    k = 21
    lm = g.affine(g.op("Reshape", [g.conv("images", 3, 3 * k, 64, gain=3.0), g.ic([1, 3 * k, 1])]), [S, S, 20] * k, [0, 0, -10] * k, 3 * k)
    world = g.affine(g.op("Reshape", [g.conv("images", 3, 3 * k, 64, gain=3.0), g.ic([1, 3 * k, 1])]), [0.2] * (3 * k), [-0.1] * (3 * k), 3 * k)
    one = lambda x: g.op("Sigmoid", [g.op("Reshape", [x, g.ic([1, 1])])])
    g.output(g.op("Reshape", [world, g.ic([1, 3 * k])]), "world_landmarks", [1, 3 * k])
    g.output(one(g.conv("images", 3, 1, 64, gain=3.0)), "handedness", [1, 1])
    g.output(g.op("Reshape", [lm, g.ic([1, 3 * k])]), "landmarks", [1, 3 * k])
    g.output(one(g.conv("images", 3, 1, 64, gain=6.0, bias=0.5)), "hand_flag", [1, 1])
    write(root, "hand_landmarks--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "HandDetection", "OutputNumClasses": 1, "OutputConfThreshold": 0.95,
        "PostProcessorInputs": [3, 4, 2, 1],
    }, None)  # the threshold keeps cat_224 and girls_256 (score 0.994), drops car_416 (0.926)


@model
def yolov8_plates(root):
    """DetectionYoloV8Plates: YOLOv8 per-scale heads (NHWC) as yolov8_dfl_heads, listed in
    PostProcessorInputs as box heads then class heads; PySDK reads the characters found left to
    right into one label, with the geometric mean of their scores."""
    g = Graph(817)
    nc, reg = len(LABELS5), 16
    for s in (8, 16, 32):
        gs = S // s
        box = g.nhwc(g.conv("images", 3, 4 * reg, s, gain=3.0, bias=np.tile(-0.6 * np.arange(reg), 4)))
        g.output(box, f"box{s}", [1, gs, gs, 4 * reg])
        g.output(g.nhwc(g.conv("images", 3, nc, s, gain=4.0, bias=-3.5)), f"cls{s}", [1, gs, gs, nc])
    write(root, "yolov8_plates--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionYoloV8Plates", "OutputNumClasses": nc, "OutputConfThreshold": 0.4,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": reg,
        "OutputYoloStrides": [8, 16, 32], "PostProcessorInputs": [1, 3, 5, 2, 4, 6],
    }, LABELS5)


@model
def damoyolo(root):
    """DetectionDamoYolo: class logits [1, N, nc] and box side distances [1, N, 4] (left, top,
    right, bottom, in cells of stride 8). PySDK 1.5.0 runs it through its YOLOv8 head matcher:
    it needs OutputYoloRegMax 1 ("Mismatch in the number of box/prob tensors!" otherwise),
    takes the distances as they are and applies the sigmoid to the class tensor."""
    g = Graph(811)
    nc = len(LABELS5)
    n = (S // 8) ** 2
    sc = g.flat(g.conv("images", 3, nc, 8, gain=4.0, bias=-2.5), nc)
    g.output(g.op("Transpose", [sc], perm=[0, 2, 1]), "scores", [1, n, nc])
    bx = g.affine(g.flat(g.conv("images", 3, 4, 8, gain=3.0), 4), [1.5] * 4, [0.2] * 4, 4)
    g.output(g.op("Transpose", [bx], perm=[0, 2, 1]), "boxes", [1, n, 4])
    write(root, "damoyolo--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "DetectionDamoYolo", "OutputNumClasses": nc, "OutputConfThreshold": 0.3,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": 1, "OutputYoloStrides": [8],
    }, LABELS5)


@model
def yolov8_seg_heads(root):
    """SegmentationYoloV8 with per-scale heads (NHWC): box DFL [1,g,g,64], class logits
    [1,g,g,nc], mask coefficients [1,g,g,32]; prototypes [1,16,16,32] (stride 4). PySDK's core
    cuts each mask to its box as a run-length mask; its client resizes it into the image."""
    g = Graph(810)
    nc, reg = len(LABELS5), 16
    for s in (8, 16, 32):
        gs = S // s
        box = g.nhwc(g.conv("images", 3, 4 * reg, s, gain=3.0, bias=np.tile(-1.2 * np.arange(reg), 4)))
        g.output(box, f"box{s}", [1, gs, gs, 4 * reg])
        g.output(g.nhwc(g.conv("images", 3, nc, s, gain=4.0, bias=-5.0)), f"cls{s}", [1, gs, gs, nc])
        g.output(g.nhwc(g.conv("images", 3, 32, s, gain=3.0)), f"coef{s}", [1, gs, gs, 32])
    g.output(g.nhwc(g.conv("images", 3, 32, 4, gain=3.0)), "proto", [1, S // 4, S // 4, 32])
    write(root, "yolov8_seg_heads--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "SegmentationYoloV8", "OutputNumClasses": nc, "OutputConfThreshold": 0.6,
        "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": reg,
        "OutputYoloStrides": [8, 16, 32],
    }, LABELS5)


@model
def posenet(root):
    """PoseDetection (PoseNet, stride 16): heatmap logits [1,g,g,17], offsets [1,g,g,34] (y x 17
    then x x 17, pixels) and displacements [1,g,g,64] (forward y, forward x, backward y, backward
    x; 16 edges each), NHWC, in that order. Thresholds are lowered so a few poses appear."""
    g = Graph(817)
    k, s = 17, 16
    gs = S // s
    heat = g.conv("images", 3, k, s, gain=3.0, bias=0.5)
    off = g.affine(g.conv("images", 3, 2 * k, s, gain=2.0), [4.0] * (2 * k), [-2.0] * (2 * k), 2 * k, rank=4)
    disp = g.affine(g.conv("images", 3, 64, s, gain=2.0), [40.0] * 64, [-20.0] * 64, 64, rank=4)
    g.output(g.nhwc(heat), "heatmaps", [1, gs, gs, k])
    g.output(g.nhwc(off), "offsets", [1, gs, gs, 2 * k])
    g.output(g.nhwc(disp), "displacements", [1, gs, gs, 64])
    write(root, "posenet--64x64_float_onnx_cpu_1", g, {
        "OutputPostprocessType": "PoseDetection", "OutputNumClasses": 1, "OutputConfThreshold": 0.3,
        "PoseThreshold": 0.4, "NMSRadius": 10, "Stride": s, "MaxDetections": 10,
    }, ["person"])


# uint8-quantised TFLite variants of the families DeGirum's zoos commonly ship quantised (YOLOv8 detection,
# pose and segmentation heads): each output a uint8 tensor (PySDK 1.5.0's YOLOv8 decoders refuse int8: "input boxes tensor
# type is unknown") with its own scale and zero point,
# constant (tflite_writer.py: a RESHAPE of a seeded tensor), so every kernel set gives the same
# bytes and the test is the decoder's dequantisation, not TFLite's arithmetic. The results do
# not depend on the image; their mapping into it does.

def quantize(x, scale, zero):
    """Per-tensor uint8 quantisation of float values (clipped), with its (scale, zero)."""
    return np.clip(np.round(np.asarray(x) / scale) + zero, 0, 255).astype(np.uint8), (scale, zero)


def write_tflite(root, name, outputs, post, labels):
    """A model of uint8 outputs [(name, float values, scale, zero)] (scale None: a float32
    output), TFLITE/CPU, NHWC input."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tflite_writer
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    binary = os.path.join(d, name + ".tflite")
    tflite_writer.write(binary, [(n, x) if sc is None else (n, *quantize(x, sc, z)) for n, x, sc, z in outputs], in_shape=(1, S, S, 3))
    post = dict(post)
    post["LabelsPath"] = "labels.json"
    json.dump({str(i): l for i, l in enumerate(labels)}, open(os.path.join(d, "labels.json"), "w"), indent=1)
    cfg = {
        "ConfigVersion": 14, "Checksum": hashlib.sha256(open(binary, "rb").read()).hexdigest(),
        "DEVICE": [{"DeviceType": "CPU", "RuntimeAgent": "TFLITE", "SupportedDeviceTypes": "TFLITE/CPU"}],
        "PRE_PROCESS": [pre(layout="NHWC")],
        "MODEL_PARAMETERS": [{"ModelPath": name + ".tflite"}],
        "POST_PROCESS": [post],
    }
    json.dump(cfg, open(os.path.join(d, name + ".json"), "w"), indent=2)


def peaked_logits(rng, gs, n, base, peak, share):
    """[1, gs, gs, n] logits around `base`, with about `share` of the cells peaking in one channel."""
    x = base + rng.normal(0.0, 0.5, (1, gs, gs, n))
    hot = rng.random((gs, gs)) < share
    ch = rng.integers(0, n, (gs, gs))
    for i, j in zip(*np.nonzero(hot)):
        x[0, i, j, ch[i, j]] = peak + rng.normal(0.0, 0.7)
    return x


def dfl_logits(rng, gs, reg, fall):
    """[1, gs, gs, 4 * reg] DFL logits favouring short distances."""
    return rng.normal(0.0, 1.2, (1, gs, gs, 4 * reg)) + np.tile(-fall * np.arange(reg), 4)


YOLO_HEAD_POST = {
    "OutputConfThreshold": 0.3, "OutputNMSThreshold": 0.6, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
    "MaxClassesPerDetection": 1, "UseRegularNMS": True, "OutputYoloRegMax": 16, "OutputYoloStrides": [8, 16, 32],
}


def quant_v8_heads(rng, nc, cls_base, extra=None):
    """Per stride 8/16/32: a uint8 DFL box head (scale 0.1, zero 148), a class head (0.05, 138)
    and what `extra(gs)` adds, drawn from `rng` in that order."""
    outs = []
    for s in (8, 16, 32):
        gs = S // s
        outs.append((f"box{s}", dfl_logits(rng, gs, 16, 0.6), 0.1, 148))
        outs.append((f"cls{s}", peaked_logits(rng, gs, nc, cls_base, 2.0, 0.3), 0.05, 138))
        if extra:
            outs.append(extra(s, gs))
    return outs


@model
def yolov8_dfl_heads_quant(root):
    """DetectionYoloV8, per-scale NHWC heads as yolov8_dfl_heads, uint8."""
    nc = len(LABELS5)
    outs = quant_v8_heads(np.random.default_rng(901), nc, -5.0)
    write_tflite(root, "yolov8_dfl_heads--64x64_quant_tflite_cpu_1", outs,
                 dict(YOLO_HEAD_POST, OutputPostprocessType="DetectionYoloV8", OutputNumClasses=nc), LABELS5)


@model
def yolov8_pose_heads_quant(root):
    """PoseDetectionYoloV8, per-scale NHWC heads as yolov8_pose_heads, uint8 (keypoints scale 0.03)."""
    rng = np.random.default_rng(902)
    kp = 17
    outs = quant_v8_heads(rng, 1, -4.0, lambda s, gs: (f"kpt{s}", rng.normal(0.0, 1.0, (1, gs, gs, 3 * kp)), 0.03, 125))
    write_tflite(root, "yolov8_pose_heads--64x64_quant_tflite_cpu_1", outs,
                 dict(YOLO_HEAD_POST, OutputPostprocessType="PoseDetectionYoloV8", OutputNumClasses=1), ["person"])


@model
def yolov8_seg_heads_quant(root):
    """SegmentationYoloV8, per-scale NHWC heads and prototypes as yolov8_seg_heads, uint8."""
    rng = np.random.default_rng(903)
    nc = len(LABELS5)
    outs = quant_v8_heads(rng, nc, -5.0, lambda s, gs: (f"coef{s}", rng.normal(0.0, 1.0, (1, gs, gs, 32)), 0.025, 128))
    # Smooth prototypes (blobs), so masks have extent.
    yy, xx = np.mgrid[0:S // 4, 0:S // 4] / (S // 4)
    proto = np.stack([np.sin(2 * np.pi * (fx * xx + fy * yy) + ph) for fx, fy, ph in rng.uniform(0.3, 1.5, (32, 3))], -1)[None]
    outs.append(("proto", 2.0 * proto, 0.02, 128))
    write_tflite(root, "yolov8_seg_heads--64x64_quant_tflite_cpu_1", outs,
                 dict(YOLO_HEAD_POST, OutputPostprocessType="SegmentationYoloV8", OutputNumClasses=nc), LABELS5)


@model
def ssd_quant_tflite(root):
    """Detection (SSD) as ssd_quant with TFLite's quantisation: float anchors, then uint8 box
    encodings (scale 0.025, zero 128) and class logits (scale 0.04, zero 150); TFLite tensor
    ids 3, 6, 9 (tflite_writer: a float output is its constant's id + 1, a uint8 one + 2)."""
    rng = np.random.default_rng(904)
    nc, gs = len(LABELS5), S // 16
    cells = [((j // gs + 0.5) / gs, (j % gs + 0.5) / gs) for j in range(gs * gs)]
    anchors = np.array([[y, x, sz, sz] for sz in (0.2, 0.35) for (y, x) in cells], np.float32)
    n = len(anchors)
    enc = rng.normal(0.0, 1.0, (1, n, 4))
    logits = rng.normal(-4.0, 0.7, (1, n, nc + 1))
    hot = rng.random(n) < 0.4
    logits[0, hot, 1 + rng.integers(0, nc, hot.sum())] = rng.normal(2.5, 0.8, hot.sum())
    write_tflite(root, "ssd_quant--64x64_quant_tflite_cpu_1", [
        ("anchors", anchors, None, None), ("box_encodings", enc, 0.025, 128), ("class_logits", logits, 0.04, 150),
    ], {
        "OutputPostprocessType": "Detection", "OutputNumClasses": nc, "OutputConfThreshold": 0.5,
        "OutputNMSThreshold": 0.5, "MaxDetections": 100, "MaxDetectionsPerClass": 100,
        "MaxClassesPerDetection": 1, "UseRegularNMS": True, "PostProcessorInputs": [3, 6, 9],
        "YScale": 10.0, "XScale": 10.0, "HScale": 5.0, "WScale": 5.0,
    }, LABELS5)


def main():
    root = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    os.makedirs(root, exist_ok=True)
    for n in names:
        MODELS[n](root)


if __name__ == "__main__":
    main()
