"""The compact per-sample record: everything data-wide checks need from an image, without its pixels.

One streaming pass decodes each image once and keeps only this record (about 9.4 KB, see
RECORD_BYTES), so an audit's memory does not grow with the number of images beyond the records:
- decode facts: native size, decoded size, mode, channels;
- value statistics (input fidelity): min, max, std and the count of non-finite values;
- per-channel sums, sums of squares, min and max (normalization, over every image of a split);
- a content digest of the decoded pixels (exact duplicates, conflicting labels);
- near-duplicate descriptors (split leakage): the 16x16 grey descriptor and four one-pixel shifts of
  it, a grey copy of at most 32 pixels a side and the colour at 16x16 for verifying candidate pairs; for photos, ORB
  keypoints of the image and its mirror image (crops, mirror images, rescaled copies).

A record is a pure function of the decoded image: the same for a file read by any worker, by Ray,
from the cache or from an in-memory array, so that chunked statistics equal whole-array ones.
"""

from __future__ import annotations

import numpy as np

from dnncheck.data.keypoints import DESCRIPTOR_BYTES, LOCAL_POINTS, local_features, too_narrow
from dnncheck.data.resize import resize

RECORD_VERSION = 5  # bump when a field or its computation changes: cached records are then re-read
CHANNELS = 3  # per-channel statistics of a grey image are those of its channel repeated three times
GREY_SIDE = 32  # the verification copy's longer side (similarity.VERIFY_MAX_SIDE)
DESCRIPTOR_SIDE = 16
CHROMA_SIDE = 16
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # similarity.QUERY_SHIFTS

RECORD_DTYPE = np.dtype([
    ("ok", "?"),
    ("native", "<i4", (2,)),  # H, W in the file
    ("decoded", "<i4", (2,)),  # H, W as decoded (longer side at most decode_max_side)
    ("channels", "u1"),
    ("mode", "S8"),  # PIL mode in the file; empty for in-memory arrays
    ("min", "<f8"), ("max", "<f8"), ("std", "<f8"), ("nonfinite", "<i8"),
    ("ch_sum", "<f8", (CHANNELS,)), ("ch_sumsq", "<f8", (CHANNELS,)),
    ("ch_min", "<f8", (CHANNELS,)), ("ch_max", "<f8", (CHANNELS,)), ("ch_finite", "<i8", (CHANNELS,)),
    ("digest", "V16"),
    ("descriptors", "<f2", (len(SHIFTS), DESCRIPTOR_SIDE * DESCRIPTOR_SIDE)),
    ("grey_size", "<i2", (2,)),
    ("grey", "<f2", (GREY_SIDE, GREY_SIDE)),
    # colour apart from brightness at 16x16: R-G and B-G over the image's value range, x127 (grey: zeros)
    ("chroma", "i1", (2, CHROMA_SIDE, CHROMA_SIDE)),
    # photos only (data/keypoints.py): ORB keypoints of the image and of its mirror image
    ("kp_count", "u1", (2,)),
    ("kp_xy", "u1", (2, LOCAL_POINTS, 2)),  # x, y in pixels of the (<= 256 px) detection image
    ("kp_desc", "u1", (2, LOCAL_POINTS, DESCRIPTOR_BYTES)),
    ("kp_skipped", "?"),  # a photo too thin for keypoints (keypoints.too_narrow): its crops are not searched
    # what decoding the file as torchvision's loader does changed (data/images.py, DecodeFacts)
    ("clipped", "<f4"),  # share of pixels a high-bit-depth mode's conversion to 8 bits clipped
    ("src_nonfinite", "<u4"),  # NaN/Inf pixels of a float image (the conversion makes them 0)
    ("orientation", "u1"),  # EXIF orientation tag (0: none, 1: upright, 2-8: rotated/mirrored)
    ("frames", "<u2"),  # frames in the file (animated GIF, multi-page TIFF); the first is read
])
RECORD_BYTES = RECORD_DTYPE.itemsize


def empty_records(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=RECORD_DTYPE)


def failed_record(native=(0, 0), mode: str = "") -> np.ndarray:
    """The record of a sample that could not be decoded (ok False; the reason is kept beside it)."""
    rec = empty_records(1)
    rec["native"] = native
    rec["mode"] = mode.encode("ascii", "replace")[:8]
    return rec


def image_record(image: np.ndarray, native=None, mode: str = "", facts=None) -> np.ndarray:
    """The record (a 1-element structured array) of one decoded HWC image. numpy only: the data
    pass's workers never import torch. `facts`: what decoding the file changed (images.DecodeFacts)."""
    from dnncheck.similarity import content_hashes

    rec = empty_records(1)
    if facts is not None:
        rec["clipped"], rec["src_nonfinite"] = facts.clipped, facts.nonfinite
        rec["orientation"], rec["frames"] = facts.orientation, min(facts.frames, 65535)
    h, w = image.shape[:2]
    rec["ok"] = True
    rec["native"] = native if native is not None else (h, w)
    rec["decoded"] = (h, w)
    rec["channels"] = image.shape[-1]
    rec["mode"] = mode.encode("ascii", "replace")[:8]
    for key, value in value_stats(image.reshape(1, -1)).items():
        rec[key] = value[0]
    _channel_stats(rec, image)
    rec["digest"] = np.void(content_hashes([image])[0])
    if rec["nonfinite"][0]:  # NaN/Inf are reported by input fidelity; descriptors see them as 0
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    fill = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0).astype(image.dtype)
    rec["descriptors"] = np.stack([_descriptor(shifted(image, dy, dx, fill)) for dy, dx in SHIFTS]).astype(np.float16)
    scale = min(1.0, GREY_SIDE / max(h, w))
    grid = (max(1, round(h * scale)), max(1, round(w * scale)))
    grey = resize(image, grid).mean(axis=-1)
    rec["grey_size"] = grid
    rec["grey"][0, : grid[0], : grid[1]] = grey.astype(np.float16)
    rec["chroma"][0] = _chroma(image, float(rec["min"][0]), float(rec["max"][0]))
    rec["kp_count"][0], rec["kp_xy"][0], rec["kp_desc"][0] = local_features(image)
    rec["kp_skipped"] = too_narrow(image.shape)
    return rec


def _descriptor(image: np.ndarray) -> np.ndarray:
    """The image in grey at 16x16 (antialiased), mean-centred and L2-normalised: brightness and
    contrast changes, light noise and re-encoding barely move it (similarity.py)."""
    v = resize(image, (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE)).mean(axis=-1).reshape(-1).astype(np.float64)
    v = v - v.mean()
    norm = np.linalg.norm(v)
    return (v / (norm if norm > 1e-6 else 1.0)).astype(np.float32)


def _chroma(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """R-G and B-G of the image at 16x16 (antialiased), over its value range, x127 as int8: what
    tells two scenes apart whose grey copies look alike (similarity.colours_agree). Adding light or
    stretching contrast scales it at most; zeros for a grey image."""
    if image.shape[-1] < 3:
        return np.zeros((2, CHROMA_SIDE, CHROMA_SIDE), np.int8)
    small = resize(image[..., :3], (CHROMA_SIDE, CHROMA_SIDE)).astype(np.float64)
    chroma = np.stack([small[..., 0] - small[..., 1], small[..., 2] - small[..., 1]]) * (127 / max(high - low, 1e-12))
    return np.clip(np.round(chroma), -127, 127).astype(np.int8)


def shifted(image: np.ndarray, dy: int, dx: int, fill: np.ndarray) -> np.ndarray:
    """The image moved by (dy, dx) pixels, the uncovered edge filled with `fill`, its border's median
    (the background for digits and most scans): a query variant that finds a copy moved by a pixel."""
    if (dy, dx) == (0, 0):
        return image
    out = np.empty_like(image)
    out[...] = fill
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h + min(-dy, 0),
                                                                      max(-dx, 0):w + min(-dx, 0)]
    return out


def _channel_stats(rec: np.ndarray, image: np.ndarray) -> None:
    """Per-channel sum, sum of squares, finite count, min and max (a grey image's for all three)."""
    pixels = image.reshape(-1, image.shape[-1])[:, :CHANNELS]
    if pixels.dtype.kind in "ub":  # no NaN to step around (the common, fast case)
        # channel-major float64 rows: contiguous reductions are ~5x faster than down (N, 3) columns,
        # and sums of 8/16-bit values stay exact in float64
        wide = np.ascontiguousarray(pixels.T).astype(np.float64)
        sums, squares = wide.sum(1), np.einsum("ij,ij->i", wide, wide)
        finite = np.full(pixels.shape[1], len(pixels))
        low, high = (wide.min(1), wide.max(1)) if len(pixels) else (0, 0)
    else:
        values = pixels.astype(np.float64)
        ok = np.isfinite(values)
        clean = np.where(ok, values, 0.0)
        sums, squares, finite = clean.sum(0), (clean ** 2).sum(0), ok.sum(0)
        with np.errstate(all="ignore"):
            low = np.where(ok, values, np.inf).min(0) if len(values) else 0
            high = np.where(ok, values, -np.inf).max(0) if len(values) else 0
    for field, value in (("ch_sum", sums), ("ch_sumsq", squares), ("ch_finite", finite), ("ch_min", low),
                         ("ch_max", high)):
        rec[field][0] = value  # one value per channel; a grey image's broadcast to all three


CHUNK_ELEMENTS = 2**24


def value_stats(flat: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row min, max, std and non-finite count of N,F values (NaN/Inf left out of the others)."""
    if flat.dtype.kind == "f":
        finite = np.isfinite(flat)
        nonfinite = (~finite).sum(axis=1)
        if nonfinite.any():
            masked = np.where(finite, flat, np.nan)
            with np.errstate(all="ignore"):
                return {"min": np.nanmin(masked, 1), "max": np.nanmax(masked, 1), "std": np.nanstd(masked, 1),
                        "nonfinite": nonfinite}
    else:
        nonfinite = np.zeros(len(flat), dtype=np.int64)
    out = {"min": flat.min(1).astype(float), "max": flat.max(1).astype(float), "nonfinite": nonfinite}
    # std in float32 chunks of about 64 MB; each row's std is computed the same way whatever the chunking
    rows = max(1, CHUNK_ELEMENTS // max(1, flat.shape[1]))
    out["std"] = np.concatenate([flat[i:i + rows].astype(np.float32).std(1) for i in range(0, len(flat), rows)])
    return out


def array_records(x, chunk: int = 256, on_chunk=None) -> np.ndarray:
    """Records of in-memory images (an N,H,W,C array or a list of HWC arrays), a chunk at a time."""
    out = empty_records(len(x))
    for start in range(0, len(x), chunk):
        stop = min(start + chunk, len(x))
        for k in range(start, stop):
            out[k] = image_record(np.ascontiguousarray(x[k]))[0]
        if on_chunk:
            on_chunk(stop - start)
    return out


def digests(records: np.ndarray) -> list[bytes]:
    return [bytes(d) for d in records["digest"]]


def image_channel_stats(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's per-channel mean and (population) std, N x 3, from its record."""
    count = np.maximum(records["ch_finite"], 1).astype(np.float64)
    mean = records["ch_sum"] / count
    return mean, np.sqrt(np.maximum(records["ch_sumsq"] / count - mean ** 2, 0.0))


def channel_summary(records: np.ndarray, channels: int) -> dict[str, np.ndarray]:
    """Per-channel mean, std, min and max over all readable records (the whole split, any size)."""
    ok = records[records["ok"]]
    count = np.maximum(ok["ch_finite"].sum(0), 1).astype(np.float64)[:channels]
    total = ok["ch_sum"].sum(0)[:channels]
    mean = total / count
    std = np.sqrt(np.maximum(ok["ch_sumsq"].sum(0)[:channels] / count - mean ** 2, 0.0))  # population std
    return {"mean": mean, "std": std, "min": ok["ch_min"].min(0)[:channels] if len(ok) else np.zeros(channels),
            "max": ok["ch_max"].max(0)[:channels] if len(ok) else np.zeros(channels)}
