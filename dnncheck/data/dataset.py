"""The in-memory dataset every check reads: splits, sample ids, labels, classes, native sizes.

In-memory images (npz, scikit-learn, Python sources) are uint8 (or float) arrays in HWC layout, one
array per sample when sizes differ (`SplitData.x` is a list) or one stacked N,H,W,C array when they
agree; image files stay on disk (`SplitData.x` is a data.files.ImageFiles, decoded on access).
Every image split also holds its compact per-sample records (data/records.py): the data-wide checks
read those, never all the pixels. Tables are an N,F float array. Each source module builds SplitData objects; `finish_dataset` fills in what is common:
missing splits (seeded, stratified), consistent channels and the model's input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"val": 0.15, "test": 0.15}  # of all labelled data, when a split has to be made


@dataclass
class SplitData:
    name: str
    ids: list[str]
    y: np.ndarray  # int64 class indices; float targets (regression); (N,H,W) class ids (segmentation);
    # (N,C) 0/1 rows (multilabel)
    x: object  # np.ndarray (N,H,W,C) / (N,F), or list of HWC arrays
    groups: np.ndarray | None = None
    native_sizes: np.ndarray | None = None  # (N, 2) H, W as found in the file, before any downscale
    modes: list[str] | None = None  # PIL mode per image as found in the file (images only)
    records: np.ndarray | None = None  # data.records.RECORD_DTYPE per sample (images only)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def positions(self) -> dict[str, int]:
        """Sample id -> index in this split (cached)."""
        if "_positions" not in self.__dict__:
            self.__dict__["_positions"] = {sample_id: i for i, sample_id in enumerate(self.ids)}
        return self.__dict__["_positions"]

    def take(self, index: np.ndarray, name: str | None = None, renumber: bool = False,
             with_records: bool = True) -> "SplitData":
        """A new split made of the samples at `index` (ids renumbered as `<name>:<i>` if asked).
        `with_records` False: without the records (the model's views, which never read them: a copy
        of half of 20,000 photos' records was 83 MB)."""
        index = np.asarray(index, dtype=np.int64)
        name = name or self.name
        ids = [f"{name}:{i}" for i in range(len(index))] if renumber else [self.ids[i] for i in index]
        if isinstance(self.x, np.ndarray):
            x = self.x[index]
        elif hasattr(self.x, "take"):  # image files: still not decoded
            x = self.x.take(index)
        else:
            x = [self.x[i] for i in index]
        pick = (lambda a: None if a is None else a[index])
        modes = None if self.modes is None else [self.modes[i] for i in index]
        return SplitData(name, ids, self.y[index], x, pick(self.groups), pick(self.native_sizes), modes,
                         pick(self.records) if with_records else None)

    def digests(self) -> list[bytes]:
        """A digest of each sample's decoded content (from the records for images)."""
        if self.records is not None:
            from dnncheck.data.records import digests

            return digests(self.records)
        from dnncheck.similarity import content_hashes

        return content_hashes(self.x)


@dataclass
class Dataset:
    source: str
    modality: str  # "image" | "table"
    task: str  # "classification" | "regression" | "segmentation" | "multilabel" (data/tasks.py)
    classes: list[str]
    splits: dict[str, SplitData]
    channels: int = 0  # images only
    image_size: tuple[int, int] | None = None  # model input (H, W), images only
    image_size_from: str | None = None  # where image_size came from, for the report
    feature_names: list[str] = field(default_factory=list)  # tables only
    made_splits: list[str] = field(default_factory=list)  # splits dnncheck carved out of train
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    ignored_files: list[str] = field(default_factory=list)  # files skipped for their extension
    notes: list[str] = field(default_factory=list)  # how the data was interpreted, for the report
    decode_max_side: int | None = None
    external: SplitData | None = None  # an external validation set, when the source holds one
    mask_facts: object = None  # segmentation: data.tasks.MaskFacts, how the masks were stored
    pending_masks: dict | None = None  # segmentation folders: sample id -> mask file, until read at image_size
    scan: dict | None = None  # the data pass over image files: files, decoded, from_cache, engine, workers

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.modality == "image"

    def split(self, *names: str) -> SplitData | None:
        """The first of `names` that exists and is not empty."""
        for name in names:
            s = self.splits.get(name)
            if s is not None and len(s):
                return s
        return None

    def locate(self, sample_id: str) -> tuple[str, int] | None:
        """(split name, index) of a sample id, or None."""
        for name, part in self.splits.items():
            index = part.positions.get(sample_id)
            if index is not None:
                return name, index
        return None

    def sample(self, sample_id: str):
        """The decoded sample (HWC image or feature row) for an id."""
        where = self.locate(sample_id)
        return None if where is None else self.splits[where[0]].x[where[1]]

    def summary(self) -> dict:
        return {"source": self.source, "task": self.task, "modality": self.modality,
                "classes": list(self.classes),
                "splits": {name: len(self.splits[name]) if name in self.splits else 0 for name in SPLITS},
                "made_splits": list(self.made_splits), "unreadable": len(self.unreadable),
                **({"image_size": list(self.image_size), "image_size_from": self.image_size_from,
                    "channels": self.channels} if self.is_image else
                   {"features": len(self.feature_names)})}


MAX_CLASSES = 50_000  # more distinct labels than ImageNet-21k's 21,841 are ids, not classes (README)


def class_labels(raw_labels, where: str, notes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map labels (strings or integers) to class indices; integer labels must be >= 0.

    Integer labels keep their meaning while at most half of 0..max is unused: classes are "0".."max"
    so that label 3 stays class "3" (and an empty class 0 under labels 1..C can be named 1-based).
    Sparser integers (ids such as 7, 1000, 10**9) are encoded by their distinct values in sorted
    order, the mapping said in `notes`: sizing classes by the maximum built a 10**9-unit output layer.
    More than MAX_CLASSES distinct labels is refused.
    """
    from dnncheck.errors import UserError

    values = np.asarray(raw_labels)
    if values.ndim != 1:
        raise UserError(f"{where}: labels must be one class per sample (a 1-D array); found shape {values.shape}"
                        + (" that looks one-hot: pass y.argmax(axis=1)" if _looks_one_hot(values) else
                           "; pass a 1-D array of class indices or names"))
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UserError(f"{where}: labels must be finite; sample {bad} has {values[bad].item()!r} "
                        f"({int(np.sum(~np.isfinite(values)))} non-finite in all); fix or drop those samples")
    if values.dtype.kind in "iu" or (values.dtype.kind == "f" and np.all(values == np.round(values))):
        if values.size and values.min() < 0:
            raise UserError(f"{where}: class labels must be >= 0 (found {values.min()}); "
                            "renumber classes as 0..C-1")
        distinct = _distinct_bounded(values, where)
        top = int(distinct[-1]) if distinct.size else -1
        if top + 1 <= 2 * len(distinct):
            return values.astype(np.int64), [str(i) for i in range(top + 1)]
        if notes is not None:
            shown = ", ".join(f"{_plain_number(v)} -> {i}" for i, v in enumerate(distinct[:5]))
            notes.append(f"{where}: {len(distinct)} distinct integer labels up to {_plain_number(top)} look like ids; "
                         f"classes are their distinct values in sorted order ({shown}"
                         f"{', ...' if len(distinct) > 5 else ''}); data.classes lists every one")
        return np.searchsorted(distinct, values).astype(np.int64), [_plain_number(v) for v in distinct]
    if values.dtype.kind in "fc":
        raise UserError(f"{where}: class labels must be integers (found {values[~(values == np.round(values))][0].item()!r}); "
                        "for a regression target use a table CSV with a `target` column")
    text = values.astype(str)
    names = _distinct_bounded(text, where)
    return np.searchsorted(names, text).astype(np.int64), [str(n) for n in names]


DISTINCT_CHUNK = 1 << 20


def _distinct_bounded(values: np.ndarray, where: str) -> np.ndarray:
    """np.unique(values), counted chunk by chunk so that ids as labels are refused (more than
    MAX_CLASSES) after a chunk's worth of work and memory, not after sorting a copy of them all."""
    seen = np.unique(values[:DISTINCT_CHUNK])
    _refuse_too_many(len(seen), where)
    for start in range(DISTINCT_CHUNK, len(values), DISTINCT_CHUNK):
        seen = np.union1d(seen, values[start:start + DISTINCT_CHUNK])
        _refuse_too_many(len(seen), where)
    return seen


def _plain_number(value) -> str:
    return str(int(value))


def _refuse_too_many(count: int, where: str) -> None:
    from dnncheck.errors import UserError

    if count > MAX_CLASSES:
        raise UserError(f"{where}: {count:,} distinct labels, more than the {MAX_CLASSES:,} classes dnncheck audits; "
                        "are these sample ids or a regression target rather than classes? (a regression target "
                        "goes in a table CSV's `target` column)")


def _looks_one_hot(values: np.ndarray) -> bool:
    if values.ndim != 2 or values.shape[1] < 2 or values.dtype.kind not in "iufb":
        return False
    v = values.astype(np.float64)
    return bool(np.all((v == 0) | (v == 1)) and np.all(v.sum(axis=1) == 1))


def stack_if_uniform(images: list[np.ndarray]):
    """One N,H,W,C array when every image has the same shape and dtype (cheaper), else the list."""
    if images and all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        return np.stack(images)
    return images


def to_hwc(array: np.ndarray, where: str) -> np.ndarray:
    """Image batches as N,H,W,C: uint8 N,H,W / N,H,W,C, float N,C,H,W (DESIGN section 2)."""
    from dnncheck.errors import UserError

    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4:
        if array.dtype.kind == "f" and array.shape[1] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            return np.ascontiguousarray(array.transpose(0, 2, 3, 1))
        return array
    raise UserError(f"{where}: images must be N,H,W or N,H,W,C (uint8) or N,C,H,W (float); got shape {array.shape}")


def integer_scale(x) -> float | None:
    """The divisor that maps integer images to [0, 1] (255 for uint8), None for float data."""
    dtype = x.dtype if hasattr(x, "dtype") else (x[0].dtype if len(x) else np.float32)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None
