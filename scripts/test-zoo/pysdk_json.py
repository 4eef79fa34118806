"""PySDK results as plain JSON, the form of ../shared/zoo/expected: numpy arrays become
{"__ndarray__": true, "dtype", "shape", "data"}; numpy scalars become Python numbers. Shared by
the golden makers (goldens.py here, scripts/openvino_goldens.py)."""
import numpy as np


def plain(v):
    if isinstance(v, np.ndarray):
        return {"__ndarray__": True, "dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
