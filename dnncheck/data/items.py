"""A user's torch Dataset, read item by item and never held whole (`python:` sources and in-memory
Datasets passed to dnncheck.audit).

One pass over each split computes every image's record (data/records.py: the same compact record
files get) and its label, a chunk at a time, in forked DataLoader worker processes when there is
more than one chunk (they share the Dataset: nothing is pickled); the pixels are dropped as soon as
their record is made. Afterwards the split's
images are a `DatasetImages`: like data.files.ImageFiles, indexing reads one item through the
user's Dataset, `take` selects without reading, and `resized(size)` loads the subset a check asks
for at the model's input size.

Random transforms (RandomResizedCrop, flips) make two reads of one index differ. Every read here is
seeded by the item's index (the global random streams are restored afterwards), so the audit sees
one fixed draw per sample - the same in the data pass, the figures and the probes, and the same
from run to run - which is what the model sees in one epoch of augmented training.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np

from dnncheck.errors import UserError, raised

CHUNK = 64  # items per DataLoader batch in the data pass (records are 9 KB each; pixels are dropped)
SEED_BASE = 0x5EED  # the per-item seed is SEED_BASE + 7919 * draw + index


class ItemError(Exception):
    """Reading or converting an item failed; the message names the item and the user's frame."""


@contextmanager
def seeded(index: int, draw: int = 0):
    """Every random stream a transform may use seeded from (index, draw); restored on exit."""
    import torch

    state = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    seed = SEED_BASE + 7919 * draw + int(index)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.random.default_generator.manual_seed(seed)  # not torch.manual_seed: it seeds every accelerator too
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.random.set_rng_state(state[2])


def as_array(x) -> np.ndarray:
    """An item's input as an H,W,C (image) or F (table) array: PIL images, C,H,W tensors and arrays."""
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


def read_item(data, index: int, where: str, draw: int = 0) -> tuple[np.ndarray, object]:
    """(input array, label) of item `index`, read with its seeded draw; ItemError on failure.
    `where` is "python:pkg.mod:fn|split" (the source, then the split name)."""
    x, y, _ = read_item_and_mode(data, index, where, draw)
    return x, y


def read_item_and_mode(data, index: int, where: str, draw: int = 0) -> tuple[np.ndarray, object, str]:
    """read_item's (input array, label) and the Pillow mode of a PIL image input ("" for arrays and
    tensors): the data pass records it, so that a palette or greyscale image among RGB ones is named
    for a Dataset's items as for files."""
    source, _, split = where.partition("|")
    try:
        with seeded(index, draw):
            item = data[index]
    except (Exception, SystemExit) as exc:
        raise ItemError(f"{source}: reading item {index} of {split!r} {raised(exc)}") from None
    try:
        x, y = item[:2]
    except Exception as exc:
        raise ItemError(f"{source}: item {index} of {split!r} is not an (x, y) pair ({exc})") from None
    mode = x.mode if isinstance(getattr(x, "mode", None), str) and hasattr(x, "convert") else ""
    return as_array(x), (y.item() if hasattr(y, "item") else y), mode


def with_transform(data, transform, where: str):
    """A shallow copy of `data` reading items through `transform` ([data] eval_transform); the
    user's object is left as it was. torchvision's datasets (ImageFolder, MNIST, CIFAR10, ...) and
    most hand-written ones apply `self.transform` in __getitem__; a Subset (what random_split
    returns) or ConcatDataset is copied down to the datasets that hold one."""
    import copy

    if hasattr(data, "dataset") and hasattr(data, "indices"):  # torch.utils.data.Subset
        out = copy.copy(data)
        out.dataset = with_transform(data.dataset, transform, where)
        return out
    if isinstance(getattr(data, "datasets", None), list) and hasattr(data, "cumulative_sizes"):  # ConcatDataset
        out = copy.copy(data)
        out.datasets = [with_transform(d, transform, where) for d in data.datasets]
        return out
    if not hasattr(data, "transform"):
        raise UserError(f"{where}: [data] eval_transform: {type(data).__name__} has no `transform` attribute to "
                        "replace; remove eval_transform and return the split with its evaluation transform")
    out = copy.copy(data)
    out.transform = transform
    if type(getattr(out, "transforms", None)).__name__ == "StandardTransform":  # torchvision's VisionDataset
        from torchvision.datasets.vision import StandardTransform

        out.transforms = StandardTransform(transform, getattr(out, "target_transform", None))
    return out


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image[..., :1], 3, axis=-1)
    return np.round(image[..., :3].astype(np.float64).mean(axis=-1, keepdims=True)).astype(image.dtype)


class _Described:
    """The data pass's view of a Dataset: item i -> (record or table row, label, first read or None,
    error message or None). Errors are returned, not raised, so a worker's failure reaches the main
    process as the user's message rather than a DataLoader traceback."""

    def __init__(self, data, where: str, keep_first: int):
        self.data, self.where, self.keep_first = data, where, keep_first

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from dnncheck.data.records import image_record

        try:
            x, y, mode = read_item_and_mode(self.data, index, self.where)
        except ItemError as exc:
            return None, None, None, str(exc)
        kept = x if index < self.keep_first else None
        if x.ndim == 1:  # a table row: kept whole (tables are small), no image record
            return x, y, kept, None
        if x.ndim != 3:
            source, _, split = self.where.partition("|")
            return None, None, None, (f"{source}: item {index} of {split!r} has a {x.ndim}-D input; give H,W[,C] "
                                      "images or 1-D rows")
        return image_record(x, mode=mode)[0], y, kept, None


def _as_list(batch):
    return batch


def describe_split(data, where: str, workers: int, keep_first: int, on_chunk=None):
    """One pass over a Dataset: (records or table rows, labels, the first `keep_first` inputs).
    DataLoader workers when there is more than one chunk and they are forked (they share the Dataset
    with this process: nothing is pickled, however large or unpicklable it is); in this process
    otherwise."""
    import multiprocessing

    import torch

    described = _Described(data, where, keep_first)
    use_workers = workers > 1 and len(data) > CHUNK and multiprocessing.get_start_method(allow_none=True) in (None, "fork")
    loader = torch.utils.data.DataLoader(described, batch_size=CHUNK, shuffle=False, collate_fn=_as_list,
                                         num_workers=workers if use_workers else 0)
    rows, labels, first = [], [], []
    source, _, split = where.partition("|")
    for batch in loader:
        for row, y, kept, error in batch:
            if error is not None:
                raise UserError(error)
            if rows and isinstance(row, np.void) != isinstance(rows[0], np.void):
                raise UserError(f"{source}: item {len(rows)} of {split!r} is "
                                f"{'an image' if isinstance(row, np.void) else 'a 1-D row'} but item 0 is not; "
                                "give every item of a split the same kind")
            rows.append(row)
            labels.append(y)
            if kept is not None:
                first.append(kept)
        if on_chunk:
            on_chunk(len(batch))
    return rows, labels, first


class DatasetImages:
    """A split's images behind the user's Dataset: read on access (seeded per item), never all at once."""

    def __init__(self, data, index, channels: int, dtype, where: str):
        self.data, self.index = data, np.asarray(index, dtype=np.int64)
        self.channels, self.dtype, self.where = channels, np.dtype(dtype), where

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        try:
            x, _ = read_item(self.data, int(self.index[int(i)]), self.where)
        except ItemError as exc:  # it was read once in the data pass: a Dataset that fails now changed
            raise UserError(str(exc)) from None
        return match_channels(x, self.channels)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return len(self) > 0

    def take(self, index) -> "DatasetImages":
        return DatasetImages(self.data, self.index[np.asarray(index, dtype=np.int64)], self.channels, self.dtype,
                             self.where)

    def with_channels(self, channels: int) -> "DatasetImages":
        return DatasetImages(self.data, self.index, channels, self.dtype, self.where)

    def resized(self, size: tuple[int, int], progress=None):
        """N,C,H,W float32 tensor of these items at `size`, read and resized one chunk at a time."""
        import torch

        from dnncheck.probes.inputs import resize_batch

        out = torch.empty((len(self), self.channels, *size), dtype=torch.float32)
        task = progress.task("reading dataset items", total=len(self), unit="images") if progress and len(self) > CHUNK \
            else None
        for k in range(len(self)):
            image = torch.from_numpy(np.asarray(self[k], dtype=np.float32)).permute(2, 0, 1)[None]
            out[k] = resize_batch(image, size)[0]
            if task:
                task.advance(1)
        if task:
            task.close()
        return out
