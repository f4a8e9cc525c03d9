"""Cut the converted CenterNet at its raw heads so any input size works.

Usage: make_heads.py centernet.onnx centernet-heads.onnx

The full model ends in a decode (sigmoid, 3x3 max-pool peak test, TopK over the whole
heatmap, gather) whose Reshape to [16384, 4] pins the 128x128 grid, i.e. a 512x512 input.
This keeps only the network up to
  heatmap_logits  [1, 80, H/4, W/4]  class logits (apply sigmoid for scores)
  wh              [1, 4, H/4, W/4]   distances to the box's left, top, right, bottom edge
                                     in input pixels (the graph's x16 is kept)
and also drops the leading NHWC->NCHW Transpose, so the input is
  images          [1, 3, H, W]       RGB, float 0..255, NCHW; H, W multiples of 32
value_info and the declared output shapes are removed: they would pin 512x512 in tract.
"""

import sys

import onnx
from onnx import helper

CLS = "tower_0/CenternetHead/centernet_cls_output/BiasAdd/BiasAdd:0"
WH = "tower_0/mul:0"


def main(src: str, dst: str) -> None:
    model = onnx.load(src)
    g = model.graph
    if len(g.input) != 1:
        raise SystemExit(f"expected one input, found {len(g.input)}")
    inp = g.input[0]

    # The input feeds exactly one Transpose NHWC->NCHW; bypass it.
    users = [n for n in g.node if inp.name in n.input]
    if len(users) != 1 or users[0].op_type != "Transpose":
        raise SystemExit("input is not followed by a single Transpose")
    perm = next(helper.get_attribute_value(a) for a in users[0].attribute if a.name == "perm")
    if list(perm) != [0, 3, 1, 2]:
        raise SystemExit(f"unexpected input transpose perm {perm}")
    tr_out = users[0].output[0]
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == tr_out:
                n.input[i] = "images"
    g.node.remove(users[0])

    produced = {o for n in g.node for o in n.output}
    for name in (CLS, WH):
        if name not in produced:
            raise SystemExit(f"tensor {name} not found: was the model converted differently?")

    # Rename the two head tensors to stable names.
    renames = {CLS: "heatmap_logits", WH: "wh"}
    for n in g.node:
        for i, name in enumerate(n.output):
            if name in renames:
                n.output[i] = renames[name]
        for i, name in enumerate(n.input):
            if name in renames:
                n.input[i] = renames[name]

    # Keep only the nodes the two outputs need.
    needed = {"heatmap_logits", "wh"}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)

    del g.value_info[:]
    del g.input[:]
    g.input.append(
        helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, "height", "width"])
    )
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("heatmap_logits", onnx.TensorProto.FLOAT, [None] * 4))
    g.output.append(helper.make_tensor_value_info("wh", onnx.TensorProto.FLOAT, [None] * 4))
    g.name = "centernet_heads"
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"wrote {dst}: {len(keep)} nodes, {len(inits)} initializers", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
