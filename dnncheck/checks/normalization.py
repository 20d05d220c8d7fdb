"""DNC2 normalization: the tensor entering the model is in a sane range per channel or feature,
its statistics come from train only, and a probe shows what normalising changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnncheck.figures import Lines
from dnncheck.checks.base import (ALL_TASKS, FACTOR, SCALE, Check, Finding, ProbeGap, Range, Status, Verdict,
                                  headline, serious, verdict)
from dnncheck.errors import ProbeNotRun, ProbeUnavailable
MAX_LISTED = 20


class Normalization(Check):
    """Inputs reach the model centred and scaled, with statistics fitted on train only.

    What it checks
        Per channel (images) or feature (tables) of the tensor as it enters the model (after
        resizing and the configured `normalize`): mean, std, min and max. Flags values still in
        0..255, means far from 0 or stds far from 1, features whose scales differ by orders of
        magnitude, constant features, and data whose statistics were fitted on all splits rather
        than train. A probe trains the model twice, on the inputs as fed and normalised
        differently (z-scored with train statistics, or raw when the feed is already z-scored),
        and compares the loss curves and the steps each needs to reach the same loss.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), checklist item 2, "normalise the data": unnormalised inputs
        make the loss surface ill-conditioned, so gradient descent zig-zags and needs far more
        steps (their Fig. 4a-b: the same network on raw and z-scored Boston-housing features).
        Features on different scales dominate the first layer in proportion to their magnitude.
        Statistics must come from the training split alone; fitting them on validation or test
        leaks information about the held-out data into training.

    How it is computed
        Statistics over all training inputs. Fail when any value exceeds `max_abs_value` (raw
        0..255 pixels) or when the largest feature std is `scale_ratio_fail` times the smallest
        non-zero one; warn at `scale_ratio_warn`, for |mean| above `max_abs_mean`, for a std
        outside [`min_std`, `max_std`], and for constant features. Leaked statistics: float data
        used as given whose union of splits has mean 0 and std 1 (or min 0 and max 1) per
        feature to 1e-4 while train alone does not. Probe: the same model, seed and settings on
        the same subsample for the epochs the plan gives the comparison (about 150 steps, at
        least 2 epochs), compared with the same first steps of the shared probe; losses smoothed
        over a twentieth of the run; steps to reach the higher of the two runs' lowest losses.

    How to fix
        Scale images to [0, 1] and z-score per channel with the training split's mean and std
        (torchvision.transforms.Normalize); z-score or min-max table features with statistics
        fitted on train only (sklearn.preprocessing.StandardScaler fitted on train, then applied
        to val and test); drop constant features.
    """

    id = "DNC2"
    slug = "normalization"
    item = 2
    title = "Normalization"
    needs = "data, probe runs (2)"
    tasks = ALL_TASKS
    thresholds = {
        "max_abs_value": (20.0, "fail when an input value exceeds this in magnitude (e.g. raw 0..255 pixels)"),
        "max_abs_mean": (1.0, "warn when a channel/feature mean is further than this from 0"),
        "min_std": (0.1, "warn when a channel/feature std is below this (and not 0)"),
        "max_std": (10.0, "warn when a channel/feature std is above this"),
        "scale_ratio_warn": (10.0, "warn when feature stds differ by this factor"),
        "scale_ratio_fail": (100.0, "fail when feature stds differ by this factor (orders of magnitude)"),
        "slower_factor": (2.0, "the probe warns when the inputs as fed need this many times the steps"),
        "probe": (True, "run the two-run comparison probe"),
    }
    ranges = {
        "max_abs_value": SCALE,
        "max_abs_mean": Range(0.0, 1e12),
        "min_std": Range(0.0, 1e12),
        "max_std": SCALE,
        "scale_ratio_warn": FACTOR,
        "scale_ratio_fail": FACTOR,
        "slower_factor": Range(1.0, 1000.0),
    }
    ordered = (("min_std", "max_std"), ("scale_ratio_warn", "scale_ratio_fail"))

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}, "normalization": {}} if self.t.probe else {}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx) -> "NormalizationMeasurement":
        ds = ctx.dataset
        tensor = ctx.inputs("train")
        dims = (0, 2, 3) if ds.is_image else (0,)
        names = [f"channel {i}" for i in range(tensor.shape[1])] if ds.is_image else list(ds.feature_names)
        setting = ctx.normalize_setting
        all_stats = train_stats = None
        if ctx.normalizer.mode == "none" and len(ds.splits) >= 2:  # data used as given: were splits pooled?
            all_stats, train_stats = _split_stats(ctx)
        curves, gap = None, None
        if self.t.probe:
            try:
                curves = _probe_curves(ctx)
            except ProbeUnavailable as exc:
                gap = ProbeGap.of(exc)
        return NormalizationMeasurement(ds.is_image, tuple(names), _stats(tensor, dims),
                                        setting if isinstance(setting, str) else "given", ctx.normalizer.describe(),
                                        tuple(ds.splits), all_stats, train_stats, curves, gap)

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "NormalizationMeasurement", t) -> Verdict:
        stats = m.stats
        metrics = {"normalize": m.setting, "applied": m.applied,
                   "input_min": round(float(stats["min"].min()), 4), "input_max": round(float(stats["max"].max()), 4),
                   "per_" + ("channel" if m.is_image else "feature"): _per_unit(list(m.unit_names), stats)}
        findings = _range_findings(m, t, metrics)
        findings += _leak_findings(m)
        figures = {}
        if m.curves is not None:
            probe_metrics, probe_findings, figures = _probe_findings(m.curves, t)
            metrics.update(probe_metrics)
            findings += probe_findings
        remedy = _remedy(m.is_image, serious(findings))  # about the inputs: never for a probe that did not finish
        if m.probe_gap is not None:
            findings.append(m.probe_gap.finding("comparison probe not run"))
        return Verdict(verdict(findings), _summary(findings, metrics), tuple(findings), metrics, remedy, figures)


@dataclass(frozen=True)
class ProbeCurves:
    """Per-step training losses of the shared fit run (its first `alternative` steps) and of a run
    normalised the other way (`alternative_mode`: zscore when the feed is not z-scored, else none)."""
    fed_mode: str
    alternative_mode: str
    fed: tuple[float, ...]
    alternative: tuple[float, ...]


@dataclass(frozen=True)
class NormalizationMeasurement:
    is_image: bool
    unit_names: tuple[str, ...]  # channels (images) or features (tables)
    stats: dict  # per unit of the tensor entering the model: mean, std, min, max (float64 arrays)
    setting: str  # data.normalize as configured ("given" for mean/std)
    applied: dict  # the normaliser as fitted (Normalizer.describe)
    splits: tuple[str, ...]
    all_stats: dict | None = None  # data used as given: stats over every split together...
    train_stats: dict | None = None  # ...and over train alone
    curves: ProbeCurves | None = None
    probe_gap: ProbeGap | None = None


def _probe_curves(ctx) -> ProbeCurves:
    from dnncheck.data.dataset import integer_scale

    ds = ctx.dataset
    fed_mode = ctx.normalizer.mode
    other = "none" if fed_mode == "zscore" else "zscore"
    scale = integer_scale(ds.splits["train"].x) if ds.is_image else None
    fed = ctx.fit_probe()
    if "normalization" in ctx.probe_runner.plan.not_run:  # say so before building its tensors
        raise ProbeNotRun("normalization")
    alt = ctx.train_probe("normalization", data=_renormalised(ctx, other, scale))
    return ProbeCurves(fed_mode, other, tuple(fed.step_loss[: alt.steps]), tuple(alt.step_loss))


def _renormalised(ctx, other: str, scale):
    """The probe's (train, val) tensors normalised the `other` way, made from the tensors the model
    is fed (the configured normaliser inverted, then the other applied, in one copy per split): at
    224 px a raw view beside its normalised copies would cost 256 MB more per split. The other
    normaliser is fitted on the whole training view, as the configured one was."""
    from dnncheck.probes.inputs import fit_normalizer, float32_copy

    fed_norm, ds = ctx.normalizer, ctx.dataset
    tr, vi = ctx.probe_positions("normalization")
    raw_train = fed_norm.invert(ctx.inputs("train"))  # a copy: the fed tensor is shared with the other checks
    alternative = fit_normalizer(other, raw_train, scale, ds.is_image)
    picked = raw_train if len(tr) == len(raw_train) else raw_train[tr]
    del raw_train
    train = (alternative.apply_inplace(picked), ctx.targets("train")[tr])
    val = None
    if ctx.eval_split is not None:
        x = ctx.inputs(ctx.eval_split)
        x = float32_copy(x) if len(vi) == len(x) else x[vi].float()
        val = (alternative.apply_inplace(fed_norm.invert(x, inplace=True)), ctx.targets(ctx.eval_split)[vi])
    return train, val


def _range_findings(m: NormalizationMeasurement, t, metrics) -> list[Finding]:
    stats, names, unit = m.stats, m.unit_names, "channel" if m.is_image else "feature"
    findings = []
    top = float(np.nanmax(np.abs(np.concatenate([stats["min"], stats["max"]]))))
    if top > t.max_abs_value:
        what = "pixel values still in 0..255" if m.is_image and stats["max"].max() <= 255 and \
            stats["min"].min() >= 0 else f"input values up to {top:.4g}"
        head = f"{what} reach the model (mean {stats['mean'].mean():.3g}, std {stats['std'].mean():.3g})"
        findings.append(Finding(Status.FAIL, f"{head}: scale and z-score them with train statistics",
                                evidence={"max_abs_value": top}, headline=head))
    std = stats["std"]
    constant = [n for n, s in zip(names, std) if s == 0]
    if constant:
        head = f"{len(constant)} constant {unit}(s) on train"
        findings.append(Finding(Status.WARN, f"{head}: {', '.join(constant[:MAX_LISTED])}; they carry no information",
                                evidence={"constant": constant}, headline=head))
    live = std[std > 0]
    if not m.is_image and len(live) > 1:
        ratio = float(live.max() / live.min())
        metrics["feature_scale_ratio"] = round(ratio, 2)
        if ratio >= t.scale_ratio_warn:
            big, small = names[int(np.argmax(np.where(std > 0, std, -np.inf)))], \
                names[int(np.argmin(np.where(std > 0, std, np.inf)))]
            severity = Status.FAIL if ratio >= t.scale_ratio_fail else Status.WARN
            head = (f"feature scales differ by a factor of {ratio:.3g} (std of {big} {std.max():.3g} vs {small} "
                    f"{live.min():.3g})")
            findings.append(Finding(severity, f"{head}: z-score or min-max them with train statistics",
                                    evidence={"largest": big, "smallest": small}, headline=head))
    if not any(f.severity is Status.FAIL for f in findings):
        off_mean = [n for n, mean in zip(names, stats["mean"]) if abs(mean) > t.max_abs_mean]
        off_std = [n for n, s in zip(names, std) if s > 0 and not t.min_std <= s <= t.max_std]
        if off_mean or off_std:
            findings.append(Finding(Status.WARN, f"inputs are not centred and scaled: {len(off_mean)} with |mean| > "
                                    f"{t.max_abs_mean:g}, {len(off_std)} with std outside [{t.min_std:g}, {t.max_std:g}]",
                                    evidence={"off_mean": off_mean[:MAX_LISTED], "off_std": off_std[:MAX_LISTED]},
                                    headline="inputs are not centred and scaled"))
    return findings


# Tolerances for "exactly standardised": what a scaler fitted on these very values leaves (float
# round-off), not a matter of taste, so not thresholds.
EXACT_MEAN_TOL = 1e-4
EXACT_STD_TOL = 1e-3


def _leak_findings(m: NormalizationMeasurement) -> list[Finding]:
    """Float data used as given that was standardised on all splits together, not on train."""
    if m.all_stats is None or m.train_stats is None:
        return []
    pooled, train = m.all_stats, m.train_stats

    def zscored(s):
        return np.all(np.abs(s["mean"]) < EXACT_MEAN_TOL) and np.all(np.abs(s["std"] - 1) < EXACT_STD_TOL)

    def minmaxed(s):
        return np.all(np.abs(s["min"]) < EXACT_MEAN_TOL) and np.all(np.abs(s["max"] - 1) < EXACT_MEAN_TOL)

    if (zscored(pooled) and not zscored(train)) or (minmaxed(pooled) and not minmaxed(train)):
        kind = "z-scored" if zscored(pooled) and not zscored(train) else "min-max scaled"
        head = f"the data was {kind} with statistics of all splits together (exactly standard over {', '.join(m.splits)}, not over train alone)"
        return [Finding(Status.WARN, f"{head}: validation and test leaked into the preprocessing; fit the scaler on "
                        "train only", evidence={"train_mean": train["mean"][:MAX_LISTED].round(4).tolist(),
                                                "all_mean": pooled["mean"][:MAX_LISTED].round(6).tolist()},
                        headline=head)]
    return []


def _probe_findings(c: ProbeCurves, t):
    label_alt = "raw (not normalised)" if c.alternative_mode == "none" else "z-scored with train statistics"
    fed_steps, alt_steps, target = _steps_to_common_loss(c.fed, c.alternative)
    metrics = {"probe_target_loss": _round(target), "probe_steps_as_fed": fed_steps,
               "probe_steps_alternative": alt_steps, "probe_alternative": label_alt,
               "probe_steps_compared": len(c.alternative), "probe_final_loss_as_fed": _round(_tail(c.fed)),
               "probe_final_loss_alternative": _round(_tail(c.alternative))}
    figures = {"loss_curves": Lines("Training loss per step: inputs as fed vs normalised the other way",
                                    {"as fed (" + c.fed_mode + ")": list(c.fed), label_alt: list(c.alternative)},
                                    "step", "loss", logy=True)}
    out = []
    if c.alternative_mode == "zscore":
        slower = _ratio(fed_steps, alt_steps)
        metrics["probe_slowdown_as_fed"] = slower
        if slower is None or slower >= t.slower_factor:
            how = "never reached" if fed_steps is None else f"needed {fed_steps} steps for"
            out.append(Finding(Status.WARN, f"as fed, the probe {how} loss {target:.3g}; z-scored inputs reach it in "
                               f"{alt_steps} steps", evidence={"steps_as_fed": fed_steps, "steps_zscored": alt_steps}))
    else:
        metrics["probe_speedup_from_normalising"] = _ratio(alt_steps, fed_steps)
    return metrics, out, figures


def _remedy(is_image: bool, inputs_at_fault: bool) -> str:
    """How to normalise, only when the measured inputs (or the probe comparing them) are at fault."""
    if not inputs_at_fault:
        return ""
    if is_image:
        return ("Scale pixels to [0, 1] and z-score per channel with the training split's statistics "
                "(transforms.ToTensor + transforms.Normalize(mean, std)); set [data] normalize to what your "
                "pipeline does so the audit sees the same tensor.")
    return ("Fit sklearn.preprocessing.StandardScaler (or MinMaxScaler) on the training split only and apply it "
            "to val and test; drop constant features.")


def _split_stats(ctx) -> tuple[dict, dict]:
    """Per-channel (feature) mean, std, min and max over all splits together and over train alone:
    from the records for images (every sample, as stored), from the tensors for tables."""
    ds = ctx.dataset
    if ds.is_image:
        from dnncheck.data.records import channel_summary
        from dnncheck.data.store import light_fields

        every = np.concatenate([light_fields(part.records) for part in ds.splits.values()])
        return channel_summary(every, ds.channels), channel_summary(ds.splits["train"].records, ds.channels)
    import torch

    raw = {name: ctx.raw_inputs(name) for name in ds.splits}
    return _stats(torch.cat(list(raw.values())), (0,)), _stats(raw["train"], (0,))


STATS_CHUNK_VALUES = 1 << 21  # values per chunk: float64 temporaries of ~16 MB, whatever N is


def _stats(tensor, dims) -> dict[str, np.ndarray]:
    """Per-unit (dim 1) mean, population std, min and max over the finite values, in float64.
    Two passes over chunks of samples (sum, then squared deviations), so a 5,000-photo tensor
    never gets float64 copies of itself (that was 2 GB at 64x64)."""
    import torch

    per_sample = max(1, tensor[:1].numel())
    chunk = max(1, STATS_CHUNK_VALUES // per_sample)
    shape = [1] * tensor.ndim
    shape[1] = -1
    units = tensor.shape[1]
    total, count = torch.zeros(units, dtype=torch.float64), torch.zeros(units, dtype=torch.float64)
    big = torch.finfo(torch.float64).max
    low, high = torch.full((units,), big, dtype=torch.float64), torch.full((units,), -big, dtype=torch.float64)
    for start in range(0, len(tensor), chunk):
        t = tensor[start:start + chunk].double()
        finite = torch.isfinite(t)
        total += torch.where(finite, t, 0.0).sum(dim=dims)
        count += finite.sum(dim=dims)
        low = torch.minimum(low, torch.where(finite, t, big).amin(dim=dims))
        high = torch.maximum(high, torch.where(finite, t, -big).amax(dim=dims))
    mean = total / count.clamp(min=1)
    squares = torch.zeros(units, dtype=torch.float64)
    for start in range(0, len(tensor), chunk):
        t = tensor[start:start + chunk].double()
        squares += torch.where(torch.isfinite(t), (t - mean.view(shape)) ** 2, 0.0).sum(dim=dims)
    std = (squares / count.clamp(min=1)).sqrt()
    return {"mean": mean.numpy(), "std": std.numpy(), "min": low.numpy(), "max": high.numpy()}


def _per_unit(names, stats, limit: int = 64) -> dict:
    return {n: {k: round(float(stats[k][i]), 4) for k in ("mean", "std", "min", "max")}
            for i, n in enumerate(names[:limit])}


def _smooth(values, window):
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def _steps_to_common_loss(a, b):
    """Steps each run needs to reach the higher of their lowest (smoothed) losses; None if never."""
    window = max(1, min(len(a), len(b)) // 20)
    sa, sb = _smooth(a, window), _smooth(b, window)
    sa, sb = sa[np.isfinite(sa)], sb[np.isfinite(sb)]
    if not len(sa) or not len(sb):
        return None, None, float("nan")
    target = max(sa.min(), sb.min())

    def reach(s):
        hit = np.flatnonzero(s <= target)
        return int(hit[0]) + window if len(hit) else None

    return reach(sa), reach(sb), float(target)


def _tail(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.mean(v[-max(1, len(v) // 10):])) if len(v) else float("nan")


def _ratio(a, b):
    if a is None or not b:
        return None
    return round(a / b, 2)


def _round(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def _summary(findings, metrics) -> str:
    if serious(findings):
        return headline(findings)
    text = f"inputs in [{metrics['input_min']:.3g}, {metrics['input_max']:.3g}], centred and scaled ({metrics['applied']['mode']})"
    if metrics.get("probe_steps_as_fed") and metrics.get("probe_alternative"):
        raw = metrics.get("probe_steps_alternative")
        text += (f"; the probe reached loss {metrics['probe_target_loss']:.3g} in {metrics['probe_steps_as_fed']} steps "
                 f"as fed, {raw if raw is not None else 'never'} {'steps ' if raw is not None else ''}"
                 f"{metrics['probe_alternative'].split(' (')[0]}")
    return text
