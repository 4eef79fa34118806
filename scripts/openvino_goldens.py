"""Golden results from the real PySDK 1.5.0's OPENVINO/CPU agent.

    LD_LIBRARY_PATH=$PEER/ov-2025.3[-f32]:$PEER/ort HOME=<scratch> $PEER/venv/bin/python \
        scripts/openvino_goldens.py ZOO_DIR IMAGES_DIR OUT.json IMAGE...

Loads every model of the local zoo ZOO_DIR (OPENVINO copies of ONNX models, see
scripts/setup-openvino-peer.sh), checks it really runs on OPENVINO/CPU, runs it on each image
file and writes {"openvino": <OPENVINO/CPU entry of system info>, "results": {model: {image:
results}}} as JSON. Never import the `openvino` package here: it would shadow the new-ABI
OpenVINO PySDK's agent needs (see ../shared/spec/openvino-peer.md).
"""
import json
import os
import sys

import degirum as dg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-zoo"))
from pysdk_json import plain  # noqa: E402


def main():
    zoo_dir, images_dir, out_path, images = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    zoo = dg.connect(dg.LOCAL, zoo_dir)
    devices = zoo.system_info()["Devices"]
    if "OPENVINO/CPU" not in devices:
        sys.exit("PySDK does not list OPENVINO/CPU (is the new-ABI OpenVINO first on LD_LIBRARY_PATH?)")
    out = {"openvino": plain(devices["OPENVINO/CPU"]), "results": {}}
    for name in zoo.list_models():
        model = zoo.load_model(name)
        if model.device_type != "OPENVINO/CPU":
            sys.exit(f"{name} runs on {model.device_type}, not OPENVINO/CPU")
        out["results"][name] = {img: plain(model.predict(f"{images_dir}/{img}").results) for img in images}
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
