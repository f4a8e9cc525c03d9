"""Fold explicit Pad nodes into the Conv / MaxPool that consumes them.

Usage: fold_pads.py IN.onnx OUT.onnx [--check-image test-data/bus.jpg]

tf2onnx renders TF's SAME padding as a separate `Pad` before each strided or 3x3 conv
(NanoDet: 29 of them). tract runs each as its own op (8 % of NanoDet's time, see
docs/vision.md). A Pad is folded when:
- mode is constant (the default), its pads come from an initializer, rank 4, and the
  batch and channel pads are zero;
- every consumer is a Conv with auto_pad NOTSET and a zero constant value (absent or an
  initializer equal to 0), or a MaxPool with a -inf constant value (MaxPool's own padding
  never wins a max, which is what -inf padding means);
- its output is not a graph output.
The consumer's `pads` attribute ([h_begin, w_begin, h_end, w_end]) gets the spatial pads
added and reads the Pad's input directly; the Pad goes.

Result on NanoDet (docs/vision.md, "Pad folding"): all 29 folded, outputs identical in
onnxruntime, but tract lowers every padded Conv into its own Pad + im2col + matmul, so
tract still runs 27 Pad ops and is no faster. The bundled model is therefore left as
converted; the script stays as the tool and the record.

Parity: the rewritten model runs with onnxruntime next to the original on a photo (at
416x416 and 320x416, or the model's fixed size; NCHW RGB/255 or NHWC RGB 0..255 as the
input's layout says); every output must agree within 1e-5 (absolute), or the script fails
and writes nothing.
"""

import argparse
import math
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_ints(node, name, values):
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, [int(v) for v in values]))


def fold(model: onnx.ModelProto) -> int:
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    removed = []
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        mode = attr(pad, "mode", b"constant")
        if mode not in (b"constant", "constant"):
            continue
        if len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        p = inits[pad.input[1]].astype(np.int64).reshape(-1)
        if p.size != 8 or p[0] or p[1] or p[4] or p[5] or (p < 0).any():
            continue
        value = 0.0
        if len(pad.input) >= 3 and pad.input[2]:
            if pad.input[2] not in inits:
                continue
            value = float(inits[pad.input[2]].reshape(-1)[0])
        users = consumers.get(pad.output[0], [])
        if not users or pad.output[0] in outputs:
            continue

        def ok(c):
            if attr(c, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                return False
            if c.input[0] != pad.output[0] or pad.output[0] in c.input[1:]:
                return False
            if c.op_type == "Conv":
                return value == 0.0
            if c.op_type == "MaxPool":
                return value == -math.inf and not attr(c, "ceil_mode", 0)
            return False

        if not all(ok(c) for c in users):
            continue
        spatial = [p[2], p[3], p[6], p[7]]  # h_begin, w_begin, h_end, w_end
        for c in users:
            old = attr(c, "pads", [0, 0, 0, 0])
            set_ints(c, "pads", [a + b for a, b in zip(old, spatial)])
            c.input[0] = pad.input[0]
        removed.append(pad)
    for pad in removed:
        g.node.remove(pad)
    # Drop initializers no node uses any more.
    used = {i for n in g.node for i in n.input}
    for init in list(g.initializer):
        if init.name not in used:
            g.initializer.remove(init)
    return len(removed)


def parity(src: onnx.ModelProto, dst: onnx.ModelProto, image: str) -> float:
    import onnxruntime as ort
    from PIL import Image

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a = ort.InferenceSession(src.SerializeToString(), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(dst.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inp = a.get_inputs()[0]
    name, shape = inp.name, inp.shape
    nchw = shape[1] == 3
    fixed = [d for d in (shape[2:] if nchw else shape[1:3]) if isinstance(d, int)]
    sizes = [tuple(fixed)] if len(fixed) == 2 else [(416, 416), (320, 416)]
    worst = 0.0
    for h, w in sizes:
        img = Image.open(image).convert("RGB").resize((w, h), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32)
        # NanoDet takes NCHW 0..1, CenterNet NHWC 0..255 (models/README.md).
        x = (x / 255.0).transpose(2, 0, 1)[None] if nchw else x[None]
        for oa, ob in zip(a.run(None, {name: x}), b.run(None, {name: x})):
            if oa.shape != ob.shape:
                raise SystemExit(f"shape differs at {h}x{w}: {oa.shape} vs {ob.shape}")
            worst = max(worst, float(np.abs(oa - ob).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--check-image", required=True)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    src = onnx.load(args.src)
    dst = onnx.ModelProto()
    dst.CopyFrom(src)
    n = fold(dst)
    onnx.checker.check_model(dst)
    left = sum(1 for node in dst.graph.node if node.op_type == "Pad")
    worst = parity(src, dst, args.check_image)
    print(f"folded {n} Pad nodes ({left} left); max abs output difference {worst:.3g}", file=sys.stderr)
    if worst > args.tolerance:
        raise SystemExit(f"parity failed: {worst} > {args.tolerance}")
    onnx.save(dst, args.dst)


if __name__ == "__main__":
    main()
