"""DNC5 separability: do the model's learned features separate the classes, as t-SNE and UMAP
projections, silhouettes and k-NN accuracies show?"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from dnncheck.figures import Points
from dnncheck.checks.base import (SHARE, Check, Finding, ProbeGap, Range, Skipped, Status, Verdict, inconclusive,
                                  probe_missing, verdict, with_reason)
from dnncheck.data.sampling import subsample_index
from dnncheck.errors import ProbeUnavailable

KNN_K = 5
NO_PROBE = "no trained model to read features from"


PROJECTION_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}  # as their authors write them


class Separability(Check):
    """The penultimate-layer features separate the classes.

    What it checks
        The features feeding the output layer, for validation (else test) samples, from the model
        trained briefly on train (the shared probe) or from your weights when --weights is given.
        Reports the silhouette of the features by class, 5-NN accuracy in feature space, both
        again in 2-D t-SNE (scikit-learn) and UMAP (umap-learn) projections, and the model's own
        accuracy beside them; the projections are plotted coloured by class.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 5, and their Fig. 3: a network can score
        above chance while its representation has no class structure (it leans on a few
        features, a shortcut or chance), and such a model does not generalise. Projecting the
        learned space shows whether the classes form groups; k-NN accuracy and silhouette put a
        number on it.

    How it is computed
        A stratified subsample of at most `max_samples` evaluation samples; features are
        L2-normalised. Silhouette with cosine distance in feature space and Euclidean in 2-D;
        k-NN accuracy by 5-fold cross-validation. t-SNE: perplexity min(30, n/4), PCA
        initialisation; UMAP: 15 neighbours, min_dist 0.1; both seeded. Fail when the model is
        at least `min_gain` above chance (the majority share) but feature-space k-NN recovers less
        than `structure_ratio` of that gain; warn when the features' silhouette is below
        `min_silhouette`.

    How to fix
        Train longer or with a better-suited architecture; look for shortcuts (the pixel-attack
        probe) and label noise; check normalisation and the learning rate; with small data use a
        pretrained backbone, whose features already separate natural classes.
    """

    id = "DNC5"
    slug = "separability"
    item = 5
    title = "t-SNE/UMAP separability"
    needs = "data, probe run (or --weights), umap-learn"
    thresholds = {
        "max_samples": (1000, "evaluation samples projected (stratified subsample)"),
        "min_gain": (0.1, "the model must be this far above chance for the structure test to apply"),
        "structure_ratio": (0.5, "feature k-NN must recover this share of the model's gain over chance"),
        "min_silhouette": (0.0, "warn when the features' cosine silhouette is below this"),
        "umap": (True, "also project with UMAP (costs about 15 s of numba compilation per process)"),
    }
    ranges = {
        "max_samples": Range(10, 10_000),  # t-SNE and UMAP grow faster than linearly with it
        "min_gain": SHARE,
        "structure_ratio": SHARE,
        "min_silhouette": Range(-1.0, 1.0),
    }

    def probes(self, ctx) -> dict[str, dict]:
        needs_fit = ctx.dataset.task == "classification" and ctx.eval_split is not None and not ctx.has_weights
        return {"fit": {}} if needs_fit else {}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx):
        ds = ctx.dataset
        if ds.task != "classification":
            return Skipped("separability applies to classification")
        split = ctx.eval_split
        if split is None:
            return Skipped("no validation or test split to project")
        try:
            model, source = (ctx.user_model(), "your weights") if ctx.has_weights else \
                (ctx.fit_probe().model, "the probe trained on train")
        except ProbeUnavailable as exc:
            return probe_missing(exc, NO_PROBE, lambda gap: SeparabilityMeasurement(
                split, "the probe", 0, 0.0, 0.0, None, None, {}, 0, gap))
        part = ctx.view(split)
        index = subsample_index(part.y, self.t.max_samples, ctx.seed, True)
        feats, outputs = _features(model, ctx.inputs(split)[index], ctx.device)
        if feats is None:
            return Skipped("the model has no hookable linear output layer (e.g. TorchScript): features unavailable")
        y = part.y[index]
        projections = {}
        # UMAP leaves 0.22 GiB in whatever process runs it: a large audit runs it in a child process,
        # a small one (digits, MNIST) in its own, where the compiled code is reused by later audits
        from functools import partial

        from dnncheck.probes.inputs import large_view

        umap = partial(_umap, in_child=large_view(ctx.inputs(split)))
        methods = (("tsne", _tsne), ("umap", umap)) if self.t.umap else (("tsne", _tsne),)
        if feats.shape[1] < 2:  # a one-unit penultimate layer: nothing to project into two dimensions
            methods = ()
        for name, project in methods:
            start = time.perf_counter()
            coords = project(feats, ctx.seed)
            projections[name] = Projection(coords, [ds.classes[c] for c in y], _knn_accuracy(coords, y, ctx.seed),
                                           _silhouette(coords, y, "euclidean"), time.perf_counter() - start)
        return SeparabilityMeasurement(split, source, int(len(y)), float(np.mean(outputs.argmax(1) == y)),
                                       float(np.bincount(y).max() / len(y)), _silhouette(feats, y, "cosine"),
                                       _knn_accuracy(feats, y, ctx.seed), projections, int(feats.shape[1]))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "SeparabilityMeasurement", t) -> Verdict:
        if m.probe_gap is not None:
            return inconclusive(m.probe_gap, NO_PROBE)
        metrics = {"samples": m.samples, "split": m.split, "features_from": m.source, "feature_dims": m.feature_dims,
                   "model_accuracy": round(m.model_accuracy, 4), "chance_accuracy": round(m.chance, 4),
                   "silhouette": m.silhouette, "knn_accuracy_features": m.knn_accuracy}
        figures = {}
        for name, proj in m.projections.items():
            metrics[f"knn_accuracy_2d_{name}"] = proj.knn_accuracy
            metrics[f"silhouette_{name}"] = proj.silhouette
            metrics[f"{name}_seconds"] = round(proj.seconds, 2)
            figures[f"projection_{name}"] = Points(f"{PROJECTION_NAMES.get(name, name)} of penultimate features",
                                                   proj.coords, proj.labels)
        if list(m.projections) == ["tsne"]:
            metrics["knn_accuracy_2d"] = metrics["knn_accuracy_2d_tsne"]
        if m.feature_dims == 1:
            metrics["projections_skipped"] = "the penultimate layer has one unit: no 2-D projection"
        findings = _findings(m, t)
        return Verdict(verdict(findings), with_reason(_summary(m), findings), tuple(findings), metrics, _remedy(findings),
                       figures)


@dataclass(frozen=True)
class Projection:
    coords: np.ndarray  # N x 2
    labels: list
    knn_accuracy: float | None  # cross-validated 5-NN accuracy in 2-D (None: too few samples per class)
    silhouette: float | None
    seconds: float


@dataclass(frozen=True)
class SeparabilityMeasurement:
    split: str
    source: str  # whose features: your weights or the probe
    samples: int
    model_accuracy: float
    chance: float  # the majority class's share of the sample
    silhouette: float | None  # cosine, in the penultimate features
    knn_accuracy: float | None  # cross-validated 5-NN accuracy in the features
    projections: dict  # name -> Projection
    feature_dims: int = 0
    probe_gap: ProbeGap | None = None


def _findings(m: SeparabilityMeasurement, t):
    findings = []
    gain = m.model_accuracy - m.chance
    if m.knn_accuracy is None:  # too few samples per class to measure structure: no verdict
        return [Finding(Status.PASS, "too few validation samples per class for k-NN and silhouette; class "
                        "structure not measured")]
    knn_gain = m.knn_accuracy - m.chance
    if gain >= t.min_gain and knn_gain < t.structure_ratio * gain:
        head = (f"accuracy above chance ({m.model_accuracy:.2f} vs {m.chance:.2f}) but no class structure in the "
                f"features: 5-NN on them reaches {m.knn_accuracy:.2f} (silhouette {_fmt(m.silhouette)})")
        findings.append(Finding(Status.FAIL, f"{head}; the model is not learning a representation", headline=head,
                                evidence={"model_accuracy": m.model_accuracy, "chance": m.chance}))
    elif m.silhouette is not None and m.silhouette < t.min_silhouette:
        findings.append(Finding(Status.WARN, f"classes overlap in feature space (cosine silhouette {m.silhouette:.2f}) "
                                f"although 5-NN reaches {m.knn_accuracy:.2f}"))
    return findings


def _remedy(findings) -> str:
    if not any(f.severity is not Status.PASS for f in findings):
        return ""
    return ("Train longer or with a better-suited architecture; look for shortcuts (pixel-attack) and label noise; "
            "check normalisation and the learning rate; with small data start from a pretrained backbone.")


def _features(model, x, device):
    from dnncheck.models.introspect import capture_penultimate
    from dnncheck.probes.train import forward_all

    with capture_penultimate(model) as captured:
        outputs = forward_all(model, x, device)
    if not captured:
        return None, outputs.numpy()
    import torch

    feats = torch.cat(captured).reshape(len(x), -1).numpy()
    feats = np.nan_to_num(feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8))
    return feats, outputs.numpy()


def _silhouette(points, y, metric):
    from sklearn.metrics import silhouette_score

    if not 2 <= len(np.unique(y)) <= len(y) - 1:  # silhouette is undefined outside this range
        return None
    return round(float(silhouette_score(points, y, metric=metric)), 4)


def _knn_accuracy(points, y, seed):
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = int(min(5, np.bincount(y)[np.bincount(y) > 0].min()))
    if folds < 2:
        return None
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return round(float(cross_val_score(KNeighborsClassifier(KNN_K), points, y, cv=cv).mean()), 4)


def _tsne(feats, seed):
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(feats) - 1) / 4)))
    return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(feats).astype(np.float32)


def _umap(feats, seed, in_child: bool = True):
    """UMAP's 2-D projection: in a child process (dnncheck/umap_worker.py says why) or in this one.
    Same library, inputs and seed: the same points either way."""
    import io
    import subprocess
    import sys
    from pathlib import Path

    from dnncheck import umap_worker

    feats = np.ascontiguousarray(feats, dtype=np.float32)
    neighbours = min(15, len(feats) - 1)
    if not in_child:
        return umap_worker.project(feats, seed, neighbours)
    sent = io.BytesIO()
    np.save(sent, feats, allow_pickle=False)
    done = subprocess.run([sys.executable, str(Path(umap_worker.__file__).resolve()), str(int(seed)), str(neighbours)],
                          input=sent.getvalue(), capture_output=True, check=False)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"UMAP's projection failed in its child process (exit {done.returncode}): "
                           f"{error[-1] if error else 'no message'}")
    return np.load(io.BytesIO(done.stdout), allow_pickle=False)


def _fmt(value) -> str:
    """A score, or 'n/a' where it is undefined (too few samples per class for k-NN or silhouette)."""
    return "n/a" if value is None else f"{value:.2f}"


def _summary(m: SeparabilityMeasurement) -> str:
    text = (f"model accuracy {m.model_accuracy:.2f} (chance {m.chance:.2f}); feature 5-NN "
            f"{_fmt(m.knn_accuracy)}, silhouette {_fmt(m.silhouette)}")
    if m.projections:
        text += "; 2-D 5-NN " + ", ".join(f"{PROJECTION_NAMES.get(name, name)} {_fmt(p.knn_accuracy)}" for name, p in m.projections.items())
    return text + f" on {m.samples} {m.split} samples"
