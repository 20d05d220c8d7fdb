"""DNC3 label-noise on multi-label rows (kept apart from the single-label path).

Out-of-sample per-label probabilities by cross-fitting (the user's model as a probe per fold, read as
its sigmoid outputs and as the label shares of its 10 nearest neighbours in penultimate features; and
an RBF SVM per label on a 50-d PCA of the inputs), averaged; then cleanlab's multi-label confident
learning (`cleanlab.multilabel_classification.filter.find_label_issues`, which treats each label as a
one-vs-rest problem, Thyagarajan et al. 2022) flags samples; within a flagged sample the suspect
label bits are those whose probability lies on the other side of 0.5 from the given bit. The noise
rate is suspect bits over all label bits. Evidence quality: the estimators' skill is the mean over
labels of 2 x ROC AUC - 1 (0 at chance, 1 at certainty) against the given labels; below
`min_estimator_skill` the suspects are information, as on single-label data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnncheck.checks.base import Finding, Status, Verdict, verdict
from dnncheck.figures import ImageGrid

FIGURE_SUSPECTS = 16
MAX_LISTED = 200


@dataclass(frozen=True)
class MultilabelNoise:
    classes: tuple[str, ...]
    ids: tuple[str, ...]
    y: np.ndarray  # (N, C) given 0/1
    probs: np.ndarray  # (N, C) out-of-sample
    flagged: np.ndarray  # sample indices cleanlab flags, most suspect first
    bits: np.ndarray  # (N, C) bool: suspect label bits
    estimators: tuple[str, ...]
    folds: int
    notes: tuple[str, ...] = ()
    figure: ImageGrid | None = None
    sampled_note: str | None = None


def label_folds(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold number of each sample: a seeded shuffle dealt round-robin (label sets are not one class
    to stratify on)."""
    return np.random.default_rng(seed).permutation(n) % folds


def measure(ctx, folds: int, use_probe: bool) -> MultilabelNoise:
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    from dnncheck.errors import ProbeCutShort, ProbeUnavailable
    from dnncheck.probes.crossfit import label_estimates, pca_features, pixel_rows, probe_probabilities

    train = ctx.view("train")
    y = train.y.astype(np.int64)
    fold = label_folds(len(y), folds, ctx.seed)
    estimates, notes = {}, []
    if use_probe:
        x, targets = ctx.inputs("train"), ctx.targets("train")

        def train_on(fit, k):
            model = ctx.fresh_model(seed=ctx.seed + k)
            return ctx.train_probe("label-noise", model=model, data=((x[fit], targets[fit]), None)).model

        try:
            estimates.update(probe_probabilities(x, targets, fold, y.shape[1], train_on, ctx.output_info.kind,
                                                 ctx.device, ctx.max_train_samples, ctx.seed))
        except ProbeCutShort:
            raise
        except ProbeUnavailable as exc:
            notes.append(f"estimated without the model's probe: {exc}")
    estimates["svm"] = label_estimates(pca_features(pixel_rows(ctx.inputs("train")), ctx.seed), y, fold)
    probs = np.clip(np.mean(list(estimates.values()), axis=0), 0.0, 1.0)
    given = [list(np.flatnonzero(row)) for row in y]
    mask = find_label_issues(given, probs, n_jobs=1)
    quality = get_label_quality_scores(given, probs)
    flagged = np.flatnonzero(mask)
    flagged = flagged[np.argsort(quality[flagged], kind="stable")]
    bits = np.zeros(y.shape, dtype=bool)
    bits[flagged] = (probs[flagged] > 0.5) != (y[flagged] == 1)
    return MultilabelNoise(tuple(ctx.dataset.classes), tuple(train.ids), y, probs, flagged, bits,
                           tuple(sorted(estimates)), folds, tuple(notes), _figure(ctx.dataset, train, flagged, y, probs),
                           ctx.sampled_note("train"))


def skill(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean over labels (both values present) of 2 x ROC AUC - 1."""
    from sklearn.metrics import roc_auc_score

    scores = [2 * roc_auc_score(y[:, c], probs[:, c]) - 1 for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return float(np.mean(scores)) if scores else 0.0


def weak_evidence(evidence_skill: float, t, what: str) -> Finding:
    return Finding(Status.INFO, f"weak evidence, the estimators are not skilled enough to {what} (skill "
                   f"{evidence_skill:.2f} < {t.min_estimator_skill:g}, mean over labels of 2 x ROC AUC - 1); review "
                   "the suspects as candidates", evidence={"estimator_skill": round(evidence_skill, 4)})


def judge(m: MultilabelNoise, t) -> Verdict:
    n, c = m.y.shape
    bits = int(m.bits.sum())
    rate = bits / max(1, n * c)
    evidence_skill = skill(m.y, m.probs)
    metrics = {"estimated_noise_rate": round(rate, 4), "suspect_label_bits": bits, "flagged": int(len(m.flagged)),
               "flagged_fraction": round(len(m.flagged) / max(1, n), 4), "train_samples": n, "labels": c,
               "folds": m.folds, "estimators": list(m.estimators), "estimator_skill": round(evidence_skill, 4),
               "unit": "label bits"}
    if m.sampled_note:
        metrics["train_samples_sampled"] = m.sampled_note
    findings = [Finding(Status.WARN, note) for note in m.notes]
    if bits:
        severity = Status.FAIL if rate > t.max_noise_rate else Status.WARN if rate > t.warn_noise_rate else Status.INFO
        weak = evidence_skill < t.min_estimator_skill and severity in (Status.FAIL, Status.WARN)
        if weak:
            severity = Status.INFO
        rows = m.flagged[m.bits[m.flagged].any(axis=1)]
        name = (lambda row: "|".join(m.classes[k] for k in np.flatnonzero(row)) or "(none)")
        head = (f"{bits} label bit(s) of {len(rows)} training samples look wrong (estimated noise rate {rate:.1%} "
                f"of {n * c:,} label bits)")
        per_label = m.bits.sum(axis=0)
        worst = ", ".join(f"{m.classes[k]} ({per_label[k]})" for k in np.argsort(-per_label, kind="stable")[:5]
                          if per_label[k])
        text = f"{head}; most suspect bits on labels {worst}"
        if severity is Status.INFO and not weak:
            text = f"{head}, within the {t.warn_noise_rate:.0%} tolerated; most suspect bits on labels {worst}"
        findings.append(Finding(severity, text, samples=tuple(m.ids[i] for i in rows[:MAX_LISTED]), headline=head,
                                evidence={"given": [name(m.y[i]) for i in rows[:MAX_LISTED]],
                                          "suggested": [name(m.probs[i] > 0.5) for i in rows[:MAX_LISTED]]}))
        if weak:
            findings.append(weak_evidence(evidence_skill, t, "call label bits wrong"))
    summary = (f"{bits} of {n * c:,} training label bits look wrong ({len(m.flagged)} samples flagged, estimated "
               f"noise rate {rate:.1%}; estimator skill {evidence_skill:.2f})")
    remedy = ("Review the flagged samples' labels (the figure shows given -> suggested label sets); fix or drop "
              "the wrong bits and retrain.") if any(f.severity in (Status.FAIL, Status.WARN) for f in findings) else ""
    return Verdict(verdict(findings), summary, tuple(findings), metrics, remedy,
                   {"suspects": m.figure} if m.figure is not None else {})


def _figure(ds, train, flagged, y, probs) -> ImageGrid | None:
    picks = flagged[:FIGURE_SUSPECTS]
    if not ds.is_image or not len(picks):
        return None

    def name(row):
        return "|".join(ds.classes[k] for k in np.flatnonzero(row)) or "(none)"

    return ImageGrid("Top label-noise suspects (given -> suggested labels)", [train.x[i] for i in picks],
                     [f"{name(y[i])}->{name(probs[i] > 0.5)}" for i in picks], ids=[train.ids[i] for i in picks])
