"""Quantise a float ONNX image model to int8 QDQ ONNX with ONNX Runtime's static quantiser,
calibrated on the given images (for the OPENVINO int8 tests; run with $DGZOO_PEER/ovvenv).

    python scripts/make_qdq_model.py IN.onnx OUT.onnx SIZE MEAN STD IMAGE...

Each image is resized to SIZE x SIZE (bilinear), scaled to (pixel - MEAN) / STD, NCHW float32.
"""
import sys

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from PIL import Image


class Images(CalibrationDataReader):
    def __init__(self, name, size, mean, std, paths):
        self.frames = []
        for p in paths:
            img = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
            x = (np.asarray(img, dtype=np.float32) - mean) / std
            self.frames.append({name: x.transpose(2, 0, 1)[None].copy()})
        self.it = iter(self.frames)

    def get_next(self):
        return next(self.it, None)


def main():
    src, dst, size, mean, std, images = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]
    import onnx

    name = onnx.load(src).graph.input[0].name
    quantize_static(src, dst, Images(name, size, mean, std, images), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


if __name__ == "__main__":
    main()
