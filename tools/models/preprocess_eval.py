"""Pre-processing variants of the bundled models on the labelled photo set.

Writes one JSON-lines file per variant (the format of `callsight detect`: {file,
detections: [{label, score, box: [x, y, w, h] normalised]}), for `vision-eval --detections`
to score (bench/accuracy.sh does both). onnxruntime, the same letterbox and decode as the
Rust detector (prep.py), input shaped like the Rust detector's (long side = size, short
side rounded up to 32 and >= 3/4 of the long side), score >= 0.05, class-wise NMS 0.5.

Variants:
  nanodet-standard   BGR, (x - mean) / std of NanoDet's training config (what Callsight feeds)
  nanodet-rgb        the same mean/std, channels in RGB order (a channel swap at conversion?)
  nanodet-human      RGB / 255 (what the Human library feeds the same graph)
  nanodet-pad-mean   standard, but the letterbox bars at the mean colour (0 after normalising)
  centernet-rgb      RGB 0..255 (what Callsight feeds)
  centernet-bgr      BGR 0..255

Usage: preprocess_eval.py --set bench/eval/annotations.json --images test-data/eval --out DIR
       [--size 416] [--centernet-size 512]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FLOOR = 0.05


def rust_shape(w: int, h: int, long_side: int) -> tuple[int, int]:
    """crates/vision preprocess::frame_shaped."""
    s = prep.STRIDE
    long = math.ceil(long_side / s) * s
    a, b = (w, h) if w >= h else (h, w)
    short = max(1, math.ceil(b * long / a / s)) * s
    short = min(max(short, math.ceil(long * 3 // 4 / s) * s), long)
    return (long, short) if w >= h else (short, long)


def letterbox(rgb: np.ndarray, iw: int, ih: int, pad: np.ndarray | None) -> tuple[np.ndarray, prep.Letterbox]:
    h, w = rgb.shape[:2]
    lb = prep.Letterbox(w, h, iw, ih)
    x = lb.apply(rgb)
    if pad is not None:
        mask = np.ones((ih, iw), bool)
        mask[lb.oy : lb.oy + lb.nh, lb.ox : lb.ox + lb.nw] = False
        x[mask] = pad
    return x, lb


def nanodet(sess, rgb, size, order, mean, std, pad=None):
    h, w = rgb.shape[:2]
    iw, ih = rust_shape(w, h, size)
    x, lb = letterbox(rgb, iw, ih, pad)
    if order == "bgr":
        x = x[..., ::-1]
    x = (x - mean) / std
    outs = sess.run(None, {"input_1": np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)})
    d = prep.nanodet_decode([o[0] for o in outs[:3]], [o[0] for o in outs[3:]], iw, ih, FLOOR, "standard")
    return prep.nms_classwise(d), lb


def centernet(sess, rgb, size, order):
    h, w = rgb.shape[:2]
    iw, ih = rust_shape(w, h, size)
    x, lb = letterbox(rgb, iw, ih, None)
    if order == "bgr":
        x = x[..., ::-1]
    lo, wh = sess.run(None, {"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)})
    return prep.nms_classwise(prep.centernet_decode_heads(lo[0], wh[0], FLOOR)), lb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default=str(ROOT / "bench/eval/annotations.json"))
    ap.add_argument("--images", default=str(ROOT / "test-data/eval"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--centernet-size", type=int, default=512)
    a = ap.parse_args()
    labels = (ROOT / "models/coco80.txt").read_text().split("\n")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    nano = ort.InferenceSession(str(ROOT / "models/nanodet.onnx"), opts, providers=["CPUExecutionProvider"])
    heads = ort.InferenceSession(str(ROOT / "models/centernet-heads.onnx"), opts, providers=["CPUExecutionProvider"])
    std_mean, std_std = prep.NANODET_NORM["standard"][1], prep.NANODET_NORM["standard"][2]
    variants = {
        f"nanodet-standard-{a.size}": lambda rgb: nanodet(nano, rgb, a.size, "bgr", std_mean, std_std),
        f"nanodet-rgb-{a.size}": lambda rgb: nanodet(nano, rgb, a.size, "rgb", std_mean[::-1], std_std[::-1]),
        f"nanodet-human-{a.size}": lambda rgb: nanodet(nano, rgb, a.size, "rgb", np.zeros(3, np.float32), 255.0),
        f"nanodet-pad-mean-{a.size}": lambda rgb: nanodet(
            nano, rgb, a.size, "bgr", std_mean, std_std, pad=std_mean[::-1].copy()
        ),
        f"centernet-rgb-{a.centernet_size}": lambda rgb: centernet(heads, rgb, a.centernet_size, "rgb"),
        f"centernet-bgr-{a.centernet_size}": lambda rgb: centernet(heads, rgb, a.centernet_size, "bgr"),
    }
    images = json.load(open(a.set))["images"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: open(out / f"{name}.jsonl", "w") for name in variants}
    for im in images:
        rgb = prep.load_rgb(str(Path(a.images) / im["file"]))
        for name, run in variants.items():
            dets, lb = run(rgb)
            line = {
                "file": im["file"],
                "frame": 0,
                "detections": [
                    {"label": labels[d["class_id"]], "score": round(d["score"], 4), "box": lb.to_image(*d["xyxy"])}
                    for d in dets
                ],
            }
            files[name].write(json.dumps(line) + "\n")
    for f in files.values():
        f.close()
    print("\n".join(str(out / f"{n}.jsonl") for n in variants))


if __name__ == "__main__":
    main()
