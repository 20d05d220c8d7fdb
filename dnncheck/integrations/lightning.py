"""Lightning: `DnnCheckCallback` audits the trainer's data and LightningModule before `fit` trains.

    from dnncheck.integrations.lightning import DnnCheckCallback
    trainer = L.Trainer(callbacks=[DnnCheckCallback(select=["loss-sanity", "split-leakage"], fail_on="fail")])
    trainer.fit(model, datamodule=dm)   # raises AuditFailed before the first step when the audit gates

At `on_fit_start` (after the datamodule's `setup("fit")`) it takes the Datasets behind the train and
val dataloaders (the datamodule's, else the module's own `*_dataloader` hooks, else the loaders given
to `fit`), audits them with a copy of the LightningModule as the model (its `forward` must return
logits or, with `loss="nll"`, log-probabilities) trained by the probes as the user trains it (the
optimizer class and learning rate of `configure_optimizers()`, the train loader's batch size, unless
given as arguments), logs the verdict and each check's status and numeric
metrics to every logger of the trainer under `dnncheck/`, and, when the audit's exit code would be 1
under `fail_on` and `stop_on_fail` is set, raises `AuditFailed` so training does not start. Under
several processes (DDP) the audit runs on global rank 0 and its decision is broadcast.

Optional dependency: `pip install "dnncheck[lightning]"` (the `lightning` package; `pytorch_lightning`
works too).
"""

from __future__ import annotations

import copy
from typing import Any

try:  # the unified package first, the older standalone one second
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.utilities import rank_zero_info
except ModuleNotFoundError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning.callbacks import Callback
        from pytorch_lightning.utilities import rank_zero_info
    except ModuleNotFoundError:
        raise ModuleNotFoundError("dnncheck.integrations.lightning needs Lightning: pip install "
                                  "\"dnncheck[lightning]\"") from None

from dnncheck.results import Status

STATUS_RANK = {Status.PASS: 0, Status.SKIP: 0, Status.INFO: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}


class AuditFailed(RuntimeError):
    """The audit gated (exit code 1 under fail_on): training was not started. `.result` is the AuditResult."""

    def __init__(self, result):
        gated = [c for c in result.checks if c.status in (Status.FAIL, Status.WARN, Status.ERROR)]
        lines = "; ".join(f"{c.slug} {c.status.value}: {c.summary}" for c in gated[:5])
        super().__init__(f"dnncheck audit {result.status.value} (exit code {result.exit_code}): {lines}")
        self.result = result


class DnnCheckCallback(Callback):
    """Run `dnncheck.audit` on the trainer's data and module before fit; see the module docstring.

    select/ignore/fail_on/budget/seed/loss/optimizer/lr/batch_size/...: as `dnncheck.audit`'s
    arguments (**audit_args are passed through). html: also write the HTML report there.
    stop_on_fail: raise AuditFailed when the audit gates (default True)."""

    def __init__(self, select=None, ignore=None, fail_on: str = "fail", stop_on_fail: bool = True,
                 html: str | None = None, **audit_args: Any):
        super().__init__()
        self.select, self.ignore, self.fail_on = select, ignore, fail_on
        self.stop_on_fail, self.html, self.audit_args = stop_on_fail, html, audit_args
        self.result = None  # the AuditResult, after on_fit_start

    def on_fit_start(self, trainer, pl_module) -> None:
        gated = None
        if trainer.is_global_zero:
            self.result = self._audit(trainer, pl_module)
            self._log(trainer, self.result)
            gated = self.result.exit_code != 0
        gated = trainer.strategy.broadcast(gated, src=0)
        if gated and self.stop_on_fail:
            if self.result is not None:
                raise AuditFailed(self.result)
            raise RuntimeError("dnncheck: the audit on global rank 0 gated; training was not started")

    def _audit(self, trainer, pl_module):
        import dnncheck

        splits = training_splits(trainer, pl_module)
        setup = {**training_setup(trainer, pl_module), **self.audit_args}  # what the user passed wins
        result = dnncheck.audit(splits, model=_detached_copy_factory(pl_module), select=self.select,
                                ignore=self.ignore, fail_on=self.fail_on, **setup)
        if self.html:
            result.to_html(self.html)
        return result

    @staticmethod
    def _log(trainer, result) -> None:
        for check in result.checks:
            rank_zero_info(f"dnncheck {check.id} {check.slug}: {check.status.value}: {check.summary}")
        rank_zero_info(f"dnncheck: {result.status.value} (exit code {result.exit_code})")
        metrics = audit_metrics(result)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)
            logger.save()


def audit_metrics(result) -> dict[str, float]:
    """The audit as numbers a logger takes: the overall status and each check's (0 pass or skip, 1 warn,
    2 fail, 3 error), the exit code, and each check's finite numeric metrics."""
    import math

    out = {"dnncheck/status": float(STATUS_RANK[result.status]), "dnncheck/exit_code": float(result.exit_code)}
    for check in result.checks:
        out[f"dnncheck/{check.slug}/status"] = float(STATUS_RANK[check.status])
        for name, value in check.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"dnncheck/{check.slug}/{name}"] = float(value)
    return out


def training_setup(trainer, pl_module) -> dict:
    """The probes imitate the user's training: the optimizer class and learning rate that
    `configure_optimizers()` returns (its first optimizer; a torch.optim class only) and the train
    loader's batch size. Anything it cannot tell is left to dnncheck's defaults."""
    import torch

    setup = {}
    loader = _first_loader(_sources(trainer, pl_module), "train_dataloader") or _given_train_loader(trainer)
    if isinstance(getattr(loader, "batch_size", None), int):
        setup["batch_size"] = loader.batch_size
    try:
        configured = pl_module.configure_optimizers()
    except Exception:  # a configure_optimizers that needs more of the trainer than on_fit_start has
        return setup
    optimizer = _first_optimizer(configured)
    if isinstance(optimizer, torch.optim.Optimizer) and type(optimizer).__module__.startswith("torch.optim"):
        setup["optimizer"] = type(optimizer).__name__
        setup["lr"] = float(optimizer.param_groups[0]["lr"])
    return setup


def _first_optimizer(configured):
    """configure_optimizers() may return an optimizer, a list or tuple (of optimizers, or (optimizers,
    schedulers)), a dict with "optimizer", or a list of such dicts."""
    if isinstance(configured, dict):
        return configured.get("optimizer")
    if isinstance(configured, (list, tuple)) and configured:
        return _first_optimizer(configured[0])
    return configured


def training_splits(trainer, pl_module) -> dict:
    """{"train": Dataset, "val": Dataset (when there is one)} behind the dataloaders fit will use."""
    sources = _sources(trainer, pl_module)
    splits = {}
    for split, hook in (("train", "train_dataloader"), ("val", "val_dataloader")):
        loader = _first_loader(sources, hook)
        if loader is not None:
            splits[split] = _dataset_of(loader, split)
    if "train" not in splits:
        loader = _given_train_loader(trainer)
        if loader is not None:
            splits["train"] = _dataset_of(loader, "train")
    if "train" not in splits:
        from dnncheck.errors import UserError

        raise UserError("DnnCheckCallback: found no train dataloader (neither a datamodule's nor the "
                        "LightningModule's train_dataloader, nor one given to fit)")
    return splits


def _sources(trainer, pl_module) -> list:
    """Where the loaders come from, in Lightning's order: the datamodule, then the module itself."""
    datamodule = getattr(trainer, "datamodule", None)
    return ([datamodule] if datamodule is not None else []) + [pl_module]


def _first_loader(sources: list, hook: str):
    return next((loader for loader in (_loader(source, hook) for source in sources) if loader is not None), None)


def _loader(source, hook: str):
    method = getattr(source, hook, None)
    if method is None:
        return None
    try:
        loader = method()
    except NotImplementedError:  # the hook's default in Lightning: not defined by the user
        return None
    except Exception as exc:  # Lightning raises MisconfigurationException for undefined hooks
        if "not implemented" in str(exc).lower() or "`" + hook in str(exc):
            return None
        raise
    if isinstance(loader, (list, tuple)):  # several val loaders: the first
        loader = loader[0] if loader else None
    if isinstance(loader, dict):
        loader = next(iter(loader.values()), None)
    return loader


def _given_train_loader(trainer):
    """The loader passed as fit(train_dataloaders=...) (Lightning keeps it in the fit loop's data source)."""
    source = getattr(getattr(trainer, "fit_loop", None), "_data_source", None)
    instance = getattr(source, "instance", None)
    if instance is None or not hasattr(instance, "dataset"):
        return None
    return instance


def _dataset_of(loader, split: str):
    from dnncheck.errors import UserError

    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__len__"):
        raise UserError(f"DnnCheckCallback: the {split} dataloader has no map-style dataset (len() and "
                        "indexing); dnncheck audits map-style Datasets")
    return dataset


def _detached_copy_factory(pl_module):
    """A factory of copies of the module without its trainer (a LightningModule refers to its Trainer,
    which deepcopy would copy with its loaders and loggers)."""
    def factory():
        saved = {name: pl_module.__dict__.get(name) for name in ("_trainer", "_fabric")}
        for name in saved:
            if name in pl_module.__dict__:
                pl_module.__dict__[name] = None
        try:
            return copy.deepcopy(pl_module)
        finally:
            for name, value in saved.items():
                if name in pl_module.__dict__:
                    pl_module.__dict__[name] = value
    return factory
