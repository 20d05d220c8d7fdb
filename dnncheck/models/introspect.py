"""What can be read off a model: parameter counts, the penultimate layer, the kind of output."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

ROWSUM_TOL = 1e-3


def parameter_count(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable}


def output_layer(model: nn.Module) -> nn.Module | None:
    """The last nn.Linear in module order: the layer that produces the outputs in common nets."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear) or getattr(module, "original_name", None) == "Linear":
            last = module
    return last


def final_activation(model: nn.Module) -> str | None:
    """'softmax' / 'log_softmax' / 'sigmoid' / 'tanh' / 'relu' when the last leaf module is one;
    a softmax or log-softmax over dimension 0 (the batch) is 'softmax_over_batch' /
    'log_softmax_over_batch'."""
    names = {nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
             nn.ReLU: "relu", nn.ReLU6: "relu"}
    leaves = [m for m in model.modules() if not list(m.children())]
    if not leaves:
        return None
    last = leaves[-1]
    name = next((name for cls, name in names.items() if isinstance(last, cls)), None)
    if name in ("softmax", "log_softmax") and getattr(last, "dim", None) == 0:
        name += "_over_batch"
    return name


@contextmanager
def capture_penultimate(model: nn.Module):
    """Collect the input of the output layer (the penultimate features) during forward passes.

    Yields a list that each forward appends a detached float CPU tensor to; empty when the model
    has no hookable linear output layer (TorchScript models, for instance).
    """
    store: list[torch.Tensor] = []
    layer = output_layer(model)
    handle = None
    if layer is not None and not isinstance(model, torch.jit.ScriptModule):
        handle = layer.register_forward_hook(lambda m, inputs, out: store.append(inputs[0].detach().float().cpu()))
    try:
        yield store
    finally:
        if handle is not None:
            handle.remove()


@dataclass(frozen=True)
class OutputInfo:
    """How the model's raw outputs look on a batch."""
    units: int
    kind: str  # "logits" | "probabilities" (rows sum to 1) | "log_probabilities" | "sigmoid" ([0,1], no sum)
    min: float
    max: float
    finite: bool

    def to_dict(self) -> dict:
        return {"units": self.units, "kind": self.kind, "min": self.min, "max": self.max, "finite": self.finite}


AMPLIFY = 100.0  # inputs scaled by this: logits follow the scale out of [0, 1], a squashed output cannot


def _chunked(model: nn.Module, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """model(x * scale) a chunk of rows at a time (probes.train.EVAL_VALUES input values each): 256
    photos at 224 px through a ResNet at once held 1.6 GB of activations; the scaling is per chunk
    too (x * scale of 445 such photos is a 270 MB copy)."""
    from dnncheck.probes.train import EVAL_VALUES

    rows = max(16, EVAL_VALUES // max(1, x[0].numel())) if len(x) else 1
    return torch.cat([model(chunk * scale if scale != 1.0 else chunk) for chunk in torch.split(x, rows)]) \
        if len(x) > rows else model(x * scale if scale != 1.0 else x)


def describe_model_outputs(model: nn.Module, x: torch.Tensor, out: torch.Tensor | None = None) -> OutputInfo:
    """describe_outputs of the model on `x` (or of `out`, already computed on `x`), where outputs
    that all fall in [0, 1] count as sigmoid only if they stay there for inputs scaled by +-AMPLIFY
    (eval mode, so BatchNorm keeps the scale): a fresh net's small logits can all be positive and
    below 1 (a CIFAR LeNet with two classes was called "sigmoid outputs")."""
    was_training = model.training
    try:
        with torch.no_grad():
            if out is None:
                out = _chunked(model.eval(), x)
            info = describe_outputs(out)
            if info.kind != "sigmoid":
                return info
            model.eval()
            amplified = torch.cat([_chunked(model, x, AMPLIFY).detach().float().reshape(len(x), -1),
                                   _chunked(model, x, -AMPLIFY).detach().float().reshape(len(x), -1)])
    finally:
        model.train(was_training)
    stays = bool(torch.isfinite(amplified).all()) and float(amplified.min()) >= 0 and float(amplified.max()) <= 1
    return info if stays else OutputInfo(info.units, "logits", info.min, info.max, info.finite)


def describe_outputs(out: torch.Tensor) -> OutputInfo:
    out = out.detach().float()
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim > 2:  # N,C,H,W score maps: one row per pixel, so units are classes and softmax rows sum to 1
        out = out.movedim(1, -1).reshape(-1, out.shape[1])
    out = out.reshape(out.shape[0], -1)
    finite = bool(torch.isfinite(out).all())
    lo, hi = float(out.min()), float(out.max())
    kind = "logits"
    if finite and out.shape[1] > 1 and lo >= 0 and hi <= 1 + 1e-6 and \
            torch.allclose(out.sum(1), torch.ones(out.shape[0]), atol=ROWSUM_TOL):
        kind = "probabilities"
    elif finite and out.shape[1] > 1 and hi <= 1e-6 and \
            torch.allclose(out.exp().sum(1), torch.ones(out.shape[0]), atol=ROWSUM_TOL):
        kind = "log_probabilities"
    elif finite and lo >= 0 and hi <= 1:
        kind = "sigmoid"
    return OutputInfo(int(out.shape[1]), kind, lo, hi, finite)


def to_probabilities(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Class probabilities from raw outputs of the given kind (softmax of logits, exp of log-probs)."""
    out = out.float()
    if kind == "probabilities":
        return out.clamp(min=0) / out.clamp(min=0).sum(1, keepdim=True).clamp(min=1e-12)
    if kind == "log_probabilities":
        return out.exp()
    return torch.softmax(out, dim=1)


TRIED_SIDES = (*range(8, 257), 288, 299, 320, 384, 448, 512)  # square input sides tried by accepted_sides


def accepted_sides(model: nn.Module, channels: int, sides=TRIED_SIDES) -> list[int]:
    """Square input sides the model's forward accepts, found on the meta device (shapes only, no
    arithmetic, no memory): a model with a fixed flatten (a CIFAR LeNet's 16*5*5 dense input) runs
    on a narrow band of sizes only. Moves `model` to the meta device: pass a model about to be
    discarded. [] when the model cannot be moved or no size works."""
    try:
        model = model.to("meta").eval()
    except (Exception, SystemExit):  # a TorchScript module or a model with non-tensor state
        return []
    found = []
    with torch.no_grad():
        for side in sides:
            try:
                model(torch.empty(2, channels, side, side, device="meta"))
            except (Exception, SystemExit):  # the wrong size, a meta-unsupported op, or user code that exits
                continue
            found.append(side)
    return found


def describe_sides(sides: list[int]) -> str:
    """'32x32' or '32x32 to 35x35' or '28x28, 32x32 and 64x64'."""
    if not sides:
        return ""
    if sides == list(range(sides[0], sides[-1] + 1)):
        return f"{sides[0]}x{sides[0]}" + (f" to {sides[-1]}x{sides[-1]}" if len(sides) > 1 else "")
    shown = [f"{s}x{s}" for s in sides[:4]]
    return ", ".join(shown[:-1]) + f" and {shown[-1]}" + (" (and more)" if len(sides) > 4 else "")
