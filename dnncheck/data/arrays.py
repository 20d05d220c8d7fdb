"""Array sources: .npz files (x_train, y_train, optional val/test/external and group_<split>)
and scikit-learn's bundled digits. Sample id: `<split>:<index within that split>`."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from dnncheck.data.dataset import SPLITS, Dataset, SplitData, class_labels, to_hwc
from dnncheck.data.tasks import infer_task
from dnncheck.errors import UserError


def declared_bytes(path: Path) -> dict[str, int]:
    """Bytes each array of an .npz says it holds, read from the .npy headers without loading it."""
    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as handle:
                major, _ = np.lib.format.read_magic(handle)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(handle, max_header_size=100_000)
            sizes[member[:-4]] = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
    return sizes


def memory_bytes() -> int | None:
    """This machine's physical memory, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no check
        return None


def load_npz(path: Path, task: str | None = None) -> Dataset:
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise UserError(f"{path}: not an .npz archive (not a zip file); save arrays with numpy.savez")
    try:
        sizes = declared_bytes(path)
    except Exception:  # unreadable headers: np.load below says what is wrong
        sizes = {}
    memory = memory_bytes()
    if memory is not None and sum(sizes.values()) > memory:
        name, size = max(sizes.items(), key=lambda kv: kv[1])
        raise UserError(f"{path}: its arrays declare {sum(sizes.values()) / 2**30:,.1f} GiB ({name}: "
                        f"{size / 2**30:,.1f} GiB), more than this machine's {memory / 2**30:,.1f} GiB of memory; "
                        "audit a subsample")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except MemoryError:
        raise UserError(f"{path}: its arrays do not fit in memory; audit a subsample") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npz archive ({exc}); save it with numpy.savez") from None
    except ValueError as exc:
        raise UserError(f"{path}: holds object arrays ({exc}); save plain numeric arrays") from None
    has_masks = any(k.startswith("mask_") for k in arrays)
    target = "mask" if has_masks else "y"
    missing = [k for k in ("x_train", f"{target}_train") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing {' and '.join(missing)} (found: {', '.join(sorted(arrays)) or 'nothing'}); "
                        "save arrays named x_train, y_train[, x_val, y_val, x_test, y_test]"
                        + (" (segmentation: mask_train, mask_val, ... beside them)" if has_masks else ""))
    names = [s for s in (*SPLITS, "external") if f"x_{s}" in arrays or f"{target}_{s}" in arrays]
    for s in names:
        for k in (f"x_{s}", f"{target}_{s}"):
            if k not in arrays:
                raise UserError(f"{path}: has {'x' if k[0] != 'x' else target}_{s} but no {k}; save both")
        if len(arrays[f"x_{s}"]) != len(arrays[f"{target}_{s}"]):
            raise UserError(f"{path}: x_{s} has {len(arrays[f'x_{s}'])} samples but {target}_{s} has "
                            f"{len(arrays[f'{target}_{s}'])}; they must match")
        if f"group_{s}" in arrays and len(arrays[f"group_{s}"]) != len(arrays[f"x_{s}"]):
            raise UserError(f"{path}: group_{s} length differs from x_{s}")
    table = arrays["x_train"].ndim == 2
    if has_masks and table:
        raise UserError(f"{path}: masks need images, but x_train is a table {arrays['x_train'].shape}; "
                        "store images as N,H,W[,C]")
    if task == "regression":
        raise UserError(f"{path}: [data] task = \"regression\": an .npz holds class labels, masks or multi-label rows; "
                        "a regression target goes in a table CSV's `target` column")
    task = infer_task(task, has_masks, [arrays[f"y_{s}"] for s in names if f"y_{s}" in arrays], str(path))
    label_notes: list[str] = []
    ys, classes, mask_facts = _targets(arrays, names, task, path, table, label_notes)
    splits, external = {}, None
    for s in names:
        y = ys[s]
        x = arrays[f"x_{s}"]
        if (x.ndim == 2) != table:
            raise UserError(f"{path}: x_{s} has shape {x.shape} but x_train has {arrays['x_train'].shape}")
        if not table:
            x = to_hwc(x, f"{path} x_{s}")
            if x.shape[1:] != to_hwc(arrays["x_train"], f"{path} x_train").shape[1:]:
                raise UserError(f"{path}: x_{s} images are {x.shape[1:]} but x_train's are "
                                f"{arrays['x_train'].shape[1:]}; store one image size")
        groups = arrays.get(f"group_{s}")
        part = SplitData(s, [f"{s}:{i}" for i in range(len(y))], y, x,
                         None if groups is None else groups.astype(str).astype(object),
                         None if table else np.tile(np.array(x.shape[1:3]), (len(y), 1)))
        if s == "external":
            external = part
        else:
            splits[s] = part
    ds = Dataset(source=str(path), modality="table" if table else "image", task=task,
                 classes=classes, splits=splits, mask_facts=mask_facts,
                 channels=0 if table else splits["train"].x.shape[-1],
                 feature_names=[f"x{i}" for i in range(arrays["x_train"].shape[1])] if table else [],
                 notes=label_notes)
    ds.external = external
    x_train = arrays["x_train"]
    if not table and x_train.ndim == 4 and x_train.dtype.kind == "f" and x_train.shape[1] not in (1, 3, 4):
        # float images are documented as N,C,H,W; these can only be channels-last: say how they were read
        ds.notes.append(f"x_train is float with shape {tuple(x_train.shape)}: read as N,H,W,C (channels last, "
                        f"{x_train.shape[-1]} channel(s)) although float images are documented as N,C,H,W; if your "
                        "model takes N,C,H,W tensors, check your pipeline transposes them the same way")
    return ds


def _targets(arrays, names, task, path, table, notes):
    """split -> y as the task wants it, the class (or label) names, and the masks' storage facts."""
    from dnncheck.data.tasks import multilabel_targets, segmentation_targets

    if task == "segmentation":
        images = {s: to_hwc(arrays[f"x_{s}"], f"{path} x_{s}") for s in names}
        if any(f"y_{s}" in arrays for s in names):
            notes.append(f"{path}: y_<split> arrays are ignored: a segmentation source's targets are its mask_<split> arrays")
        return segmentation_targets({s: arrays[f"mask_{s}"] for s in names}, images, str(path), notes)
    if task == "multilabel":
        ys, classes = multilabel_targets({s: arrays[f"y_{s}"] for s in names}, str(path))
        return ys, classes, None
    for s in names:
        if arrays[f"y_{s}"].ndim != 1:  # one-hot or (N, 1): refused with what was found, never flattened
            class_labels(arrays[f"y_{s}"], f"{path} y_{s}")
    all_y = np.concatenate([arrays[f"y_{s}"] for s in names])
    all_labels, classes = class_labels(all_y, f"{path} y arrays", notes)
    offsets = np.cumsum([0] + [len(arrays[f"y_{s}"]) for s in names])
    return {s: all_labels[offsets[k]:offsets[k + 1]] for k, s in enumerate(names)}, classes, None


def load_sklearn(name: str) -> Dataset:
    if name != "digits":
        raise UserError(f"sklearn:{name}: unknown built-in source; the built-in is sklearn:digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    # digits are 4-bit grayscale (0..16): rescale to 8 bits so they are ordinary integer images
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    train = SplitData("train", [f"train:{i}" for i in range(len(y))], y, x,
                      native_sizes=np.tile(np.array([8, 8]), (len(y), 1)))
    ds = Dataset(source="sklearn:digits", modality="image", task="classification",
                 classes=[str(c) for c in digits.target_names], splits={"train": train}, channels=1)
    ds.notes.append("scikit-learn digits: 1,797 8x8 images, 4-bit values rescaled to 0..255")
    return ds
