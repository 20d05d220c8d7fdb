"""Making the splits a source did not provide: seeded, stratified, groups kept whole."""

from __future__ import annotations

import numpy as np

from dnncheck.data.dataset import SPLIT_FRACTIONS, Dataset, SplitData


def make_missing_splits(ds: Dataset, seed: int, renumber: bool) -> None:
    """Carve missing val/test out of train (in place), recording which were made and how.

    `renumber`: sources whose ids are `<split>:<index>` renumber ids after the split, as the
    contract says; path ids (folders, manifests) stay as they are.
    """
    missing = [name for name in ("test", "val") if ds.split(name) is None]
    if not missing:
        return
    train = ds.splits["train"]
    taken = 0.0
    for name in missing:
        # fractions are of the data before any carving: 15% of all for each made split
        fraction = SPLIT_FRACTIONS[name] / (1.0 - taken)
        keep, carve, how = _split_indices(train, fraction, seed, ds.task)
        if train.groups is None:
            keep, carve, kept = _copies_kept_together(_copy_sets(train), keep, carve)
            how += f", {kept} set(s) of exact copies kept in one split" if kept else ""
        if ds.task == "classification":
            keep, carve = _every_class_stays_in_train(train.y, keep, carve)
        if len(carve) == 0 or len(keep) == 0:
            ds.notes.append(f"too few training samples ({len(train)}) to carve a {name} split")
            continue
        ds.splits[name] = train.take(carve, name=name, renumber=renumber)
        train = train.take(keep, name="train", renumber=renumber)
        ds.made_splits.append(name)
        ds.notes.append(f"{name} split made from train ({len(carve)} samples, {how}, seed {seed})")
        taken += SPLIT_FRACTIONS[name]
    ds.splits["train"] = train


def _split_indices(split: SplitData, fraction: float, seed: int, task: str):
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    n = len(split)
    dummy = np.zeros(n)
    if split.groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, carve = next(splitter.split(dummy, groups=split.groups))
        return keep, carve, "groups kept whole"
    strata = _strata(split.y, task)
    n_carve = int(round(fraction * n))
    if strata is not None:
        counts = np.bincount(strata)
        counts = counts[counts > 0]
        if counts.min() >= 2 and len(counts) <= n_carve <= n - len(counts):
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_carve, random_state=seed)
            keep, carve = next(splitter.split(dummy, strata))
            return np.sort(keep), np.sort(carve), "stratified"
    if n_carve < 1 or n_carve >= n:
        return np.arange(n), np.array([], dtype=np.int64), "not made"
    keep, carve = next(ShuffleSplit(n_splits=1, test_size=n_carve, random_state=seed).split(dummy))
    return np.sort(keep), np.sort(carve), ("random" if task in ("segmentation", "multilabel") else
                                           "random (classes too small to stratify)")


def _copy_sets(split: SplitData) -> np.ndarray | None:
    """Per sample, the number of its set of exact copies (the same decoded pixels or feature row), or
    None when every sample is distinct. Images: the digests of the data pass's records; tables: a
    hash of each row. Near copies and crops are only found later, by split-leakage, which names the
    ones that straddle a carved split as copies inside the user's train."""
    if split.records is not None:
        keys = np.frombuffer(split.records["digest"].tobytes(), dtype="<u8").reshape(len(split), -1)
    elif isinstance(split.x, np.ndarray) and split.x.dtype != object:
        from dnncheck.similarity import content_hashes

        keys = np.frombuffer(b"".join(content_hashes(split.x.reshape(len(split), -1))), dtype="<u8").reshape(len(split), -1)
    else:
        return None
    _, sets = np.unique(keys, axis=0, return_inverse=True)
    sets = sets.reshape(-1)
    return None if sets.max(initial=-1) + 1 == len(split) else sets


def _copies_kept_together(sets: np.ndarray | None, keep: np.ndarray, carve: np.ndarray):
    """Each set of exact copies moved to the side its first sample was drawn to: a copy on each side
    of the carving would grade the carved split on what train holds. Returns keep, carve and how
    many sets straddled."""
    if sets is None or not len(carve):
        return keep, carve, 0
    carved = np.zeros(len(sets), dtype=bool)
    carved[carve] = True
    first = np.unique(sets, return_index=True)[1]  # each set's first sample (sets are numbered 0..k-1)
    side = carved[first[sets]]
    straddling = len(np.unique(sets[side != carved]))
    return np.flatnonzero(~side), np.flatnonzero(side), straddling


def _every_class_stays_in_train(y: np.ndarray, keep: np.ndarray, carve: np.ndarray):
    """Move one carved sample back to train for each class the carving would take out of train
    entirely (a class with a single sample, or an unlucky random split): a model cannot learn a
    class it never sees, and every check would then misread that class."""
    missing = np.setdiff1d(np.unique(y[carve]), np.unique(y[keep]))
    if not len(missing):
        return keep, carve
    back = np.array([carve[np.flatnonzero(y[carve] == c)[0]] for c in missing])
    return np.sort(np.concatenate([keep, back])), np.setdiff1d(carve, back)


def _strata(y: np.ndarray, task: str):
    if task in ("segmentation", "multilabel"):  # no one class per sample to keep shares of: random
        return None
    if task == "classification":
        return y.astype(np.int64)
    if len(y) < 20:
        return None
    # regression: stratify on target quintiles so every split covers the target's range
    edges = np.quantile(y, [0.2, 0.4, 0.6, 0.8])
    return np.searchsorted(edges, y, side="right").astype(np.int64)
