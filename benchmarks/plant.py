"""Planting defects into copies of real data, for the benchmarks (never into the user's files)."""

from __future__ import annotations

import io

import numpy as np

TRANSFORMS = ("exact", "shift1", "noise8", "bright20", "jpeg75")


def transform(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A near copy of a uint8 H,W[,C] image."""
    img = image.astype(np.float64)
    if kind == "exact":
        out = img
    elif kind == "shift1":
        dy, dx = [(0, 1), (1, 0), (0, -1), (-1, 0)][rng.integers(4)]
        out = np.roll(img, (dy, dx), axis=(0, 1))
        if dy:
            out[0 if dy > 0 else -1] = 0
        if dx:
            out[:, 0 if dx > 0 else -1] = 0
    elif kind == "noise8":
        out = img + rng.normal(0, 8, img.shape)
    elif kind == "bright20":
        out = img + 20
    elif kind == "jpeg75":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=75)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.float64)
    else:
        raise ValueError(kind)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def stratified_split(y: np.ndarray, seed: int = 0):
    """70/15/15 train/val/test indices, stratified."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.3, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def plant_copies(x_train, x_target, per_kind: int, seed: int = 0):
    """Replace images of x_target with near copies of random x_train images.

    Returns the new target array and the planted (train index, target index, kind) triples.
    """
    rng = np.random.default_rng(seed)
    x_target = x_target.copy()
    n = per_kind * len(TRANSFORMS)
    sources = rng.choice(len(x_train), n, replace=False)
    targets = rng.choice(len(x_target), n, replace=False)
    planted = []
    for k, (s, t) in enumerate(zip(sources, targets)):
        kind = TRANSFORMS[k % len(TRANSFORMS)]
        x_target[t] = transform(x_train[s], kind, rng)
        planted.append((int(s), int(t), kind))
    return x_target, planted
