"""DNC1 input-fidelity: every sample decodes and carries information, sizes and modes are
consistent, and the class signal survives resizing to what the model sees."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import ImageGrid
from dnncheck.checks.base import (ALL_TASKS, POSITIVE_SHARE, SHARE, Check, Finding, Range, Status, Verdict, headline,
                                  verdict)
from dnncheck.data.sampling import subsample_index

MAX_LISTED = 50
RESOLUTION_SAMPLES = 1000  # stratified subsample of train for the resolution test (its kNN costs N^2 x 128^2)
MAX_REFERENCE_SIDE = 128  # the higher resolution is capped here to keep the test cheap
MONTAGE_PER_CLASS = 4
MONTAGE_CLASSES = 10


class InputFidelity(Check):
    """Every sample decodes, carries information and reaches the model with its class signal intact.

    What it checks
        Files that cannot be decoded (empty, truncated, not an image) and files skipped for their
        extension; NaN/Inf values; blank or constant images and near-constant (low-information)
        ones; mixed colour modes; the distribution of native sizes and aspect ratios with
        outliers; whether the class signal survives resizing to `image_size`; and a montage of
        samples per class exactly as the model sees them (after resizing and normalisation).

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 1, "check the input data": corrupted,
        blank or mis-decoded samples are common and silently poison training; their Fig. 2 shows
        a blood cell whose discriminative detail, visible at 128x128, is lost at 64x64. Karpathy's
        recipe: "visualise just before the net" - look at the tensor the model receives.

    How it is computed
        One pass over the decoded samples computes each sample's min, max, standard deviation
        and non-finite count. Constant: max == min. Near-constant: standard deviation below
        `low_information_ratio` times the median over the dataset. Size outliers: aspect ratio
        off the median by more than `aspect_outlier_factor`, or a shorter side below
        `tiny_side_ratio` of the median. Resolution: on a stratified subsample of train
        (at most 2,000), a k-nearest-neighbour classifier (k=5, 3-fold, balanced accuracy) on
        mean-centred, L2-normalised pixels at a higher resolution (the stored size, capped at
        max(2 x image_size, 32) and 128) and at `image_size`; the drop in accuracy, and the share
        of the above-chance accuracy it represents, is reported; a drop above `resize_drop_warn`
        warns. Files are read as torchvision's default loader reads them (Pillow, convert to
        RGB/L) and what that changes is said: 16/32-bit and float images clipped to 0..255 (warn
        from `clipped_share_warn` of an image's pixels; Pillow clips, it does not scale), NaN/Inf
        pixels of float images (read as 0; warn), an EXIF orientation of 2-8 (the loader does
        not apply it: the model sees the stored pixels, sideways or mirrored; warn), files of
        several frames (only the first is read; info).

    How to fix
        Remove or re-export the unreadable files and the blank ones (or find why your export
        wrote them); convert images to one mode; crop or pad outliers; if resizing loses the
        signal, raise `image_size` (or crop the region of interest instead of shrinking the
        whole image).
    """

    id = "DNC1"
    slug = "input-fidelity"
    item = 1
    title = "Input fidelity"
    needs = "data"
    uses_model = False
    tasks = ALL_TASKS
    thresholds = {
        "low_information_ratio": (0.05, "near-constant: an image's std below this times the dataset's median std"),
        "aspect_outlier_factor": (2.5, "aspect ratio off the median by more than this factor is an outlier"),
        "tiny_side_ratio": (0.25, "shorter side below this fraction of the median's is an outlier"),
        "resize_drop_warn": (0.05, "warn when resizing to image_size costs more balanced accuracy than this"),
        "clipped_share_warn": (0.01, "warn when reading a 16/32-bit or float image as torchvision's loader does clips this share of its pixels"),
        "mask_interpolated_share": (0.1, "segmentation: fail when this share of a split's class-boundary pixels hold an id between their neighbours'"),
        "mask_offset_px": (2, "segmentation: fail when a split's mask boundaries best match its image edges this many pixels off"),
        "mask_offset_gain": (1.2, "segmentation: ... and edges agree this many times better there than unshifted"),
        "mask_class_lost_warn": (0.5, "segmentation: warn when resizing masks to image_size loses this share of a class's pixels (or of the images holding it)"),
    }
    ranges = {
        "low_information_ratio": SHARE,
        "aspect_outlier_factor": Range(1.0, 1000.0),
        "tiny_side_ratio": SHARE,
        "resize_drop_warn": SHARE,
        "clipped_share_warn": SHARE,
        "mask_interpolated_share": SHARE,
        "mask_offset_px": Range(1, 64),
        "mask_offset_gain": Range(1.0, 1000.0),
        "mask_class_lost_warn": POSITIVE_SHARE,
    }

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx) -> "InputFidelityMeasurement":
        ds = ctx.dataset
        m = InputFidelityMeasurement(
            ds.is_image, sum(len(s) for s in ds.splits.values()), tuple(ds.unreadable), tuple(ds.ignored_files),
            {name: np.array(part.ids) for name, part in ds.splits.items()},
            {name: _sample_stats(part) for name, part in ds.splits.items()})
        if not ds.is_image:
            return m
        parts = [p for p in ds.splits.values() if p.native_sizes is not None]
        if ds.task == "segmentation":
            from dnncheck.checks.mask_fidelity import measure_masks

            m = replace(m, masks=measure_masks(ds, ctx.seed))
        return replace(m, channels=ds.channels,
                       modes=tuple((i, mode) for part in ds.splits.values() if part.modes
                                   for i, mode in zip(part.ids, part.modes)),
                       native_sizes=np.concatenate([p.native_sizes for p in parts]).astype(float),
                       native_ids=np.concatenate([np.array(p.ids) for p in parts]),
                       resolution=_resolution_test(ctx) if ds.task == "classification" else None,
                       montage=_montage(ctx), decoding=_decoding(ds))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "InputFidelityMeasurement", t) -> Verdict:
        findings = _unreadable_findings(m)
        metrics = {"samples": m.samples, "unreadable": len(m.unreadable), "ignored_files": len(m.ignored_files)}
        findings += _value_findings(m, t, metrics)
        figures = {}
        if m.is_image:
            findings += _mode_findings(m, metrics)
            findings += _decoding_findings(m.decoding, t, metrics)
            findings += _size_findings(m, t, metrics)
            res_metrics, res_findings = _resolution_findings(m.resolution, t)
            metrics.update(res_metrics)
            findings += res_findings
            if m.masks is not None:
                from dnncheck.checks.mask_fidelity import mask_findings

                findings += mask_findings(m.masks, t, metrics)
            if m.montage is not None and len(m.montage.images):
                figures["montage"] = m.montage
        return Verdict(verdict(findings), _summary(metrics, findings), tuple(findings), metrics, _remedy(findings),
                       figures)


@dataclass(frozen=True)
class ResolutionTest:
    """5-NN balanced accuracy on the same training sample at a higher resolution and at the model's."""
    reference: tuple[int, int] | None  # None: the stored images are no larger than the model's input
    model_size: tuple[int, int]
    reference_score: float = float("nan")
    model_score: float = float("nan")
    samples: int = 0
    classes: int = 2


@dataclass(frozen=True)
class InputFidelityMeasurement:
    is_image: bool
    samples: int
    unreadable: tuple  # (sample id, reason) of files that did not decode
    ignored_files: tuple  # files skipped for their extension
    ids: dict  # split -> sample ids
    stats: dict  # split -> per-sample min, max, std, nonfinite (every sample)
    channels: int = 0
    modes: tuple = ()  # (sample id, Pillow mode)
    native_sizes: np.ndarray | None = None  # (H, W) per image, as stored
    native_ids: np.ndarray | None = None
    resolution: ResolutionTest | None = None
    montage: ImageGrid | None = None
    decoding: dict | None = None  # image files: id, mode, clipped, src_nonfinite, orientation, frames per file
    masks: object = None  # segmentation: checks.mask_fidelity.MaskMeasurement


def _decoding(ds) -> dict | None:
    """What reading each file as torchvision's loader does changed (data/images.DecodeFacts, kept in
    the records of image files; in-memory images have none)."""
    parts = [p for p in ds.splits.values() if p.records is not None and p.modes]
    if not parts:
        return None
    facts = {"ids": np.concatenate([np.array(p.ids) for p in parts]),
             "modes": np.array([mode for p in parts for mode in p.modes])}
    for field in ("clipped", "src_nonfinite", "orientation", "frames"):
        facts[field] = np.concatenate([p.records[field] for p in parts])
    return facts


def _resolution_test(ctx) -> ResolutionTest:
    ds = ctx.dataset
    train = ds.splits["train"]
    model_size = tuple(ds.image_size)
    stored = np.median(train.records["decoded"][:200], axis=0)
    cap = [min(MAX_REFERENCE_SIDE, max(2 * s, 32)) for s in model_size]
    reference = (int(min(stored[0], cap[0])), int(min(stored[1], cap[1])))
    if reference[0] <= model_size[0] and reference[1] <= model_size[1]:
        return ResolutionTest(None, model_size)
    index = subsample_index(train.y, RESOLUTION_SAMPLES, ctx.seed, True)
    x, y = train.take(index).x, train.y[index]
    return ResolutionTest(reference, model_size, _knn_score(x, y, reference, ctx.seed),
                          _knn_score(x, y, model_size, ctx.seed), int(len(index)), ds.num_classes)


def _unreadable_findings(m: InputFidelityMeasurement):
    findings = []
    if m.unreadable:
        ids = [i for i, _ in m.unreadable]
        findings.append(Finding(Status.FAIL, f"{len(ids)} file(s) cannot be decoded and were left out of the audit",
                                samples=tuple(ids), evidence={"reasons": dict(m.unreadable)}))
    if m.ignored_files:
        findings.append(Finding(Status.WARN, f"{len(m.ignored_files)} file(s) in the class folders are not images "
                                "by their extension and were skipped", samples=tuple(m.ignored_files[:MAX_LISTED])))
    return findings


def _value_findings(m: InputFidelityMeasurement, t, metrics):
    findings = []
    stats, ids = m.stats, m.ids
    nonfinite = [i for name, s in stats.items() for i in ids[name][s["nonfinite"] > 0]]
    metrics["nonfinite_samples"] = len(nonfinite)
    if nonfinite:
        findings.append(Finding(Status.FAIL, f"{len(nonfinite)} sample(s) contain NaN or Inf values",
                                samples=tuple(nonfinite)))
    if not m.is_image:
        return findings
    constant = [(i, float(lo)) for name, s in stats.items()
                for i, lo in zip(ids[name][s["max"] == s["min"]], s["min"][s["max"] == s["min"]])]
    metrics["constant_images"] = len(constant)
    if constant:
        values = sorted({v for _, v in constant})
        findings.append(Finding(Status.WARN, f"{len(constant)} image(s) are a single flat value "
                                f"({', '.join(f'{v:g}' for v in values[:5])}): blank or broken exports",
                                samples=tuple(i for i, _ in constant), evidence={"values": dict(constant)}))
    all_std = np.concatenate([s["std"] for s in stats.values()])
    floor = t.low_information_ratio * float(np.median(all_std[np.isfinite(all_std)]))
    low = [i for name, s in stats.items() for i in ids[name][(s["std"] < floor) & (s["max"] > s["min"])]]
    metrics["near_constant_images"] = len(low)
    if low:
        findings.append(Finding(Status.WARN, f"{len(low)} image(s) are nearly constant (std below {floor:.3g}, "
                                f"{t.low_information_ratio:g} x the median): little information", samples=tuple(low)))
    return findings


def _mode_findings(m: InputFidelityMeasurement, metrics):
    counts: dict[str, int] = {}
    for _, mode in m.modes:
        counts[mode] = counts.get(mode, 0) + 1
    metrics["modes"] = counts
    if len(counts) < 2:
        return []
    major = max(counts, key=counts.get)
    minority = [i for i, mode in m.modes if mode != major]
    listed = ", ".join(f"{n} {mode}" for mode, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    head = f"mixed image modes ({listed}): converted to {m.channels} channel(s) as torchvision's loader would"
    return [Finding(Status.WARN, f"{head}; make sure your pipeline does the same",
                    samples=tuple(minority[:MAX_LISTED]), evidence={"modes": counts}, headline=head)]


def _decoding_findings(d: dict | None, t, metrics) -> list:
    """High-bit-depth images clipped, NaN pixels in float images, EXIF rotations the loader ignores,
    files of several frames: each as the user's torchvision loader reads them."""
    if d is None:
        return []
    findings = []
    ids = d["ids"]
    clipped = d["clipped"] >= t.clipped_share_warn
    metrics["clipped_images"] = int(clipped.sum())
    if clipped.any():
        modes = ", ".join(sorted(set(d["modes"][clipped])))
        head = (f"{int(clipped.sum())} high-bit-depth image(s) ({modes}) are clipped to 0..255 when read as "
                f"torchvision's default loader reads them (Pillow's convert): {float(np.median(d['clipped'][clipped])):.0%} "
                "of their pixels saturate (median)")
        order = np.argsort(-d["clipped"][clipped], kind="stable")
        findings.append(Finding(Status.WARN, f"{head}; the model sees washed-out images: load them with your own "
                                "loader that scales by the bit depth (e.g. array / 65535, or / 4095 for 12-bit data)",
                                samples=tuple(ids[clipped][order][:MAX_LISTED]), headline=head,
                                evidence={"clipped_share": {str(i): round(float(v), 4) for i, v in
                                                            zip(ids[clipped][order][:MAX_LISTED], d["clipped"][clipped][order])}}))
    nan = d["src_nonfinite"] > 0
    metrics["images_with_nan_pixels"] = int(nan.sum())
    if nan.any():
        head = (f"{int(nan.sum())} float image(s) hold {int(d['src_nonfinite'][nan].sum()):,} NaN/Inf pixel(s), which "
                "torchvision's loader silently reads as 0")
        findings.append(Finding(Status.WARN, f"{head}; fill or mask the missing values before training",
                                samples=tuple(ids[nan][:MAX_LISTED]), headline=head))
    turned = d["orientation"] >= 2
    metrics["exif_rotated_images"] = int(turned.sum())
    if turned.any():
        head = (f"{int(turned.sum())} photo(s) carry an EXIF orientation that rotates or mirrors them in a viewer; "
                "torchvision's default loader ignores it, so the model sees them as stored (sideways or mirrored)")
        findings.append(Finding(Status.WARN, f"{head}; apply PIL.ImageOps.exif_transpose in your loader or re-save "
                                "them upright", samples=tuple(ids[turned][:MAX_LISTED]), headline=head,
                                evidence={"orientation": {str(i): int(o) for i, o in
                                                          zip(ids[turned][:MAX_LISTED], d["orientation"][turned])}}))
    frames = d["frames"] > 1
    metrics["multi_frame_files"] = int(frames.sum())
    if frames.any():
        findings.append(Finding(Status.INFO, f"{int(frames.sum())} file(s) hold several frames (animated GIF, "
                                "multi-page TIFF): only the first frame is read, as torchvision's loader does",
                                samples=tuple(ids[frames][:MAX_LISTED]),
                                evidence={"frames": {str(i): int(f) for i, f in zip(ids[frames][:MAX_LISTED],
                                                                                    d["frames"][frames])}}))
    return findings


def _size_findings(m: InputFidelityMeasurement, t, metrics):
    sizes, ids = m.native_sizes, m.native_ids
    aspect = sizes[:, 1] / sizes[:, 0]
    short = sizes.min(axis=1)
    med_aspect, med_short = float(np.median(aspect)), float(np.median(short))
    metrics.update(native_sizes=len({(int(h), int(w)) for h, w in sizes}),
                   median_native_size=[int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1]))],
                   min_native_side=int(short.min()), max_native_side=int(sizes.max()),
                   median_aspect_ratio=round(med_aspect, 3))
    odd_aspect = np.abs(np.log(aspect / med_aspect)) > np.log(t.aspect_outlier_factor)
    tiny = short < t.tiny_side_ratio * med_short
    outliers = ids[odd_aspect | tiny]
    if not len(outliers):
        return []
    detail = {str(i): [int(v) for v in s] for i, s in zip(ids[odd_aspect | tiny], sizes[odd_aspect | tiny])}
    return [Finding(Status.WARN, f"{len(outliers)} image(s) have an unusual size or aspect ratio (median "
                    f"{metrics['median_native_size'][0]}x{metrics['median_native_size'][1]}, aspect "
                    f"{med_aspect:.2f}): resizing will distort them", samples=tuple(outliers),
                    evidence={"native_sizes": dict(list(detail.items())[:MAX_LISTED])})]


def _resolution_findings(r: ResolutionTest | None, t):
    if r is None or r.reference is None:
        return {"resize_reference": None}, []
    reference, model_size = r.reference, r.model_size
    chance = 1.0 / r.classes
    drop = r.reference_score - r.model_score
    lost = drop / (r.reference_score - chance) if r.reference_score > chance else 0.0
    metrics = {"resize_reference": list(reference), "resize_model": list(model_size),
               "knn_balanced_accuracy_reference": round(r.reference_score, 4),
               "knn_balanced_accuracy_model_size": round(r.model_score, 4),
               "resize_accuracy_drop": round(drop, 4), "resize_samples": r.samples}
    if not drop > t.resize_drop_warn:  # NaN (too few samples per class to cross-validate) says nothing
        return metrics, []
    head = f"resizing to {model_size[0]}x{model_size[1]} loses class signal"
    return metrics, [Finding(Status.WARN, f"{head}: a nearest-neighbour probe scores {r.model_score:.2f} balanced "
                             f"accuracy against {r.reference_score:.2f} at {reference[0]}x{reference[1]} ({lost:.0%} of "
                             "what it learns above chance); raise image_size or crop instead of shrinking",
                             evidence={"reference_size": list(reference), "model_size": list(model_size)},
                             headline=head + f": a nearest-neighbour probe scores {r.model_score:.2f} balanced accuracy "
                                             f"against {r.reference_score:.2f} at {reference[0]}x{reference[1]} "
                                             f"({lost:.0%} of what it learns above chance)")]


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Remove or re-export unreadable and blank files; convert images to one mode; check outliers by "
            "eye; if resizing loses the signal, raise [data] image_size or crop the region of interest.")


def _sample_stats(part) -> dict[str, np.ndarray]:
    """Per-sample min, max, std and non-finite count: from the records for images (computed in the
    data pass, every sample), chunked over the rows for tables."""
    from dnncheck.data.records import value_stats

    if part.records is not None:
        return {k: part.records[k] for k in ("min", "max", "std", "nonfinite")}
    return value_stats(np.asarray(part.x).reshape(len(part), -1))


def _knn_score(x, y, size, seed) -> float:
    """3-fold balanced accuracy of 5-NN on mean-centred, L2-normalised pixels at `size`.

    The neighbours come from one precomputed distance matrix (N x N, 8 MB for 1,000 samples)
    rather than from copies of the pixel features per fold; the features are made a chunk of images
    at a time and kept in float16 (1,000 photos at 128x128 were 196 MB in float32 at once, the peak
    of a 20,000-photo input-fidelity audit after torch left it)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = min(3, int(np.bincount(y).min()))
    if folds < 2:
        return float("nan")
    distances = _unit_distances(_unit_features(x, size))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    knn = KNeighborsClassifier(5, metric="precomputed")
    return float(cross_val_score(knn, distances, y, cv=cv, scoring="balanced_accuracy").mean())


FEATURE_ROWS = 128  # images resized and normalised at a time
GRAM_COLUMNS = 4096  # feature columns multiplied at a time (1,000 rows in float32: 16 MB)


def _unit_features(x, size) -> np.ndarray:
    """N x D float16: each image at `size`, mean-centred and L2-normalised (in float32), a chunk of
    FEATURE_ROWS images at a time. float16 keeps a unit row's entries to 3 significant digits:
    the distances move by about 1e-3, far below the gaps k-NN decides on."""
    out = None
    for start in range(0, len(x), FEATURE_ROWS):
        part = _pixels_at(x[start:start + FEATURE_ROWS], size)
        part = part.reshape(len(part), -1)
        part -= part.mean(axis=1, keepdims=True)
        part /= np.linalg.norm(part, axis=1, keepdims=True) + 1e-8
        if out is None:
            out = np.empty((len(x), part.shape[1]), dtype=np.float16)
        out[start:start + len(part)] = part
    return out


def _unit_distances(feats: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows, from their Gram matrix, summed over blocks of columns (one
    BLAS product each, in float32: no float32 copy of all the features, no N x N x D work)."""
    gram = np.zeros((len(feats), len(feats)), dtype=np.float64)
    for start in range(0, feats.shape[1], GRAM_COLUMNS):
        block = feats[:, start:start + GRAM_COLUMNS].astype(np.float32)
        gram += block @ block.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2.0 * gram
    return np.sqrt(np.maximum(squared, 0.0))


def _pixels_at(x, size) -> np.ndarray:
    """N,C,H,W float32 pixels resized to `size`: image files in the data pass's workers, without torch
    (a folder's input-fidelity audit then never imports it), in-memory images as the probes resize them."""
    if hasattr(x, "resized_array"):
        return x.resized_array(size)
    from dnncheck.probes.inputs import raw_tensor

    return raw_tensor(x, size).numpy()


def _montage(ctx) -> ImageGrid:
    """A few training samples per class at the model's input size, before normalisation: integer
    images as they are (0..255 for uint8), float images rescaled per image for display. (Normalised
    values rescaled per image distorted colours, and needed the normaliser fitted on the whole view.)"""
    from dnncheck.data.dataset import integer_scale

    ds = ctx.dataset
    train = ctx.view("train")
    if ds.task == "segmentation":
        from dnncheck.checks.mask_fidelity import tinted_montage

        return tinted_montage(ds, train)
    picks = []
    if ds.task == "multilabel":
        picks = list(range(min(len(train), MONTAGE_PER_CLASS * MONTAGE_CLASSES)))
    for c in range(min(ds.num_classes, MONTAGE_CLASSES)) if ds.task == "classification" else ():
        picks += list(np.flatnonzero(train.y == c)[:MONTAGE_PER_CLASS])
    images = np.zeros((0, 1, 1, 1))
    if picks:
        images = _pixels_at(train.take(np.array(picks)).x, ds.image_size).transpose(0, 2, 3, 1)
    images = np.nan_to_num(images, nan=0.0, posinf=0.0, neginf=0.0)  # NaN/Inf are reported, shown as 0
    scale = integer_scale(ds.splits["train"].x)
    if scale:
        display = np.clip(images * (255.0 / scale), 0, 255).round().astype(np.uint8)
        how = "pixel values as stored"
    else:
        lo = images.reshape(len(images), -1).min(1)[:, None, None, None] if len(images) else 0
        hi = images.reshape(len(images), -1).max(1)[:, None, None, None] if len(images) else 1
        display = np.clip((images - lo) / np.maximum(hi - lo, 1e-8) * 255, 0, 255).astype(np.uint8)
        how = "float values rescaled per image to 0..255"
    note = f"at the model's input size ({ds.image_size[0]}x{ds.image_size[1]}), before normalisation; {how}"
    captions = ["|".join(ds.classes[c] for c in np.flatnonzero(train.y[i])) or "(none)" for i in picks] \
        if ds.task == "multilabel" else [ds.classes[train.y[i]] for i in picks]
    return ImageGrid(f"What the model sees - {note}", display, captions, cols=8,
                     ids=[train.ids[i] for i in picks])


def _summary(metrics, findings) -> str:
    if not findings:
        text = f"{metrics['samples']} samples decode with finite, informative values"
        if metrics.get("resize_reference"):
            text += (f"; resizing keeps the class signal (kNN {metrics['knn_balanced_accuracy_model_size']:.2f} vs "
                     f"{metrics['knn_balanced_accuracy_reference']:.2f} at higher resolution)")
        return text
    others = len(findings) - 1
    return headline(findings) + (f" (+{others} more finding{'s' if others > 1 else ''})" if others else "")
