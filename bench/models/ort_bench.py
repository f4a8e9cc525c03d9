"""Anchor: onnxruntime (PyPI wheel) from Python on the untrimmed ONNX models.

Usage: .venv/bin/python bench/models/ort_bench.py [--json] [--models centernet,nanodet]
       [--threads 1,2] [--runs 20] [--warmup 3] [--test-data DIR]

Input: bus.jpg letterboxed to the model's square input (512 CenterNet, 416 NanoDet), the
same tensor tfjs_bench.mjs feeds TF.js. Per (model, threads): `--warmup` untimed runs, then
`--runs` timed session.run() calls (output copy to numpy included); median and p95
(nearest rank) in ms. --json prints one JSON object per line instead of the table.
A model entry is NAME[:SIZE[:frame]], e.g. `centernet-heads:512:frame` (the trimmed graph at
an input shaped like bus.jpg, 384x512) or `nanodet:320`; see tools/models/make_input.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/models"))
from make_input import make  # noqa: E402


def parse_spec(spec: str) -> tuple[str, int | None, bool]:
    """NAME[:SIZE[:frame]] -> (name, size or None, frame)."""
    parts = spec.split(":")
    if len(parts) > 3 or (len(parts) == 3 and parts[2] != "frame"):
        sys.exit(f"bad model spec {spec!r}: NAME[:SIZE[:frame]]")
    return parts[0], int(parts[1]) if len(parts) > 1 else None, len(parts) == 3


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", default="centernet,nanodet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--test-data")
    args = ap.parse_args()
    data = Path(args.test_data or os.environ.get("CALLSIGHT_TEST_DATA") or ROOT / "test-data")
    photo = data / "bus.jpg"
    if not photo.is_file():
        sys.exit(f"missing {photo}: run scripts/fetch-test-data.sh")
    rows = []
    for spec in args.models.split(","):
        model, size, frame = parse_spec(spec)
        x = make(model, str(photo), size, frame)
        for threads in (int(t) for t in args.threads.split(",")):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(ROOT / f"models/{model}.onnx"), so, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x}
            for _ in range(args.warmup):
                sess.run(None, feed)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times.append((time.perf_counter() - t0) * 1e3)
            row = {
                "bench": "onnxruntime-python",
                "runtime": f"onnxruntime {ort.__version__} (Python {platform.python_version()})",
                "model": model,
                "input": list(x.shape),
                "image": "bus.jpg",
                "threads": threads,
                "warmup": args.warmup,
                "runs": args.runs,
                "median_ms": round(statistics.median(times), 3),
                "p95_ms": round(p95(times), 3),
                "min_ms": round(min(times), 3),
            }
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'runtime':34} {'model':16} {'input':18} {'thr':>3} {'median ms':>10} {'p95 ms':>9}")
        for r in rows:
            shape = "x".join(map(str, r["input"]))
            print(f"{r['runtime']:34} {r['model']:16} {shape:18} {r['threads']:3d} {r['median_ms']:10.1f} {r['p95_ms']:9.1f}")


if __name__ == "__main__":
    main()
