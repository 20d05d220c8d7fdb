"""DNC12 learning-rate: a learning-rate range test and your [train] lr against its suggestion."""

from __future__ import annotations

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, verdict
from dnncheck.errors import ProbeUnavailable


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
        when it is above the range, or below its bottom by more than `low_factor`. A fresh model
        is used, so nothing of the user's model changes.

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
    thresholds = {
        "steps": (100, "steps of the range test"),
        "lr_start": (1e-7, "first learning rate of the test"),
        "lr_end": (10.0, "last learning rate of the test"),
        "fail_factor": (10.0, "fail when lr exceeds the range's top by this factor"),
        "low_factor": (100.0, "warn when lr is below the range's bottom by this factor"),
    }

    def probes(self, ctx) -> dict[str, dict]:
        return {"learning-rate": {"steps": int(self.t["steps"])}}

    def run(self, ctx):
        if not any(p.requires_grad for p in ctx.fresh_model().parameters()):
            return self.skip("the model has no trainable parameters (see overfit)")
        steps = int(self.t["steps"])
        lrs = self.t["lr_start"] * (self.t["lr_end"] / self.t["lr_start"]) ** (np.arange(steps) / max(1, steps - 1))
        try:
            test = ctx.lr_range_test(lrs)
        except ProbeUnavailable as exc:
            return self.without_probe(exc, "the range test could not train this model")
        tried, smooth = np.array(test.lrs), np.array(test.smoothed)
        metrics, findings = self._judge(ctx.user_lr, tried, smooth, test.stopped_by)
        figures = {"range_test": {"lr": test.lrs, "loss": test.losses, "smoothed": test.smoothed}}
        status = verdict(findings)
        summary = findings[0].message.split("; ")[0] if findings else (
            f"lr {ctx.user_lr:g} lies in the suggested range [{metrics['suggested_lr_min']:.2g}, "
            f"{metrics['suggested_lr_max']:.2g}]")
        remedy = "" if not findings else (f"Set [train] lr inside [{metrics.get('suggested_lr_min', 0):.2g}, "
                                          f"{metrics.get('suggested_lr_max', 0):.2g}], with warm-up and decay.")
        return self.result(status, summary, metrics, findings, remedy, figures)

    def _judge(self, lr, tried, smooth, stopped):
        finite = np.isfinite(smooth)
        metrics = {"range_test_steps": int(len(tried)), "range_test_stopped_by": stopped, "user_lr": lr}
        if finite.sum() < 5:
            return metrics, [Finding(Status.WARN, "the range test diverged at once; the loss is unstable at any "
                                     "learning rate tried")]
        t, s = tried[finite], smooth[finite]
        at_min = int(np.argmin(s))
        slope = np.gradient(s[: at_min + 1], np.log(t[: at_min + 1])) if at_min >= 2 else np.array([0.0])
        steep = t[int(np.argmin(slope))] if at_min >= 2 else t[0]
        low, high = float(steep) / 10, float(t[at_min])
        low = min(low, high)
        blew_up = float(tried[-1]) if stopped == "loss exploded" else None
        metrics.update(suggested_lr_min=low, suggested_lr_max=high, lr_steepest=float(steep), lr_at_min_loss=high,
                       lr_loss_exploded=blew_up)
        if (blew_up is not None and lr >= blew_up) or lr > self.t["fail_factor"] * high:
            return metrics, [Finding(Status.FAIL, f"lr {lr:g} is far above the useful range [{low:.2g}, {high:.2g}]"
                                     + (f" (the loss blew up at {blew_up:.2g})" if blew_up else "")
                                     + "; training will diverge or oscillate")]
        if lr > high:
            return metrics, [Finding(Status.WARN, f"lr {lr:g} is above the suggested range [{low:.2g}, {high:.2g}]")]
        if lr < low / self.t["low_factor"]:
            return metrics, [Finding(Status.WARN, f"lr {lr:g} is far below the suggested range [{low:.2g}, {high:.2g}]; "
                                     "training will crawl")]
        return metrics, []
