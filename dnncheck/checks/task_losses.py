"""DNC4 loss-sanity for segmentation and multi-label targets (kept apart from the single-label rules).

Segmentation: the model outputs N,C,H,W logits at the masks' size, one channel per class; a softmax
(or log-softmax) normalises over the class dimension 1, never over height, width or the batch;
per-pixel cross-entropy at initialisation is near ln C. Multi-label: one output per label, each an
independent yes/no: sigmoid/BCEWithLogitsLoss, never a softmax that makes labels compete nor a
multi-class cross-entropy; per-label BCE at initialisation is near ln 2 (0.693) when the logits
start near 0 (lower is fine: a bias set to the labels' log prior starts lower, Karpathy's "init well").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnncheck.checks.base import Finding, Status

DIM_NAMES = {0: "the batch", 1: "the classes", 2: "the height", 3: "the width"}
ROWSUM_TOL = 1e-3


@dataclass(frozen=True)
class OutputLayout:
    """The shape of a fresh model's outputs and the dimensions they are normalised over."""
    shape: tuple[int, ...]  # without the batch dimension
    normalised: tuple[tuple[int, str], ...]  # (dimension, "probabilities" | "log_probabilities")
    target_shape: tuple[int, ...]  # a target's shape without the batch (masks: H, W at the model's size)


def output_layout(out, target_shape) -> OutputLayout:
    """Which dimensions of `out` sum to 1 (probabilities) or whose exp sums to 1 (log-probabilities)."""
    import torch

    out = out.detach().float()
    found = []
    if bool(torch.isfinite(out).all()) and out.ndim >= 2:
        for dim in range(out.ndim):
            if out.shape[dim] < 2:
                continue
            if float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-6 and \
                    torch.allclose(out.sum(dim), torch.ones(()), atol=ROWSUM_TOL):
                found.append((dim, "probabilities"))
            elif float(out.max()) <= 1e-6 and torch.allclose(out.exp().sum(dim), torch.ones(()), atol=ROWSUM_TOL):
                found.append((dim, "log_probabilities"))
    return OutputLayout(tuple(out.shape[1:]), tuple(found), tuple(int(v) for v in target_shape))


def segmentation_findings(layout: OutputLayout, classes: int, loss: str) -> list:
    findings = []
    shape = layout.shape
    if len(shape) != 3:
        head = f"a segmentation model outputs N,C,H,W scores; this one outputs N,{','.join(map(str, shape))}"
        return [Finding(Status.FAIL, f"{head}: return one score map per class at the masks' size (a fully "
                        "convolutional head, no flatten/linear layer)", evidence={"output_shape": list(shape)},
                        headline=head)]
    channels, size = shape[0], shape[1:]
    if channels < classes:
        head = f"the model outputs {channels} channel(s) but the masks hold {classes} classes"
        findings.append(Finding(Status.FAIL, f"{head}: classes {channels}..{classes - 1} can never be predicted "
                                "(and cross-entropy rejects their ids); give the last layer one channel per class",
                                evidence={"output_channels": channels, "classes": classes}, headline=head))
    elif channels > classes:
        findings.append(Finding(Status.WARN, f"the model outputs {channels} channels for {classes} classes; channels "
                                f"{classes}..{channels - 1} are never a target",
                                evidence={"output_channels": channels, "classes": classes}))
    if tuple(size) != layout.target_shape:
        head = (f"the model's score maps are {size[0]}x{size[1]} but the masks are {layout.target_shape[0]}x"
                f"{layout.target_shape[1]} at the model's input size")
        findings.append(Finding(Status.FAIL, f"{head}: upsample the logits to the input size (F.interpolate) or "
                                "change the decoder so every pixel gets a prediction",
                                evidence={"output_size": list(size), "mask_size": list(layout.target_shape)},
                                headline=head))
    findings += _normalisation_findings(layout, loss, exclusive=True)
    if loss == "bce" and classes > 2:
        findings.append(Finding(Status.WARN, f"binary cross-entropy on {classes} mutually exclusive pixel classes "
                                "scores each channel as an independent yes/no; use cross_entropy (per pixel)"))
    elif loss == "mse":
        findings.append(Finding(Status.WARN, "mean squared error on class masks trains slowly; use cross_entropy "
                                "per pixel (or add a Dice loss for rare classes)"))
    return findings


def multilabel_findings(layout: OutputLayout, classes: int, loss: str, head_module: str | None) -> list:
    findings = []
    units = math.prod(layout.shape) if layout.shape else 1
    if len(layout.shape) != 1 or units != classes:
        shown = ",".join(map(str, layout.shape))
        severity = Status.FAIL if units < classes or len(layout.shape) != 1 else Status.WARN
        head = f"the model outputs N,{shown} for {classes} labels"
        findings.append(Finding(severity, f"{head}: a multi-label model outputs one score per label (N,{classes})",
                                evidence={"output_shape": list(layout.shape), "labels": classes}, headline=head))
    if loss in ("cross_entropy", "nll"):
        head = f"{loss} on multi-label targets makes the labels compete for one probability mass"
        findings.append(Finding(Status.FAIL, f"{head}: a sample that carries two labels cannot have both near 1; "
                                "use BCEWithLogitsLoss (one sigmoid per label)", evidence={"loss": loss},
                                headline=head))
    normalised = [dim for dim, _ in layout.normalised if dim == 1]
    if loss == "bce" and (normalised or head_module in ("softmax", "log_softmax")):
        head = "a softmax head with binary cross-entropy on multi-label targets"
        findings.append(Finding(Status.FAIL, f"{head}: the softmax ties the labels' scores together (they sum to 1), "
                                f"so a sample with two labels is penalised whatever the model does; end the model with "
                                "logits and use BCEWithLogitsLoss", evidence={"final_activation": head_module},
                                headline=head))
    elif loss == "mse":
        findings.append(Finding(Status.WARN, "mean squared error on multi-label targets; use BCEWithLogitsLoss"))
    return findings


def _normalisation_findings(layout: OutputLayout, loss: str, exclusive: bool) -> list:
    """A softmax or log-softmax over a dimension other than the classes', or probabilities fed to a
    loss that applies log-softmax itself."""
    findings = []
    dims = {dim: kind for dim, kind in layout.normalised}
    wrong = [dim for dim in dims if dim != 1]
    if wrong and 1 not in dims:
        dim = wrong[0]
        kind = "softmax" if dims[dim] == "probabilities" else "log-softmax"
        head = f"the model's output is a {kind} over dimension {dim} ({DIM_NAMES.get(dim, dim)}), not over the classes"
        findings.append(Finding(Status.FAIL, f"{head}: each class's scores are shared out between the "
                                f"{'pixels of a row or column' if dim in (2, 3) else 'samples of a batch'} instead of "
                                "competing per pixel; use dim=1 (or drop it and train on logits with cross_entropy)",
                                evidence={"normalised_dim": dim}, headline=head))
        return findings
    if exclusive and dims.get(1) == "probabilities" and loss == "cross_entropy":
        head = "the model outputs probabilities (a softmax over the classes) and CrossEntropyLoss applies log_softmax again"
        findings.append(Finding(Status.FAIL, f"{head}: gradients shrink and training stalls; return logits",
                                headline=head))
    if exclusive and loss == "nll" and dims.get(1) != "log_probabilities":
        findings.append(Finding(Status.FAIL, "NLLLoss expects log-probabilities over the classes (dim 1); add "
                                "LogSoftmax(dim=1) or use cross_entropy on logits"))
    return findings


def initial_bce_findings(initial: float, tolerance: float) -> list:
    """Per-label BCE of a fresh multi-label model: ln 2 when its logits start near 0; far above it,
    the logits start large (a bad last-layer scale)."""
    expected = math.log(2)
    if initial <= (1 + tolerance) * expected:
        return []
    head = f"initial loss {initial:.3f} is far above ln 2 = {expected:.3f} per label"
    return [Finding(Status.WARN, f"{head}: the fresh model's logits start large; check the last layer's "
                    "initialisation (or set its bias to the labels' log prior)",
                    evidence={"initial_loss": initial, "expected_initial_loss": expected}, headline=head)]
