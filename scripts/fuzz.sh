#!/usr/bin/env bash
# Runs the cargo-fuzz targets under fuzz/ (libFuzzer + AddressSanitizer, nightly) and
# prints a table: target, executions, crashes, seconds.
#
#   scripts/fuzz.sh [TARGET...]          # default: every target
#   FUZZ_RUNS=1000000                    # executions per target (libFuzzer -runs)
#   FUZZ_SECONDS=900                     # time bound per target (libFuzzer -max_total_time)
#   FUZZ_TIMEOUT=30                      # seconds after which one input counts as a hang
#   FUZZ_PROFILE=release                 # or dev: unoptimised (a cold build takes a fraction
#                                        # of the time; inputs run slower) — what CI uses
#
# Each target stops at whichever bound comes first. The corpus each run grows is kept in
# $CARGO_TARGET_DIR/fuzz/corpus/TARGET (fuzz/seeds/TARGET are the committed seeds);
# a crashing input lands in $CARGO_TARGET_DIR/fuzz/artifacts/TARGET/ and the run's log
# beside it. Exits non-zero when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
RUNS=${FUZZ_RUNS:-1000000}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-900}
PROFILE_FLAGS=()
[ "${FUZZ_PROFILE:-release}" = dev ] && PROFILE_FLAGS=(--dev)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(hub_messages stun y4m image h264_au)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: needs a nightly toolchain (rustup toolchain list shows none)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

WORK="$CARGO_TARGET_DIR/fuzz"
mkdir -p "$WORK"
# Same dependency versions as the workspace that was tested.
cp Cargo.lock fuzz/Cargo.lock
# One build for every target (they share the crate graph).
build_start=$(date +%s)
cargo +nightly fuzz build "${PROFILE_FLAGS[@]}" --target-dir "$WORK/target" >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log" >&2
  exit 1
}
echo "fuzz build: $(($(date +%s) - build_start)) s"

rows=()
failed=0
for t in "${TARGETS[@]}"; do
  corpus="$WORK/corpus/$t"
  artifacts="$WORK/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
  log="$artifacts/run.log"
  marker="$artifacts/.started"
  touch "$marker"
  start=$(date +%s)
  # -malloc_limit_mb: one allocation past 512 MB is a bug (every input has a named
  # limit far below); -timeout: one input taking FUZZ_TIMEOUT (30) s is a hang. Not less:
  # the largest picture the image limits allow (a 344-byte JPEG may declare 14854×2568)
  # takes ~1.3 s to decode in a dev build and over 10 s with AddressSanitizer on a busy
  # machine — slow, bounded by --max-image-pixels, not a hang.
  set +e
  cargo +nightly fuzz run "${PROFILE_FLAGS[@]}" --target-dir "$WORK/target" "$t" "$corpus" "${seeds[@]}" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" -timeout="${FUZZ_TIMEOUT:-30}" -malloc_limit_mb=512 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=0
  if [ $rc -ne 0 ]; then
    crashes=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" | wc -l)
    [ "$crashes" -gt 0 ] || crashes=1
    failed=1
    echo "== $t failed (exit $rc); log: $log" >&2
    grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "$log" | head -10 >&2 || true
  fi
  rows+=("$(printf '%-14s %12s %8s %8s' "$t" "${execs:-?}" "$crashes" "$secs")")
done

printf '\n%-14s %12s %8s %8s\n' target executions crashes seconds
printf '%s\n' "${rows[@]}"
exit $failed
