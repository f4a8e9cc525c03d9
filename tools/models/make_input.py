"""Write a model's input tensor for a photo (float32 LE, C order) and print its shape as JSON.

Usage: make_input.py MODEL PHOTO OUT.bin   (MODEL: centernet | centernet-heads | nanodet)
Square letterbox at the model's own size (512 / 416), pre-processing as models/README.md;
centernet-heads gets the 512x512 NCHW tensor. Used by bench/models/tfjs_bench.mjs so the
TF.js anchor sees exactly the tensor the onnxruntime anchor sees.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402

SIZES = {"centernet": 512, "centernet-heads": 512, "nanodet": 416}


def make(model: str, photo: str) -> np.ndarray:
    if model not in SIZES:
        raise SystemExit(f"unknown model {model}; one of {', '.join(SIZES)}")
    rgb = prep.load_rgb(photo)
    h, w = rgb.shape[:2]
    s = SIZES[model]
    x = prep.Letterbox(w, h, s, s).apply(rgb)
    if model == "centernet":
        return np.ascontiguousarray(x[None], np.float32)
    if model == "centernet-heads":
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)
    return prep.nanodet_input(x, "standard")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    t = make(sys.argv[1], sys.argv[2])
    t.tofile(sys.argv[3])
    print(json.dumps(list(t.shape)))
