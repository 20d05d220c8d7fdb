"""DNC6 split-leakage: train/val/test exist and are disjoint - no exact or near copies across
splits, no group (patient, subject, camera) in two splits - and share a label distribution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dnncheck.figures import ImageGrid
from dnncheck.checks.base import ALL_TASKS, AUC, POSITIVE_SHARE, SHARE, Check, Finding, Range, Status, Verdict, verdict
from dnncheck.similarity import SPLIT_ORDER

MAX_LISTED = 50
FIGURE_PAIRS = 12


class SplitLeakage(Check):
    """Leakage-free splits: no sample, copy or group crosses from training into evaluation.

    What it checks
        That validation and test splits exist (and whether you provided them); exact duplicates
        (a hash of the decoded pixels or feature row); near duplicates: copies shifted by a
        pixel, re-encoded, brightened, contrast-changed, noised or resampled (blurred), and, for
        photos, crops down to 60% of the side and below, mirror images and rescaled copies -
        across splits (fail) and within one split (warn: they weight the loss); duplicates whose
        labels disagree; with a `group` column, any group present in two splits; for tables, a
        single feature that predicts the label; covariate shift between splits; and the label
        distribution of each split (chi-square test, per-class shares).

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 6: "make sure there is no leakage between
        training, validation and test". A copy of a training image in the test set is graded as if
        unseen, so accuracy is inflated; images of one patient in two splits let the model
        recognise the patient rather than the disease. Barz & Denzler (2020) found near
        duplicates of training images for 3.3% of CIFAR-10's and 10% of CIFAR-100's test images.
        Tune on validation and touch the test set once; with little data use k-fold
        cross-validation rather than one small split.

    How it is computed
        Exact: blake2b of each sample's decoded array. Near (kind `near`): each image's 16x16
        grey, mean-centred, L2-normalised descriptor (from the data pass's records); candidates
        from faiss (an exact inner-product index, an inverted file above 4,096 samples) with
        cosine >= `candidate_cosine`, each split searched by its own samples and by every later
        split, also with copies of each query moved one pixel each way; each candidate verified
        by the best normalised cross-correlation of the two grey copies (longer side <= 32 px)
        over shifts of up to `max_shift` pixels and, at that shift, with either image blurred by
        a Gaussian of sigma 0.5-1.5 px (18 px and larger); pairs at or above `near_threshold`.
        Calibrated on MNIST: planted copies (resampled ones included) >= 0.986, the most similar
        distinct digits 0.982; in 8x8 digits distinct 1s reach 0.994, so images under 16 px are
        searched within a split for exact copies only. Photos (kind `geometric`): ORB keypoints
        of the image and of its mirror image (Rublee et al. 2011; OpenCV, stored in the records)
        matched through a faiss binary index, pairs of images with 5+ matches verified by a
        RANSAC fit of a rotation+scale+translation (spatial verification as in copy detection,
        Douze et al. 2021): `geometric_inliers` keypoints agreeing at a size ratio <= 2.5.
        Optional learned embeddings (kind `embedding`, `embedding` = "model" or
        "torchvision:<name>"): cosine >= `embedding_cosine`. Tables (4 features or more; fewer
        and distinct rows lie close by chance): 2a.b/(|a|^2+|b|^2) of z-scored rows, which unlike
        a cosine also tells a row from a scaled copy of it. Label shift: scipy's
        chi2_contingency over split x class counts; it warns when p < `shift_p_value` and a
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
    tasks = ALL_TASKS
    thresholds = {
        "near_threshold": (0.99, "shift-tolerant correlation at or above which two images are near duplicates"),
        "candidate_cosine": (0.9, "descriptor cosine a candidate pair needs before verification"),
        "max_shift": (2, "pixels of misalignment the verification tolerates"),
        "geometric_inliers": (10, "photos: ORB keypoints agreeing on one transform (RANSAC inliers) for a crop/mirror/rescaled copy"),
        "embedding": ("", "learned embeddings searched as well: \"model\" (your model's penultimate features, with --weights) or \"torchvision:<name>\" (cached pretrained weights); empty: off"),
        "embedding_cosine": (0.95, "cosine of two learned embeddings at which they are a pair (kind 'embedding')"),
        "table_near_threshold": (0.9999, "tables: similarity 2a.b/(|a|^2+|b|^2) of z-scored rows for a near duplicate"),
        "near_fail_share": (0.01, "look-alike copies (kinds near, geometric, embedding) across splits, and look-alikes with different labels, fail when they reach this share of an evaluation split (of all samples for labels); fewer warn"),
        "within_warn_share": (0.01, "look-alike duplicates (near, geometric, embedding) within a split warn when they reach this share of its samples; fewer are info"),
        "shift_p_value": (0.001, "label shift: chi-square p-value below which to warn"),
        "shift_min_share_diff": (0.05, "label shift: ... and a class share differing by more than this"),
        "split_shift_auc": (0.8, "warn when a domain classifier tells train inputs from val/test inputs with this AUC"),
        "feature_leak_score": (0.99, "tables: a feature alone predicting the label this well (balanced accuracy, or R^2) leaks it"),
    }
    texts = {"embedding": '"" (off), "model" or "torchvision:<name>"'}
    ranges = {
        "near_threshold": POSITIVE_SHARE,
        "candidate_cosine": Range(0.5, 1.0),  # lower, nearly every pair becomes a candidate to verify
        "max_shift": Range(0, 8),
        "geometric_inliers": Range(4, 10_000),  # a transform needs 3 points; RANSAC a 4th
        "embedding_cosine": Range(0.5, 1.0),
        "table_near_threshold": Range(0.5, 1.0),
        "near_fail_share": SHARE,
        "within_warn_share": SHARE,
        "shift_p_value": SHARE,
        "shift_min_share_diff": SHARE,
        "split_shift_auc": AUC,
        "feature_leak_score": SHARE,
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        from dnncheck.embeddings import check_setting

        check_setting(self.t.embedding, self.slug)  # exit 2 before any check runs, not halfway through
        # the search reads records only; the user's model only for embedding = "model": without it an
        # audit of data checks neither builds the model nor imports torch (a pre-commit hook's case)
        self.uses_model = self.t.embedding == "model"

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx) -> "SplitLeakageMeasurement":
        ds = ctx.dataset
        threshold = self.t.near_threshold if ds.is_image else self.t.table_near_threshold
        key = ("duplicate_pairs", threshold, self.t.candidate_cosine, self.t.max_shift, self.t.geometric_inliers)
        found = ctx.artifact(key, lambda: _pairs(ctx, threshold, self.t))
        if self.t.embedding:
            found = found + _embedding_pairs(ctx, self.t, {frozenset((p["a"], p["b"])) for p in found}, self.slug)
        # a split dnncheck carved out of train is part of the user's train folder: its pairs with train
        # (or with another carved split) are copies inside one split the user made, not leakage
        made = tuple(s for s in ("val", "test") if s in ds.made_splits)
        pairs = [p for p in found if _source(p["split_a"], made) != _source(p["split_b"], made)]
        within = tuple(p for p in found if _source(p["split_a"], made) == _source(p["split_b"], made))
        train = ds.splits["train"]
        smallest = int(np.bincount(train.y).min()) if ds.task == "classification" else len(train)
        names = [n for n in ("train", "val", "test") if ds.split(n) is not None]
        label_counts = {n: np.bincount(ds.splits[n].y, minlength=ds.num_classes) for n in names} \
            if ds.task == "classification" else {}
        # label sets or masks: named only when a pair's two annotations differ (hashing every mask again)
        named = ds.task not in ("segmentation", "multilabel") or not any(
            p["label_a"] != p["label_b"] for p in (*pairs, *within))
        return SplitLeakageMeasurement(
            tuple(ds.classes) if named else tuple(annotation_names(ds)), made,
            tuple(s for s in ("val", "test") if ds.split(s) is None), smallest, tuple(pairs), _group_members(ds),
            label_counts, {n: len(part) for n, part in ds.splits.items()},
            _pair_images(ds, (pairs or list(within))[:FIGURE_PAIRS]) if (pairs or within) and ds.is_image else None,
            {} if ds.is_image else _single_feature_scores(ds, ctx.seed), _split_shift(ds, ctx.seed),
            None if ds.is_image else _feature_count(ds), within,
            _cluster_images(ds, duplicate_clusters((*pairs, *within), made)) if ds.is_image else (),
            ds.task == "segmentation")

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "SplitLeakageMeasurement", t) -> Verdict:
        clusters = duplicate_clusters((*m.pairs, *m.within_pairs), m.made_splits)
        findings = _splits_present(m)
        group_pairs, group_findings = _group_findings(m.leaked_groups)
        findings += _duplicate_findings(m, t, clusters)
        findings += group_findings
        findings += _feature_leak_findings(m.feature_scores, t)
        findings += _split_shift_findings(m.shift_auc, t)
        findings += _near_search_findings(m.table_features)
        if m.feature_scores:
            best = max(m.feature_scores, key=m.feature_scores.get)
            metrics_extra = {"best_single_feature": best, "best_single_feature_score": m.feature_scores[best]}
        else:
            metrics_extra = {}
        shift_metrics, shift_findings = _label_shift(m, t)
        findings += shift_findings
        pairs = m.pairs
        metrics = {"exact_duplicate_pairs": sum(p["kind"] == "exact" for p in pairs),
                   "near_duplicate_pairs": sum(p["kind"] == "near" for p in pairs),
                   "geometric_duplicate_pairs": sum(p["kind"] == "geometric" for p in pairs),
                   "embedding_duplicate_pairs": sum(p["kind"] == "embedding" for p in pairs),
                   "within_split_duplicate_pairs": len(m.within_pairs),
                   "duplicate_clusters_across_splits": sum(bool(c["leaked"]) for c in clusters),
                   "leaked_evaluation_samples": sum(n for c in clusters for n in c["leaked"].values()),
                   "leaked_groups": len({p["group"] for p in group_pairs}),
                   "conflicting_label_pairs": len(_conflicting(m, pairs)),
                   "splits": dict(m.split_sizes), **shift_metrics, **metrics_extra,
                   **({"split_shift_auc": dict(m.shift_auc)} if m.shift_auc else {})}
        figures = {"duplicate_pairs": m.pair_figure} if m.pair_figure is not None else {}
        figures.update({f"duplicate_cluster_{k}": grid for k, grid in enumerate(m.cluster_figures, 1)})
        return Verdict(verdict(findings), _summary(findings), tuple(findings), metrics, _remedy(findings), figures)


@dataclass(frozen=True)
class SplitLeakageMeasurement:
    classes: tuple[str, ...]  # segmentation/multilabel with differing annotations: names of what label_a/b index
    made_splits: tuple[str, ...]  # val/test carved from train by dnncheck for this audit
    missing_splits: tuple[str, ...]
    smallest_train_class: int  # (regression: the training split's size)
    pairs: tuple[dict, ...]  # cross-split duplicates: a, b, kind, similarity, label_a, label_b, split_a, split_b
    leaked_groups: dict  # group -> split -> sample ids, for groups found in more than one split
    label_counts: dict  # split -> samples per class (classification)
    split_sizes: dict
    pair_figure: ImageGrid | None  # the first pairs side by side (images only)
    feature_scores: dict = field(default_factory=dict)  # tables: feature -> how well it alone predicts the label
    shift_auc: dict = field(default_factory=dict)  # split -> AUC of a classifier telling its inputs from train's
    table_features: int | None = None  # tables: columns per row (images: None)
    within_pairs: tuple[dict, ...] = ()  # duplicates inside one split, same fields as pairs
    cluster_figures: tuple[ImageGrid, ...] = ()  # the largest clusters, a row of thumbnails each (images only)
    masks: bool = False  # segmentation: label_a/label_b name masks


def annotation_names(ds) -> list[str]:
    """Names of the annotation keys pairs carry as label_a/label_b (data.tasks.annotation_keys):
    label sets or masks for multilabel and segmentation data."""
    from dnncheck.similarity import SplitLayout

    return SplitLayout(ds).label_names or []


def _feature_count(ds) -> int:
    x = ds.splits["train"].x
    return int(np.prod(x.shape[1:])) if x.ndim > 1 else 1


def _near_search_findings(table_features):
    from dnncheck.similarity import MIN_NEAR_FEATURES

    if table_features is None or table_features >= MIN_NEAR_FEATURES:
        return []
    head = f"near-duplicate rows not searched: {table_features} feature(s)"
    return [Finding(Status.INFO, f"{head}; below {MIN_NEAR_FEATURES} features distinct rows lie close by chance, "
                    "so only exact copies were searched", evidence={"features": table_features}, headline=head)]


# Below this many training samples in the smallest class a single held-out split is noisy: the same
# ~1000-instance guidance the imbalance check documents (Ponti et al. 2021, II-B).
KFOLD_BELOW = 1000


LEAK_ROWS = 5000  # training rows used for the single-feature test (stratified sample above this)
LEAK_FEATURES = 500  # features tested, in column order


def _single_feature_scores(ds, seed: int) -> dict:
    """How well each table feature alone predicts the label: 3-fold cross-validated balanced accuracy
    (classification) or R^2 (regression) of a depth-8 decision tree on that one column (256 leaves:
    a column equal to the target up to noise reaches R^2 ~0.999; a depth-4 tree's 16 steps cap it near 0.99)."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    from dnncheck.data.sampling import subsample_index

    if len(ds.feature_names) < 2:
        return {}  # the one column is the whole input: predicting the label from it is the task, not a leak
    train = ds.splits["train"]
    classification = ds.task == "classification"
    index = subsample_index(train.y, LEAK_ROWS, seed, classification)
    x, y = np.asarray(train.x, dtype=np.float64)[index], train.y[index]
    if classification:
        counts = np.bincount(y)
        folds = int(min(3, counts[counts > 0].min()))
        if folds < 2:
            return {}
        cv, model, scoring = StratifiedKFold(folds, shuffle=True, random_state=seed), DecisionTreeClassifier, "balanced_accuracy"
    else:
        if len(y) < 6:
            return {}
        cv, model, scoring = KFold(3, shuffle=True, random_state=seed), DecisionTreeRegressor, "r2"
    scores = {}
    for k, name in enumerate(ds.feature_names[:LEAK_FEATURES]):
        column = np.nan_to_num(x[:, k:k + 1])
        if np.ptp(column) == 0:
            continue
        tree = model(max_depth=8, random_state=seed)
        scores[name] = round(float(cross_val_score(tree, column, y, cv=cv, scoring=scoring).mean()), 4)
    return scores


def _feature_leak_findings(scores: dict, t):
    leaks = {name: s for name, s in scores.items() if s >= t.feature_leak_score}
    if not leaks:
        return []
    named = ", ".join(f"{n} ({s:.3f})" for n, s in sorted(leaks.items(), key=lambda kv: -kv[1])[:10])
    head = f"{len(leaks)} feature(s) alone predict the target almost perfectly: {named}"
    return [Finding(Status.FAIL, f"{head}; a column that is (derived from) the label leaks it into training: drop it, "
                    "or check how it was computed", evidence={"feature_scores": leaks}, headline=head)]


SHIFT_SAMPLES = 2000  # per side, for the domain classifier


def _shift_features(part) -> np.ndarray:
    """Per-sample inputs for the domain classifier: for images, from the records (every image, nothing
    decoded): the 16x16 grey layout descriptor and each channel's mean and std; for tables, the row."""
    if part.records is None:
        return np.nan_to_num(np.asarray(part.x, dtype=np.float64).reshape(len(part), -1))
    from dnncheck.data.records import image_channel_stats

    mean, std = image_channel_stats(part.records)
    return np.nan_to_num(np.hstack([part.records["descriptors"][:, 0].astype(np.float64), mean, std]))


def _split_shift(ds, seed: int) -> dict:
    """split -> 5-fold ROC AUC of a logistic regression telling that split's inputs from train's (about
    0.5 when the splits come from one distribution; near 1 when val/test went through another pipeline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dnncheck.data.sampling import subsample_index

    train = ds.splits["train"]
    out = {}
    for name in ("val", "test"):
        part = ds.split(name)
        n = min(len(train), 0 if part is None else len(part), SHIFT_SAMPLES)
        if n < 10:
            continue
        a = _shift_features(train.take(subsample_index(train.y, n, seed, False)))
        b = _shift_features(part.take(subsample_index(part.y, n, seed, False)))
        side = np.r_[np.zeros(len(a)), np.ones(len(b))]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        out[name] = round(float(cross_val_score(model, np.vstack([a, b]), side, cv=cv, scoring="roc_auc").mean()), 4)
    return out


def _split_shift_findings(shift_auc: dict, t):
    shifted = {name: auc for name, auc in shift_auc.items() if auc > t.split_shift_auc}
    if not shifted:
        return []
    named = ", ".join(f"{name} (AUC {auc:.2f})" for name, auc in shifted.items())
    head = f"covariate shift: a classifier tells train inputs from {named}"
    return [Finding(Status.WARN, f"{head}; the splits do not come from one distribution (another pipeline, source "
                    "or time): held-out figures then measure the shift as well as the model, and a train/val gap "
                    "may be the shift rather than overfitting", evidence={"shift_auc": shifted}, headline=head)]


def _splits_present(m: SplitLeakageMeasurement):
    made, missing = list(m.made_splits), list(m.missing_splits)
    if not made and not missing:
        return []
    kfold = " With this little data, prefer k-fold cross-validation." if m.smallest_train_class < KFOLD_BELOW else ""
    what = ", ".join(f"{s} (carved from train by dnncheck for this audit)" for s in made) or ", ".join(missing)
    head = f"no separate {what}"
    # advice true of every dataset without its own splits, not a defect found in it: info
    return [Finding(Status.INFO, f"{head}: keep a validation split to tune on and a test split you evaluate once.{kfold}",
                    evidence={"made_splits": made, "missing": missing}, headline=head)]


# evidence.pairs and evidence.within_split_pairs list the first MAX_PAIRS pairs, best first (all are
# counted: pairs_total, pairs_truncated): pairs grow with the square of a cluster's size (25,000
# augmented photos made 165,000 of them, a 25 MB JSON), while the clusters say the same in one row each
MAX_PAIRS = 1000
MAX_CLUSTERS = 100  # clusters listed in evidence.clusters, those crossing splits and the largest first
MAX_MEMBERS = 25  # sample ids listed per split of a listed cluster (all are counted)
CLUSTER_ROWS, CLUSTER_COLS = 4, 8  # the HTML's rows of thumbnails: the largest clusters, their first members
PAIR_FIELDS = ("a", "b", "kind", "similarity", "inliers", "mirrored", "size_ratio")
KIND_LABELS = (("exact", "exact copies"), ("near", "near copies"),
               ("geometric", "crops, mirror images or rescaled copies"),
               ("embedding", "pairs alike in learned embeddings"))


# Kinds judged by how alike two images look (not the same bytes): simple images can be this alike by
# chance, so their severity follows how much of an evaluation split they can inflate. MNIST's straight
# "1" strokes make near pairs; one flat shape fits another of like proportions by a similarity
# transform, so a million distinct generated scenes still gave geometric pairs (16 of 66 fits left
# after every gate, about one per 60,000 images): geometric copies are judged the same way.
LOOKALIKE_KINDS = ("near", "geometric", "embedding")


def duplicate_clusters(pairs, made: tuple) -> list[dict]:
    """Connected components of the duplicate graph (scipy's connected_components over every pair,
    across and within splits): the sets of copies of one original, however many pairs link them.

    Each cluster: `size`; `splits` (split -> members); `members` (split -> the first MAX_MEMBERS
    ids); `kinds` (of all its pairs) and `kinds_across` (of its pairs between two splits the user
    made); `first_split` (the earliest split the user made among its members); `leaked` (split ->
    members whose split the user made comes after it: val/test samples with a sibling in train, test
    samples with one in val). A split dnncheck carved out of train counts as train. Clusters that
    leak first, then the largest."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return []
    index: dict[str, int] = {}
    split_of: list[str] = []
    for p in pairs:
        for sample, split in ((p["a"], p["split_a"]), (p["b"], p["split_b"])):
            if sample not in index:
                index[sample] = len(index)
                split_of.append(split)
    a = np.array([index[p["a"]] for p in pairs])
    b = np.array([index[p["b"]] for p in pairs])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(index), len(index)))
    _, component = connected_components(graph, directed=False)
    ids = list(index)
    members: dict[int, list[int]] = {}
    for k, c in enumerate(component.tolist()):
        members.setdefault(c, []).append(k)
    kinds: dict[int, set] = {}
    across: dict[int, set] = {}
    for p, c in zip(pairs, component[a].tolist()):
        kinds.setdefault(c, set()).add(p["kind"])
        if _source(p["split_a"], made) != _source(p["split_b"], made):
            across.setdefault(c, set()).add(p["kind"])
    clusters = [_cluster(ids, split_of, group, kinds[c], across.get(c, set()), made) for c, group in members.items()]
    return sorted(clusters, key=lambda c: (not c["leaked"], -c["size"], min(i for m in c["members"].values() for i in m)))


def _cluster(ids, split_of, group: list[int], kinds: set, across: set, made: tuple) -> dict:
    by_split: dict[str, list[str]] = {}
    for k in group:
        by_split.setdefault(split_of[k], []).append(ids[k])
    ordered = [s for s in SPLIT_ORDER if s in by_split]
    first = min((_source(s, made) for s in ordered), key=SPLIT_ORDER.index)
    leaked = {s: len(by_split[s]) for s in ordered if _source(s, made) != first}
    return {"size": len(group), "first_split": first, "splits": {s: len(by_split[s]) for s in ordered},
            "members": {s: sorted(by_split[s])[:MAX_MEMBERS] for s in ordered},
            "kinds": sorted(kinds), "kinds_across": sorted(across), "leaked": leaked,
            "leaked_ids": sorted(i for s in leaked for i in by_split[s])}


def _public(clusters: list[dict]) -> list[dict]:
    """The first MAX_CLUSTERS clusters as evidence (every leaked id is in the finding's samples)."""
    return [{k: v for k, v in c.items() if k != "leaked_ids"} for c in clusters[:MAX_CLUSTERS]]


def _leaked_share(pairs, split_sizes: dict) -> float:
    """The largest share of an evaluation split's samples that sit in a pair with another split's."""
    leaked: dict = {}
    for p in pairs:
        for split, sample in ((p["split_a"], p["a"]), (p["split_b"], p["b"])):
            if split != "train":
                leaked.setdefault(split, set()).add(sample)
    return max((len(ids) / max(1, split_sizes.get(s, 0)) for s, ids in leaked.items()), default=0.0)


def _siblings_said(clusters: list[dict]) -> tuple[str, dict]:
    """'312 val samples have a sibling in train, in 40 clusters' for clusters that leak, and the
    count per evaluation split."""
    leaked: dict[str, int] = {}
    for c in clusters:
        for split, n in c["leaked"].items():
            leaked[split] = leaked.get(split, 0) + n
    if not leaked:
        return "", leaked
    earliest = {c["first_split"] for c in clusters if c["leaked"]}
    where = f"in {earliest.pop()}" if len(earliest) == 1 else "in an earlier split (train, or val for test)"
    counted = " and ".join(f"{n:,} {s}" for s, n in leaked.items())
    plural = "s have" if sum(leaked.values()) > 1 else " has"
    return (f"{counted} sample{plural} a sibling {where}, in {len(clusters):,} "
            f"cluster{'s' if len(clusters) > 1 else ''}"), leaked


def _listed(pairs, key: str) -> dict:
    """The first MAX_PAIRS pairs under `key`, with how many there are in all."""
    listed = pairs[:MAX_PAIRS]
    return {key: _contract_pairs(listed), "pairs_total": len(pairs), "pairs_truncated": len(listed) < len(pairs)}


def _duplicate_findings(m: SplitLeakageMeasurement, t, clusters: list[dict]):
    findings = []
    for kind, label in KIND_LABELS:
        chosen = [p for p in m.pairs if p["kind"] == kind]
        if not chosen:
            continue
        by_split = _count_by_splits(chosen)
        mine = [c for c in clusters if kind in c["kinds_across"]]
        siblings, leaked = _siblings_said(mine)
        head = f"{len(chosen)} {label} across splits ({', '.join(f'{n} {k}' for k, n in by_split.items())})"
        head += f"; {siblings}" if siblings else ""
        share = _leaked_share(chosen, m.split_sizes)
        evidence = {**_listed(chosen, "pairs"), "by_splits": by_split, "largest_split_share": round(share, 5),
                    "leaked_samples": leaked, "clusters": _public(mine), "clusters_total": len(mine)}
        # every evaluation sample with a sibling (what to move or drop), then those of the listed pairs: the
        # samples of all pairs were 25,000 ids, 0.9 MB of JSON, for 46,000 pairs among augmented photos
        samples = tuple(dict.fromkeys([i for c in mine for i in c["leaked_ids"]] +
                                      list(_pair_samples(chosen[:MAX_PAIRS]))))
        if kind in LOOKALIKE_KINDS and share < t.near_fail_share:
            findings.append(Finding(Status.WARN, f"{head}: {share:.2%} of an evaluation split at most, too few to "
                                    "inflate its metrics much; remove them or move them to one split",
                                    samples=samples, headline=head, evidence=evidence))
            continue
        findings.append(Finding(Status.FAIL, f"{head}: evaluation samples the model has effectively seen in training; "
                                "keep each cluster in one split", samples=samples, headline=head,
                                evidence=evidence))
    if m.within_pairs:
        findings.append(_within_finding(m, t, [c for c in clusters if not c["leaked"]]))
    conflicting = _conflicting(m, (*m.pairs, *m.within_pairs))
    if conflicting:
        def name(label):
            return m.classes[label] if m.classes else label

        head = f"{len(conflicting)} duplicate pair(s) carry different labels"
        severity, why = _conflict_severity(conflicting, m, t)
        findings.append(Finding(severity, f"{head}: {why}", headline=head,
                                samples=tuple(s for p in conflicting for s in (p["a"], p["b"])),
                                evidence={"pairs": [{"a": p["a"], "b": p["b"], "label_a": name(p["label_a"]),
                                                     "label_b": name(p["label_b"])} for p in conflicting[:MAX_LISTED]]}))
    return findings


def _conflicting(m: SplitLeakageMeasurement, pairs) -> list[dict]:
    """Pairs whose two samples carry different labels; for masks only exact copies count, since a
    look-alike's mask differs from its twin's as the images do."""
    return [p for p in pairs if p["label_a"] != p["label_b"] and not (m.masks and p["kind"] in LOOKALIKE_KINDS)]


def _conflict_severity(conflicting: list[dict], m: SplitLeakageMeasurement, t) -> tuple[Status, str]:
    """A copy of the same bytes under two labels is a wrong label; look-alikes met by chance carry
    their own labels, so a handful of them among many samples warns and a share of near_fail_share
    of all samples fails."""
    if any(p["kind"] not in LOOKALIKE_KINDS for p in conflicting):
        return Status.FAIL, "at least one label of each pair is wrong"
    involved = len({s for p in conflicting for s in (p["a"], p["b"])})
    share = involved / max(1, sum(m.split_sizes.values()))
    if share >= t.near_fail_share:
        return Status.FAIL, f"at least one label of each pair is wrong ({share:.2%} of the samples)"
    return Status.WARN, (f"look-alikes, {share:.3%} of the samples: distinct images can meet by chance at "
                         "this rate; look at them, and where one is a copy of the other, one label is wrong")


def _within_finding(m: SplitLeakageMeasurement, t, clusters: list[dict]) -> Finding:
    by_split = _count_by_splits(m.within_pairs)
    kinds = {k: sum(p["kind"] == k for p in m.within_pairs) for k, _ in KIND_LABELS}
    said = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    head = f"{len(m.within_pairs)} duplicate pair(s) within splits ({said})"
    listed = _listed(m.within_pairs, "within_split_pairs")
    more = f" (the first {MAX_PAIRS} listed)" if listed["pairs_truncated"] else ""
    sizes: dict = {}
    for split, size in m.split_sizes.items():
        sizes[_source(split, m.made_splits)] = sizes.get(_source(split, m.made_splits), 0) + size
    copied = max(len({s for p in m.within_pairs if _source(p["split_a"], m.made_splits) == split
                      for s in (p["a"], p["b"])}) / max(1, size) for split, size in sizes.items())
    carved = sum(p["split_a"] != p["split_b"] for p in m.within_pairs)
    splits = f"{' and '.join(m.made_splits)} split{'s' if len(m.made_splits) > 1 else ''}"
    carved_said = (f"; {carved} of them pair train with the {splits} dnncheck carved "
                   "out of it for this audit: copies inside your train folder, not leakage between splits you "
                   "made") if carved else ""
    sets = f", in {len(clusters):,} set{'s' if len(clusters) > 1 else ''} of copies" if clusters else ""
    # a handful of look-alikes among thousands hardly reweights anything: said, not warned; the same
    # bytes are certain copies and cheap to remove: warned at any count
    certain = any(p["kind"] not in LOOKALIKE_KINDS for p in m.within_pairs)
    severity = Status.WARN if certain or copied >= t.within_warn_share else Status.INFO
    return Finding(severity, f"{head}{sets}: they weight the loss and the statistics towards the copied "
                   f"samples ({copied:.2%} of a split's samples at most); keep one of each set{more}{carved_said}",
                   samples=_pair_samples(m.within_pairs[:MAX_PAIRS]), headline=head,
                   evidence={**listed, "by_splits": by_split, "largest_split_share": round(copied, 5),
                             "clusters": _public(clusters), "clusters_total": len(clusters)})


def _source(split: str, made: tuple) -> str:
    """The split as the user made it: "train" for a split dnncheck carved out of train."""
    return "train" if split in made else split


def _count_by_splits(pairs) -> dict:
    counts: dict = {}
    for p in pairs:
        key = f"{p['split_a']}-{p['split_b']}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _pair_samples(pairs) -> tuple:
    return tuple(dict.fromkeys(s for p in pairs for s in (p["b"], p["a"])))


def _contract_pairs(pairs) -> list[dict]:
    return [{k: p[k] for k in PAIR_FIELDS if k in p} for p in pairs]


def _group_members(ds) -> dict:
    """group -> split -> sample ids, for the groups that appear in more than one split."""
    present = {n: s for n, s in ds.splits.items() if s.groups is not None and len(s)}
    if len(present) < 2:
        return {}
    where: dict[str, dict[str, list[str]]] = {}
    for name, part in present.items():
        for sample_id, group in zip(part.ids, part.groups):
            where.setdefault(str(group), {}).setdefault(name, []).append(sample_id)
    return {g: splits for g, splits in where.items() if len(splits) > 1}


def _group_findings(leaked: dict):
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
    head = f"{len(leaked)} group(s) appear in more than one split"
    return pairs, [Finding(Status.FAIL, f"{head}: {named}", samples=samples, headline=head,
                           evidence={"pairs": pairs, "groups": {g: {n: len(v) for n, v in s.items()}
                                                                for g, s in list(leaked.items())[:MAX_LISTED]}})]


def _label_shift(m: SplitLeakageMeasurement, t):
    from scipy.stats import chi2_contingency

    names = list(m.label_counts)
    if len(names) < 2:
        return {}, []
    every = np.array([m.label_counts[n] for n in names])
    present = every.sum(0) > 0
    counts = every[:, present]
    if counts.shape[1] < 2:
        return {}, []
    p_value = float(chi2_contingency(counts).pvalue)
    shares = counts / counts.sum(1, keepdims=True)
    diff = float(np.abs(shares - shares[0]).max())
    metrics = {"label_shift_p_value": round(p_value, 6), "label_share_max_diff": round(diff, 4)}
    if p_value < t.shift_p_value and diff > t.shift_min_share_diff:
        classes = [c for c, keep in zip(m.classes, present) if keep]
        table = {n: {c: round(float(v), 3) for c, v in zip(classes, row)} for n, row in zip(names, shares)}
        head = f"label distributions differ between splits (chi-square p = {p_value:.2g}, a class share differs by {diff:.0%})"
        return metrics, [Finding(Status.WARN, f"{head}; stratify the split by class", evidence={"shares": table},
                                 headline=head)]
    return metrics, []


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Deduplicate before splitting; split by group (GroupShuffleSplit / StratifiedGroupKFold) so an "
            "individual stays in one split; stratify by class; keep a test set you evaluate once, and use k-fold "
            "cross-validation when data is small.")


def _pairs(ctx, threshold, t):
    from dnncheck.similarity import duplicate_pairs

    return duplicate_pairs(ctx.dataset, threshold, t.candidate_cosine, t.max_shift, t.geometric_inliers, ctx.progress)


def _embedding_pairs(ctx, t, known: set, slug: str) -> list[dict]:
    """Pairs whose learned embeddings (embeddings.py) have cosine >= embedding_cosine, not found by the
    other searches; across splits and within each, like them."""
    from dnncheck.embeddings import embed_all
    from dnncheck.similarity import Pair, SplitLayout, Variants, block_candidates

    layout = SplitLayout(ctx.dataset)
    emb = embed_all(ctx, t.embedding, layout.names, slug)
    i, j = block_candidates(Variants.of_array(emb[None]), layout.starts, t.embedding_cosine)
    found = [layout.pair(Pair(a, b, "embedding", float(emb[a] @ emb[b]))) for a, b in zip(i.tolist(), j.tolist())]
    found = [p for p in found if frozenset((p["a"], p["b"])) not in known]
    return sorted(found, key=lambda d: (d["split_a"] == d["split_b"], -d["similarity"]))


def _pair_images(ds, pairs) -> ImageGrid:
    """The first pairs with both images, side by side in the HTML report."""
    images, captions = [], []
    for p in pairs:
        images += [ds.sample(p["a"]), ds.sample(p["b"])]
        captions += [f"{p['a']} ({p['split_a']})", f"{p['b']} ({p['split_b']}; {p['kind']} {p['similarity']:.3f})"]
    return ImageGrid("Duplicate pairs, side by side", images, captions, cols=6,
                     ids=[s for p in pairs for s in (p["a"], p["b"])])


def _cluster_images(ds, clusters: list[dict]) -> tuple[ImageGrid, ...]:
    """The largest clusters (those crossing splits first), one row of thumbnails each: its first
    members, earliest split first."""
    rows = []
    for number, c in enumerate(clusters[:CLUSTER_ROWS], 1):
        shown = [(split, sample) for split, members in c["members"].items() for sample in members][:CLUSTER_COLS]
        counts = ", ".join(f"{n} {split}" for split, n in c["splits"].items())
        rows.append(ImageGrid(f"Duplicate cluster {number}: {c['size']} samples ({counts}; {', '.join(c['kinds'])})",
                              [ds.sample(sample) for _, sample in shown],
                              [f"{sample} ({split})" for split, sample in shown], cols=CLUSTER_COLS,
                              ids=[sample for _, sample in shown]))
    return tuple(rows)


def _summary(findings) -> str:
    fails = [f for f in findings if f.severity is Status.FAIL]
    if fails:
        return "; ".join(f.short for f in fails[:2])
    warnings = [f for f in findings if f.severity is Status.WARN]
    if warnings:
        return warnings[0].short
    clean = "splits are disjoint: no exact, near or group overlap; label distributions agree"
    advice = [f.short for f in findings if f.severity is Status.INFO]
    return f"{clean} ({advice[0]})" if advice else clean
