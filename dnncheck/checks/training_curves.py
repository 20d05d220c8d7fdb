"""DNC13 training-curves: diagnose a loss/metric history (the probe's in an audit, the user's with
`dnncheck curves`)."""

from __future__ import annotations

from dataclasses import dataclass

from dnncheck.figures import Lines
from dnncheck.checks.base import (ALL_TASKS, FACTOR, SHARE, Check, ProbeGap, Range, Status, Verdict, headline,
                                  inconclusive, probe_missing, serious, verdict)
from dnncheck.errors import ProbeUnavailable


NO_PROBE = "no probe run to read curves from"


class TrainingCurves(Check):
    """What the loss and accuracy curves say about the run.

    What it checks
        Overfitting onset (the epoch of the lowest validation loss and how far it rose since while
        training loss kept falling, the final train/validation gap), divergence, NaN/Inf, a flat
        validation loss, oscillation, accuracy stuck near chance, and a loss scale that betrays the
        wrong loss when the number of classes is known (binary cross-entropy over a 10-way
        softmax starts near 0.325, not ln 10 = 2.30).

    Why it matters
        Ponti et al. (SIBGRAPI 2021), section II-D: the gap between training and validation curves
        is how overfitting shows, and the epoch where validation loss bottoms is where to stop
        (early stopping). Oscillating or exploding losses point at the learning rate; a curve that
        never leaves chance points at wiring, labels or inputs.

    How it is computed
        On per-epoch values, epochs 1-based. Overfitting: warn when validation loss stands
        `overfit_rise_warn` (fail: `overfit_rise_fail`) above its minimum in each of the last
        `overfit_min_epochs` epochs while training loss is below its value at that epoch. A rise
        in the last epoch alone is a wobble: pytorch/examples' MNIST net on 5,000 digits rose 15%
        in the sixth and last epoch of a probe and reaches 99% when trained on. Divergence: last training loss above `divergence_factor`
        times both the first and the lowest. Plateau: validation loss range below
        `plateau_change` of its mean over the whole run. Oscillation: at least
        `oscillation_flips` of consecutive changes reverse sign with a median swing of
        `oscillation_amplitude` of the loss. No learning: the best accuracy of the last fifth of
        epochs within `chance_margin` of 1/C while training loss fell less than `learning_drop`
        (fail); if it fell more, the model fits train but does not generalise (warn; info after a
        compact probe of a costly model, a few steps from scratch). In an audit it reads the shared probe run; use
        `dnncheck curves HISTORY` for your own logs.

    How to fix
        Stop at the best epoch (early stopping), add regularisation or data; lower the learning
        rate for divergence or oscillation; for a flat or chance-level run check the loss, labels,
        normalisation and that parameters are trainable.
    """

    id = "DNC13"
    slug = "training-curves"
    item = None
    title = "Training curves"
    needs = "probe run (audit) or a history file (curves)"
    tasks = ALL_TASKS
    thresholds = {
        "overfit_rise_warn": (0.1, "validation loss rise since its best at which to warn"),
        "overfit_rise_fail": (0.5, "validation loss rise since its best at which to fail"),
        "overfit_min_epochs": (2, "the rise must hold in each of this many final epochs (a one-epoch rise at the end is a wobble)"),
        "divergence_factor": (1.5, "last training loss above this times the first and the lowest: divergence"),
        "plateau_change": (0.01, "validation loss range below this share of its mean: flat"),
        "oscillation_flips": (0.6, "share of epoch-to-epoch changes that reverse direction"),
        "oscillation_amplitude": (0.1, "median swing relative to the loss for oscillation"),
        "loss_scale_tolerance": (0.25, "first loss within this relative distance of BCE-over-softmax's value"),
        "chance_margin": (0.05, "accuracy within this of chance is no learning"),
        "learning_drop": (0.2, "training loss falling by this share means the model learns its training data"),
    }
    ranges = {
        "overfit_rise_warn": Range(0.0, 1000.0),
        "overfit_rise_fail": Range(0.0, 1000.0),
        "overfit_min_epochs": Range(1, 1000),
        "divergence_factor": FACTOR,
        "plateau_change": SHARE,
        "oscillation_flips": SHARE,
        "oscillation_amplitude": Range(0.0, 100.0),
        "loss_scale_tolerance": Range(0.0, 100.0),
        "chance_margin": SHARE,
        "learning_drop": SHARE,
    }
    ordered = (("overfit_rise_warn", "overfit_rise_fail"),)

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}}

    def measure(self, ctx):
        try:
            run = ctx.fit_probe()
        except ProbeUnavailable as exc:
            return probe_missing(exc, NO_PROBE, lambda gap: TrainingCurvesMeasurement({}, None, "the probe", gap))
        c = run.curves()
        history = {"loss": c["train_loss"]}
        if any(v is not None for v in c["val_loss"]):
            history["val_loss"] = c["val_loss"]
        classification = ctx.dataset.task == "classification"
        if classification and any(v is not None for v in c["val_acc"]):
            history["val_acc"] = c["val_acc"]
        classes = ctx.dataset.num_classes if classification and ctx.loss_name == "cross_entropy" else None
        stopped = "" if run.stopped_by == "plan" else f", stopped by {run.stopped_by}"
        compact = ctx.planned("fit").compact
        return TrainingCurvesMeasurement(history, classes, f"the {'compact ' if compact else ''}probe ({run.steps} "
                                         f"steps{stopped})", compact=compact)

    @classmethod
    def judge(cls, m: "TrainingCurvesMeasurement", t) -> Verdict:
        """Also what `dnncheck curves` runs on the user's own history."""
        from dnncheck.curves import diagnose

        if m.probe_gap is not None:
            return inconclusive(m.probe_gap, NO_PROBE)
        metrics, findings = diagnose(m.history, m.num_classes, t, short=m.compact)
        metrics["history_from"] = m.origin
        status = verdict(findings)
        if serious(findings):
            summary = headline(findings)
        elif findings:  # notes only (a compact probe's): say them, not "no overfitting"
            summary = f"{metrics['epochs']} epochs of {m.origin}: {headline(findings)}"
        else:
            summary = f"{metrics['epochs']} epochs of {m.origin}: no overfitting, divergence, plateau or oscillation"
            if "best_epoch" in metrics:
                summary += f" (best validation loss at epoch {metrics['best_epoch']})"
        remedy = "" if status is Status.PASS else (
            "Stop at the best epoch (early stopping) or regularise; lower the learning rate for divergence or "
            "oscillation; for flat or chance-level curves check the loss, labels, normalisation and trainable parameters.")
        best = {f"best val_loss (epoch {metrics['best_epoch']})": metrics["best_epoch"]} if "best_epoch" in metrics else {}
        return Verdict(status, summary, tuple(findings), metrics, remedy,
                       {"history": Lines("Training history", m.history, "epoch", "value", marks=best)} if m.history else {})


@dataclass(frozen=True)
class TrainingCurvesMeasurement:
    history: dict  # per-epoch lists: loss, and val_loss / val_acc when measured (None where missing)
    num_classes: int | None  # known with cross-entropy: the loss scale at epoch 1 is checked against ln C
    origin: str  # where the history comes from, for the summary
    probe_gap: ProbeGap | None = None
    compact: bool = False  # from a compact probe (probes/plan.py): too short to expect generalisation
