"""DNC7 external-validation: does the model hold up on data from elsewhere?"""

from __future__ import annotations

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, verdict
from dnncheck.errors import ProbeUnavailable

BOOTSTRAP = 1000
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

    def probes(self, ctx) -> dict[str, dict]:
        has_external = ctx.external is not None and len(ctx.external)
        needs_fit = ctx.dataset.task == "classification" and has_external and not ctx.has_weights
        return {"fit": {}} if needs_fit else {}

    def run(self, ctx):
        ds = ctx.dataset
        if ds.task != "classification":
            return self.skip("external validation metrics here are for classification")
        metrics, findings = self._repeated_splits(ctx)
        if ctx.external is None or not len(ctx.external):
            findings.append(Finding(Status.WARN, "no external validation set: the model is only validated on a split of "
                                    "its own data; add [data] external (or x_external/y_external) from another source, "
                                    "and follow PROBAST and CLAIM for studies meant to inform decisions"))
            return self.result(verdict(findings), findings[-1].message.split(":")[0], metrics, findings,
                               self._remedy(), {})
        internal_split = ctx.view(ds.split("test", "val").name)
        try:
            model, source = (ctx.user_model(), "your weights") if ctx.has_weights else (ctx.fit_probe().model, "the probe")
        except ProbeUnavailable as exc:
            return self.without_probe(exc, "no trained model to validate")
        from dnncheck.probes.train import forward_all

        internal_pred = forward_all(model, ctx.inputs(internal_split.name), ctx.device).argmax(1).numpy()
        external_pred = forward_all(model, ctx.external_inputs(), ctx.device).argmax(1).numpy()
        internal = _scores(internal_split.y, internal_pred, ds.num_classes, ctx.seed)
        external = _scores(ctx.external_targets(), external_pred, ds.num_classes, ctx.seed)
        metrics.update({"model": source, "internal_split": internal_split.name,
                        "internal_samples": int(len(internal_split)), "external_samples": int(len(external_pred)),
                        "internal_accuracy": internal["accuracy"], "internal_accuracy_ci": internal["accuracy_ci"],
                        "external_accuracy": external["accuracy"], "external_accuracy_ci": external["accuracy_ci"],
                        "internal_balanced_accuracy": internal["balanced_accuracy"],
                        "external_balanced_accuracy": external["balanced_accuracy"],
                        "shift_auc": _shift_auc(ctx.inputs(internal_split.name), ctx.external_inputs(), ctx.seed)})
        drop = internal["accuracy"] - external["accuracy"]
        metrics["accuracy_drop"] = round(drop, 4)
        recall_drop = {ds.classes[c]: round(internal["recall"][c] - external["recall"][c], 4)
                       for c in range(ds.num_classes) if c in internal["recall"] and c in external["recall"]}
        metrics["per_class_recall_internal"] = {ds.classes[c]: v for c, v in internal["recall"].items()}
        metrics["per_class_recall_external"] = {ds.classes[c]: v for c, v in external["recall"].items()}
        findings += self._findings(metrics, drop, recall_drop)
        figures = {"internal_vs_external": {"internal": internal, "external": external}}
        return self.result(verdict(findings), _summary(metrics), metrics, findings, self._remedy(), figures)

    def _findings(self, m, drop, recall_drop):
        findings = []
        if drop > self.t["max_drop"]:
            worst = sorted(recall_drop.items(), key=lambda kv: -kv[1])[:5]
            findings.append(Finding(Status.FAIL, f"accuracy drops from {m['internal_accuracy']:.2f} "
                                    f"{_ci(m['internal_accuracy_ci'])} internally to {m['external_accuracy']:.2f} "
                                    f"{_ci(m['external_accuracy_ci'])} on the external set; hardest hit: "
                                    + ", ".join(f"{c} (recall -{d:.2f})" for c, d in worst if d > 0),
                                    evidence={"recall_drop": recall_drop}))
        if m["shift_auc"] is not None and m["shift_auc"] > self.t["max_shift_auc"]:
            findings.append(Finding(Status.WARN, f"the external inputs are easy to tell from internal ones (domain "
                                    f"classifier AUC {m['shift_auc']:.2f}): a distribution shift"))
        return findings

    def _repeated_splits(self, ctx):
        """Mean and std of a linear probe's accuracy over repeated stratified splits (small data)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedShuffleSplit

        from dnncheck.probes.crossfit import pca_features

        ds = ctx.dataset
        names = [n for n in ("train", "val", "test") if ds.split(n) is not None]
        y = np.concatenate([ctx.view(n).y for n in names])
        counts = np.bincount(y)[np.bincount(y) > 0]
        held_out = int(np.ceil(0.3 * len(y)))
        # a stratified 70/30 split needs two samples per class and a place for every class on each side
        if sum(len(ds.splits[n]) for n in names) > MAX_REPEAT_SAMPLES or counts.min() < 2 or len(counts) > min(held_out, len(y) - held_out):
            return {}, []
        flat = np.concatenate([ctx.inputs(n).reshape(len(ctx.view(n)), -1).numpy() for n in names])
        feats = pca_features(flat, ctx.seed)
        scores = []
        splitter = StratifiedShuffleSplit(REPEATS, test_size=0.3, random_state=ctx.seed)
        for fit, held in splitter.split(feats, y):
            model = LogisticRegression(max_iter=300).fit(feats[fit], y[fit])
            scores.append(model.score(feats[held], y[held]))
        return {"repeated_split_accuracy_mean": round(float(np.mean(scores)), 4),
                "repeated_split_accuracy_std": round(float(np.std(scores)), 4),
                "repeated_split_model": f"logistic regression on a 50-d PCA of the inputs, {REPEATS} stratified "
                                        "70/30 splits"}, []

    @staticmethod
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

    from dnncheck.probes.crossfit import pca_features

    n = min(len(internal), len(external), SHIFT_SAMPLES)
    if n < 10:
        return None
    rng = np.random.default_rng(seed)
    a = internal[np.sort(rng.choice(len(internal), n, replace=False))].reshape(n, -1).numpy()
    b = external[np.sort(rng.choice(len(external), n, replace=False))].reshape(n, -1).numpy()
    feats = pca_features(np.concatenate([a, b]), seed)
    side = np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return round(float(cross_val_score(LogisticRegression(max_iter=300), feats, side, cv=cv, scoring="roc_auc").mean()), 4)


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _summary(m) -> str:
    return (f"accuracy {m['internal_accuracy']:.2f} {_ci(m['internal_accuracy_ci'])} on {m['internal_split']} vs "
            f"{m['external_accuracy']:.2f} {_ci(m['external_accuracy_ci'])} external; shift AUC {m['shift_auc']}")

