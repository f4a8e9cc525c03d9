#!/usr/bin/env bash
# tract-onnx latency for the bundled models, same inputs as ort_bench.py (bus.jpg letterboxed).
#   bench/models/tract_bench.sh [--json] [SPEC...]     SPEC = NAME[:SIZE[:frame]]
# Default specs: centernet-heads:512 centernet-heads:512:frame nanodet:416 nanodet:416:frame.
# Builds bench/models/tract_bench (standalone crate, tract-onnx 0.23, one thread) first.
# Needs scripts/fetch-test-data.sh (.venv, test-data/bus.jpg).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
JSON=()
if [[ "${1:-}" == "--json" ]]; then JSON=(--json); shift; fi
SPECS=("$@")
[[ ${#SPECS[@]} -gt 0 ]] || SPECS=(centernet-heads:512 centernet-heads:512:frame nanodet:416 nanodet:416:frame)
DATA="${CALLSIGHT_TEST_DATA:-$ROOT/test-data}"
[[ -f "$DATA/bus.jpg" && -x "$ROOT/.venv/bin/python" ]] || { echo "missing test data: run scripts/fetch-test-data.sh" >&2; exit 1; }

BIN="$CARGO_TARGET_DIR/debug/tract-bench"
SRC="$ROOT/bench/models/tract_bench"
# Build only when needed: cargo waits for the shared target dir's lock even when up to date.
if [[ ! -x "$BIN" || "$SRC/src/main.rs" -nt "$BIN" || "$SRC/Cargo.toml" -nt "$BIN" ]]; then
  cargo build --quiet --manifest-path "$SRC/Cargo.toml" >&2
fi
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
for spec in "${SPECS[@]}"; do
  IFS=: read -r model size frame <<<"$spec"
  args=("$model" "$DATA/bus.jpg" "$tmp")
  [[ -n "${size:-}" ]] && args+=("$size")
  [[ "${frame:-}" == frame ]] && args+=(--frame)
  shape="$("$ROOT/.venv/bin/python" "$ROOT/tools/models/make_input.py" "${args[@]}" | tr -d '[] ')"
  "$BIN" "$ROOT/models/$model.onnx" "$shape" "$tmp" ${JSON[@]+"${JSON[@]}"}
done
