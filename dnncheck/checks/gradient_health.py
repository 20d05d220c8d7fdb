"""DNC11 gradient-health: gradients that neither vanish nor explode, live and unsaturated units,
initial weights at a sensible scale, updates of a sensible size."""

from __future__ import annotations

import math

import numpy as np

from dnncheck.checks.base import Check, Finding, Status, headline, verdict
from dnncheck.errors import ProbeUnavailable

ACTIVATION_SAMPLES = 512
ACTIVATION_CHUNK = 64  # samples per forward pass when the activations are tallied


class GradientHealth(Check):
    """Gradient flow, unit health and initialisation scale, read off the shared probe run.

    What it checks
        Per-layer gradient norms during the probe (vanishing towards the input, exploding);
        the size of each layer's update relative to its weights; ReLU units that never fire on a
        batch (dead); sigmoid/tanh units pinned at their limits (saturated); and each layer's
        initial weight scale against the scheme its activation calls for: He (ReLU family,
        std sqrt(2/fan_in)), Glorot (tanh, sigmoid or none, std sqrt(2/(fan_in+fan_out))) and
        LeCun (SELU, std sqrt(1/fan_in)).

    Why it matters
        The course notes on the art of training DNNs: gradients shrink or grow geometrically
        with depth when weights are badly scaled or activations saturate (Glorot & Bengio 2010,
        He et al. 2015); dead ReLUs stop learning for good; updates far below ~1e-3 of the
        weights per step mean nothing moves, far above mean instability. Published thresholds of
        this kind are used by AutoTrainer (Zhang et al., ICSE 2021) and DeepDiagnosis (Wardat et
        al., ICSE 2022); the code here is our own.

    How it is computed
        Gradient norms are the probe's (recorded every few steps), median per weight tensor
        (biases and norms ignored), in parameter order from input to output. Vanishing: the
        first layer's median below `vanishing_ratio` times the last's. Exploding: any norm above
        `exploding_norm` or non-finite. Update size: ||w_T - w_0|| / ||w_0|| / T against the same
        seeded initial model. Dead/saturated: forward hooks on ReLU/Sigmoid/Tanh modules of the
        trained probe over up to 512 training inputs; a unit (channel for convolutions) is dead
        when it is never positive; outputs beyond 0.01/0.99 (sigmoid) or |0.99| (tanh) are
        saturated. Init: the std of each linear/conv weight of the fresh model against its
        scheme's; ratios outside [`init_ratio_low`, `init_ratio_high`] warn (PyTorch's default
        init sits at about 0.41 of He, which passes).

    How to fix
        Use He init with ReLU, Glorot with tanh/sigmoid (torch.nn.init); prefer ReLU-family
        activations in deep nets, add BatchNorm or residual connections; lower the learning rate
        or clip gradients when they explode; a high dead fraction calls for a lower learning rate
        or LeakyReLU.
    """

    id = "DNC11"
    slug = "gradient-health"
    item = None
    title = "Gradient health"
    needs = "probe run"
    thresholds = {
        "vanishing_ratio": (1e-3, "first layer's gradient norm below this times the last layer's: vanishing"),
        "exploding_norm": (1e3, "a gradient norm above this: exploding"),
        "dead_fraction": (0.5, "warn when more than this share of a ReLU layer's units never fire"),
        "saturated_fraction": (0.5, "warn when more than this share of a sigmoid/tanh layer's outputs saturate"),
        "init_ratio_low": (0.2, "weight std below this times the scheme's: too small"),
        "init_ratio_high": (5.0, "weight std above this times the scheme's: too large"),
        "update_ratio_low": (1e-6, "per-step update / weight below this: the layer barely moves"),
        "update_ratio_high": (0.1, "per-step update / weight above this: unstable"),
    }

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}}

    def run(self, ctx):
        try:
            run = ctx.fit_probe()
        except ProbeUnavailable as exc:
            return self.without_probe(exc, "no probe run to read gradients from")
        fresh = ctx.fresh_model()
        findings, metrics = [], {}
        for part in (self._gradients(run), self._updates(fresh, run), self._units(ctx, run), self._init(fresh)):
            metrics.update(part[0])
            findings += part[1]
        figures = {"grad_norms": {k: v for k, v in run.grad_norms.items()}, "grad_steps": run.grad_steps}
        status = verdict(findings)
        summary = headline(findings) if findings else (
            f"gradients flow (first/last layer ratio {metrics.get('first_to_last_grad_ratio')}), no dead or saturated "
            f"layers, initial scales within range")
        return self.result(status, summary, metrics, findings, self._remedy(findings), figures)

    def _gradients(self, run):
        weights = [(n, v) for n, v in run.grad_norms.items() if not n.endswith("bias") and len(v)]
        weights = [(n, v) for n, v in weights if "norm" not in n.lower() and "bn" not in n.lower()]
        if not weights:
            return {}, []
        medians = {n: float(np.median(v)) for n, v in weights}
        metrics = {"grad_norm_median": {n: round(v, 8) for n, v in medians.items()}}
        findings = []
        all_values = np.concatenate([np.asarray(v, dtype=float) for _, v in weights])
        if not np.all(np.isfinite(all_values)) or all_values.max() > self.t["exploding_norm"]:
            findings.append(Finding(Status.FAIL, f"exploding gradients: norms up to {np.nanmax(all_values):.3g}; lower "
                                    "the learning rate or clip gradients (torch.nn.utils.clip_grad_norm_)"))
        first, last = medians[weights[0][0]], medians[weights[-1][0]]
        ratio = first / last if last > 0 else math.inf
        metrics["first_to_last_grad_ratio"] = round(ratio, 8)
        if len(weights) > 1 and ratio < self.t["vanishing_ratio"]:
            findings.append(Finding(Status.WARN, f"vanishing gradients: the first layer ({weights[0][0]}) gets "
                                    f"{ratio:.2g} of the gradient the last ({weights[-1][0]}) gets",
                                    evidence={"first": first, "last": last}))
        return metrics, findings

    def _updates(self, fresh, run):
        trained = dict(run.model.named_parameters())
        ratios = {}
        for name, p0 in fresh.named_parameters():
            if p0.ndim < 2 or name not in trained or not run.steps:
                continue
            w0 = p0.detach().float()
            w1 = trained[name].detach().float().cpu()
            ratios[name] = float((w1 - w0).norm() / max(float(w0.norm()), 1e-12) / run.steps)
        if not ratios:
            return {}, []
        median = float(np.median(list(ratios.values())))
        metrics = {"update_ratio_per_step_median": round(median, 8)}
        still = [n for n, r in ratios.items() if r < self.t["update_ratio_low"]]
        wild = [n for n, r in ratios.items() if r > self.t["update_ratio_high"]]
        findings = []
        if still:
            findings.append(Finding(Status.WARN, f"{len(still)} layer(s) barely move (update/weight per step below "
                                    f"{self.t['update_ratio_low']:g}): {', '.join(still[:10])}"))
        if wild:
            findings.append(Finding(Status.WARN, f"{len(wild)} layer(s) change by more than "
                                    f"{self.t['update_ratio_high']:g} of their size per step: {', '.join(wild[:10])}"))
        return metrics, findings

    def _units(self, ctx, run):
        import torch
        from torch import nn

        model = run.model
        tallies: dict[str, _UnitTally] = {}
        hooks = []
        for name, module in model.named_modules():
            kind = "relu" if isinstance(module, (nn.ReLU, nn.ReLU6)) else \
                "sigmoid" if isinstance(module, nn.Sigmoid) else "tanh" if isinstance(module, nn.Tanh) else None
            if kind:
                tally = tallies.setdefault(name, _UnitTally(kind))
                hooks.append(module.register_forward_hook(lambda m, i, out, tally=tally: tally.add(out)))
        was = model.training
        model.eval()
        x = ctx.inputs("train")[:ACTIVATION_SAMPLES]
        with torch.no_grad():  # in chunks: a layer's outputs for 512 photos are hundreds of MB
            for start in range(0, len(x), ACTIVATION_CHUNK):
                model(x[start:start + ACTIVATION_CHUNK].to(ctx.device))
        model.train(was)
        for h in hooks:
            h.remove()
        dead = {name: t.dead_fraction() for name, t in tallies.items() if t.kind == "relu"}
        saturated = {name: t.saturated_fraction() for name, t in tallies.items() if t.kind != "relu"}
        metrics = {"dead_relu_fraction": {k: round(v, 4) for k, v in dead.items()},
                   "saturated_fraction": {k: round(v, 4) for k, v in saturated.items()}}
        findings = []
        bad_dead = {k: v for k, v in dead.items() if v > self.t["dead_fraction"]}
        if bad_dead:
            findings.append(Finding(Status.WARN, "dead ReLUs: " + ", ".join(f"{k} {v:.0%}" for k, v in bad_dead.items())
                                    + " of units never fire; lower the learning rate or use LeakyReLU"))
        bad_sat = {k: v for k, v in saturated.items() if v > self.t["saturated_fraction"]}
        if bad_sat:
            findings.append(Finding(Status.WARN, "saturated units: " + ", ".join(f"{k} {v:.0%}" for k, v in bad_sat.items())
                                    + " of outputs at the activation's limits; their gradients vanish"))
        return metrics, findings

    def _init(self, fresh):
        from torch import nn

        modules = list(fresh.named_modules())
        checks = {}
        for k, (name, module) in enumerate(modules):
            if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                continue
            weight = module.weight.detach()
            fan_in = weight[0].numel()
            fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
            activation = _next_activation(modules[k + 1:])
            if activation == "relu":
                scheme, expected = "He", math.sqrt(2.0 / fan_in)
            elif activation == "selu":
                scheme, expected = "LeCun", math.sqrt(1.0 / fan_in)
            else:
                scheme, expected = "Glorot", math.sqrt(2.0 / (fan_in + fan_out))
            checks[name] = (scheme, float(weight.std()) / expected)
        metrics = {"init_scale_ratio": {n: {"scheme": s, "ratio": round(r, 3)} for n, (s, r) in checks.items()}}
        off = {n: (s, r) for n, (s, r) in checks.items()
               if not self.t["init_ratio_low"] <= r <= self.t["init_ratio_high"]}
        if not off:
            return metrics, []
        return metrics, [Finding(Status.WARN, f"{len(off)} layer(s) start at a poor weight scale: " + ", ".join(
            f"{n} {r:.2g}x {s}" for n, (s, r) in list(off.items())[:8]) + "; use torch.nn.init with the scheme for its "
            "activation", evidence={n: {"scheme": s, "ratio": r} for n, (s, r) in off.items()})]

    @staticmethod
    def _remedy(findings) -> str:
        if not findings:
            return ""
        return ("Initialise with He (ReLU) or Glorot (tanh/sigmoid) via torch.nn.init; prefer ReLU-family activations, "
                "BatchNorm or residual connections in deep nets; lower the learning rate or clip gradients when they "
                "explode.")


def _next_activation(rest) -> str | None:
    from torch import nn

    for _, module in rest:
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)):
            return "relu"
        if isinstance(module, nn.SELU):
            return "selu"
        if isinstance(module, (nn.Sigmoid, nn.Tanh)):
            return "glorot"
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None  # the next weight layer comes before any activation
    return None


class _UnitTally:
    """Running statistics of one activation layer's outputs over chunks of samples: the largest
    output of each unit (channel, or feature) for ReLUs, saturated/total counts for sigmoid and tanh.
    A module called on outputs of different widths (one nn.ReLU shared by several layers) keeps a
    maximum per width."""

    def __init__(self, kind: str):
        self.kind = kind
        self.unit_max: dict[int, object] = {}
        self.saturated = 0
        self.total = 0

    def add(self, out) -> None:
        import torch

        out = out.detach().float().cpu()
        if self.kind == "relu":
            per_unit = out.transpose(0, 1).reshape(out.shape[1], -1) if out.ndim > 2 else out.t()
            top = per_unit.max(dim=1).values
            seen = self.unit_max.get(len(top))
            self.unit_max[len(top)] = top if seen is None else torch.maximum(seen, top)
            return
        limit = ((out < 0.01) | (out > 0.99)) if self.kind == "sigmoid" else (out.abs() > 0.99)
        self.saturated += int(limit.sum())
        self.total += out.numel()

    def dead_fraction(self) -> float:
        """Share of units that never fired (output <= 0 on every sample and position)."""
        dead = sum(int((top <= 0).sum()) for top in self.unit_max.values())
        return dead / max(1, sum(len(top) for top in self.unit_max.values()))

    def saturated_fraction(self) -> float:
        return self.saturated / max(1, self.total)
