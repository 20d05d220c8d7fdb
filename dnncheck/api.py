"""The Python API: `dnncheck.audit(...)` returns the AuditResult the CLI renders.

    import dnncheck
    result = dnncheck.audit("sklearn:digits", select=["loss-sanity"], seed=0)
    result.status, result.exit_code, result.checks
    result.to_json(); result.to_html("report.html")   # and, in a notebook, the result displays itself

In-memory data and models are accepted too: `target` may be a dict of split name -> torch Dataset
(items (x, y), as for `python:` sources) or -> (x, y) numpy arrays, and `model` a torch.nn.Module
instance (copied for every probe, its current weights the starting point) or a factory callable
(called like a `pkg.module:factory`). They are reached through this module's namespace under a fresh
name, so the rest of dnncheck sees them as ordinary `python:` sources and factories.
Bad input raises dnncheck.UserError with the message the CLI prints.
"""

from __future__ import annotations

import itertools
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from dnncheck.errors import UserCodeExited, UserError

_names = itertools.count(1)
MAX_WARNINGS = 20


def audit(target: Any = None, *, model: Any = None, weights: str | Path | None = None, select=None, ignore=None,
          budget: float | None = None, seed: int | None = None, device: str | None = None,
          config: str | Path | None = None, fail_on: str | None = None, image_size=None, eval_transform=None,
          loss: str | None = None, optimizer: str | None = None, optimizer_args: dict | None = None,
          scheduler: str | None = None, scheduler_args: dict | None = None, lr: float | None = None,
          batch_size: int | None = None):
    """Run the checklist; returns the AuditResult (nothing is printed or written). `image_size`
    (height, width) is [data] image_size: the model's input size (in-memory data has no config).
    `eval_transform` (a callable, or a "pkg.module:attr" spec) is [data] eval_transform: the
    in-memory Datasets are audited through copies with it as their `transform`. `loss`,
    `optimizer`, `optimizer_args`, `scheduler`, `scheduler_args`, `lr` and `batch_size` are the
    [model] and [train] keys of the same names, validated the same way; given, they override a
    config file's."""
    from dnncheck.progress import NullProgress

    if target is not None and config is not None and not isinstance(target, (str, Path)):
        raise UserError("pass in-memory data as target or a config file as config, not both")
    source = factory = transform = None
    try:
        source = _target_spec(target, config)
        factory = _model_spec(model)  # may refuse the model after the data was registered
        transform = _transform_spec(eval_transform)
        cfg = audit_config(source, model=factory, weights=None if weights is None else str(weights), select=select,
                           ignore=ignore, budget=budget, seed=seed, device=device, fail_on=fail_on,
                           image_size=image_size, eval_transform=transform,
                           training=dict(loss=loss, optimizer=optimizer, optimizer_args=optimizer_args,
                                         scheduler=scheduler, scheduler_args=scheduler_args, lr=lr,
                                         batch_size=batch_size))
        result = execute(cfg, NullProgress(), "dnncheck.audit(...)", time.perf_counter())
    except UserError as exc:  # in-memory data is "target" to the caller, not the name it was registered under
        if type(exc) is UserError and source and source.startswith(f"python:{__name__}:_object_"):
            raise UserError(str(exc).replace(source, "target")) from None
        raise
    finally:  # the audit is over: the user's arrays, model and transform are no longer held here
        _forget(source, factory, transform)
    return _named_for_people(result, target, model)


def _named_for_people(result, target, model):
    """The report names in-memory data and models by what they are ("in-memory train/val (numpy
    arrays)", "Net instance"), not by the internal name they were registered under."""
    from dataclasses import replace

    data, spec = dict(result.data), dict(result.model)
    if isinstance(target, dict):
        kinds = sorted({"numpy arrays" if isinstance(v, tuple) else type(v).__name__ for v in target.values()})
        data["source"] = f"in-memory {'/'.join(map(str, target))} ({', '.join(kinds)})"
    if model is not None and not isinstance(model, (str, Path)) and "spec" in spec:
        import torch

        spec["spec"] = (f"{type(model).__name__} instance" if isinstance(model, torch.nn.Module)
                        else f"factory {getattr(model, '__qualname__', type(model).__name__)}")
    return replace(result, data=data, model=spec)


def audit_config(target: str | None, *, model: str | None = None, weights: str | None = None, select=None,
                 ignore=None, fail_on: str | None = None, device: str | None = None, budget: float | None = None,
                 seed: int | None = None, engine: str | None = None, ray_address: str | None = None,
                 workers: int | None = None, no_cache: bool = False, verify_cache: bool = False, image_size=None,
                 eval_transform: str | None = None, training: dict | None = None):
    """The AuditConfig of a target plus the settings the CLI's flags and audit()'s arguments give (the
    same for both): model and weights paths relative to where the call is made, not to the config."""
    from dnncheck.config import build_config

    overrides = {"--model": ("model", "factory", _absolute_from_cwd(model)),
                 "--weights": ("model", "weights", _absolute_from_cwd(weights)),
                 "--fail-on": ("checks", "fail_on", fail_on), "--device": ("probe", "device", device),
                 "--budget": ("probe", "budget_seconds", budget), "--seed": ("probe", "seed", seed),
                 "--engine": ("probe", "engine", engine), "--ray-address": ("probe", "ray_address", ray_address),
                 "--workers": ("data", "workers", workers), "--no-cache": ("data", "cache", False if no_cache else None),
                 "--verify-cache": ("data", "verify_cache", True if verify_cache else None),
                 "eval_transform": ("data", "eval_transform", eval_transform),
                 "image_size": ("data", "image_size", None if image_size is None else
                                list(image_size) if isinstance(image_size, (list, tuple)) else image_size)}
    for key, value in (training or {}).items():  # audit(loss=, optimizer=, lr=, ...): [model] loss, [train] keys
        overrides[key] = ("model" if key == "loss" else "train", key, value)
    cfg = build_config(target, overrides)
    if select is not None:
        cfg.select = _ids(select, "select")
        if not cfg.select:  # `--select ''` used to run every check, which on a large dataset looked like a hang
            raise UserError("--select names no check; leave it out to run every check, or name some "
                            "(`dnncheck checks` lists them)")
    if ignore:
        cfg.ignore = cfg.ignore + _ids(ignore, "ignore")
    from dnncheck.config import input_paths
    from dnncheck.data.cache import refuse_cache_inside
    from dnncheck.errors import refuse_system_path

    folders = input_paths(cfg)[1]
    for what, folder in folders.items():  # before anything else reads or writes near them
        if folder is not None:
            refuse_system_path(folder, "data source" if what == "data" else what)
    refuse_cache_inside(folders, cfg.config_path)
    return cfg


def _absolute_from_cwd(value: str | None) -> str | None:
    """Paths given as flags are relative to where the command runs, not to the config file."""
    if value and ":" not in value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def execute(cfg, progress, command: str, started: float, baseline=None):
    """Prepare the context and run the selected checks; library warnings become notes of the result."""
    from dataclasses import replace

    from dnncheck.config import input_paths
    from dnncheck.context import Context
    from dnncheck.data.scan import shutdown
    from dnncheck.runner import (bound_heap_growth, interrupts_remembered, raise_if_interrupted, run_audit,
                                 select_checks)

    checks = select_checks(cfg)
    bound_heap_growth()
    with progress, warnings.catch_warnings(record=True) as caught, interrupts_remembered():
        warnings.simplefilter("default")  # each distinct warning once, into the report, not onto stderr
        try:
            ctx = Context(cfg, progress)
            ctx.prepare(uses_model=any(check.uses_model and check.applies_to(ctx.dataset.task) for check in checks))
            result = run_audit(ctx, checks, command, started, baseline)
            raise_if_interrupted()
        except SystemExit as exc:  # a Dataset, factory or forward called sys.exit: exit 2, not its code
            raise UserCodeExited(exc, "preparing the audit") from None
        finally:
            shutdown()  # the data pass's worker processes
    return _with_warnings(replace(result, protected=input_paths(cfg)), caught)


def _with_warnings(result, caught):
    """Library warnings raised during the audit, as notes of the report (stderr stays for errors)."""
    from dataclasses import replace

    seen = []
    for w in caught:
        text = f"warning ({w.category.__name__}, {Path(w.filename).name}:{w.lineno}): {' '.join(str(w.message).split())}"
        if text not in seen:
            seen.append(text)
    if not seen:
        return result
    notes = list(result.data.get("notes", [])) + seen[:MAX_WARNINGS]
    if len(seen) > MAX_WARNINGS:
        notes.append(f"... and {len(seen) - MAX_WARNINGS} more distinct warnings")
    return replace(result, data={**result.data, "notes": notes})


def _ids(value, what: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UserError(f"{what}: expected a list of check ids or slugs, or a comma-separated string")


def _target_spec(target, config) -> str | None:
    if target is None:
        return None if config is None else str(config)
    if isinstance(target, (str, Path)):
        return str(target)
    if isinstance(target, dict):
        return "python:" + _register(_splits_function(target))
    raise UserError(f"target: expected a path, a source such as sklearn:digits, or a dict of split name to "
                    f"Dataset or (x, y) arrays; got {type(target).__name__}")


def _splits_function(splits: dict):
    """A `python:` source function for a dict of torch Datasets or (x, y) array pairs."""
    import numpy as np

    made = {}
    for name, value in splits.items():
        if not isinstance(name, str):
            raise UserError(f"target: split names must be text such as 'train' (got {name!r})")
        if isinstance(value, tuple) and len(value) == 2:
            x = _array(value[0], f"target[{name!r}] inputs", "iufb")
            y = _array(value[1], f"target[{name!r}] labels", "iufbUS")
            if len(x) != len(y):
                raise UserError(f"target[{name!r}]: {len(x)} inputs but {len(y)} labels")
            made[name] = _Pairs(x, y)
        elif _dataset_like(value):
            made[name] = value
        else:
            sized = f" of {len(value)} items" if isinstance(value, tuple) else ""
            raise UserError(f"target[{name!r}]: expected a torch Dataset (items (x, y)) or an (x, y) tuple of "
                            f"arrays; got {type(value).__name__}{sized}")
    return lambda: made


def _dataset_like(value) -> bool:
    """Map-style: len() and indexing, as torch's DataLoader needs; not text, a mapping or a bare
    array (which has no labels)."""
    import numpy as np

    return (hasattr(value, "__len__") and hasattr(value, "__getitem__")
            and not isinstance(value, (str, bytes, dict, tuple, np.ndarray)))


def _array(value, what: str, kinds: str):
    """value as a numpy array with one row per sample, of a numeric (or, for labels, text) dtype."""
    import numpy as np

    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        reason = str(exc).split(". ")[0]
        raise UserError(f"{what}: not an array ({reason}); pass a numpy array with one row per sample") from None
    if array.ndim == 0:
        raise UserError(f"{what}: a single {type(value).__name__} value, not one per sample; pass an array of "
                        "shape (N, ...)")
    if array.dtype.kind not in kinds:
        expected = "numbers or class names" if "U" in kinds else "numbers"
        hint = "; pass a numeric array (np.stack the samples)" if array.dtype.kind == "O" else ""
        raise UserError(f"{what}: dtype {array.dtype} holds no {expected}{hint}")
    return array


class _Pairs:
    """A map-style dataset over (x, y) arrays."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _model_spec(model) -> str | None:
    if model is None or isinstance(model, (str, Path)):
        return None if model is None else str(model)
    import torch

    if isinstance(model, torch.nn.Module):
        import copy

        instance = model
        return _register(lambda: copy.deepcopy(instance))
    if callable(model):
        return _register(model)
    raise UserError(f"model: expected a spec such as \"smallcnn\", a torch.nn.Module or a factory; "
                    f"got {type(model).__name__}")


def _transform_spec(transform) -> str | None:
    if transform is None or isinstance(transform, str):
        return transform
    if callable(transform):
        return _register(transform)
    raise UserError(f"eval_transform: expected a callable transform or a \"pkg.module:attr\" spec; "
                    f"got {type(transform).__name__}")


def _forget(*specs) -> None:
    for spec in specs:
        if spec and f"{__name__}:_object_" in spec:
            delattr(sys.modules[__name__], spec.rsplit(":", 1)[1])


def _register(obj) -> str:
    """Expose obj as dnncheck.api:_object_N, a name the importers of sources and factories resolve."""
    name = f"_object_{next(_names)}"
    setattr(sys.modules[__name__], name, obj)
    return f"{__name__}:{name}"
