"""AuditConfig: a TOML file or [tool.dnncheck] in pyproject.toml, with CLI flags on top.

Every problem is a UserError whose message names the file and key and what would be valid, so the
CLI can print it as one line and exit 2.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnncheck.errors import UserError, closest, require_regular_file

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NORMALIZE_MODES = ("auto", "none", "zscore", "minmax")
LOSSES = ("cross_entropy", "nll", "bce", "mse")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")  # the common ones; any torch.optim name works (probes/optim.py)
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "mse", "mae", "r2", "iou", "dice", "average_precision")
FAIL_ON = ("fail", "warn", "never")
ENGINES = ("local", "ray")
TASKS = ("classification", "regression", "segmentation", "multilabel")
DEFAULT_CONFIG_NAME = "dnncheck.toml"


@dataclass
class AuditConfig:
    source: str | None = None
    task: str | None = None  # None: inferred from the source (data/tasks.py)
    how_to_get: str | None = None  # said when the source is missing: where the data comes from
    image_size: tuple[int, int] | None = None  # None: decided from the data (see data.dataset)
    normalize: Any = "auto"
    external: str | None = None
    decode_max_side: int = 256
    image_column: str | None = None  # hf: sources: the inputs' column (None: the first Image feature)
    label_column: str | None = None  # hf: sources: the labels' column (None: the first ClassLabel)
    eval_transform: str | None = None  # pkg.module:attr replacing the transform of a python: source's Datasets
    workers: int = 0  # processes for the data pass; 0: every core
    cache: bool = True  # per-file record cache (data/cache.py)
    verify_cache: bool = False  # hash every file and decode again those whose content changed (data/cache.py)
    model: str = "auto"  # auto: smallcnn for images, mlp for tables
    weights: str | None = None
    loss: str | None = None  # None: cross_entropy for classification, mse for regression
    optimizer: str = "adam"  # any torch.optim optimizer or pkg.module:factory (probes/optim.py)
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    scheduler: str | None = None  # a torch.optim.lr_scheduler class or pkg.module:factory
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    momentum: float = 0.9
    metric: str | None = None
    budget_seconds: float = 300.0
    device: str = "auto"
    seed: int = 0
    epochs: int | None = None  # None: planned from the data (probes/plan.py)
    max_train_samples: int = 5000  # also the most samples per split whose pixels any check loads
    engine: str = "local"  # the data pass: local processes | ray
    ray_address: str | None = None  # an existing Ray cluster (None: a local Ray instance)
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    fail_on: str = "fail"
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    origin: str = "command line"  # where the settings came from, for messages
    config_path: Path | None = None  # the TOML file read, if any (an input reports must never overwrite)

    def resolve(self, path: str) -> Path:
        """A path from the config is relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


# key -> (validator, human description of the expected type)
def _is_str(v):
    return isinstance(v, str)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    """A finite int or float: TOML admits inf and nan, and lr = inf crashed torch's optimizer natively."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# Upper bounds: beyond them a value is a typo or an attack, and would only surface as an allocation
# of terabytes or an overflow deep inside a check.
MAX_IMAGE_SIDE = 4096
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit


def _int_in(low: int, high: int):
    return lambda v: _is_int(v) and low <= v <= high


def _is_image_size(v):
    side = _int_in(1, MAX_IMAGE_SIDE)
    return side(v) or (isinstance(v, list) and len(v) == 2 and all(side(x) for x in v))


def _is_normalize(v):
    if isinstance(v, str):
        return v in NORMALIZE_MODES
    return isinstance(v, dict) and set(v) == {"mean", "std"} and all(
        isinstance(v[k], list) and v[k] and all(_is_number(x) for x in v[k]) for k in v
    ) and len(v["mean"]) == len(v["std"]) and all(x > 0 for x in v["std"])


def _is_loss(v):
    return isinstance(v, str) and (v in LOSSES or re.fullmatch(r"[\w.]+:\w+", v) is not None)


def _is_name_or_factory(v):
    return isinstance(v, str) and re.fullmatch(r"[\w.]+(:\w+)?", v) is not None


def _is_arguments(v):
    return isinstance(v, dict) and all(isinstance(k, str) and k.isidentifier() for k in v)


def _is_device(v):
    return isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None


SCHEMA: dict[str, dict[str, tuple]] = {
    "data": {
        "source": (_is_str, "a path or a built-in source such as \"sklearn:digits\""),
        "task": (lambda v: v in TASKS, f"one of {', '.join(TASKS)} (left out: inferred from the source)"),
        "image_size": (_is_image_size, f"two integers [H, W] between 1 and {MAX_IMAGE_SIDE} (or one for a square)"),
        "normalize": (_is_normalize, f"one of {', '.join(NORMALIZE_MODES)} or {{mean=[..], std=[..]}} with positive stds"),
        "external": (_is_str, "a path to an external validation set"),
        "how_to_get": (_is_str, "text: how to obtain the data, shown when the source is missing"),
        "decode_max_side": (_int_in(8, 4 * MAX_IMAGE_SIDE), f"an integer between 8 and {4 * MAX_IMAGE_SIDE} (pixels)"),
        "eval_transform": (_is_str, "pkg.module:attr, a callable that replaces the `transform` of a python: source's "
                                    "Datasets (their evaluation transform)"),
        "image_column": (_is_str, "the column of an hf: source that holds the inputs (default: its first Image feature)"),
        "label_column": (_is_str, "the column of an hf: source that holds the labels (default: its first ClassLabel)"),
        "workers": (_int_in(0, 1024), "an integer between 0 (every core) and 1024: processes for the data pass"),
        "cache": (lambda v: isinstance(v, bool), "true or false: keep per-file records in the user's cache folder"),
        "verify_cache": (lambda v: isinstance(v, bool), "true or false: hash every file and decode again any whose content changed since its cached record"),
    },
    "model": {
        "factory": (_is_str, "a model spec: smallcnn | mlp | resnet18 | pkg.module:factory | model.ts"),
        "weights": (_is_str, "a path to a state_dict file"),
        "loss": (_is_loss, f"one of {', '.join(LOSSES)} or pkg.module:function"),
    },
    "train": {
        "optimizer": (_is_name_or_factory, f"a torch.optim optimizer ({', '.join(OPTIMIZERS)}, adadelta, nadam, ...) "
                                           "or pkg.module:factory"),
        "optimizer_args": (_is_arguments, "a table of the optimizer's keyword arguments, e.g. [train.optimizer_args] "
                                          "rho = 0.9"),
        "scheduler": (_is_name_or_factory, "a torch.optim.lr_scheduler class (StepLR, OneCycleLR, "
                                           "CosineAnnealingLR, ReduceLROnPlateau, ...) or pkg.module:factory"),
        "scheduler_args": (_is_arguments, "a table of the scheduler's keyword arguments, e.g. [train.scheduler_args] "
                                          "step_size = 1"),
        "lr": (lambda v: _is_number(v) and 0 < v <= 1e6, "a positive number (at most 1e6)"),
        "batch_size": (_int_in(1, 65536), "an integer between 1 and 65536"),
        "weight_decay": (lambda v: _is_number(v) and 0 <= v <= 1e6, "a number between 0 and 1e6"),
        "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "metric": (lambda v: v in METRICS, f"one of {', '.join(METRICS)}"),
    },
    "probe": {
        "budget_seconds": (lambda v: _is_number(v) and 0 < v <= 7 * 86400, "a positive number of seconds (at most a week)"),
        "device": (_is_device, "auto, cpu, cuda or cuda:N"),
        "seed": (_int_in(0, MAX_SEED), f"an integer between 0 and {MAX_SEED}"),
        "epochs": (_int_in(1, 10000), "an integer between 1 and 10000"),
        "max_train_samples": (_int_in(10, 100_000_000), "an integer between 10 and 100,000,000"),
        "engine": (lambda v: v in ENGINES, f"one of {', '.join(ENGINES)}"),
        "ray_address": (lambda v: isinstance(v, str) and v.strip() != "", "a Ray cluster address such as \"ray://head:10001\" or \"auto\""),
    },
    "checks": {
        "select": (lambda v: _is_str_list(v) and any(x.strip() for x in v),
                   "a non-empty list of check ids or slugs (leave select out to run every check)"),
        "ignore": (_is_str_list, "a list of check ids or slugs"),
        "fail_on": (lambda v: v in FAIL_ON, f"one of {', '.join(FAIL_ON)}"),
    },
}

# (section, key) -> AuditConfig attribute
_ATTRS = {("model", "factory"): "model", ("probe", "budget_seconds"): "budget_seconds"}


def read_toml(path: Path) -> dict:
    require_regular_file(path, "config file", f"check the path or run `dnncheck init {path}`")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; check the path or run `dnncheck init {path}`") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}); check the file's permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc}); fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the config as UTF-8 TOML") from None
    except RecursionError:  # tomllib recurses per level of nested arrays or inline tables
        raise UserError(f"{path}:{_deep_line(path)}: arrays or inline tables nested hundreds of levels deep; a "
                        "dnncheck config nests at most two levels: fix that value") from None


def _deep_line(path: Path, depth: int = 100) -> int:
    """The first line where brackets and braces (strings not told apart) nest `depth` deep: where the
    over-deep value is, for the message."""
    level = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            for char in line:
                level += char in "[{"
                level -= char in "]}"
                if level >= depth:
                    return number
    return 1


def load_config_file(path: Path) -> AuditConfig:
    """A dnncheck TOML file, or the [tool.dnncheck] table of a pyproject.toml."""
    raw = read_toml(path)
    if path.name == "pyproject.toml":
        raw = raw.get("tool", {}).get("dnncheck")
        if raw is None:
            raise UserError(f"{path}: has no [tool.dnncheck] table; add one or pass a TARGET")
    cfg = AuditConfig(base_dir=path.resolve().parent, origin=str(path), config_path=path)
    apply_table(cfg, raw, str(path))
    return cfg


def input_paths(cfg: AuditConfig) -> tuple[dict[str, Path | None], dict[str, Path | None]]:
    """({what: file or folder the audit reads}, {what: data folder}) for the output-path check."""
    def local(value):
        if not value or value.startswith(("sklearn:", "python:")):
            return None
        return cfg.resolve(value[3:] if value.startswith("hf:") else value)

    source, external = local(cfg.source), local(cfg.external)
    inputs = {"config file": cfg.config_path, "data source": source, "weights file": local(cfg.weights),
              "external set": external}
    return inputs, {"data": source, "external set": external}


def apply_table(cfg: AuditConfig, raw: dict, origin: str) -> None:
    """Validate a parsed config table and copy it onto cfg; unknown keys name the closest valid one."""
    for section, table in raw.items():
        if section not in SCHEMA:
            raise UserError(f"{origin}: unknown section [{section}]{closest(section, SCHEMA)}; "
                            f"valid sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise UserError(f"{origin}: [{section}] must be a table of keys, not a single value")
        for key, value in table.items():
            if section == "checks" and isinstance(value, dict):
                cfg.thresholds[key] = dict(value)  # validated by the runner, which knows the checks
                continue
            _apply_key(cfg, section, key, value, origin)


def _apply_key(cfg: AuditConfig, section: str, key: str, value, origin: str) -> None:
    schema = SCHEMA[section]
    if key not in schema:
        hint = closest(key, schema)
        if section == "checks":
            hint += "; per-check thresholds go in a table such as [checks.label-noise]"
        raise UserError(f"{origin}: unknown key {section}.{key}{hint}; valid keys: {', '.join(schema)}")
    valid, expected = schema[key]
    if not valid(value):
        raise UserError(f"{origin}: {section}.{key} = {value!r} is not valid; expected {expected}")
    if key == "image_size":
        value = (value, value) if isinstance(value, int) else tuple(value)
    if key in ("lr", "budget_seconds", "weight_decay", "momentum"):
        value = float(value)
    setattr(cfg, _ATTRS.get((section, key), key), value)


def find_default_config(cwd: Path) -> Path | None:
    """With no TARGET: [tool.dnncheck] in ./pyproject.toml, else ./dnncheck.toml."""
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            if "dnncheck" in read_toml(pyproject).get("tool", {}):
                return pyproject
        except UserError:
            pass  # a broken pyproject that is not ours: look for dnncheck.toml instead
    candidate = cwd / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def build_config(target: str | None, overrides: dict[str, tuple[str, str, Any]], cwd: Path | None = None) -> AuditConfig:
    """TARGET (config file or data source) plus flag overrides {flag: (section, key, value)}."""
    cwd = cwd or Path.cwd()
    if target is None:
        found = find_default_config(cwd)
        if found is None:
            raise UserError("no TARGET given and no [tool.dnncheck] in ./pyproject.toml nor ./dnncheck.toml; "
                            "pass a dataset (e.g. `dnncheck audit sklearn:digits`) or run `dnncheck init`")
        cfg = load_config_file(found)
    elif target.endswith(".toml"):
        cfg = load_config_file(Path(target))
    else:
        cfg = AuditConfig(source=target, base_dir=cwd)
    for flag, (section, key, value) in overrides.items():
        if value is not None:
            _apply_key(cfg, section, key, value, flag)
    if not cfg.source:
        raise UserError(f"{cfg.origin}: data.source is not set; add source = \"path/to/data\" under [data]")
    return cfg


STARTER_CONFIG = '''\
# dnncheck configuration. Every key is optional except data.source.
# Run `dnncheck audit {name}`; `dnncheck explain SLUG` documents each check.

[data]
source = "sklearn:digits"      # folder | manifest.csv | table.csv | arrays.npz | sklearn:digits | python:pkg.mod:fn | hf:saved_dataset_dir
# image_size = [64, 64]        # what the model sees (H, W); default: the native size when all images share one (<= 128), else 64x64
normalize = "auto"             # auto | none | zscore | minmax | {{mean = [..], std = [..]}}
# external = "data/external"   # optional external validation set, same formats
# how_to_get = "..."           # shown when the source is missing: where the data comes from
# decode_max_side = 256        # images are decoded with their longer side at most this
# image_column = "image"       # hf: sources: the inputs' and the labels' columns (default: the first Image and ClassLabel)
# label_column = "label"
# eval_transform = "pkg.mod:t" # python: sources: audit each Dataset with this as its `transform` (no augmentation)
# workers = 0                  # processes for the data pass over image files; 0: every core
# cache = true                 # keep per-file records in $DNNCHECK_CACHE_DIR (default: the user's cache folder)
# verify_cache = false         # hash every file: decode again any whose content changed (size and times kept)

[model]
factory = "auto"               # auto (smallcnn for images, mlp for tables) | smallcnn | mlp | resnet18 | pkg.module:factory | model.ts
# weights = "runs/best.pt"     # optional state_dict, loaded with torch.load(weights_only=True)
# loss = "cross_entropy"       # cross_entropy | nll | bce | mse | pkg.module:function

[train]                        # what you train with; the probes imitate it
optimizer = "adam"             # any torch.optim optimizer: adam | adamw | sgd | rmsprop | adadelta | ... | pkg.module:factory
lr = 1e-3
batch_size = 64
# scheduler = "StepLR"         # any torch.optim.lr_scheduler class or pkg.module:factory; applied as in your loop
# metric = "balanced_accuracy" # accuracy | balanced_accuracy | f1_macro | mse | mae | r2
# [train.optimizer_args]       # the optimizer's keyword arguments, e.g. rho = 0.9 (adadelta), nesterov = true (sgd)
# [train.scheduler_args]       # the scheduler's, e.g. step_size = 1 and gamma = 0.7 (StepLR)

[probe]
budget_seconds = 300           # a guard, not a target: probes do the planned work; one the guard stops is inconclusive
device = "auto"                # auto | cpu | cuda | cuda:N
seed = 0
# epochs = 10                  # epochs of the shared probe run; default: planned from the data (about 300 steps, 5-15 epochs)
# max_train_samples = 5000     # probes train on a stratified subsample of at most this many; no check loads the pixels of more per split
# engine = "local"             # the data pass: local processes | ray (pip install "dnncheck[ray]")
# ray_address = "auto"         # with engine = "ray": an existing cluster; default: a local Ray instance

[checks]
fail_on = "fail"               # fail | warn | never: which status makes the exit code 1
ignore = []                    # check ids or slugs, e.g. ["DNC7"]
# [checks.imbalance]           # per-check thresholds: `dnncheck explain imbalance` lists them
# ratio_warn = 3.0             # imbalance ratio (largest / smallest training class) that warns
'''
