"""CSV sources: a manifest of image paths (`path,label[,split][,group]`) or a table of features
(`label` or `target`, optional `split`, `group`). A CSV with a `path` column is a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnncheck.data.dataset import SPLITS, Dataset, SplitData, class_labels
from dnncheck.data.files import FileEntry, build_image_dataset
from dnncheck.errors import UserError, first_line


def read_csv(path: Path):
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the CSV is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot parse the CSV ({first_line(exc)}); fix the file") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise UserError(f"{path}: the CSV has a header but no rows")
    return frame


def _split_column(frame, path: Path):
    if "split" not in frame.columns:
        return None
    values = frame["split"].astype(str).str.strip().str.lower()
    bad = sorted(set(values) - set(SPLITS))
    if bad:
        raise UserError(f"{path}: column `split` has {bad[0]!r}; allowed values are {', '.join(SPLITS)}")
    return values.to_numpy()


def load_csv(path: Path, settings, progress=None) -> tuple[Dataset, bool]:
    """(dataset, whether ids are `<split>:<row>` and so renumbered after a made split)."""
    frame = read_csv(path)
    if "path" in frame.columns:
        return load_manifest(frame, path, settings, progress), False
    return load_table(frame, path), True


def load_manifest(frame, path: Path, settings, progress=None) -> Dataset:
    if "label" not in frame.columns:
        raise UserError(f"{path}: a manifest needs columns path,label (found: {', '.join(frame.columns)})")
    if frame["label"].isna().any():
        row = int(np.flatnonzero(frame["label"].isna().to_numpy())[0])
        raise UserError(f"{path}: row {row + 2} has no label; fill in the label column or drop the row")
    label_notes: list[str] = []
    labels, classes = class_labels(frame["label"].to_numpy(), f"{path} column label", label_notes)
    splits = _split_column(frame, path)
    groups = frame["group"].astype(str).to_numpy() if "group" in frame.columns else None
    base = path.resolve().parent
    entries, missing = [], []
    for i, rel in enumerate(frame["path"].astype(str)):
        file = Path(rel).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.is_file():
            missing.append(rel)
        entries.append(FileEntry(rel, str(file), int(labels[i]), splits[i] if splits is not None else "train",
                                 groups[i] if groups is not None else None))
    if len(missing) == len(entries):
        raise UserError(f"{path}: none of the {len(entries)} paths exist (first: {missing[0]}); "
                        f"paths are read relative to {base}")
    dataset = build_image_dataset(str(path), entries, classes, settings, progress)
    if "train" not in dataset.splits:
        raise UserError(f"{path}: no readable rows have split=train; mark the training rows")
    dataset.notes = label_notes + dataset.notes
    return dataset


def load_table(frame, path: Path) -> Dataset:
    if "label" in frame.columns and "target" in frame.columns:
        raise UserError(f"{path}: has both `label` and `target`; keep `label` (classification) or `target` (regression)")
    if "label" not in frame.columns and "target" not in frame.columns:
        raise UserError(f"{path}: a table CSV needs a `label` (classification) or `target` (regression) column, "
                        f"or `path,label` for a manifest (found: {', '.join(frame.columns[:8])})")
    task = "classification" if "label" in frame.columns else "regression"
    ycol = "label" if task == "classification" else "target"
    if frame[ycol].isna().any():
        row = int(np.flatnonzero(frame[ycol].isna().to_numpy())[0])
        raise UserError(f"{path}: row {row + 2} has no {ycol}; fill it in or drop the row")
    features = [c for c in frame.columns if c not in (ycol, "split", "group")]
    if not features:
        raise UserError(f"{path}: no feature columns besides {ycol}/split/group")
    for col in features:
        if frame[col].dtype.kind not in "biuf":
            raise UserError(f"{path}: feature column {col!r} is not numeric; encode it as numbers or drop it")
    label_notes: list[str] = []
    if task == "classification":
        y, classes = class_labels(frame[ycol].to_numpy(), f"{path} column label", label_notes)
    else:
        if frame[ycol].dtype.kind not in "biuf":
            raise UserError(f"{path}: column target must be numeric for regression")
        y, classes = frame[ycol].to_numpy(dtype=np.float64), []
    x = frame[features].to_numpy(dtype=np.float64)
    splits = _split_column(frame, path)
    groups = frame["group"].astype(str).to_numpy() if "group" in frame.columns else None
    names = splits if splits is not None else np.array(["train"] * len(frame))
    data = {}
    for name in SPLITS:
        idx = np.flatnonzero(names == name)
        if len(idx):
            data[name] = SplitData(name, [f"{name}:{i}" for i in range(len(idx))], y[idx], x[idx],
                                   None if groups is None else groups[idx].astype(object))
    if "train" not in data:
        raise UserError(f"{path}: no rows have split=train; mark the training rows")
    return Dataset(source=str(path), modality="table", task=task, classes=classes, splits=data,
                   feature_names=features, notes=label_notes)
