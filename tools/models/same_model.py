"""Check that two ONNX files are the same model up to generated names.

Usage: same_model.py A.onnx B.onnx

tf2onnx numbers the constants it folds and de-duplicates in an order that changes from
run to run (even with PYTHONHASHSEED fixed), so a fresh conversion is not byte-identical to
the committed file. This checks what matters: the same multiset of weight tensors (bytes),
the same multiset of op types, the same inputs/outputs, and the same outputs (max abs diff
<= 1e-5) on one random input of the model's (or a 512x512) shape. Exit status 1 if not.
"""

import collections
import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort


def summary(m: onnx.ModelProto):
    weights = collections.Counter(
        hashlib.sha256(onnx.numpy_helper.to_array(t).tobytes()).hexdigest() for t in m.graph.initializer
    )
    ops = collections.Counter(n.op_type for n in m.graph.node)
    io = ([i.name for i in m.graph.input], [o.name for o in m.graph.output])
    return weights, ops, io


def main(a: str, b: str) -> int:
    ma, mb = onnx.load(a), onnx.load(b)
    wa, oa, ia = summary(ma)
    wb, ob, ib = summary(mb)
    problems = []
    if wa != wb:
        problems.append("weights differ")
    if oa != ob:
        problems.append(f"op types differ: {oa - ob} / {ob - oa}")
    if ia != ib:
        problems.append(f"inputs/outputs differ: {ia} / {ib}")
    sa = ort.InferenceSession(a, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(b, providers=["CPUExecutionProvider"])
    inp = sa.get_inputs()[0]
    shape = [d if isinstance(d, int) else 512 for d in inp.shape]
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    worst = max(
        float(np.abs(p - q).max()) for p, q in zip(sa.run(None, {inp.name: x}), sb.run(None, {inp.name: x}))
    )
    if worst > 1e-5:
        problems.append(f"outputs differ by {worst:.3e}")
    print(f"{a} vs {b}: {len(ma.graph.node)} nodes, {sum(wa.values())} weights, max output diff {worst:.2e}"
          + (" -> DIFFERENT: " + "; ".join(problems) if problems else " -> same model"))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
