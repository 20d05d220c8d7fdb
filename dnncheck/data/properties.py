"""Simple per-image properties computed from the records of the data pass (no pixels are read):
brightness, contrast, colour means and colourfulness, native size and aspect ratio, sharpness, file
format and mode.

They are what a global shortcut is made of: a class photographed in other light, exported by
another tool, at another resolution or blurrier than the rest can be told apart by one of these
numbers without looking at its content (Deepchecks' property-label correlation and cleanlab's
spurious-correlation scores measure the same kind of properties)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from dnncheck.data.records import image_channel_stats

COLOUR_NAMES = ("red", "green", "blue")
BRIGHTNESS_FAMILY = ("brightness", "darkest value", "brightest value")
# property -> (what people call it, the class is ... when lower, ... when higher, scale from 0-255 to 0-1):
# findings say "the bees are darker", not "class ants: its brightest value is higher"
SAID_AS = {
    "brightness": ("mean brightness", "darker", "brighter", 1 / 255),
    "darkest value": ("darkest pixel", "darker", "lighter", 1 / 255),
    "brightest value": ("brightest pixel", "darker", "brighter", 1 / 255),
    "contrast": ("contrast (pixel std)", "lower in contrast", "higher in contrast", 1 / 255),
    "sharpness": ("sharpness", "blurrier", "sharper", 1.0),
    "pixel count": ("size (pixels)", "smaller", "larger", 1.0),
    "aspect ratio": ("aspect ratio (width / height)", "narrower", "wider", 1.0),
    "colourfulness": ("colourfulness (mean |R-G|, |B-G| over the value range)", "greyer", "more colourful", 1.0),
}


def said_as(prop: str) -> tuple[str, str, str, float]:
    """(name people use, word for lower, word for higher, print scale) of a numeric property."""
    if prop in SAID_AS:
        return SAID_AS[prop]
    colour = prop.removesuffix(" share")
    if colour in COLOUR_NAMES:
        return (f"{colour} cast ({colour} share of the channel means)", f"less {colour}", f"more {colour}", 1.0)
    return (prop, "lower", "higher", 1.0)


def numeric_properties(records: np.ndarray) -> dict[str, np.ndarray]:
    """Name -> one float per image. Constant properties are left out (nothing to learn from them)."""
    ok = records["ok"]
    channel_means, _ = image_channel_stats(records)
    height, width = records["native"][:, 0].astype(np.float64), records["native"][:, 1].astype(np.float64)
    props = {
        "brightness": channel_means.mean(axis=1),
        "contrast": records["std"].astype(np.float64),
        "darkest value": records["min"].astype(np.float64),
        "brightest value": records["max"].astype(np.float64),
        "pixel count": height * width,
        "aspect ratio": width / np.maximum(height, 1),
        "sharpness": _sharpness(records),
    }
    if np.any(records["channels"] >= 3):
        # a colour cast is a channel's mean against the image's brightness, not its absolute level
        for k, name in enumerate(COLOUR_NAMES):
            props[f"{name} share"] = channel_means[:, k] / np.maximum(channel_means.sum(axis=1), 1e-9)
        # colour apart from brightness: a class stored in greyscale among colour photos has none (its
        # channel shares sit at 1/3, inside the others' range, so no share tells it)
        props["colourfulness"] = _colourfulness(records)
    out = {}
    for name, values in props.items():
        values = np.where(ok, np.nan_to_num(values), np.nan)
        present = values[ok]
        if len(present) and np.ptp(present) > 0:
            out[name] = values
    return out


def categorical_properties(records: np.ndarray, ids) -> dict[str, np.ndarray]:
    """'mode is P', 'format is .png' ... -> 0/1 per image, for values that differ across the images."""
    out = {}
    modes = np.array([m.decode("ascii", "replace") for m in records["mode"]])
    formats = np.array([PurePath(str(i)).suffix.lower() for i in ids])
    for label, values in (("mode", modes), ("format", formats)):
        kinds = [k for k in np.unique(values) if k]
        if len(kinds) < 2:
            continue
        for kind in kinds:
            out[f"{label} is {kind}"] = (values == kind).astype(np.float64)
    return out


SHARPNESS_CHUNK = 4096


def _colourfulness(records) -> np.ndarray:
    """Mean |R-G|, |B-G| of the records' 16x16 chroma grid over the value range, 0..1, read a chunk of
    images at a time: the whole column in float64 was 4 GB at a million images (the scan's peak
    went from 1.41 GiB at 100,000 to 5.97 GiB)."""
    from dnncheck.similarity import gather

    out = np.zeros(len(records))
    for start in range(0, len(records), SHARPNESS_CHUNK):
        part = np.arange(start, min(len(records), start + SHARPNESS_CHUNK))
        chroma = gather(records, "chroma", part)
        out[part] = np.abs(chroma.astype(np.float32)).mean(axis=(1, 2, 3), dtype=np.float64) / 127.0
    return out


def _sharpness(records) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the grey copy over the copy's variance: scale-free, low
    for blurred or upscaled images (measured on the <= 32 px copy, so it sees coarse blur only)."""
    from dnncheck.similarity import gather

    out = np.zeros(len(records))
    for size in {tuple(s) for s in records["grey_size"].tolist()}:
        h, w = size
        rows = np.flatnonzero((records["grey_size"][:, 0] == h) & (records["grey_size"][:, 1] == w))
        if h < 3 or w < 3:
            continue
        for start in range(0, len(rows), SHARPNESS_CHUNK):  # float64 copies of 100,000 copies would be 0.8 GB
            part = rows[start:start + SHARPNESS_CHUNK]
            grey = gather(records, "grey", part)[:, :h, :w].astype(np.float64)
            lap = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
                   - 4 * grey[:, 1:-1, 1:-1])
            variance = grey.reshape(len(part), -1).var(axis=1)
            out[part] = lap.reshape(len(part), -1).var(axis=1) / np.maximum(variance, 1e-12)
    return out


MAX_CROSS_VALIDATED = 10_000  # images the all-properties classifier is cross-validated on (stratified)
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class PropertyScan:
    """How well each property alone tells each class from the rest, over every training image."""
    names: tuple[str, ...]
    values: np.ndarray  # images x properties (NaN where an image did not decode)
    y: np.ndarray
    ids: tuple[str, ...]
    auc: np.ndarray  # properties x classes: ROC AUC of the property for class-vs-rest (> 0.5: the class is higher)
    class_counts: np.ndarray
    balanced_accuracy: float | None  # of a small tree on all properties together, cross-validated
    chance: float  # balanced accuracy of guessing

    def strength(self) -> np.ndarray:
        """max(AUC, 1 - AUC): how cleanly the property splits the class from the rest, either way."""
        return np.maximum(self.auc, 1 - self.auc)

    def histogram(self, prop: int, cls: int) -> tuple[list, dict]:
        """Bin centres and the share of the class's and of the other images in each bin."""
        v = self.values[:, prop]
        ok = np.isfinite(v)
        edges = np.histogram_bin_edges(v[ok], HISTOGRAM_BINS)
        mine, _ = np.histogram(v[ok & (self.y == cls)], edges)
        rest, _ = np.histogram(v[ok & (self.y != cls)], edges)
        centres = ((edges[:-1] + edges[1:]) / 2).tolist()
        return centres, {"this class": (mine / max(mine.sum(), 1)).tolist(),
                         "other classes": (rest / max(rest.sum(), 1)).tolist()}


def scan_properties(records: np.ndarray, ids, y: np.ndarray, num_classes: int, seed: int) -> PropertyScan:
    props = {**numeric_properties(records), **categorical_properties(records, ids)}
    names = tuple(props)
    values = np.stack([props[n] for n in names], axis=1) if names else np.zeros((len(y), 0))
    counts = np.bincount(y, minlength=num_classes)
    auc = np.full((len(names), num_classes), 0.5)
    ok = records["ok"]
    for p in range(len(names)):
        auc[p] = _class_vs_rest_auc(values[ok, p], y[ok], num_classes)
    present = counts > 0
    return PropertyScan(names, values, y, tuple(ids), auc, counts,
                        _cross_validated_accuracy(values[ok], y[ok], seed) if names else None,
                        1.0 / max(1, int(present.sum())))


def _class_vs_rest_auc(v: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """ROC AUC of one property for each class against the rest, from mid-ranks (the Mann-Whitney U
    statistic over n_class x n_rest), ties counted half. 0.5 for a class with no or all images."""
    from scipy.stats import rankdata

    ranks = rankdata(v)
    out = np.full(num_classes, 0.5)
    n = len(v)
    for c in range(num_classes):
        mine = y == c
        k = int(mine.sum())
        if 0 < k < n:
            out[c] = (ranks[mine].sum() - k * (k + 1) / 2) / (k * (n - k))
    return out


def _cross_validated_accuracy(values: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    """3-fold balanced accuracy of a depth-6 decision tree on all properties together: how far the
    simple properties alone get, to set beside chance and the model."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    from dnncheck.data.sampling import subsample_index

    index = subsample_index(y, MAX_CROSS_VALIDATED, seed, True)
    x, labels = values[index], y[index]
    counts = np.bincount(labels)
    folds = int(min(3, counts[counts > 0].min())) if len(labels) else 0
    if folds < 2 or len(np.unique(labels)) < 2:
        return None
    tree = DecisionTreeClassifier(max_depth=6, random_state=seed)
    scores = cross_val_score(tree, x, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                             scoring="balanced_accuracy")
    return float(scores.mean())
