#!/usr/bin/env bash
# Detector accuracy on the labelled photo set (bench/eval/annotations.json): precision and
# recall at the page's default score, AP@0.5, the best-F1 score, per bundled model x input
# size x backend (tract, onnxruntime) x precision (fp32, int8), then what the default
# configuration misses on each photo, then pre-processing variants
# (tools/models/preprocess_eval.py, onnxruntime from Python) scored the same way.
#
# Needs: scripts/fetch-eval-set.sh (photos into test-data/eval/, .venv with onnxruntime).
# Usage: bench/accuracy.sh [vision-eval flags, e.g. --sizes 416 --backends tract]
# Runs niced (the machine is shared); accuracy does not depend on the load.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ -d test-data/eval && -x .venv/bin/python ]] || { echo "run scripts/fetch-eval-set.sh first" >&2; exit 1; }
ORT_LIB="$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"

cargo build --quiet --workspace --bin vision-eval
EVAL=(nice -n 10 "$CARGO_TARGET_DIR/debug/vision-eval" --onnxruntime "$ORT_LIB")

echo "# Detector accuracy $(date -u +%Y-%m-%dT%H:%MZ)"
echo
"${EVAL[@]}" "$@"
for f in 0.5 0.33; do
  echo
  echo "## Far objects: photos shrunk to $f on a grey canvas (onnxruntime)"
  "${EVAL[@]}" --backends ort --precisions fp32 --shrink "$f" | grep '^|'
done
echo
echo "## What the default configuration misses"
# NanoDet at 416 = the default (crates/vision/src/bundled.rs, NANODET_DEFAULT_SIZE).
"${EVAL[@]}" --models nanodet --sizes 416 --backends tract --precisions fp32 --misses --per-class
echo
echo "## Pre-processing variants (onnxruntime from Python; NanoDet at 416 and 320, CenterNet at 512 and 320)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for sizes in "416 512" "320 320"; do
  read -r nano cnet <<<"$sizes"
  nice -n 10 .venv/bin/python tools/models/preprocess_eval.py --out "$tmp/$nano" --size "$nano" --centernet-size "$cnet" >/dev/null
  for f in "$tmp/$nano"/*.jsonl; do
    "${EVAL[@]}" --detections "$f" | tail -n 1
  done
done
