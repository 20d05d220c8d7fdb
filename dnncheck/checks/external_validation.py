"""DNC7 external-validation: does the model hold up on data from elsewhere?"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import Bars
from dnncheck.checks.base import (AUC, SHARE, Check, Finding, ProbeGap, Skipped, Status, Verdict, inconclusive,
                                  probe_missing, verdict)
from dnncheck.errors import ProbeUnavailable

BOOTSTRAP = 1000
NO_PROBE = "no trained model to validate"
SHIFT_SAMPLES = 2000  # per side, for the domain classifier
REPEATS = 5
MAX_REPEAT_SAMPLES = 5000  # repeated splits only when the labelled data is at most this


class ExternalValidation(Check):
    """Internal versus external validation, with intervals and a shift score.

    What it checks
        With an external set (`[data] external`, or x_external/y_external in an npz): the model's
        accuracy, balanced accuracy and per-class recall on the internal test set and on the
        external set, each with a bootstrap 95% interval; how far apart the two sets' inputs are
        (a domain classifier's AUC); the classes that suffer most. Without one: a warning with the
        tutorial's advice. When the data is small, the spread of accuracy over repeated random
        splits shows how much one split's figure can be trusted.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 7: "perform internal and external
        validation". A model validated only on a split of its own data can fail on another
        hospital's scanner, another camera or another season. Studies meant to inform decisions
        should follow PROBAST (risk of bias of prediction-model studies) and CLAIM (checklist for
        AI in medical imaging). The course notes: with small data, a single split's accuracy
        varies; repeat the split and report mean and std.

    How it is computed
        The model is the probe trained on train (or yours with --weights). Intervals: 1,000
        bootstrap resamples, 2.5th and 97.5th percentiles. Shift score: 5-fold ROC AUC of a
        logistic regression told internal-test from external inputs (50-d PCA of the model's
        input tensor, at most 2,000 per side); 0.5 means indistinguishable. Fail when accuracy
        drops by more than `max_drop`; warn when the shift AUC exceeds `max_shift_auc`. Repeated
        splits: 5 stratified 70/30 splits of all labelled data (at most 5,000 samples) with a
        logistic regression on the same PCA.

    How to fix
        Collect an external set from another source and validate on it; if accuracy drops, train
        on more diverse data, normalise acquisition differences, augment for the shift, or
        recalibrate per site; report both figures with intervals.
    """

    id = "DNC7"
    slug = "external-validation"
    item = 7
    title = "External validation"
    needs = "data, probe run (or --weights); an external set"
    thresholds = {
        "max_drop": (0.1, "fail when external accuracy is lower than internal by more than this"),
        "max_shift_auc": (0.8, "warn when a domain classifier tells internal from external with this AUC"),
    }
    ranges = {
        "max_drop": SHARE,
        "max_shift_auc": AUC,
    }

    def probes(self, ctx) -> dict[str, dict]:
        has_external = ctx.external is not None and len(ctx.external)
        needs_fit = ctx.dataset.task == "classification" and has_external and not ctx.has_weights
        return {"fit": {}} if needs_fit else {}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx):
        ds = ctx.dataset
        if ds.task != "classification":
            return Skipped("external validation metrics here are for classification")
        m = ExternalValidationMeasurement(tuple(ds.classes), _repeated_splits(ctx))
        if ctx.external is None or not len(ctx.external):
            return m
        internal_split = ctx.view(ds.split("test", "val").name)
        try:
            model, source = (ctx.user_model(), "your weights") if ctx.has_weights else (ctx.fit_probe().model, "the probe")
        except ProbeUnavailable as exc:
            return probe_missing(exc, NO_PROBE, lambda gap: replace(m, probe_gap=gap))
        from dnncheck.probes.train import forward_all

        internal_pred = forward_all(model, ctx.inputs(internal_split.name), ctx.device).argmax(1).numpy()
        external_pred = forward_all(model, ctx.external_inputs(), ctx.device).argmax(1).numpy()
        return replace(m, comparison=Comparison(
            source, internal_split.name, int(len(internal_split)), int(len(external_pred)),
            _scores(internal_split.y, internal_pred, ds.num_classes, ctx.seed),
            _scores(ctx.external_targets(), external_pred, ds.num_classes, ctx.seed),
            _shift_auc(ctx.inputs(internal_split.name), ctx.external_inputs(), ctx.seed)))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "ExternalValidationMeasurement", t) -> Verdict:
        metrics = dict(m.repeated or {})
        if m.probe_gap is not None:
            return inconclusive(m.probe_gap, NO_PROBE, metrics)
        c = m.comparison
        if c is None:
            head = "no external validation set"
            finding = Finding(Status.INFO, f"{head}: the model is only validated on a split of its own data; add [data] "
                              "external (or x_external/y_external) from another source, and follow PROBAST and CLAIM "
                              "for studies meant to inform decisions", headline=head)
            return Verdict(Status.PASS, head, (finding,), metrics, _remedy())
        internal, external = c.internal, c.external
        metrics.update({"model": c.source, "internal_split": c.internal_split,
                        "internal_samples": c.internal_samples, "external_samples": c.external_samples,
                        "internal_accuracy": internal["accuracy"], "internal_accuracy_ci": internal["accuracy_ci"],
                        "external_accuracy": external["accuracy"], "external_accuracy_ci": external["accuracy_ci"],
                        "internal_balanced_accuracy": internal["balanced_accuracy"],
                        "external_balanced_accuracy": external["balanced_accuracy"], "shift_auc": c.shift_auc})
        drop = internal["accuracy"] - external["accuracy"]
        metrics["accuracy_drop"] = round(drop, 4)
        recall_drop = {m.classes[k]: round(internal["recall"][k] - external["recall"][k], 4)
                       for k in range(len(m.classes)) if k in internal["recall"] and k in external["recall"]}
        metrics["per_class_recall_internal"] = {m.classes[k]: v for k, v in internal["recall"].items()}
        metrics["per_class_recall_external"] = {m.classes[k]: v for k, v in external["recall"].items()}
        findings = _findings(metrics, drop, recall_drop, t)
        indices = sorted(set(internal["recall"]) | set(external["recall"]))
        figures = {"internal_vs_external": Bars(
            "Per-class recall: internal test vs external", [m.classes[k] for k in indices],
            {"internal": [internal["recall"].get(k, 0) for k in indices],
             "external": [external["recall"].get(k, 0) for k in indices]}, "recall")}
        return Verdict(verdict(findings), _summary(metrics), tuple(findings), metrics, _remedy(), figures)


@dataclass(frozen=True)
class Comparison:
    """The same trained model's scores on the internal evaluation split and on the external set."""
    source: str  # your weights, or the probe
    internal_split: str
    internal_samples: int
    external_samples: int
    internal: dict  # accuracy, accuracy_ci (bootstrap 95%), balanced_accuracy, recall per class index
    external: dict
    shift_auc: float | None  # a domain classifier telling internal from external inputs


@dataclass(frozen=True)
class ExternalValidationMeasurement:
    classes: tuple[str, ...]
    repeated: dict | None  # repeated stratified splits of the labelled data (small data only)
    comparison: Comparison | None = None  # None: no external set
    probe_gap: ProbeGap | None = None


def _findings(m, drop, recall_drop, t):
    findings = []
    if drop > t.max_drop:
        worst = sorted(recall_drop.items(), key=lambda kv: -kv[1])[:5]
        head = (f"accuracy drops from {m['internal_accuracy']:.2f} {_ci(m['internal_accuracy_ci'])} internally to "
                f"{m['external_accuracy']:.2f} {_ci(m['external_accuracy_ci'])} on the external set")
        findings.append(Finding(Status.FAIL, f"{head}; hardest hit: "
                                + ", ".join(f"{c} (recall -{d:.2f})" for c, d in worst if d > 0),
                                evidence={"recall_drop": recall_drop}, headline=head))
    if m["shift_auc"] is not None and m["shift_auc"] > t.max_shift_auc:
        findings.append(Finding(Status.WARN, f"the external inputs are easy to tell from internal ones (domain "
                                f"classifier AUC {m['shift_auc']:.2f}): a distribution shift"))
    return findings


def _repeated_splits(ctx) -> dict | None:
    """Mean and std of a linear probe's accuracy over repeated stratified splits (small data)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit

    from dnncheck.probes.crossfit import pca_features, pixel_rows

    ds = ctx.dataset
    names = [n for n in ("train", "val", "test") if ds.split(n) is not None]
    y = np.concatenate([ctx.view(n).y for n in names])
    counts = np.bincount(y)[np.bincount(y) > 0]
    held_out = int(np.ceil(0.3 * len(y)))
    # a stratified 70/30 split needs two samples per class and a place for every class on each side
    if sum(len(ds.splits[n]) for n in names) > MAX_REPEAT_SAMPLES or counts.min() < 2 or len(counts) > min(held_out, len(y) - held_out):
        return None
    flat = np.concatenate([pixel_rows(ctx.inputs_once(n)) for n in names])  # test's view is not kept for this
    feats = pca_features(flat, ctx.seed)
    scores = []
    splitter = StratifiedShuffleSplit(REPEATS, test_size=0.3, random_state=ctx.seed)
    for fit, held in splitter.split(feats, y):
        model = LogisticRegression(max_iter=300).fit(feats[fit], y[fit])
        scores.append(model.score(feats[held], y[held]))
    return {"repeated_split_accuracy_mean": round(float(np.mean(scores)), 4),
            "repeated_split_accuracy_std": round(float(np.std(scores)), 4),
            "repeated_split_model": f"logistic regression on a 50-d PCA of the inputs, {REPEATS} stratified "
                                    "70/30 splits"}


def _remedy() -> str:
    return ("Validate on an external set from another source and report both figures with intervals; if accuracy "
            "drops, train on more diverse data, harmonise acquisition, augment for the shift or recalibrate per "
            "site. For clinical or other high-stakes studies follow PROBAST and CLAIM.")


def _scores(y, pred, classes, seed) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    correct = (y == pred).astype(float)
    rng = np.random.default_rng(seed)
    boots = correct[rng.integers(0, len(correct), (BOOTSTRAP, len(correct)))].mean(axis=1)
    recall = {int(c): round(float(np.mean(pred[y == c] == c)), 4) for c in range(classes) if np.any(y == c)}
    return {"accuracy": round(float(correct.mean()), 4),
            "accuracy_ci": [round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)],
            "balanced_accuracy": round(float(balanced_accuracy_score(y, pred)), 4), "recall": recall}


def _shift_auc(internal, external, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from dnncheck.probes.crossfit import pca_features, pixel_rows

    n = min(len(internal), len(external), SHIFT_SAMPLES)
    if n < 10:
        return None
    rng = np.random.default_rng(seed)
    a = pixel_rows(internal[np.sort(rng.choice(len(internal), n, replace=False))])
    b = pixel_rows(external[np.sort(rng.choice(len(external), n, replace=False))])
    feats = pca_features(np.concatenate([a, b]), seed)
    side = np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return round(float(cross_val_score(LogisticRegression(max_iter=300), feats, side, cv=cv, scoring="roc_auc").mean()), 4)


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _summary(m) -> str:
    return (f"accuracy {m['internal_accuracy']:.2f} {_ci(m['internal_accuracy_ci'])} on {m['internal_split']} vs "
            f"{m['external_accuracy']:.2f} {_ci(m['external_accuracy_ci'])} external; shift AUC {m['shift_auc']}")

