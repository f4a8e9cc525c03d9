#!/usr/bin/env bash
# Installs onnxruntime (the PyPI wheel, which carries libonnxruntime.so) into a venv of its
# own under the user's data directory, where `callsight` finds it without running Python:
#
#   $XDG_DATA_HOME/callsight/onnxruntime   (XDG_DATA_HOME defaults to ~/.local/share)
#
# A venv, so it works on Pythons that refuse global `pip install` (PEP 668,
# "externally-managed-environment": Debian 12, Ubuntu 24.04). Needs python3 with the venv
# module (Debian/Ubuntu: `apt install python3-venv`). No root.
#
# Usage: scripts/install-onnxruntime.sh [VERSION]   (default: the version the tests pin)
# Env:   PYTHON (default python3), XDG_DATA_HOME.
set -euo pipefail

VERSION="${1:-1.32.0}"
PY="${PYTHON:-python3}"
DATA="${XDG_DATA_HOME:-}"
if [[ -z "$DATA" || "$DATA" != /* ]]; then
  DATA="$HOME/.local/share"
fi
DEST="$DATA/callsight/onnxruntime"

log() { printf '[install-onnxruntime] %s\n' "$*" >&2; }

if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  log "$PY has no working venv module; on Debian/Ubuntu: sudo apt install python3-venv"
  exit 1
fi
if [[ ! -x "$DEST/bin/python" ]]; then
  log "creating the venv $DEST"
  mkdir -p "$(dirname "$DEST")"
  "$PY" -m venv "$DEST"
fi
log "installing onnxruntime==$VERSION"
"$DEST/bin/python" -I -m pip install --quiet --disable-pip-version-check "onnxruntime==$VERSION"

lib="$(ls "$DEST"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n1 || true)"
if [[ -z "$lib" ]]; then
  log "onnxruntime installed, but no libonnxruntime.so found under $DEST"
  exit 1
fi
log "done: $lib"
log "callsight finds it there by itself (or pass --onnxruntime $lib)"
echo "$lib"
