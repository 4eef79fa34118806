"""Runs the real PySDK 1.5.0 on every model of a zoo built by build_zoo.py with the shared images
and writes the golden results: DIR/expected/<model>/<image>.json = {"results": [...]} (local
inference, RAW frames, as ../shared/zoo/expected). numpy arrays become
{"__ndarray__": true, "dtype", "shape", "data"}. Usage: goldens.py DIR IMAGES_DIR"""
import json
import os
import sys

import degirum as dg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pysdk_json import plain  # noqa: E402


def main():
    root, images = sys.argv[1], sys.argv[2]
    zoo = dg.connect(dg.LOCAL, root)
    imgs = sorted(f for f in os.listdir(images) if f.endswith(".jpg"))
    for name in zoo.list_models():
        out = os.path.join(root, "expected", name)
        os.makedirs(out, exist_ok=True)
        model = zoo.load_model(name, input_image_format="RAW")
        for f in imgs:
            r = model(os.path.join(images, f))
            json.dump({"results": plain(r.results)}, open(os.path.join(out, f[:-4] + ".json"), "w"), indent=1)
        print(f"goldens: {name}: {len(imgs)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
