"""CSV sources: a manifest of image paths (`path,label[,split][,group]`; segmentation `path,mask_path`;
multi-label `path,labels` with `|`-separated names) or a table of features (`label` or `target`,
optional `split`, `group`). A CSV with a `path` column is a manifest."""

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


LABEL_COLUMNS = ("label", "mask_path", "labels")  # classification, segmentation, multi-label


def load_manifest(frame, path: Path, settings, progress=None) -> Dataset:
    present = [c for c in LABEL_COLUMNS if c in frame.columns]
    if len(present) != 1:
        found = ", ".join(frame.columns)
        raise UserError(f"{path}: a manifest needs path and one of label (classes), mask_path (segmentation) or "
                        f"labels (multi-label, names separated by |); found: {found}")
    column = present[0]
    if column != "labels" and frame[column].isna().any():
        row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
        raise UserError(f"{path}: row {row + 2} has no {column}; fill it in or drop the row")
    label_notes: list[str] = []
    if column == "label":
        labels, classes = class_labels(frame["label"].to_numpy(), f"{path} column label", label_notes)
    else:  # read after the images: masks at the model's size, label sets per sample id
        labels, classes = np.zeros(len(frame), dtype=np.int64), ["image"]
    base = path.resolve().parent
    entries = _entries(frame, path, base, labels)
    dataset = build_image_dataset(str(path), entries, classes, settings, progress)
    if "train" not in dataset.splits:
        raise UserError(f"{path}: no readable rows have split=train; mark the training rows")
    dataset.notes = label_notes + dataset.notes
    if column == "mask_path":
        dataset.task = "segmentation"
        dataset.pending_masks = _mask_files(frame, path, base, dataset)
    elif column == "labels":
        _label_sets(frame, path, dataset)
    return dataset


def _resolved(rel: str, base: Path) -> Path:
    file = Path(rel).expanduser()
    return file if file.is_absolute() else base / file


def _entries(frame, path: Path, base: Path, labels) -> list[FileEntry]:
    splits = _split_column(frame, path)
    groups = frame["group"].astype(str).to_numpy() if "group" in frame.columns else None
    entries, missing = [], []
    for i, rel in enumerate(frame["path"].astype(str)):
        file = _resolved(rel, base)
        if not file.is_file():
            missing.append(rel)
        entries.append(FileEntry(rel, str(file), int(labels[i]), splits[i] if splits is not None else "train",
                                 groups[i] if groups is not None else None))
    if len(missing) == len(entries):
        raise UserError(f"{path}: none of the {len(entries)} paths exist (first: {missing[0]}); "
                        f"paths are read relative to {base}")
    return entries


def _mask_files(frame, path: Path, base: Path, dataset: Dataset) -> dict[str, str]:
    """Sample id -> mask file for the images that were read; a missing mask file is refused."""
    masks = dict(zip(frame["path"].astype(str), frame["mask_path"].astype(str)))
    kept = {sample_id for part in dataset.splits.values() for sample_id in part.ids}
    files = {sample_id: str(_resolved(masks[sample_id], base)) for sample_id in kept}
    missing = sorted(masks[i] for i, f in files.items() if not Path(f).is_file())
    if missing:
        raise UserError(f"{path}: {len(missing)} mask file(s) in column mask_path do not exist (first: {missing[0]}); "
                        f"paths are read relative to {base}")
    return files


def _label_sets(frame, path: Path, dataset: Dataset) -> None:
    """Column `labels`: names separated by `|` (an empty cell: no label) into (N, C) 0/1 rows."""
    cells = {rel: ("" if isinstance(v, float) and np.isnan(v) else str(v))
             for rel, v in zip(frame["path"].astype(str), frame["labels"])}
    sets = {rel: {name.strip() for name in cell.split("|") if name.strip()} for rel, cell in cells.items()}
    classes = sorted(set().union(*sets.values()))
    if len(classes) < 2:
        raise UserError(f"{path}: column labels names {len(classes)} label(s); a multi-label manifest needs at least "
                        "two, separated by | within a cell")
    column = {name: k for k, name in enumerate(classes)}
    for part in dataset.splits.values():
        rows = np.zeros((len(part.ids), len(classes)), dtype=np.uint8)
        for r, sample_id in enumerate(part.ids):
            rows[r, [column[name] for name in sets[sample_id]]] = 1
        part.y = rows
    dataset.classes, dataset.task = classes, "multilabel"


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
