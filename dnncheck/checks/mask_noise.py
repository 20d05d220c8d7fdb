"""DNC3 label-noise on segmentation masks (kept apart from the single-label path).

The commonest annotation error in a segmentation set is an object painted with the wrong class (or
left out); a boundary drawn a few pixels off matters less and is what input-fidelity's alignment
measures. So the verdict rests on which classes each mask holds, an image-level label set that
out-of-sample estimators can check:

- the label set of a mask: the classes it holds, leaving out those held by at least 95% of the
  training masks (background: their presence says nothing);
- out-of-sample presence probabilities by cross-fitting: the user's model as a probe per fold (a
  class's presence score is its highest pixel probability after a 3x3 mean, so one stray pixel does
  not count) and an RBF SVM per class on a 50-d PCA of the inputs, averaged;
- confident learning on them: where every mask holds at most one such class (one object per image,
  or none) it is a single-label problem (cleanlab's `find_label_issues`, prune_by_class, Northcutt
  et al. 2021), otherwise cleanlab's multi-label filter (Thyagarajan et al. 2022).

The noise rate counts masks, not pixels. Evidence quality: the estimators' skill is the mean over
classes of 2 x ROC AUC - 1 of the presence probabilities; below `min_estimator_skill` the suspects are
information. Beside the verdict, the probe's per-image mask quality (cleanlab's segmentation
`get_label_quality_scores`, softmin of per-pixel given-class probabilities, Lad & Mueller 2023)
names the masks the probe agrees with least: candidates to look at, never a verdict, since a probe
trained for a few hundred steps misses thin and rare structures in correct masks too.

Measured on 1,700 real MNIST training masks (digit ink = class + 1), 10% of masks given another
digit's class: see README, label-noise per task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnncheck.checks.base import Finding, Status, Verdict, verdict
from dnncheck.figures import ImageGrid
from dnncheck.masks import UBIQUITOUS_SHARE

FIGURE_SUSPECTS = 16
MAX_LISTED = 200
LEAST_AGREED = 10  # masks the probe agrees with least, listed as information
# cleanlab's least aggressive filter (the confident joint's off-diagonal): on 1,019 clean two-digit masks
# its default, prune_by_noise_rate, flagged 2.0% (the warning line) and this 1.2%; 10% repainted: 149 / 113
FILTER = "confident_learning"


@dataclass(frozen=True)
class MaskNoise:
    classes: tuple[str, ...]  # the dataset's classes
    labels: tuple[int, ...]  # the classes that make the label sets (ubiquitous ones left out)
    ids: tuple[str, ...]
    held: np.ndarray  # (N, K) 0/1: which of `labels` each mask holds
    probs: np.ndarray  # (N, K) out-of-sample presence probabilities
    flagged: np.ndarray  # mask indices confident learning flags, most suspect first
    single: bool  # at most one label per mask: the single-label filter was used
    estimators: tuple[str, ...]
    folds: int
    quality: np.ndarray | None = None  # (N,) the probe's per-image mask quality, lower is worse
    notes: tuple[str, ...] = ()
    figure: ImageGrid | None = None
    sampled_note: str | None = None

    def label_set(self, row) -> str:
        return "|".join(self.classes[self.labels[k]] for k in np.flatnonzero(row)) or "(none)"

    def suggested(self, i: int) -> str:
        if self.single:
            best = int(np.argmax(self.probs[i]))
            return self.classes[self.labels[best]] if self.probs[i, best] >= 0.5 else "(none)"
        return self.label_set(self.probs[i] > 0.5)


def object_labels(held_all: np.ndarray) -> np.ndarray:
    """Classes that are neither absent from train nor held by nearly every mask."""
    share = held_all.mean(axis=0)
    return np.flatnonzero((share > 0) & (share < UBIQUITOUS_SHARE))


def measure(ctx, folds: int, use_probe: bool) -> MaskNoise:
    from dnncheck.checks.multilabel_noise import label_folds
    from dnncheck.errors import ProbeCutShort, ProbeUnavailable
    from dnncheck.masks import presence
    from dnncheck.probes.crossfit import label_estimates, pca_features, pixel_rows

    ds, train = ctx.dataset, ctx.view("train")
    held_all = presence(train.y, ds.num_classes)
    labels = object_labels(held_all)
    held = held_all[:, labels].astype(np.int64)
    fold = label_folds(len(held), folds, ctx.seed)
    estimates, notes, quality = {}, [], None
    if use_probe:
        try:
            estimates["probe"], quality = _probe_presence(ctx, fold, labels)
        except ProbeCutShort:
            raise
        except ProbeUnavailable as exc:
            notes.append(f"estimated without the model's probe: {exc}")
    if len(labels):
        estimates["svm"] = label_estimates(pca_features(pixel_rows(ctx.inputs("train")), ctx.seed), held, fold)
    probs = np.clip(np.mean(list(estimates.values()), axis=0), 0.0, 1.0) if estimates else np.zeros(held.shape)
    single = bool(held.sum(axis=1).max(initial=0) <= 1)
    flagged = _confident_learning(held, probs, single) if len(labels) else np.array([], dtype=np.int64)
    m = MaskNoise(tuple(ds.classes), tuple(int(k) for k in labels), tuple(train.ids), held, probs, flagged, single,
                  tuple(sorted(estimates)), folds, quality, tuple(notes), sampled_note=ctx.sampled_note("train"))
    return _with_figure(m, ds, train)


def _probe_presence(ctx, fold: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per mask, out of sample: each label's presence score from a fresh probe trained on the other
    folds, and cleanlab's softmin mask quality. Score maps are reduced chunk by chunk (dense_rows),
    never held whole: N,C,H,W probabilities of 10,000 masks at 256 px would be tens of GB."""
    import torch
    import torch.nn.functional as F
    from cleanlab.segmentation.rank import get_label_quality_scores

    from dnncheck.models.introspect import to_probabilities
    from dnncheck.probes.train import autocast, dense_rows

    x, targets = ctx.inputs("train"), ctx.targets("train")
    classes = ctx.dataset.num_classes
    present = np.zeros((len(x), len(labels)))
    quality = np.zeros(len(x))
    for k in np.unique(fold):
        fit, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = ctx.fresh_model(seed=ctx.seed + int(k))
        model = ctx.train_probe("label-noise", model=model, data=((x[fit], targets[fit]), None)).model
        model.to(ctx.device).eval()
        rows = dense_rows(classes * int(np.prod(targets.shape[1:])), cap=256)
        with torch.no_grad(), autocast(ctx.device):
            for start in range(0, len(held), rows):
                index = held[start:start + rows]
                out = model(x[index].to(ctx.device)).float()
                probs = to_probabilities(out, ctx.output_info.kind)[:, :classes]
                smooth = F.avg_pool2d(probs, 3, stride=1, padding=1, count_include_pad=False)
                present[index] = smooth[:, labels].amax(dim=(2, 3)).cpu().numpy()
                given = targets[index].numpy()
                quality[index], _ = get_label_quality_scores(given, probs.cpu().numpy(), verbose=False)
    return present, quality


def _confident_learning(held: np.ndarray, probs: np.ndarray, single: bool) -> np.ndarray:
    """Flagged mask indices, lowest label quality first."""
    if single:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        # one column per label plus "(none)" for masks holding none of them
        none = 1.0 - probs.max(axis=1, initial=0.0)
        p = np.column_stack([probs, none]) + 1e-6
        given = np.where(held.any(axis=1), held.argmax(axis=1), held.shape[1])
        used = np.unique(given)
        if len(used) < 2:
            return np.array([], dtype=np.int64)
        # cleanlab wants classes 0..K-1 all present: keep the columns of labels that occur, rows normalised
        remap = np.searchsorted(used, given)
        q = p[:, used] / p[:, used].sum(axis=1, keepdims=True)
        mask = find_label_issues(remap, q, filter_by=FILTER, n_jobs=1)
        score = get_label_quality_scores(remap, q)
    else:
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        given = [list(np.flatnonzero(row)) for row in held]
        mask = find_label_issues(given, probs, filter_by=FILTER, n_jobs=1)
        score = get_label_quality_scores(given, probs)
    flagged = np.flatnonzero(mask)
    return flagged[np.argsort(score[flagged], kind="stable")]


def _with_figure(m: MaskNoise, ds, train) -> MaskNoise:
    from dataclasses import replace

    picks = m.flagged[:FIGURE_SUSPECTS]
    if not ds.is_image or not len(picks):
        return m
    grid = ImageGrid("Top mask-label suspects (classes the mask holds -> classes the estimators see)",
                     [train.x[i] for i in picks], [f"{m.label_set(m.held[i])}->{m.suggested(i)}" for i in picks],
                     ids=[train.ids[i] for i in picks])
    return replace(m, figure=grid)


def judge(m: MaskNoise, t) -> Verdict:
    from dnncheck.checks.multilabel_noise import skill, weak_evidence

    n = len(m.ids)
    flagged = int(len(m.flagged))
    rate = flagged / max(1, n)
    evidence_skill = skill(m.held, m.probs) if len(m.labels) else 0.0
    metrics = {"estimated_noise_rate": round(rate, 4), "flagged": flagged, "flagged_fraction": round(rate, 4),
               "train_samples": n, "labels": [m.classes[k] for k in m.labels],
               "one_label_per_mask": m.single, "folds": m.folds, "estimators": list(m.estimators),
               "estimator_skill": round(evidence_skill, 4), "unit": "masks"}
    if m.sampled_note:
        metrics["train_samples_sampled"] = m.sampled_note
    findings = [Finding(Status.WARN, note) for note in m.notes]
    if not len(m.labels):
        findings.append(Finding(Status.INFO, "every class is held by nearly every mask (or by none): which classes "
                                "a mask holds carries no label to check"))
    if flagged:
        severity = Status.FAIL if rate > t.max_noise_rate else Status.WARN if rate > t.warn_noise_rate else Status.INFO
        weak = evidence_skill < t.min_estimator_skill and severity in (Status.FAIL, Status.WARN)
        head = (f"{flagged} of {n:,} training masks hold classes the estimators do not see in their images "
                f"(estimated noise rate {rate:.1%} of masks)")
        text = head if severity is not Status.INFO or weak else f"{head}, within the {t.warn_noise_rate:.0%} tolerated"
        listed = m.flagged[:MAX_LISTED]
        findings.append(Finding(Status.INFO if weak else severity, text, samples=tuple(m.ids[i] for i in listed),
                                headline=head,
                                evidence={"given": [m.label_set(m.held[i]) for i in listed],
                                          "suggested": [m.suggested(i) for i in listed]}))
        if weak:
            findings.append(weak_evidence(evidence_skill, t, "call a mask's classes wrong"))
    if m.quality is not None:
        findings.append(_least_agreed(m))
    summary = (f"{flagged} of {n:,} training masks look mislabelled (estimated noise rate {rate:.1%}; "
               f"estimator skill {evidence_skill:.2f})")
    remedy = ("Review the flagged masks (the figure shows the classes each holds -> the classes the estimators "
              "see): repaint objects given the wrong class, add the missing ones, and retrain."
              if any(f.severity in (Status.FAIL, Status.WARN) for f in findings) else "")
    return Verdict(verdict(findings), summary, tuple(findings), metrics, remedy,
                   {"suspects": m.figure} if m.figure is not None else {})


def _least_agreed(m: MaskNoise) -> Finding:
    worst = np.argsort(m.quality, kind="stable")[:LEAST_AGREED]
    scores = ", ".join(f"{m.ids[i]} ({m.quality[i]:.2f})" for i in worst)
    return Finding(Status.INFO, f"masks the probe agrees with least, pixel by pixel (cleanlab's softmin mask quality, "
                   f"median {np.median(m.quality):.2f}): {scores}; worth a look for misdrawn outlines",
                   samples=tuple(m.ids[i] for i in worst),
                   evidence={"quality": [round(float(m.quality[i]), 4) for i in worst],
                             "median_quality": round(float(np.median(m.quality)), 4)})
