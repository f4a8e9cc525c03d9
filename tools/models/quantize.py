"""Stretch: int8 NanoDet with onnxruntime static quantisation, calibrated on real photos.

Usage: .cache/models/venv/bin/python tools/models/quantize.py NANODET.onnx OUT.onnx [--method minmax|entropy|percentile]
(tools/models/convert.sh runs it to make models/nanodet-int8.onnx.)

Calibration photos come from the PyPI wheel of scikit-image 0.25.2 (skimage/data: astronaut
and rocket — public domain (NASA, SpaceX); camera, chelsea, coffee — CC0; as skimage.data's
docstrings state). bus.jpg and zidane.jpg are kept out of calibration so they can judge the
result.
QDQ format, per-channel int8 weights, uint8 activations (MinMax calibration), input 416x416
letterboxed with the standard NanoDet normalisation. Kept in float: the stem's -inf PadV2 +
MaxPool (no finite range) and the heads (last convs onwards). The result is then freed to
any input size (relax_shapes.py). Prints float-vs-int8 speed (onnxruntime, 1 thread) and
both models' detections on the test photos with the worst matched-box IoU and score change.
"""

from __future__ import annotations

import argparse
import glob
import io
import statistics
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prep  # noqa: E402

# The quantiser divides by the range of every tensor it calibrates, including the excluded
# -inf padding; its numpy warnings about that are expected.
warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime.quantization")

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache/calib"
WHEEL = "scikit-image==0.25.2"
PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]


def calibration_images() -> list[np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = glob.glob(str(CACHE / "scikit_image-0.25.2-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(CACHE), WHEEL],
            check=True,
        )
        wheels = glob.glob(str(CACHE / "scikit_image-0.25.2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        return [np.asarray(Image.open(io.BytesIO(z.read(f"skimage/data/{p}"))).convert("RGB")) for p in PHOTOS]


def nanodet_tensor(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return prep.nanodet_input(prep.Letterbox(w, h, 416, 416).apply(rgb), "standard")


class Reader(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray]):
        self.items = iter([{"input_1": nanodet_tensor(im)} for im in images])

    def get_next(self):
        return next(self.items, None)


def fold_neg_inf_pad(m) -> None:
    """tf2onnx wrote the stem's max-pool as Pad(value=-inf) + MaxPool. An infinite range has
    no int8 scale (NaN everywhere after it: every output became "banana") and breaks the
    histogram calibrators, so move the padding into MaxPool's own pads (same result: MaxPool
    ignores padded cells)."""
    from onnx import helper, numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for pad in list(m.graph.node):
        if pad.op_type != "Pad" or len(pad.input) < 3 or pad.input[2] not in inits:
            continue
        if not np.isneginf(inits[pad.input[2]]).all():
            continue
        users = [n for n in m.graph.node if pad.output[0] in n.input]
        if len(users) != 1 or users[0].op_type != "MaxPool":
            raise SystemExit(f"{pad.name}: -inf Pad not followed by a single MaxPool")
        p = inits[pad.input[1]].astype(int).tolist()  # [n, c, t, l, n, c, b, r]
        if p[0] or p[1] or p[4] or p[5]:
            raise SystemExit(f"{pad.name}: pads on batch/channel {p}")
        pool = users[0]
        for a in list(pool.attribute):
            if a.name in ("pads", "auto_pad"):
                pool.attribute.remove(a)
        pool.attribute.append(helper.make_attribute("pads", [p[2], p[3], p[6], p[7]]))
        pool.input[0] = pad.input[0]
        m.graph.node.remove(pad)


def head_nodes(path: str) -> list[str]:
    """The last convolutions (one per stride) and everything after them: scores squashed to
    uint8 lose the ranking that the 0.3 threshold and NMS need, so the heads stay float."""
    import onnx

    m = onnx.load(path)
    producer = {o: n for n in m.graph.node for o in n.output}
    names, todo = set(), [o.name for o in m.graph.output]
    while todo:
        n = producer.get(todo.pop())
        if n is None or n.name in names:
            continue
        names.add(n.name)
        if n.op_type != "Conv":
            todo.extend(n.input)
    return sorted(names)


def bench(path: str, x: np.ndarray) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, {"input_1": x})
    t = []
    for _ in range(20):
        t0 = time.perf_counter()
        s.run(None, {"input_1": x})
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    args = ap.parse_args()
    src = Path(args.src)
    pre = CACHE / "nanodet-pre.onnx"
    # Fixed 416x416 for calibration; shape inference lets the quantiser see every tensor.
    import onnx

    m = onnx.load(str(src))
    d = m.graph.input[0].type.tensor_type.shape.dim
    d[2].Clear()
    d[3].Clear()
    d[2].dim_value = d[3].dim_value = 416
    fold_neg_inf_pad(m)
    fixed = CACHE / "nanodet-416.onnx"
    onnx.save(m, str(fixed))
    quant_pre_process(str(fixed), str(pre))
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    quantize_static(
        str(pre),
        args.out,
        Reader(calibration_images()),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method[args.method],
        nodes_to_exclude=head_nodes(str(pre)),
    )
    subprocess.run([sys.executable, str(Path(__file__).parent / "relax_shapes.py"), args.out, args.out], check=True)
    labels = (ROOT / "models/coco80.txt").read_text().split("\n")
    data = ROOT / "test-data"
    if not (data / "bus.jpg").is_file():
        sys.exit(f"missing {data}/bus.jpg: run scripts/fetch-test-data.sh")
    for name in ("bus.jpg", "zidane.jpg"):
        x = nanodet_tensor(prep.load_rgb(str(data / name)))
        dets = {}
        for kind, path in (("float", str(src)), ("int8 ", args.out)):
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            outs = s.run(None, {"input_1": x})
            d = prep.nms_classwise(prep.nanodet_decode([o[0] for o in outs[:3]], [o[0] for o in outs[3:]], 416, 416, 0.3, "standard"))
            dets[kind] = d
            print(f"{name} {kind}: " + ", ".join(f"{labels[k['class_id']]} {k['score']:.2f}" for k in d))
        worst_iou, worst_ds, missed = 1.0, 0.0, 0
        for a in dets["float"]:
            same = [b for b in dets["int8 "] if b["class_id"] == a["class_id"]]
            best = max(same, key=lambda b: prep.iou_xyxy(a["xyxy"], b["xyxy"]), default=None)
            if best is None or prep.iou_xyxy(a["xyxy"], best["xyxy"]) < 0.5:
                missed += 1
                continue
            worst_iou = min(worst_iou, prep.iou_xyxy(a["xyxy"], best["xyxy"]))
            worst_ds = max(worst_ds, abs(a["score"] - best["score"]))
        print(f"  float detections matched in int8 (IoU >= 0.5): {len(dets['float']) - missed}/{len(dets['float'])}, "
              f"worst IoU {worst_iou:.3f}, worst score change {worst_ds:.3f}")
    x = nanodet_tensor(prep.load_rgb(str(data / "bus.jpg")))
    print(f"onnxruntime {ort.__version__}, 1 thread, median of 20: float {bench(str(src), x):.1f} ms, int8 {bench(args.out, x):.1f} ms")


if __name__ == "__main__":
    main()
