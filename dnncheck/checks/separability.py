"""DNC5 separability: do the model's learned features separate the classes, as t-SNE and UMAP
projections, silhouettes and k-NN accuracies show?"""

from __future__ import annotations

import time

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, verdict
from dnncheck.data.sampling import subsample_index
from dnncheck.errors import ProbeUnavailable

KNN_K = 5


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

    def probes(self, ctx) -> dict[str, dict]:
        needs_fit = ctx.dataset.task == "classification" and ctx.eval_split is not None and not ctx.has_weights
        return {"fit": {}} if needs_fit else {}

    def run(self, ctx):
        ds = ctx.dataset
        if ds.task != "classification":
            return self.skip("separability applies to classification")
        split = ctx.eval_split
        if split is None:
            return self.skip("no validation or test split to project")
        try:
            model, source = self._model(ctx)
        except ProbeUnavailable as exc:
            return self.without_probe(exc, "no trained model to read features from")
        part = ctx.view(split)
        index = subsample_index(part.y, int(self.t["max_samples"]), ctx.seed, True)
        feats, outputs = _features(model, ctx.inputs(split)[index], ctx.device)
        if feats is None:
            return self.skip("the model has no hookable linear output layer (e.g. TorchScript): features unavailable")
        y = part.y[index]
        chance = float(np.bincount(y).max() / len(y))
        model_acc = float(np.mean(outputs.argmax(1) == y))
        metrics = {"samples": int(len(y)), "split": split, "features_from": source, "feature_dims": int(feats.shape[1]),
                   "model_accuracy": round(model_acc, 4), "chance_accuracy": round(chance, 4),
                   "silhouette": _silhouette(feats, y, "cosine"),
                   "knn_accuracy_features": _knn_accuracy(feats, y, ctx.seed)}
        figures = {"projections": {}}
        projections = {"tsne": _tsne}
        if self.t["umap"]:
            projections["umap"] = _umap
        for name, project in projections.items():
            start = time.perf_counter()
            coords = project(feats, ctx.seed)
            metrics[f"knn_accuracy_2d_{name}"] = _knn_accuracy(coords, y, ctx.seed)
            metrics[f"silhouette_{name}"] = _silhouette(coords, y, "euclidean")
            metrics[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
            figures["projections"][name] = {"coords": coords, "labels": [ds.classes[c] for c in y]}
        if len(projections) == 1:
            metrics["knn_accuracy_2d"] = metrics["knn_accuracy_2d_tsne"]
        findings = self._findings(metrics, chance, model_acc)
        return self.result(verdict(findings), _summary(metrics), metrics, findings, self._remedy(findings), figures)

    @staticmethod
    def _model(ctx):
        if ctx.has_weights:
            return ctx.user_model(), "your weights"
        return ctx.fit_probe().model, "the probe trained on train"

    def _findings(self, m, chance, model_acc):
        findings = []
        gain = model_acc - chance
        if m["knn_accuracy_features"] is None:  # too few samples per class to measure structure: no verdict
            return [Finding(Status.PASS, "too few validation samples per class for k-NN and silhouette; class "
                            "structure not measured")]
        knn_gain = m["knn_accuracy_features"] - chance
        if gain >= self.t["min_gain"] and knn_gain < self.t["structure_ratio"] * gain:
            findings.append(Finding(Status.FAIL, f"accuracy above chance ({model_acc:.2f} vs {chance:.2f}) but no class "
                                    f"structure in the features: 5-NN on them reaches {m['knn_accuracy_features']:.2f} "
                                    f"(silhouette {_fmt(m['silhouette'])}); the model is not learning a representation",
                                    evidence={"model_accuracy": model_acc, "chance": chance}))
        elif m["silhouette"] is not None and m["silhouette"] < self.t["min_silhouette"]:
            findings.append(Finding(Status.WARN, f"classes overlap in feature space (cosine silhouette {m['silhouette']:.2f}) "
                                    f"although 5-NN reaches {m['knn_accuracy_features']:.2f}"))
        return findings

    @staticmethod
    def _remedy(findings) -> str:
        if not findings:
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


def _umap(feats, seed):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables its parallelism
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(feats) - 1), min_dist=0.1, random_state=seed)
        return reducer.fit_transform(feats).astype(np.float32)


def _fmt(value) -> str:
    """A score, or 'n/a' where it is undefined (too few samples per class for k-NN or silhouette)."""
    return "n/a" if value is None else f"{value:.2f}"


def _summary(m) -> str:
    text = (f"model accuracy {m['model_accuracy']:.2f} (chance {m['chance_accuracy']:.2f}); feature 5-NN "
            f"{_fmt(m['knn_accuracy_features'])}, silhouette {_fmt(m['silhouette'])}")
    twod = [f"{k.split('_')[-1]} {_fmt(m[k])}" for k in ("knn_accuracy_2d_tsne", "knn_accuracy_2d_umap") if k in m]
    if twod:
        text += "; 2-D 5-NN " + ", ".join(twod)
    return text + f" on {m['samples']} {m['split']} samples"
