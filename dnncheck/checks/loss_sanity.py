"""DNC4 loss-sanity: labels fit the output units, the loss fits the output, the initial loss is
what it should be, and the probe's loss is finite and falls."""

from __future__ import annotations

import math

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, probe_finding, verdict
from dnncheck.errors import ProbeUnavailable

MAX_LISTED = 20
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
INITIAL_LOSS_SAMPLES = 512


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
    thresholds = {
        "initial_loss_tolerance": (0.5, "warn when |initial - ln C| exceeds this fraction of ln C (cross-entropy/NLL)"),
        "min_fall_ratio": (0.9, "warn when the probe's final loss is above this fraction of its initial loss"),
        "imbalance_ratio_for_metric": (3.0, "warn about plain accuracy as the metric at this imbalance ratio"),
    }

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}}

    def run(self, ctx):
        import torch

        from dnncheck.models.introspect import describe_outputs, final_activation
        from dnncheck.probes.losses import expected_initial_loss

        ds = ctx.dataset
        model = ctx.fresh_model()
        head = final_activation(model)
        x = ctx.inputs("train")[:INITIAL_LOSS_SAMPLES]
        y = ctx.targets("train")[:INITIAL_LOSS_SAMPLES]
        with torch.no_grad():
            out = model.train()(x)  # train mode: BatchNorm uses batch statistics, as in the first step
        info = describe_outputs(out)
        metrics = {"loss": ctx.loss_name, "output_units": info.units, "output_kind": info.kind,
                   "final_activation": head}
        findings = []
        if not any(True for _ in model.parameters()):
            # outputs of a model without parameters say nothing about its head: no output-kind diagnosis
            findings.append(Finding(Status.FAIL, "the model has no parameters: nothing can be trained (its forward "
                                    "ignores any layers, or they were never registered as submodules)"))
        elif ds.task == "classification":
            findings += self._classification_findings(ctx, info, head)
        else:
            findings += self._regression_findings(ctx, info, head)
        if ds.task == "classification":
            metrics["expected_initial_loss"] = round(expected_initial_loss(ds.num_classes), 4)
        else:
            # a fresh regressor outputs about 0, so MSE starts near mean(y^2)
            metrics["expected_initial_loss"] = round(float(np.mean(ds.splits["train"].y.astype(float) ** 2)), 4)
        initial, loss_finding = _initial_loss(ctx.loss_fn, out, y)
        metrics["initial_loss"] = None if initial is None else round(initial, 4)
        if loss_finding:
            findings.append(loss_finding)
        elif ds.task == "classification" and ctx.loss_name in ("cross_entropy", "nll"):
            findings += self._initial_loss_findings(initial, metrics["expected_initial_loss"])
        findings += self._metric_findings(ctx)
        curve_metrics, curve_findings = self._curve(ctx)
        metrics.update(curve_metrics)
        findings += curve_findings
        status = verdict(findings)
        summary = self._summary(status, findings, metrics)
        figures = {"output_sample": info.to_dict()}
        return self.result(status, summary, metrics, findings, self._remedy(findings), figures)

    # -- classification -------------------------------------------------------------------------
    def _classification_findings(self, ctx, info, head):
        ds, loss = ctx.dataset, ctx.loss_name
        c = ds.num_classes
        findings = []
        binary_single_unit = info.units == 1 and c == 2 and loss in ("bce", "mse")
        if info.units < c and not binary_single_unit:
            train = ds.splits["train"]
            beyond = np.flatnonzero(train.y >= info.units)
            findings.append(Finding(
                Status.FAIL, f"the model has {info.units} output unit(s) but the data has {c} classes: "
                f"{len(beyond)} training samples have labels {info.units}..{c - 1} that no output can predict",
                samples=tuple(train.ids[i] for i in beyond[:MAX_LISTED]),
                evidence={"output_units": info.units, "classes": c,
                          "unreachable_classes": ds.classes[info.units:]}))
        elif info.units > c:
            findings.append(Finding(Status.WARN, f"the model has {info.units} output units for {c} classes; "
                                    f"units {c}..{info.units - 1} are never a target",
                                    evidence={"output_units": info.units, "classes": c}))
        probabilities = info.kind == "probabilities" or head == "softmax"
        sigmoid = head == "sigmoid" or (info.kind == "sigmoid" and info.units > 1)
        log_probs = info.kind == "log_probabilities" or head == "log_softmax"
        if loss == "cross_entropy" and probabilities:
            findings.append(Finding(Status.FAIL, "the model outputs probabilities (a softmax inside the model) and "
                                    "CrossEntropyLoss applies log_softmax again: gradients shrink and training stalls",
                                    evidence={"output_kind": info.kind, "final_activation": head}))
        elif loss == "cross_entropy" and sigmoid:
            findings.append(Finding(Status.FAIL, "sigmoid outputs fed to a multi-class cross-entropy: the loss treats "
                                    "values in [0, 1] as logits and cannot express confidence",
                                    evidence={"output_kind": info.kind, "final_activation": head}))
        elif loss == "nll" and not log_probs:
            findings.append(Finding(Status.FAIL, f"NLLLoss expects log-probabilities but the model outputs {info.kind}: "
                                    "add LogSoftmax or use cross_entropy on logits",
                                    evidence={"output_kind": info.kind}))
        elif loss == "bce" and c > 2:
            if probabilities:
                findings.append(Finding(Status.FAIL, f"binary cross-entropy over a {c}-way softmax: each unit is scored as an "
                                        "independent yes/no although the classes are exclusive; use cross_entropy",
                                        evidence={"output_kind": info.kind}))
            else:
                findings.append(Finding(Status.WARN, f"binary cross-entropy on {c} single-label classes treats them as "
                                        "independent (multi-label); use cross_entropy unless samples can have several labels"))
        elif loss == "mse":
            findings.append(Finding(Status.WARN, "mean squared error on class labels: it trains slowly and is poorly "
                                    "calibrated for classification; use cross_entropy"))
        return findings

    def _initial_loss_findings(self, initial, expected):
        if abs(initial - expected) <= self.t["initial_loss_tolerance"] * expected:
            return []
        return [Finding(Status.WARN, f"initial loss {initial:.3f} is far from ln C = {expected:.3f}: a fresh model "
                        "should predict about uniformly; check the last layer's initialisation and bias",
                        evidence={"initial_loss": initial, "expected_initial_loss": expected})]

    # -- regression ---------------------------------------------------------------------------
    def _regression_findings(self, ctx, info, head):
        ds, loss = ctx.dataset, ctx.loss_name
        y = ds.splits["train"].y
        findings = []
        if info.units != 1:
            findings.append(Finding(Status.FAIL, f"the model has {info.units} output units for a scalar regression target",
                                    evidence={"output_units": info.units}))
        if loss in ("cross_entropy", "nll") or (loss == "bce" and (y.min() < 0 or y.max() > 1)):
            findings.append(Finding(Status.FAIL, f"{loss} is a classification loss but the target is continuous; use mse",
                                    evidence={"loss": loss}))
        ranges = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softmax": (0.0, 1.0)}
        if head in ranges:
            lo, hi = ranges[head]
            outside = np.flatnonzero((y < lo) | (y > hi))
            if len(outside):
                findings.append(Finding(Status.FAIL, f"the output ends in {head} (range [{lo:g}, {hi:g}]) but "
                                        f"{len(outside)} training targets lie outside it (target range "
                                        f"[{y.min():.4g}, {y.max():.4g}])",
                                        samples=tuple(ds.splits["train"].ids[i] for i in outside[:MAX_LISTED])))
        return findings

    def _metric_findings(self, ctx):
        ds, metric = ctx.dataset, ctx.metric
        if metric is None:
            return []
        if ds.task == "regression" and metric in CLASSIFICATION_METRICS:
            return [Finding(Status.FAIL, f"train.metric = {metric} on a continuous target; use mse, mae or r2")]
        if ds.task == "classification" and metric in ("mse", "mae", "r2"):
            return [Finding(Status.WARN, f"train.metric = {metric} on class labels; use balanced_accuracy or f1_macro")]
        if ds.task == "classification" and metric == "accuracy":
            counts = np.bincount(ds.splits["train"].y, minlength=ds.num_classes)
            counts = counts[counts > 0]
            ratio = counts.max() / counts.min()
            if ratio >= self.t["imbalance_ratio_for_metric"]:
                return [Finding(Status.WARN, f"train.metric = accuracy with imbalance ratio {ratio:.1f}: accuracy "
                                "rewards the majority class; use balanced_accuracy or f1_macro")]
        return []

    # -- the probe's curve --------------------------------------------------------------------
    def _curve(self, ctx):
        try:
            run = ctx.fit_probe()
        except ProbeUnavailable as exc:
            return {}, [probe_finding(exc, "the probe could not train with this model and loss", Status.FAIL)]
        losses = np.array(run.step_loss, dtype=float)
        metrics = {"probe_steps": run.steps, "probe_epochs": len(run.epochs), "probe_seconds": round(run.seconds, 2)}
        if len(losses) == 0:
            return metrics, [Finding(Status.WARN, "the probe made no training step")]
        bad = np.flatnonzero(~np.isfinite(losses))
        if len(bad):
            return metrics, [Finding(Status.FAIL, f"the probe's loss became {losses[bad[0]]} at step {bad[0] + 1}: "
                                     "lower the learning rate, check inputs for NaN/Inf and the loss for log(0)",
                                     evidence={"step": int(bad[0]) + 1})]
        tail = max(1, len(losses) // 10)
        start = run.initial_loss if math.isfinite(run.initial_loss) else float(np.mean(losses[:tail]))
        end = float(np.mean(losses[-tail:]))
        metrics.update(probe_initial_loss=round(start, 4), probe_final_loss=round(end, 4))
        if end > self.t["min_fall_ratio"] * start:
            return metrics, [Finding(Status.WARN, f"the probe's loss did not fall: {start:.4g} at the start, {end:.4g} "
                                     f"after {run.steps} steps (frozen or detached parameters, a zero or tiny learning "
                                     "rate, or a loss that does not reach the outputs)",
                                     evidence={"initial": start, "final": end})]
        return metrics, []

    # -- text ---------------------------------------------------------------------------------
    @staticmethod
    def _summary(status, findings, metrics) -> str:
        if findings:
            worst = max(findings, key=lambda f: f.severity.rank)
            return worst.message.split(":")[0] if len(worst.message) > 110 else worst.message
        text = f"{metrics['loss']} on {metrics['output_kind']}"
        if metrics.get("initial_loss") is not None:
            text += f"; initial loss {metrics['initial_loss']:.3f} (expected {metrics['expected_initial_loss']:.3f})"
        if "probe_final_loss" in metrics:
            text += f", falls to {metrics['probe_final_loss']:.3f} in the probe"
        return text

    @staticmethod
    def _remedy(findings) -> str:
        if not findings:
            return ""
        return ("Have the model return logits and train with CrossEntropyLoss (or LogSoftmax + NLLLoss); give the last "
                "layer one unit per class; use BCEWithLogitsLoss only for binary or multi-label targets; for regression "
                "use no bounded output activation unless the target lies in its range.")


def _initial_loss(loss_fn, out, y):
    """(loss of the fresh model's outputs, or None with a failing finding when it cannot be computed)."""
    try:
        value = float(loss_fn(out, y))
    except Exception as exc:
        return None, Finding(Status.FAIL, f"the loss cannot be computed on the model's outputs: "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    if not math.isfinite(value):
        return value, Finding(Status.FAIL, f"the initial loss is {value}: the loss or the inputs produce NaN/Inf")
    return value, None
