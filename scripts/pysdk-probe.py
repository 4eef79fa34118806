"""Probe PySDK 1.5.0's post-processors with hand-built models whose outputs you choose (how
dgzoo's SSD, hand and DAMO-YOLO decoders were worked out: the real PySDK is the oracle).

  build: <test-zoo venv python> scripts/pysdk-probe.py build SPEC.json DIR
  run:   LD_LIBRARY_PATH=$DGZOO_PEER/ort $DGZOO_PEER/venv/bin/python scripts/pysdk-probe.py run DIR [IMAGE]

SPEC.json: {"<name>--64x64_float_onnx_cpu_1": {"outputs": {"<tensor>": nested list, or
{"dtype": "uint8"|"int8", "data": nested list}}, "post": {POST_PROCESS keys}}}. Each model's
outputs are those constants (plus an image-dependent zero, so the graph uses its input), in
the order given: PySDK's ONNX tensor ids are 1, 2, ... in that order. "run" prints each model's
PySDK results (or its error) as one JSON line; use a 64x64 image for model-pixel coordinates.
The build step needs the `onnx` venv of scripts/make-test-zoo.sh; the run step PySDK's."""
import json
import os
import sys


def build(spec_path, root):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-zoo"))
    import numpy as np
    from onnx import TensorProto

    import build_zoo as bz

    types = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}
    for name, m in json.load(open(spec_path)).items():
        g = bz.Graph(1)
        zero = g.op("ReduceMean", [g.op("Mul", ["images", g.const(np.zeros((1, 1, 1, 1)))])], keepdims=0)
        for out, arr in m["outputs"].items():
            dtype = None
            if isinstance(arr, dict):
                dtype, arr = arr["dtype"], arr["data"]
            a = np.asarray(arr, dtype=np.float32)
            x = g.op("Add", [g.const(a), zero])
            if dtype:
                g.output(g.op("Cast", [x], to=types[dtype]), out, list(a.shape), types[dtype])
            else:
                g.output(x, out, list(a.shape))
        bz.write(root, name, g, m["post"], m.get("labels", bz.LABELS5), m.get("pre"))


def run(root, image):
    import degirum as dg

    zoo = dg.connect(dg.LOCAL, root)
    for name in zoo.list_models():
        try:
            r = zoo.load_model(name, input_image_format="RAW")(image).results
            print(json.dumps({"model": name, "results": r}, default=str))
        except Exception as e:  # the error text is the finding
            print(json.dumps({"model": name, "error": str(e)}))


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    else:
        run(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/zoo/images/cat_224.jpg"))
