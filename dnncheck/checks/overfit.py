"""DNC8 overfit: the model can fit one small batch, how its train/validation gap opens, how readily
it memorises shuffled labels, and where its parameters are."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import Lines
from dnncheck.checks.base import (ALL_TASKS, SHARE, Check, Finding, ProbeGap, Range, Status, Verdict, headline,
                                  serious, verdict)
from dnncheck.errors import ProbeUnavailable

COMPACT_GAP_NOTE = "a few dozen training samples for a few epochs, too few for the gap to say how full training generalises"



class Overfit(Check):
    """Capacity and wiring: overfit one batch, watch the gap, try random labels, count parameters.

    What it checks
        (1) Whether the model can drive the loss on one small batch close to zero: if it cannot,
        something is wired wrong (frozen or detached parameters, a loss that does not reach the
        outputs) or capacity is too low. (2) From the shared probe run: the final train/validation
        accuracy gap and the epoch of the best validation loss with how far it rose since (early
        stopping advice). (3) Shuffled-label memorisation (Zhang et al., ICLR 2017): how well the
        model fits randomly permuted labels in the same number of epochs as the true ones. (4) Where the
        parameters are: per-layer counts, parameters per training sample, oversized dense layers.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), section II-D and their tips: "overfit a single batch" is the
        quickest wiring test; networks have capacity to memorise even random labels, so training
        accuracy says nothing about generalisation; two 2048-wide fully connected layers hold 4M
        parameters by themselves, far more than small datasets can constrain.

    How it is computed
        One batch of `batch_size` training samples, a fresh model, your optimizer and learning
        rate, up to `max_steps` steps: pass as soon as the loss falls below `target_ratio` of its
        initial value. Shuffled labels: a fresh model trained like the shared probe on permuted
        training labels for the epochs the plan gives it (about 100 steps, at least 2 epochs);
        memorisation ratio = its training accuracy over the true-label probe's at the same epoch. Warn when
        the memorisation ratio exceeds `memorisation_warn` or the accuracy gap exceeds `gap_warn`.
        Parameters per training sample above `params_per_sample_warn` and a dense layer above
        `dense_layer_warn` parameters are said as info for a model that generalises (a famous
        MNIST net has 1.2M parameters in one layer and reaches 99%), and warn only beside
        overfitting or memorisation evidence.

    How to fix
        If one batch cannot be fitted: check requires_grad, .detach() calls, that the loss uses the
        model's outputs, and the learning rate. If capacity dwarfs the data: shrink dense layers
        (global average pooling instead of flatten + wide FC), add regularisation and augmentation,
        use a pretrained backbone, and stop at the best validation epoch.
    """

    id = "DNC8"
    slug = "overfit"
    item = None
    title = "Overfit probe"
    needs = "data, model, probe runs (3)"
    tasks = ALL_TASKS
    thresholds = {
        "batch_size": (32, "samples in the one-batch test"),
        # segmentation: 32 masks hold 25,000 pixel targets at MNIST size, and a per-pixel cross-entropy
        # keeps falling slowly long after every pixel is right, so the rule is on pixels, on fewer masks
        "dense_batch_size": (4, "segmentation: masks in the one-batch test"),
        # a working SegNet reaches 0.2-0.37 of the baseline in 200 steps on 4 MNIST masks (which 4 decides
        # where: 0.2 was a false warning at 0.37); broken heads stay above the baseline (1.7x, 5.7x)
        "pixel_error_ratio": (0.5, "segmentation: the batch is memorised once its pixel error falls to this share of "
                                   "the error of its commonest class painted everywhere"),
        "max_steps": (200, "steps allowed to fit the batch"),
        "target_ratio": (0.05, "the batch loss must fall below this fraction of its initial value"),
        "slow_fit_ratio": (0.5, "a batch loss that misses target_ratio but falls below this fraction learns, slowly: warn"),
        "params_per_sample_warn": (1000, "warn above this many parameters per training sample"),
        "dense_layer_warn": (1_000_000, "warn about a linear layer with more parameters than this"),
        "memorisation_warn": (0.9, "warn when shuffled labels are fitted this well relative to true ones"),
        "gap_warn": (0.15, "warn when train accuracy exceeds validation accuracy by this"),
        "shuffled": (True, "run the shuffled-label memorisation probe"),
    }
    ranges = {
        "batch_size": Range(1, 4096),
        "dense_batch_size": Range(1, 256),
        "pixel_error_ratio": SHARE,
        "max_steps": Range(1, 100_000),
        "target_ratio": SHARE,
        "slow_fit_ratio": SHARE,
        "params_per_sample_warn": Range(1, 10**12),
        "dense_layer_warn": Range(1, 10**12),
        "memorisation_warn": Range(0.0, 10.0),
        "gap_warn": SHARE,
    }
    ordered = (("target_ratio", "slow_fit_ratio"),)

    def one_batch_request(self, task: str) -> dict:
        """The one-batch probe as these thresholds ask for it (learning-rate reads the same run)."""
        return {"batch": self.t.dense_batch_size if task == "segmentation" else self.t.batch_size,
                "max_steps": self.t.max_steps}

    def fit_one_batch(self, ctx):
        request = self.one_batch_request(ctx.dataset.task)
        return ctx.one_batch_fit(request["batch"], request["max_steps"], self.t.target_ratio,
                                 self.t.pixel_error_ratio if ctx.dataset.task == "segmentation" else None)

    def probes(self, ctx) -> dict[str, dict]:
        wanted = {"overfit-batch": self.one_batch_request(ctx.dataset.task)}
        if ctx.dataset.task == "classification":
            wanted["fit"] = {}
            if self.t.shuffled:
                wanted["overfit-shuffled"] = {}
        return wanted

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx) -> "OverfitMeasurement":
        from torch import nn

        model = ctx.fresh_model()
        trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        layers = tuple({"layer": name or type(module).__name__, "type": type(module).__name__, "parameters": own}
                       for name, module in model.named_modules()
                       if (own := sum(p.numel() for p in module.parameters(recurse=False))))
        dense = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules() if isinstance(m, nn.Linear))
        m = OverfitMeasurement(trainable, int(sum(p.numel() for p in model.parameters())),
                               len(ctx.dataset.splits["train"]), layers, dense)
        if trainable:
            m = self._measure_one_batch(ctx, m)
        if ctx.dataset.task != "classification":
            return m
        try:
            fit = ctx.fit_probe()
        except ProbeUnavailable as exc:
            return replace(m, fit_gap=ProbeGap.of(exc))
        m = replace(m, fit_epochs=tuple(fit.epochs), fit_curves=fit.curves(), fit_compact=fit.compact)
        if self.t.shuffled and m.fits_one_batch is not False:  # no memorisation test of a model that cannot learn
            m = self._measure_shuffled(ctx, m)
        return m

    def _measure_one_batch(self, ctx, m):
        try:
            run = self.fit_one_batch(ctx)
        except ProbeUnavailable as exc:
            return replace(m, batch_gap=ProbeGap.of(exc))
        return replace(m, batch=OneBatch(ctx.planned("overfit-batch").batch_size, tuple(run.losses), run.stopped_by,
                                         run.reached_params, tuple(run.pixel_errors), run.pixel_baseline))

    def _measure_shuffled(self, ctx, m):
        import torch

        train, _ = ctx.probe_data()
        perm = torch.from_numpy(np.random.default_rng(ctx.seed).permutation(len(train[1])))
        try:
            run = ctx.train_probe("overfit-shuffled", data=((train[0], train[1][perm]), None))
        except ProbeUnavailable as exc:
            return replace(m, shuffled_gap=ProbeGap.of(exc))
        return replace(m, shuffled_train_acc=tuple(e.get("train_acc") for e in run.epochs))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "OverfitMeasurement", t) -> Verdict:
        metrics, findings = _one_batch_findings(m, t)
        figures = {}
        capacity_at = len(findings)  # capacity findings go here, once it is known whether the model overfits
        evidence = []  # findings that show overfitting or memorisation
        if m.fit_gap is not None:
            findings.append(m.fit_gap.finding("gap and memorisation not measured"))
        elif m.fit_epochs is not None:
            gap_metrics, gap_findings = _gap_findings(m.fit_epochs, t)
            metrics.update(gap_metrics)
            if m.fit_compact:  # a model fitted to a few dozen samples always shows a gap
                gap_findings = [replace(f, severity=Status.INFO, message=f"{f.message} (the compact probe: "
                                        f"{COMPACT_GAP_NOTE})") for f in gap_findings]
            findings += gap_findings
            evidence += [f for f in gap_findings if f.severity is not Status.INFO]
            series = {k: v for k, v in m.fit_curves.items() if k != "step_loss" and any(x is not None for x in v)}
            if series:
                figures["curves"] = Lines("Probe curves per epoch", series, "epoch", "value")
            if m.shuffled_gap is not None:
                findings.append(m.shuffled_gap.finding("shuffled-label probe not run"))
            elif m.shuffled_train_acc is not None:
                mem_metrics, mem_findings = _memorisation_findings(m.shuffled_train_acc, m.fit_epochs, t)
                metrics.update(mem_metrics)
                findings += mem_findings
                evidence += mem_findings
                figures["shuffled_train_acc"] = Lines(
                    "Training accuracy on true vs randomly shuffled labels",
                    {"true labels": [e.get("train_acc") for e in m.fit_epochs],
                     "shuffled labels": list(m.shuffled_train_acc)}, "epoch", "training accuracy")
        param_metrics, param_findings = _parameter_findings(m, t, overfits=bool(evidence))
        metrics.update(param_metrics)
        findings[capacity_at:capacity_at] = param_findings
        return Verdict(verdict(findings), _summary(metrics, findings), tuple(findings), metrics, _remedy(findings),
                       figures)


@dataclass(frozen=True)
class OneBatch:
    samples: int
    losses: tuple[float, ...]
    stopped_by: str  # "target reached", "max steps", "budget", ...
    reached_params: bool  # whether the loss's gradient reached the model's parameters
    pixel_errors: tuple[float, ...] = ()  # segmentation: misclassified share of the batch's pixels per step
    pixel_baseline: float | None = None  # segmentation: the error of painting the batch's commonest class everywhere


@dataclass(frozen=True)
class OverfitMeasurement:
    trainable_parameters: int
    parameters: int
    train_samples: int  # the whole training split (capacity is judged against all of it)
    layers: tuple[dict, ...]  # modules with parameters of their own: layer, type, parameters
    dense: tuple[tuple[str, int, int], ...]  # linear layers: name, in_features, out_features
    batch: OneBatch | None = None
    batch_gap: ProbeGap | None = None
    fit_epochs: tuple[dict, ...] | None = None  # the shared probe run's per-epoch record
    fit_compact: bool = False  # the compact fit (tens of training samples): its gap is not evidence
    fit_curves: dict | None = None
    fit_gap: ProbeGap | None = None
    shuffled_train_acc: tuple | None = None  # per epoch, on randomly permuted labels
    shuffled_gap: ProbeGap | None = None

    @property
    def fits_one_batch(self) -> bool | None:
        """False when the one-batch test failed (frozen, cannot train, target missed), None when it
        could not say (cut short)."""
        if not self.trainable_parameters:
            return False
        if self.batch_gap is not None:
            return None if self.batch_gap.cut_short else False
        return self.batch is not None and self.batch.stopped_by == "target reached"


def _one_batch_findings(m: OverfitMeasurement, t):
    metrics = {"trainable_parameters": m.trainable_parameters}
    if not m.trainable_parameters:
        return metrics, [Finding(Status.FAIL, "cannot overfit one batch: every parameter is frozen "
                                 "(requires_grad=False); nothing can learn",
                                 headline="cannot overfit one batch: every parameter is frozen (requires_grad=False)")]
    if m.batch_gap is not None:
        if m.batch_gap.cut_short:
            return metrics, [m.batch_gap.finding("one-batch test")]
        return metrics, [m.batch_gap.finding("cannot overfit one batch: the model cannot train", Status.FAIL)]
    b = m.batch
    losses, n = list(b.losses), b.samples
    first, best = losses[0], min(losses)
    metrics.update(batch_samples=n, batch_steps=len(losses), batch_initial_loss=round(first, 5),
                   batch_final_loss=round(losses[-1], 5), batch_best_loss=round(best, 5))
    if b.stopped_by == "target reached":
        if b.pixel_errors:
            metrics.update(batch_initial_pixel_error=round(b.pixel_errors[0], 5),
                           batch_final_pixel_error=round(b.pixel_errors[-1], 5),
                           batch_baseline_pixel_error=round(b.pixel_baseline, 5))
        return metrics, []
    if b.pixel_errors:
        return metrics, _pixel_error_findings(b, t, metrics)
    if b.reached_params and math.isfinite(losses[-1]) and best <= t.slow_fit_ratio * first:
        # it learns, only not within the steps: slow, not broken (unscaled inputs, a small learning rate)
        head = (f"fits one batch of {n} only slowly: loss {first:.4g} -> best {best:.4g} in {len(losses)} steps, "
                f"not below {t.target_ratio:.0%} of its start")
        return metrics, [Finding(Status.WARN, f"{head}; unscaled inputs (see normalization) or a small learning rate "
                                 "slow every step of training", headline=head,
                                 evidence={"losses": losses[:: max(1, len(losses) // 50)]})]
    if not b.reached_params:
        why = "the loss does not reach the parameters (outputs detached, or computed without the model)"
    elif not math.isfinite(first):
        why = "the loss is non-finite from the first step: the model's outputs or the loss produce NaN/Inf (see loss-sanity)"
    elif not math.isfinite(losses[-1]):
        why = "the loss became non-finite: the learning rate is too high"
    else:
        why = "too little capacity, or a learning rate too small or too large for this optimizer"
    head = f"cannot overfit one batch of {n}: loss {first:.4g} -> best {best:.4g} in {len(losses)} steps"
    return metrics, [Finding(Status.FAIL, f"{head}; {why}", evidence={"losses": losses[:: max(1, len(losses) // 50)]},
                             headline=head)]


def _pixel_error_findings(b: OneBatch, t, metrics: dict) -> list:
    """A batch of masks not memorised: slow when its pixel error at least beat the baseline's (the
    commonest class painted everywhere), else broken."""
    errors, n, baseline = b.pixel_errors, b.samples, b.pixel_baseline
    first, best = errors[0], min(errors)
    metrics.update(batch_initial_pixel_error=round(first, 5), batch_final_pixel_error=round(errors[-1], 5),
                   batch_best_pixel_error=round(best, 5), batch_baseline_pixel_error=round(baseline, 5))
    evidence = {"pixel_errors": list(errors[:: max(1, len(errors) // 50)]), "baseline_pixel_error": baseline}
    trend = (f"pixel error {first:.1%} -> best {best:.1%} in {len(errors)} steps (painting the commonest class "
             f"everywhere: {baseline:.1%})")
    if b.reached_params and math.isfinite(b.losses[-1]) and best < baseline:
        head = f"fits one batch of {n} masks only slowly: {trend}, not down to {t.pixel_error_ratio:.0%} of that"
        return [Finding(Status.WARN, f"{head}; unscaled inputs (see normalization), a small learning rate or a "
                        "receptive field too small for the objects slow every step of training", headline=head,
                        evidence=evidence)]
    if not b.reached_params:
        why = "the loss does not reach the parameters (outputs detached, or computed without the model)"
    elif any(not math.isfinite(v) for v in b.losses):
        why = "the loss became non-finite (see loss-sanity; a learning rate too high)"
    else:
        why = ("too little capacity, score maps that do not line up with the masks (see loss-sanity), or a learning "
               "rate too small or too large for this optimizer")
    head = f"cannot overfit one batch of {n} masks: {trend}"
    return [Finding(Status.FAIL, f"{head}; {why}", evidence=evidence, headline=head)]


def _parameter_findings(m: OverfitMeasurement, t, overfits: bool):
    """Where the parameters are. A large dense layer or many parameters per sample is advice (info)
    for a model that generalises; a warning when the probe shows overfitting or memorisation, the
    harm that capacity does (pytorch/examples' MNIST net, 1.2M parameters in fc1, reaches 99%)."""
    severity = Status.WARN if overfits else Status.INFO
    per_sample = m.parameters / max(1, m.train_samples)
    metrics = {"parameters": m.parameters, "train_samples": m.train_samples,
               "parameters_per_sample": round(per_sample, 1)}
    findings = []
    big = [(name, i, o) for name, i, o in m.dense if i * o > t.dense_layer_warn]
    if big:
        head = "oversized dense layer(s): " + ", ".join(f"{name} {i}x{o} ({i * o / 1e6:.1f}M)" for name, i, o in big)
        findings.append(Finding(severity, f"{head}; replace flatten + wide FC with pooling or narrower layers",
                                evidence={"layers": [name for name, _, _ in big]}, headline=head))
    if per_sample > t.params_per_sample_warn:
        top = sorted(m.layers, key=lambda d: -d["parameters"])[:3]
        findings.append(Finding(severity, f"{m.parameters:,} parameters for {m.train_samples} training samples "
                                f"({per_sample:,.0f} per sample): capacity far beyond what the data constrains; largest: " +
                                ", ".join(f"{d['layer']} ({d['parameters']:,})" for d in top),
                                headline=f"{m.parameters:,} parameters for {m.train_samples} training samples "
                                         f"({per_sample:,.0f} per sample): capacity far beyond what the data constrains"))
    return metrics, findings


def _gap_findings(epochs, t):
    metrics, findings = {}, []
    val_loss = [e.get("val_loss") for e in epochs if e.get("val_loss") is not None]
    if val_loss and not np.isfinite(val_loss).any():  # NaN/Inf model outputs or loss: no epoch to call best
        head = "the validation loss is not finite in any epoch"
        findings.append(Finding(Status.FAIL, f"{head} (NaN or Inf outputs or loss): train/validation gap and best "
                                "epoch cannot be measured; see loss-sanity for the cause", headline=head))
    elif val_loss:
        val_loss = [v if np.isfinite(v) else np.nan for v in val_loss]
        best = int(np.nanargmin(val_loss))
        metrics.update(best_val_epoch=best + 1, val_loss_rise_since_best=round(
            float((val_loss[-1] - val_loss[best]) / max(abs(val_loss[best]), 1e-12)), 4))
    last = epochs[-1] if epochs else {}
    if last.get("train_acc") is not None and last.get("val_acc") is not None:
        gap = last["train_acc"] - last["val_acc"]
        metrics.update(train_accuracy=round(last["train_acc"], 4), val_accuracy=round(last["val_acc"], 4),
                       accuracy_gap=round(gap, 4))
        if gap > t.gap_warn:
            head = f"train accuracy {last['train_acc']:.2f} vs validation {last['val_acc']:.2f} after {len(epochs)} epochs"
            findings.append(Finding(Status.WARN, f"{head}: overfitting; best validation loss at epoch "
                                    f"{metrics.get('best_val_epoch', '?')}", headline=f"{head}: overfitting"))
    return metrics, findings


def _memorisation_findings(shuffled, fit_epochs, t):
    true = [e.get("train_acc") for e in fit_epochs]
    k = min(len(shuffled), len(true))
    if not k or shuffled[k - 1] is None or not true[k - 1]:
        return {}, []
    ratio = shuffled[k - 1] / true[k - 1]
    metrics = {"shuffled_label_train_accuracy": round(shuffled[k - 1], 4),
               "true_label_train_accuracy": round(true[k - 1], 4), "memorisation_ratio": round(ratio, 4),
               "memorisation_epochs": k}
    findings = []
    if ratio > t.memorisation_warn:
        head = (f"the model fits randomly shuffled labels almost as well as the true ones ({shuffled[k - 1]:.2f} vs "
                f"{true[k - 1]:.2f} training accuracy after {k} epochs): it can memorise this dataset")
        findings.append(Finding(Status.WARN, f"{head}; trust only validation figures and regularise", headline=head))
    return metrics, findings


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("If one batch cannot be fitted, check requires_grad, .detach() calls and that the loss uses the model's "
            "outputs. If capacity dwarfs the data, shrink dense layers, regularise and augment, start from a "
            "pretrained backbone, and stop at the best validation epoch.")


def _summary(metrics, findings) -> str:
    if serious(findings) or "batch_initial_loss" not in metrics:
        return headline(findings) if findings else "no one-batch measurement"
    fitted = (f"pixel error {metrics['batch_initial_pixel_error']:.0%} -> {metrics['batch_final_pixel_error']:.1%}, "
              f"painting the commonest class: {metrics['batch_baseline_pixel_error']:.0%}"
              if "batch_initial_pixel_error" in metrics else
              f"{metrics['batch_initial_loss']:.3g} -> {metrics['batch_best_loss']:.2g}")
    text = (f"fits one batch of {metrics['batch_samples']} ({fitted} in {metrics['batch_steps']} steps); "
            f"{metrics['parameters_per_sample']:g} parameters per sample")
    if "memorisation_ratio" in metrics:
        text += f"; shuffled labels fitted to {metrics['shuffled_label_train_accuracy']:.2f} train accuracy"
    return text
