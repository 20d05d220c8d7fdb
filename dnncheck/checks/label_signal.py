"""DNC3 label-noise: do the labels carry any signal about their inputs at all? (issue 33)

Labels shifted by one row against their images (an off-by-one after a filter or a sort applied to
one but not the other), or shuffled, make every label wrong; confident learning then sees estimators
at chance, which on its own reads as "the estimators are weak". Two measurements tell the cases apart:

- a permutation test: the out-of-sample score of the cross-fitted estimators on the given labels
  (accuracy for classes, R-squared for a continuous target) against the same cross-fitting of a
  10-nearest-neighbour estimator on `shuffles` seeded permutations of the labels (the distribution of
  the score when labels and inputs are independent, Ojala & Garriga, JMLR 2010); z is the distance
  in standard deviations (at least the binomial one for accuracy);
- the inputs' own structure: the median nearest-neighbour distance of the features (a 50-d PCA of an
  image's pixels, a table's standardised columns) over the same after permuting each feature column
  on its own, which keeps every marginal and destroys what ties the features together: about 1.0 for
  noise, 0.63 for digits, 0.71 for MNIST, 0.64 for wine, 0.73 for diabetes, 0.90 for the ant/bee
  photos at 64 px.

Labels whose score is not above the shuffled ones (z < `signal_z`) on inputs with clear structure
(ratio < `max_structure`) look unrelated to their inputs: a fail that no weak-evidence gate softens.
Without structure the estimators' weakness is the likelier reading and the weak-evidence path stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dnncheck.checks.base import Finding, Status

NEIGHBOURS = 10


@dataclass(frozen=True)
class LabelSignal:
    metric: str  # "accuracy" (classes) or "R2" (a continuous target)
    score: float  # out-of-sample, the estimators on the given labels
    shuffled: tuple[float, ...]  # 10-NN, the same folds, on shuffled labels
    structure: float  # NN distance over that with each feature column permuted (1.0: no structure)
    samples: int

    @property
    def shuffled_mean(self) -> float:
        return float(np.mean(self.shuffled))

    @property
    def spread(self) -> float:
        sd = float(np.std(self.shuffled, ddof=1)) if len(self.shuffled) > 1 else 0.0
        if self.metric == "accuracy":  # a few shuffles underestimate the spread: never below binomial
            m = min(max(self.shuffled_mean, 1e-3), 1 - 1e-3)
            sd = max(sd, math.sqrt(m * (1 - m) / max(1, self.samples)))
        return max(sd, 1e-6)

    @property
    def z(self) -> float:
        return (self.score - self.shuffled_mean) / self.spread

    def unrelated(self, t) -> bool:
        return self.z < t.signal_z and self.structure < t.max_structure

    def metrics(self) -> dict:
        return {"label_signal_metric": self.metric, "label_signal_score": round(self.score, 4),
                "label_signal_shuffled": round(self.shuffled_mean, 4), "label_signal_z": round(self.z, 2),
                "input_structure": round(self.structure, 4)}

    def finding(self) -> Finding:
        what = "labels" if self.metric == "accuracy" else "targets"
        head = (f"the {what} look unrelated to the inputs ({self.metric} {self.score:.3f}, the same as with "
                f"shuffled {what}: {self.shuffled_mean:.3f} +- {self.spread:.3f})")
        return Finding(Status.FAIL, f"{head}: check that {what} and samples are aligned (an off-by-one, a sort or "
                       "filter applied to one but not the other, a join on the wrong key)", headline=head,
                       evidence={"score": round(self.score, 4), "shuffled": [round(s, 4) for s in self.shuffled],
                                 "z": round(self.z, 2), "input_structure": round(self.structure, 4)})


def structure_rows(flat: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Where structure is measured: a table's own standardised columns (their PCA is a rotation whose
    components are uncorrelated, so permuting them shows little: wine 1.09 against 0.64 on its
    columns), an image's 50-d PCA (its pixels are too many for a neighbour search)."""
    if flat.shape[1] > features.shape[1]:
        return features
    flat = np.nan_to_num(flat.astype(np.float64))
    return (flat - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-12)


def input_structure(features: np.ndarray, seed: int, max_rows: int = 2000) -> float:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    rows = features if len(features) <= max_rows else features[rng.choice(len(features), max_rows, replace=False)]
    if len(rows) < 3:
        return 1.0
    permuted = np.column_stack([rng.permutation(column) for column in rows.T])

    def median_nn(f):
        distance, _ = NearestNeighbors(n_neighbors=2).fit(f).kneighbors(f)
        return float(np.median(distance[:, 1]))

    return median_nn(rows) / max(median_nn(permuted), 1e-12)


def shuffled_accuracies(features: np.ndarray, y: np.ndarray, fold: np.ndarray, shuffles: int, seed: int):
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(shuffles):
        labels = rng.permutation(y)
        hits = 0
        for k in np.unique(fold):
            fit, held = fold != k, fold == k
            knn = KNeighborsClassifier(min(NEIGHBOURS, int(fit.sum())), weights="distance").fit(features[fit], labels[fit])
            hits += int(np.sum(knn.predict(features[held]) == labels[held]))
        out.append(hits / len(y))
    return tuple(out)


def target_signal(features: np.ndarray, rows: np.ndarray, target: np.ndarray, folds: int, shuffles: int,
                  seed: int) -> LabelSignal:
    """R-squared of cross-fitted 10-NN and ridge regressors (averaged) on the target and on shuffled
    targets (tables are small: the same estimators both ways)."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor

    splitter = KFold(folds, shuffle=True, random_state=seed)
    k = min(NEIGHBOURS, len(target) - len(target) // folds - 1)

    def r2(y):
        guess = (cross_val_predict(KNeighborsRegressor(k, weights="distance"), features, y, cv=splitter) +
                 cross_val_predict(Ridge(1.0), features, y, cv=splitter)) / 2
        return float(r2_score(y, guess))

    rng = np.random.default_rng(seed)
    score = r2(target)
    shuffled = tuple(r2(rng.permutation(target)) for _ in range(shuffles))
    return LabelSignal("R2", score, shuffled, input_structure(rows, seed), len(target))
