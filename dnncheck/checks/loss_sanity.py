"""DNC4 loss-sanity: labels fit the output units, the loss fits the output, the initial loss is
what it should be, and the probe's loss is finite and falls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dnncheck.checks.base import (ALL_TASKS, FACTOR, SCALE, SHARE, Check, Finding, ProbeGap, Range, Status, Verdict,
                                  headline, serious, verdict)
from dnncheck.checks.task_losses import initial_bce_findings, multilabel_findings, segmentation_findings
from dnncheck.errors import ProbeUnavailable

MAX_LISTED = 20
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
TASK_METRICS = ("iou", "dice", "average_precision")  # segmentation (IoU, Dice) and multilabel (average precision)
INITIAL_LOSS_SAMPLES = 512
MIXING_HALF = 16  # samples per batch in the batch-mixing test (only sample 0's outputs are compared)


class LossSanity(Check):
    """Labels, outputs and loss agree; the loss starts where it should and falls.

    What it checks
        (1) Labels lie within the model's output units (a model with fewer outputs than classes
        can never predict the rest). (2) The loss matches what the model outputs: probabilities
        from a softmax inside the model fed to CrossEntropyLoss (which applies log_softmax again,
        squashing gradients); binary cross-entropy over a C-way softmax; sigmoid outputs with a
        multi-class loss; NLLLoss on outputs that are not log-probabilities; regression targets
        outside the output activation's range; a classification metric on a regression target.
        (3) The initial loss of a freshly initialised model against ln C (metrics `initial_loss`,
        `expected_initial_loss`). (4) The probe's loss curve is finite and falls.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 4: "check the loss function and the
        targets". A mismatched loss still trains, just badly, and nothing crashes. At
        initialisation a C-way classifier predicts about uniformly, so cross-entropy starts
        near ln C (2.30 for C = 10); BCE over a 10-way softmax starts near
        -[(1/C)ln(1/C) + (1-1/C)ln(1-1/C)] = 0.325 instead, a tell-tale of the wrong loss.
        Karpathy's recipe: "verify loss @ init".

    How it is computed
        The model is built fresh (seeded) and run on up to 512 training inputs as the model sees
        them; the outputs are classified as logits, probabilities (rows sum to 1),
        log-probabilities or sigmoid values, and the last module is inspected for a softmax,
        log-softmax, sigmoid or tanh. The user's loss is evaluated on those outputs. The shared
        probe run supplies the loss curve: non-finite values fail; a mean loss over the last
        tenth of steps above `min_fall_ratio` times the initial loss warns.

    How to fix
        Return logits from the model and use CrossEntropyLoss (or LogSoftmax + NLLLoss); use
        BCEWithLogitsLoss only for binary or multi-label targets; make the last layer's width
        equal the number of classes; match a bounded output activation to the target's range
        (or use none for regression); if the initial loss is far from ln C, look at the last
        layer's initialisation and bias.
    """

    id = "DNC4"
    slug = "loss-sanity"
    item = 4
    title = "Loss and target sanity"
    needs = "data, model, probe run"
    tasks = ALL_TASKS
    thresholds = {
        "initial_loss_tolerance": (0.5, "warn when |initial - ln C| exceeds this fraction of ln C (cross-entropy/NLL)"),
        "min_fall_ratio": (0.9, "warn when the probe's final loss is above this fraction of its initial loss"),
        "imbalance_ratio_for_metric": (3.0, "warn about plain accuracy as the metric at this imbalance ratio"),
        "target_rms_warn": (10.0, "regression: warn when the targets' root mean square exceeds this (unscaled target)"),
    }
    ranges = {
        "initial_loss_tolerance": Range(0.0, 100.0),
        "min_fall_ratio": SHARE,
        "imbalance_ratio_for_metric": FACTOR,
        "target_rms_warn": SCALE,
    }

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx) -> "LossSanityMeasurement":
        from dnncheck.models.introspect import describe_model_outputs, final_activation
        from dnncheck.probes.train import dense_rows, forward_all

        ds = ctx.dataset
        model = ctx.fresh_model()
        rows = INITIAL_LOSS_SAMPLES
        if ds.task == "segmentation":  # N,C,H,W scores: as many masks as keep them bounded
            rows = dense_rows(len(ds.classes) * int(np.prod(ds.image_size)), rows)
        x = ctx.inputs("train")[:rows]
        y = ctx.targets("train")[:rows]
        # train mode in batches of the training batch size: BatchNorm uses batch statistics, as in
        # the first step (512 photos at 224 px in one forward held ~3 GB of activations)
        out = forward_all(model, x, "cpu", batch=ctx.cfg.batch_size, train=True)
        model.train()
        initial, loss_error = _initial_loss(ctx.loss_fn, out, y)
        mixing = _batch_mixing(model, x[:2 * MIXING_HALF])
        train = ds.splits["train"]
        curve, gap = None, None
        try:
            run = ctx.fit_probe()
            curve = ProbeLossCurve(tuple(run.step_loss), run.steps, len(run.epochs), run.seconds, run.initial_loss,
                                   run.compact)
        except ProbeUnavailable as exc:
            gap = ProbeGap.of(exc)
        layout = None
        if ds.task in ("segmentation", "multilabel"):
            from dnncheck.checks.task_losses import output_layout

            layout = output_layout(out, y.shape[1:])
        return LossSanityMeasurement(ds.task, ctx.loss_name, tuple(ds.classes), describe_model_outputs(model, x, out),
                                     final_activation(model), any(True for _ in model.parameters()), train.y,
                                     tuple(train.ids), initial, loss_error, ctx.metric, curve, gap, mixing, layout,
                                     _largest_share(ctx))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "LossSanityMeasurement", t) -> Verdict:
        from dnncheck.probes.losses import expected_initial_loss

        info = m.outputs
        metrics = {"loss": m.loss, "output_units": info.units, "output_kind": info.kind, "final_activation": m.head}
        findings = []
        if not m.has_parameters:
            # outputs of a model without parameters say nothing about its head: no output-kind diagnosis
            findings.append(Finding(Status.FAIL, "the model has no parameters: nothing can be trained (its forward "
                                    "ignores any layers, or they were never registered as submodules)",
                                    headline="the model has no parameters"))
        elif m.task == "classification":
            findings += _classification_findings(m)
        elif m.task == "segmentation":
            findings += segmentation_findings(m.layout, len(m.classes), m.loss)
        elif m.task == "multilabel":
            findings += multilabel_findings(m.layout, len(m.classes), m.loss, m.head)
        else:
            findings += _regression_findings(m, t)
        if m.layout is not None:
            metrics["output_shape"] = list(m.layout.shape)
        if m.task in ("classification", "segmentation"):
            metrics["expected_initial_loss"] = round(expected_initial_loss(len(m.classes)), 4)
        elif m.task == "multilabel":
            metrics["expected_initial_loss"] = round(math.log(2), 4)
        else:
            # a fresh regressor outputs about 0, so MSE starts near mean(y^2)
            metrics["expected_initial_loss"] = round(float(np.mean(m.train_y.astype(float) ** 2)), 4)
        metrics["initial_loss"] = None if m.initial_loss is None else round(m.initial_loss, 4)
        problem = _initial_loss_problem(m)
        if problem:
            findings.append(problem)
        elif m.task in ("classification", "segmentation") and m.loss in ("cross_entropy", "nll") and not serious(findings):
            findings += _initial_loss_findings(m.initial_loss, metrics["expected_initial_loss"], t)
        elif m.task == "multilabel" and m.loss == "bce" and not serious(findings):
            findings += initial_bce_findings(m.initial_loss, t.initial_loss_tolerance)
        findings += _batch_mixing_findings(m, metrics)
        findings += _metric_findings(m, t)
        curve_metrics, curve_findings = _curve_findings(m, t)
        metrics.update(curve_metrics)
        findings += curve_findings
        return Verdict(verdict(findings), _summary(findings, metrics), tuple(findings), metrics, _remedy(findings))


@dataclass(frozen=True)
class ProbeLossCurve:
    step_loss: tuple[float, ...]
    steps: int
    epochs: int
    seconds: float
    initial_loss: float  # before the first step, on the first batch
    compact: bool = False  # a compact probe's few steps: not falling much is expected, not a defect


@dataclass(frozen=True)
class LossSanityMeasurement:
    task: str
    loss: str  # the loss's name or pkg.module:fn
    classes: tuple[str, ...]
    outputs: object  # models.introspect.OutputInfo of a fresh model on training inputs
    head: str | None  # the model's final activation module, if any
    has_parameters: bool
    train_y: np.ndarray
    train_ids: tuple[str, ...]
    initial_loss: float | None
    initial_loss_error: str | None  # the exception computing the loss raised, if it did
    metric: str | None  # train.metric as configured
    curve: ProbeLossCurve | None = None
    probe_gap: ProbeGap | None = None
    batch_mixing: float | None = None  # relative change of sample 0's outputs when the rest of its batch changes
    layout: object = None  # segmentation/multilabel: checks.task_losses.OutputLayout of the fresh model's outputs
    largest_share: tuple | None = None  # segmentation: (class, share of training pixels) of the commonest class


# -- classification -----------------------------------------------------------------------------
def _classification_findings(m: LossSanityMeasurement):
    info, loss, head = m.outputs, m.loss, m.head
    c = len(m.classes)
    findings = []
    binary_single_unit = info.units == 1 and c == 2 and loss in ("bce", "mse")
    if info.units < c and not binary_single_unit:
        beyond = np.flatnonzero(m.train_y >= info.units)
        findings.append(Finding(
            Status.FAIL, f"the model has {info.units} output unit(s) but the data has {c} classes: "
            f"{len(beyond)} training samples have labels {info.units}..{c - 1} that no output can predict",
            samples=tuple(m.train_ids[i] for i in beyond[:MAX_LISTED]),
            evidence={"output_units": info.units, "classes": c, "unreachable_classes": list(m.classes[info.units:])},
            headline=f"the model has {info.units} output unit(s) but the data has {c} classes"))
    elif info.units > c:
        findings.append(Finding(Status.WARN, f"the model has {info.units} output units for {c} classes; "
                                f"units {c}..{info.units - 1} are never a target",
                                evidence={"output_units": info.units, "classes": c}))
    if head in ("softmax_over_batch", "log_softmax_over_batch"):
        kind = head.replace("_over_batch", "").replace("_", "-")
        head_text = f"the model's final {kind} normalises over dimension 0, the batch"
        findings.append(Finding(Status.FAIL, f"{head_text}: each class's scores are shared between the samples of a "
                                "batch and predictions change with the batch; use dim=1 (or drop it and train on "
                                "logits with cross_entropy)", evidence={"final_activation": head}, headline=head_text))
        return findings
    if head == "relu":
        head_text = "the model ends in a ReLU: its outputs cannot be negative"
        findings.append(Finding(Status.FAIL, f"{head_text}, so the loss cannot push wrong classes below zero and an "
                                "output unit that goes dead never recovers; remove the final activation and train on "
                                "logits", evidence={"final_activation": head}, headline=head_text))
        return findings
    probabilities = info.kind == "probabilities" or head == "softmax"
    sigmoid = head == "sigmoid" or (info.kind == "sigmoid" and info.units > 1)
    log_probs = info.kind == "log_probabilities" or head == "log_softmax"
    evidence = {"output_kind": info.kind, "final_activation": head}
    if loss == "cross_entropy" and probabilities:
        findings.append(Finding(Status.FAIL, "the model outputs probabilities (a softmax inside the model) and "
                                "CrossEntropyLoss applies log_softmax again: gradients shrink and training stalls",
                                evidence=evidence, headline="the model outputs probabilities (a softmax inside the "
                                                            "model) and CrossEntropyLoss applies log_softmax again"))
    elif loss == "cross_entropy" and sigmoid:
        findings.append(Finding(Status.FAIL, "sigmoid outputs fed to a multi-class cross-entropy: the loss treats "
                                "values in [0, 1] as logits and cannot express confidence", evidence=evidence,
                                headline="sigmoid outputs fed to a multi-class cross-entropy"))
    elif loss == "nll" and not log_probs:
        findings.append(Finding(Status.FAIL, f"NLLLoss expects log-probabilities but the model outputs {info.kind}: "
                                "add LogSoftmax or use cross_entropy on logits", evidence={"output_kind": info.kind}))
    elif loss == "bce" and c > 2:
        if probabilities:
            findings.append(Finding(Status.FAIL, f"binary cross-entropy over a {c}-way softmax: each unit is scored as "
                                    "an independent yes/no although the classes are exclusive; use cross_entropy",
                                    evidence={"output_kind": info.kind},
                                    headline=f"binary cross-entropy over a {c}-way softmax"))
        else:
            findings.append(Finding(Status.WARN, f"binary cross-entropy on {c} single-label classes treats them as "
                                    "independent (multi-label); use cross_entropy unless samples can have several labels",
                                    headline=f"binary cross-entropy on {c} single-label classes treats them as "
                                             "independent (multi-label)"))
    elif loss == "mse":
        findings.append(Finding(Status.WARN, "mean squared error on class labels: it trains slowly and is poorly "
                                "calibrated for classification; use cross_entropy",
                                headline="mean squared error on class labels"))
    return findings


def _initial_loss_findings(initial, expected, t):
    if abs(initial - expected) <= t.initial_loss_tolerance * expected:
        return []
    head = f"initial loss {initial:.3f} is far from ln C = {expected:.3f}"
    return [Finding(Status.WARN, f"{head}: a fresh model should predict about uniformly; check the last layer's "
                    "initialisation and bias", evidence={"initial_loss": initial, "expected_initial_loss": expected},
                    headline=head)]


# -- regression ---------------------------------------------------------------------------------
BOUNDED_HEADS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softmax": (0.0, 1.0)}  # output ranges


def _regression_findings(m: LossSanityMeasurement, t):
    info, loss, head, y = m.outputs, m.loss, m.head, m.train_y
    findings = []
    rms = float(np.sqrt(np.mean(y.astype(float) ** 2)))
    if loss == "mse" and rms > t.target_rms_warn:
        # a fresh regressor outputs about 0: MSE starts near mean(y^2) and its gradients scale with it
        head_text = f"the regression target is not scaled (root mean square {rms:.4g}, mean {y.mean():.4g}, std {y.std():.4g})"
        findings.append(Finding(Status.WARN, f"{head_text}: MSE starts near {rms ** 2:.3g} and its gradients dwarf a "
                                "sensible learning rate; standardise the target on train (subtract its mean, divide by "
                                "its std) and invert the scaling for reporting",
                                evidence={"target_rms": rms, "target_mean": float(y.mean()), "target_std": float(y.std())},
                                headline=head_text))
    if info.units != 1:
        findings.append(Finding(Status.FAIL, f"the model has {info.units} output units for a scalar regression target",
                                evidence={"output_units": info.units}))
    if loss in ("cross_entropy", "nll") or (loss == "bce" and (y.min() < 0 or y.max() > 1)):
        findings.append(Finding(Status.FAIL, f"{loss} is a classification loss but the target is continuous; use mse",
                                evidence={"loss": loss}))
    if head in BOUNDED_HEADS:
        lo, hi = BOUNDED_HEADS[head]
        outside = np.flatnonzero((y < lo) | (y > hi))
        if len(outside):
            findings.append(Finding(Status.FAIL, f"the output ends in {head} (range [{lo:g}, {hi:g}]) but "
                                    f"{len(outside)} training targets lie outside it (target range "
                                    f"[{y.min():.4g}, {y.max():.4g}])",
                                    samples=tuple(m.train_ids[i] for i in outside[:MAX_LISTED])))
    return findings


def _metric_findings(m: LossSanityMeasurement, t):
    metric = m.metric
    if metric is None:
        return []
    if m.task == "regression" and metric in CLASSIFICATION_METRICS:
        return [Finding(Status.FAIL, f"train.metric = {metric} on a continuous target; use mse, mae or r2")]
    if m.task == "classification" and metric in ("mse", "mae", "r2"):
        return [Finding(Status.WARN, f"train.metric = {metric} on class labels; use balanced_accuracy or f1_macro")]
    if m.task in ("segmentation", "multilabel"):
        return _task_metric_findings(m, metric)
    if metric in TASK_METRICS:
        return [Finding(Status.WARN, f"train.metric = {metric} is a segmentation/multi-label metric but the target is "
                        f"{'continuous' if m.task == 'regression' else 'one class per sample'}")]
    if m.task == "classification" and metric == "accuracy":
        counts = np.bincount(m.train_y, minlength=len(m.classes))
        counts = counts[counts > 0]
        ratio = counts.max() / counts.min()
        if ratio >= t.imbalance_ratio_for_metric:
            head = f"train.metric = accuracy with imbalance ratio {ratio:.1f}"
            return [Finding(Status.WARN, f"{head}: accuracy rewards the majority class; use balanced_accuracy or "
                            "f1_macro", headline=head)]
    return []


def _task_metric_findings(m: LossSanityMeasurement, metric: str) -> list:
    if m.task == "segmentation" and metric in ("accuracy", "balanced_accuracy") and m.largest_share:
        name, share = m.largest_share
        if share >= 0.5:
            head = f"train.metric = {metric} on masks where class {name} covers {share:.0%} of the pixels"
            return [Finding(Status.WARN, f"{head}: predicting {name} everywhere already scores {share:.2f}; use "
                            "per-class IoU (Jaccard) or Dice", headline=head)]
    if m.task == "multilabel" and metric in ("accuracy", "balanced_accuracy", "f1_macro"):
        return [Finding(Status.WARN, f"train.metric = {metric} on multi-label targets: single-label metrics count a "
                        "sample right only when one class is; use per-label average precision or F1 per label")]
    if metric in ("mse", "mae", "r2"):
        return [Finding(Status.WARN, f"train.metric = {metric} on {m.task} targets; use IoU/Dice (segmentation) or "
                        "average precision (multilabel)")]
    return []


def _largest_share(ctx) -> tuple | None:
    """Segmentation: (the commonest class in the training pixels, its share)."""
    if ctx.dataset.task != "segmentation":
        return None
    from dnncheck.masks import train_pixel_counts

    counts = train_pixel_counts(ctx)
    top = int(counts.argmax())
    return ctx.dataset.classes[top], float(counts[top] / max(1, counts.sum()))


# -- the probe's curve --------------------------------------------------------------------------
def _curve_findings(m: LossSanityMeasurement, t):
    if m.probe_gap is not None:
        return {}, [m.probe_gap.finding("the probe could not train with this model and loss", Status.FAIL)]
    run = m.curve
    losses = np.array(run.step_loss, dtype=float)
    metrics = {"probe_steps": run.steps, "probe_epochs": run.epochs, "probe_seconds": round(run.seconds, 2)}
    if len(losses) == 0:
        return metrics, [Finding(Status.WARN, "the probe made no training step")]
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        head = f"the probe's loss became {losses[bad[0]]} at step {bad[0] + 1}"
        return metrics, [Finding(Status.FAIL, f"{head}: lower the learning rate, check inputs for NaN/Inf and the loss "
                                 "for log(0)", evidence={"step": int(bad[0]) + 1}, headline=head)]
    tail = max(1, len(losses) // 10)
    start = run.initial_loss if math.isfinite(run.initial_loss) else float(np.mean(losses[:tail]))
    end = float(np.mean(losses[-tail:]))
    metrics.update(probe_initial_loss=round(start, 4), probe_final_loss=round(end, 4))
    if end > t.min_fall_ratio * start:
        head = f"the probe's loss did not fall: {start:.4g} at the start, {end:.4g} after {run.steps} steps"
        if run.compact:  # a dozen steps of a costly model from scratch; the one-batch test is the evidence
            return metrics, [Finding(Status.INFO, f"{head} of the compact probe: too few to expect a fall on the whole "
                                     "training set; whether the loss can fall is the one-batch test's (see overfit)")]
        return metrics, [Finding(Status.WARN, f"{head} (frozen or detached parameters, a zero or tiny learning "
                                 "rate, or a loss that does not reach the outputs)",
                                 evidence={"initial": start, "final": end}, headline=head)]
    return metrics, []


# -- text ---------------------------------------------------------------------------------------
def _summary(findings, metrics) -> str:
    if serious(findings):
        return headline(findings)
    text = f"{metrics['loss']} on {metrics['output_kind']}"
    if metrics.get("initial_loss") is not None:
        text += f"; initial loss {metrics['initial_loss']:.3f} (expected {metrics['expected_initial_loss']:.3f})"
    if "probe_final_loss" in metrics:
        text += f", falls to {metrics['probe_final_loss']:.3f} in the probe"
    return text


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Have the model return logits and train with CrossEntropyLoss (or LogSoftmax + NLLLoss); give the last "
            "layer one unit per class; use BCEWithLogitsLoss only for binary or multi-label targets; for regression "
            "use no bounded output activation unless the target lies in its range.")


# Float round-off between batch sizes stays far below this; a reshape or softmax that mixes the batch
# changes a sample's outputs by orders of magnitude more. A tolerance, not a verdict knob.
BATCH_MIXING_TOL = 1e-3


def _batch_mixing(model, x) -> float | None:
    """How much sample 0's outputs change (relative) when the other samples of its batch are replaced,
    in eval mode (BatchNorm on running statistics, no dropout): 0 for any per-sample model."""
    import torch

    if len(x) < 4:
        return None
    half = len(x) // 2
    first, second = x[:half], torch.cat([x[:1], x[half:half + half - 1]])
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = model(first)[0].float(), model(second)[0].float()
    except Exception:  # a model this cannot run is diagnosed by the other findings
        return None
    finally:
        model.train(was)
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max() / (a.abs().max() + 1e-6))


def _batch_mixing_findings(m: LossSanityMeasurement, metrics):
    if m.batch_mixing is None:
        return []
    metrics["batch_mixing"] = round(m.batch_mixing, 6) if np.isfinite(m.batch_mixing) else None
    if not m.batch_mixing > BATCH_MIXING_TOL:
        return []
    head = "a sample's outputs change when the other samples in its batch change (in eval mode)"
    return [Finding(Status.FAIL, f"{head}: the forward mixes the batch (a view/reshape across dimension 0, a "
                    "softmax or normalisation over the batch); predictions then depend on batch-mates",
                    evidence={"relative_change": metrics["batch_mixing"]}, headline=head)]


def _initial_loss(loss_fn, out, y):
    """(the loss of the fresh model's outputs, or None with the error that computing it raised)."""
    try:
        return float(loss_fn(out, y)), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _initial_loss_problem(m: LossSanityMeasurement) -> Finding | None:
    if m.initial_loss_error:
        head = "the loss cannot be computed on the model's outputs"
        return Finding(Status.FAIL, f"{head}: {m.initial_loss_error}", headline=head)
    if not math.isfinite(m.initial_loss):
        return Finding(Status.FAIL, f"the initial loss is {m.initial_loss}: the loss or the inputs produce NaN/Inf")
    return None
