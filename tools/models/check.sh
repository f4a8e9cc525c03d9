#!/usr/bin/env bash
# Checks for the bundled models, for scripts/test.sh. Fails (non-zero) when:
# - the ONNX models no longer match the ORIGINAL TF.js models on TF.js wasm (relative
#   difference > 1e-4 on any output), or models/reference/*.json is out of date;
# - decoding centernet-heads.onnx in Python no longer reproduces the full graph's decode.
# Needs npm and python3; downloads from npm/PyPI on the first run only (not tensorflow:
# the conversion itself is `convert.sh --verify`, too heavy for every test run).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
"$ROOT/scripts/fetch-test-data.sh" >/dev/null
if [[ ! -d "$HERE/node_modules/@tensorflow/tfjs-backend-wasm" ]]; then
  (cd "$HERE" && npm ci --silent --no-audit --no-fund)
fi
"$HERE/convert.sh" --extract-only
PY="$ROOT/.venv/bin/python"
"$PY" "$HERE/reference.py" --check
"$PY" "$HERE/centernet_decode.py"
echo "models: OK"
