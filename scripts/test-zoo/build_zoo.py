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

    def nhwc(self, x):
        return self.op("Transpose", [x], perm=[0, 2, 3, 1])

    def output(self, x, name, shape):
        self.nodes.append(helper.make_node("Identity", [x], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

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


def main():
    root = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    os.makedirs(root, exist_ok=True)
    for n in names:
        MODELS[n](root)


if __name__ == "__main__":
    main()
