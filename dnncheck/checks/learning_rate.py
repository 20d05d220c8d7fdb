"""DNC12 learning-rate: a learning-rate range test and your [train] lr against its suggestion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnncheck.figures import Lines
from dnncheck.checks.base import (ALL_TASKS, FACTOR, SHARE, Check, Finding, ProbeGap, Range, Skipped, Status,
                                  Verdict, inconclusive, probe_missing, serious, verdict)
from dnncheck.errors import ProbeUnavailable


NO_PROBE = "the range test could not train this model"


class LearningRate(Check):
    """Your learning rate against a range test.

    What it checks
        A learning-rate range test (Smith, "Cyclical learning rates", 2017): a fresh copy of the
        model is trained with your optimizer while the learning rate grows exponentially each
        step; the loss falls, bottoms and explodes. The steepest descent and the minimum give a
        suggested range; your `[train] lr` is compared with it.

    Why it matters
        The course notes: the learning rate is the most important hyperparameter; too high and
        the loss oscillates or diverges, too low and training crawls and stalls in poor regions.
        A range test finds the useful band in seconds.

    How it is computed
        `steps` steps from `lr_start` to `lr_end` on batches of the probe's
        training data; loss smoothed with an exponential moving average (0.9, bias-corrected);
        the test stops when the smoothed loss exceeds 4 times its minimum or is non-finite.
        Suggested range: from the learning rate of steepest descent of the smoothed loss (per
        log-lr) divided by 10, to the learning rate at the minimum. Fail when your lr is at or
        beyond where the loss blew up (or above `fail_factor` times the top of the range); warn
        when it is above the range, or below its bottom by more than `low_factor`. Above the top
        means past the curve's flat bottom: at your lr the smoothed loss has climbed back at least
        `top_rise` (10%) of its fall from the start to the minimum. Just past the minimum's rate the
        curve is flat, and the minimum's position moves by steps of the sweep (100 steps over eight
        decades: 20% each) and with the batches' noise: torchvision resnet18 at 224 px on 208 ant/bee
        photos put it at 7.6e-4 on a GPU, and Adam's customary 1e-3 warned there although the fit
        probe at 1e-3 learned (train accuracy 0.87). A fresh model is used, so nothing of the
        user's model changes.

    How to fix
        Set the learning rate inside the suggested range (near its upper part for SGD with
        momentum, or with a warm-up and decay schedule); re-run the range test after changing
        the batch size or optimizer.
    """

    id = "DNC12"
    slug = "learning-rate"
    item = None
    title = "Learning-rate range"
    needs = "data, model, one probe run"
    tasks = ALL_TASKS
    thresholds = {
        "steps": (100, "steps of the range test"),
        "lr_start": (1e-7, "first learning rate of the test"),
        "lr_end": (10.0, "last learning rate of the test"),
        "fail_factor": (10.0, "fail when lr exceeds the range's top by this factor"),
        "top_rise": (0.1, "above the range's top, warn once the smoothed loss at your lr has climbed back this "
                          "share of its fall (less: the curve's flat bottom, within the test's resolution)"),
        "low_factor": (100.0, "warn when lr is below the range's bottom by this factor"),
        "min_range_fall": (0.9, "the lowest smoothed loss must fall below this share of the first, else no lr helps"),
        "fit_learning_drop": (0.2, "the fit probe's training loss falling by this share shows the user's lr learns"),
    }
    ranges = {
        "steps": Range(10, 10_000),
        "lr_start": Range(0.0, 1000.0, low_open=True),
        "lr_end": Range(0.0, 1e6, low_open=True),
        "fail_factor": FACTOR,
        "top_rise": Range(0.0, 100.0),
        "low_factor": FACTOR,
        "min_range_fall": SHARE,
        "fit_learning_drop": SHARE,
    }
    ordered = (("lr_start", "lr_end"),)

    def probes(self, ctx) -> dict[str, dict]:
        # the one-batch test (shared with overfit) is the second opinion before "no lr learns"
        return {"learning-rate": {"steps": self.t.steps},
                "overfit-batch": _overfit(ctx).one_batch_request(ctx.dataset.task)}

    def measure(self, ctx):
        if not any(p.requires_grad for p in ctx.fresh_model().parameters()):
            return Skipped("the model has no trainable parameters (see overfit)")
        steps = ctx.planned("learning-rate", steps=self.t.steps).steps  # fewer in a compact plan
        lrs = self.t.lr_start * (self.t.lr_end / self.t.lr_start) ** (np.arange(steps) / max(1, steps - 1))
        try:
            test = ctx.lr_range_test(lrs)
        except ProbeUnavailable as exc:
            return probe_missing(exc, NO_PROBE, lambda gap: LearningRateMeasurement(ctx.user_lr, (), (), (), "budget", gap))
        fit = ctx.fit_probe_if_planned()  # a second opinion at the user's lr, never a training of its own
        fit_losses = () if fit is None else tuple(
            [fit.initial_loss] + [e["train_loss"] for e in fit.epochs if e.get("train_loss") is not None])
        return LearningRateMeasurement(ctx.user_lr, tuple(test.lrs), tuple(test.losses), tuple(test.smoothed),
                                       test.stopped_by, compact=ctx.planned("learning-rate").compact,
                                       fit_losses=fit_losses, one_batch_losses=_one_batch_losses(ctx),
                                       one_batch_target=_overfit(ctx).t.target_ratio,
                                       optimizer=ctx.training_recipe()["optimizer"])

    @classmethod
    def judge(cls, m: "LearningRateMeasurement", t) -> Verdict:
        if m.probe_gap is not None:
            return inconclusive(m.probe_gap, NO_PROBE)
        metrics, findings = _range_findings(m, t)
        lr = m.user_lr
        band = (("suggested range", metrics["suggested_lr_min"], metrics["suggested_lr_max"])
                if "suggested_lr_min" in metrics and "suggested_lr_max" in metrics else None)
        figures = {"range_test": Lines("Learning-rate range test", {"loss (smoothed)": list(m.smoothed),
                                                                     "loss": list(m.losses)},
                                       "learning rate", "loss", x=list(m.lrs), logx=True,
                                       marks={f"your lr {lr:g}": lr}, band=band)}
        summary = findings[0].short if findings else _where_lr_sits(lr, metrics, t) + _for(m)
        remedy = ""
        if serious(findings):  # a range to set only when the test found one
            remedy = (f"Set [train] lr inside [{metrics['suggested_lr_min']:.2g}, {metrics['suggested_lr_max']:.2g}]{_for(m)}, "
                      "with warm-up and decay." if band else
                      "Run the one-batch test (overfit) and gradient-health: when no learning rate helps, look at "
                      "the model's wiring, its outputs and the loss before the learning rate.")
        return Verdict(verdict(findings), summary, tuple(findings), metrics, remedy, figures)


def _where_lr_sits(lr: float, metrics: dict, t) -> str:
    """The summary of a range test that found nothing to say: where the lr sits against the range (an
    lr below it, but within low_factor, was called "in the range")."""
    lo, hi = metrics["suggested_lr_min"], metrics["suggested_lr_max"]
    band = f"the suggested range [{lo:.2g}, {hi:.2g}]"
    if lr < lo:
        return f"lr {lr:g} sits {lo / lr:.1f}x below {band}, within the {t.low_factor:g}x tolerated"
    if lr > hi:
        return f"lr {lr:g} sits {lr / hi:.1f}x above {band}, on the curve's flat bottom"
    return f"lr {lr:g} lies in {band}"


@dataclass(frozen=True)
class LearningRateMeasurement:
    user_lr: float
    lrs: tuple[float, ...]  # the learning rates tried, in order (the test may end early: see stopped_by)
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]  # bias-corrected exponential moving average of the loss
    stopped_by: str  # "plan" (every step), "loss exploded", or "budget"
    probe_gap: ProbeGap | None = None
    compact: bool = False  # the compact plan's range test (30 steps on 32 samples): its band is rough
    fit_losses: tuple = ()  # the fit probe's training loss at the user's lr: at init, then per epoch (if it ran)
    one_batch_losses: tuple = ()  # the one-batch test's losses (overfit's probe), if it ran
    one_batch_target: float = 0.05  # ...and the share of its first loss it must reach (overfit's target_ratio)
    optimizer: str = ""  # the user's optimizer as the probes build it, e.g. "Adadelta(rho=0.9)"


def _overfit(ctx):
    """Overfit as configured: the one-batch test is asked for with overfit's settings, so the context
    runs it once for both checks."""
    from dnncheck.checks import lookup

    overfit = lookup("overfit", "overfit")
    configured = next((v for k, v in ctx.cfg.thresholds.items() if lookup(k, k) is overfit), {})
    return overfit(**configured)


def _one_batch_losses(ctx) -> tuple:
    try:
        return tuple(_overfit(ctx).fit_one_batch(ctx).losses)
    except ProbeUnavailable:  # not planned, cut short or cannot train: no second opinion
        return ()


def _for(m) -> str:
    return f" for {m.optimizer}" if m.optimizer else ""


# Smith (2017): the useful range starts about a decade below the steepest descent. Part of the
# method, not a matter of taste: the tunable edges are fail_factor and low_factor.
STEEPEST_DECADES = 10.0
MIN_FINITE_POINTS = 5  # fewer finite smoothed losses than this: there is no curve to read


def _fell(losses, drop: float) -> bool:
    return len(losses) >= 2 and all(np.isfinite(losses)) and losses[0] > 0 and losses[-1] <= (1 - drop) * losses[0]


def _fit_learned(m, t) -> str:
    """What shows that training at the user's lr learns: the fit probe's training loss falling by
    `fit_learning_drop`, or the one-batch test falling as far as overfit requires of it ('' if neither)."""
    if _fell(m.fit_losses, t.fit_learning_drop):
        return f"the fit probe's training loss {m.fit_losses[0]:.3g} -> {m.fit_losses[-1]:.3g}"
    if _fell(m.one_batch_losses, 1 - m.one_batch_target):
        return f"the one-batch test's loss {m.one_batch_losses[0]:.3g} -> {m.one_batch_losses[-1]:.3g}"
    return ""


def _rise_at(lr: float, lrs: np.ndarray, s: np.ndarray, at_min: int) -> float:
    """The share of the range test's fall (start to minimum) that its smoothed loss has climbed back
    at `lr`, read off the curve between the rates tried (log scale): 0 at the minimum, 1 back at the
    starting loss; the last value tried for a rate beyond the sweep."""
    fall = s[0] - s[at_min]
    if fall <= 0:
        return float("inf")
    level = np.interp(np.log(lr), np.log(lrs[at_min:]), s[at_min:])
    return float((level - s[at_min]) / fall)


def _range_findings(m: LearningRateMeasurement, t):
    tried, smooth, lr = np.array(m.lrs), np.array(m.smoothed, dtype=float), m.user_lr
    finite = np.isfinite(smooth)
    metrics = {"range_test_steps": int(len(tried)), "range_test_stopped_by": m.stopped_by, "user_lr": lr}
    if finite.sum() < MIN_FINITE_POINTS:
        return metrics, [Finding(Status.WARN, "the range test diverged at once; the loss is unstable at any "
                                 "learning rate tried", headline="the range test diverged at once")]
    lrs, s = tried[finite], smooth[finite]
    at_min = int(np.argmin(s))
    metrics["range_test_lowest_to_first"] = round(float(s[at_min] / s[0]), 4) if s[0] > 0 else None
    if s[0] > 0 and s[at_min] > t.min_range_fall * s[0]:
        # no learning rate helps: the model (or its wiring) is the suspect, not the learning rate
        head = (f"no learning rate from {lrs[0]:.2g} to {lrs[-1]:.2g} makes this model learn (the smoothed loss never "
                f"falls below {s[at_min] / s[0]:.0%} of its start)")
        learned = _fit_learned(m, t)
        if learned:
            # a sweep of a few steps per decade is too fast for some models (a ViT from scratch, a
            # costly model's compact test): training at the user's rate is the stronger evidence
            note = (f"the range test found no learning rate over its {len(tried)} steps from {lrs[0]:.2g} to "
                    f"{lrs[-1]:.2g} (the smoothed loss never fell below {s[at_min] / s[0]:.0%} of its start), but "
                    f"training at your lr {lr:g} learns ({learned}): the sweep is too short for this model to show "
                    "its range, your lr is not in question")
            return metrics, [Finding(Status.INFO, note)]
        agrees = (f"; the one-batch test agrees (its loss {m.one_batch_losses[0]:.3g} -> {m.one_batch_losses[-1]:.3g})"
                  if len(m.one_batch_losses) >= 2 else "")
        return metrics, [Finding(Status.WARN, f"{head}{agrees}; the learning rate is not the problem: see overfit "
                                 "(one-batch test) and gradient-health", headline=head)]
    slope = np.gradient(s[: at_min + 1], np.log(lrs[: at_min + 1])) if at_min >= 2 else np.array([0.0])
    steep = lrs[int(np.argmin(slope))] if at_min >= 2 else lrs[0]
    low, high = float(steep) / STEEPEST_DECADES, float(lrs[at_min])
    low = min(low, high)
    blew_up = float(tried[-1]) if m.stopped_by == "loss exploded" else None
    metrics.update(suggested_lr_min=low, suggested_lr_max=high, lr_steepest=float(steep), lr_at_min_loss=high,
                   lr_loss_exploded=blew_up)
    # a compact test's band (30 steps on 32 samples) is rough: outside it is advice; at or beyond
    # the point where the loss blew up (above its start, in a compact test) is decisive at any length
    mild = Status.INFO if m.compact else Status.WARN
    rough = " (the compact range test: 30 steps on 32 samples, a rough band)" if m.compact else ""
    diverges = blew_up is not None and lr >= blew_up
    if diverges or lr > t.fail_factor * high:
        head = f"lr {lr:g} is far above the useful range [{low:.2g}, {high:.2g}]" + (
            f" (the loss blew up at {blew_up:.2g})" if blew_up else "") + ("" if diverges else rough)
        return metrics, [Finding(Status.FAIL if diverges or not m.compact else mild,
                                 f"{head}; training will diverge or oscillate", headline=head)]
    if lr > high:
        rise = _rise_at(lr, lrs, s, at_min)
        metrics["loss_rise_at_user_lr"] = round(rise, 4)
        if rise < t.top_rise:
            return metrics, [Finding(Status.INFO, f"lr {lr:g} is just above the range test's minimum ({high:.2g}), "
                                     f"where its smoothed loss has climbed back {rise:.0%} of its fall: the curve's "
                                     "flat bottom, within the test's resolution",
                                     headline=f"lr {lr:g} is at the range test's flat bottom")]
        return metrics, [Finding(mild, f"lr {lr:g} is above the suggested range [{low:.2g}, {high:.2g}]{rough}: "
                                 f"the range test's smoothed loss there has climbed back {rise:.0%} of its fall",
                                 headline=f"lr {lr:g} is above the suggested range [{low:.2g}, {high:.2g}]{rough}")]
    if lr < low / t.low_factor:
        head = f"lr {lr:g} is far below the suggested range [{low:.2g}, {high:.2g}]{rough}"
        return metrics, [Finding(mild, f"{head}; training will crawl", headline=head)]
    return metrics, []
