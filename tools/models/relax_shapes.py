"""Let a converted NanoDet take any input size (multiples of 32).

Usage: relax_shapes.py IN.onnx OUT.onnx

tf2onnx declares the export size everywhere (input [1,3,416,416], value_info, output
[1,2704,80] ...). The graph itself is convolutional and its reshapes use -1, so with the
input's H and W made symbolic ("height", "width") and the declared inner and output shapes
dropped, it runs at e.g. 1x3x320x416 (outputs 2080/520/130 cells). Checked by running the
result at 416x416 and at 320x416 with onnxruntime.
"""

import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(src: str, dst: str) -> None:
    m = onnx.load(src)
    if len(m.graph.input) != 1:
        raise SystemExit("expected one input")
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise SystemExit("expected a 4-d input")
    dims[2].Clear()
    dims[3].Clear()
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    del m.graph.value_info[:]
    for o in m.graph.output:
        for d in o.type.tensor_type.shape.dim:
            d.Clear()
    onnx.checker.check_model(m)
    data = m.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for h, w in ((416, 416), (320, 416)):
        outs = sess.run(None, {name: np.zeros((1, 3, h, w), np.float32)})
        cells = [o.shape[1] for o in outs[:3]]
        want = [(h // s) * (w // s) for s in (8, 16, 32)]
        if cells != want:
            raise SystemExit(f"at {w}x{h} got {cells} cells, expected {want}")
    with open(dst, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
