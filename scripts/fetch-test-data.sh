#!/usr/bin/env bash
# Fetch the test photos and make the fake-camera videos used by the tests.
#
# - creates the project venv .venv/ (git-ignored) with pinned onnxruntime, pillow, numpy;
# - downloads the PyPI wheel of `ultralytics` (AGPL-3.0, so never committed) into .cache/
#   and extracts ultralytics/assets/{bus,zidane}.jpg into test-data/ (git-ignored);
# - writes test-data/{person,bus}.y4m: 640x480 I420, 30 fps, 3 s, the photo letterboxed
#   (aspect kept, centred, black bars) — files for Chromium's
#   --use-file-for-fake-video-capture;
# - prints the path of libonnxruntime.so inside the venv (for the `ort` backend).
#
# Idempotent: every step is skipped when its output already exists, so a second run
# takes well under a second (plus one python start-up).
# Env: CALLSIGHT_TEST_DATA overrides the output folder (default <repo>/test-data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${CALLSIGHT_TEST_DATA:-$ROOT/test-data}"
CACHE="$ROOT/.cache/test-data"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

ULTRALYTICS_VERSION=8.4.190
ONNXRUNTIME_VERSION=1.32.0
PILLOW_VERSION=12.0.0
NUMPY_VERSION=2.3.5

log() { printf '[fetch-test-data] %s\n' "$*" >&2; }

mkdir -p "$OUT" "$CACHE"

# 1. Project venv (onnxruntime for the `ort` backend and the bench anchors).
stamp="$VENV/.callsight-pins"
want="onnxruntime==$ONNXRUNTIME_VERSION pillow==$PILLOW_VERSION numpy==$NUMPY_VERSION"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating $VENV with $want"
  if ! "$PY" -m venv --clear "$VENV"; then
    # Seen once in CI: ensurepip failing inside the new venv (a full disk was the cause
    # then). Say what the disk holds, and try the system's own Python before giving up.
    df -h "$ROOT" >&2 || true
    rm -rf "$VENV"
    if [[ -x /usr/bin/python3 && "$(command -v "$PY")" != /usr/bin/python3 ]]; then
      log "creating the venv with $PY failed; trying /usr/bin/python3"
      /usr/bin/python3 -m venv "$VENV"
    else
      log "creating the venv with $PY failed (see above)"
      exit 1
    fi
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$stamp"
fi

# 2. Test photos from the ultralytics wheel.
wheel="$(ls "$CACHE"/ultralytics-"$ULTRALYTICS_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ ! -f "$OUT/bus.jpg" || ! -f "$OUT/zidane.jpg" ]]; then
  if [[ -z "$wheel" ]]; then
    log "downloading ultralytics==$ULTRALYTICS_VERSION (wheel only, no deps)"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: -d "$CACHE" "ultralytics==$ULTRALYTICS_VERSION"
    wheel="$(ls "$CACHE"/ultralytics-"$ULTRALYTICS_VERSION"-*.whl | head -n1)"
  fi
  log "extracting bus.jpg and zidane.jpg from $(basename "$wheel")"
  "$VENV/bin/python" - "$wheel" "$OUT" <<'PYEOF'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in ("bus.jpg", "zidane.jpg"):
        data = z.read(f"ultralytics/assets/{name}")
        tmp = out / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out / name)
PYEOF
fi

# 3. Fake-camera videos: 640x480, I420, 30 fps, 90 frames (3 s) of the letterboxed photo.
make_y4m() {
  local src="$1" dst="$2"
  [[ -f "$dst" ]] && return 0
  log "writing $(basename "$dst") from $(basename "$src")"
  "$VENV/bin/python" - "$src" "$dst" <<'PYEOF'
import sys, os
import numpy as np
from PIL import Image

src, dst = sys.argv[1], sys.argv[2]
W, H, FRAMES = 640, 480, 90
img = Image.open(src).convert("RGB")
scale = min(W / img.width, H / img.height)
nw, nh = round(img.width * scale), round(img.height * scale)
canvas = Image.new("RGB", (W, H), (0, 0, 0))
canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((W - nw) // 2, (H - nh) // 2))
rgb = np.asarray(canvas, dtype=np.float32)
r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
# BT.601 limited range: what Chromium assumes for an I420 fake-capture file.
y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
def sub(p):  # 2x2 average (4:2:0)
    return p.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))
planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, sub(cb), sub(cr))]
frame = b"FRAME\n" + b"".join(planes)
tmp = dst + ".tmp"
with open(tmp, "wb") as f:
    f.write(f"YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\n".encode())
    for _ in range(FRAMES):
        f.write(frame)
os.replace(tmp, dst)
PYEOF
}
make_y4m "$OUT/zidane.jpg" "$OUT/person.y4m"
make_y4m "$OUT/bus.jpg" "$OUT/bus.y4m"

# 4. Where the onnxruntime shared library is (for --onnxruntime / ORT_DYLIB_PATH).
lib="$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n1 || true)"
if [[ -z "$lib" ]]; then
  log "error: libonnxruntime.so not found in $VENV"
  exit 1
fi
log "test data in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
echo "$lib"
