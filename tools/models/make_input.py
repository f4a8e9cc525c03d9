"""Write a model's input tensor for a photo (float32 LE, C order) and print its shape as JSON.

Usage: make_input.py MODEL PHOTO OUT.bin [SIZE]   (MODEL: centernet | centernet-heads | nanodet)
Square letterbox at the model's own size (512 / 416), pre-processing as models/README.md;
centernet-heads gets an NCHW tensor shaped like the photo (long side SIZE, default 512,
short side rounded up to a multiple of 32). Used by bench/models/tfjs_bench.mjs so the
TF.js anchor sees exactly the tensor the onnxruntime anchor sees.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402

SIZES = {"centernet": 512, "centernet-heads": 512, "nanodet": 416}


def make(model: str, photo: str, size: int | None = None) -> np.ndarray:
    if model not in SIZES:
        raise SystemExit(f"unknown model {model}; one of {', '.join(SIZES)}")
    rgb = prep.load_rgb(photo)
    h, w = rgb.shape[:2]
    s = size or SIZES[model]
    iw, ih = prep.frame_shape(w, h, s) if model == "centernet-heads" else (s, s)
    x = prep.Letterbox(w, h, iw, ih).apply(rgb)
    if model == "centernet":
        return np.ascontiguousarray(x[None], np.float32)
    if model == "centernet-heads":
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)
    return prep.nanodet_input(x, "standard")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    t = make(sys.argv[1], sys.argv[2], int(sys.argv[4]) if len(sys.argv) == 5 else None)
    t.tofile(sys.argv[3])
    print(json.dumps(list(t.shape)))
