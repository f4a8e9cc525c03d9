"""Write a model's input tensor for a photo (float32 LE, C order) and print its shape as JSON.

Usage: make_input.py MODEL PHOTO OUT.bin [SIZE] [--frame]
MODEL: centernet | centernet-heads | nanodet. Letterbox to SIZE x SIZE (default: the model's
own 512 / 416), or with --frame to an input shaped like the photo (long side SIZE, short
side rounded up to a multiple of 32; not for the fixed-size full centernet).
Pre-processing as models/README.md; centernet-heads gets NCHW. Used by bench/models/tfjs_bench.mjs so the
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


def make(model: str, photo: str, size: int | None = None, frame: bool = False) -> np.ndarray:
    if model not in SIZES:
        raise SystemExit(f"unknown model {model}; one of {', '.join(SIZES)}")
    rgb = prep.load_rgb(photo)
    h, w = rgb.shape[:2]
    s = size or SIZES[model]
    if frame and model == "centernet":
        raise SystemExit("the full centernet runs at 512x512 only")
    iw, ih = prep.frame_shape(w, h, s) if frame else (s, s)
    x = prep.Letterbox(w, h, iw, ih).apply(rgb)
    if model == "centernet":
        return np.ascontiguousarray(x[None], np.float32)
    if model == "centernet-heads":
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)
    return prep.nanodet_input(x, "standard")


if __name__ == "__main__":
    frame = "--frame" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--frame"]
    if len(args) not in (3, 4):
        raise SystemExit(__doc__)
    t = make(args[0], args[1], int(args[3]) if len(args) == 4 else None, frame)
    t.tofile(sys.argv[3])
    print(json.dumps(list(t.shape)))
