"""DNC9 imbalance: class counts per split, the imbalance ratio, instances per class against the
tutorial's guidance, and what a briefly trained probe does with the minority classes."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import Bars
from dnncheck.checks.base import (ALL_TASKS, FACTOR, SHARE, Check, Finding, ProbeGap, Range, Status, Verdict,
                                  verdict, with_reason)
from dnncheck.errors import ProbeUnavailable
from dnncheck.masks import UBIQUITOUS_SHARE

MAX_LISTED = 20


class Imbalance(Check):
    """Class balance and data volume.

    What it checks
        Counts per class in each split; the imbalance ratio (largest / smallest training class);
        training instances per class against the tutorial's guidance; per-class recall of the
        probe (the model trained briefly on train) on validation, beside the majority-class
        baseline; classes missing from a split. For regression: the target's range per split and
        how much of validation/test lies outside what training covers.

    Why it matters
        Ponti et al. (SIBGRAPI 2021, section II-B/C): deep networks need roughly 1000-1500
        instances per class for coarse categories. With fewer than ~1000, train only a classifier
        on features of a pretrained network (feature extraction) or fine-tune one (transfer
        learning); with 1000-5000, use augmentation and/or transfer learning. With unequal
        classes, accuracy rewards predicting the majority class: a 95/5 split scores 0.95 while
        learning nothing. Report balanced accuracy or macro-F1 and look at per-class recall.

    How it is computed
        Counts from the labels of every split. The probe's predictions on validation (or test)
        give per-class recall, accuracy, balanced accuracy and macro-F1 (scikit-learn); the
        majority baseline always predicts the largest training class. Label encoding: a class with
        no sample in any split (label 0 empty while 1..C are used: 1-based labels), and the best
        one-to-one renaming of the evaluation split's classes (Hungarian assignment on the probe's
        confusion matrix): when it lifts accuracy by `relabel_gain` that split's labels use another
        encoding than train's (shifted, folders in another order). That test needs
        `min_eval_per_class` evaluated samples in every class and a split the user made; a
        class's low recall is judged from that many samples too. Fail when the ratio
        reaches `ratio_fail`, when the probe does no better than the majority baseline on
        imbalanced data, or when a class appears in evaluation but not in train; warn at
        `ratio_warn`, below `small_data_per_class`, or when a split lacks a class.

    How to fix
        Collect more data for the small classes; otherwise use class weights in the loss or a
        balanced sampler (torch.utils.data.WeightedRandomSampler), augmentation, and report
        balanced accuracy / macro-F1. For small data use a pretrained backbone (torchvision's
        resnet18 weights) as a feature extractor or fine-tune it.
    """

    id = "DNC9"
    slug = "imbalance"
    item = None
    title = "Class imbalance and data volume"
    needs = "data, probe run"
    thresholds = {
        "ratio_warn": (3.0, "imbalance ratio (largest / smallest training class) at which to warn"),
        "ratio_fail": (20.0, "imbalance ratio at which to fail"),
        "small_data_per_class": (1000, "fewer training instances per class than this is small data"),
        "augment_per_class": (5000, "below this (and above small data) augmentation/transfer learning helps"),
        "small_data_info_accuracy": (0.9, "probe balanced accuracy at which the small-data advice is info, not a warning"),
        "baseline_margin": (0.02, "the probe must beat the majority baseline's accuracy by this on imbalanced data"),
        "low_recall_factor": (0.5, "a class whose recall is below this times the median recall is named"),
        "relabel_gain": (0.25, "fail when the best one-to-one renaming of the evaluation split's classes raises the probe's accuracy by this"),
        "min_eval_per_class": (20, "evaluated samples a class needs for its recall to be judged; the renaming test needs it in every class (and a split the user made)"),
        "out_of_range_share": (0.05, "regression: share of val/test targets outside train's range that warns"),
        "together_share": (0.95, "multilabel: warn when two labels' Jaccard overlap on train reaches this (they always occur together)"),
    }
    ranges = {
        "ratio_warn": FACTOR,
        "ratio_fail": FACTOR,
        "small_data_per_class": Range(0, 10**9),
        "augment_per_class": Range(0, 10**9),
        "small_data_info_accuracy": SHARE,
        "baseline_margin": SHARE,
        "low_recall_factor": SHARE,
        "relabel_gain": SHARE,
        "min_eval_per_class": Range(1, 1_000_000),
        "out_of_range_share": SHARE,
        "together_share": SHARE,
    }
    ordered = (("ratio_warn", "ratio_fail"), ("small_data_per_class", "augment_per_class"))
    tasks = ALL_TASKS

    def probes(self, ctx) -> dict[str, dict]:
        wants = ctx.dataset.task in ("classification", "segmentation") and ctx.eval_split is not None
        return {"fit": {}} if wants else {}

    def measure(self, ctx) -> "ImbalanceMeasurement":
        ds = ctx.dataset
        if ds.task == "regression":
            targets = {name: ds.splits[name].y for name in ("train", "val", "test") if ds.split(name) is not None}
            ids = {name: tuple(ds.splits[name].ids) for name in targets}
            return ImbalanceMeasurement("regression", tuple(ds.classes), {}, targets=targets, target_ids=ids)
        if ds.task in ("segmentation", "multilabel"):
            m = _per_label_measurement(ctx)
            return replace(m, iou=_probe_iou(ctx)) if ds.task == "segmentation" else m
        counts = {name: np.bincount(part.y, minlength=ds.num_classes) for name, part in ds.splits.items() if len(part)}
        predictions, gap, note = None, None, None
        if ctx.eval_split is None:
            note = "per-class recall not measured: there is no validation or test split"
        else:
            try:
                run = ctx.fit_probe()
                if run.val_outputs is None:
                    note = "per-class recall not measured: there is no validation or test split"
                else:
                    y_true = ctx.targets(ctx.eval_split)[ctx.probe_positions("fit")[1]].numpy()
                    predictions = ProbePredictions(ctx.eval_split, y_true, run.val_outputs.argmax(1).numpy(),
                                                   carved=ctx.eval_split in ds.made_splits)
            except ProbeUnavailable as exc:
                gap = ProbeGap.of(exc)
        return ImbalanceMeasurement("classification", tuple(ds.classes), counts, predictions, gap, note)

    @classmethod
    def judge(cls, m: "ImbalanceMeasurement", t) -> Verdict:
        if m.task == "regression":
            return _judge_regression(m, t)
        if m.task in ("segmentation", "multilabel"):
            return _judge_per_label(m, t)
        train = m.counts["train"]
        present = train[train > 0]
        ratio = float(present.max() / present.min())
        total = sum(m.counts.values())
        metrics = {"imbalance_ratio": round(ratio, 3), "min_class_count": int(present.min()),
                   "max_class_count": int(present.max()), "classes": len(m.classes),
                   "empty_classes": int(np.sum(total == 0))}
        probe_metrics, probe_findings = _probe_findings(m, train, ratio, t)
        findings = _ratio_findings(m.classes, train, ratio, t)
        findings += _volume_findings(m.classes, train, t, probe_metrics.get("probe_balanced_accuracy"))
        findings += _coverage_findings(m.classes, m.counts)
        metrics.update(probe_metrics)
        findings += probe_findings
        # the reason first: a warn or fail whose summary reads like a healthy one misleads
        summary = with_reason(_summary(len(m.classes), train, ratio, probe_metrics), findings)
        figures = {"class_counts": Bars("Class counts per split", list(m.classes),
                                        {s: c.tolist() for s, c in m.counts.items()}, "samples")}
        if "per_class_recall" in probe_metrics:
            recall = probe_metrics["per_class_recall"]
            figures["per_class_recall"] = Bars("Per-class recall of the probe", list(recall),
                                               {"recall": list(recall.values())}, "recall")
        return Verdict(verdict(findings), summary, tuple(findings), metrics, _remedy(ratio, int(present.min()), t),
                       figures)


@dataclass(frozen=True)
class ProbePredictions:
    """The shared probe's predicted classes on (a sample of) the evaluation split."""
    split: str
    y_true: np.ndarray
    y_pred: np.ndarray
    carved: bool = False  # dnncheck made this split from train: its labels cannot be encoded differently


@dataclass(frozen=True)
class ImbalanceMeasurement:
    task: str
    classes: tuple[str, ...]
    counts: dict  # split -> samples per class (classification)
    predictions: ProbePredictions | None = None
    probe_gap: ProbeGap | None = None
    no_recall_note: str | None = None  # why per-class recall was not measured, when it was not
    targets: dict | None = None  # regression: split -> target values
    target_ids: dict | None = None  # regression: split -> sample ids
    pixels: dict | None = None  # segmentation: split -> pixels per class (counts: images holding each class)
    together: np.ndarray | None = None  # multilabel: (C, C) samples of train holding both labels
    label_sets: dict | None = None  # multilabel: split -> (mean labels per sample, samples with no label)
    samples: int = 0  # training samples (segmentation, multilabel)
    iou: dict | None = None  # segmentation: per-class IoU of the probe on the evaluation split (or its gap)


# -- findings ---------------------------------------------------------------------------------
def _ratio_findings(classes, train, ratio, t):
    if ratio < t.ratio_warn:
        return []
    severity = Status.FAIL if ratio >= t.ratio_fail else Status.WARN
    small = np.argsort(train)[: min(3, len(train))]
    named = ", ".join(f"{classes[i]} ({train[i]})" for i in small)
    head = (f"imbalance ratio {ratio:.1f}: the smallest classes are {named} against "
            f"{classes[int(np.argmax(train))]} ({train.max()})")
    return [Finding(severity, f"{head}; prefer balanced accuracy or macro-F1 over accuracy",
                    evidence={"train_counts": dict(zip(classes, train.tolist()))}, headline=head)]


def _volume_findings(classes, train, t, probe_balanced_accuracy=None):
    smallest = int(train[train > 0].min())
    if smallest >= t.augment_per_class:
        return []
    if smallest < t.small_data_per_class:
        volume, advice = "small data", ("below the ~1000-1500 instances per class deep networks need for coarse "
                                        "categories; use a pretrained network as a feature extractor or fine-tune it "
                                        "(transfer learning)")
    else:
        volume, advice = "moderate data", "augmentation and/or transfer learning will help"
    below = [classes[i] for i in np.flatnonzero((train > 0) & (train < t.small_data_per_class))]
    head = f"{smallest} training instances in the smallest class (median {int(np.median(train))}): {volume}"
    # the rule of thumb is advice, not a defect, once a brief probe already does well on held-out data
    learned = probe_balanced_accuracy is not None and probe_balanced_accuracy >= t.small_data_info_accuracy
    if learned:
        advice += f" (the probe already reaches {probe_balanced_accuracy:.2f} balanced accuracy)"
    return [Finding(Status.INFO if learned else Status.WARN, f"{head}: {advice}", headline=head,
                    evidence={"classes_below_small_data": below[:MAX_LISTED],
                              "small_data_per_class": t.small_data_per_class})]


def _coverage_findings(classes, counts):
    findings = _empty_class_findings(classes, counts)
    train = counts["train"]
    for split, c in counts.items():
        if split == "train":
            continue
        unseen = [classes[i] for i in np.flatnonzero((c > 0) & (train == 0))]
        if unseen:
            head = f"{split} has classes that train lacks: {', '.join(unseen[:MAX_LISTED])}"
            findings.append(Finding(Status.FAIL, f"{head}; the model can never predict them",
                                    evidence={"split": split, "classes": unseen}, headline=head))
        absent = [classes[i] for i in np.flatnonzero((c == 0) & (train > 0))]
        if absent:
            head = f"{split} has no samples of {len(absent)} class(es): {', '.join(absent[:MAX_LISTED])}"
            findings.append(Finding(Status.WARN, f"{head}; their recall cannot be measured",
                                    evidence={"split": split, "classes": absent}, headline=head))
    return findings


def _empty_class_findings(classes, counts):
    """Classes with no sample in any split: the model still gets an output unit for each, which is
    never a target, and the imbalance ratio (over present classes) cannot show them."""
    total = sum(counts.values())
    empty = [classes[i] for i in np.flatnonzero(total == 0)]
    if not empty:
        return []
    numbered = all(name.isdigit() for name in classes)
    if numbered and empty == [classes[0]]:
        head = f"class 0 has no samples in any split while 1..{len(classes) - 1} do: the labels look 1-based"
        return [Finding(Status.FAIL, f"{head}; subtract 1 so they run 0..C-1 (the model gets an output unit for "
                        "class 0 that is never a target)", evidence={"empty_classes": empty}, headline=head)]
    what = "label values" if numbered else "classes"
    head = f"{len(empty)} {what} have no samples in any split: {', '.join(empty[:MAX_LISTED])}"
    return [Finding(Status.WARN, f"{head}; each still gets an output unit (renumber the labels, or drop the empty "
                    "class folders)", evidence={"empty_classes": empty}, headline=head)]


def _probe_findings(m: ImbalanceMeasurement, train, ratio, t):
    """Per-class recall and baselines of the shared probe run on the evaluation split."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    if m.probe_gap is not None:
        return {}, [m.probe_gap.finding("per-class recall not measured: the probe could not train")]
    if m.predictions is None:
        return {}, [Finding(Status.WARN, m.no_recall_note or "per-class recall not measured")]
    y_true, y_pred, classes = m.predictions.y_true, m.predictions.y_pred, m.classes
    labels = np.arange(len(classes))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    majority = int(np.argmax(train))
    metrics = {
        "evaluated_on": m.predictions.split, "evaluated_samples": int(len(y_true)),
        "probe_accuracy": round(float(np.mean(y_true == y_pred)), 4),
        "probe_balanced_accuracy": round(float(balanced_accuracy_score(y_true, y_pred)), 4),
        "probe_macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
        "majority_baseline_accuracy": round(float(np.mean(y_true == majority)), 4),
        "per_class_recall": {classes[i]: round(float(recall[i]), 4) for i in labels if np.any(y_true == i)},
    }
    findings = []
    if ratio >= t.ratio_warn and metrics["probe_accuracy"] <= metrics["majority_baseline_accuracy"] + t.baseline_margin:
        findings.append(Finding(Status.FAIL, f"the probe's accuracy {metrics['probe_accuracy']:.3f} is no better than "
                                f"always predicting {classes[majority]} ({metrics['majority_baseline_accuracy']:.3f})",
                                evidence={"majority_class": classes[majority]}))
    findings += _encoding_findings(m.predictions, classes, metrics, t)
    measured = np.array(list(metrics["per_class_recall"].values()))
    evaluated = dict(zip(classes, np.bincount(y_true, minlength=len(classes))))
    # a recall of 0 or 0.5 from two samples is noise, not a class the probe fails on
    low = [(name, r) for name, r in metrics["per_class_recall"].items()
           if r < t.low_recall_factor * float(np.median(measured)) and evaluated[name] >= t.min_eval_per_class]
    chance = 1.0 / max(1, len(metrics["per_class_recall"]))
    if low and ratio < t.ratio_warn and metrics["probe_balanced_accuracy"] <= chance + t.baseline_margin:
        # balanced classes and a probe at chance (e.g. a compact probe of a large model): which class
        # it happens to predict is arbitrary, not a class the data under-serves
        findings.append(Finding(Status.INFO, f"per-class recall not judged: the probe's balanced accuracy "
                                f"{metrics['probe_balanced_accuracy']:.2f} is at chance ({chance:.2f}) on balanced classes"))
    elif low:
        findings.append(Finding(Status.WARN, "classes the probe rarely recognises: " +
                                ", ".join(f"{n} (recall {r:.2f})" for n, r in low[:MAX_LISTED]),
                                evidence={"low_recall": dict(low)}))
    return metrics, findings


def _encoding_findings(predictions: ProbePredictions, classes, metrics, t):
    """Labels of the evaluation split in another encoding than train's (shifted by one, folders in
    another order, another label map): the probe then predicts one other class consistently for each
    true class. The best one-to-one renaming of the classes (Hungarian assignment on the confusion
    matrix, scipy's linear_sum_assignment) shows it: identity on consistent labels, a permutation that
    lifts accuracy far above the raw one on re-encoded labels. Not run on a split dnncheck carved from
    train (one label map by construction), nor when an evaluated class has fewer than
    `min_eval_per_class` samples: a weak probe's confusions among 2-3 samples per class make
    chance permutations that lift accuracy by 0.25 (3 of 8 seeds at 12 images per class)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import confusion_matrix

    y_true, y_pred, split = predictions.y_true, predictions.y_pred, predictions.split
    if len(y_true) == 0:
        return []
    if predictions.carved:
        metrics["relabel_test"] = f"not run: dnncheck made the {split} split from train"
        return []
    smallest = int(np.bincount(y_true)[np.unique(y_true)].min())
    if smallest < t.min_eval_per_class:
        metrics["relabel_test"] = (f"not run: {smallest} {split} sample(s) in the smallest evaluated class, fewer "
                                   f"than min_eval_per_class ({t.min_eval_per_class})")
        return []
    confusion = confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))
    rows, cols = linear_sum_assignment(-confusion)
    renamed_accuracy = float(confusion[rows, cols].sum() / len(y_true))
    metrics["renamed_accuracy"] = round(renamed_accuracy, 4)
    if renamed_accuracy - metrics["probe_accuracy"] < t.relabel_gain:
        return []
    moved = [(classes[r], classes[c], confusion[r, c] / max(confusion[r].sum(), 1))
             for r, c in zip(rows, cols) if r != c and confusion[r, c] > 0]
    moved.sort(key=lambda m: -m[2])
    named = ", ".join(f"{a} -> {b} ({share:.0%})" for a, b, share in moved[:8])
    head = (f"{split} labels look encoded differently from train's: the probe consistently predicts another class "
            f"({named})")
    return [Finding(Status.FAIL, f"{head}; renaming {len(moved)} class(es) lifts its accuracy from "
                    f"{metrics['probe_accuracy']:.2f} to {renamed_accuracy:.2f}. Make every split's labels with one "
                    "label map (same class order, same 0- or 1-based numbering)",
                    evidence={"split": split, "mapping": {a: b for a, b, _ in moved},
                              "renamed_accuracy": round(renamed_accuracy, 4)}, headline=head)]


def _remedy(ratio, smallest, t):
    parts = []
    if ratio >= t.ratio_warn:
        parts.append("Weight the loss by inverse class frequency or use a balanced sampler "
                     "(WeightedRandomSampler); report balanced accuracy and macro-F1, not accuracy.")
    if smallest < t.small_data_per_class:
        parts.append("Small data: start from a pretrained network (feature extraction or fine-tuning) "
                     "and augment; collect more samples for the smallest classes.")
    elif smallest < t.augment_per_class:
        parts.append("Use augmentation and/or transfer learning.")
    return " ".join(parts)


# -- regression ---------------------------------------------------------------------------------
HISTOGRAM_BINS = 20  # of train's target range, to find parts with no training example


def _judge_regression(m: ImbalanceMeasurement, t) -> Verdict:
    train = m.targets["train"]
    lo, hi = float(train.min()), float(train.max())
    metrics = {"target_min": lo, "target_max": hi, "target_mean": float(train.mean()), "target_std": float(train.std())}
    hist, edges = np.histogram(train, bins=HISTOGRAM_BINS)
    interior_empty = int(np.sum(hist[1:-1] == 0))
    metrics["train_histogram_empty_bins"] = interior_empty
    findings = []
    for name in ("val", "test"):
        if name not in m.targets:
            continue
        y = m.targets[name]
        outside_mask = (y < lo) | (y > hi)
        outside = float(np.mean(outside_mask))
        metrics[f"{name}_outside_train_range"] = round(outside, 4)
        if outside > t.out_of_range_share:
            findings.append(Finding(Status.WARN, f"{outside:.1%} of {name} targets lie outside train's range "
                                    f"[{lo:.4g}, {hi:.4g}]: the model must extrapolate",
                                    samples=tuple(np.array(m.target_ids[name])[outside_mask][:MAX_LISTED])))
    if interior_empty:
        findings.append(Finding(Status.WARN, f"{interior_empty} of {HISTOGRAM_BINS} histogram bins inside train's target "
                                "range are empty: parts of the range have no training examples"))
    figures = {"target_histogram": Bars("Training target histogram", [f"{e:.3g}" for e in edges[:-1]],
                                        {"train": hist.tolist()}, "samples")}
    summary = f"regression target in [{lo:.4g}, {hi:.4g}] over {len(train)} training samples"
    return Verdict(verdict(findings), summary, tuple(findings), metrics,
                   "Collect samples for the uncovered target ranges; stratify splits on target quantiles.", figures)


def _summary(num_classes, train, ratio, probe_metrics) -> str:
    text = (f"{num_classes} classes, {int(train.min())}-{int(train.max())} training instances per class, "
            f"imbalance ratio {ratio:.1f}")
    if "probe_balanced_accuracy" in probe_metrics:
        text += (f"; probe balanced accuracy {probe_metrics['probe_balanced_accuracy']:.2f} "
                 f"vs majority baseline {probe_metrics['majority_baseline_accuracy']:.2f}")
    return text


# -- segmentation and multi-label -------------------------------------------------------------------
def _per_label_measurement(ctx) -> ImbalanceMeasurement:
    """Per split: images holding each class and pixels per class (segmentation), or samples carrying
    each label, labels per sample and train's co-occurrence counts (multilabel). Every sample counts."""
    from dnncheck.masks import pixel_counts, presence, train_pixel_counts

    ds = ctx.dataset
    parts = {name: part for name, part in ds.splits.items() if len(part)}
    c = ds.num_classes
    if ds.task == "segmentation":
        return ImbalanceMeasurement("segmentation", tuple(ds.classes),
                                    {name: presence(p.y, c).sum(0) for name, p in parts.items()},
                                    pixels={name: train_pixel_counts(ctx) if name == "train" else pixel_counts(p.y, c)
                                            for name, p in parts.items()},
                                    samples=len(ds.splits["train"]))
    train = ds.splits["train"].y.astype(np.int64)
    return ImbalanceMeasurement("multilabel", tuple(ds.classes),
                                {name: p.y.sum(0).astype(np.int64) for name, p in parts.items()},
                                together=train.T @ train,
                                label_sets={name: (float(p.y.sum(1).mean()), int(np.sum(p.y.sum(1) == 0)))
                                            for name, p in parts.items()}, samples=len(train))


def _judge_per_label(m: ImbalanceMeasurement, t) -> Verdict:
    """Coverage of every class (label) in every split, the ratio between the rarest and the commonest
    (images holding a class for segmentation, whose pixel shares are reported beside it; samples
    carrying a label for multilabel) and, for multilabel, labels that always occur together."""
    train = m.counts["train"]
    # a class in (nearly) every training image is the background every mask has: rare classes are
    # rare against each other, not against it
    ubiquitous = train >= UBIQUITOUS_SHARE * m.samples if m.task == "segmentation" else np.zeros(len(train), bool)
    compared = np.flatnonzero((train > 0) & ~ubiquitous)
    if len(compared) == 0:
        compared = np.flatnonzero(train > 0)
    present = train[compared]
    ratio = float(present.max() / present.min())
    unit = "images holding it" if m.task == "segmentation" else "samples carrying it"
    metrics = {"imbalance_ratio": round(ratio, 3), "min_class_count": int(present.min()),
               "max_class_count": int(present.max()), "classes": len(m.classes), "count_of": unit,
               "ratio_leaves_out": [m.classes[i] for i in np.flatnonzero(ubiquitous)]}
    findings = _coverage_findings(m.classes, m.counts)
    findings += _ratio_findings([m.classes[i] for i in compared], present, ratio, t)
    figures = {"class_counts": Bars(f"Per class: {unit}, per split", list(m.classes),
                                    {s: c.tolist() for s, c in m.counts.items()}, "samples")}
    if m.task == "segmentation":
        findings += _pixel_share_findings(m, metrics)
        findings += _iou_findings(m, metrics, figures)
        figures["pixel_share"] = Bars("Share of pixels per class", list(m.classes),
                                      {s: list(shares.values()) for s, shares in metrics["pixel_share"].items()}, "share")
        left_out = metrics["ratio_leaves_out"]
        what = (f"{len(m.classes)} classes, {int(present.min())}-{int(present.max())} training images hold each"
                + (f" (besides {', '.join(left_out[:3])}, in nearly every image)" if left_out else ""))
    else:
        findings += _together_findings(m, t, metrics)
        metrics["labels_per_sample"] = {s: round(v[0], 3) for s, v in m.label_sets.items()}
        metrics["samples_without_label"] = {s: v[1] for s, v in m.label_sets.items()}
        what = (f"{len(m.classes)} labels, {int(present.min())}-{int(present.max())} training samples carry each, "
                f"{m.label_sets['train'][0]:.2f} labels per sample")
    summary = with_reason(f"{what}, imbalance ratio {ratio:.1f}", findings)
    remedy = ("Collect images of the missing or rare classes; weight the loss by inverse class frequency (or use a "
              "Dice loss for segmentation); report per-class IoU/Dice or per-label average precision, not accuracy."
              if verdict(findings) is not Status.PASS else "")
    return Verdict(verdict(findings), summary, tuple(findings), metrics, remedy, figures)


def _probe_iou(ctx) -> dict | None:
    """Per-class intersection over union of the shared probe's class maps on (a sample of) the
    evaluation split: {"split", "iou": [per class, NaN where a class is in neither], "baseline"
    (mean IoU of predicting the commonest training class everywhere)}; {"gap": ProbeGap} when the
    probe did not finish; None without an evaluation split."""
    from dnncheck.masks import train_pixel_counts

    if ctx.eval_split is None:
        return None
    try:
        run = ctx.fit_probe()
    except ProbeUnavailable as exc:
        return {"gap": ProbeGap.of(exc)}
    if run.val_outputs is None:
        return None
    truth = ctx.targets(ctx.eval_split)[ctx.probe_positions("fit")[1]].numpy().astype(np.int64)
    guess = run.val_outputs.numpy().astype(np.int64)
    classes = ctx.dataset.num_classes
    common = int(np.argmax(train_pixel_counts(ctx)))
    return {"split": ctx.eval_split, "iou": _iou(truth, guess, classes).tolist(),
            "baseline": float(np.nanmean(_iou(truth, np.full_like(truth, common), classes)))}


def _iou(truth: np.ndarray, guess: np.ndarray, classes: int) -> np.ndarray:
    both = np.bincount(truth[truth == guess].ravel(), minlength=classes)[:classes].astype(float)
    union = (np.bincount(truth.ravel(), minlength=classes)[:classes] +
             np.bincount(guess.ravel(), minlength=classes)[:classes] - both)
    return np.divide(both, union, out=np.full(classes, np.nan), where=union > 0)


def _iou_findings(m: ImbalanceMeasurement, metrics, figures) -> list:
    if not m.iou:
        return []
    if "gap" in m.iou:
        return [m.iou["gap"].finding("per-class IoU not measured")]
    iou = np.array(m.iou["iou"], dtype=float)
    metrics["per_class_iou"] = {c: (None if np.isnan(v) else round(float(v), 4)) for c, v in zip(m.classes, iou)}
    metrics["probe_mean_iou"] = round(float(np.nanmean(iou)), 4)
    metrics["background_baseline_mean_iou"] = round(m.iou["baseline"], 4)
    figures["per_class_iou"] = Bars(f"Per-class IoU of the probe on {m.iou['split']}", list(m.classes),
                                    {"IoU": [0.0 if np.isnan(v) else round(float(v), 4) for v in iou]}, "IoU")
    worst = [int(i) for i in np.argsort(np.nan_to_num(iou, nan=np.inf))[:3] if not np.isnan(iou[i])]
    shown = ", ".join(f"{m.classes[i]} ({iou[i]:.2f})" for i in worst)
    head = (f"the probe's mean IoU on {m.iou['split']} is {metrics['probe_mean_iou']:.2f} against "
            f"{metrics['background_baseline_mean_iou']:.2f} for the commonest class everywhere; lowest: {shown}")
    return [Finding(Status.INFO, f"{head} (a brief probe: which classes are hard, not how good a model can get)",
                    evidence={"per_class_iou": metrics["per_class_iou"]}, headline=head)]


def _pixel_share_findings(m: ImbalanceMeasurement, metrics) -> list:
    pixels = m.pixels["train"]
    share = pixels / max(1, pixels.sum())
    metrics["pixel_share"] = {name: {c: round(float(v), 4) for c, v in zip(m.classes, p / max(1, p.sum()))}
                              for name, p in m.pixels.items()}
    top = int(np.argmax(share))
    head = f"class {m.classes[top]} covers {share[top]:.0%} of the training pixels"
    return [Finding(Status.INFO, f"{head}: a model predicting it everywhere scores {share[top]:.2f} pixel accuracy; "
                    "judge the model by per-class IoU or Dice", evidence={"pixel_share": metrics["pixel_share"]["train"]},
                    headline=head)]


def _together_findings(m: ImbalanceMeasurement, t, metrics) -> list:
    both = m.together
    counts = np.diag(both).astype(float)
    union = counts[:, None] + counts[None, :] - both
    jaccard = np.divide(both, union, out=np.zeros_like(union), where=union > 0)
    pairs = [(i, j) for i in range(len(counts)) for j in range(i + 1, len(counts))
             if counts[i] > 0 and jaccard[i, j] >= t.together_share]
    metrics["labels_always_together"] = len(pairs)
    if not pairs:
        return []
    shown = ", ".join(f"{m.classes[i]} & {m.classes[j]} ({jaccard[i, j]:.0%})" for i, j in pairs[:5])
    head = f"{len(pairs)} label pair(s) occur together in almost every training sample that has either: {shown}"
    return [Finding(Status.WARN, f"{head}; the model cannot learn to tell them apart (duplicated columns, or one "
                    "label implied by the other)", evidence={"pairs": [[m.classes[i], m.classes[j]] for i, j in pairs]},
                    headline=head)]
