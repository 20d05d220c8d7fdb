"""DNC8 overfit: the model can fit one small batch, how its train/validation gap opens, how readily
it memorises shuffled labels, and where its parameters are."""

from __future__ import annotations

import math

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, headline, probe_finding, verdict
from dnncheck.errors import ProbeCutShort, ProbeUnavailable

MAX_LISTED_LAYERS = 20


class Overfit(Check):
    """Capacity and wiring: overfit one batch, watch the gap, try random labels, count parameters.

    What it checks
        (1) Whether the model can drive the loss on one small batch close to zero: if it cannot,
        something is wired wrong (frozen or detached parameters, a loss that does not reach the
        outputs) or capacity is too low. (2) From the shared probe run: the final train/validation
        accuracy gap and the epoch of the best validation loss with how far it rose since (early
        stopping advice). (3) Shuffled-label memorisation (Zhang et al., ICLR 2017): how well the
        model fits randomly permuted labels in the same number of epochs as the true ones. (4) Where the
        parameters are: per-layer counts, parameters per training sample, oversized dense layers.

    Why it matters
        Ponti et al. (SIBGRAPI 2021), section II-D and their tips: "overfit a single batch" is the
        quickest wiring test; networks have capacity to memorise even random labels, so training
        accuracy says nothing about generalisation; two 2048-wide fully connected layers hold 4M
        parameters by themselves, far more than small datasets can constrain.

    How it is computed
        One batch of `batch_size` training samples, a fresh model, your optimizer and learning
        rate, up to `max_steps` steps: pass as soon as the loss falls below `target_ratio` of its
        initial value. Shuffled labels: a fresh model trained like the shared probe on permuted
        training labels for the epochs the plan gives it (about 100 steps, at least 2 epochs);
        memorisation ratio = its training accuracy over the true-label probe's at the same epoch. Warn when parameters per training sample
        exceed `params_per_sample_warn`, a dense layer exceeds `dense_layer_warn` parameters, the
        memorisation ratio exceeds `memorisation_warn`, or the accuracy gap exceeds `gap_warn`.

    How to fix
        If one batch cannot be fitted: check requires_grad, .detach() calls, that the loss uses the
        model's outputs, and the learning rate. If capacity dwarfs the data: shrink dense layers
        (global average pooling instead of flatten + wide FC), add regularisation and augmentation,
        use a pretrained backbone, and stop at the best validation epoch.
    """

    id = "DNC8"
    slug = "overfit"
    item = None
    title = "Overfit probe"
    needs = "data, model, probe runs (3)"
    thresholds = {
        "batch_size": (32, "samples in the one-batch test"),
        "max_steps": (200, "steps allowed to fit the batch"),
        "target_ratio": (0.05, "the batch loss must fall below this fraction of its initial value"),
        "params_per_sample_warn": (1000, "warn above this many parameters per training sample"),
        "dense_layer_warn": (1_000_000, "warn about a linear layer with more parameters than this"),
        "memorisation_warn": (0.9, "warn when shuffled labels are fitted this well relative to true ones"),
        "gap_warn": (0.15, "warn when train accuracy exceeds validation accuracy by this"),
        "shuffled": (True, "run the shuffled-label memorisation probe"),
    }

    def probes(self, ctx) -> dict[str, dict]:
        wanted = {"overfit-batch": {"batch": int(self.t["batch_size"]), "max_steps": int(self.t["max_steps"])}}
        if ctx.dataset.task == "classification":
            wanted["fit"] = {}
            if self.t["shuffled"]:
                wanted["overfit-shuffled"] = {}
        return wanted

    def run(self, ctx):
        findings, metrics = [], {}
        batch_metrics, batch_findings = self._one_batch(ctx)
        metrics.update(batch_metrics)
        findings += batch_findings
        param_metrics, param_findings, layers = self._parameters(ctx)
        metrics.update(param_metrics)
        findings += param_findings
        figures = {"layers": layers}
        if ctx.dataset.task == "classification":
            try:
                fit = ctx.fit_probe()
            except ProbeUnavailable as exc:
                findings.append(probe_finding(exc, "gap and memorisation not measured"))
                fit = None
            if fit is not None:
                gap_metrics, gap_findings = self._gap(fit)
                metrics.update(gap_metrics)
                findings += gap_findings
                figures["curves"] = fit.curves()
                if self.t["shuffled"] and not any(f.severity is Status.FAIL for f in batch_findings):
                    mem_metrics, mem_findings, shuffled_curve = self._memorisation(ctx, fit)
                    metrics.update(mem_metrics)
                    findings += mem_findings
                    figures["shuffled_train_acc"] = shuffled_curve
        status = verdict(findings)
        return self.result(status, _summary(metrics, findings), metrics, findings, self._remedy(findings), figures)

    def _one_batch(self, ctx):
        model = ctx.fresh_model()
        params = [p for p in model.parameters() if p.requires_grad]
        metrics = {"trainable_parameters": int(sum(p.numel() for p in params))}
        if not params:
            return metrics, [Finding(Status.FAIL, "cannot overfit one batch: every parameter is frozen "
                                     "(requires_grad=False); nothing can learn")]
        try:
            run = ctx.one_batch_fit(int(self.t["batch_size"]), int(self.t["max_steps"]), self.t["target_ratio"])
        except ProbeCutShort as exc:
            return metrics, [probe_finding(exc, "one-batch test")]
        except ProbeUnavailable as exc:
            return metrics, [probe_finding(exc, "cannot overfit one batch: the model cannot train", Status.FAIL)]
        losses = run.losses
        n = ctx.planned("overfit-batch").batch_size
        first, best = losses[0], min(losses)
        metrics.update(batch_samples=n, batch_steps=len(losses), batch_initial_loss=round(first, 5),
                       batch_final_loss=round(losses[-1], 5), batch_best_loss=round(best, 5))
        if run.stopped_by == "target reached":
            return metrics, []
        if not run.reached_params:
            why = "the loss does not reach the parameters (outputs detached, or computed without the model)"
        elif not math.isfinite(losses[-1]):
            why = "the loss became non-finite: the learning rate is too high"
        else:
            why = "too little capacity, or a learning rate too small or too large for this optimizer"
        return metrics, [Finding(Status.FAIL, f"cannot overfit one batch of {n}: loss {first:.4g} -> best {best:.4g} in "
                                 f"{len(losses)} steps; {why}", evidence={"losses": losses[:: max(1, len(losses) // 50)]})]

    def _parameters(self, ctx):
        from torch import nn

        model = ctx.fresh_model()
        n_train = len(ctx.dataset.splits["train"])
        layers = []
        for name, module in model.named_modules():
            own = sum(p.numel() for p in module.parameters(recurse=False))
            if own:
                layers.append({"layer": name or type(module).__name__, "type": type(module).__name__, "parameters": own})
        total = sum(p.numel() for p in model.parameters())
        per_sample = total / max(1, n_train)
        metrics = {"parameters": int(total), "train_samples": n_train, "parameters_per_sample": round(per_sample, 1)}
        findings = []
        big = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.in_features * m.out_features > self.t["dense_layer_warn"]]
        if big:
            findings.append(Finding(Status.WARN, "oversized dense layer(s): " + ", ".join(
                f"{name} {m.in_features}x{m.out_features} ({m.in_features * m.out_features / 1e6:.1f}M)" for name, m in big)
                + "; replace flatten + wide FC with pooling or narrower layers",
                evidence={"layers": [name for name, _ in big]}))
        if per_sample > self.t["params_per_sample_warn"]:
            top = sorted(layers, key=lambda d: -d["parameters"])[:3]
            findings.append(Finding(Status.WARN, f"{total:,} parameters for {n_train} training samples ({per_sample:,.0f} per "
                                    "sample): capacity far beyond what the data constrains; largest: " +
                                    ", ".join(f"{d['layer']} ({d['parameters']:,})" for d in top)))
        return metrics, findings, layers[:MAX_LISTED_LAYERS * 5]

    def _gap(self, fit):
        epochs = fit.epochs
        metrics = {}
        findings = []
        val_loss = [e.get("val_loss") for e in epochs if e.get("val_loss") is not None]
        if val_loss:
            best = int(np.nanargmin(val_loss))
            metrics.update(best_val_epoch=best + 1, val_loss_rise_since_best=round(
                float((val_loss[-1] - val_loss[best]) / max(abs(val_loss[best]), 1e-12)), 4))
        last = epochs[-1] if epochs else {}
        if last.get("train_acc") is not None and last.get("val_acc") is not None:
            gap = last["train_acc"] - last["val_acc"]
            metrics.update(train_accuracy=round(last["train_acc"], 4), val_accuracy=round(last["val_acc"], 4),
                           accuracy_gap=round(gap, 4))
            if gap > self.t["gap_warn"]:
                findings.append(Finding(Status.WARN, f"train accuracy {last['train_acc']:.2f} vs validation "
                                        f"{last['val_acc']:.2f} after {len(epochs)} epochs: overfitting; best validation "
                                        f"loss at epoch {metrics.get('best_val_epoch', '?')}"))
        return metrics, findings

    def _memorisation(self, ctx, fit):
        import torch

        train, val = ctx.probe_data()
        perm = torch.from_numpy(np.random.default_rng(ctx.seed).permutation(len(train[1])))
        try:
            run = ctx.train_probe("overfit-shuffled", data=((train[0], train[1][perm]), None))
        except ProbeUnavailable as exc:
            return {}, [probe_finding(exc, "shuffled-label probe not run")], []
        shuffled = [e.get("train_acc") for e in run.epochs]
        true = [e.get("train_acc") for e in fit.epochs]
        k = min(len(shuffled), len(true))
        if not k or shuffled[k - 1] is None or not true[k - 1]:
            return {}, [], shuffled
        ratio = shuffled[k - 1] / true[k - 1]
        metrics = {"shuffled_label_train_accuracy": round(shuffled[k - 1], 4), "true_label_train_accuracy": round(true[k - 1], 4),
                   "memorisation_ratio": round(ratio, 4), "memorisation_epochs": k}
        findings = []
        if ratio > self.t["memorisation_warn"]:
            findings.append(Finding(Status.WARN, f"the model fits randomly shuffled labels almost as well as the true ones "
                                    f"({shuffled[k - 1]:.2f} vs {true[k - 1]:.2f} training accuracy after {k} epochs): it "
                                    "can memorise this dataset; trust only validation figures and regularise"))
        return metrics, findings, shuffled

    @staticmethod
    def _remedy(findings) -> str:
        if not findings:
            return ""
        return ("If one batch cannot be fitted, check requires_grad, .detach() calls and that the loss uses the model's "
                "outputs. If capacity dwarfs the data, shrink dense layers, regularise and augment, start from a "
                "pretrained backbone, and stop at the best validation epoch.")


def _summary(metrics, findings) -> str:
    if findings:
        return headline(findings)
    text = (f"fits one batch ({metrics['batch_initial_loss']:.3g} -> {metrics['batch_best_loss']:.2g} in "
            f"{metrics['batch_steps']} steps); {metrics['parameters_per_sample']:g} parameters per sample")
    if "memorisation_ratio" in metrics:
        text += f"; shuffled labels fitted to {metrics['shuffled_label_train_accuracy']:.2f} train accuracy"
    return text
