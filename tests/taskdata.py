"""Segmentation and multi-label data made from real digits (issue 27): a digit's mask is background 0
and its ink (pixels at or above half the scale) its class + 1; a multi-label sample is two digits side
by side, labelled with the set of digits it shows. Each maker plants one defect on request."""

from __future__ import annotations

import numpy as np

INK = 128  # uint8 pixels at or above this are the digit's ink


def digit_masks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 masks: 0 background, class + 1 on the digit's ink."""
    return np.where(x >= INK, (y + 1)[:, None, None], 0).astype(np.uint8)


def digits_uint8(side: int = 24):
    """scikit-learn's digits as uint8 images (0..255) enlarged from 8x8 to side x side (antialiased
    bilinear, so strokes have edges a few pixels wide as in real scans), and their labels."""
    from sklearn.datasets import load_digits

    from dnncheck.data.resize import resize

    d = load_digits()
    small = (d.images * (255.0 / 16.0)).astype(np.float32)
    big = np.stack([resize(im[..., None], (side, side))[..., 0] for im in small])
    return np.clip(np.round(big), 0, 255).astype(np.uint8), d.target.astype(np.int64)


def mnist(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as d:
        return d["x"], d["y"]


def segmentation_arrays(x: np.ndarray, y: np.ndarray, n_train: int, n_val: int, defect: str | None = None,
                        seed: int = 0) -> dict:
    """x_train/mask_train/x_val/mask_val from digits; `defect`:
    - "255": masks saved as 0/255 (foreground 255) instead of class ids;
    - "shift": val masks shifted 4 pixels right against their images;
    - "absent": the digit 3 never appears in train (its samples moved to val);
    - "bilinear": masks resized down and back up with interpolation, stored as uint8;
    - "thin": a new class drawn as a line 1 px wide on every mask (column 13);
    - "relabel": 10% of train masks paint their digit with another digit's class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if defect == "absent":
        order = np.concatenate([order[y[order] != 3], order[y[order] == 3]])
        train, val = order[:n_train], order[-n_val:]
    else:
        train, val = order[:n_train], order[n_train:n_train + n_val]
    masks = digit_masks(x, y)
    if defect == "255":
        masks = np.where(masks > 0, 255, 0).astype(np.uint8)
    if defect == "bilinear":
        masks = _interpolated(masks)
    if defect == "thin":  # a class 1 px wide (a vessel, a crack) drawn on every mask
        masks = masks.copy()
        masks[:, :, 13] = masks.max() + 1
    mask_train, mask_val = masks[train], masks[val]
    if defect == "relabel":
        mask_train = mask_train.copy()
        for i in rng.choice(len(train), len(train) // 10, replace=False):
            digit = int(mask_train[i].max())  # class + 1
            mask_train[i][mask_train[i] > 0] = (digit - 1 + rng.integers(1, 10)) % 10 + 1
    if defect == "shift":
        mask_val = np.roll(mask_val, 4, axis=2)
        mask_val[:, :, :4] = 0
    return {"x_train": x[train], "mask_train": mask_train, "x_val": x[val], "mask_val": mask_val}


def _interpolated(masks: np.ndarray) -> np.ndarray:
    """Masks shrunk to half and enlarged back with bilinear interpolation (values between ids)."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(masks, dtype=torch.float32)[:, None]
    h, w = masks.shape[1:]
    small = F.interpolate(t, size=(h // 2, w // 2), mode="bilinear", align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[:, 0].round().byte().numpy()


def multilabel_arrays(x: np.ndarray, y: np.ndarray, n_train: int, n_val: int, defect: str | None = None,
                      seed: int = 0) -> dict:
    """Pairs of digits side by side, y = which digits the pair shows ((N, 10) 0/1); `defect`:
    - "absent": label 3 never present in train (pairs with a 3 moved to val);
    - "flip": 10% of train's label bits flipped;
    - "flip3": label 3's bit flipped on 30% of train's samples."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    left, right = rng.integers(0, len(y), size=(2, 3 * n))
    images = np.concatenate([x[left], x[right]], axis=2)
    labels = np.zeros((3 * n, 10), dtype=np.uint8)
    labels[np.arange(3 * n), y[left]] = 1
    labels[np.arange(3 * n), y[right]] = 1
    if defect == "absent":
        has = labels[:, 3] == 1
        train = np.flatnonzero(~has)[:n_train]
        val = np.concatenate([np.flatnonzero(has)[:n_val // 2], np.flatnonzero(~has)[n_train:n_train + n_val // 2]])
    else:
        train, val = np.arange(n_train), np.arange(n_train, n)
    y_train = labels[train].copy()
    if defect == "flip":
        flip = rng.random(y_train.shape) < 0.10
        y_train[flip] ^= 1
    if defect == "flip3":  # one annotator's slip: label 3's bit flipped on 30% of train
        flip = rng.random(len(y_train)) < 0.30
        y_train[flip, 3] ^= 1
    return {"x_train": images[train], "y_train": y_train, "x_val": images[val], "y_val": labels[val]}


def two_digit_masks(x: np.ndarray, y: np.ndarray, n_train: int, n_val: int, relabel: bool = False,
                    seed: int = 0) -> dict:
    """Masks of two digits side by side (two object classes per mask, or one when both digits are the
    same); `relabel`: on 10% of train masks the left digit is painted with another digit's class."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(y), size=(2, n_train + n_val))
    images = np.concatenate([x[left], x[right]], axis=2)
    masks = np.concatenate([digit_masks(x[left], y[left]), digit_masks(x[right], y[right])], axis=2)
    mask_train = masks[:n_train].copy()
    if relabel:
        half = x.shape[2]
        for i in rng.choice(n_train, n_train // 10, replace=False):
            side = mask_train[i][:, :half]
            side[side > 0] = (int(side.max()) - 1 + rng.integers(1, 10)) % 10 + 1
    return {"x_train": images[:n_train], "mask_train": mask_train, "x_val": images[n_train:], "mask_val": masks[n_train:]}


def write_mask_folder(root, arrays: dict, palette: bool = False, mask_suffix: str = ".png") -> None:
    """root/<split>/images/<i>.png and root/<split>/masks/<i><mask_suffix> from x_<split>/mask_<split>;
    `palette`: masks saved as palette PNGs (mode P, Pascal VOC's way), else 8-bit greyscale."""
    from PIL import Image

    for key in arrays:
        if not key.startswith("x_"):
            continue
        split = key[2:]
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i, (image, mask) in enumerate(zip(arrays[key], arrays[f"mask_{split}"])):
            Image.fromarray(image).save(root / split / "images" / f"{i:05d}.png")
            saved = Image.fromarray(mask.astype(np.uint8))
            if palette:
                saved = saved.convert("P")
                saved.putpalette([v for k in range(256) for v in ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)])
            saved.save(root / split / "masks" / f"{i:05d}{mask_suffix}")
