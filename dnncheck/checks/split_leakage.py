"""DNC6 split-leakage: train/val/test exist and are disjoint - no exact or near copies across
splits, no group (patient, subject, camera) in two splits - and share a label distribution."""

from __future__ import annotations

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, verdict

MAX_LISTED = 50
FIGURE_PAIRS = 12


class SplitLeakage(Check):
    """Leakage-free splits: no sample, copy or group crosses from training into evaluation.

    What it checks
        That validation and test splits exist (and whether you provided them); exact duplicates
        across splits (a hash of the decoded pixels or feature row); near duplicates across splits:
        copies shifted by a pixel, re-encoded as JPEG, brightened, or with light noise; duplicates
        whose labels disagree; with a `group` column, any group present in two splits; and the
        label distribution of each split (chi-square test, per-class shares).

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 6: "make sure there is no leakage between
        training, validation and test". A copy of a training image in the test set is graded as if
        unseen, so accuracy is inflated; images of one patient in two splits let the model
        recognise the patient rather than the disease. Tune on validation and touch the test set
        once; with little data use k-fold cross-validation rather than one small split.

    How it is computed
        Exact: blake2b of each sample's decoded array. Near: each image becomes a 16x16 grey,
        mean-centred, L2-normalised descriptor; candidates come from an inverted-file index (k-means
        cells over a 32-d PCA, each query searching its 8 nearest cells, also with copies of itself
        moved one pixel each way) keeping pairs across splits with cosine >= `candidate_cosine`;
        each candidate is verified by the best normalised cross-correlation of the two grey images
        (longer side at most 32 px) over shifts of up to `max_shift` pixels; pairs at or above
        `near_threshold` are near duplicates. Calibrated on MNIST: planted copies score >= 0.995,
        the most similar distinct MNIST digits <= 0.981, two near-identical 8x8 digits 0.989. Tables: cosine of z-scored rows. Label shift:
        scipy's chi2_contingency over split x class counts; it warns when p < `shift_p_value` and a
        class's share differs by more than `shift_min_share_diff`.

    How to fix
        Deduplicate before splitting (keep one copy of each near-duplicate set in one split);
        split by group (sklearn.model_selection.GroupShuffleSplit / StratifiedGroupKFold) so a
        patient or subject stays in one split; stratify splits by class; keep a test set you
        evaluate once, and use k-fold cross-validation when data is small.
    """

    id = "DNC6"
    slug = "split-leakage"
    item = 6
    title = "Leakage-free splits"
    needs = "data"
    thresholds = {
        "near_threshold": (0.99, "shift-tolerant correlation at or above which two images are near duplicates"),
        "candidate_cosine": (0.9, "descriptor cosine a candidate pair needs before verification"),
        "max_shift": (2, "pixels of misalignment the verification tolerates"),
        "table_near_threshold": (0.9999, "tables: cosine of z-scored rows for a near duplicate"),
        "shift_p_value": (0.001, "label shift: chi-square p-value below which to warn"),
        "shift_min_share_diff": (0.05, "label shift: ... and a class share differing by more than this"),
    }

    def run(self, ctx):
        ds = ctx.dataset
        findings = self._splits_present(ds)
        threshold = self.t["near_threshold"] if ds.is_image else self.t["table_near_threshold"]
        pairs = ctx.artifact(("cross_split_pairs", threshold, self.t["candidate_cosine"], self.t["max_shift"]),
                             lambda: _pairs(ctx, threshold, self.t["candidate_cosine"], self.t["max_shift"]))
        group_pairs, group_findings = self._groups(ds)
        findings += self._duplicate_findings(ds, pairs)
        findings += group_findings
        shift_metrics, shift_findings = self._label_shift(ds)
        findings += shift_findings
        metrics = {"exact_duplicate_pairs": sum(p["kind"] == "exact" for p in pairs),
                   "near_duplicate_pairs": sum(p["kind"] == "near" for p in pairs),
                   "leaked_groups": len({p["group"] for p in group_pairs}),
                   "conflicting_label_pairs": sum(p["label_a"] != p["label_b"] for p in pairs),
                   "splits": {n: len(s) for n, s in ds.splits.items()}, **shift_metrics}
        status = verdict(findings)
        figures = {"duplicate_pairs": _pair_images(ds, pairs[:FIGURE_PAIRS])} if pairs else {}
        return self.result(status, _summary(metrics, findings), metrics, findings, self._remedy(findings), figures)

    def _splits_present(self, ds):
        made = [s for s in ("val", "test") if s in ds.made_splits]
        missing = [s for s in ("val", "test") if ds.split(s) is None]
        if not made and not missing:
            return []
        smallest = int(np.bincount(ds.splits["train"].y).min()) if ds.task == "classification" else len(ds.splits["train"])
        kfold = " With this little data, prefer k-fold cross-validation." if smallest < 1000 else ""
        what = ", ".join(f"{s} (carved from train by dnncheck for this audit)" for s in made) or ", ".join(missing)
        return [Finding(Status.WARN, f"no separate {what}: keep a validation split to tune on and a test split you "
                        f"evaluate once.{kfold}", evidence={"made_splits": made, "missing": missing})]

    def _duplicate_findings(self, ds, pairs):
        findings = []
        for kind, label in (("exact", "exact copies"), ("near", "near copies")):
            chosen = [p for p in pairs if p["kind"] == kind]
            if not chosen:
                continue
            by_split = {}
            for p in chosen:
                key = f"{_split_of(ds, p['a'])}-{_split_of(ds, p['b'])}"
                by_split[key] = by_split.get(key, 0) + 1
            samples = tuple(dict.fromkeys(s for p in chosen for s in (p["b"], p["a"])))
            findings.append(Finding(Status.FAIL, f"{len(chosen)} {label} across splits "
                                    f"({', '.join(f'{n} {k}' for k, n in by_split.items())}): evaluation samples the "
                                    "model has effectively seen in training", samples=samples,
                                    evidence={"pairs": [{k: p[k] for k in ("a", "b", "kind", "similarity")} for p in chosen],
                                              "by_splits": by_split}))
        conflicting = [p for p in pairs if p["label_a"] != p["label_b"]]
        if conflicting:
            findings.append(Finding(Status.FAIL, f"{len(conflicting)} duplicate pair(s) carry different labels: at least "
                                    "one label of each pair is wrong",
                                    samples=tuple(s for p in conflicting for s in (p["a"], p["b"])),
                                    evidence={"pairs": [{"a": p["a"], "b": p["b"], "label_a": ds.classes[p["label_a"]]
                                                         if ds.classes else p["label_a"],
                                                         "label_b": ds.classes[p["label_b"]] if ds.classes else p["label_b"]}
                                                        for p in conflicting[:MAX_LISTED]]}))
        return findings

    def _groups(self, ds):
        present = {n: s for n, s in ds.splits.items() if s.groups is not None and len(s)}
        if len(present) < 2:
            return [], []
        where: dict[str, dict[str, list[str]]] = {}
        for name, part in present.items():
            for sample_id, group in zip(part.ids, part.groups):
                where.setdefault(str(group), {}).setdefault(name, []).append(sample_id)
        leaked = {g: splits for g, splits in where.items() if len(splits) > 1}
        if not leaked:
            return [], []
        pairs = []
        for group, splits in leaked.items():
            names = list(splits)
            for k, first in enumerate(names):
                for second in names[k + 1:]:
                    pairs.append({"a": splits[first][0], "b": splits[second][0], "kind": "group", "similarity": 1.0,
                                  "group": group})
        samples = tuple(s for splits in leaked.values() for ids in splits.values() for s in ids)
        named = ", ".join(f"{g} ({'/'.join(s)})" for g, s in list(leaked.items())[:10])
        return pairs, [Finding(Status.FAIL, f"{len(leaked)} group(s) appear in more than one split: {named}",
                               samples=samples, evidence={"pairs": pairs,
                                                          "groups": {g: {n: len(v) for n, v in s.items()}
                                                                     for g, s in list(leaked.items())[:MAX_LISTED]}})]

    def _label_shift(self, ds):
        if ds.task != "classification":
            return {}, []
        from scipy.stats import chi2_contingency

        names = [n for n in ("train", "val", "test") if ds.split(n) is not None]
        counts = np.array([np.bincount(ds.splits[n].y, minlength=ds.num_classes) for n in names])
        counts = counts[:, counts.sum(0) > 0]
        if len(names) < 2 or counts.shape[1] < 2:
            return {}, []
        p_value = float(chi2_contingency(counts).pvalue)
        shares = counts / counts.sum(1, keepdims=True)
        diff = float(np.abs(shares - shares[0]).max())
        metrics = {"label_shift_p_value": round(p_value, 6), "label_share_max_diff": round(diff, 4)}
        if p_value < self.t["shift_p_value"] and diff > self.t["shift_min_share_diff"]:
            present = [c for c, total in zip(ds.classes, np.array([np.bincount(ds.splits[n].y, minlength=ds.num_classes)
                                                                   for n in names]).sum(0)) if total > 0]
            table = {n: {c: round(float(v), 3) for c, v in zip(present, row)} for n, row in zip(names, shares)}
            return metrics, [Finding(Status.WARN, f"label distributions differ between splits (chi-square p = {p_value:.2g}, "
                                     f"a class share differs by {diff:.0%}); stratify the split by class",
                                     evidence={"shares": table})]
        return metrics, []

    @staticmethod
    def _remedy(findings) -> str:
        if not findings:
            return ""
        return ("Deduplicate before splitting; split by group (GroupShuffleSplit / StratifiedGroupKFold) so an "
                "individual stays in one split; stratify by class; keep a test set you evaluate once, and use k-fold "
                "cross-validation when data is small.")


def _pairs(ctx, threshold, candidate_cosine, max_shift):
    from dnncheck.similarity import cross_split_pairs

    return cross_split_pairs(ctx.dataset, threshold, candidate_cosine, max_shift, ctx.seed, ctx.progress)


def _split_of(ds, sample_id: str) -> str:
    where = ds.locate(sample_id)
    return where[0] if where else "?"


def _pair_images(ds, pairs) -> list[dict]:
    """The first pairs with both images, side by side in the HTML report."""
    out = []
    for p in pairs:
        item = {k: p[k] for k in ("a", "b", "kind", "similarity")}
        if ds.is_image:
            item["image_a"], item["image_b"] = ds.sample(p["a"]), ds.sample(p["b"])
        out.append(item)
    return out


def _summary(metrics, findings) -> str:
    if not findings:
        return "splits are disjoint: no exact, near or group overlap; label distributions agree"
    fails = [f for f in findings if f.severity is Status.FAIL]
    if fails:
        return "; ".join(f.message.split(":")[0] for f in fails[:2])
    return findings[0].message.split(":")[0]
