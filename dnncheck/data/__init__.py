"""Loading a data source into a Dataset (DESIGN section 2): image files in one streaming pass that keeps
compact records (their pixels stay on disk), in-memory arrays as they are, with the same records."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dnncheck.data.dataset import Dataset, SplitData
from dnncheck.errors import UserError, refuse_system_path, require_regular_file

# what each task needs, said when the configured task does not match the source (DESIGN section 3)
TASK_SOURCES = {"segmentation": "segmentation masks are read from an .npz with mask_<split> arrays, a folder "
                                "<split>/images + <split>/masks or a manifest with a mask_path column; ",
                "multilabel": "multi-label rows are read from an .npz with (N, C) 0/1 y_<split> arrays or a manifest "
                              "with a labels column (names separated by |); ",
                "regression": "a regression target is read from a table CSV's `target` column; ",
                "classification": ""}
MAX_DEFAULT_SIDE = 128  # a common native size up to this is used as the model's input size
FALLBACK_IMAGE_SIZE = (64, 64)


def load_dataset(cfg, progress=None) -> Dataset:
    """Read cfg.source, make missing splits, settle channels and the model's input size."""
    hf = [s for s in (cfg.source, cfg.external) if s and s.startswith("hf:")]
    if (cfg.image_column or cfg.label_column) and not hf:  # set for nothing: said, not ignored
        key = "image_column" if cfg.image_column else "label_column"
        raise UserError(f"[data] {key}: names a column of an hf: source; {cfg.source} is not one: remove {key}")
    ds, renumber = _read_source(cfg.source, cfg, progress)
    if cfg.task is not None and cfg.task != ds.task:
        raise UserError(f"{cfg.origin}: [data] task = {cfg.task!r} but {ds.source} holds {ds.task} data; "
                        f"{TASK_SOURCES.get(cfg.task, '')}remove task to let dnncheck read it as {ds.task}")
    from dnncheck.data.splits import make_missing_splits

    if ds.is_image:  # decided first: a segmentation folder's masks are read at this size
        if cfg.image_size:
            ds.image_size = tuple(cfg.image_size)
            ds.image_size_from = f"[data] image_size in {cfg.origin}"
        else:
            ds.image_size = default_image_size(ds)
        if not ds.image_size_from.startswith("the default"):  # the fallback has its own note
            ds.notes.append(f"model input {ds.image_size[0]}x{ds.image_size[1]}: {ds.image_size_from}")
    if ds.pending_masks is not None:
        _read_pending_masks(ds)
    _check_labels(ds)
    settings = _scan_settings(cfg)
    if settings.capped_note:
        ds.notes.append(settings.capped_note)
    _array_records(ds, settings.worker_count, progress)
    make_missing_splits(ds, cfg.seed, renumber)
    return ds


def _read_pending_masks(ds: Dataset) -> None:
    """A segmentation folder's masks, read at the model's input size into each split's y; masks whose
    stored size differs from their image's are kept in the mask facts (input-fidelity reports them)."""
    from dnncheck.data.maskfiles import read_masks
    from dnncheck.data.tasks import segmentation_targets

    masks, mismatched = {}, []
    for name, part in ds.splits.items():
        stored, native = read_masks([ds.pending_masks[i] for i in part.ids], tuple(ds.image_size))
        masks[name] = stored
        for sample_id, mask_size, image_size in zip(part.ids, native, part.native_sizes):
            if tuple(mask_size) != tuple(int(v) for v in image_size):
                mismatched.append((sample_id, [int(v) for v in mask_size], [int(v) for v in image_size]))
    ys, ds.classes, ds.mask_facts = segmentation_targets(masks, None, ds.source, ds.notes)
    ds.mask_facts.size_mismatch = mismatched
    for name, part in ds.splits.items():
        part.y = ys[name]
    ds.pending_masks = None


def _read_source(source: str, cfg, progress):
    if cfg.eval_transform and not source.startswith("python:"):
        raise UserError(f"[data] eval_transform: applies to python: sources and in-memory Datasets, whose transform "
                        f"dnncheck can replace; {source} is read by dnncheck's own loader: remove eval_transform")
    if source.startswith("sklearn:"):
        from dnncheck.data.arrays import load_sklearn

        return load_sklearn(source.split(":", 1)[1]), True
    if source.startswith("hf:"):
        from dnncheck.data.hfsource import load_hf

        return load_hf(source.split(":", 1)[1], cfg, _scan_settings(cfg).worker_count, progress), True
    if source.startswith("python:"):
        from dnncheck.data.pysource import load_python

        return load_python(source.split(":", 1)[1], (cfg.base_dir,), _scan_settings(cfg).worker_count, progress,
                           cfg.eval_transform), True
    path = cfg.resolve(source)
    if not path.exists():
        path = Path(os.path.normpath(path))  # say /data/x rather than /work/cfg/../../data/x
        if cfg.how_to_get:
            raise UserError(f"{path}: no such file or folder; {cfg.origin} says how to get it: {cfg.how_to_get}")
        raise UserError(f"{path}: no such file or folder; give a folder, .csv, .npz, sklearn:digits or python:pkg.mod:fn")
    refuse_system_path(path, "data source")
    if path.is_dir():
        from dnncheck.data.folder import load_folder

        return load_folder(path, _scan_settings(cfg), progress), False
    require_regular_file(path, "data source", "give a folder, .csv or .npz")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from dnncheck.data.arrays import load_npz

        return load_npz(path, cfg.task), True
    if suffix == ".csv":
        from dnncheck.data.csvfile import load_csv

        return load_csv(path, _scan_settings(cfg), progress)
    raise UserError(f"{path}: unsupported data file {suffix or '(no extension)'}; "
                    "use a class folder, a .csv (manifest or table) or an .npz")


def _scan_settings(cfg):
    from dnncheck.data.scan import ScanSettings

    return ScanSettings.from_config(cfg)


def _array_records(ds: Dataset, workers: int, progress=None) -> None:
    """Records of in-memory images, the same as the data pass computes for files (in its worker
    processes when there are enough images to pay for starting them)."""
    from dnncheck.data.scan import records_of_arrays

    parts = [p for p in ds.splits.values() if p.records is None]
    if not ds.is_image or not parts:
        return
    task = progress.task("describing images", total=sum(len(p) for p in parts), unit="images") if progress else None
    for part in parts:
        part.records = records_of_arrays(part.x, workers, task.advance if task else None)
    if task:
        task.close()


def _check_labels(ds: Dataset) -> None:
    train = ds.splits["train"]
    if len(train) == 0:
        raise UserError(f"{ds.source}: the train split is empty")
    if ds.task == "segmentation" and len(np.unique(train.y)) < 2:
        raise UserError(f"{ds.source}: every training mask holds the single class {ds.classes[int(train.y.flat[0])]}; "
                        "a segmentation model needs at least two classes among the training pixels")
    if ds.task == "classification":
        present = np.unique(train.y)
        if len(present) < 2:
            raise UserError(f"{ds.source}: train holds a single class ({ds.classes[present[0]]}); "
                            "a classifier needs at least two")


def default_image_size(ds: Dataset) -> tuple[int, int]:
    """The native size when every image shares one: always for arrays and tensors the user prepared
    (in-memory, .npz, python: sources: resizing them would audit another input than the model's),
    up to MAX_DEFAULT_SIDE for decoded image files; else 64x64. Sets ds.image_size_from."""
    from dnncheck.data.files import ImageFiles

    sizes = np.concatenate([s.native_sizes for s in ds.splits.values() if s.native_sizes is not None])
    first = tuple(int(v) for v in sizes[0])
    prepared = not any(isinstance(s.x, ImageFiles) for s in ds.splits.values())
    shared = bool(np.all(sizes == sizes[0]))
    if shared and prepared:
        ds.image_size_from = "the size every input array of the source shares (not resized)"
        return first
    if shared and max(first) <= MAX_DEFAULT_SIDE:
        ds.image_size_from = "the size every image file shares"
        return first
    ds.image_size_from = (f"the default for images that vary in size or exceed {MAX_DEFAULT_SIDE}px "
                          "(set [data] image_size to change)")
    ds.notes.append(f"images vary in size or exceed {MAX_DEFAULT_SIDE}px: model input set to "
                    f"{FALLBACK_IMAGE_SIZE[0]}x{FALLBACK_IMAGE_SIZE[1]} (set [data] image_size to change)")
    return FALLBACK_IMAGE_SIZE


__all__ = ["Dataset", "SplitData", "load_dataset", "load_external"]


def load_external(cfg, ds: Dataset, progress=None) -> SplitData | None:
    """The external validation set: [data] external, else x_external/y_external in the source.

    All its splits are pooled; ids are prefixed "external:"; classes are matched to the training
    classes by name; channels are converted to the training data's.
    """
    import numpy as np

    from dnncheck.data.dataset import stack_if_uniform
    from dnncheck.data.files import ImageFiles

    if not cfg.external:
        return ds.external
    ext, _ = _read_source(cfg.external, cfg, progress)
    if ext.modality != ds.modality:
        raise UserError(f"data.external {cfg.external}: is {ext.modality} data but the training data is {ds.modality}")
    parts = [p for p in (*ext.splits.values(), ext.external) if p is not None and len(p)]
    lookup = {name: i for i, name in enumerate(ds.classes)}
    unknown = sorted({ext.classes[c] for p in parts for c in np.unique(p.y)} - set(lookup))
    if ds.task == "classification" and unknown:
        raise UserError(f"data.external {cfg.external}: class {unknown[0]!r} is not among the training classes "
                        f"({', '.join(ds.classes[:10])}); name external classes as in training")
    y = np.concatenate([[lookup[ext.classes[c]] for c in p.y] if ds.task == "classification" else p.y for p in parts])
    ids = [f"external:{i}" for p in parts for i in p.ids]
    if ds.is_image and all(isinstance(p.x, ImageFiles) for p in parts):
        x = ImageFiles.concat([p.x for p in parts], ds.channels)  # still on disk
    elif ds.is_image:
        from dnncheck.data.items import match_channels

        images = [match_channels(im, ds.channels) for p in parts for im in p.x]
        x = stack_if_uniform(images)
    else:
        x = np.concatenate([p.x for p in parts])
        if x.shape[1] != len(ds.feature_names):
            raise UserError(f"data.external {cfg.external}: has {x.shape[1]} features but training has "
                            f"{len(ds.feature_names)}")
    return SplitData("external", ids, np.asarray(y), x)
