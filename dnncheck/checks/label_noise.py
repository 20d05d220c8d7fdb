"""DNC3 label-noise: confident learning on out-of-sample probabilities finds the training samples
whose given label is likely wrong, ranks them and suggests the label."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import ImageGrid
from dnncheck.checks.base import (ALL_TASKS, SHARE, Check, Finding, ProbeGap, Range, Skipped, Status, Verdict,
                                  serious, verdict)
from dnncheck.checks.label_signal import (LabelSignal, input_structure, shuffled_accuracies, structure_rows,
                                          target_signal)
from dnncheck.errors import ProbeCutShort, ProbeNotRun, ProbeUnavailable

FIGURE_SUSPECTS = 16


class LabelNoise(Check):
    """Mislabelled training samples, found by confident learning.

    What it checks
        Out-of-sample class probabilities for every training sample, by cross-fitting; then
        confident learning (cleanlab's `find_label_issues`) to flag samples whose given label
        disagrees confidently with what models trained without them predict. Reports every
        suspect, most likely mislabelled first, with the given and the suggested label; the
        estimated noise rate; and identical samples that carry different labels.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 3, "check for label noise": wrong labels
        are common in real datasets (a few percent even in curated benchmarks, Northcutt et al.
        2021); deep networks memorise them (Zhang et al. 2017), which costs accuracy and
        corrupts the evaluation when the test labels are noisy too.

    How it is computed
        Stratified `folds`-fold cross-fitting of three estimators, averaged: the user's model
        (a fresh probe per fold, trained on the other folds for about 100 steps each), read
        as its softmax and as a 10-NN vote in its penultimate features ("deep k-NN", Bahri et
        al., ICML 2020, robust to noisy labels); and an RBF SVM on a 50-d PCA of the model's
        input tensor (a 10-NN vote on that PCA replaces it above 10,000 samples or stands in for
        the probe when it cannot train). Confident learning (Northcutt, Jiang & Chuang, JAIR
        2021) with cleanlab's `find_label_issues(filter_by="prune_by_class")`; suspects ranked by self-confidence (the predicted
        probability of the given label, lowest first); the suggested label is the most probable
        class. `estimated_noise_rate` is cleanlab's `num_label_issues` over the training size.
        Evidence quality: confident learning can only call a label wrong when its estimators are
        both confident and right most of the time. `estimator_skill` is the smaller of (mean top
        probability - 1/C) / (1 - 1/C) and (out-of-sample accuracy - majority share) / (1 -
        majority share): 0 at chance, 1 at certainty; the first alone is fooled by an overconfident
        model that memorised noise, the second alone by heavy noise. Below `min_estimator_skill`
        the suspects are information (candidates to review, with a finding that says the evidence
        is weak and why), a warning only when something independent of the estimators confirms
        them: identical samples carrying different labels, or one (given -> suggested) class pair
        holding at least half of 10+ suspects and 3x its uniform share (never on two classes). Measured
        (smallcnn unless noted): real ant/bee photos 0.34; random labels on random images (mlp)
        about 0.04; MNIST with 10% random or 30%-of-one-class flips 0.83 and 0.91; clean digits
        0.97. Cost of the gate: on two classes, more than about 20% of flipped labels also reads as
        weak evidence (the given labels are then close to coin flips) and is information, not a failure.
        Measured on 3,500 real MNIST digits with 10% of labels flipped: see benchmarks/.
        Labels that do not belong to their inputs at all (shifted a row, shuffled) fail first: a
        permutation test of the estimators' out-of-sample accuracy against shuffled labels, on inputs
        with nearest-neighbour structure (checks/label_signal.py; regression targets on R-squared).
        One class pair: annotators confusing two similar classes is the commonest real label error
        and hides in a global rate (20% of MNIST's 7s labelled 1 is 1.4% of all labels). Per given
        class, the share of its training samples whose suspects are suggested as one other class
        warns from `pair_share_warn` (5%) and fails from `pair_share_fail` (10%), with at least
        `pair_min_samples` (8) suspects, whatever the global rate; the weak-evidence gate applies
        as to every suspect.

        Multi-label rows: per-label estimates and cleanlab's multi-label filter, the rate over label
        bits (checks/multilabel_noise.py). Segmentation masks: the classes each mask holds (background
        left out) checked the same way, the rate over masks, and the probe's per-image mask quality
        as information (checks/mask_noise.py).

    How to fix
        Review the top suspects (the figure shows them with both labels); relabel or drop the
        wrong ones and retrain. Where relabelling is impossible, prefer lower-capacity models or
        noise-robust losses, which memorise wrong labels less, and make sure the test labels are
        clean.
    """

    id = "DNC3"
    slug = "label-noise"
    item = 3
    title = "Label noise"
    needs = "data, probe runs (one per fold)"
    thresholds = {
        "max_noise_rate": (0.05, "fail when the estimated noise rate exceeds this"),
        "warn_noise_rate": (0.02, "warn when the estimated noise rate exceeds this"),
        "folds": (4, "cross-fitting folds"),
        "probe": (True, "include the user's model (cross-fitted probes) in the estimate"),
        "min_estimator_skill": (0.6, "below this estimator skill (confidence and accuracy vs chance), suspects warn at most"),
        "pair_share_warn": (0.05, "warn when this share of one class's training samples look like one other class"),
        "pair_share_fail": (0.10, "fail when this share of one class's training samples look like one other class"),
        "pair_min_samples": (8, "a class pair needs at least this many suspects to be a finding"),
        "signal_z": (3.0, "labels scoring fewer standard deviations than this above shuffled labels carry no signal"),
        "max_structure": (0.85, "inputs whose nearest-neighbour distance ratio (vs columns permuted) is below this "
                                "have clear structure: labels without signal on them fail"),
        "shuffles": (5, "label permutations of the signal test"),
    }
    ranges = {
        "max_noise_rate": SHARE,
        "warn_noise_rate": SHARE,
        "folds": Range(2, 20),  # each fold trains the probe again
        "min_estimator_skill": SHARE,
        "pair_share_warn": SHARE,
        "pair_share_fail": SHARE,
        "pair_min_samples": Range(1, 1_000_000),
        "signal_z": Range(0.0, 1000.0),
        "max_structure": Range(0.0, 10.0),
        "shuffles": Range(2, 100),  # each shuffle fits the 10-NN again; z needs a spread
    }
    ordered = (("warn_noise_rate", "max_noise_rate"), ("pair_share_warn", "pair_share_fail"))

    tasks = ALL_TASKS

    def _folds(self, ctx) -> int:
        if ctx.dataset.task in ("multilabel", "segmentation"):  # dealt round-robin: any split into folds works
            return int(min(self.t.folds, len(ctx.view("train"))))
        counts = np.bincount(ctx.view("train").y, minlength=ctx.dataset.num_classes)
        return int(min(self.t.folds, counts[counts > 0].min()))

    def _uses_probe(self, ctx) -> bool:
        return bool(self.t.probe) and ctx.output_info.units == ctx.dataset.num_classes

    def probes(self, ctx) -> dict[str, dict]:
        if ctx.dataset.task == "regression" or self._folds(ctx) < 2 or not self._uses_probe(ctx):
            return {}
        return {"label-noise": {"folds": self._folds(ctx)}}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx):
        ds = ctx.dataset
        if ds.task in ("multilabel", "segmentation"):
            from dnncheck.checks import mask_noise, multilabel_noise

            module = multilabel_noise if ds.task == "multilabel" else mask_noise
            # the compact plan's frozen-feature head has no form for label sets or masks yet: the classical
            # estimators alone then (the plan in the JSON says it was compact)
            use_probe = bool(self.t.probe) and self._uses_probe(ctx) and \
                ctx.planned("label-noise", folds=self._folds(ctx)).kind != "features"
            try:
                return module.measure(ctx, self._folds(ctx), use_probe)
            except ProbeCutShort as exc:
                return LabelNoiseMeasurement(tuple(ds.classes), tuple(ctx.view("train").ids), ctx.view("train").y,
                                             self._folds(ctx), (), probe_gap=ProbeGap.of(exc))
        if ds.task == "regression":
            return self._target_signal(ctx)
        train = ctx.view("train")  # every training sample, or max_train_samples of them (stratified)
        folds = self._folds(ctx)
        if folds < 2:
            return Skipped("a class has a single training sample: cross-fitting needs two per class")
        conflicts = tuple(_conflicting_duplicates(ds))
        base = LabelNoiseMeasurement(tuple(ds.classes), tuple(train.ids), train.y, folds, conflicts,
                                     ctx.sampled_note("train"))
        try:
            probs, used, notes, info_notes, (features, rows), fold = self._probabilities(ctx, train.y, folds)
        except ProbeCutShort as exc:  # partial evidence: say so, never a verdict from it
            return replace(base, probe_gap=ProbeGap.of(exc))
        confident = _confident_learning(train.y, probs)
        signal = LabelSignal("accuracy", float(np.mean(confident.suggested == train.y)),
                             shuffled_accuracies(features, train.y, fold, int(self.t.shuffles), ctx.seed),
                             input_structure(rows, ctx.seed), len(train.y))
        return replace(base, confident=confident, estimators=tuple(used), notes=tuple(notes),
                       info_notes=tuple(info_notes), signal=signal,
                       figure=_suspect_figure(ds, train, confident))

    def _target_signal(self, ctx) -> "TargetSignal":
        from dnncheck.probes.crossfit import pca_features, pixel_rows

        train = ctx.view("train")
        flat = pixel_rows(ctx.inputs("train"))
        features = pca_features(flat, ctx.seed)
        target = np.asarray(train.y, dtype=np.float64).reshape(len(train.y), -1)[:, 0]
        folds = int(min(self.t.folds, len(target) // 2))
        if folds < 2:
            return Skipped("too few training samples to cross-fit a regressor")
        return TargetSignal(target_signal(features, structure_rows(flat, features), target, folds,
                                          int(self.t.shuffles), ctx.seed))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "LabelNoiseMeasurement", t) -> Verdict:
        from dnncheck.checks import mask_noise, multilabel_noise

        if isinstance(m, TargetSignal):
            return _judge_target(m.signal, t)
        if isinstance(m, multilabel_noise.MultilabelNoise):
            return multilabel_noise.judge(m, t)
        if isinstance(m, mask_noise.MaskNoise):
            return mask_noise.judge(m, t)
        conflict_findings = _conflict_findings(m.conflicts)
        if m.probe_gap is not None:
            findings = [m.probe_gap.finding("label noise not estimated"), *conflict_findings]
            return Verdict(verdict(findings), m.probe_gap.headline, tuple(findings),
                           {"train_samples": int(len(m.y)), "folds": m.folds}, _remedy(findings[1:]))
        c, y = m.confident, m.y
        present = np.bincount(y, minlength=len(m.classes)) > 0
        suspects = c.suspects
        metrics = {"estimated_noise_rate": round(float(c.rate), 4), "flagged": int(len(suspects)),
                   "flagged_fraction": round(len(suspects) / len(y), 4), "train_samples": int(len(y)),
                   "folds": m.folds, "estimators": list(m.estimators),
                   "out_of_sample_accuracy": round(float(np.mean(c.suggested == y)), 4),
                   "mean_max_probability": round(float(c.probs.max(axis=1).mean()), 4),
                   "classes_present": int(present.sum())}
        if m.sampled_note:
            metrics["train_samples_sampled"] = m.sampled_note
        skill = _estimator_skill(c.probs, y, c.suggested, int(present.sum()))
        metrics["estimator_skill"] = round(skill, 4)
        findings = [Finding(Status.WARN, note) for note in m.notes]
        findings += [Finding(Status.INFO, note) for note in m.info_notes]
        rate_findings = _suspect_findings(m, t)
        suspect_findings = rate_findings + _pair_findings(m, t)
        unrelated = m.signal is not None and m.signal.unrelated(t)
        if m.signal is not None:
            metrics.update(m.signal.metrics())
        # labels unrelated to their inputs are no weak estimators' guess: no gate softens it
        weak = (not unrelated and skill < t.min_estimator_skill and
                any(f.severity.rank >= Status.WARN.rank for f in suspect_findings))
        if weak:
            # weak estimators' suspects are candidates, not a finding, unless something independent of
            # them confirms: identical samples with two labels, or suspects concentrated on one class pair
            pair = _concentrated_pair(m, c)
            confirmed = bool(conflict_findings) or pair is not None
            severity = Status.WARN if confirmed else Status.INFO
            suspect_findings = [replace(f, severity=severity) for f in suspect_findings]
            because = ("" if not confirmed else f"; confirmed by {pair}" if pair else
                       "; confirmed by identical samples carrying different labels")
            suspect_findings.append(Finding(severity, _weak_evidence(metrics, skill, t.min_estimator_skill) + because,
                                            evidence={"estimator_skill": round(skill, 4),
                                                      "mean_max_probability": metrics["mean_max_probability"],
                                                      "confirmed": confirmed}))
        findings += suspect_findings
        findings += conflict_findings
        if unrelated:
            findings.insert(0, m.signal.finding())  # the reason first, in the findings and in the summary
        summary = _summary(metrics)
        pairs = [f for f in suspect_findings[len(rate_findings):] if serious([f]) and "class_samples" in f.evidence]
        if pairs and not serious(suspect_findings[:len(rate_findings)]):
            summary = f"{pairs[0].short}; {summary}"  # the reason first: the global rate alone reads as tolerated
        if unrelated:
            summary = f"{findings[0].short}; {summary}"
        if weak:
            summary = f"weak evidence (estimator skill {skill:.2f}), not a verdict: {summary}"
            metrics["weak_evidence_confirmed"] = confirmed
        return Verdict(verdict(findings), summary, tuple(findings), metrics, _remedy(findings),
                       {"suspects": m.figure} if m.figure is not None else {})

    def _probabilities(self, ctx, y, folds):
        from dnncheck.probes.crossfit import pixel_rows, probe_probabilities, stratified_folds

        fold = stratified_folds(y, folds, ctx.seed)
        flat = pixel_rows(ctx.inputs("train"))
        notes, info_notes, estimates = [], [], {}  # info_notes: the probe plan left the model out
        if self.t.probe:
            if not self._uses_probe(ctx):
                notes.append(f"the model's {ctx.output_info.units} outputs do not match {ctx.dataset.num_classes} classes: "
                             "estimated without it (see loss-sanity)")
            else:
                x, targets = ctx.inputs("train"), ctx.targets("train")
                if ctx.planned("label-noise", folds=folds).kind == "features":  # the compact plan
                    try:
                        estimates.update(ctx.frozen_feature_probabilities(x, y, fold))
                    except ProbeUnavailable as exc:
                        notes.append(f"estimated without the model's features: {exc}")
                    return self._combined(ctx, flat, y, fold, estimates, notes, info_notes)

                def train_on(fit, k):  # a fresh, differently seeded model per fold, as the plan fixes
                    model = ctx.fresh_model(seed=ctx.seed + k)
                    return ctx.train_probe("label-noise", model=model, data=((x[fit], targets[fit]), None)).model

                try:
                    estimates.update(probe_probabilities(x, targets, fold, ctx.dataset.num_classes, train_on,
                                                         ctx.output_info.kind, ctx.device, ctx.max_train_samples,
                                                         ctx.seed))
                except ProbeCutShort:
                    raise
                except ProbeNotRun as exc:
                    info_notes.append(f"estimated without the model's probe: {exc}")
                except ProbeUnavailable as exc:
                    notes.append(f"estimated without the model's probe: {exc}")
        return self._combined(ctx, flat, y, fold, estimates, notes, info_notes)

    @staticmethod
    def _combined(ctx, flat, y, fold, estimates, notes, info_notes):
        """The model's estimates (if any) averaged with the classical ones on the input pixels; with the
        features and folds the label-signal test reuses."""
        from dnncheck.probes.crossfit import classical_probabilities, pca_features

        features = pca_features(flat, ctx.seed)
        estimates.update(classical_probabilities(features, y, fold, ctx.dataset.num_classes,
                                                 with_knn="probe" not in estimates))
        probs = np.mean(list(estimates.values()), axis=0)
        return probs, sorted(estimates), notes, info_notes, (features, structure_rows(flat, features)), fold


@dataclass(frozen=True)
class TargetSignal:
    """A continuous target: whether it carries signal about the inputs (label noise itself is not
    estimated on continuous targets)."""
    signal: LabelSignal


def _judge_target(signal: LabelSignal, t) -> Verdict:
    metrics = signal.metrics()
    if signal.unrelated(t):
        finding = signal.finding()
        return Verdict(Status.FAIL, finding.short, (finding,), metrics,
                       "Check that the target column and the feature rows are aligned, then rerun.")
    said = (f"the targets carry signal about the inputs (out-of-sample R2 {signal.score:.3f}, shuffled targets "
            f"{signal.shuffled_mean:.3f}); label noise on a continuous target is not estimated")
    findings = ()
    if signal.z < t.signal_z:  # no signal, and inputs without structure: nothing to call either way
        said = (f"the targets are not predictable from the inputs (R2 {signal.score:.3f}, shuffled "
                f"{signal.shuffled_mean:.3f}) and the inputs show little structure (nearest-neighbour ratio "
                f"{signal.structure:.2f}): no verdict on the labels")
        findings = (Finding(Status.INFO, said),)
    return Verdict(Status.PASS, said, findings, metrics)


@dataclass(frozen=True)
class ConfidentLearning:
    """cleanlab's reading of out-of-sample probabilities (Northcutt et al., JAIR 2021)."""
    probs: np.ndarray  # N x C, averaged over the estimators
    suspects: np.ndarray  # indices flagged by prune_by_class, worst label quality first
    quality: np.ndarray  # label quality score per sample (self-confidence)
    rate: float  # estimated share of wrong labels (num_label_issues / N)

    @property
    def suggested(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@dataclass(frozen=True)
class LabelNoiseMeasurement:
    classes: tuple[str, ...]
    ids: tuple[str, ...]  # the training samples examined
    y: np.ndarray  # their given labels
    folds: int
    conflicts: tuple  # identical samples with different labels: (id a, id b, label a, label b)
    sampled_note: str | None = None  # "N of M" when train was subsampled
    confident: ConfidentLearning | None = None
    estimators: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # why an estimator was left out
    info_notes: tuple[str, ...] = ()  # estimators the probe plan left out (said once for the audit)
    figure: ImageGrid | None = None  # the top suspects with their images
    probe_gap: ProbeGap | None = None
    signal: LabelSignal | None = None  # whether the labels carry signal about the inputs at all


def _confident_learning(y, probs) -> ConfidentLearning:
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    # one process: by default cleanlab forks a worker per core, and a fork of an audit holding 224-px
    # views (2-3 GB) costs more than the pruning of at most max_train_samples rows it parallelises;
    # the result does not depend on n_jobs (cleanlab's documentation)
    mask = find_label_issues(y, probs, filter_by="prune_by_class", n_jobs=1)
    quality = get_label_quality_scores(y, probs)
    suspects = np.flatnonzero(mask)
    suspects = suspects[np.argsort(quality[suspects], kind="stable")]
    return ConfidentLearning(probs, suspects, quality, num_label_issues(y, probs) / len(y))


def _suspect_findings(m: LabelNoiseMeasurement, t):
    c = m.confident
    suspects, rate = c.suspects, c.rate
    if not len(suspects):
        return []
    severity = Status.PASS
    if rate > t.max_noise_rate:
        severity = Status.FAIL
    elif rate > t.warn_noise_rate:
        severity = Status.WARN
    suggested = c.suggested
    ids = tuple(m.ids[i] for i in suspects)
    given = [m.classes[m.y[i]] for i in suspects]
    proposed = [m.classes[suggested[i]] for i in suspects]
    pairs = {}
    for g, p in zip(given, proposed):
        pairs[f"{g}->{p}"] = pairs.get(f"{g}->{p}", 0) + 1
    top = sorted(pairs.items(), key=lambda kv: -kv[1])[:5]
    if severity is Status.PASS:  # within the tolerated rate: a list worth a look, not a verdict
        severity = Status.INFO
        head = (f"{len(suspects)} training samples may be mislabelled (estimated noise rate {rate:.1%}, within the "
                f"{t.warn_noise_rate:.0%} tolerated)")
    else:
        head = f"{len(suspects)} training samples look mislabelled (estimated noise rate {rate:.1%})"
    return [Finding(severity, f"{head}; most common given->suggested: {', '.join(f'{k} ({v})' for k, v in top)}",
                    samples=ids, headline=head,
                    evidence={"given": given, "suggested": proposed,
                              "label_quality": [round(float(c.quality[i]), 4) for i in suspects]})]


PAIR_ONE_WAY = 3.0  # two classes: a pair finding needs this many times the suspects of the reverse direction


def _pair_findings(m: LabelNoiseMeasurement, t) -> list:
    """Confusions of one class pair, judged per class and apart from the global rate: annotators
    confusing two similar classes is the commonest real label error, and it hides in a global rate (20%
    of MNIST's 7s labelled 1 is 1.4% of all labels). The share is of the given class's training samples
    whose suspects cleanlab suggests as one other class (the confident joint's off-diagonal, pruned)."""
    c = m.confident
    if not len(c.suspects):
        return []
    counts = np.bincount(m.y, minlength=len(m.classes))
    pairs = m.y[c.suspects] * len(m.classes) + c.suggested[c.suspects]
    values, hits = np.unique(pairs, return_counts=True)
    by_pair = dict(zip(values.tolist(), hits.tolist()))
    findings = []
    for value, k in sorted(by_pair.items(), key=lambda vk: -vk[1]):
        given, suggested = divmod(int(value), len(m.classes))
        share = k / max(1, counts[given])
        if k < t.pair_min_samples or share < t.pair_share_warn:
            continue
        reverse = by_pair.get(suggested * len(m.classes) + given, 0)
        if len(m.classes) == 2 and k < PAIR_ONE_WAY * reverse:
            # on two classes every suspect is a pair: only a one-way confusion says more than the rate
            continue
        severity = Status.FAIL if share >= t.pair_share_fail else Status.WARN
        a, b = m.classes[given], m.classes[suggested]
        head = f"{share:.0%} of the training samples labelled {a} look like {b} ({k} of {counts[given]})"
        members = [i for i, p in zip(c.suspects, pairs) if p == value]
        findings.append(Finding(severity, f"{head}: a systematic confusion of two classes (an annotator's or a "
                                f"mapping's), hidden in the global rate; review the {a} samples that look like {b}",
                                samples=tuple(m.ids[i] for i in members), headline=head,
                                evidence={"given": a, "suggested": b, "share": round(share, 4), "suspects": k,
                                          "class_samples": int(counts[given])}))
    return findings


def _conflicting_duplicates(ds) -> list:
    """Identical samples (same decoded content) with different labels, in any split."""
    seen: dict[bytes, tuple[str, int]] = {}
    conflicts = []
    for part in ds.splits.values():
        for sample_id, label, digest in zip(part.ids, part.y, part.digests()):
            first = seen.setdefault(digest, (sample_id, int(label)))
            if first[1] != int(label):
                conflicts.append((first[0], sample_id, ds.classes[first[1]], ds.classes[int(label)]))
    return conflicts


def _conflict_findings(conflicts):
    if not conflicts:
        return []
    return [Finding(Status.FAIL, f"{len(conflicts)} identical sample pair(s) carry different labels",
                    samples=tuple(s for c in conflicts for s in c[:2]),
                    evidence={"pairs": [{"a": a, "b": b, "label_a": la, "label_b": lb}
                                        for a, b, la, lb in conflicts[:100]]})]


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Review the top suspects, relabel or drop the wrong ones and retrain; check the test labels too. "
            "Where relabelling is impossible, lower-capacity models and noise-robust losses memorise wrong "
            "labels less.")


def _estimator_skill(probs: np.ndarray, y: np.ndarray, suggested: np.ndarray, classes: int) -> float:
    """The smaller of how confident the estimators are and how far their out-of-sample accuracy beats
    always predicting the majority class: each 0 at chance, 1 at certainty."""
    chance = 1.0 / max(2, classes)
    confidence = (probs.max(axis=1).mean() - chance) / (1.0 - chance)
    majority = np.bincount(y).max() / len(y)
    accuracy = (np.mean(suggested == y) - majority) / max(1e-9, 1.0 - majority)
    return float(min(confidence, accuracy))


CONCENTRATION_MIN_SUSPECTS = 10  # fewer suspects than this concentrate on a pair by chance
CONCENTRATION_SHARE = 0.5  # one (given -> suggested) pair holding half the suspects is a pattern...
CONCENTRATION_OVER_UNIFORM = 3.0  # ...and at least 3x its share were suspects spread over every pair


def _concentrated_pair(m, c) -> str | None:
    """'N of M suspects labelled A look like B' when one (given -> suggested) class pair holds at
    least CONCENTRATION_SHARE of the suspects and CONCENTRATION_OVER_UNIFORM times the share of a
    uniform spread over the C x (C - 1) pairs: a systematic confusion (every 7 labelled 1) that weak
    estimators still see. Never on two classes, where two pairs hold every suspect by construction."""
    suspects = c.suspects
    classes = len(m.classes)
    if len(suspects) < CONCENTRATION_MIN_SUSPECTS or classes < 2:
        return None
    pairs = m.y[suspects] * classes + c.suggested[suspects]
    values, counts = np.unique(pairs, return_counts=True)
    top = int(np.argmax(counts))
    share = counts[top] / len(suspects)
    if share < max(CONCENTRATION_SHARE, CONCENTRATION_OVER_UNIFORM / (classes * (classes - 1))):
        return None
    given, suggested = divmod(int(values[top]), classes)
    return (f"{counts[top]} of {len(suspects)} suspects labelled {m.classes[given]} look like "
            f"{m.classes[suggested]}")


def _weak_evidence(metrics, skill, threshold) -> str:
    return (f"weak evidence, the estimators are not confident enough to call labels wrong (mean top probability "
            f"{metrics['mean_max_probability']:.2f}, skill {skill:.2f} < {threshold:g}; out-of-sample accuracy "
            f"{metrics['out_of_sample_accuracy']:.2f} on {metrics['train_samples']} training samples): too little data "
            "or too weak a model for this task; review the suspects as candidates, or rerun with a pretrained model")


def _suspect_figure(ds, train, c: ConfidentLearning) -> ImageGrid | None:
    """The FIGURE_SUSPECTS top suspects with their images (decoded here: the judge reads no files)."""
    picks = c.suspects[:FIGURE_SUSPECTS]
    if not ds.is_image or not len(picks):
        return None
    return ImageGrid("Top label-noise suspects (given -> suggested)", [train.x[i] for i in picks],
                     [f"{ds.classes[train.y[i]]}->{ds.classes[c.suggested[i]]}" for i in picks],
                     ids=[train.ids[i] for i in picks])


def _summary(metrics) -> str:
    return (f"{metrics['flagged']} of {metrics['train_samples']} training labels look wrong "
            f"({metrics['flagged_fraction']:.1%} flagged, estimated noise rate {metrics['estimated_noise_rate']:.1%}; "
            f"out-of-sample accuracy {metrics['out_of_sample_accuracy']:.2f})")
