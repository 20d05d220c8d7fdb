"""DNC1 input-fidelity on segmentation data: the masks themselves (part of input-fidelity, kept apart
so that check stays readable). What was measured is a MaskMeasurement; `mask_findings` judges it.

- storage: 0/255 masks, RGB colour maps, float masks with values between whole numbers, values
  that are not 0..C-1 (e.g. 255 as an "ignore" label), as the loader found them (data/tasks.py);
- interpolation: ids lying between two neighbours' ids at class boundaries (masks.between_pixels);
- alignment: where mask boundaries fall against image edges, per split (masks.alignment);
- resize: the share of each class's pixels, and the images it vanishes from, at the model's input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dnncheck.checks.base import Finding, Status
from dnncheck.data.sampling import subsample_index
from dnncheck.figures import ImageGrid

MAX_LISTED = 50
INTERPOLATION_SAMPLES = 2000  # masks per split scanned for in-between ids
RESIZE_SAMPLES = 2000  # training masks whose round trip to the model's size is measured
TINT = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                 [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.float32)
MONTAGE_IMAGES = 16


@dataclass(frozen=True)
class MaskMeasurement:
    classes: tuple[str, ...]
    facts: dict  # data.tasks.MaskFacts as a dict
    alignment: dict  # split -> masks.Alignment (as a dict)
    between: dict  # split -> (share of boundary pixels holding an in-between id, ids of the worst masks)
    model_size: tuple[int, int]
    stored_size: tuple[int, int]
    resize: dict | None = None  # stored/lost pixels and holding/vanished images per class (None: no shrink)


def measure_masks(ds, seed: int) -> MaskMeasurement:
    from dnncheck.masks import alignment, between_pixels, boundaries, round_trip_loss

    aligned, between = {}, {}
    for name, part in ds.splits.items():
        if not len(part):
            continue
        index = subsample_index(np.zeros(len(part)), INTERPOLATION_SAMPLES, seed, False)
        masks = part.y[index]
        inside, edge = between_pixels(masks), boundaries(masks)
        per_mask = inside.reshape(len(masks), -1).sum(1)
        order = np.argsort(-per_mask, kind="stable")
        worst = order[per_mask[order] > 0][:MAX_LISTED]
        between[name] = (float(inside.sum() / max(1, edge.sum())), [part.ids[i] for i in index[worst]])
        few = index[:256] if len(index) > 256 else index
        aligned[name] = asdict(alignment(images_at_mask_size(part, few), part.y[few]))
    train = ds.splits["train"]
    stored = tuple(int(v) for v in train.y.shape[1:3])
    model = tuple(int(v) for v in ds.image_size)
    resize = None
    if model[0] < stored[0] or model[1] < stored[1]:
        index = subsample_index(np.zeros(len(train)), RESIZE_SAMPLES, seed, False)
        pixels, lost, holding, vanished = round_trip_loss(train.y[index], model, len(ds.classes))
        resize = {"pixels": pixels.tolist(), "lost": lost.tolist(), "holding": holding.tolist(),
                  "vanished": vanished.tolist(), "samples": int(len(index))}
    facts = asdict(ds.mask_facts) if ds.mask_facts is not None else {}
    return MaskMeasurement(tuple(ds.classes), facts, aligned, between, model, stored, resize)


def images_at_mask_size(part, index) -> np.ndarray:
    """The images at `index` as N,H,W,C on their masks' grid: as stored for arrays (masks share their
    images' size), resized for image files (whose masks were read at the model's input size)."""
    if isinstance(part.x, np.ndarray):
        return part.x[index]
    return part.x.take(index).resized_array(tuple(part.y.shape[1:3])).transpose(0, 2, 3, 1)


def mask_findings(m: MaskMeasurement, t, metrics: dict) -> list:
    return [*_size_mismatch_findings(m, metrics), *_storage_findings(m, metrics), *_interpolation_findings(m, t, metrics), *_alignment_findings(m, t, metrics),
            *_resize_findings(m, t, metrics)]


def _size_mismatch_findings(m: MaskMeasurement, metrics) -> list:
    mismatched = m.facts.get("size_mismatch", []) if m.facts else []
    metrics["masks_of_another_size"] = len(mismatched)
    if not mismatched:
        return []
    sample, mask, image = mismatched[0]
    head = f"{len(mismatched)} mask(s) are stored at another size than their image (e.g. {mask[0]}x{mask[1]} vs {image[0]}x{image[1]})"
    return [Finding(Status.FAIL, f"{head}: a mask resized apart from its image no longer lines up pixel for pixel; "
                    "export each mask at its image's size", samples=tuple(s for s, _, _ in mismatched[:MAX_LISTED]),
                    evidence={"sizes": {s: {"mask": a, "image": b} for s, a, b in mismatched[:MAX_LISTED]}},
                    headline=head)]


def _storage_findings(m: MaskMeasurement, metrics) -> list:
    f = m.facts
    if not f:
        return []
    metrics["mask_values_stored"] = f["distinct"]
    if f["colour_map"]:
        head = f"masks are RGB colour maps ({f['distinct']} colours), not class ids"
        return [Finding(Status.FAIL, f"{head}: a segmentation loss takes one class id per pixel; map each colour to "
                        "its id with a palette lookup before training (dnncheck audited them as classes in sorted "
                        "colour order)", evidence={"colours": f["stored_values"]}, headline=head)]
    if f["stored_values"] == ["0", "255"]:
        head = "masks hold 0 and 255, not class ids 0 and 1"
        return [Finding(Status.FAIL, f"{head}: CrossEntropyLoss with 2 outputs rejects target 255 (and with 256 "
                        "outputs learns 254 classes that never occur); divide the masks by 255 or map 255 to 1",
                        evidence={"stored_values": f["stored_values"]}, headline=head)]
    if f["mapped"]:
        top = f["stored_values"][-1]
        head = f"mask values are not class ids 0..C-1: {f['distinct']} distinct values up to {top}"
        hint = (f"; if {top} marks pixels to ignore (Pascal VOC's 255), pass ignore_index={top} to the loss"
                if top == "255" else "; renumber them 0..C-1")
        return [Finding(Status.WARN, f"{head}{hint} (dnncheck audited them as classes in sorted order)",
                        evidence={"mapping": f["mapping"]}, headline=head)]
    return []


def _interpolation_findings(m: MaskMeasurement, t, metrics) -> list:
    findings = []
    share = m.facts.get("non_integer_share", 0.0) if m.facts else 0.0
    if share > 0:
        head = f"masks hold values between whole numbers ({share:.1%} of pixels)"
        findings.append(Finding(Status.FAIL, f"{head}: they were resized or stored with interpolation; class ids "
                                "must be resized with nearest-neighbour (InterpolationMode.NEAREST) and stored as "
                                "integers", evidence={"non_integer_share": share}, headline=head))
    worst = max(m.between.items(), key=lambda kv: kv[1][0], default=None)
    metrics["mask_in_between_share"] = {name: round(v[0], 4) for name, v in m.between.items()}
    if worst is not None and worst[1][0] >= t.mask_interpolated_share:
        name, (fraction, ids) = worst
        head = (f"{fraction:.0%} of the class-boundary pixels of {name}'s masks hold an id between their "
                "neighbours' ids")
        findings.append(Finding(Status.FAIL, f"{head}: ramps such as 0, 3, 7 from class 0 to class 7 are what an "
                                "interpolating resize (bilinear, antialias) leaves in label images; resize masks with "
                                "nearest-neighbour from the originals", samples=tuple(ids),
                                evidence={"in_between_share": metrics["mask_in_between_share"]}, headline=head))
    return findings


def _alignment_findings(m: MaskMeasurement, t, metrics) -> list:
    metrics["mask_offset"] = {name: [a["dy"], a["dx"]] for name, a in m.alignment.items()}
    findings = []
    for name, a in m.alignment.items():
        offset = max(abs(a["dy"]), abs(a["dx"]))
        if offset < t.mask_offset_px or a["gain"] < t.mask_offset_gain:
            continue
        where = " and ".join(part for part in (
            f"{abs(a['dx'])} px {'right' if a['dx'] > 0 else 'left'}" if a["dx"] else "",
            f"{abs(a['dy'])} px {'down' if a['dy'] > 0 else 'up'}" if a["dy"] else "") if part)
        head = f"{name}'s masks sit {where} of their images' edges"
        findings.append(Finding(Status.FAIL, f"{head} (edge agreement {a['gain']:.1f}x higher there than unshifted, "
                                f"{a['images']} images): a crop, pad or flip was applied to the images or the masks "
                                "but not both; apply every geometric transform to image and mask together",
                                evidence={"split": name, **a}, headline=head))
    return findings


def _resize_findings(m: MaskMeasurement, t, metrics) -> list:
    r = m.resize
    if r is None:
        return []
    pixels, lost = np.array(r["pixels"], dtype=float), np.array(r["lost"], dtype=float)
    holding, vanished = np.array(r["holding"], dtype=float), np.array(r["vanished"], dtype=float)
    share = np.divide(lost, pixels, out=np.zeros_like(lost), where=pixels > 0)
    gone = np.divide(vanished, holding, out=np.zeros_like(vanished), where=holding > 0)
    metrics["mask_pixels_lost_at_model_size"] = {c: round(float(s), 4) for c, s in zip(m.classes, share) if pixels[
        list(m.classes).index(c)] > 0}
    bad = np.flatnonzero((share >= t.mask_class_lost_warn) | (gone >= t.mask_class_lost_warn))
    if not len(bad):
        return []
    shown = ", ".join(f"{m.classes[c]}: {share[c]:.0%} of its pixels, gone from {int(vanished[c])} of "
                      f"{int(holding[c])} images" for c in bad[:5])
    size = f"{m.model_size[0]}x{m.model_size[1]}"
    head = f"resizing masks to {size} loses thin classes ({shown})"
    return [Finding(Status.WARN, f"{head}: the model cannot learn structures that vanish at its input size; raise "
                    "[data] image_size or train on crops (tutorial Fig. 2)",
                    evidence={"model_size": list(m.model_size), "stored_size": list(m.stored_size),
                              "lost_share": {m.classes[c]: round(float(share[c]), 4) for c in bad}}, headline=head)]


def tinted_montage(ds, view) -> ImageGrid:
    """Training images with their masks tinted over them (class 0 left clear), at the stored size."""
    from dnncheck.data.dataset import integer_scale

    count = min(MONTAGE_IMAGES, len(view))
    images = np.asarray(images_at_mask_size(view, np.arange(count)), dtype=np.float32)
    scale = integer_scale(ds.splits["train"].x) or max(1e-8, float(images.max()))
    grey = np.clip(images.mean(axis=-1) / scale * 255.0, 0, 255)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    masks = view.y[:count].astype(np.int64)
    colour = TINT[(masks - 1) % len(TINT)]
    tinted = np.where((masks > 0)[..., None], 0.45 * rgb + 0.55 * colour, rgb)
    captions = [", ".join(ds.classes[c] for c in np.unique(mk) if c > 0) or ds.classes[0] for mk in masks]
    return ImageGrid("Masks over their images (class 0 untinted)", tinted.round().astype(np.uint8),
                     captions, cols=8, ids=list(view.ids[:count]))
