"""Measurements on segmentation masks against their images (input-fidelity, imbalance): where mask
boundaries sit against image edges, ids left between two classes by an interpolating resize, what
resizing to the model's input takes away from each class, and pixel counts per class.

Masks are (N, H, W) class ids (data/tasks.py). Everything here is numpy and reads a bounded sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 8  # px: offsets searched in each direction
ALIGNMENT_SAMPLES = 256  # images per split whose edges are matched against their masks
# a class held by this share of training masks is background: its presence says nothing (imbalance leaves
# it out of the ratio, label-noise out of the label sets)
UBIQUITOUS_SHARE = 0.95


@dataclass(frozen=True)
class Alignment:
    """Where a split's mask boundaries best coincide with its images' edges."""
    dy: int  # rows the masks sit below their images (negative: above)
    dx: int  # columns the masks sit right of their images (negative: left)
    gain: float  # edge agreement at the best offset over that at offset 0 (1.0: best at 0)
    images: int  # images with both edges and a mask boundary that were matched


def boundaries(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: pixels with a 4-neighbour of another class."""
    edge = np.zeros(masks.shape, dtype=bool)
    vertical = masks[:, 1:, :] != masks[:, :-1, :]
    horizontal = masks[:, :, 1:] != masks[:, :, :-1]
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    return edge


def edge_strength(images: np.ndarray) -> np.ndarray:
    """(N, H, W) gradient magnitude of the images' mean over channels (central differences)."""
    grey = images.astype(np.float32).mean(axis=-1) if images.ndim == 4 else images.astype(np.float32)
    gy, gx = np.gradient(grey, axis=(1, 2))
    return np.hypot(gy, gx)


def alignment(images: np.ndarray, masks: np.ndarray) -> Alignment:
    """The offset (within +-MAX_SHIFT px) that best lines up mask boundaries with image edges.

    The cross-correlation of each image's edge strength with its mask's boundary map, summed over the
    images (FFT, zero-padded so shifts do not wrap): its peak is where the masks' boundaries fall on
    the images' edges. A mask drawn on its image peaks at (0, 0); a mask saved with an offset (a crop
    or padding applied to one and not the other) peaks at that offset."""
    edges, bounds = edge_strength(images), boundaries(masks).astype(np.float32)
    used = (edges.reshape(len(edges), -1).max(1) > 0) & bounds.reshape(len(bounds), -1).any(1)
    if not used.any():
        return Alignment(0, 0, 1.0, 0)
    edges, bounds = edges[used], bounds[used]
    h, w = edges.shape[1:]
    shape = (h + MAX_SHIFT, w + MAX_SHIFT)
    total = np.zeros(shape, dtype=np.float64)
    for start in range(0, len(edges), 64):  # bounded memory at any image size
        e = np.fft.rfft2(edges[start:start + 64], s=shape)
        b = np.fft.rfft2(bounds[start:start + 64], s=shape)
        total += np.fft.irfft2(np.conj(e) * b, s=shape).sum(axis=0)
    # total[dy, dx] = sum edges[y, x] * bounds[y + dy, x + dx]: the boundary sits dy, dx from the edge
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)
    window = total[np.ix_(shifts % shape[0], shifts % shape[1])]
    iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
    at_zero = window[MAX_SHIFT, MAX_SHIFT]
    gain = float(window[iy, ix] / at_zero) if at_zero > 0 else float("inf")
    return Alignment(int(shifts[iy]), int(shifts[ix]), gain, int(used.sum()))


def between_pixels(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: pixels whose id lies strictly between the ids of two of their 4-neighbours.
    An interpolating resize turns a jump from class a to class b into a ramp of the ids between
    them, every pixel of which is such a pixel; masks drawn as labels have almost none."""
    m = masks.astype(np.int32)
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neighbours = np.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
    return (neighbours.min(axis=0) < m) & (neighbours.max(axis=0) > m)


def round_trip_loss(masks: np.ndarray, size: tuple[int, int], classes: int) -> tuple[np.ndarray, ...]:
    """What resizing masks to the model's input (nearest) takes from each class: (pixels of each class
    at the stored size, of those the ones a round trip to `size` and back no longer labels so, images
    holding the class at the stored size, images where it vanished at `size`)."""
    from dnncheck.data.resize import nearest_masks

    small = nearest_masks(masks, size)
    back = nearest_masks(small, masks.shape[1:3])
    stored = np.bincount(masks.ravel(), minlength=classes)[:classes]
    kept = np.bincount(masks[back == masks].ravel(), minlength=classes)[:classes]
    holding = presence(masks, classes)
    remaining = presence(small, classes)
    return stored, stored - kept, holding.sum(0), (holding & ~remaining).sum(0)


def presence(masks: np.ndarray, classes: int) -> np.ndarray:
    """(N, C) bool: which classes each mask holds."""
    held = np.zeros((len(masks), classes), dtype=bool)
    for start in range(0, len(masks), 256):
        chunk = masks[start:start + 256]
        for c in np.unique(chunk):
            held[start:start + len(chunk), int(c)] = (chunk == c).any(axis=(1, 2))
    return held


def pixel_counts(masks: np.ndarray, classes: int) -> np.ndarray:
    """(C,) pixels of each class over every mask."""
    counts = np.zeros(classes, dtype=np.int64)
    for start in range(0, len(masks), 1024):
        counts += np.bincount(masks[start:start + 1024].ravel(), minlength=classes)[:classes]
    return counts


def train_pixel_counts(ctx) -> np.ndarray:
    """pixel_counts of every training mask, counted once per audit (imbalance and loss-sanity)."""
    ds = ctx.dataset
    return ctx.artifact(("pixel counts", "train"), lambda: pixel_counts(ds.splits["train"].y, ds.num_classes))
