"""All model-speed anchors in one run: onnxruntime (Python), tract, TF.js wasm.

Usage: .venv/bin/python bench/models/all.py [--json] [--runs 20]

Same input everywhere (bus.jpg letterboxed, tools/models/make_input.py), 3 warm-ups, then
median and p95 of --runs. Prints one table (and the 1-minute load average before and after:
the machine is shared, so compare rows of one run only), or with --json the rows as JSON
lines. Needs scripts/fetch-test-data.sh, `npm ci` in tools/models, `tools/models/convert.sh
--extract-only`, and cargo (tract_bench.sh builds a small crate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def lines(cmd: list[str]) -> list[dict]:
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--runs", default="20")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    py = str(ROOT / ".venv/bin/python")
    specs = "centernet,nanodet,centernet-heads:512,centernet-heads:512:frame,nanodet:416:frame"
    rows = lines([py, str(HERE / "ort_bench.py"), "--json", "--runs", args.runs, "--models", specs])
    rows += lines([str(HERE / "tract_bench.sh"), "--json", "centernet:512", "nanodet:416"] + specs.split(",")[2:])
    rows += lines(["node", str(HERE / "tfjs_bench.mjs"), "--json", "--runs", args.runs])
    load1 = os.getloadavg()[0]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    base = {
        r["model"]: r["median_ms"]
        for r in rows
        if r["bench"] == "onnxruntime-python" and r["threads"] == 1 and r["model"] in ("centernet", "nanodet")
    }
    print(f"load average (1 min): {load0:.2f} before, {load1:.2f} after; 2 cores")
    print(f"{'runtime':42} {'model':16} {'input':14} {'thr':>3} {'median ms':>10} {'p95 ms':>8} {'vs ORT-1t untrimmed':>20}")
    for r in rows:
        fam = "centernet" if r["model"].startswith("centernet") else "nanodet"
        ratio = r["median_ms"] / base[fam] if fam in base else float("nan")
        shape = "x".join(map(str, r["input"]))
        print(
            f"{r['runtime'][:42]:42} {r['model']:16} {shape:14} {r['threads']:3d} "
            f"{r['median_ms']:10.1f} {r['p95_ms']:8.1f} {ratio:19.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
