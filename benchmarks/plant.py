"""Planting defects into copies of real data, for the benchmarks (never into the user's files)."""

from __future__ import annotations

import io

import numpy as np

TRANSFORMS = ("exact", "shift1", "noise8", "bright20", "jpeg75")
# ... and the changes of an image that went through another pipeline (28 px and larger images)
RESAMPLE_TRANSFORMS = ("resample", "contrast")


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
    elif kind == "resample":  # down to 60-80% of the side and back up: a mild resampling blur (MNIST 28 ->
        from PIL import Image  # 17-22 px; at 50%, 14 px, a copy is as blurred as two distinct digits differ)

        h, w = image.shape[:2]
        f = rng.uniform(0.6, 0.8)
        small = Image.fromarray(image).resize((max(2, round(w * f)), max(2, round(h * f))), Image.BILINEAR)
        out = np.asarray(small.resize((w, h), Image.BILINEAR)).astype(np.float64)
    elif kind == "contrast":  # stretched or flattened about the mean by 0.6-1.5, clipped
        out = (img - img.mean()) * rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.2, 1.5)]) + img.mean()
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


def plant_copies(x_train, x_target, per_kind: int, seed: int = 0, kinds=TRANSFORMS):
    """Replace images of x_target with near copies of random x_train images.

    Returns the new target array and the planted (train index, target index, kind) triples.
    """
    rng = np.random.default_rng(seed)
    x_target = x_target.copy()
    n = per_kind * len(kinds)
    sources = rng.choice(len(x_train), n, replace=False)
    targets = rng.choice(len(x_target), n, replace=False)
    planted = []
    for k, (s, t) in enumerate(zip(sources, targets)):
        kind = kinds[k % len(kinds)]
        x_target[t] = transform(x_train[s], kind, rng)
        planted.append((int(s), int(t), kind))
    return x_target, planted


def crop_and_mirror(image, rng: np.random.Generator):
    """A random crop of 60-100% of each side of a PIL image, mirrored half the time."""
    from PIL import ImageOps

    w, h = image.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch))
    return ImageOps.mirror(out) if rng.random() < 0.5 else out


def photo_sibling(image, rng: np.random.Generator):
    """A PIL RGB photo as a real collection holds its siblings: a random crop of 60-100% of each side,
    mirrored half the time, brightness and contrast changed by up to 25%, rescaled by 0.7-1.2."""
    from PIL import Image, ImageEnhance

    out = crop_and_mirror(image, rng)
    cw, ch = out.size
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.25))
    scale = rng.uniform(0.7, 1.2)
    return out.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.BILINEAR)


def photo_siblings_folder(source, out, total: int, seed: int = 0, shares=(0.7, 0.15, 0.15)) -> dict:
    """`total` photos made from the photos under `source` (class folders at any depth) by
    photo_sibling, split at random into out/{train,val,test}/<class> with the given shares
    (augmentation before splitting). Returns {relative path: index of the original photo}."""
    from pathlib import Path

    from PIL import Image

    source, out = Path(source), Path(out)
    originals = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(seed)
    made = {}
    for k in range(total):
        origin = k % len(originals)  # every original used about equally often
        path = originals[origin]
        split = ("train", "val", "test")[int(rng.choice(3, p=shares))]
        target = out / split / path.parent.name / f"{path.stem}_{k:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            photo_sibling(im.convert("RGB"), rng).save(target, quality=int(rng.integers(70, 95)))
        made[str(target.relative_to(out))] = origin
    return made


SCENE_SIZE = (128, 96)  # (width, height) of a generated scene


def smooth_scene(rng: np.random.Generator, size=SCENE_SIZE) -> np.ndarray:
    """A distinct low-texture image: a linear colour gradient in a random direction with two to four
    flat ellipses and rectangles on it (uint8 HWC). Many such scenes look alike at 16-32 px (the same
    gradient, small shapes elsewhere): the hard case for near-duplicate search, where no two are copies."""
    from PIL import Image, ImageDraw

    w, h = size
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-9)
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    base = start[None, None] + ramp[..., None] * (end - start)[None, None]
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(4, w / 4), rng.uniform(4, h / 4)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return np.asarray(image)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
