"""Run `python -m tf2onnx.convert` with one workaround (see models/README.md).

With onnx 1.22, tf2onnx 1.17 stops on the saved model's `_input_shapes` attribute
("Could not infer the attribute type"); that attribute only carries shape hints, so
tf2onnx is told to ignore it.
"""

import sys

import tf2onnx.convert
import tf2onnx.tf_utils

tf2onnx.tf_utils.TF_IGNORED_NODE_ATTRS.add("_input_shapes")

if __name__ == "__main__":
    sys.argv[0] = "tf2onnx.convert"
    tf2onnx.convert.main()
