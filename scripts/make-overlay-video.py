#!/usr/bin/env python3
"""Synthetic fake-camera video with known truth, for measuring the overlay (issue 11).

Two people cut from the test photos (test-data/zidane.jpg, test-data/bus.jpg, fetched by
scripts/fetch-test-data.sh) move over a blurred background on known paths: A back and
forth horizontally on the left, B up and down on the right (they never cross). Each
frame carries its number as a code of 8 black/white 16×16 cells in the bottom-left
corner (bit 7 first, between a white start cell and a black stop cell), so a page can
tell which frame it shows from the picture itself.

Writes (into the test-data folder, git-ignored):
  overlay.y4m         640×480 I420, 30 fps, FRAMES frames, loops seamlessly
  overlay-truth.json  {"width","height","fps","frames","code":{...},"objects":[...],
                       "truth":[[{"id","label","box":[x,y,w,h]}...] per frame]}
                       boxes normalised to the frame

Usage: .venv/bin/python scripts/make-overlay-video.py [OUT_DIR]   (idempotent)
"""
import json
import math
import pathlib
import sys

import numpy as np
from PIL import Image, ImageFilter

W, H, FPS = 640, 480, 30
# One back-and-forth of both paths: 2.4 s, so the file loops without a jump.
FRAMES = 72
CELL = 16
BITS = 8
CODE_Y = H - CELL

# People in the source photos: tight boxes (x0, y0, x1, y1) in photo pixels, as the
# bundled detector finds them on the photo (checked with `callsight detect`).
SOURCES = {
    "A": ("zidane.jpg", (755, 44, 1152, 714)),
    "B": ("bus.jpg", (52, 397, 227, 898)),
}
# Size on screen (height in px) and path: (x, y) at phase p in [0, 1) of the loop,
# a triangle wave (out and back at constant speed).
HEIGHT = {"A": 300, "B": 320}


def tri(p):
    return 1 - abs(1 - 2 * (p % 1.0))


def position(obj, p, w, h):
    if obj == "A":  # left lane, horizontal: x 10 → 250 → 10 (200 px/s)
        return 10 + 240 * tri(p), 70
    # right lane, vertical: y 5 → 145 → 5 (≈ 117 px/s); its left edge stays ≥ 440
    return 460, 5 + 140 * tri(p + 0.25)


def rgb_to_i420(img):
    a = np.asarray(img, dtype=np.float32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    sub = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))
    planes = [y, sub(u), sub(v)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def draw_code(frame, n):
    """Start (white), 8 bits of n (MSB first: white = 1), stop (black)."""
    bits = [1] + [(n >> (BITS - 1 - i)) & 1 for i in range(BITS)] + [0]
    for i, bit in enumerate(bits):
        frame.paste((235, 235, 235) if bit else (16, 16, 16), (i * CELL, CODE_Y, (i + 1) * CELL, H))


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "test-data"
    y4m, truth_file = out / "overlay.y4m", out / "overlay-truth.json"
    if y4m.exists() and truth_file.exists() and y4m.stat().st_mtime >= pathlib.Path(__file__).stat().st_mtime:
        print(f"{y4m} is up to date")
        return
    bus = Image.open(out / "bus.jpg").convert("RGB")
    # Background: the bus photo's top, blurred so that nothing in it looks like an object.
    bg = bus.crop((0, 0, 810, 608)).resize((W, H)).filter(ImageFilter.GaussianBlur(14))
    sprites = {}
    for obj, (name, (x0, y0, x1, y1)) in SOURCES.items():
        crop = Image.open(out / name).convert("RGB").crop((x0, y0, x1, y1))
        h = HEIGHT[obj]
        w = round(crop.width * h / crop.height)
        sprites[obj] = crop.resize((w, h), Image.LANCZOS)

    truth = []
    tmp = y4m.with_suffix(".y4m.tmp")
    with open(tmp, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(FRAMES):
            frame = bg.copy()
            objs = []
            for obj, sprite in sprites.items():
                x, y = position(obj, n / FRAMES, sprite.width, sprite.height)
                x, y = round(x), round(y)
                frame.paste(sprite, (x, y))
                objs.append({"id": obj, "label": "person", "box": [x / W, y / H, sprite.width / W, sprite.height / H]})
            draw_code(frame, n)
            truth.append(objs)
            f.write(b"FRAME\n")
            f.write(rgb_to_i420(frame))
    tmp.replace(y4m)
    speeds = {o: None for o in sprites}
    for o in sprites:
        a = position(o, 0, 0, 0)
        b = position(o, 1 / FRAMES, 0, 0)
        speeds[o] = round(math.dist(a, b) * FPS)
    truth_file.write_text(
        json.dumps(
            {
                "width": W,
                "height": H,
                "fps": FPS,
                "frames": FRAMES,
                "code": {"cell": CELL, "bits": BITS, "y": CODE_Y, "layout": "start(white) bits(msb first, white=1) stop(black)"},
                "objects": [{"id": o, "source": SOURCES[o][0], "speed_px_per_s": speeds[o]} for o in sprites],
                "truth": truth,
            }
        )
    )
    print(f"wrote {y4m} ({FRAMES} frames) and {truth_file}; speeds px/s: {speeds}")


if __name__ == "__main__":
    main()
