"""Reference decoder for models/centernet-heads.onnx, checked against the full graph.

Usage: centernet_decode.py [--test-data DIR] [--sizes 512,416,320]

1. On each test photo, letterboxed to 512x512, runs models/centernet.onnx (the graph's own
   decode: TopK 100 -> [x1, y1, x2, y2, score, class]) and models/centernet-heads.onnx, decodes
   the heads with prep.centernet_decode_heads() and checks that every full-graph row with
   score >= 0.05 comes out the same (class, score within 1e-4, corners within 0.05 px).
   Exit status 1 on any mismatch.
2. Prints what the heads model finds (score >= 0.3, class-wise NMS IoU 0.5) at frame-shaped
   inputs (long side = each size) for the README.
Needs the project venv (.venv, from scripts/fetch-test-data.sh) and test-data/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_data_dir(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("CALLSIGHT_TEST_DATA") or ROOT / "test-data")
    if not (d / "bus.jpg").is_file():
        sys.exit(f"missing {d}/bus.jpg: run scripts/fetch-test-data.sh")
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-data")
    ap.add_argument("--sizes", default="512,416,320")
    args = ap.parse_args()
    data = test_data_dir(args.test_data)
    labels = (ROOT / "models/coco80.txt").read_text().split("\n")
    full = ort.InferenceSession(str(ROOT / "models/centernet.onnx"), providers=["CPUExecutionProvider"])
    heads = ort.InferenceSession(str(ROOT / "models/centernet-heads.onnx"), providers=["CPUExecutionProvider"])
    failures = 0
    for name in ("bus.jpg", "zidane.jpg"):
        rgb = prep.load_rgb(str(data / name))
        h, w = rgb.shape[:2]
        lb = prep.Letterbox(w, h, 512, 512)
        x = lb.apply(rgb)
        rows = full.run(None, {"tower_0_images": x[None]})[0][0]
        logits, wh = heads.run(None, {"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
        mine = prep.centernet_decode_heads(logits[0], wh[0], threshold=0.05)
        want = [r for r in rows if r[4] >= 0.05]
        ok = len(mine) == len(want)
        worst_s = worst_b = 0.0
        for r, m in zip(want, mine):
            worst_s = max(worst_s, abs(r[4] - m["score"]))
            worst_b = max(worst_b, float(np.max(np.abs(np.array(r[:4]) - m["xyxy"]))))
            ok &= int(r[5]) == m["class_id"]
        ok &= worst_s <= 1e-4 and worst_b <= 0.05
        failures += not ok
        print(
            f"{name}: full graph {len(want)} rows >= 0.05, heads decode {len(mine)}; "
            f"max |score diff| {worst_s:.2e}, max |corner diff| {worst_b:.2e} px -> {'OK' if ok else 'MISMATCH'}"
        )
        for size in (int(s) for s in args.sizes.split(",")):
            iw, ih = prep.frame_shape(w, h, size)
            lb = prep.Letterbox(w, h, iw, ih)
            x = lb.apply(rgb).transpose(2, 0, 1)[None]
            logits, wh = heads.run(None, {"images": np.ascontiguousarray(x)})
            dets = prep.nms_classwise(prep.centernet_decode_heads(logits[0], wh[0], threshold=0.3))
            found = ", ".join(f"{labels[d['class_id']]} {d['score']:.2f}" for d in dets)
            print(f"  {iw}x{ih}: {found}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
