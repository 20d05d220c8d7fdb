"""Out-of-sample class probabilities for every training sample, by cross-fitting.

Estimators cross-fitted on the same stratified folds and averaged (ensembling diverse models gives
better out-of-sample probabilities than any one of them, which is what confident learning needs):
- the probe: the user's model, trained fresh on each fold's complement for the planned epochs,
  read two ways (its softmax, and a k-NN vote in its penultimate features);
- or, in the compact plan of a model too costly to train once per fold (probes/plan.py), a
  logistic-regression head on the model's frozen, untrained penultimate features: random
  convolutional features are a strong generic representation (Jarrett et al., ICCV 2009; Saxe et
  al., ICML 2011), and one forward pass over the training split costs what a few training steps do;
- an RBF support-vector machine on a 50-d PCA of the model's input tensor (softmax of 3x its
  one-vs-rest scores), up to MAX_SVM_SAMPLES training samples; above that, or without a probe,
  a 10-nearest-neighbour vote on the same PCA.
"""

from __future__ import annotations

import numpy as np

MAX_SVM_SAMPLES = 10000
DEEP_KNN_REFERENCE = 1200
PCA_DIMS = 50


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each sample."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y), dtype=np.int64)
    for k, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        out[held] = k
    return out


# Pixel-space estimators (PCA then kNN, SVM, logistic regression) see images at most this many pixels
# a side: their top components are the low frequencies, which 64 px keep, and 512 photos at 224 px
# made a 300 MB matrix whose PCA peaked above 1 GB. The default 64-px audits are unchanged.
PIXEL_SIDE = 64


def pixel_rows(x) -> np.ndarray:
    """One float32 row per sample of a N,C,H,W (or N,F) tensor, images area-averaged down to at most
    PIXEL_SIDE a side, in chunks."""
    import torch
    import torch.nn.functional as F

    if x.ndim == 4 and max(x.shape[2:]) > PIXEL_SIDE:
        size = (min(x.shape[2], PIXEL_SIDE), min(x.shape[3], PIXEL_SIDE))
        with torch.no_grad():
            x = torch.cat([F.adaptive_avg_pool2d(chunk.float(), size) for chunk in torch.split(x, 64)])
    return x.reshape(len(x), -1).float().numpy()


def pca_features(flat: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(PCA_DIMS, flat.shape[1], len(flat))
    return PCA(dims, random_state=seed).fit_transform(np.nan_to_num(flat)).astype(np.float32)


def classical_probabilities(features: np.ndarray, y: np.ndarray, fold: np.ndarray, classes: int,
                            with_knn: bool = False) -> dict:
    """{name: out-of-sample probabilities} of the cheap estimators on the given folds: the RBF SVM
    (up to MAX_SVM_SAMPLES), and pixel-space kNN when asked (the fallback without a probe)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    makers = {}
    if with_knn or len(y) > MAX_SVM_SAMPLES:
        makers["knn"] = lambda: KNeighborsClassifier(10, weights="distance")
    if len(y) <= MAX_SVM_SAMPLES:
        makers["svm"] = lambda: SVC(C=10, gamma="scale")
    out = {}
    for name, make in makers.items():
        probs = np.zeros((len(y), classes))
        for k in np.unique(fold):
            fit, held = fold != k, fold == k
            model = make().fit(features[fit], y[fit])
            probs[held] = _class_probs(model, features[held], classes)
        out[name] = probs
    return out


def _class_probs(model, x: np.ndarray, classes: int) -> np.ndarray:
    full = np.zeros((len(x), classes))
    if hasattr(model, "predict_proba") and not hasattr(model, "decision_function"):
        full[:, model.classes_] = model.predict_proba(x)
        return full
    scores = model.decision_function(x)
    if scores.ndim == 1:  # binary SVM: one score for the second class
        scores = np.stack([-scores, scores], axis=1)
    e = np.exp(3.0 * (scores - scores.max(axis=1, keepdims=True)))
    full[:, model.classes_] = e / e.sum(axis=1, keepdims=True)
    return full


def probe_probabilities(x, y, fold: np.ndarray, classes: int, train_on, output_kind: str, device: str,
                        max_train_samples: int, seed: int) -> dict:
    """Out-of-sample probabilities from the user's model, two ways, one fresh probe per fold (trained
    on the other folds, a stratified subsample of at most max_train_samples):
    - "probe": the model's own predicted probabilities on the held-out fold;
    - "deep_knn": 10-nearest-neighbour votes in the model's penultimate features, held-out samples
      against up to DEEP_KNN_REFERENCE samples of the folds it trained on (Bahri, Jiang & Gupta,
      "Deep k-NN for noisy labels", ICML 2020: neighbours in learned features resist label noise
      better than the softmax head).

    `x`, `y`: the training tensors; `train_on(fit_index, k)` returns a fresh model trained on those
    rows (the caller owns the seeds, the plan and the budget); `output_kind` says how the model's
    outputs become probabilities (models.introspect.to_probabilities).
    """
    from dnncheck.data.sampling import subsample_index
    from dnncheck.models.introspect import capture_penultimate, to_probabilities
    from dnncheck.probes.train import forward_all

    labels = y.numpy()
    multilabel = labels.ndim == 2  # (N, C) 0/1 rows: per-label probabilities, neighbours' label shares
    out = {"probe": np.zeros((len(y), classes)), "deep_knn": np.zeros((len(y), classes))}
    rng = np.random.default_rng(seed)
    for k in np.unique(fold):
        fit = np.flatnonzero(fold != k)
        fit = fit[subsample_index(labels[fit], max_train_samples, seed + int(k), not multilabel)]
        held = np.flatnonzero(fold == k)
        model = train_on(fit, int(k))
        reference = fit if len(fit) <= DEEP_KNN_REFERENCE else np.sort(rng.choice(fit, DEEP_KNN_REFERENCE, replace=False))
        with capture_penultimate(model) as captured:
            outputs = forward_all(model, x[np.concatenate([held, reference])], device)
        scores = outputs[: len(held)]
        out["probe"][held] = (label_probabilities(scores, output_kind) if multilabel else
                              to_probabilities(scores, output_kind))[:, :classes].numpy()
        if captured:
            feats = torch_cat_normalised(captured)
            vote = _label_vote if multilabel else _knn_vote
            out["deep_knn"][held] = vote(feats[len(held):], labels[reference], feats[: len(held)], classes)
        else:
            out.pop("deep_knn", None)  # no hookable output layer (TorchScript): softmax only
    return out


def frozen_feature_probabilities(model, x, y: np.ndarray, fold: np.ndarray, classes: int, device: str) -> dict:
    """{"frozen_features": out-of-sample probabilities} from a logistic-regression head, cross-fitted
    on `fold`, over the untrained `model`'s penultimate features of `x` (one forward pass, eval
    mode); {} when the model has no hookable output layer (TorchScript)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dnncheck.models.introspect import capture_penultimate
    from dnncheck.probes.train import forward_all

    with capture_penultimate(model) as captured:
        forward_all(model, x, device)
    if not captured:
        return {}
    feats = np.nan_to_num(torch_cat_normalised(captured))
    probs = np.zeros((len(y), classes))
    for k in np.unique(fold):
        fit, held = fold != k, fold == k
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(feats[fit], y[fit])
        probs[np.ix_(held, head.classes_)] = head.predict_proba(feats[held])  # a class absent from a fold stays 0
    return {"frozen_features": probs}


def torch_cat_normalised(chunks) -> np.ndarray:
    import torch

    feats = torch.cat(chunks).reshape(sum(len(c) for c in chunks), -1).numpy()
    return feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8)


def label_probabilities(out, kind: str):
    """Per-label probabilities of a multi-label model's outputs: as they are when already in [0, 1]
    (a sigmoid or softmax head), else the sigmoid of the logits (BCEWithLogitsLoss's reading)."""
    import torch

    out = out.float()
    return out.clamp(0, 1) if kind in ("sigmoid", "probabilities") else torch.sigmoid(out)


def _label_vote(ref: np.ndarray, ref_labels: np.ndarray, query: np.ndarray, classes: int) -> np.ndarray:
    """Per label, the distance-weighted share of the 10 nearest reference samples carrying it."""
    from sklearn.neighbors import NearestNeighbors

    k = min(10, len(ref))
    distance, index = NearestNeighbors(n_neighbors=k).fit(ref).kneighbors(query)
    weight = 1.0 / np.maximum(distance, 1e-12)
    weight /= weight.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkc->nc", weight, ref_labels[index].astype(float))[:, :classes]


def label_estimates(features: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-sample per-label probabilities of the classical estimator (classical_probabilities on
    each label as its own two-class problem; a label constant in a fold's training part predicts
    that constant)."""
    probs = np.zeros(labels.shape)
    for c in range(labels.shape[1]):
        column = labels[:, c].astype(np.int64)
        if column.min() == column.max():
            probs[:, c] = column[0]
            continue
        try:
            estimates = classical_probabilities(features, column, fold, 2)
            probs[:, c] = np.mean([p[:, 1] for p in estimates.values()], axis=0)
        except ValueError:  # a rare label absent from one fold's training part: its prevalence
            probs[:, c] = column.mean()
    return probs


def _knn_vote(ref: np.ndarray, ref_labels: np.ndarray, query: np.ndarray, classes: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(min(10, len(ref)), weights="distance").fit(ref, ref_labels)
    return _class_probs(knn, query, classes)
