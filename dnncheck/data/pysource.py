"""`python:pkg.mod:fn` sources: a function returning {split: torch.utils.data.Dataset}.

Items are (x, y) pairs; x may be a PIL image, an H,W[,C] array, a C,H,W tensor (image) or a 1-D
vector (table). Sample id: `<split>:<index>`.
"""

from __future__ import annotations

import numpy as np

from dnncheck.data.dataset import SPLITS, Dataset, SplitData, class_labels, stack_if_uniform
from dnncheck.errors import UserError, raised
from dnncheck.importing import import_object


def load_python(spec: str, search_dirs=()) -> Dataset:
    fn = import_object(spec, "data source python:", search_dirs)
    try:
        result = fn()
    except (Exception, SystemExit) as exc:
        raise UserError(f"python:{spec}: calling it {raised(exc)}") from None
    if not isinstance(result, dict) or "train" not in result:
        raise UserError(f"python:{spec}: must return a dict of split name to Dataset with at least 'train' "
                        f"(got {type(result).__name__})")
    bad = [k for k in result if k not in (*SPLITS, "external")]
    if bad:
        raise UserError(f"python:{spec}: unknown split {bad[0]!r}; use {', '.join(SPLITS)} or external")
    raw = {name: _items(spec, name, data) for name, data in result.items()}
    table = raw["train"][0][0].ndim == 1
    all_y = np.concatenate([r[1] for r in raw.values()])
    label_notes: list[str] = []
    labels, classes = class_labels(all_y, f"python:{spec} labels", label_notes)
    names = getattr(result["train"], "classes", None)
    if isinstance(names, (list, tuple)) and len(names) >= len(classes):
        classes = [str(c) for c in names]
    start, splits = 0, {}
    for name, (xs, ys) in raw.items():
        y = labels[start:start + len(ys)]
        start += len(ys)
        x = np.stack(xs).astype(np.float64) if table else stack_if_uniform(xs)
        sizes = None if table else np.array([im.shape[:2] for im in xs], dtype=np.int64)
        splits[name] = SplitData(name, [f"{name}:{i}" for i in range(len(ys))], y, x, native_sizes=sizes)
    external = splits.pop("external", None)
    channels = 0 if table else splits["train"].x[0].shape[-1]
    ds = Dataset(source=f"python:{spec}", modality="table" if table else "image", task="classification",
                 classes=classes, splits=splits, channels=channels,
                 feature_names=[f"x{i}" for i in range(len(raw["train"][0][0]))] if table else [], notes=label_notes)
    ds.external = external
    ds.notes += [note for name, data in result.items() for note in _random_transform_note(spec, name, data, raw[name][0])]
    return ds


RANDOM_PROBES = 3  # items read a second time to see whether the Dataset's transform is random


def _random_transform_note(spec: str, split: str, data, first_reads: list) -> list[str]:
    """A note when reading an item twice gives other values (RandomResizedCrop, flips, noise): the
    audit then sees one random draw of each sample, as the model does under augmentation."""
    import random

    import torch

    state = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:  # reading again must not move the random streams the rest of the audit is seeded on
        for i in range(min(RANDOM_PROBES, len(first_reads))):
            try:
                again = _as_array(data[i][0])
            except Exception:  # it was read once already; a second failure is not this note's to report
                return []
            if again.shape != first_reads[i].shape or not np.array_equal(again, first_reads[i]):
                return [f"python:{spec} split {split!r}: two reads of item {i} differ, so its transform is random "
                        "(augmentation): dnncheck audits one draw of each sample, what the model sees in one "
                        "epoch; statistics, duplicates and probes see that draw. Return the split with its "
                        "evaluation transform for a fixed view"]
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.random.set_rng_state(state[2])
    return []


def _items(spec: str, split: str, data):
    try:
        n = len(data)
    except TypeError:
        raise UserError(f"python:{spec}: split {split!r} is not a map-style Dataset (no len())") from None
    if n == 0:
        raise UserError(f"python:{spec}: split {split!r} is empty")
    xs, ys = [], []
    for i in range(n):
        try:
            item = data[i]
        except (Exception, SystemExit) as exc:
            raise UserError(f"python:{spec}: reading item {i} of {split!r} {raised(exc)}") from None
        try:
            x, y = item[:2]
        except Exception as exc:
            raise UserError(f"python:{spec}: item {i} of {split!r} is not an (x, y) pair ({exc})") from None
        xs.append(_as_array(x))
        ys.append(int(y) if not hasattr(y, "item") else y.item())
    return xs, np.asarray(ys)


def _as_array(x) -> np.ndarray:
    if hasattr(x, "convert") and hasattr(x, "getbands"):  # a PIL image
        array = np.asarray(x.convert("RGB") if x.mode not in ("L", "RGB") else x)
    elif hasattr(x, "detach"):  # a torch tensor, C,H,W by torchvision's convention
        array = x.detach().cpu().numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)
    else:
        array = np.asarray(x)
    if array.ndim == 2:  # a grayscale H,W image
        array = array[..., None]
    return np.ascontiguousarray(array)
