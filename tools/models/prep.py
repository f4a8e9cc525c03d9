"""Shared pre- and post-processing for the model scripts (see models/README.md).

Used by centernet_decode.py, parity.py, nanodet_compare.py and bench/models/ort_bench.py so all
of them feed the models exactly what the Rust detector and the TF.js reference
(reference.mjs, which re-implements letterbox() in JS) feed them.
"""

from __future__ import annotations

import math

import numpy as np

STRIDE = 32  # both networks down-sample by 32 at most


def load_rgb(path: str) -> np.ndarray:
    """Decode an image to HxWx3 uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def frame_shape(w: int, h: int, long_side: int) -> tuple[int, int]:
    """Input (width, height) shaped like the frame: long side = long_side, short side
    scaled alike and rounded UP to a multiple of 32 (so no content is lost)."""
    if w >= h:
        return long_side, min(long_side, math.ceil(h * long_side / w / STRIDE) * STRIDE)
    return min(long_side, math.ceil(w * long_side / h / STRIDE) * STRIDE), long_side


def resize_bilinear(img: np.ndarray, nw: int, nh: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no anti-aliasing (what
    tf.image.resizeBilinear(..., halfPixelCenters=true) and OpenCV INTER_LINEAR do).
    img: HxWxC (any dtype) -> nh x nw x C float32."""
    h, w = img.shape[:2]
    src = img.astype(np.float32)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0.0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(nh, h)
    x0, x1, fx = axis(nw, w)
    top = src[y0][:, x0] * (1 - fx)[None, :, None] + src[y0][:, x1] * fx[None, :, None]
    bot = src[y1][:, x0] * (1 - fx)[None, :, None] + src[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


class Letterbox:
    """Keep aspect, centre, bilinear, pad 0 into an in_w x in_h input."""

    def __init__(self, w: int, h: int, in_w: int, in_h: int):
        scale = min(in_w / w, in_h / h)
        self.w, self.h, self.in_w, self.in_h = w, h, in_w, in_h
        self.nw, self.nh = max(1, round(w * scale)), max(1, round(h * scale))
        self.ox, self.oy = (in_w - self.nw) // 2, (in_h - self.nh) // 2

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 RGB -> in_h x in_w x 3 float32 in 0..255."""
        out = np.zeros((self.in_h, self.in_w, 3), np.float32)
        out[self.oy : self.oy + self.nh, self.ox : self.ox + self.nw] = resize_bilinear(rgb, self.nw, self.nh)
        return out

    def to_image(self, x1: float, y1: float, x2: float, y2: float) -> list[float]:
        """Box corners in input pixels -> [x, y, w, h] normalised to the original image,
        clipped to it."""
        sx, sy = self.nw / self.w, self.nh / self.h
        a = min(max((x1 - self.ox) / sx / self.w, 0.0), 1.0)
        b = min(max((y1 - self.oy) / sy / self.h, 0.0), 1.0)
        c = min(max((x2 - self.ox) / sx / self.w, 0.0), 1.0)
        d = min(max((y2 - self.oy) / sy / self.h, 0.0), 1.0)
        return [a, b, c - a, d - b]


def iou_xyxy(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_classwise(dets: list[dict], iou: float = 0.5) -> list[dict]:
    """Greedy NMS per class. dets: dicts with 'class_id', 'score', 'xyxy'.
    Sorted by score descending (ties: earlier first); returns survivors in that order."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])
    keep: list[dict] = []
    for i in order:
        d = dets[i]
        if all(k["class_id"] != d["class_id"] or iou_xyxy(k["xyxy"], d["xyxy"]) <= iou for k in keep):
            keep.append(d)
    return keep


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def centernet_decode_heads(logits: np.ndarray, wh: np.ndarray, threshold: float, k: int = 100) -> list[dict]:
    """Decode CenterNet's raw heads exactly as the full graph does.
    logits: [80, h, w] class logits; wh: [4, h, w] distances in input pixels.
    Returns up to k candidates with score >= threshold: class_id, score, xyxy (input px)."""
    score = sigmoid(logits.astype(np.float32))
    c, h, w = score.shape
    padded = np.full((c, h + 2, w + 2), -np.inf, np.float32)
    padded[:, 1:-1, 1:-1] = score
    pooled = np.max(
        np.stack([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]), axis=0
    )
    peaks = np.where(score == pooled, score, 0.0)
    # The graph flattens NHWC (y, x, class) before TopK; keep that order for ties.
    flat = peaks.transpose(1, 2, 0).reshape(-1)
    idx = np.nonzero(flat >= threshold)[0]
    idx = idx[np.argsort(-flat[idx], kind="stable")][:k]
    out = []
    for i in idx:
        cls, cell = int(i % c), int(i // c)
        y, x = cell // w, cell % w
        l, t, r, b = (float(v) for v in wh[:, y, x])
        out.append({"class_id": cls, "score": float(flat[i]), "xyxy": [4 * x - l, 4 * y - t, 4 * x + r, 4 * y + b]})
    return out


NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11


def nanodet_decode(
    scores: list[np.ndarray], dists: list[np.ndarray], in_w: int, in_h: int, threshold: float, mode: str
) -> list[dict]:
    """Decode NanoDet. scores[i]: [N_i, 80] (sigmoid applied in the graph); dists[i]: [N_i, 44]
    (left, top, right, bottom x 11 bins) for strides 8, 16, 32; cells row-major.
    mode 'standard': side = softmax-expected bin x stride, centre (x + 0.5, y + 0.5) x stride
    (NanoDet's GFL head). mode 'human': side = argmax bin x stride x 2.5 * 13 / 32 (the Human
    library's nanodet.ts), same centre; class 61 (dining table) skipped as Human does."""
    out = []
    for s, sc, di in zip(NANODET_STRIDES, scores, dists):
        fw, fh = math.ceil(in_w / s), math.ceil(in_h / s)
        if sc.shape[0] != fw * fh:
            raise ValueError(f"stride {s}: {sc.shape[0]} cells, expected {fw}x{fh}")
        cells, classes = np.nonzero(sc >= threshold)
        if len(cells) == 0:
            continue
        bins = di[cells].reshape(-1, 4, NANODET_BINS).astype(np.float64)
        if mode == "standard":
            e = np.exp(bins - bins.max(axis=2, keepdims=True))
            side = (e / e.sum(axis=2, keepdims=True) * np.arange(NANODET_BINS)).sum(axis=2) * s
        elif mode == "human":
            side = np.argmax(bins, axis=2) * s * (2.5 * 13 / 32)
        else:
            raise ValueError(mode)
        for j, (cell, cls) in enumerate(zip(cells, classes)):
            if mode == "human" and cls == 61:
                continue
            cx, cy = (cell % fw + 0.5) * s, (cell // fw + 0.5) * s
            l, t, r, b = side[j]
            out.append({"class_id": int(cls), "score": float(sc[cell, cls]), "xyxy": [cx - l, cy - t, cx + r, cy + b]})
    return out


NANODET_NORM = {
    # Human's nanodet.ts: RGB / 255.
    "human": ("rgb", np.zeros(3, np.float32), np.full(3, 255.0, np.float32)),
    # NanoDet's training configs: BGR, mean/std per channel (in B, G, R order).
    "standard": ("bgr", np.array([103.53, 116.28, 123.675], np.float32), np.array([57.375, 57.12, 58.395], np.float32)),
}


def nanodet_input(letterboxed_rgb: np.ndarray, norm: str) -> np.ndarray:
    """HxWx3 RGB float 0..255 -> [1, 3, H, W] as NanoDet wants it."""
    order, mean, std = NANODET_NORM[norm]
    x = letterboxed_rgb[..., ::-1] if order == "bgr" else letterboxed_rgb
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
