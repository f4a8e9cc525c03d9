"""Compare NanoDet pre-processing x decode variants on the test photos (for models/README.md).

Usage: nanodet_compare.py [--test-data DIR] [--threshold 0.3]

Variants: normalisation 'human' (RGB / 255, what the Human library feeds) or 'standard'
(BGR, mean/std of NanoDet's training config); decode 'human' (argmax bin, Human's x2.5*13/32
scale) or 'standard' (softmax expected value x stride). Letterbox 416x416 for all, class-wise
NMS IoU 0.5. Then NanoDet ('standard' both) and CenterNet heads at frame-shaped inputs
(long side 512/416/320, short side rounded up to 32); models/nanodet.onnx takes any size
(relax_shapes.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402
from centernet_decode import ROOT, test_data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-data")
    ap.add_argument("--threshold", type=float, default=0.3)
    args = ap.parse_args()
    data = test_data_dir(args.test_data)
    labels = (ROOT / "models/coco80.txt").read_text().split("\n")
    nano = ort.InferenceSession(str(ROOT / "models/nanodet.onnx"), providers=["CPUExecutionProvider"])
    heads = ort.InferenceSession(str(ROOT / "models/centernet-heads.onnx"), providers=["CPUExecutionProvider"])
    for name in ("bus.jpg", "zidane.jpg"):
        rgb = prep.load_rgb(str(data / name))
        h, w = rgb.shape[:2]
        x416 = prep.Letterbox(w, h, 416, 416).apply(rgb)
        for norm in ("human", "standard"):
            outs = nano.run(None, {"input_1": prep.nanodet_input(x416, norm)})
            for dec in ("human", "standard"):
                d = prep.nms_classwise(
                    prep.nanodet_decode([o[0] for o in outs[:3]], [o[0] for o in outs[3:]], 416, 416, args.threshold, dec)
                )
                found = ", ".join(f"{labels[k['class_id']]} {k['score']:.2f}" for k in d)
                print(f"{name} nanodet norm={norm:8} decode={dec:8}: {found}")
        for size in (512, 416, 320):
            for iw, ih in ((size, size), prep.frame_shape(w, h, size)):
                x = prep.Letterbox(w, h, iw, ih).apply(rgb)
                lo, wh = heads.run(None, {"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
                d = prep.nms_classwise(prep.centernet_decode_heads(lo[0], wh[0], args.threshold))
                found = ", ".join(f"{labels[k['class_id']]} {k['score']:.2f}" for k in d)
                print(f"{name} centernet {iw}x{ih}: {found}")
                outs = nano.run(None, {"input_1": prep.nanodet_input(x, "standard")})
                d = prep.nms_classwise(
                    prep.nanodet_decode([o[0] for o in outs[:3]], [o[0] for o in outs[3:]], iw, ih, args.threshold, "standard")
                )
                found = ", ".join(f"{labels[k['class_id']]} {k['score']:.2f}" for k in d)
                print(f"{name} nanodet   {iw}x{ih}: {found}")


if __name__ == "__main__":
    main()
