#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks, then runs every test: formatting, lints,
# Rust unit and integration tests (real WebSocket clients, real STUN, real models,
# real WebRTC peers) and the browser end-to-end tests (headless Chromium).
# One build profile (dev, with optimised dependencies) serves all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
export CALLSIGHT_TEST_DATA=${CALLSIGHT_TEST_DATA:-$PWD/test-data}
# One-shot builds: incremental caches would add gigabytes to the shared target dir and
# buy nothing for a run that builds each crate once.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

step "system packages"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v cc >/dev/null || missing+=(build-essential)
# The media leg's DTLS is OpenSSL's (str0m-openssl links the system libssl).
{ command -v pkg-config >/dev/null && pkg-config --exists openssl; } || missing+=(pkg-config libssl-dev)
# scripts/install-onnxruntime.sh is tested on Debian's own python3 (PEP 668).
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; } || missing+=(python3 python3-venv)
command -v turnserver >/dev/null || missing+=(coturn)
command -v ip >/dev/null || missing+=(iproute2)
# The WHIP interop test drives GStreamer's webrtcbin from Python (scripts/gst-whip-publish.py).
{ /usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0")' 2>/dev/null \
  && gst-inspect-1.0 webrtcbin >/dev/null 2>&1 && gst-inspect-1.0 x264enc >/dev/null 2>&1 \
  && gst-inspect-1.0 nicesrc >/dev/null 2>&1; } \
  || missing+=(python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-tools \
     gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice)
command -v redis-server >/dev/null || missing+=(redis-server)
# The multi-node browser test puts nginx in front of two nodes (tests/e2e/cluster.test.js).
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

step "stale build outputs (scripts/prune-target.sh)"
bash scripts/prune-target.sh "$CARGO_TARGET_DIR"
df -h "$CARGO_TARGET_DIR" 2>/dev/null | tail -n1 || true

step "test data and models' Python environment"
bash scripts/fetch-test-data.sh

step "bundled models: parity with the original TF.js runtime, references, decode"
bash tools/models/check.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
# The admission test holds 2000 client + 2000 server sockets in one process.
ulimit -n 8192 2>/dev/null || true
cargo test --workspace --locked

step "onnxruntime in one command on Debian's python3 (PEP 668: no global pip)"
# A throwaway XDG_DATA_HOME; the binary must find the venv there by itself, from a
# directory that is not the repository.
xdg="$(mktemp -d)"
PYTHON=/usr/bin/python3 XDG_DATA_HOME="$xdg" bash scripts/install-onnxruntime.sh >/dev/null
found="$(cd "$xdg" && env -u CALLSIGHT_ONNXRUNTIME -u ORT_DYLIB_PATH XDG_DATA_HOME="$xdg" RUST_LOG=info \
  "$CARGO_TARGET_DIR/debug/callsight" detect --backend ort "$CALLSIGHT_TEST_DATA/bus.jpg" 2>&1)" ||
  { echo "$found"; exit 1; }
grep -q "onnxruntime loaded.*$xdg/callsight/onnxruntime" <<<"$found" || { echo "$found"; exit 1; }
rm -rf "$xdg"
echo "onnxruntime from $xdg/callsight/onnxruntime: OK"

step "fuzzing, short and bounded (cargo-fuzz; needs a nightly toolchain)"
# scripts/fuzz.sh runs the same targets long (10^6 executions each). Here each target
# gets FUZZ_SECONDS from its seeds and the corpus kept in $CARGO_TARGET_DIR/fuzz, in an
# unoptimised build (AddressSanitizer on): its cold build costs a fraction of a release one.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ_PROFILE=dev FUZZ_RUNS=${FUZZ_RUNS:-1000000} FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
else
  echo "NOT RUN: no nightly toolchain on this machine (rustup toolchain list); fuzzing needs one"
fi

step "browser end-to-end tests"
export CALLSIGHT_BIN="$CARGO_TARGET_DIR/debug/callsight"
bash tests/e2e/run.sh
step "done"
