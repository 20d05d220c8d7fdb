"""Antialiased bilinear resizing in numpy, for the data pass's worker processes.

The workers must not import torch: its import alone holds about 480 MB resident per process, which
the whole-process-tree memory of an audit would count once per core. This is the triangle-filter
resampling that Pillow's BILINEAR and torch's `interpolate(..., antialias=True)` use: when shrinking,
the filter's support widens with the scale factor, so each output pixel averages every input pixel
under it (no aliasing); weights are normalised per output pixel and clipped at the borders. It is
separable: out = Wh @ image @ Ww.T per channel, with small weight matrices cached per size pair.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def _weights(in_size: int, out_size: int) -> np.ndarray:
    """out_size x in_size matrix of triangle-filter weights (rows sum to 1)."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # shrinking widens the filter to cover every input pixel
    support = stretch  # the triangle's support (1) in input pixels
    out = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        taps = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((taps - centre + 0.5) / stretch))
        total = w.sum()
        out[i, lo:hi] = w / total if total > 0 else 0.0
    return out


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An HWC image resized to (H, W), as float32 (values stay in the image's own scale)."""
    h, w = image.shape[:2]
    pixels = image.astype(np.float32, copy=False)
    if (h, w) == tuple(size):
        return np.ascontiguousarray(pixels)
    rows = _weights(h, size[0]).astype(np.float32)
    cols = _weights(w, size[1]).astype(np.float32)
    c = pixels.shape[2]
    tall = (rows @ pixels.reshape(h, w * c)).reshape(size[0], w, c)  # BLAS matrix products, not loops
    out = cols @ tall.transpose(1, 0, 2).reshape(w, size[0] * c)  # W', H'*C
    return np.ascontiguousarray(out.reshape(size[1], size[0], c).transpose(1, 0, 2))


def nearest_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) class-id masks resized to (H', W') by nearest neighbour (pixel centres mapped as the
    images' resize maps them): class ids are labels, so no value between two of them may appear."""
    h, w = masks.shape[1:3]
    if (h, w) == tuple(size):
        return masks
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return masks[:, rows][:, :, cols]
