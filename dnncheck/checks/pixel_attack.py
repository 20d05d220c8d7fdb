"""DNC10 pixel-attack: pixels whose value alone predicts a class (a shortcut in the data), how
readily the model learns a planted one-pixel trigger, and how often one pixel flips its prediction."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dnncheck.figures import ImageGrid, Lines, MarkedImage
from dnncheck.checks.base import (AUC, SHARE, Check, Finding, ProbeGap, Range, Skipped, Status, Verdict, verdict,
                                  with_reason)
from dnncheck.data.properties import PropertyScan, scan_properties
from dnncheck.data.sampling import subsample_index
from dnncheck.errors import ProbeUnavailable

MAX_SCAN = 10000  # training images scanned (stratified subsample above this)
SCAN_VALUES = 25_000_000  # and at most this many values (100 MB as float32): 10,000 digits, ~680 photos at 128x96
REFERENCE_MAX_SIDE = 128  # images of differing sizes are scanned on a common grid this large at most
FLIP_IMAGES = 40


class PixelAttack(Check):
    """Shortcuts in pixels, trigger susceptibility and one-pixel flips.

    What it checks
        (1) Shortcut scan of the training images as loaded (no training): positions where an
        extreme value (saturated high or low) that stands out from its neighbours occurs almost
        only in one class - a mark stamped on that class, dye that comes with one cell type.
        Each is a finding with `evidence.class` and `evidence.pixels` ([row, col] in the image
        as loaded), the share of the class carrying it and of the other classes. (2) A planted
        one-pixel trigger on a tenth of one class's training inputs: the probe is trained on
        them and the attack success rate on triggered validation images of other classes is
        measured, with clean accuracy beside it. (3) One-pixel flips of the trained probe: for
        correctly classified validation images, a random search over single pixels set to an
        extreme value; the share whose prediction changes.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), section II-E and Fig. 5: a network learns a pixel instead
        of the concept when the pixel is easier; their notebook stamped a two-pixel red/green
        mark on one CIFAR-10 class, validation accuracy looked better, and stamping the mark on
        other images sent most of them to that class (accuracy 0.75 -> 0.17). One-pixel attacks
        (Su et al. 2019) show how brittle such models are.

    How it is computed
        Scan: at each position and channel, images whose value is within 2% of the data's
        extremes and differs from the median of its 8 neighbours by at least half the range;
        flagged when at least `min_count` images of one class (and `min_support` of it) carry
        it and at least `min_precision` of all images carrying it are of that class; the flagged
        positions of a class form one finding. Images of differing sizes are scanned on
        a common grid (evidence.grid says which). Properties: per property and class, the ROC
        AUC of class-vs-rest from mid-ranks (Mann-Whitney U); max(AUC, 1 - AUC) at
        `property_auc_warn` warns, at `property_auc_fail` fails (a class with fewer than
        `min_count` images is not judged). Calibrated on clean data: the strongest class signal
        among these properties is digit 1's sharpness in 8x8 digits (0.971) and its brightness in
        MNIST (0.92); MNIST's 3s at 80% intensity reach 1.000. Beside it, the 3-fold balanced
        accuracy of a depth-6 tree on all properties together, against chance (the same idea as
        Deepchecks' property-label correlation and cleanlab's spurious-correlation scores). Trigger: the bottom-right pixel set to the
        input's maximum in every channel on 10% of one class's probe inputs; attack success =
        triggered validation images of other classes predicted as that class. Flips: up to
        `flip_evaluations` random (position, extreme value) candidates per image, on up to 40
        images.

    How to fix
        Remove or randomise the artefact (re-export without the mark, inpaint it, randomise its
        position across classes), crop borders where acquisition marks live, augment, and check
        where the model looks (saliency / Grad-CAM) before trusting its accuracy.
    """

    id = "DNC10"
    slug = "pixel-attack"
    item = None
    title = "Pixel-attack probe"
    needs = "image data; probe runs (trigger) and the shared probe (flips)"
    thresholds = {
        "min_count": (5, "a shortcut needs at least this many images of its class carrying it"),
        "min_support": (0.05, "... and at least this share of the class"),
        "min_precision": (0.95, "... and at least this share of the images carrying it in that class"),
        "property_auc_warn": (0.99, "warn when one image property alone separates a class from the rest with this ROC AUC"),
        "property_auc_fail": (0.999, "... and fail at this one (every image of the class beyond nearly every other)"),
        "asr_warn": (0.5, "warn when the planted trigger's attack success rate exceeds this"),
        "flip_warn": (0.5, "warn when one pixel flips more than this share of predictions"),
        "flip_evaluations": (100, "model evaluations per image in the flip search"),
        "probes": (True, "run the trigger and flip probes"),
    }
    ranges = {
        "min_count": Range(1, 1_000_000),
        "min_support": SHARE,
        "min_precision": SHARE,
        "property_auc_warn": AUC,
        "property_auc_fail": AUC,
        "asr_warn": SHARE,
        "flip_warn": SHARE,
        "flip_evaluations": Range(1, 10_000),  # model evaluations per image
    }
    ordered = (("property_auc_warn", "property_auc_fail"),)

    def probes(self, ctx) -> dict[str, dict]:
        ds = ctx.dataset
        if not (ds.is_image and ds.task == "classification" and self.t.probes and ctx.eval_split is not None):
            return {}
        return {"pixel-trigger": {}, "fit": {}}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx):
        ds = ctx.dataset
        if not ds.is_image:
            return Skipped("pixel attacks apply to images")
        if ds.task != "classification":
            return Skipped("pixel attacks here are measured for classification")
        m = PixelAttackMeasurement(tuple(ds.classes), _scan(ctx), properties=_property_scan(ctx))
        if not self.t.probes:
            return m
        try:
            m = replace(m, trigger=_trigger(ctx))
        except ProbeUnavailable as exc:
            m = replace(m, trigger_gap=ProbeGap.of(exc))
        try:
            m = replace(m, flips=_flips(ctx, self.t.flip_evaluations))
        except ProbeUnavailable as exc:
            m = replace(m, flips_gap=ProbeGap.of(exc))
        return m

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "PixelAttackMeasurement", t) -> Verdict:
        findings, metrics, figures = _shortcut_findings(m.scan, m.classes, t)
        if m.properties is not None:
            property_findings, property_metrics, property_figures = _property_findings(m.properties, m.classes, t)
            findings += property_findings
            metrics.update(property_metrics)
            figures.update(property_figures)
        if m.trigger_gap is not None:
            findings.append(m.trigger_gap.finding("trigger probe not run"))
        elif m.trigger is not None:
            metrics.update(m.trigger.metrics())
            findings += _trigger_findings(m.trigger, t)
        if m.flips_gap is not None:
            findings.append(m.flips_gap.finding("flip search not run"))
        elif m.flips is not None:
            metrics.update(m.flips.metrics())
            findings += _flip_findings(m.flips, t)
            if m.flips.examples:
                figures["flip_examples"] = _flip_figure(m.flips.examples)
        shortcuts = sum(1 for f in findings if "pixels" in f.evidence)
        summary = (f"{shortcuts} pixel shortcut(s) in the data" if shortcuts else "no pixel shortcut in the data")
        summary += _property_summary(findings, metrics)
        if not shortcuts:  # a warning or failure from the probes or properties: its reason leads
            summary = with_reason(summary, findings)
        if "trigger_attack_success" in metrics:
            summary += f"; planted trigger success {metrics['trigger_attack_success']:.2f}"
        if "one_pixel_flip_rate" in metrics:
            summary += f"; one-pixel flip rate {metrics['one_pixel_flip_rate']:.2f}"
        return Verdict(verdict(findings), summary, tuple(findings), metrics, _remedy(findings), figures)


@dataclass(frozen=True)
class ShortcutScan:
    """Isolated extreme values per position over a stratified sample of the training images."""
    grid: tuple[int, int]
    native: bool  # the grid is the images' own size (coordinates as loaded)
    cell_shape: tuple  # (H, W, C, 2): the position of a hit, 2 = (high, low)
    hits: np.ndarray  # N x prod(cell_shape) booleans
    y: np.ndarray  # classes of the N images
    ids: tuple[str, ...]
    class_means: dict  # class index -> mean image on the grid (H, W, C), for the figure


@dataclass(frozen=True)
class TriggerResult:
    target: str  # the class the trigger was planted on
    marked: int  # training images of it carrying the trigger
    clean_accuracy: float
    attack_success: float  # share of correctly classified, triggered images of other classes sent to target

    def metrics(self) -> dict:
        return {"trigger_target_class": self.target, "trigger_marked_training": self.marked,
                "trigger_clean_accuracy": round(self.clean_accuracy, 4),
                "trigger_attack_success": round(self.attack_success, 4)}


@dataclass(frozen=True)
class FlipResult:
    split: str
    images: int  # correctly classified images searched
    flipped: int  # of which one pixel changed the prediction
    evaluations: int  # tries per image
    examples: tuple = ()  # the first few flips: id, pixel, clean class, attacked top-3, both images

    @property
    def rate(self) -> float:
        return self.flipped / max(1, self.images)

    def metrics(self) -> dict:
        return {"one_pixel_flip_rate": round(self.rate, 4), "flip_images": self.images,
                "flip_evaluations": self.evaluations}


@dataclass(frozen=True)
class PixelAttackMeasurement:
    classes: tuple[str, ...]
    scan: ShortcutScan
    trigger: TriggerResult | None = None
    trigger_gap: ProbeGap | None = None
    flips: FlipResult | None = None
    flips_gap: ProbeGap | None = None
    properties: PropertyScan | None = None  # brightness, size, format ... against the classes


# -- 1. the data --------------------------------------------------------------------------------
def _scan(ctx) -> ShortcutScan:
    ds = ctx.dataset
    train = ds.splits["train"]
    grid, native = _scan_grid(train)
    values = grid[0] * grid[1] * max(1, ds.channels)
    index = subsample_index(train.y, max(1, min(MAX_SCAN, SCAN_VALUES // values)), ctx.seed, True)
    part = train.take(index)
    x = _on_grid(part.x, grid, native)
    hits = _isolated_extremes(x)  # N, H, W, C, 2 (high, low)
    means = {c: x[part.y == c].mean(axis=0) for c in np.unique(part.y)}
    return ShortcutScan(grid, native, hits.shape[1:], hits.reshape(len(x), -1), part.y, tuple(part.ids), means)


def _shortcut_findings(scan: ShortcutScan, classes, t):
    flat, y = scan.hits, scan.y
    # positions x classes, summed as booleans per class (a float copy of the hits was 200 MB)
    counts = np.stack([flat[y == c].sum(axis=0) for c in range(len(classes))], axis=1).astype(np.float64)
    totals = counts.sum(1)
    per_class = np.bincount(y, minlength=len(classes)).astype(float)
    best = counts.argmax(1)
    top = counts[np.arange(len(counts)), best]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(totals > 0, top / totals, 0)
        support = top / np.maximum(per_class[best], 1)
    flagged = (top >= t.min_count) & (support >= t.min_support) & (precision >= t.min_precision)
    metrics = {"scanned_images": int(len(y)), "scan_grid": list(scan.grid), "native_grid": scan.native,
               "flagged_positions": int(flagged.sum())}
    findings, figures = [], {}
    for cls, cells in _group_positions(np.flatnonzero(flagged), scan.cell_shape, best).items():
        pixels = sorted({(int(r), int(c)) for r, c, _, _ in cells})
        channels = sorted({int(ch) for _, _, ch, _ in cells})
        polarity = "high" if any(p == 0 for *_, p in cells) else "low"
        keys = [np.ravel_multi_index((r, c, ch, p), scan.cell_shape) for r, c, ch, p in cells]
        carried = flat[:, keys].max(axis=1) > 0
        share_class = float(carried[y == cls].mean())
        share_other = float(carried[y != cls].mean()) if np.any(y != cls) else 0.0
        name = classes[cls]
        ids = [scan.ids[i] for i in np.flatnonzero(carried & (y == cls))]
        head = (f"pixel shortcut for class {name}: {len(pixels)} pixel(s) near {pixels[0]} are saturated ({polarity}) "
                f"in {share_class:.0%} of {name} images and {share_other:.1%} of the others")
        findings.append(Finding(Status.FAIL, f"{head}; a model can learn the mark instead of the class",
                                samples=tuple(ids[:50]), headline=head,
                                evidence={"class": name, "pixels": [list(p) for p in pixels], "channels": channels,
                                          "share_of_class": round(share_class, 4),
                                          "share_of_other_classes": round(share_other, 4), "grid": list(scan.grid),
                                          "coordinates": "as loaded" if scan.native else "common grid"}))
        figures[f"shortcut_{name}"] = MarkedImage(f"Pixel shortcut for class {name}", scan.class_means[cls], pixels,
                                                  f"class {name}: mean image, shortcut pixels circled")
    return findings, metrics, figures


# -- 1b. image properties ------------------------------------------------------------------------
MAX_PROPERTY_FINDINGS = 5


def _property_scan(ctx) -> PropertyScan | None:
    train = ctx.dataset.splits["train"]
    if train.records is None:
        return None
    return scan_properties(train.records, train.ids, train.y, ctx.dataset.num_classes, ctx.seed)


def _property_findings(scan: PropertyScan, classes, t):
    """A class that one global property (brightness, size, format...) tells from the rest almost
    perfectly: a model can score on that class without looking at its content."""
    metrics = {"image_properties": list(scan.names)}
    if scan.balanced_accuracy is not None:
        metrics["property_balanced_accuracy"] = round(scan.balanced_accuracy, 4)
        metrics["property_chance"] = round(scan.chance, 4)
    strength = scan.strength()
    enough = scan.class_counts >= t.min_count
    flagged = [(float(strength[p, c]), p, c) for p in range(len(scan.names)) for c in range(len(classes))
               if enough[c] and strength[p, c] >= t.property_auc_warn]
    two = int(np.sum(scan.class_counts > 0)) == 2
    flagged.sort(key=lambda f: _finding_order(scan, f, two))
    findings, figures, seen = [], {}, set()
    most = 1 if two else MAX_PROPERTY_FINDINGS  # two classes: one finding says it
    for score, p, c in flagged:
        if c in seen or len(findings) >= most:
            continue  # one finding per class: its strongest property (the others are listed in evidence)
        seen.add(c)
        name, prop = classes[c], scan.names[p]
        findings.append(_property_finding(scan, p, c, score, classes, prop, flagged, t))
        centres, shares = scan.histogram(p, c)
        figures[f"property_{name}"] = Lines(f"{prop}: class {name} against the other classes",
                                            {f"class {name}": shares["this class"],
                                             "other classes": shares["other classes"]}, prop, "share of images",
                                            x=centres)
    return findings, metrics, figures


def _finding_order(scan, flagged, two: bool) -> tuple:
    """Strongest first. On two classes "class A lower" is "class B higher" and one finding says it:
    a numeric property about the class lower in it (a darkening, shrinking or blurring export lowers
    the class it was applied to), a yes/no property ("format is .png") about the rarer value and the
    class that holds it (the bees re-saved as PNG, not "'format is .jpg' holds for 0% of bees")."""
    score, p, c = flagged
    higher = scan.auc[p, c] > 0.5
    if scan.names[p].startswith(("mode is", "format is")):
        share = float(np.nanmean(scan.values[:, p]))
        return (-score, share, not higher, p, c) if two else (-score, p, c)
    return (-score, 0.0, higher, p, c) if two else (-score, p, c)


def _property_finding(scan, p, c, score, classes, prop, flagged, t):
    name = classes[c]
    from dnncheck.data.properties import said_as

    v = scan.values[:, p]
    mine, rest = v[(scan.y == c) & np.isfinite(v)], v[(scan.y != c) & np.isfinite(v)]
    higher = scan.auc[p, c] > 0.5
    present = np.flatnonzero(scan.class_counts > 0)
    others = (f"{classes[int(present[present != c][0])]} images" if len(present) == 2 else
              "the other classes' images")
    if prop.startswith(("mode is", "format is")):
        head = (f"image-property shortcut for class {name}: '{prop}' holds for {mine.mean():.0%} of {name} images "
                f"and {rest.mean():.1%} of the others")
    else:
        phrase, lower_word, higher_word, scale = _on_unit_scale(said_as(prop), v)
        head = (f"image-property shortcut for class {name}: {name} images are {higher_word if higher else lower_word} "
                f"than {others} ({phrase}: median {_scaled(np.median(mine), scale)} vs "
                f"{_scaled(np.median(rest), scale)}; ROC AUC {score:.3f})")
        mean = _mean_brightness_clause(scan, c, prop)
        head += mean
    also = sorted({scan.names[q] for s, q, k in flagged if k == c and q != p})
    order = np.argsort(v[scan.y == c])  # the class's most extreme images first, in the shortcut's direction
    order = order[::-1] if higher else order
    ids = [scan.ids[i] for i in np.flatnonzero(scan.y == c)[order][:20]]
    severity = Status.FAIL if score >= t.property_auc_fail else Status.WARN
    return Finding(severity, f"{head}; a model can learn the {_said_name(prop)} instead of the class - make the classes alike "
                   "in it (same capture and export pipeline, or normalise/augment it away) or check that it is not "
                   "how the class was collected", samples=tuple(ids), headline=head,
                   evidence={"class": name, "property": prop, "roc_auc": round(score, 4),
                             "said_as": _said_name(prop),
                             "direction": "higher" if higher else "lower",
                             "class_median": round(float(np.median(mine)), 6) if len(mine) else None,
                             "other_median": round(float(np.median(rest)), 6) if len(rest) else None,
                             "also_separating": also})


def _said_name(prop: str) -> str:
    from dnncheck.data.properties import said_as

    return prop if prop.startswith(("mode is", "format is")) else said_as(prop)[0]


def _on_unit_scale(said, values: np.ndarray):
    """Pixel statistics of 8-bit images printed on 0-1 (as people quote brightness); others as stored."""
    phrase, lower, higher, scale = said
    if scale == 1.0 or not np.nanmax(values, initial=0.0) > 1.5:
        return phrase, lower, higher, 1.0
    return f"{phrase}, 0-1", lower, higher, scale


def _scaled(value: float, scale: float) -> str:
    return f"{value * scale:.2f}" if scale != 1.0 else f"{value:.4g}"


def _mean_brightness_clause(scan, c: int, prop: str) -> str:
    """For a class told apart by its darkest or brightest pixels, how its mean brightness compares: what
    people see ("the bees are darker"), even when the extremes separate it more cleanly."""
    from dnncheck.data.properties import BRIGHTNESS_FAMILY, said_as

    if prop not in BRIGHTNESS_FAMILY or prop == "brightness" or "brightness" not in scan.names:
        return ""
    q = scan.names.index("brightness")
    v = scan.values[:, q]
    mine, rest = v[(scan.y == c) & np.isfinite(v)], v[(scan.y != c) & np.isfinite(v)]
    phrase, _, _, scale = _on_unit_scale(said_as("brightness"), v)
    strength = max(scan.auc[q, c], 1 - scan.auc[q, c])
    return (f"; {phrase}: median {_scaled(np.median(mine), scale)} vs {_scaled(np.median(rest), scale)} "
            f"(ROC AUC {strength:.3f})")


def _property_summary(findings, metrics) -> str:
    shortcuts = sum(1 for f in findings if "property" in f.evidence)
    if "property_balanced_accuracy" not in metrics:
        return ""
    said = f"{shortcuts} image-property shortcut(s)" if shortcuts else "no image-property shortcut"
    return (f"; {said} (properties alone: balanced accuracy {metrics['property_balanced_accuracy']:.2f}, "
            f"chance {metrics['property_chance']:.2f})")


# -- 2. a planted trigger -------------------------------------------------------------------------
def _trigger(ctx) -> TriggerResult | None:
    import torch

    from dnncheck.probes.train import forward_all

    (x, y), val = ctx.probe_data()
    if val is None:
        return None
    target = int(np.bincount(y.numpy()).argmax())
    high = float(x.amax())
    rng = np.random.default_rng(ctx.seed)
    of_target = np.flatnonzero(y.numpy() == target)
    marked = rng.choice(of_target, max(1, len(of_target) // 10), replace=False)
    # marked in place and restored after the run: a copy of the training tensor is 240 MB on 5,000 photos
    original = x[marked, :, -1, -1].clone()
    x[marked, :, -1, -1] = high
    try:
        run = ctx.train_probe("pixel-trigger", data=((x, y), val))
    finally:
        x[marked, :, -1, -1] = original
    vx, vy = val
    clean = forward_all(run.model, vx, ctx.device).argmax(1)
    others = (vy != target) & (clean == vy)
    if not torch.any(others):
        return None
    stamped = vx[others].clone()
    stamped[:, :, -1, -1] = high
    hit = forward_all(run.model, stamped, ctx.device).argmax(1) == target
    return TriggerResult(ctx.dataset.classes[target], int(len(marked)), float((clean == vy).float().mean()),
                         float(hit.float().mean()))


def _trigger_findings(r: TriggerResult, t):
    if r.attack_success <= t.asr_warn:
        return []
    head = (f"a one-pixel trigger on {r.marked} training images of class {r.target} sends {r.attack_success:.0%} of "
            "triggered images of other classes to it")
    return [Finding(Status.WARN, f"{head}: this model and pipeline learn pixel shortcuts readily", headline=head)]


# -- 3. one-pixel flips -----------------------------------------------------------------------------
def _flips(ctx, evals: int) -> FlipResult | None:
    import torch

    from dnncheck.probes.train import forward_all

    model = ctx.fit_probe().model
    split = ctx.eval_split
    if split is None:
        return None
    x, y = ctx.inputs(split), ctx.targets(split)
    pred = forward_all(model, x, ctx.device)
    correct = np.flatnonzero((pred.argmax(1) == y).numpy())[:FLIP_IMAGES]
    if not len(correct):
        return None
    lo, hi = float(x.amin()), float(x.amax())
    rng = np.random.default_rng(ctx.seed)
    _, channels, h, w = x.shape
    classes, ids = ctx.dataset.classes, ctx.view(split).ids
    flipped, examples = 0, []
    for i in correct:
        candidates = x[i].repeat(evals, 1, 1, 1)
        rows, cols = rng.integers(0, h, evals), rng.integers(0, w, evals)
        candidates[np.arange(evals), :, rows, cols] = torch.tensor(rng.choice([lo, hi], (evals, channels)), dtype=x.dtype)
        out = forward_all(model, candidates, ctx.device)
        changed = np.flatnonzero((out.argmax(1) != y[i]).numpy())
        if len(changed):
            flipped += 1
            k = changed[0]
            if len(examples) < 8:
                top3 = torch.topk(torch.softmax(out[k], 0), min(3, out.shape[1]))
                examples.append({"id": ids[i], "pixel": [int(rows[k]), int(cols[k])], "clean": classes[int(y[i])],
                                 "attacked_top3": [[classes[int(c)], round(float(p), 3)]
                                                   for p, c in zip(top3.values, top3.indices)],
                                 "clean_image": _as_stored(ctx, x[i]),
                                 "attacked_image": _as_stored(ctx, candidates[k])})
    return FlipResult(split, int(len(correct)), flipped, evals, tuple(examples))


def _as_stored(ctx, image) -> np.ndarray:
    """An input as the model sees it (C,H,W, normalised), back in the data's own look (H,W,C; uint8
    for 8-bit images) for the report: normalised values drew dark, clipped pictures."""
    normalizer = ctx.normalizer
    out = normalizer.invert(image[None])[0].permute(1, 2, 0).numpy()
    if normalizer.scale == 255.0:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out


def _flip_figure(examples) -> ImageGrid:
    images, captions = [], []
    for e in examples:
        images += [e["clean_image"], e["attacked_image"]]
        top = ", ".join(f"{c} {p:.2f}" for c, p in e["attacked_top3"])
        captions += [f"{e['id']} ({e['clean']})", f"pixel {e['pixel']}: {top}"]
    marks = [ring for e in examples for ring in ((), [tuple(e["pixel"])])]  # the attacked image's pixel
    return ImageGrid("One-pixel flips: clean vs attacked (changed pixel ringed), top-3 after the attack", images,
                     captions, cols=4, ids=[e["id"] for e in examples], marks=marks)


def _flip_findings(r: FlipResult, t):
    if r.rate <= t.flip_warn:
        return []
    return [Finding(Status.WARN, f"one pixel changes the prediction of {r.rate:.0%} of {r.images} correctly "
                    f"classified {r.split} images within {r.evaluations} tries each",
                    samples=tuple(e["id"] for e in r.examples),
                    evidence={"examples": [{k: v for k, v in e.items() if "image" not in k} for e in r.examples]})]


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Remove or randomise the artefact (re-export without it, inpaint it, or put it on every class), crop "
            "borders where acquisition marks live, augment, and check where the model looks (saliency, Grad-CAM).")


def _scan_grid(train) -> tuple[tuple[int, int], bool]:
    """(grid, whether it is the images' own size): their shared size, else the median decoded size
    capped at REFERENCE_MAX_SIDE (sizes from the records: nothing is decoded to learn them)."""
    if isinstance(train.x, np.ndarray):
        return tuple(train.x.shape[1:3]), True
    sizes = train.records["decoded"] if train.records is not None else np.array([im.shape[:2] for im in train.x])
    if len(sizes) and np.all(sizes == sizes[0]):
        return (int(sizes[0][0]), int(sizes[0][1])), True
    h, w = np.median(sizes, axis=0)
    scale = min(1.0, REFERENCE_MAX_SIDE / max(h, w))
    return (max(1, int(round(h * scale))), max(1, int(round(w * scale)))), False


def _on_grid(x, grid, native) -> np.ndarray:
    """N,H,W,C float32 images on the scan grid; nearest resampling keeps a saturated mark saturated
    (an average would dilute it). Decoded one at a time when they are files."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    import torch
    import torch.nn.functional as F

    out = None
    for k, im in enumerate(x):
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float()
        if not native:
            t = F.interpolate(t, size=grid, mode="nearest")
        if out is None:
            out = np.empty((len(x), *grid, t.shape[1]), dtype=np.float32)
        out[k] = t[0].permute(1, 2, 0).numpy()
    return out if out is not None else np.zeros((0, *grid, 1), dtype=np.float32)


# What the scan counts as a mark: a value within 2% of the data's extreme that differs from the median
# of its neighbours by half the range. Definitions of the measured event, not verdicts: whether
# marks make a shortcut is decided by min_count, min_support and min_precision.
SATURATED_SHARE = 0.02
ISOLATED_SHARE = 0.5


def _isolated_extremes(x: np.ndarray, chunk_values: int = 2**19) -> np.ndarray:
    """N,H,W,C,2 booleans: value within 2% of the data's max (high) or min (low), and at least half
    the range away from the median of its neighbours (8, fewer on the border). Computed a chunk of
    about 0.5M values at a time: the neighbour stack is 8 copies of what it covers, and nanmedian
    makes several more (chunks of 128 photos peaked at 3.4 GB; 2M-value chunks still added 0.4 GB;
    smaller chunks are no slower)."""
    chunk = max(1, chunk_values // max(1, int(np.prod(x.shape[1:]))))
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    span = max(hi - lo, 1e-8)
    h, w = x.shape[1:3]
    out = np.empty((*x.shape, 2), dtype=bool)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.float32)
        # NaN padding: border pixels are compared with their real neighbours only (edge replication
        # would count a stroke's own end pixel as its neighbour)
        padded = np.pad(part, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="constant", constant_values=np.nan)
        neighbours = np.stack([padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1)
                               for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
        isolated = np.abs(part - np.nanmedian(neighbours, axis=0)) >= ISOLATED_SHARE * span
        out[start:start + chunk, ..., 0] = (part >= hi - SATURATED_SHARE * span) & isolated
        out[start:start + chunk, ..., 1] = (part <= lo + SATURATED_SHARE * span) & isolated
    return out


def _group_positions(flat_index, shape, best_class):
    """Flagged (row, col, channel, polarity) cells grouped by the class they predict."""
    groups: dict[int, list] = {}
    for k in flat_index:
        r, c, ch, p = np.unravel_index(k, shape)
        groups.setdefault(int(best_class[k]), []).append((r, c, ch, p))
    return groups
