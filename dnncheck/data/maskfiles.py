"""Segmentation folders (DESIGN section 3): `root/<split>/images/<name>.<ext>` beside
`root/<split>/masks/<name>.png` (or `root/images` + `root/masks` without splits), an image and its
mask matched by their path under images/ and masks/ without the extension.

The images go through the data pass like any image files; the masks are decoded here as stored
(a palette PNG gives its palette indices, Pascal VOC's convention; an RGB mask its colours) and
resized with nearest neighbour to the model's input size once it is known (data.load_dataset), so
that `SplitData.y` is one (N, H, W) array of class ids per split (data/tasks.py).
Sample id: the image's path relative to root, as for class folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dnncheck.errors import UserError

LAYOUT = ("images", "masks")
MAX_NAMED = 5


def is_mask_layout(split_dirs: dict[str, Path]) -> bool:
    """Every split folder holds exactly images/ and masks/ (nothing else that is not hidden)."""
    def children(d: Path) -> set[str]:
        return {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")}

    return bool(split_dirs) and all(children(d) == set(LAYOUT) for d in split_dirs.values())


def pair_masks(root: Path, layout: dict[str, Path], images: list[tuple[str, str, str]],
               walk) -> tuple[dict[str, str], list[str]]:
    """(sample id -> mask path, masks that no image claims) for (sample id, image path, split)
    triples; an image without a mask is refused naming the first few (exit 2)."""
    stems: dict[str, dict[str, str]] = {}
    for split, directory in layout.items():
        top = directory / "masks"
        stems[split] = {os.path.splitext(os.path.relpath(p, top))[0]: p for p in walk(top, root)
                        if not os.path.basename(p).startswith(".")}
    paired, missing = {}, []
    for sample_id, path, split in images:
        mask = stems[split].get(os.path.splitext(os.path.relpath(path, layout[split] / "images"))[0])
        if mask is None:
            missing.append(sample_id)
        else:
            paired[sample_id] = mask
    if missing:
        shown = ", ".join(missing[:MAX_NAMED]) + (f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else "")
        raise UserError(f"{root}: {len(missing)} image(s) have no mask of the same name under masks/ ({shown}); "
                        "add their masks or remove the images (a mask is matched by its path without the extension)")
    used = set(paired.values())
    spare = [os.path.relpath(p, root) for masks in stems.values() for p in masks.values() if p not in used]
    return paired, spare


def read_masks(paths: list[str], size: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """The masks decoded as stored and resized to `size` by nearest neighbour: (N, H, W) values, or
    (N, H, W, 3) colours for RGB masks; and each mask's stored (H, W), to compare with its image's."""
    from PIL import Image

    from dnncheck.data.resize import nearest_masks

    out, native = [], []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
                array = np.asarray(im.convert("RGB") if im.mode in ("RGBA", "LA", "CMYK", "YCbCr") else im)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: the mask cannot be decoded ({exc}); re-export it as a PNG of class ids") from None
        native.append(array.shape[:2])
        if array.ndim == 3:
            array = array[..., :3]
            if np.all(array == array[..., :1]):
                array = array[..., 0]  # a grey mask saved as RGB: its ids, not colours
        out.append(nearest_masks(array[None], size)[0])
    if len({a.ndim for a in out}) > 1:  # some colour, some ids: all as colours, one mapping covers every mask
        out = [np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a for a in out]
    return np.stack(out), native
