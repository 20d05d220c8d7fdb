"""`python:pkg.mod:fn` sources: a function returning {split: torch.utils.data.Dataset}.

Items are (x, y) pairs; x may be a PIL image, an H,W[,C] array, a C,H,W tensor (image) or a 1-D
vector (table). Sample id: `<split>:<index>`. Image splits are streamed (data/items.py): one pass
makes each item's record and label, and the pixels are read again only for the samples a check uses.
"""

from __future__ import annotations

import numpy as np

from dnncheck.data.dataset import SPLITS, Dataset, SplitData, class_labels
from dnncheck.data.items import DatasetImages, ItemError, describe_split, read_item, with_transform
from dnncheck.errors import UserError, raised
from dnncheck.importing import import_object


def load_python(spec: str, search_dirs=(), workers: int = 1, progress=None, eval_transform: str | None = None) -> Dataset:
    fn = import_object(spec, "data source python:", search_dirs)
    try:
        result = fn()
    except (Exception, SystemExit) as exc:
        raise UserError(f"python:{spec}: calling it {raised(exc)}") from None
    if not isinstance(result, dict) or "train" not in result:
        raise UserError(f"python:{spec}: must return a dict of split name to Dataset with at least 'train' "
                        f"(got {type(result).__name__})")
    return load_splits(result, f"python:{spec}", search_dirs, workers, progress, eval_transform)


def load_splits(result: dict, source: str, search_dirs=(), workers: int = 1, progress=None,
                eval_transform: str | None = None) -> Dataset:
    """The Dataset of {split: map-style Dataset} (python: sources, in-memory data, hf: sources);
    `source` names them in messages and the report."""
    bad = [k for k in result if k not in (*SPLITS, "external")]
    if bad:
        raise UserError(f"{source}: unknown split {bad[0]!r}; use {', '.join(SPLITS)} or external")
    for name, data in result.items():
        _require_items(source, name, data)
    given = result
    if eval_transform:
        transform = import_object(eval_transform, "[data] eval_transform", search_dirs)
        if not callable(transform):
            raise UserError(f"[data] eval_transform: {eval_transform} is a {type(transform).__name__}, not a callable "
                            "transform (such as a torchvision transforms.Compose)")
        result = {name: with_transform(data, transform, f"{source} split {name!r}")
                  for name, data in result.items()}
    # one streaming pass per split: records (images) or rows (tables) and labels, never the pixels
    task = progress.task("reading dataset items", total=sum(len(d) for d in result.values()), unit="items") \
        if progress else None
    described = {name: describe_split(data, f"{source}|{name}", workers, RANDOM_PROBES,
                                      task.advance if task else None)
                 for name, data in result.items()}
    if task:
        task.close()
    table = described["train"][2][0].ndim == 1
    shapes = {("table" if d[2][0].ndim == 1 else "image") for d in described.values()}
    if len(shapes) > 1:
        raise UserError(f"{source}: some splits give images and others 1-D rows; give every split the same kind")
    all_y = np.concatenate([np.asarray(d[1]) for d in described.values()])
    label_notes: list[str] = []
    labels, classes = class_labels(all_y, f"{source} labels", label_notes)
    names = getattr(result["train"], "classes", None)
    if isinstance(names, (list, tuple)) and len(names) >= len(classes):
        classes = [str(c) for c in names]
    records = {} if table else {name: _stacked(d[0]) for name, d in described.items()}
    channels = 0 if table else (3 if any(np.any(r["channels"] == 3) for r in records.values()) else 1)
    start, splits = 0, {}
    for name, (rows, ys, first) in described.items():
        y = labels[start:start + len(ys)]
        start += len(ys)
        ids = [f"{name}:{i}" for i in range(len(ys))]
        if table:
            splits[name] = SplitData(name, ids, y, np.stack(rows).astype(np.float64))
            continue
        images = DatasetImages(result[name], np.arange(len(ys)), channels, first[0].dtype,
                               f"{source}|{name}")
        modes = [m.decode("ascii", "replace") for m in records[name]["mode"].tolist()]
        splits[name] = SplitData(name, ids, y, images, native_sizes=records[name]["native"].astype(np.int64),
                                 records=records[name], modes=modes if any(modes) else None)
    external = splits.pop("external", None)
    ds = Dataset(source=source, modality="table" if table else "image", task="classification",
                 classes=classes, splits=splits, channels=channels,
                 feature_names=[f"x{i}" for i in range(len(described["train"][2][0]))] if table else [],
                 notes=label_notes)
    ds.external = external
    if eval_transform:
        ds.notes.append(f"{source}: every split audited through [data] eval_transform = {eval_transform} (a "
                        "copy of each Dataset with it as `transform`; your Datasets are unchanged)")
    ds.notes += [note for name, data in given.items()
                 for note in _random_transform_note(source, name, data, None if eval_transform else described[name][2],
                                                    eval_transform)]
    return ds


RANDOM_PROBES = 3  # items read a second time to see whether the Dataset's transform is random


def _random_transform_note(source: str, split: str, data, first_reads: list | None,
                           eval_transform: str | None = None) -> list[str]:
    """A note when a second draw of an item gives other values (RandomResizedCrop, flips, noise):
    without [data] eval_transform the audit sees one fixed draw of each sample (seeded by its index,
    data/items.py), as the model does in one epoch under augmentation. `first_reads`: the items'
    first draws when the pass read them through this same transform (None: read them here)."""
    where = f"{source}|{split}"
    for i in range(min(RANDOM_PROBES, len(data) if first_reads is None else len(first_reads))):
        try:
            first = read_item(data, i, where, draw=0)[0] if first_reads is None else first_reads[i]
            again, _ = read_item(data, i, where, draw=1)
        except ItemError:  # the pass has reported unreadable items already
            return []
        if again.shape == first.shape and np.array_equal(again, first):
            continue
        head = f"{source} split {split!r}: two reads of item {i} differ, so its transform is random (augmentation)"
        if eval_transform:
            return [f"{head}: audited through [data] eval_transform instead, a fixed view; the model trains on "
                    "augmented draws of these images"]
        return [f"{head}: dnncheck audits one draw of each sample (seeded by its index, the same in every check and "
                "every run), what the model sees in one epoch. Set [data] eval_transform (or return the split with "
                "its evaluation transform) for a fixed, unaugmented view"]
    return []


def _stacked(rows) -> np.ndarray:
    from dnncheck.data.records import empty_records

    out = empty_records(len(rows))
    for k, row in enumerate(rows):
        out[k] = row
    return out


def _require_items(source: str, split: str, data) -> None:
    try:
        n = len(data)
    except TypeError:
        raise UserError(f"{source}: split {split!r} is not a map-style Dataset (no len())") from None
    if n == 0:
        raise UserError(f"{source}: split {split!r} is empty")
    _refuse_implausible_length(source, split, data, n)


# What each item costs the audit at least, in memory, whatever its shape: its record's light columns
# (data/store.py) and about this much for its id and label.
ID_AND_LABEL_BYTES = 64


def _refuse_implausible_length(source: str, split: str, data, n: int) -> None:
    """A Dataset whose len() is more items than this machine's memory could hold at the audit's
    per-item cost (a 10**12 len() exhausted memory instead of a refusal)."""
    from dnncheck.data.arrays import memory_bytes
    from dnncheck.data.store import LIGHT_BYTES

    memory = memory_bytes()
    if memory is None:
        return
    per_item = LIGHT_BYTES + ID_AND_LABEL_BYTES
    if n * per_item > memory:
        raise UserError(f"{source}: split {split!r} says len() = {n:,} items; at {per_item:,} bytes of records "
                        f"per item that is more than this machine's {memory / 2**30:.0f} GiB of memory: check its "
                        "__len__, or audit a subset (torch.utils.data.Subset)")
