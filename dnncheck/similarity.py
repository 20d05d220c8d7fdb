"""Finding exact and near duplicates among samples without comparing every pair.

Exact: a hash of each sample's decoded pixels (or feature row).
Near, in three steps:
1. a descriptor per sample: the image in grey, shrunk to 16x16 with antialiasing, mean-centred and
   L2-normalised (so brightness and contrast changes, light noise and re-encoding barely move it),
   plus four one-pixel shifts of it to search with; for images they come from the data pass's
   records (data/records.py), so no pixels are held here; table rows are z-scored per feature and
   L2-normalised;
2. candidates from an inverted-file index: k-means cells over a 32-d PCA of the descriptors; each
   sample is compared (cosine) with the members of its `probes` nearest cells only, keeping its best
   few matches above a loose bar;
3. verification of each candidate pair at a finer scale: the best normalised cross-correlation of the
   two grey images over shifts of up to `max_shift` pixels (tables: the cosine of step 1).
Pairs at or above `threshold` in step 3 are near duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

PCA_DIMS = 32


@dataclass(frozen=True)
class Pair:
    a: int  # global index (into the concatenation of all samples)
    b: int
    kind: str  # "exact" | "near"
    similarity: float


def content_hashes(x) -> list[bytes]:
    """One digest per sample of its decoded content (shape included)."""
    if isinstance(x, np.ndarray):
        flat = np.ascontiguousarray(x.reshape(len(x), -1))
        shape = repr(x.shape[1:]).encode()
        return [hashlib.blake2b(row.tobytes() + shape, digest_size=16).digest() for row in flat]
    return [hashlib.blake2b(np.ascontiguousarray(im).tobytes() + repr(im.shape).encode(), digest_size=16).digest()
            for im in x]


def exact_pairs(hashes: list[bytes]) -> list[Pair]:
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(hashes):
        groups.setdefault(h, []).append(i)
    pairs = []
    for members in groups.values():
        for k, i in enumerate(members):
            pairs += [Pair(i, j, "exact", 1.0) for j in members[k + 1:]]
    return pairs


# Below this many features two distinct rows are close by chance (one feature, 400 rows: hundreds of
# pairs within 1% of each other), so a table with fewer columns is searched for exact copies only.
MIN_NEAR_FEATURES = 4


def table_zscores(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def unit_rows(z: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def row_similarity(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """2 a.b / (|a|^2 + |b|^2) of z-scored rows: the cosine when the rows have equal length, lower when
    one is a scaled version of the other (a cosine alone calls rows x and 2x identical)."""
    a, b = z[i], z[j]
    denominator = (a * a).sum(axis=1) + (b * b).sum(axis=1)
    return np.where(denominator > 0, 2 * (a * b).sum(axis=1) / np.where(denominator > 0, denominator, 1.0), 1.0)


def candidate_pairs(desc: np.ndarray, keep: float, neighbours: int = 10, probes: int = 8, seed: int = 0,
                    allowed=None, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) with i < j: each sample's best `neighbours` matches with cosine >= keep.

    desc: N,D index descriptors. queries: S,N,D descriptors to search with (default: desc itself),
    each variant s of sample q searching on q's behalf. `allowed(i_array, j_array) -> bool mask`
    filters pairs early (e.g. only across splits).
    """
    n = len(desc)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    queries = desc[None] if queries is None else queries
    variants = len(queries)
    flat_q = queries.reshape(variants * n, -1)
    owner = np.tile(np.arange(n), variants)
    members, order = _inverted_file(desc, flat_q, probes, seed)
    found_i, found_j, found_s = [], [], []
    for cell, idx in enumerate(members):
        rows = np.flatnonzero((order == cell).any(axis=1))
        if not len(rows) or not len(idx):
            continue
        sims = flat_q[rows] @ desc[idx].T
        who = owner[rows]
        sims[who[:, None] == idx[None, :]] = -np.inf  # a sample is not its own duplicate
        if allowed is not None:
            sims[~allowed(who[:, None], idx[None, :])] = -np.inf
        top = min(neighbours, len(idx))
        part = np.argpartition(-sims, top - 1, axis=1)[:, :top]
        cand = np.take_along_axis(sims, part, axis=1)
        ok = cand >= keep
        found_i.append(np.repeat(who, top).reshape(len(who), top)[ok])
        found_j.append(idx[part][ok])
        found_s.append(cand[ok])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    if not len(i):
        return i, j, s
    # distinct (sample, match) pairs with their best similarity over query variants
    order_key = np.lexsort((-s, j, i))
    i, j, s = i[order_key], j[order_key], s[order_key]
    distinct = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]
    i, j, s = i[distinct], j[distinct], s[distinct]
    # each sample keeps its best `neighbours` matches
    order_key = np.lexsort((-s, i))
    i, j, s = i[order_key], j[order_key], s[order_key]
    starts = np.r_[0, np.flatnonzero(i[1:] != i[:-1]) + 1]
    rank = np.arange(len(i)) - np.repeat(starts, np.diff(np.r_[starts, len(i)]))
    i, j, s = i[rank < neighbours], j[rank < neighbours], s[rank < neighbours]
    # unordered pairs, best similarity first
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    order_key = np.lexsort((-s, lo * n + hi))
    key = (lo * n + hi)[order_key]
    first = order_key[np.r_[True, key[1:] != key[:-1]]]
    return lo[first], hi[first], s[first]


def _inverted_file(desc: np.ndarray, queries: np.ndarray, probes: int, seed: int):
    """k-means cells over a PCA of the descriptors: each sample's cell, each query's `probes` nearest."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import PCA

    n = len(desc)
    n_cells = int(np.clip(round(2 * np.sqrt(n)), 1, 1024))
    dims = min(PCA_DIMS, desc.shape[1], n)
    fit_rows = desc if n <= 20000 else desc[np.random.default_rng(seed).choice(n, 20000, replace=False)]
    pca = PCA(n_components=dims, random_state=seed).fit(fit_rows)
    low = pca.transform(desc).astype(np.float32)
    if n_cells <= 1:
        return [np.arange(n)], np.zeros((len(queries), 1), dtype=np.int64)
    km = MiniBatchKMeans(n_clusters=n_cells, random_state=seed, n_init=1, batch_size=4096,
                         max_iter=50).fit(low if n <= 20000 else low[np.random.default_rng(seed).choice(n, 20000, replace=False)])
    centres = km.cluster_centers_.astype(np.float32)
    # a sample lives in its nearest cell; a query is compared with the members of its `probes`
    # nearest cells (distances in chunks to bound memory)
    c2 = (centres ** 2).sum(1)

    def nearest(points, k):
        out = np.empty((len(points), k), dtype=np.int64)
        for start in range(0, len(points), 8192):
            d = c2[None, :] - 2 * points[start:start + 8192] @ centres.T
            out[start:start + len(d)] = np.argpartition(d, k - 1, axis=1)[:, :k] if k > 1 else d.argmin(1)[:, None]
        return out

    home = nearest(low, 1)[:, 0]
    order = nearest(pca.transform(queries).astype(np.float32), min(probes, n_cells))
    members = [np.flatnonzero(home == c) for c in range(n_cells)]
    return members, order


def shift_tolerant_similarity(a, b, max_shift: int = 2, batch: int = 4096) -> np.ndarray:
    """Best normalised cross-correlation of each pair (a[k], b[k]) over shifts up to max_shift.

    a, b: N,1,H,W float tensors of the same size. Returns N values in [-1, 1].
    """
    import torch

    out = []
    for start in range(0, len(a), batch):
        x, y = a[start:start + batch, 0].double(), b[start:start + batch, 0].double()
        best = torch.full((len(x),), -1.0, dtype=torch.float64)
        h, w = x.shape[1:]
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                if h - abs(dy) < 2 or w - abs(dx) < 2:
                    continue
                xa = x[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)].reshape(len(x), -1)
                yb = y[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)].reshape(len(x), -1)
                xa = xa - xa.mean(1, keepdim=True)
                yb = yb - yb.mean(1, keepdim=True)
                num = (xa * yb).sum(1)
                den = (xa.norm(dim=1) * yb.norm(dim=1)).clamp(min=1e-9)
                best = torch.maximum(best, num / den)
        out.append(best.float())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def cross_split_pairs(ds, near_threshold: float, candidate_cosine: float, max_shift: int, seed: int = 0,
                      progress=None) -> list[dict]:
    """Every exact and near duplicate pair whose samples sit in different splits.

    Returns contract pairs {a, b, kind, similarity} plus the two labels, earlier split first.
    """
    names = [n for n in ("train", "val", "test") if n in ds.splits and len(ds.splits[n])]
    parts = [ds.splits[n] for n in names]
    split_of = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    ids = [i for p in parts for i in p.ids]
    labels = np.concatenate([p.y for p in parts])
    stage = progress.stage if progress else (lambda _: None)
    stage("split-leakage: hashing")
    across = (lambda a, b: split_of[a] != split_of[b])
    if ds.is_image:  # from the records of the data pass: no pixels needed
        records = np.concatenate([p.records for p in parts])
        exact = [p for p in exact_pairs([bytes(d) for d in records["digest"]]) if split_of[p.a] != split_of[p.b]]
        stage("split-leakage: near-duplicate candidates")
        queries = records["descriptors"].transpose(1, 0, 2).astype(np.float32)
        i, j, _ = candidate_pairs(queries[0], candidate_cosine, seed=seed, allowed=across, queries=queries)
        stage("split-leakage: verifying candidates")
        sims = verify_pairs(records, i, j, max_shift)
    else:
        samples = np.concatenate([p.x for p in parts])
        exact = [p for p in exact_pairs(content_hashes(samples)) if split_of[p.a] != split_of[p.b]]
        i, j = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if samples.reshape(len(samples), -1).shape[1] >= MIN_NEAR_FEATURES:
            z = table_zscores(samples.reshape(len(samples), -1))
            i, j, _ = candidate_pairs(unit_rows(z), near_threshold, seed=seed, allowed=across)
        sims = row_similarity(z, i, j) if len(i) else np.zeros(0)
    exact_keys = {(p.a, p.b) for p in exact}
    near = [Pair(int(a), int(b), "near", float(s)) for a, b, s in zip(i, j, sims)
            if s >= near_threshold and (int(a), int(b)) not in exact_keys]
    out = []
    for p in exact + near:
        a, b = (p.a, p.b) if split_of[p.a] <= split_of[p.b] else (p.b, p.a)
        out.append({"a": ids[a], "b": ids[b], "kind": p.kind, "similarity": round(min(p.similarity, 1.0), 4),
                    "label_a": int(labels[a]), "label_b": int(labels[b])})
    out.sort(key=lambda d: (d["kind"] != "exact", -d["similarity"]))
    return out


def verify_pairs(records: np.ndarray, i: np.ndarray, j: np.ndarray, max_shift: int, batch: int = 4096) -> np.ndarray:
    """shift_tolerant_similarity of the records' grey copies for pairs (i[k], j[k]), on the first
    record's grid (a copy of another size is resized to it), a batch of pairs at a time."""
    if not len(i):
        return np.zeros(0, np.float32)
    grid = tuple(int(v) for v in records["grey_size"][0])
    out = [shift_tolerant_similarity(_greys(records, i[s:s + batch], grid), _greys(records, j[s:s + batch], grid),
                                     max_shift) for s in range(0, len(i), batch)]
    return np.concatenate(out)


def _greys(records: np.ndarray, index: np.ndarray, grid: tuple[int, int]):
    """N,1,h,w float32 grey copies of records[index] on `grid`."""
    import torch
    import torch.nn.functional as F

    out = torch.empty((len(index), 1, *grid))
    for k, r in enumerate(index):
        h, w = (int(v) for v in records["grey_size"][r])
        grey = torch.from_numpy(records["grey"][r, :h, :w].astype(np.float32))[None, None]
        if (h, w) != grid:
            grey = F.interpolate(grey, size=grid, mode="bilinear", antialias=True, align_corners=False)
        out[k] = grey[0]
    return out
