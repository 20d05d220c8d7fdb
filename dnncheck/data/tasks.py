"""Targets beyond one class per sample (DESIGN section 3, `[data] task`): segmentation masks and
multi-label rows, read into `SplitData.y` the way the loss wants them.

- segmentation: `y` is an (N, H, W) array of class ids 0..C-1 (uint8, or int16 past 255 classes);
  what the files stored (0/255, an RGB colour map, values an interpolating resize left between
  class ids) is kept in `MaskFacts` for input-fidelity, which reports it: the loader maps such
  masks to class ids so that every other check can still run, and says how in the notes.
- multilabel: `y` is an (N, C) uint8 array of 0/1, one column per label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dnncheck.errors import UserError

MAX_MASK_CLASSES = 1024  # more distinct mask values than this are not class ids (e.g. a depth map)


@dataclass
class MaskFacts:
    """How the masks were stored, before they were mapped to class ids (for input-fidelity)."""
    stored_dtype: str
    stored_values: list  # distinct stored values (colours as [r, g, b]), at most 32 shown
    distinct: int  # how many distinct stored values (or colours)
    colour_map: bool = False  # (N, H, W, 3) masks: colours, not class ids
    non_integer_share: float = 0.0  # share of pixels whose float value is not a whole number
    mapped: bool = False  # stored values were not 0..C-1 and were renumbered
    mapping: list = field(default_factory=list)  # stored value -> class id, when mapped (first 32)
    size_mismatch: list = field(default_factory=list)  # (sample id, mask H,W, image H,W) stored at other sizes


def infer_task(requested: str | None, has_masks: bool, y_arrays: list[np.ndarray], where: str) -> str:
    """The task of an array source: as configured, else segmentation when it holds masks, multilabel
    when its labels are (N, C) 0/1 rows that are not one-hot, else classification."""
    if requested is not None:
        if has_masks and requested != "segmentation":
            raise UserError(f"{where}: holds mask_<split> arrays but [data] task = {requested!r}; set task = "
                            "\"segmentation\" or remove the masks")
        if requested == "segmentation" and not has_masks:
            raise UserError(f"{where}: [data] task = \"segmentation\" needs mask_train (N,H,W class ids) beside x_train")
        return requested
    if has_masks:
        return "segmentation"
    if y_arrays and all(_multi_hot(y) for y in y_arrays) and not all(_one_hot_rows(y) for y in y_arrays):
        return "multilabel"
    return "classification"


def _multi_hot(y: np.ndarray) -> bool:
    return y.ndim == 2 and y.shape[1] >= 2 and y.dtype.kind in "iufb" and bool(np.all((y == 0) | (y == 1)))


def _one_hot_rows(y: np.ndarray) -> bool:
    return bool(np.all(np.asarray(y, dtype=np.float64).sum(axis=1) == 1))


def multilabel_targets(arrays: dict[str, np.ndarray], where: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """split -> (N, C) uint8 0/1 rows; the label names are "0".."C-1"."""
    widths = {s: y.shape[1] if y.ndim == 2 else None for s, y in arrays.items()}
    for s, y in arrays.items():
        if not _multi_hot(y):
            raise UserError(f"{where} y_{s}: a multi-label target is an (N, C) array of 0/1 (one column per label); "
                            f"found shape {y.shape}" + ("" if y.ndim != 2 else " with values other than 0 and 1"))
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"y_{s}: {w}" for s, w in widths.items())
        raise UserError(f"{where}: multi-label arrays must have the same number of labels ({shown})")
    width = next(iter(widths.values()))
    return {s: y.astype(np.uint8) for s, y in arrays.items()}, [str(i) for i in range(width)]


def segmentation_targets(masks: dict[str, np.ndarray], images: dict[str, np.ndarray] | None, where: str,
                         notes: list[str]) -> tuple[dict[str, np.ndarray], list[str], MaskFacts]:
    """split -> (N, H, W) class ids, the class names, and how the masks were stored.

    Colour maps get one id per distinct colour (black first); float masks are rounded (the share
    of pixels that were not whole numbers is kept: an interpolating resize leaves them); stored
    values that are not 0..C-1 with few gaps (0/255) are renumbered in sorted order, as class labels
    are (data.dataset.class_labels)."""
    from dnncheck.data.dataset import _plain_number

    squeezed = {s: m if images is None else _mask_shape(m, images[s], f"{where} mask_{s}") for s, m in masks.items()}
    colour = {m.ndim == 4 for m in squeezed.values()}
    if len(colour) > 1:
        raise UserError(f"{where}: some mask arrays are colour maps (N,H,W,3) and others class ids (N,H,W); "
                        "store every split the same way")
    colour_map = colour.pop()
    flat = np.concatenate([_mask_values(m, colour_map).ravel() for m in squeezed.values()])
    stored_dtype = str(next(iter(squeezed.values())).dtype)
    non_integer = 0.0
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise UserError(f"{where}: mask arrays hold NaN or Inf; masks are class ids 0..C-1")
        non_integer = float(np.mean(flat != np.round(flat)))
        flat = np.round(flat)
    if flat.size and flat.min() < 0:
        raise UserError(f"{where}: mask values must be >= 0 (found {_plain_number(flat.min())}); masks are class ids 0..C-1")
    values = np.unique(flat)
    if len(values) > MAX_MASK_CLASSES:
        raise UserError(f"{where}: masks hold {len(values):,} distinct values, more than {MAX_MASK_CLASSES} classes: "
                        "are they class ids? store each pixel's class as an integer 0..C-1")
    top = int(values[-1]) if len(values) else 0
    dense = not colour_map and top + 1 <= 2 * len(values)
    classes = [str(i) for i in range(top + 1)] if dense else [_value_name(v, colour_map) for v in values]
    facts = MaskFacts(stored_dtype, [_value_name(v, colour_map) for v in values[:32]], int(len(values)), colour_map,
                      non_integer, mapped=not dense,
                      mapping=[] if dense else [[_value_name(v, colour_map), i] for i, v in enumerate(values[:32])])
    if not dense:
        shown = ", ".join(f"{a} -> {b}" for a, b in facts.mapping[:5])
        notes.append(f"{where}: the masks' {len(values)} distinct {'colours' if colour_map else 'values'} are not class "
                     f"ids 0..C-1; read as classes in sorted order ({shown}{', ...' if len(values) > 5 else ''})")
    dtype = np.uint8 if len(classes) <= 256 else np.int16
    out = {}
    for s, m in squeezed.items():
        v = _mask_values(m, colour_map)
        v = np.round(v) if v.dtype.kind == "f" else v
        out[s] = (v if dense else np.searchsorted(values, v)).astype(dtype)
    return out, classes, facts


def _mask_shape(mask: np.ndarray, images: np.ndarray, where: str) -> np.ndarray:
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.dtype.kind not in "iufb":
        raise UserError(f"{where}: masks must be numeric class ids; found dtype {mask.dtype}")
    if mask.ndim not in (3, 4) or (mask.ndim == 4 and mask.shape[-1] not in (3, 4)):
        raise UserError(f"{where}: masks must be (N, H, W) class ids (or (N, H, W, 3) colour maps); found shape "
                        f"{mask.shape}")
    if mask.shape[:3] != images.shape[:3]:
        raise UserError(f"{where}: masks are {tuple(mask.shape[:3])} but the images are {tuple(images.shape[:3])} "
                        "(N, H, W); a mask needs one class id per image pixel")
    return mask


def _mask_values(mask: np.ndarray, colour_map: bool) -> np.ndarray:
    """Class-id-like values per pixel: the mask itself, or each RGB colour packed into one integer."""
    if not colour_map:
        return mask.astype(np.uint8) if mask.dtype.kind == "b" else mask
    rgb = mask[..., :3].astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _value_name(value, colour_map: bool) -> str:
    if colour_map:
        v = int(value)
        return f"#{(v >> 16) & 255:02x}{(v >> 8) & 255:02x}{v & 255:02x}"
    return str(int(value))


def annotation_keys(ds, parts) -> tuple[np.ndarray, list[str] | None]:
    """One integer per sample of `parts` (splits laid end to end) that is equal for two samples exactly
    when their annotations are, and the names of those integers when they are not class indices:
    the class (classification), the target (regression), the label set (multilabel: "2|7"), the mask
    (segmentation: identical bytes, named by a digest and the classes it holds)."""
    if ds.task not in ("segmentation", "multilabel"):
        return np.concatenate([p.y for p in parts]), None
    import hashlib

    if ds.task == "multilabel":
        rows = np.concatenate([p.y for p in parts])
        distinct, keys = np.unique(rows, axis=0, return_inverse=True)
        names = ["|".join(ds.classes[c] for c in np.flatnonzero(row)) or "(no label)" for row in distinct]
        return keys.ravel().astype(np.int64), names
    digests = [hashlib.blake2b(np.ascontiguousarray(m).tobytes(), digest_size=8).hexdigest()
               for p in parts for m in p.y]
    distinct, keys = np.unique(np.array(digests), return_inverse=True)
    first = {d: i for i, d in reversed(list(enumerate(digests)))}
    masks = np.concatenate([p.y for p in parts]) if len(parts) > 1 else parts[0].y
    names = [f"mask {d} ({', '.join(ds.classes[c] for c in np.unique(masks[first[d]]))})" for d in distinct]
    return keys.astype(np.int64), names
