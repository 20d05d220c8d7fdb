"""The catalog of checks: an explicit tuple, in id order (no registry magic, no directory scan)."""

from __future__ import annotations

from dnncheck.checks.external_validation import ExternalValidation
from dnncheck.checks.gradient_health import GradientHealth
from dnncheck.checks.imbalance import Imbalance
from dnncheck.checks.input_fidelity import InputFidelity
from dnncheck.checks.label_noise import LabelNoise
from dnncheck.checks.learning_rate import LearningRate
from dnncheck.checks.loss_sanity import LossSanity
from dnncheck.checks.normalization import Normalization
from dnncheck.checks.overfit import Overfit
from dnncheck.checks.pixel_attack import PixelAttack
from dnncheck.checks.separability import Separability
from dnncheck.checks.split_leakage import SplitLeakage
from dnncheck.checks.training_curves import TrainingCurves
from dnncheck.errors import UserError, closest

CHECKS = (InputFidelity, Normalization, LabelNoise, LossSanity, Separability, SplitLeakage, ExternalValidation,
          Overfit, Imbalance, PixelAttack, GradientHealth, LearningRate, TrainingCurves)

def lookup(key: str, origin: str = "--select"):
    """The check class for an id (DNC4, dnc4) or slug; UserError otherwise."""
    for check in CHECKS:
        if key.upper() == check.id or key.lower() == check.slug:
            return check
    names = [c.id for c in CHECKS] + [c.slug for c in CHECKS]
    raise UserError(f"{origin}: unknown check {key!r}{closest(key, names)}; `dnncheck checks` lists them")
