"""`hf:PATH` sources: a Hugging Face `datasets.Dataset` or `DatasetDict` saved with `save_to_disk`,
read with `datasets.load_from_disk` (memory-mapped Arrow files; nothing is downloaded).

Splits: a DatasetDict's `train`, `validation` (or `val`, `valid`, `dev`) and `test`; a single Dataset
is train (dnncheck carves val and test from it, as for a folder). Columns: `[data] image_column` and
`label_column`, else the first column whose feature is an `Image` (else one named image, img or
pixel_values) and the first `ClassLabel` (else one named label or labels). A ClassLabel's names are
the class names. Items are read one at a time through the same streaming pass as `python:` sources
(data/pysource.py), so an image column's pixels are decoded only for the samples a check uses.
Sample id: `<split>:<row>`. Optional dependency: `pip install "dnncheck[hf]"`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnncheck.errors import UserError, refuse_system_path

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "dev": "val", "test": "test"}
IMAGE_NAMES = ("image", "img", "pixel_values")
LABEL_NAMES = ("label", "labels")


def load_hf(text: str, cfg, workers: int, progress=None):
    from dnncheck.data.pysource import load_splits

    path = cfg.resolve(text)
    source = f"hf:{text}"
    if not path.exists():
        raise UserError(f"{source}: no such folder; give the folder a datasets.Dataset or DatasetDict was saved "
                        "to with save_to_disk")
    refuse_system_path(path, "data source")
    loaded = _load_from_disk(path, source)
    splits, ignored = _splits(loaded, source)
    image_column, label_column = _columns(splits["train"], cfg, source)
    wrapped = {name: HFSplit(data, image_column, label_column) for name, data in splits.items()}
    ds = load_splits(wrapped, source, (), workers, progress)
    ds.notes.append(f"{source}: column {image_column!r} as inputs, {label_column!r} as labels"
                    + (f"; split(s) {', '.join(ignored)} not audited" if ignored else ""))
    return ds


def _load_from_disk(path: Path, source: str):
    try:
        import datasets
    except ModuleNotFoundError:
        raise UserError(f"{source}: hf: sources need Hugging Face datasets: pip install \"dnncheck[hf]\"") from None
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise UserError(f"{source}: not a dataset saved with save_to_disk ({str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:  # a damaged Arrow file or state: the library's words, one line
        raise UserError(f"{source}: load_from_disk failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _splits(loaded, source: str) -> tuple[dict, list[str]]:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}, []
    splits, ignored = {}, []
    for name, data in loaded.items():
        ours = SPLIT_NAMES.get(name.lower())
        if ours is None or ours in splits:
            ignored.append(name)
        else:
            splits[ours] = data
    if "train" not in splits:
        raise UserError(f"{source}: the DatasetDict has splits {', '.join(loaded)} but no train; name the training "
                        "split train")
    return splits, ignored


def _columns(train, cfg, source: str) -> tuple[str, str]:
    import datasets

    features = train.features
    image = cfg.image_column or next((n for n, f in features.items() if isinstance(f, datasets.Image)), None) \
        or next((n for n in IMAGE_NAMES if n in features), None)
    label = cfg.label_column or next((n for n, f in features.items() if isinstance(f, datasets.ClassLabel)), None) \
        or next((n for n in LABEL_NAMES if n in features), None)
    for what, key, column in (("inputs", "image_column", image), ("labels", "label_column", label)):
        if column is None:
            raise UserError(f"{source}: no column for the {what}; set [data] {key} to one of {', '.join(features)}")
        if column not in features:
            raise UserError(f"{source}: [data] {key} = {column!r} is not a column; columns: {', '.join(features)}")
    return image, label


class HFSplit:
    """A map-style view of one split: items (x, y) with x a PIL image or a numpy array, y the label."""

    def __init__(self, data, image_column: str, label_column: str):
        import datasets

        # only the two columns: a row of the whole table would also decode its other image or audio columns
        self.data = data.select_columns([image_column, label_column])
        self.image_column, self.label_column = image_column, label_column
        feature = data.features[label_column]
        self.classes = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        row = self.data[int(i)]
        x = row[self.image_column]
        if not hasattr(x, "convert"):  # a PIL image stays one; arrays and nested lists become numpy
            x = np.asarray(x)
        return x, row[self.label_column]
