"""Finding exact and near duplicates among samples without comparing every pair.

Exact: a hash of each sample's decoded pixels (or feature row).
Near (kind "near"), in three steps:
1. a descriptor per sample: the image in grey, shrunk to 16x16 with antialiasing, mean-centred and
   L2-normalised (so brightness and contrast changes, light noise and re-encoding barely move it),
   plus four one-pixel shifts of it to search with; for images they come from the data pass's
   records (data/records.py), so no pixels are held here; table rows are z-scored per feature;
2. candidates from faiss (an exact inner-product index for small sets, an inverted file above):
   each split searched by its own samples and by every later split, keeping each query's best few
   matches above a loose bar;
3. verification of each candidate pair at a finer scale: the best normalised cross-correlation of the
   two grey images over shifts of up to `max_shift` pixels and, at that shift, with either image
   blurred (tables: 2a.b/(|a|^2+|b|^2) of the z-scored rows).
Pairs at or above `threshold` in step 3 are near duplicates.
Photos (kind "geometric"): ORB keypoints from the records matched through a faiss binary index, each
pair of images with enough matches verified by a RANSAC fit of a similarity transform.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dnncheck.data.records import RECORD_DTYPE
from dnncheck.data.store import StoredRecords


@dataclass(frozen=True)
class Pair:
    a: int  # global index (into the concatenation of all samples)
    b: int
    kind: str  # "exact" | "near" | "geometric" | "embedding"
    similarity: float


SPLIT_ORDER = ("train", "val", "test")


class SplitLayout:
    """The splits of a dataset laid end to end, train first: global index -> split, id and label, and
    the contract dict of a pair (earlier split first), shared by every duplicate search."""

    def __init__(self, ds):
        self.names = [n for n in SPLIT_ORDER if n in ds.splits and len(ds.splits[n])]
        self.parts = [ds.splits[n] for n in self.names]
        self.starts = np.r_[0, np.cumsum([len(p) for p in self.parts])].astype(np.int64)
        self.split_of = np.concatenate([np.full(len(p), k) for k, p in enumerate(self.parts)])
        self.ids = [i for p in self.parts for i in p.ids]
        from dnncheck.data.tasks import annotation_keys

        # equal exactly when two samples' annotations are (a class, a label set, a mask)
        self.labels, self.label_names = annotation_keys(ds, self.parts)

    def pair(self, p: Pair, **extra) -> dict:
        a, b = (p.a, p.b) if (self.split_of[p.a], p.a) <= (self.split_of[p.b], p.b) else (p.b, p.a)
        return {"a": self.ids[a], "b": self.ids[b], "kind": p.kind, "similarity": round(min(p.similarity, 1.0), 4),
                "label_a": int(self.labels[a]), "label_b": int(self.labels[b]),
                "split_a": self.names[self.split_of[a]], "split_b": self.names[self.split_of[b]], **extra}


class JoinedRecords:
    """The records of several splits laid end to end, joined one field at a time when a search asks
    for it: concatenating whole records copied all of them (9.4 KB each: 188 MB at 20,000 images)
    for the few fields each stage reads. A stage drops what it no longer needs with `release`. A
    single split's fields are views, not copies. Indexes like a record array: records["grey"]."""

    def __init__(self, parts):
        self.parts = [p.records for p in parts]
        self._joined: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return sum(len(r) for r in self.parts)

    def __getitem__(self, field: str) -> np.ndarray:
        """A field of every record, joined (for the light fields; the heavy ones of stored records, which
        live on disk, are read with `rows` or `chunks`)."""
        if field not in self._joined:
            columns = [r[field] for r in self.parts]
            self._joined[field] = columns[0] if len(columns) == 1 else np.concatenate(columns)
        return self._joined[field]

    def release(self, *fields: str) -> None:
        for field in fields:
            self._joined.pop(field, None)

    def rows(self, field: str, index: np.ndarray) -> np.ndarray:
        """records[field][index] gathered from the splits' own records, without joining the whole field
        (the keypoint codes of 25,000 photos joined were 102 MB for a stage that reads them a chunk at a time)."""
        if field in self._joined:
            return self[field][index]
        index = np.asarray(index, dtype=np.int64)
        if len(self.parts) == 1:
            return gather(self.parts[0], field, index)
        starts = np.cumsum([0] + [len(r) for r in self.parts])
        base = RECORD_DTYPE.fields[field][0]
        out = np.empty((len(index), *base.shape), dtype=base.base)
        part_of = np.searchsorted(starts, index, side="right") - 1
        for k, part in enumerate(self.parts):
            chosen = part_of == k
            if chosen.any():
                out[chosen] = gather(part, field, index[chosen] - starts[k])
        return out


def gather(records: "np.ndarray | StoredRecords | JoinedRecords", field: str, index: np.ndarray) -> np.ndarray:
    """records[field][index] for a record array, StoredRecords or JoinedRecords, reading only those rows."""
    if isinstance(records, JoinedRecords):
        return records.rows(field, index)
    if isinstance(records, StoredRecords):
        return records.gather(field, index)
    return records[field][index]


def content_hashes(x) -> list[bytes]:
    """One digest per sample of its decoded content (shape included)."""
    if isinstance(x, np.ndarray):
        flat = np.ascontiguousarray(x.reshape(len(x), -1))
        shape = repr(x.shape[1:]).encode()
        return [hashlib.blake2b(row.tobytes() + shape, digest_size=16).digest() for row in flat]
    return [hashlib.blake2b(np.ascontiguousarray(im).tobytes() + repr(im.shape).encode(), digest_size=16).digest()
            for im in x]


def exact_pairs(hashes) -> list[Pair]:
    """Every pair of samples with equal digests: a list of bytes, or an array of 16-byte digests
    (records["digest"]: grouped by sorting, without a Python object per sample)."""
    if isinstance(hashes, np.ndarray):
        keys = np.frombuffer(np.ascontiguousarray(hashes).tobytes(), dtype="<u8").reshape(len(hashes), -1)
        _, group, sizes = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(sizes[group.reshape(-1)] > 1)
        members_of: dict[int, list[int]] = {}
        for i in shared.tolist():
            members_of.setdefault(int(group.reshape(-1)[i]), []).append(i)
        groups = members_of.values()
    else:
        table: dict[bytes, list[int]] = {}
        for i, h in enumerate(hashes):
            table.setdefault(h, []).append(i)
        groups = table.values()
    pairs = []
    for members in groups:
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


FLAT_INDEX_MAX = 4096  # below this many indexed vectors an exact (flat) search is as fast as an approximate one
IVF_PROBES = 8
# Above this many indexed vectors the inverted file keeps product-quantised codes (PQ_BYTES a vector)
# rather than the vectors (1 KB each in float32: 0.8 GB for 800,000 training images); its approximate
# cosines only choose candidates (kept from PQ_MARGIN below the bar), which are then scored exactly
# from the stored descriptors, so the bar means the same at every size.
PQ_FROM = 1 << 18
PQ_BYTES = 32
PQ_MARGIN = 0.05
QUERY_ROWS = 16384  # samples whose variants search the index at a time
TRAIN_ROWS = 1 << 16  # vectors an inverted file's cells are trained on


class Variants:
    """S,N,D unit descriptors to search with (S variants of each of N samples; variant 0 is the one
    indexed), read a block of samples at a time: from an array, or from the records' descriptors,
    which for stored records live on disk (data/store.py)."""

    def __init__(self, read, read_first=None, rescore: bool = True):
        """read(rows) -> S, len(rows), D; read_first(rows) -> variant 0 alone, where that is cheaper.
        rescore: a compressed index's candidates are scored again exactly (False where reading the
        matches' vectors back costs more than the candidates are worth: word histograms are remade
        from the keypoints, and their pairs are verified anyway)."""
        self.read, self.read_first, self.rescore = read, read_first, rescore

    @classmethod
    def of_array(cls, variants: np.ndarray) -> "Variants":
        return cls(lambda rows: variants[:, rows])

    @classmethod
    def of_records(cls, records) -> "Variants":
        return cls(lambda rows: gather(records, "descriptors", rows).transpose(1, 0, 2))

    def block(self, lo: int, hi: int) -> np.ndarray:
        return self.read(np.arange(lo, hi))

    def indexed(self, rows: np.ndarray) -> np.ndarray:
        """Variant 0 of samples `rows`, float32 N,D."""
        rows = np.asarray(rows, dtype=np.int64)
        first = self.read_first(rows) if self.read_first else self.read(rows)[0]
        return np.ascontiguousarray(first, dtype=np.float32)


def neighbour_pairs(variants: Variants, index_rows: tuple[int, int], query_rows: tuple[int, int], keep: float,
                    neighbours: int = 10, same: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(query, match) int32 for each query's best `neighbours` matches with cosine >= keep; query and
    match relative to the first row of query_rows and of index_rows (int32 and no cosines: at a million
    images a search returns millions of pairs, and the caller only keeps their keys).

    Variant 0 of samples index_rows (lo, hi) is indexed; every variant s of each sample q in query_rows
    searches on q's behalf (its best cosine counts). same: the queries are the indexed samples themselves
    (a sample is not its own match). faiss does the search: an exact inner-product index for small sets,
    an inverted file (k-means cells, IVF_PROBES probed) above, with compressed codes above PQ_FROM.
    """
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32))
    (ilo, ihi), (slo, shi) = (int(v) for v in index_rows), (int(v) for v in query_rows)
    n, queries = ihi - ilo, shi - slo
    if n <= 0 or queries <= 0 or (same and n < 2):
        return empty
    index, compressed = _float_index(variants, ilo, ihi)
    k = min(n, neighbours + int(same))
    rescore = compressed and variants.rescore
    bar = keep - PQ_MARGIN if rescore else keep
    out = []
    for first in range(slo, shi, QUERY_ROWS):
        block = variants.block(first, min(shi, first + QUERY_ROWS))
        found_q, found_j, found_s = [], [], []
        for variant in block:
            sims, idx = index.search(np.ascontiguousarray(variant, dtype=np.float32), k)
            q = np.repeat(np.arange(block.shape[1]), k)
            j, sim = idx.reshape(-1), sims.reshape(-1)
            ok = (j >= 0) & (sim >= bar) & ~(same & (j + ilo == q + first))
            found_q.append(q[ok]), found_j.append(j[ok]), found_s.append(sim[ok])
        q, j, sim = np.concatenate(found_q), np.concatenate(found_j), np.concatenate(found_s)
        if rescore and len(q):  # exact cosines, each variant's best, from the stored descriptors
            q, j, sim = _exact_cosines(variants, block, q, j, ilo, keep)
        if len(q):
            q, j, _ = _best_per_query(q + (first - slo), j, sim, neighbours)
            out.append((q.astype(np.int32), j.astype(np.int32)))
    if not out:
        return empty
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _best_per_query(q, j, sim, neighbours):
    """Distinct (query, match) pairs with their best cosine over the variants, each query keeping its
    best `neighbours` over all its variants (not that many per variant)."""
    order = np.lexsort((-sim, j, q))
    q, j, sim = q[order], j[order], sim[order]
    first = np.r_[True, (q[1:] != q[:-1]) | (j[1:] != j[:-1])]
    q, j, sim = q[first], j[first], sim[first]
    order = np.lexsort((-sim, q))
    q, j, sim = q[order], j[order], sim[order]
    keep_rank = _rank_in_runs(q) < neighbours
    return q[keep_rank], j[keep_rank], np.minimum(sim[keep_rank], 1.0)


EXACT_PAIRS = 8192  # candidate pairs rescored at a time (their variants in float32: 42 MB)


def _exact_cosines(variants: Variants, block: np.ndarray, q, j, ilo: int, keep: float):
    """For candidate (query, match) pairs of a compressed index: the best exact cosine over the query's
    variants, pairs under `keep` dropped. Each distinct pair once (every variant proposes most of
    them again), a batch at a time: all of a block's candidates at once were 4.6 GB."""
    base = int(j.max()) + 1
    key = np.unique(q.astype(np.int64) * base + j)
    q, j = key // base, key % base
    best = np.empty(len(q), np.float32)
    for s in range(0, len(q), EXACT_PAIRS):
        part_q, part_j = q[s:s + EXACT_PAIRS], j[s:s + EXACT_PAIRS]
        matches, where = np.unique(part_j, return_inverse=True)
        indexed = variants.indexed(matches + ilo)[where]
        best[s:s + EXACT_PAIRS] = np.max(np.einsum("sqd,qd->sq", block[:, part_q].astype(np.float32), indexed), axis=0)
    ok = best >= keep
    return q[ok], j[ok], best[ok]


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... within each run of equal values of a sorted array: each element's rank in its group."""
    if not len(keys):
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


def _float_index(variants: Variants, lo: int, hi: int):
    """(faiss index over variant 0 of samples lo..hi, whether its scores are approximate), built a
    block at a time."""
    import faiss

    n, dims = hi - lo, variants.indexed(np.array([lo])).shape[1]
    compressed = False
    if n <= FLAT_INDEX_MAX:
        index = faiss.IndexFlatIP(dims)
    else:
        # faiss wants 39 training points a cell; at most TRAIN_ROWS of them (the training sample is held
        # at once: 160,000 word histograms of a million scenes were 0.7 GB with their mirrored views)
        cells = int(min(4096, 4 * np.sqrt(n), n // 39, TRAIN_ROWS // 40))
        quantizer = faiss.IndexFlatIP(dims)
        compressed = n > PQ_FROM and dims % PQ_BYTES == 0
        if compressed:
            index = faiss.IndexIVFPQ(quantizer, dims, cells, PQ_BYTES, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dims, cells, faiss.METRIC_INNER_PRODUCT)
        # k-means on a fixed, evenly spaced sample (faiss seeds its own clustering): same cells every run
        index.train(variants.indexed(lo + np.linspace(0, n - 1, min(n, 40 * cells)).astype(np.int64)))
        index.nprobe = IVF_PROBES
    for first in range(lo, hi, QUERY_ROWS):
        index.add(variants.indexed(np.arange(first, min(hi, first + QUERY_ROWS))))
    return index, compressed


def shift_tolerant_similarity(a, b, max_shift: int = 2, with_shift: bool = False, plane: bool = False):
    """Best normalised cross-correlation of each pair (a[k], b[k]) over shifts up to max_shift.

    a, b: N,1,H,W float tensors of the same size. Returns N values in [-1, 1] (and, with_shift, the
    N x 2 (dy, dx) that gave each).
    """
    import torch

    # float32: the correlations are compared against thresholds of 1e-3 resolution; float64 was 2x slower
    x, y = a[:, 0].float(), b[:, 0].float()
    best = torch.full((len(x),), -1.0)
    where = torch.zeros((len(x), 2), dtype=torch.int64)
    h, w = x.shape[1:]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if h - abs(dy) < 2 or w - abs(dx) < 2:
                continue
            score = _correlation_at(x, y, dy, dx, plane)
            better = score > best
            best = torch.where(better, score, best)
            where[better] = torch.tensor([dy, dx])
    best = best.float().numpy()
    return (best, where.numpy()) if with_shift else best


def _correlation_at(x, y, dy: int, dx: int, plane: bool = False):
    """Normalised cross-correlation of x[k] and y[k] (N,H,W) where they overlap with y moved by (dy, dx),
    each mean-centred or, with `plane`, with its least-squares plane (a + b.row + c.col) removed: what
    is left of a smooth scene is its shapes (structure_agrees)."""
    h, w = x.shape[1:]
    centre = _without_plane if plane else _without_mean
    xa = centre(x[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)])
    yb = centre(y[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])
    return (xa * yb).sum(1) / (xa.norm(dim=1) * yb.norm(dim=1)).clamp(min=1e-9)


def _without_mean(images):
    flat = images.reshape(len(images), -1)
    return flat - flat.mean(1, keepdim=True)


def _without_plane(images):
    """N,H,W images as N x HW rows minus each one's least-squares plane: centred row and column
    coordinates are orthogonal to the constant and to each other, so the fit is three projections."""
    import torch

    n, h, w = images.shape
    rows = (torch.arange(h, dtype=images.dtype) - (h - 1) / 2)[:, None].expand(h, w).reshape(-1)
    cols = (torch.arange(w, dtype=images.dtype) - (w - 1) / 2)[None, :].expand(h, w).reshape(-1)
    flat = images.reshape(n, -1)
    flat = flat - flat.mean(1, keepdim=True)
    for axis in (rows, cols):
        energy = float(axis @ axis)
        if energy > 0:
            flat = flat - (flat @ axis)[:, None] * (axis / energy)[None, :]
    return flat


def _without_plane_at(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """N x M values at M cells (rows, cols) of a grid, each row minus its least-squares plane over
    those cells (any set of cells: _without_plane's shortcut needs the whole grid)."""
    design = np.stack([np.ones(len(rows)), rows, cols], axis=1).astype(np.float64)
    values = values.astype(np.float64)
    coefficients = np.linalg.lstsq(design, values.T, rcond=None)[0]
    return values - (design @ coefficients).T


def correlation_at_shifts(a, b, shifts: np.ndarray, plane: bool = False) -> np.ndarray:
    """Normalised cross-correlation of each pair at its own shift (N x 2), grouped by shift."""
    import torch

    x, y = a[:, 0].float(), b[:, 0].float()
    out = np.empty(len(x), np.float32)
    for dy, dx in np.unique(shifts, axis=0):
        rows = torch.from_numpy(np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx)))
        out[rows.numpy()] = _correlation_at(x[rows], y[rows], int(dy), int(dx), plane).float().numpy()
    return out


# Below this side distinct images collide: two writers' 1s in 8x8 digits correlate at 0.994. Within a
# split such images are searched for exact copies only (a collision there is no copy that weights
# the loss); across splits the near search still runs, as before.
MIN_WITHIN_SIDE = 16


def duplicate_pairs(ds, near_threshold: float, candidate_cosine: float, max_shift: int,
                    geometric_inliers: int = 10, progress=None) -> list[dict]:
    """Every exact, near and geometric duplicate pair, across splits and within each split.

    Returns contract pairs {a, b, kind, similarity} plus the two labels and splits, earlier split
    first; cross-split pairs first, then within-split ones, each best first.
    """
    layout = SplitLayout(ds)
    starts, split_of = layout.starts, layout.split_of
    stage = progress.stage if progress else (lambda _: None)
    stage("split-leakage: hashing")
    extra = {}
    if ds.is_image:  # from the records of the data pass: no pixels needed
        records = JoinedRecords(layout.parts)
        exact = exact_pairs(records["digest"])
        stage("split-leakage: near-duplicate candidates")
        # float16 as stored: each search converts its own block (all five variants of 25,000 photos in
        # float32 were 128 MB)
        i, j = block_candidates(Variants.of_records(records), starts, candidate_cosine)
        records.release("digest", "descriptors")
        stage("split-leakage: verifying candidates")
        if min(int(v) for v in records["grey_size"][0]) < MIN_WITHIN_SIDE:
            across = split_of[i] != split_of[j]
            i, j = i[across], j[across]
        scores = verify_pairs(records, i, j, max_shift)
        alike = scores >= near_threshold
        alike[alike] = structure_agrees(records, i[alike], j[alike], max_shift) & colours_agree(records, i[alike],
                                                                                                j[alike])
        near = _keep(i[alike], j[alike], scores[alike], near_threshold, "near")
        records.release("grey_size")
        geometric = []
        if np.any(records["kp_count"][:, 0] > 0):
            stage("split-leakage: matching local features")
            geometric, extra = geometric_pairs(records, geometric_inliers, starts)
    else:
        samples = np.concatenate([p.x for p in layout.parts]).reshape(int(starts[-1]), -1)
        exact = exact_pairs(content_hashes(samples))
        near, geometric = [], []
        if samples.shape[1] >= MIN_NEAR_FEATURES:
            z = table_zscores(samples)
            i, j = block_candidates(Variants.of_array(unit_rows(z)[None]), starts, near_threshold)
            near = _keep(i, j, row_similarity(z, i, j) if len(i) else np.zeros(0), near_threshold, "near")
    out, seen = [], set()
    for p in exact + near + geometric:  # a pair is reported once, as its strongest kind
        key = (min(p.a, p.b), max(p.a, p.b))
        if key not in seen:
            seen.add(key)
            out.append(layout.pair(p, **extra.get(key, {})))
    rank = {"exact": 0, "near": 1, "geometric": 2}
    out.sort(key=lambda d: (d["split_a"] == d["split_b"], rank[d["kind"]], -d["similarity"]))
    return out


def _keep(i, j, sims, threshold, kind) -> list[Pair]:
    return [Pair(int(a), int(b), kind, float(v)) for a, b, v in zip(i, j, sims) if v >= threshold]


# Matches kept per sample and search: enough for every copy of a sample in the usual case (one or two),
# few enough that 70,000 digits with 13 jittered siblings each verify in seconds, not minutes
# (every variant keeping 10 and 10 both ways: 736,000 candidates; now 228,000); a sample with more
# copies is still named, with its closest ones.
NEIGHBOURS_ACROSS = 10
NEIGHBOURS_WITHIN = 3
NEIGHBOURS_REVERSE = 1


def block_candidates(variants: "Variants", starts: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (global indices, i < j, sorted) between every two splits and within each: each
    split's index searched by the samples of its own and of every later split. Pairs are kept as one
    int64 key each and deduplicated after every search: a million scenes' visual words proposed 14 M
    pairs, and holding them as (i, j) lists, their concatenation and its sort was 0.7 GB."""
    total = int(starts[-1])
    keys = np.zeros(0, np.int64)
    blocks = len(starts) - 1
    for a in range(blocks):
        lo, hi = starts[a], starts[a + 1]
        for b in range(a, blocks):
            qlo, qhi = starts[b], starts[b + 1]
            # both ways: a copy moved by a pixel is found by the original's shifted variants, or the reverse
            # (the reverse search keeps fewer: it only adds what the shifted variants of the other side find)
            searches = [(lo, hi, qlo, qhi, NEIGHBOURS_WITHIN if a == b else NEIGHBOURS_ACROSS)]
            searches += [(qlo, qhi, lo, hi, NEIGHBOURS_REVERSE)] if a != b else []
            for ilo, ihi, slo, shi, k in searches:
                q, j = neighbour_pairs(variants, (ilo, ihi), (slo, shi), keep, k, same=(a == b))
                gi, gj = q.astype(np.int64) + slo, j.astype(np.int64) + ilo
                found = np.minimum(gi, gj) * total + np.maximum(gi, gj)
                del q, j, gi, gj
                keys = _merged(keys, found)
    index = np.int32 if total < 2**31 else np.int64  # half the memory of the pairs to verify
    pairs = (keys // total).astype(index), (keys % total).astype(index)
    del keys
    if total >= LARGE_SEARCH:  # the searches' and merges' arrays: freed, but kept by the C heap
        from dnncheck.runner import release_freed_memory

        release_freed_memory()
    return pairs


LARGE_SEARCH = 100_000  # samples from which handing freed memory back (85 ms) is worth it


def _merged(keys: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The sorted, distinct union of `keys` (sorted, distinct) and `found`: only the keys not yet
    known are inserted, each where it belongs. np.union1d concatenates, copies and sorts both, four
    arrays the size of all the keys at its peak (14 M keys at a million images: 0.45 GB)."""
    found = np.unique(found)
    at = np.searchsorted(keys, found)
    known = at < len(keys)
    known[known] = keys[at[known]] == found[known]
    return np.insert(keys, at[~known], found[~known])


# -- photos: local features and geometric verification ---------------------------------------------
HAMMING_MAX = 64  # of 256 bits: a descriptor match (ORB matches of one scene lie mostly below 50)
MATCHES_PER_DESCRIPTOR = 5
MIN_VOTES = 5  # descriptor matches a pair of images needs before its geometry is checked
QUERY_IMAGES = 2048  # images whose keypoints are matched at a time
GEOMETRIC_CANDIDATES = 10  # images, per query image and view, whose geometry is checked (most votes first)
RANSAC_PIXELS = 4.0  # reprojection error at the 256 px detection size
# Both copies are drawn at 256 px, so a crop to 60% of the side is a scale of 1/0.6 = 1.7 between
# them; 2.5 leaves room for crops to 40% of the side. Chance fits come at any scale: a clean ant/bee
# pair fitted at scale 60 (10 points of one photo mapped into a speck of the other), two random
# textures at 2.7.
MAX_SIZE_RATIO = 2.5


# Above this many keypoints (about 130,000 photos of 64 keypoints, 380,000 scenes of 22) the pairs to
# check come from visual words (_pairs_by_words) rather than from every keypoint's nearest codes: the
# codes' index alone would grow by 40 bytes a keypoint, and its search with them.
EXACT_MATCHING_MAX_KEYPOINTS = 1 << 23


def geometric_pairs(records: "np.ndarray | JoinedRecords", min_inliers: int,
                    starts: np.ndarray | None = None) -> tuple[list[Pair], dict]:
    """Pairs of photos whose ORB keypoints (data/keypoints.py) agree on one similarity transform
    (rotation, scale, translation; mirror images through the mirrored view's keypoints): crops,
    mirror images, rescaled and re-exposed copies. Candidates: every keypoint's nearest descriptors
    in a faiss binary index, votes per pair of images; verification: OpenCV's RANSAC fit of a
    partial affine transform, `min_inliers` keypoints or more agreeing. Similarity: the inliers'
    share of the smaller keypoint set. Also returns, per pair, its inliers, mirroring and scale."""
    counts = records["kp_count"].astype(np.int64)
    n = len(records)
    if starts is not None and counts[:, 0].sum() > EXACT_MATCHING_MAX_KEYPOINTS:
        verified = _pairs_by_words(records, counts, starts, min_inliers)
        return [Pair(a, b, "geometric", v.pop("similarity")) for (a, b), v in sorted(verified.items())], verified
    owner, point = _points(counts[:, 0])
    if not len(owner):
        return [], {}
    index = _binary_index(_codes(records, owner, point, 0))
    verified: dict = {}
    for view in (0, 1):
        # query images a chunk at a time: the matches of all 20,000 photos' keypoints at once were
        # several arrays of 2.5 M x 5 entries (0.6 GB)
        for first in range(0, n, QUERY_IMAGES):
            chunk = np.arange(first, min(n, first + QUERY_IMAGES))
            qa, qp, db, dp = _votes(index, records, counts, owner, point, chunk, view)
            runs = _best_candidates(qa, db)
            if not runs:
                continue
            fields = _FitFields(records, np.r_[qa[[s for s, _ in runs]], db[[s for s, _ in runs]]])
            for s, e in runs:
                _verify(fields, counts, view, int(qa[s]), int(db[s]), qp[s:e], dp[s:e], min_inliers, verified)
    pairs = [Pair(a, b, "geometric", v.pop("similarity")) for (a, b), v in sorted(verified.items())]
    return pairs, verified


def _votes(index, records, counts, owner, point, images, view):
    """(query image, query keypoint, image, keypoint) matches of the `images`' keypoints in `view`,
    sorted by pair: Hamming <= HAMMING_MAX, other images only, one match per keypoint and image."""
    q_owner, q_point = _points(counts[:, view], images)
    if not len(q_owner):
        return (np.zeros(0, np.int64),) * 4
    dist, idx = index.search(_codes(records, q_owner, q_point, view), MATCHES_PER_DESCRIPTOR)
    qa = np.repeat(q_owner, MATCHES_PER_DESCRIPTOR)
    qp = np.repeat(q_point, MATCHES_PER_DESCRIPTOR)
    hit, hamming = idx.reshape(-1), dist.reshape(-1)
    ok = hit >= 0
    ok[ok] = hamming[ok] <= HAMMING_MAX
    qa, qp, hit, hamming = qa[ok], qp[ok], hit[ok], hamming[ok]
    db, dp = owner[hit], point[hit]
    ok = qa != db
    qa, qp, db, dp, hamming = qa[ok], qp[ok], db[ok], dp[ok], hamming[ok]
    if not len(qa):  # no keypoint of these images matched another image's
        return (np.zeros(0, np.int64),) * 4
    # each query keypoint votes once per image, with its closest code there (several matches of one
    # keypoint would inflate both the votes and RANSAC's inliers)
    order = np.lexsort((hamming, qp, db, qa))
    qa, qp, db, dp = qa[order], qp[order], db[order], dp[order]
    first = np.r_[True, (qa[1:] != qa[:-1]) | (db[1:] != db[:-1]) | (qp[1:] != qp[:-1])]
    return qa[first], qp[first], db[first], dp[first]


# -- photos at scale: candidates from visual words ------------------------------------------------------
# The bag-of-visual-words retrieval of Sivic & Zisserman ("Video Google", ICCV 2003): each keypoint's
# code is replaced by its nearest of VOCABULARY binary centroids (k-means in Hamming space, faiss), each
# image becomes the histogram of its words (square-rooted and L2-normalised, the "power normalisation"
# of Jegou et al., TPAMI 2012), and images whose histograms are each other's nearest neighbours, cosine
# WORDS_COSINE or more, become candidate pairs. A crop keeps most of its keypoints' words, a mirror
# image keeps them in its mirrored view's histogram. Each candidate pair is then matched keypoint to
# keypoint (_closest_codes), both ways, and verified by the same
# RANSAC fit as the exact matching. Memory: one histogram block at a time and the index's codes
# (product-quantised above PQ_FROM images), never every keypoint's code.
# What it costs, measured on one split of 3,000 sibling photos (benchmarks/bench_scale.py's augment-
# before-split set): 3,642 verified pairs, all between variants of one photo, against the exact
# matching's 6,055 (60%; a leaked photo is named when one of its siblings is found: 83% of the leaked
# photos of an 80/20 split of them); on 20,000 distinct generated scenes none (before the matching's
# cross-check: 8 pairs of flat shapes in similar places). The bar WORDS_COSINE was chosen there: the
# true pairs' histograms met at cosines of 0.31 (1st percentile) to 0.44 (median); a higher bar loses
# more of them (0.4: a quarter fewer pairs).
VOCABULARY = 512
VOCABULARY_SAMPLE = 1 << 17  # codes the words are trained on (evenly spaced over the images)
WORDS_COSINE = 0.35
WORDS_ROWS = 4096  # images whose histograms are made at a time
RATIO_TEST = 0.7
PAIR_BATCH = 1024  # candidate pairs whose keypoints are read at a time


def _pairs_by_words(records, counts: np.ndarray, starts: np.ndarray, min_inliers: int) -> dict:
    words = _vocabulary(records, counts)
    variants = Variants(lambda rows: _word_histograms(records, counts, words, rows),
                        lambda rows: _word_histograms(records, counts, words, rows, views=(0,))[0], rescore=False)
    i, j = block_candidates(variants, starts, WORDS_COSINE)
    verified: dict = {}
    for s in range(0, len(i), PAIR_BATCH):
        a, b = i[s:s + PAIR_BATCH], j[s:s + PAIR_BATCH]
        images, where = np.unique(np.r_[a, b], return_inverse=True)
        codes = gather(records, "kp_desc", images)
        fields = _FitFields(records, images)
        wa, wb = where[:len(a)], where[len(a):]
        # both ways, as every image queries in the exact matching (a crop's keypoints find their
        # originals more often than the reverse), and each way from both views of the query
        tries = [(qw, tw, query, target, view) for qw, tw, query, target in ((wa, wb, a, b), (wb, wa, b, a))
                 for view in (0, 1)]
        found = [_closest_codes(codes[qw, view], counts[query, view], codes[tw, 0], counts[target, 0])
                 for qw, tw, query, target, view in tries]
        for k in range(len(a)):
            for (qw, tw, query, target, view), (ok, best) in zip(tries, found):
                qp = np.flatnonzero(ok[k])
                if len(qp) >= MIN_VOTES:
                    _verify(fields, counts, view, int(query[k]), int(target[k]), qp, best[k, qp], min_inliers, verified)
    return verified


def _vocabulary(records, counts: np.ndarray):
    """VOCABULARY binary centroids (a faiss binary k-means, trained on an evenly spaced sample of view-0
    codes: the same words every run), as a flat binary index to assign codes with."""
    import faiss

    with_points = np.flatnonzero(counts[:, 0] > 0)
    per_image = max(1, int(counts[with_points, 0].mean()))
    chosen = with_points[np.linspace(0, len(with_points) - 1, min(len(with_points),
                                                                   VOCABULARY_SAMPLE // per_image)).astype(np.int64)]
    owner, point = _points(counts[:, 0], chosen)
    sample = _codes(records, owner, point, 0)
    bits = sample.shape[1] * 8
    count = int(np.clip(len(sample) // 39, 2, VOCABULARY))  # faiss's k-means wants 39 points a centroid
    trainer = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, count)
    trainer.train(sample)
    words = faiss.IndexBinaryFlat(bits)
    words.add(faiss.vector_to_array(faiss.downcast_IndexBinary(trainer.quantizer).xb).reshape(count, -1))
    return words


def _word_histograms(records, counts: np.ndarray, words, rows: np.ndarray, views=(0, 1)) -> np.ndarray:
    """2, len(rows), words: each image's histogram of words in view 0 and in its mirrored view 1,
    square-rooted and L2-normalised (zeros for an image without keypoints)."""
    size = words.ntotal
    out = np.zeros((len(views), len(rows), size), np.float32)
    for first in range(0, len(rows), WORDS_ROWS):
        part = rows[first:first + WORDS_ROWS]
        codes = gather(records, "kp_desc", part)
        for slot, view in enumerate(views):
            per = counts[part, view]
            owner = np.repeat(np.arange(len(part)), per)
            point = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)
            if not len(owner):
                continue
            _, word = words.search(np.ascontiguousarray(codes[owner, view, point]), 1)
            hist = np.bincount(owner * size + word[:, 0], minlength=len(part) * size)
            block = np.sqrt(hist.reshape(len(part), size).astype(np.float32))
            out[slot, first:first + len(part)] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out


MATCH_PAIRS = 256  # pairs whose keypoints' distances are computed at once (their bits in float32: 34 MB at most)


def _closest_codes(a: np.ndarray, count_a: np.ndarray, b: np.ndarray,
                   count_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For P pairs of images, a (P, K, bytes) and b (P, K, bytes) their ORB codes (the first count_a and
    count_b valid): (ok, best), P x K, where best[p, k] is a's keypoint k's closest keypoint of b and ok
    says the match holds: within HAMMING_MAX, Lowe's ratio test (IJCV 2004: clearly closer than b's
    next best code) and mutual (k is also the closest of a's keypoints to best[p, k]: OpenCV's
    cross-check). Without the ratio test two images' 64 x 64 keypoints pair up by chance often enough
    to fit a transform: 151 pairs among 20,000 distinct generated scenes; with it 16 (an 80/20 split of
    them), with it at 0.7 and the cross-check 0, while 91% of the true pairs of 3,000 sibling photos
    are kept (the cross-check alone: 3 and 95%)."""
    p, k = a.shape[:2]
    ok = np.zeros((p, k), bool)
    best = np.zeros((p, k), np.int64)
    bits = 8 * a.shape[2]
    far = bits + 1  # more than any two codes differ: what a missing keypoint scores
    by_size = np.argsort(np.maximum(count_a, count_b), kind="stable")  # parts of pairs of like keypoint counts
    for s in range(0, p, MATCH_PAIRS):
        part = by_size[s:s + MATCH_PAIRS]
        ka, kb = int(count_a[part].max(initial=0)), int(count_b[part].max(initial=0))
        if not ka or not kb:
            continue
        # Hamming distances as one batched matrix product of +-1 bit vectors (the dot product of two
        # is bits - 2 x their Hamming distance) in BLAS, with only as many slots as the part's images
        # have keypoints (scenes have ~22 of 64): 20,000 scenes' candidate pairs matched in 10 s, where
        # numpy popcounts of XORed 64-bit words took 28 s
        sa = np.unpackbits(a[part, :ka], axis=-1).astype(np.float32) * 2 - 1
        sb = np.unpackbits(b[part, :kb], axis=-1).astype(np.float32) * 2 - 1
        hamming = np.rint((bits - np.matmul(sa, sb.transpose(0, 2, 1))) / 2).astype(np.int32)
        hamming[np.arange(ka)[None, :] >= count_a[part, None]] = far
        hamming[np.broadcast_to(np.arange(kb)[None, None, :] >= count_b[part, None, None], hamming.shape)] = far
        closest = np.argmin(hamming, axis=2)
        if kb > 1:
            two = np.partition(hamming, 1, axis=2)[:, :, :2]
        else:
            two = np.concatenate([hamming, np.full_like(hamming, far)], axis=2)
        back = np.argmin(hamming, axis=1)  # b's keypoint's closest of a's
        mutual = np.take_along_axis(back, closest, axis=1) == np.arange(ka)[None, :]
        ok[part, :ka] = (two[:, :, 0] <= HAMMING_MAX) & (two[:, :, 0] < RATIO_TEST * two[:, :, 1]) & mutual
        best[part, :ka] = closest
    return ok, best


CODE_CHUNK = 1 << 16  # keypoints whose codes are gathered at a time (about 1,000 images' records)


def _codes(records, owner: np.ndarray, point: np.ndarray, view: int) -> np.ndarray:
    """The ORB codes of keypoints (owner image, point) in `view`, contiguous, gathered a chunk of
    images at a time from the records (owner is sorted by image, as _points makes it)."""
    from dnncheck.data.keypoints import DESCRIPTOR_BYTES

    out = np.empty((len(owner), DESCRIPTOR_BYTES), dtype=np.uint8)
    for start in range(0, len(owner), CODE_CHUNK):
        images, where = np.unique(owner[start:start + CODE_CHUNK], return_inverse=True)
        out[start:start + CODE_CHUNK] = gather(records, "kp_desc", images)[where, view, point[start:start + CODE_CHUNK]]
    return out


class _FitFields:
    """The keypoint positions and colour grids of a set of images, read at once for the fits among
    them: read per fit (four positioned reads) they were 13% of split-leakage on 25,000 photos."""

    def __init__(self, records, images: np.ndarray):
        self.records, self.images = records, np.unique(images)
        self.kp_xy = gather(records, "kp_xy", self.images)
        self.chroma = gather(records, "chroma", self.images)
        self.grey = gather(records, "grey", self.images)
        self.grey_size = gather(records, "grey_size", self.images)
        self.decoded = gather(records, "decoded", self.images)
        # a dict, not a search per call: each fit asks for its two images' rows a dozen times
        self._rows = {image: row for row, image in enumerate(self.images.tolist())}

    def at(self, image: int) -> int:
        return self._rows[image]


def _verify(fields: _FitFields, counts, view, a, b, qp, dp, min_inliers, verified) -> None:
    """RANSAC fit of a similarity transform between image a's keypoints (in `view`) and b's; a pair
    goes into `verified` (its best fit over both views kept) when enough agree at a sane scale."""
    import cv2

    src = fields.kp_xy[fields.at(a), view, qp].astype(np.float32)
    dst = fields.kp_xy[fields.at(b), 0, dp].astype(np.float32)
    model, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS,
                                                maxIters=500, confidence=0.99)
    if model is None:
        return
    agreeing = int(inliers.sum())
    scale = max(float(np.sqrt(abs(np.linalg.det(model[:, :2])))), 1e-9)
    if agreeing < min_inliers or max(scale, 1 / scale) > MAX_SIZE_RATIO:
        return  # too few agree, or a degenerate fit that squeezes one image's points together
    key = (min(a, b), max(a, b))
    if key in verified and agreeing <= verified[key]["inliers"]:
        return  # a fit of this pair (the other way round or view) already agrees as well: no gate can change it
    agreeing_points = dst[inliers[:, 0] > 0]
    if not _colours_agree_under(fields, a, b, view, model, agreeing_points):
        return  # the keypoints agree on a transform, the colours it maps onto each other do not
    if not _shapes_agree_beside(fields, a, b, view, model, agreeing_points):
        return  # the keypoints lie on one shape that fits another; what lies beside it differs
    share = agreeing / max(1, min(counts[a, view], counts[b, 0]))
    if key not in verified or agreeing > verified[key]["inliers"]:
        verified[key] = {"inliers": agreeing, "mirrored": bool(view), "size_ratio": round(max(scale, 1 / scale), 3),
                         "similarity": float(min(1.0, share))}


# Geometric pairs pass the colour gate too, in the region the fitted transform maps between them:
# ORB finds the corners of flat shapes in generated scenes, and two scenes with rectangles in the same
# places fit one transform with 10-25 keypoints (100,000 distinct scenes: 2 pairs) while their colours
# differ. A crop keeps its colours where the transform puts them: of 13,541 fits between siblings of
# the ant/bee photos (crops, mirror images, brightness and contrast, rescaling, JPEG) 0.5% scored under
# 0.94 and 0.1% under 0.9; four generated scenes fitted to each other in every way, 0.86 at most.
GEOMETRIC_CHROMA_COSINE = 0.9
MIN_OVERLAP_CELLS = 32  # of the 16x16 chroma grid: less is too little to judge
# And where the agreeing keypoints lie: the overlap's colours are mostly background, and two scenes
# whose ellipses (which fit each other mirrored or turned) differ in colour on like backgrounds pass
# the overlap's gate. Measured: of 4,173 fits between sibling photos none falls under 0.8 there; of
# the 3 pairs of distinct scenes the visual-words path fitted among 100,000 it removes one (the
# other two have their ellipses' colours within a cell's average of the background's).
LOCAL_CHROMA_COSINE = 0.8
MIN_LOCAL_CELLS = 4  # cells under the agreeing keypoints' hull: fewer is one small object's edge


def _colours_agree_under(fields: _FitFields, a: int, b: int, view: int, model: np.ndarray, points: np.ndarray) -> bool:
    """Whether a's colours (R-G, B-G at 16x16, mirrored for view 1), moved by `model` (a's detection
    frame to b's), agree with b's where they overlap: cosine >= GEOMETRIC_CHROMA_COSINE when both are
    coloured there (CHROMA_FLOOR), and >= LOCAL_CHROMA_COSINE in the cells under the agreeing
    keypoints (`points`, b's frame); True when either is near grey or a region is too small."""
    from dnncheck.data.records import CHROMA_SIDE

    side = (CHROMA_SIDE, CHROMA_SIDE)
    source = fields.chroma[fields.at(a)].astype(np.float32)  # 2, 16, 16
    target = fields.chroma[fields.at(b)].astype(np.float32)
    moved, inside = _moved_onto(fields, source, a, b, view, model, side)
    if inside.sum() < MIN_OVERLAP_CELLS:
        return True
    if not _chroma_match(moved[:, inside].reshape(1, -1), target[:, inside].reshape(1, -1), GEOMETRIC_CHROMA_COSINE)[0]:
        return False
    local = inside & _hull_cells(fields, b, points, side)
    if local.sum() < MIN_LOCAL_CELLS:
        return True
    return bool(_chroma_match(moved[:, local].reshape(1, -1), target[:, local].reshape(1, -1), LOCAL_CHROMA_COSINE)[0])


# A photometric gate on every geometric fit, in grey: ORB puts its keypoints on the outline of a flat
# shape, and an ellipse or a rectangle fits any other of like proportions by a similarity transform.
# A million distinct generated scenes gave 74 such pairs (one small ellipse onto another, 12-39
# keypoints agreeing, colours alike). A copy agrees beside the matched shape too: the grey copies,
# moved by the fit and each with its light gradient (least-squares plane) removed, correlate in the
# overlap outside the agreeing keypoints' hull (grown by one cell). Refitted pair by pair, 66 of the
# 74 fit again; this gate leaves 16. Fits between two siblings of each ant/bee photo (crops, mirror
# images, brightness, contrast, rescaling): 389 of 397 pairs before and after; between siblings of
# 600 generated scenes: 69 before, 68 after. The fits it turns down among true pairs were wrong ones
# (a few keypoints bunched in one spot, the rest of the crop turned or scaled away from its original).
# Where both sides are flat beside the shape (under SHAPES_FLAT of grey), nothing there can disagree:
# a textured object on a plain background keeps its pair, and so do the 16 (one ellipse on a plain
# gradient each), which is why geometric pairs are judged as look-alikes (checks/split_leakage.py).
SHAPES_CORRELATION = 0.5
SHAPES_FLAT = 1.0  # rms grey levels (of 255) left beside the shape once the gradient is removed
MIN_BESIDE_CELLS = 20  # of the <= 32x32 grey grid: less is too little to judge


def _shapes_agree_beside(fields: _FitFields, a: int, b: int, view: int, model: np.ndarray, points: np.ndarray) -> bool:
    """Whether a's grey copy, moved by `model` onto b's, correlates with b's (each with its
    least-squares plane removed) at SHAPES_CORRELATION or more in the overlap beside the agreeing
    keypoints' hull; True where both are flat there or the region is too small to judge."""
    h, w = (int(v) for v in fields.grey_size[fields.at(b)])
    ha, wa = (int(v) for v in fields.grey_size[fields.at(a)])
    source = fields.grey[fields.at(a), :ha, :wa].astype(np.float32)[None]
    target = fields.grey[fields.at(b), :h, :w].astype(np.float32)
    moved, inside = _moved_onto(fields, source, a, b, view, model, (h, w))
    beside = inside & ~_hull_cells(fields, b, points, (h, w), grow=1)
    if beside.sum() < MIN_BESIDE_CELLS:
        return True
    x, y = _without_plane_at(np.stack([moved[0][beside], target[beside]]), *np.nonzero(beside))
    spread = np.sqrt(max(float(x @ x), float(y @ y)) / len(x))
    if spread < SHAPES_FLAT:
        return True
    return float(x @ y) / max(float(np.linalg.norm(x) * np.linalg.norm(y)), 1e-9) >= SHAPES_CORRELATION


def _to_grid(fields: _FitFields, k: int, grid: tuple[int, int]) -> np.ndarray:
    """2x2 scaling from image k's keypoint detection pixels to cells of a (rows, cols) grid spanning
    the whole image (the records' chroma and grey copies)."""
    from dnncheck.data.keypoints import LOCAL_SIDE

    h, w = (int(v) for v in fields.decoded[fields.at(k)])
    det = min(1.0, LOCAL_SIDE / max(h, w))
    return np.diag([grid[1] / max(1.0, w * det), grid[0] / max(1.0, h * det)])


def _moved_onto(fields: _FitFields, planes: np.ndarray, a: int, b: int, view: int, model: np.ndarray,
                grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """a's C,h,w grid `planes` (mirrored for view 1) moved by `model` (a's detection frame to b's)
    onto b's (rows, cols) `grid`, and the cells the move covers entirely."""
    import cv2

    source_grid = planes.shape[1:]
    if view:
        planes = planes[:, :, ::-1]
    scale_a, scale_b = _to_grid(fields, a, source_grid), _to_grid(fields, b, grid)
    linear = scale_b @ model[:, :2] @ np.linalg.inv(scale_a)
    # cell k spans [k, k + 1): its centre, where cv2 samples, is at k + 0.5
    shift = scale_b @ model[:, 2] + linear @ np.full(2, 0.5) - 0.5
    warp = np.hstack([linear, shift[:, None]]).astype(np.float32)
    size = (grid[1], grid[0])
    moved = np.stack([cv2.warpAffine(np.ascontiguousarray(c), warp, size, flags=cv2.INTER_LINEAR) for c in planes])
    covered = cv2.warpAffine(np.ones(source_grid, np.float32), warp, size, flags=cv2.INTER_LINEAR) > 0.99
    return moved, covered


def _hull_cells(fields: _FitFields, b: int, points: np.ndarray, grid: tuple[int, int], grow: int = 0) -> np.ndarray:
    """Cells of b's (rows, cols) grid under the convex hull of `points` (b's detection pixels), grown
    by `grow` cells."""
    import cv2

    cells = (points @ _to_grid(fields, b, grid).T * 16).round().astype(np.int32)  # 1/16 cell: cv2's shift 4
    hull = np.zeros(grid, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cells), 1, lineType=cv2.LINE_8, shift=4)
    if grow:
        hull = cv2.dilate(hull, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return hull > 0


def _best_candidates(qa: np.ndarray, db: np.ndarray):
    """(start, end) of the runs of one (query image, image) in the sorted votes, for the pairs with
    MIN_VOTES or more, each query image keeping its GEOMETRIC_CANDIDATES best-voted images: a photo
    with fifty siblings is named with its closest ones without fitting all fifty."""
    bounds = np.flatnonzero(np.r_[True, (qa[1:] != qa[:-1]) | (db[1:] != db[:-1]), True])
    starts, ends = bounds[:-1], bounds[1:]
    votes = ends - starts
    keep = votes >= MIN_VOTES
    starts, ends, votes = starts[keep], ends[keep], votes[keep]
    owner = qa[starts]
    order = np.lexsort((starts, -votes, owner))
    starts, ends, owner = starts[order], ends[order], owner[order]
    chosen = _rank_in_runs(owner) < GEOMETRIC_CANDIDATES
    return sorted(zip(starts[chosen].tolist(), ends[chosen].tolist()))


def _points(counts: np.ndarray, images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image, keypoint) of every stored keypoint of `images` (default: all), image by image."""
    images = np.arange(len(counts)) if images is None else images
    per = counts[images]
    owner = np.repeat(images, per)
    point = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)
    return owner, point


def _binary_index(codes: np.ndarray):
    """faiss index over 256-bit ORB codes: exact below FLAT_INDEX_MAX x 16 codes, else an inverted file
    (k-means cells in Hamming space, trained on an evenly spaced sample: the same cells every run)."""
    import faiss

    codes = np.ascontiguousarray(codes)
    bits = codes.shape[1] * 8
    if len(codes) <= FLAT_INDEX_MAX * 16:
        index = faiss.IndexBinaryFlat(bits)
    else:
        cells = int(min(4096, 2 * np.sqrt(len(codes)), len(codes) // 39))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, cells)
        index.train(codes[np.linspace(0, len(codes) - 1, min(len(codes), 40 * cells)).astype(np.int64)])
        index.nprobe = IVF_PROBES
    index.add(codes)
    return index


# One-sided blurs tried in verification: a copy that was downscaled and upscaled again (or blurred)
# matches its original once the original gets a similar blur; two distinct images gain little from
# blurring one of them (measured on MNIST: copies resampled from 14-20 px reach >= 0.986, the most
# similar distinct digits 0.982; without the blurs the copies scored as low as 0.74).
VERIFY_BLURS = (0.5, 0.75, 1.0, 1.25, 1.5)
# ... up to a sigma of the shorter side / 18 (all of them at 28 px; none on 8x8 digits, where blurring
# one image by half a pixel already makes distinct digits alike: three clean pairs reached 0.99)
BLUR_SIDE_RATIO = 18


def verify_pairs(records: "np.ndarray | JoinedRecords", i: np.ndarray, j: np.ndarray, max_shift: int,
                 batch: int = 4096, plane: bool = False) -> np.ndarray:
    """Blur-tolerant, shift-tolerant correlation of the records' grey copies for pairs (i[k], j[k]):
    the best over shifts of up to max_shift, then, at that shift, over blurring either image with
    each of VERIFY_BLURS (a resampled copy is aligned with its original: the shift search need not be
    repeated per blur, which made verification 10x slower), on the first record's grid (a copy of
    another size is resized to it), a batch of pairs at a time. `plane`: each image's least-squares
    plane removed rather than its mean (structure_agrees)."""
    if not len(i):
        return np.zeros(0, np.float32)
    grid = tuple(int(v) for v in records["grey_size"][0])
    blurs = [v for v in VERIFY_BLURS if v <= min(grid) / BLUR_SIDE_RATIO]
    out = []
    for s in range(0, len(i), batch):
        a, b = _greys(records, i[s:s + batch], grid), _greys(records, j[s:s + batch], grid)
        best, shifts = shift_tolerant_similarity(a, b, max_shift, with_shift=True, plane=plane)
        for sigma in blurs:
            best = np.maximum(best, correlation_at_shifts(gaussian_blur(a, sigma), b, shifts, plane))
            best = np.maximum(best, correlation_at_shifts(a, gaussian_blur(b, sigma), shifts, plane))
        out.append(best)
    return np.concatenate(out)


# Structure gate for near copies: two smooth scenes whose light falls off the same way correlate at
# 0.99 through their gradients alone, whatever small shapes lie where (10,000 generated scenes: 57
# such pairs). With each grey copy's least-squares plane removed, what is left is the shapes: a copy
# keeps them where they were, a scene with its shape elsewhere does not (test scenes: twins with a shape
# moved 0.04 at most; copies noised with sigma 8, where noise is most of what is left, 0.58 at least,
# the other copies 0.9 or more). What this gate lets through, the colour gate below mostly catches.
STRUCTURE_MIN = 0.5


def structure_agrees(records: "np.ndarray | JoinedRecords", i: np.ndarray, j: np.ndarray, max_shift: int) -> np.ndarray:
    """For pairs (i[k], j[k]) that correlate as near copies: True where they still correlate at
    STRUCTURE_MIN or more with each grey copy's linear gradient removed (verify_pairs with `plane`)."""
    if not len(i):
        return np.zeros(0, dtype=bool)
    return verify_pairs(records, i, j, max_shift, plane=True) >= STRUCTURE_MIN


# Colour gate for near copies (measured on 128x96 images: 10,000 generated smooth scenes and planted
# copies of the ant/bee photos, of every kind in benchmarks/plant.py): the 57 pairs of distinct scenes
# whose grey copies correlated at 0.99 had chroma cosines of 0.90 at most; copies of photos whose colour
# is at least CHROMA_FLOOR strong kept 0.97 or more (contrast stretched and clipped is the lowest).
# Images nearer grey than the floor carry no colour to compare: only their grey copies judge them.
CHROMA_FLOOR = 10.0  # rms of a record's chroma (x127 of the value range): about 20 of 255
CHROMA_COSINE = 0.95
# And a copy keeps where its colours are. Among the 76 near pairs a million distinct generated scenes
# still gave (grey at 0.99 and more, the shapes' structure at 0.5 and more), 50 paired a scene near
# grey (chroma rms 6-10, under the floor) with a coloured one, the rest gradients of one hue (cosine
# 0.95-0.98) with shapes of other hues elsewhere. With each chroma plane's gradient removed, what is
# left (the shapes' colours) correlated at 0.78 at most in the 76, and at 0.93 or more in each of
# 1,969 planted copies of photos and scenes with any left (rms >= CHROMA_TRACE on both sides). A copy
# with its saturation changed or turned grey keeps the direction or falls under the trace: it passes.
CHROMA_TRACE = 3.0
CHROMA_STRUCTURE_COSINE = 0.85


def colours_agree(records: "np.ndarray | JoinedRecords", i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """For pairs (i[k], j[k]) of records: False where both images are coloured and their colours
    (R-G, B-G at 16x16, data/records.py) differ, cosine below CHROMA_COSINE, or where what is left of
    both colour grids beside their gradients points elsewhere (CHROMA_STRUCTURE_COSINE). A copy
    brightened or with its contrast changed keeps its colours' directions; two scenes with the same
    gradient and different hues do not. A copy with its channels swapped (BGR) fails this gate: for
    photos the keypoint search (kind geometric), which works in grey, still finds it."""
    out = np.zeros(len(i), dtype=bool)
    # a batch of pairs at a time: all at once, the 16x16 grids of the pairs a million scenes' near
    # search passed (as float64, with their gradients removed) peaked at 3.55 GiB
    for s in range(0, len(i), COLOUR_BATCH):
        a = gather(records, "chroma", i[s:s + COLOUR_BATCH]).astype(np.float32)
        b = gather(records, "chroma", j[s:s + COLOUR_BATCH]).astype(np.float32)
        agree = _chroma_match(a.reshape(len(a), -1), b.reshape(len(b), -1), CHROMA_COSINE)
        left_a, left_b = _without_gradients(a), _without_gradients(b)
        traced = np.minimum(_rms(left_a), _rms(left_b)) >= CHROMA_TRACE
        out[s:s + COLOUR_BATCH] = agree & (~traced | (_cosines(left_a, left_b) >= CHROMA_STRUCTURE_COSINE))
    return out


COLOUR_BATCH = 4096  # pairs whose colour grids are compared at a time (about 100 MB of work arrays)


def _rms(rows: np.ndarray) -> np.ndarray:
    return np.sqrt((rows * rows).mean(axis=1))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _without_gradients(chroma: np.ndarray) -> np.ndarray:
    """N,C,H,W grids as N x CHW rows, each channel minus its least-squares plane."""
    import torch

    n, c, h, w = chroma.shape
    return _without_plane(torch.from_numpy(chroma.reshape(n * c, h, w))).numpy().reshape(n, -1)


def _chroma_match(a: np.ndarray, b: np.ndarray, minimum: float) -> np.ndarray:
    """Per row pair of chroma values: True unless both are coloured (rms >= CHROMA_FLOOR) and their
    cosine is below `minimum`."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    coloured = np.minimum(_rms(a), _rms(b)) >= CHROMA_FLOOR
    return ~coloured | (_cosines(a, b) >= minimum)


def gaussian_blur(images, sigma: float):
    """N,1,H,W tensor blurred by a Gaussian (edges replicated), as two small matrix products: a
    one-channel conv2d over thousands of 28x28 images was 10x slower."""
    import torch

    h, w = images.shape[-2:]
    rows, cols = _blur_matrix(h, sigma, images.dtype), _blur_matrix(w, sigma, images.dtype)
    return torch.matmul(torch.matmul(rows, images), cols.T)


def _blur_matrix(n: int, sigma: float, dtype):
    """n x n matrix applying a normalised Gaussian along one axis, taps beyond the edge clamped to it."""
    import torch

    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-offsets ** 2 / (2 * sigma * sigma))
    taps /= taps.sum()
    matrix = np.zeros((n, n))
    for k in range(n):
        np.add.at(matrix[k], np.clip(k + offsets, 0, n - 1), taps)
    return torch.from_numpy(matrix).to(dtype)


def _greys(records: "np.ndarray | JoinedRecords", index: np.ndarray, grid: tuple[int, int]):
    """N,1,h,w float32 grey copies of records[index] on `grid`; copies of one size at a time."""
    import torch
    import torch.nn.functional as F

    out = torch.empty((len(index), 1, *grid))
    sizes = records["grey_size"][index]
    for h, w in np.unique(sizes, axis=0):
        rows = np.flatnonzero((sizes[:, 0] == h) & (sizes[:, 1] == w))
        grey = torch.from_numpy(gather(records, "grey", index[rows])[:, :h, :w].astype(np.float32))[:, None]
        if (int(h), int(w)) != grid:
            grey = F.interpolate(grey, size=grid, mode="bilinear", antialias=True, align_corners=False)
        out[torch.from_numpy(rows)] = grey
    return out
