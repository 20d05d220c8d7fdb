"""The user's loss, as a callable (outputs, targets) -> scalar, the way their training applies it.

- cross_entropy: nn.CrossEntropyLoss on the raw outputs (it applies log_softmax itself);
- nll: nn.NLLLoss on the raw outputs (expects log-probabilities);
- bce: binary cross-entropy per output unit against one-hot targets (the target itself when there is
  one unit): BCELoss when the model outputs values in [0, 1], BCEWithLogitsLoss otherwise;
- mse: mean squared error, against one-hot targets for classification;
- pkg.module:fn: called as fn(outputs, targets); a class is instantiated first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dnncheck.errors import UserError
from dnncheck.importing import import_object


DEFAULT_LOSSES = {"classification": "cross_entropy", "segmentation": "cross_entropy", "multilabel": "bce",
                  "regression": "mse"}


def resolve_loss_name(name: str | None, task: str) -> str:
    return name or DEFAULT_LOSSES[task]


BUILTIN_LOSSES = ("cross_entropy", "nll", "bce", "mse")


def load_custom_loss(name: str, search_dirs=()):
    """The callable behind a `pkg.module:fn` loss spec (a class is instantiated first): imported
    before any check runs, so that a bad spec is exit 2 before work starts."""
    fn = import_object(name, "loss", search_dirs)
    if isinstance(fn, type):
        try:
            fn = fn()
        except Exception as exc:
            raise UserError(f"loss {name!r}: instantiating {fn.__name__}() raised {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise UserError(f"loss {name!r} is not callable; name a function or a class with __call__")
    return fn


def make_loss(name: str, task: str, outputs_in_unit_range: bool, custom=None):
    """The loss as a callable; `custom` is load_custom_loss(name) when `name` is not built in."""
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out.float(), y)
    if name == "nll":
        return lambda out, y: F.nll_loss(out.float(), y)
    if name == "bce":
        def bce(out, y):
            target = _targets_like(out, y, task)
            if outputs_in_unit_range:
                return F.binary_cross_entropy(out.float().clamp(0, 1), target)
            return F.binary_cross_entropy_with_logits(out.float(), target)
        return bce
    if name == "mse":
        return lambda out, y: F.mse_loss(out.float().reshape(len(y), -1), _targets_like(out, y, task).reshape(len(y), -1))
    if custom is None:
        raise ValueError(f"loss {name!r} is not built in: pass load_custom_loss({name!r})")
    return custom


def _targets_like(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multilabel" or (task == "segmentation" and out.ndim == 4):
        # one 0/1 target per label; per pixel and class for a segmentation output (N,C,H,W)
        return y.float() if task == "multilabel" else F.one_hot(y.long(), out.shape[1]).permute(0, 3, 1, 2).float()
    out = out.reshape(len(y), -1)
    if task == "regression" or out.shape[1] == 1:
        return y.float().reshape(out.shape)
    return F.one_hot(y.long(), out.shape[1]).float()


def expected_initial_loss(num_classes: int) -> float:
    """Cross-entropy of a uniform prediction over C classes: ln C (the usual sanity value)."""
    return math.log(num_classes)


def bce_over_softmax_initial_loss(num_classes: int) -> float:
    """BCE over a C-way softmax at init: p = 1/C for every unit against one-hot targets, averaged
    over units: -[(1/C) ln(1/C) + (1 - 1/C) ln(1 - 1/C)] (0.325 for C = 10)."""
    p = 1.0 / num_classes
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))
