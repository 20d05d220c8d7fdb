"""Reproducible subsamples of a split (the samples whose pixels checks load, fold complements)."""

from __future__ import annotations

import numpy as np


def subsample_index(y: np.ndarray, cap: int, seed: int, stratify: bool) -> np.ndarray:
    """Indices of at most `cap` samples, keeping class shares (sorted, so order is reproducible)."""
    n = len(y)
    if n <= cap:
        return np.arange(n)
    if stratify:
        from sklearn.model_selection import train_test_split

        try:
            keep, _ = train_test_split(np.arange(n), train_size=cap, stratify=y, random_state=seed)
            return np.sort(keep)
        except ValueError:
            pass  # a class too small to stratify: plain random sample below
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
