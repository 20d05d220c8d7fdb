"""Short, seeded training runs that imitate the user's [train] settings.

A run records the loss of every step, per-epoch train/val loss and accuracy, per-layer gradient
norms, and stops at its epoch cap, at its time allotment, or on a non-finite loss. On CUDA it uses
bf16 autocast and keeps the (small) tensors on the device; on CPU it runs in float32.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

EVAL_BATCH = 1024
MAX_GRAD_RECORDS = 200  # gradient norms are kept for at most this many steps per run
MIN_GRAD_EVERY = 4  # ... and at most every 4th step (a per-step host sync costs ~5% on small nets)


@dataclass(frozen=True)
class ProbeSettings:
    optimizer: str
    lr: float
    batch_size: int
    max_epochs: int
    seconds: float
    seed: int
    device: str = "cpu"
    weight_decay: float = 0.0
    momentum: float = 0.9
    record_epochs: bool = True  # evaluate train/val after each epoch (cross-fitting skips it)


@dataclass
class ProbeRun:
    name: str
    model: nn.Module
    task: str
    settings: ProbeSettings
    train_samples: int
    val_samples: int
    initial_loss: float = math.nan
    step_loss: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    grad_steps: list[int] = field(default_factory=list)
    stopped_by: str = "epochs"
    seconds: float = 0.0
    val_outputs: torch.Tensor | None = None  # final model's outputs on the validation tensors

    @property
    def steps(self) -> int:
        return len(self.step_loss)

    def curves(self) -> dict:
        """Plain lists for reports and the training-curves check."""
        keys = ("train_loss", "val_loss", "train_acc", "val_acc")
        return {"step_loss": self.step_loss, **{k: [e.get(k) for e in self.epochs] for k in keys}}

    def summary(self) -> dict:
        return {"name": self.name, "epochs": len(self.epochs), "steps": self.steps, "seconds": round(self.seconds, 2),
                "stopped_by": self.stopped_by, "train_samples": self.train_samples,
                "val_samples": self.val_samples, "device": self.settings.device}


def make_optimizer(name: str, params, s: ProbeSettings):
    if name == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.lr, weight_decay=s.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


def autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def forward_all(model: nn.Module, x: torch.Tensor, device: str, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Outputs for every row of x in eval mode, as float32 on the CPU."""
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad(), autocast(device):
        for chunk in torch.split(x, batch):
            outs.append(model(chunk.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def mean_loss(loss_fn, out: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(loss_fn(out, y))


def accuracy(out: torch.Tensor, y: torch.Tensor, task: str) -> float | None:
    if task != "classification" or out.ndim != 2 or out.shape[1] < 2:
        return None
    return float((out.argmax(1) == y).float().mean())


def train_probe(name: str, model: nn.Module, loss_fn, train: tuple, val: tuple | None, task: str,
                settings: ProbeSettings, progress=None) -> ProbeRun:
    """Train `model` in place and return its record. train/val are (x, y) CPU tensors."""
    device = settings.device
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    x_train, y_train = (t.to(device, non_blocking=True) for t in train)
    model.to(device).train()
    if device.startswith("cuda") and x_train.ndim == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        # tensor cores prefer NHWC for convolutions; the small probe sets stay on the device
        model.to(memory_format=torch.channels_last)
        x_train = x_train.contiguous(memory_format=torch.channels_last)
    run = ProbeRun(name, model, task, settings, len(x_train), 0 if val is None else len(val[0]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(settings.optimizer, params, settings) if params else None
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batch = min(settings.batch_size, len(x_train))
    steps_per_epoch = max(1, len(x_train) // batch)  # drop the last partial batch, as DataLoader(drop_last=True)
    grad_every = max(MIN_GRAD_EVERY, (steps_per_epoch * settings.max_epochs) // MAX_GRAD_RECORDS)
    start = time.perf_counter()
    deadline = start + settings.seconds
    run.initial_loss = _initial_loss(model, loss_fn, x_train, y_train, device)
    task_bar = progress.task(f"probe: {name}", total=settings.max_epochs) if progress else None
    for epoch in range(settings.max_epochs):
        order = torch.randperm(len(x_train), generator=gen)[: steps_per_epoch * batch].to(device)
        losses, correct = [], []
        for step in range(steps_per_epoch):
            idx = order[step * batch:(step + 1) * batch]
            with autocast(device):
                out = model(x_train[idx])
                loss = loss_fn(out, y_train[idx])
            if task == "classification" and out.ndim == 2 and out.shape[1] > 1:
                correct.append((out.detach().argmax(1) == y_train[idx]).float().mean())
            if optimizer is not None and loss.requires_grad:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if run.steps % grad_every == 0:
                    _record_grads(run, named)
                optimizer.step()
            losses.append(loss.detach().float())
            run.step_loss.append(math.nan)  # placeholder, filled below in one transfer
            # a host sync per step is free on the CPU; on CUDA look every 16 steps
            if (step % 16 == 0 or not device.startswith("cuda")) and not math.isfinite(float(loss.detach())):
                run.stopped_by = "non-finite loss"
                break
            if time.perf_counter() > deadline:
                run.stopped_by = "budget"
                break
        values = torch.stack(losses).cpu().tolist()
        run.step_loss[-len(values):] = values
        if settings.record_epochs:
            train_acc = float(torch.stack(correct).mean()) if correct else None
            run.epochs.append(_epoch_record(epoch + 1, model, loss_fn, val, task, device, values, train_acc))
        else:
            run.epochs.append({"epoch": epoch + 1, "train_loss": float(np.mean(values)) if values else math.nan})
        if task_bar:
            task_bar.advance()
        if run.stopped_by != "epochs" or not all(math.isfinite(v) for v in values):
            if run.stopped_by == "epochs":
                run.stopped_by = "non-finite loss"
            break
    if task_bar:
        task_bar.close()
    if val is not None:
        run.val_outputs = forward_all(model, val[0], device)
    run.seconds = time.perf_counter() - start
    return run


def _initial_loss(model, loss_fn, x, y, device) -> float:
    """The loss before any update, on up to 512 training samples (train-mode BatchNorm)."""
    with torch.no_grad(), autocast(device):
        try:
            return float(loss_fn(model(x[:512]), y[:512]))
        except Exception:
            return math.nan


def _record_grads(run: ProbeRun, named) -> None:
    grads = [p.grad for _, p in named]
    if not grads or any(g is None for g in grads):
        present = [(n, p.grad) for n, p in named if p.grad is not None]
        names, grads = [n for n, _ in present], [g for _, g in present]
    else:
        names = [n for n, _ in named]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads)).float().cpu().tolist()
    for n, v in zip(names, norms):
        run.grad_norms.setdefault(n, []).append(v)
    run.grad_steps.append(run.steps)


def _epoch_record(epoch, model, loss_fn, val, task, device, step_losses, train_acc) -> dict:
    """Train loss and accuracy averaged over the epoch's steps (as a training log shows them; no
    extra pass over the training data) and a full pass over validation."""
    record = {"epoch": epoch, "train_loss": float(np.mean(step_losses)) if step_losses else math.nan,
              "train_acc": train_acc}
    if val is not None:
        out = forward_all(model, val[0], device)
        try:
            record["val_loss"] = mean_loss(loss_fn, out, val[1])
        except Exception:
            record["val_loss"] = math.nan
        record["val_acc"] = accuracy(out, val[1], task)
    return record
