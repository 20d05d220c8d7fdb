"""DNC11 gradient-health: gradients that neither vanish nor explode, live and unsaturated units,
initial weights at a sensible scale, updates of a sensible size."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dnncheck.figures import Lines
from dnncheck.checks.base import (ALL_TASKS, FACTOR, POSITIVE_SHARE, SCALE, SHARE, Check, Finding, ProbeGap, Status,
                                  Verdict, headline, inconclusive, probe_missing, verdict)
from dnncheck.errors import ProbeUnavailable

ACTIVATION_SAMPLES = 512
ACTIVATION_CHUNK = 64  # samples per forward pass when the activations are tallied...
ACTIVATION_VALUES = 2**22  # ...and at most this many input values (27 samples at 3x224x224: a first
# layer's activations stay under 100 MB instead of 200 MB, plus its copy, at 64 samples)


NO_PROBE = "no probe run to read gradients from"


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
        trained probe over up to 512 training inputs, BatchNorm on batch statistics as in a
        training step; a unit (channel for convolutions) is dead when it is never positive. The same inputs go through the fresh model: only units that
        fired there and no longer fire died in training (the dying-ReLU problem, Lu et al. 2020,
        "Dying ReLU and initialization"); units silent from the start (about half the ReLUs of a
        squeeze-excitation block, whose input is a global average that barely varies across
        samples) are an `info`, not a training fault. Outputs beyond 0.01/0.99 (sigmoid) or |0.99| (tanh) are
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
    tasks = ALL_TASKS
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
    ranges = {
        "vanishing_ratio": POSITIVE_SHARE,
        "exploding_norm": SCALE,
        "dead_fraction": SHARE,
        "saturated_fraction": SHARE,
        "init_ratio_low": POSITIVE_SHARE,
        "init_ratio_high": FACTOR,
        "update_ratio_low": SHARE,
        "update_ratio_high": SCALE,
    }
    ordered = (("update_ratio_low", "update_ratio_high"),)

    def probes(self, ctx) -> dict[str, dict]:
        return {"fit": {}}

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx):
        try:
            run = ctx.fit_probe()
        except ProbeUnavailable as exc:
            return probe_missing(exc, NO_PROBE, lambda gap: GradientHealthMeasurement({}, {}, {}, {}, {}, gap))
        fresh = ctx.fresh_model().to(ctx.device)  # forwarded beside the trained model, on its device
        sample = ctx.inputs("train")[:ACTIVATION_SAMPLES]
        trained_tallies = _tally_units(run.model, sample, ctx.device)
        fresh_tallies = _tally_units(fresh, sample, ctx.device)
        dead = {name: t.dead_fraction() for name, t in trained_tallies.items() if t.kind == "relu"}
        died = {name: t.died_fraction(fresh_tallies[name]) for name, t in trained_tallies.items()
                if t.kind == "relu" and name in fresh_tallies}
        saturated = {name: t.saturated_fraction() for name, t in trained_tallies.items() if t.kind != "relu"}
        return GradientHealthMeasurement(dict(run.grad_norms), _update_ratios(fresh, run),
                                         dead, saturated, _init_ratios(fresh, _execution_order(fresh, sample, ctx.device)),
                                         grad_steps=tuple(s + 1 for s in run.grad_steps), died_fraction=died,
                                         auxiliary=tuple(sorted(_auxiliary(fresh, sample, ctx.device))))

    # -- judging --------------------------------------------------------------------------------
    @classmethod
    def judge(cls, m: "GradientHealthMeasurement", t) -> Verdict:
        if m.probe_gap is not None:
            return inconclusive(m.probe_gap, NO_PROBE)
        findings, metrics = [], {}
        for part_metrics, part_findings in (_gradient_findings(m.grad_norms, t),
                                            _update_findings(m.update_ratios, t, m.auxiliary),
                                            _unit_findings(m.dead_fraction, m.saturated_fraction, t,
                                                           m.died_fraction),
                                            _init_findings(m.init_ratios, t)):
            metrics.update(part_metrics)
            findings += part_findings
        weights = {k: v for k, v in m.grad_norms.items() if not k.endswith("bias")}
        steps = list(m.grad_steps) if len(m.grad_steps) == len(next(iter(weights.values()), ())) else None
        figures = {"grad_norms": Lines("Gradient norm per layer during the probe", weights,
                                       "training step" if steps else "record", "norm", logy=True,
                                       x=steps)} if weights else {}
        summary = headline(findings) if findings else (
            f"gradients flow (first/last layer ratio {_ratio_text(metrics.get('first_to_last_grad_ratio'))}), "
            f"no dead or saturated layers, initial scales within range")
        return Verdict(verdict(findings), summary, tuple(findings), metrics, _remedy(findings), figures)


@dataclass(frozen=True)
class GradientHealthMeasurement:
    grad_norms: dict  # parameter name -> gradient norms at the recorded steps of the shared probe run
    update_ratios: dict  # weight name -> ||w_T - w_0|| / ||w_0|| / T
    dead_fraction: dict  # ReLU module -> share of units of the trained probe that never fired on the sample
    saturated_fraction: dict  # sigmoid/tanh module -> share of outputs at the limits
    init_ratios: dict  # weight layer -> (init scheme, fresh weight std / the scheme's)
    probe_gap: ProbeGap | None = None
    grad_steps: tuple = ()  # the training step (from 1) of each recorded gradient norm
    # ReLU module -> share of units that fired in the fresh model and never in the trained one (None: not
    # measured, every dead unit counts as died)
    died_fraction: dict | None = None
    auxiliary: tuple = ()  # parameters feeding only the model's other outputs (not trained by the probe's loss)


def _update_ratios(fresh, run) -> dict:
    """Per-step update relative to the weights, for weight matrices that start non-zero: a
    parameter initialised at zero (a ViT's class token, a zero-initialised residual scale) has no
    relative size to compare its update with."""
    trained = dict(run.model.named_parameters())
    ratios = {}
    for name, p0 in fresh.named_parameters():
        if p0.ndim < 2 or name not in trained or not run.steps or not bool(p0.detach().any()):
            continue
        w0 = p0.detach().float().cpu()
        w1 = trained[name].detach().float().cpu()
        ratios[name] = float((w1 - w0).norm() / max(float(w0.norm()), 1e-12) / run.steps)
    return ratios


def _tally_units(model, x, device) -> dict:
    """Per activation module (ReLU, sigmoid, tanh), a tally of its outputs from forward hooks over `x`."""
    import torch
    from torch import nn

    tallies: dict[str, _UnitTally] = {}
    hooks = []
    for name, module in model.named_modules():
        kind = "relu" if isinstance(module, (nn.ReLU, nn.ReLU6)) else \
            "sigmoid" if isinstance(module, nn.Sigmoid) else "tanh" if isinstance(module, nn.Tanh) else None
        if kind:
            tally = tallies.setdefault(name, _UnitTally(kind))
            hooks.append(module.register_forward_hook(lambda m, i, out, tally=tally: tally.add(out)))
    was = model.training
    try:
        with torch.no_grad(), _batch_statistics(model):  # in chunks: 512 photos' activations are GBs
            per_chunk = max(1, min(ACTIVATION_CHUNK, ACTIVATION_VALUES // max(1, x[0].numel())))
            for chunk in torch.tensor_split(x, max(1, -(-len(x) // per_chunk))):
                model(chunk.to(device))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return tallies


@contextmanager
def _batch_statistics(model):
    """Eval mode, except that BatchNorm normalises with each batch's own statistics, as in the training
    steps a unit is dead or alive in, without updating its running statistics (momentum 0). After a
    short probe those running statistics are mostly still their initial (0, 1) (torchvision's
    MobileNetV3 uses momentum 0.01: 64% initial after 45 steps), so in plain eval mode whole channels
    read as never firing that fire in every training step."""
    from torch import nn

    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
            m.eval()


def _auxiliary(model, x, device) -> set[str]:
    from dnncheck.models.build import auxiliary_parameters

    try:
        return auxiliary_parameters(model, x[:2].to(device))
    except Exception:  # noqa: BLE001 - a second forward that fails leaves every layer judged as before
        return set()


def _execution_order(model, x, device) -> list:
    """(name, module) of the model's leaf modules in the order one forward pass calls them (first
    call). Registration order is not forward order: a squeeze-excitation block registers fc1, fc2,
    then its activation, and calls fc1, activation, fc2. Falls back to registration order when the
    forward fails (the probe that trained this model has already reported why)."""
    import torch

    modules = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    called: dict[str, object] = {}
    def remember(name, module):  # a forward hook must return None: a value would replace the output
        called.setdefault(name, module)

    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: remember(name, mod)) for name, m in modules]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1].to(device))
    except Exception:  # noqa: BLE001 - only the order is wanted here
        return modules
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    rest = [(name, m) for name, m in modules if name not in called]
    return list(called.items()) + rest


def _init_ratios(fresh, order=None) -> dict:
    """Each weight layer's initial std against the scheme of the activation that follows it in
    `order` ((name, module) in forward order; registration order when not given)."""
    from torch import nn

    modules = order if order is not None else list(fresh.named_modules())
    out = {}
    for k, (name, module) in enumerate(modules):
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        weight = module.weight.detach()
        fan_in = weight[0].numel()
        fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
        activation = _next_activation(modules[k + 1:])
        std = float(weight.std())
        if activation in ("relu", "selu"):
            # He et al. (ICCV 2015, section 2.2) preserve the variance forward (fan_in) or backward
            # (fan_out) - torchvision's ResNets and EfficientNets use fan_out - so the nearer counts
            gain, scheme = (2.0, "He") if activation == "relu" else (1.0, "LeCun")
            ratios = {"": std / math.sqrt(gain / fan_in), " (fan_out)": std / math.sqrt(gain / fan_out)}
            mode = min(ratios, key=lambda m: abs(math.log(max(ratios[m], 1e-12))))
            out[name] = (scheme + mode, ratios[mode])
        else:
            out[name] = ("Glorot", std / math.sqrt(2.0 / (fan_in + fan_out)))
    return out


def _gradient_findings(grad_norms, t):
    weights = [(n, v) for n, v in grad_norms.items() if not n.endswith("bias") and len(v)]
    weights = [(n, v) for n, v in weights if "norm" not in n.lower() and "bn" not in n.lower()]
    if not weights:
        return {}, []
    medians = {n: float(np.median(v)) for n, v in weights}
    metrics = {"grad_norm_median": {n: round(v, 8) for n, v in medians.items()}}
    findings = []
    all_values = np.concatenate([np.asarray(v, dtype=float) for _, v in weights])
    if not np.all(np.isfinite(all_values)) or all_values.max() > t.exploding_norm:
        head = f"exploding gradients: norms up to {np.nanmax(all_values):.3g}"
        findings.append(Finding(Status.FAIL, f"{head}; lower the learning rate or clip gradients "
                                "(torch.nn.utils.clip_grad_norm_)", headline=head))
    first, last = medians[weights[0][0]], medians[weights[-1][0]]
    ratio = first / last if last > 0 else math.inf
    metrics["first_to_last_grad_ratio"] = round(ratio, 8)
    if len(weights) > 1 and ratio < t.vanishing_ratio:
        findings.append(Finding(Status.WARN, f"vanishing gradients: the first layer ({weights[0][0]}) gets "
                                f"{ratio:.2g} of the gradient the last ({weights[-1][0]}) gets",
                                evidence={"first": first, "last": last}))
    return metrics, findings


def _update_findings(ratios, t, auxiliary=()):
    if not ratios:
        return {}, []
    median = float(np.median(list(ratios.values())))
    metrics = {"update_ratio_per_step_median": round(median, 8)}
    # an auxiliary head is trained by the user's loss, not the probe's: its stillness is ours
    untrained = [n for n, r in ratios.items() if r < t.update_ratio_low and n in auxiliary]
    still = [n for n, r in ratios.items() if r < t.update_ratio_low and n not in auxiliary]
    wild = [n for n, r in ratios.items() if r > t.update_ratio_high]
    findings = []
    if untrained:
        findings.append(Finding(Status.INFO, f"{len(untrained)} layer(s) feed only the model's other outputs, which "
                                f"the probe's loss does not read, so the probe leaves them as they are: "
                                f"{', '.join(untrained[:10])}", evidence={"auxiliary": untrained}))
    if still:
        findings.append(Finding(Status.WARN, f"{len(still)} layer(s) barely move (update/weight per step below "
                                f"{t.update_ratio_low:g}): {', '.join(still[:10])}"))
    if wild:
        findings.append(Finding(Status.WARN, f"{len(wild)} layer(s) change by more than "
                                f"{t.update_ratio_high:g} of their size per step: {', '.join(wild[:10])}"))
    return metrics, findings


def _unit_findings(dead, saturated, t, died=None):
    died = dead if died is None else died
    metrics = {"dead_relu_fraction": {k: round(v, 4) for k, v in dead.items()},
               "died_in_training_fraction": {k: round(v, 4) for k, v in died.items()},
               "saturated_fraction": {k: round(v, 4) for k, v in saturated.items()}}
    findings = []
    # a layer none of whose units ever fires passes nothing on: the network below it cannot learn
    fully_dead = [k for k, v in dead.items() if v >= 1.0]
    if fully_dead:
        head = f"every unit of {', '.join(fully_dead)} is dead: nothing passes through, the layers before it get no gradient"
        findings.append(Finding(Status.FAIL, f"{head}; lower the learning rate, check the initialisation (a large "
                                "negative bias) or use LeakyReLU", headline=head, evidence={"layers": fully_dead}))
    # dying ReLUs are units training switched off; units silent from the start are the architecture's
    killed = {k: v for k, v in died.items() if v > t.dead_fraction and dead.get(k, 0.0) < 1.0}
    if killed:
        head = "dead ReLUs: " + ", ".join(f"{k} {dead[k]:.0%}" for k in killed) + " of units never fire"
        findings.append(Finding(Status.WARN, f"{head} ({', '.join(f'{died[k]:.0%}' for k in killed)} fired before "
                                "training); lower the learning rate or use LeakyReLU", headline=head))
    silent = {k: v for k, v in dead.items() if v > t.dead_fraction and v < 1.0 and k not in killed}
    if silent:
        findings.append(Finding(Status.INFO, "ReLUs mostly silent since initialisation, not killed by training: "
                                + ", ".join(f"{k} {v:.0%} never fire ({died.get(k, 0.0):.0%} stopped in training)"
                                            for k, v in silent.items())
                                + "; typical where a unit's input barely varies across samples, as after the "
                                "global pooling of a squeeze-excitation block", evidence={"layers": sorted(silent)}))
    bad_sat = {k: v for k, v in saturated.items() if v > t.saturated_fraction}
    if bad_sat:
        head = ("saturated units: " + ", ".join(f"{k} {v:.0%}" for k, v in bad_sat.items())
                + " of outputs at the activation's limits")
        findings.append(Finding(Status.WARN, f"{head}; their gradients vanish", headline=head))
    return metrics, findings


def _init_findings(ratios, t):
    metrics = {"init_scale_ratio": {n: {"scheme": s, "ratio": round(r, 3)} for n, (s, r) in ratios.items()}}
    off = {n: (s, r) for n, (s, r) in ratios.items() if not t.init_ratio_low <= r <= t.init_ratio_high}
    if not off:
        return metrics, []
    head = f"{len(off)} layer(s) start at a poor weight scale: " + ", ".join(
        f"{n} {r:.2g}x {s}" for n, (s, r) in list(off.items())[:8])
    return metrics, [Finding(Status.WARN, f"{head}; use torch.nn.init with the scheme for its activation",
                             evidence={n: {"scheme": s, "ratio": r} for n, (s, r) in off.items()}, headline=head)]


def _remedy(findings) -> str:
    if not findings:
        return ""
    return ("Initialise with He (ReLU) or Glorot (tanh/sigmoid) via torch.nn.init; prefer ReLU-family activations, "
            "BatchNorm or residual connections in deep nets; lower the learning rate or clip gradients when they "
            "explode.")


def _next_activation(rest) -> str | None:
    from torch import nn

    for _, module in rest:
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)):
            return "relu"
        if isinstance(module, nn.SELU):
            return "selu"
        if isinstance(module, (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid)):
            return "glorot"
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None  # the next weight layer comes before any activation
    return None


# Where an activation's slope has fallen below ~1% of its peak (sigmoid' = 0.0099 at 0.01/0.99,
# tanh' = 0.0199 at 0.99): the definition of "saturated", not a verdict; the share that warns is the
# saturated_fraction threshold.
SIGMOID_SATURATED = (0.01, 0.99)
TANH_SATURATED = 0.99


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
            # the largest output of each unit (channel): reduced in place, no transposed copy of a
            # 224-px layer's activations
            top = out.amax(dim=(0, *range(2, out.ndim))) if out.ndim > 2 else out.amax(dim=0)
            seen = self.unit_max.get(len(top))
            self.unit_max[len(top)] = top if seen is None else torch.maximum(seen, top)
            return
        if self.kind == "sigmoid":
            limit = (out < SIGMOID_SATURATED[0]) | (out > SIGMOID_SATURATED[1])
        else:
            limit = out.abs() > TANH_SATURATED
        self.saturated += int(limit.sum())
        self.total += out.numel()

    def dead_fraction(self) -> float:
        """Share of units that never fired (output <= 0 on every sample and position)."""
        dead = sum(int((top <= 0).sum()) for top in self.unit_max.values())
        return dead / max(1, sum(len(top) for top in self.unit_max.values()))

    def died_fraction(self, before: "_UnitTally") -> float:
        """Share of units that fired in `before` (the same module of the fresh model, same inputs) and
        never fire here."""
        died = sum(int(((top <= 0) & (before.unit_max[width] > 0)).sum())
                   for width, top in self.unit_max.items() if width in before.unit_max)
        return died / max(1, sum(len(top) for top in self.unit_max.values()))

    def saturated_fraction(self) -> float:
        return self.saturated / max(1, self.total)


def _ratio_text(ratio) -> str:
    """Three significant digits for the summary (the metric keeps its full value)."""
    return "n/a" if ratio is None else f"{ratio:.3g}"
