"""The one training engine every probe uses: seeded epoch runs that imitate the user's [train]
settings, the learning-rate range test, the one-batch test, and the calibration behind the plan's
time estimate.

Each run does the work its plan fixes (epochs, or a step count) and stops early only for a reason
that is itself deterministic (a non-finite loss, a target reached, an exploded range test) or when
its budget guard trips; then `stopped_by` is "budget" and the caller treats the run as cut short.
On CUDA it uses bf16 autocast and keeps the (small) tensors on the device; on CPU it runs in float32.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dnncheck.probes.budget import Guard, NoGuard

EVAL_BATCH = 1024
EVAL_VALUES = 2**22  # input values per evaluation chunk (16 MB as float32)
DENSE_SCORES = 2**24  # segmentation: N,C,H,W output scores an initial-loss pass holds at once (64 MB)
DENSE_CLASSES = 32  # classes assumed where the engine does not know them (the bound stays a bound)
# on a GPU the chunk's activations live in its memory, not the host's: chunks 8x larger (222 photos
# at 224 px, whose bf16 activations take well under 1 GB) keep it busy between host copies
CUDA_EVAL_SCALE = 8
MAX_GRAD_RECORDS = 200  # gradient norms are kept for at most this many steps per run
MIN_GRAD_EVERY = 4  # ... and at most every 4th step (a per-step host sync costs ~5% on small nets)


@dataclass(frozen=True)
class ProbeSettings:
    optimizer: str
    lr: float
    batch_size: int
    max_epochs: int
    seed: int
    device: str = "cpu"
    weight_decay: float = 0.0
    momentum: float = 0.9
    record_epochs: bool = True  # evaluate on validation after each epoch (side runs skip it)
    optimizer_args: tuple = ()  # (key, value) pairs: [train.optimizer_args]
    scheduler: str | None = None  # [train] scheduler, applied by epoch runs only (probes/optim.py)
    scheduler_args: tuple = ()
    search_dir: str = ""  # where pkg.module:factory specs are imported from (the config's folder)


@dataclass
class ProbeRun:
    name: str
    model: nn.Module
    task: str
    settings: ProbeSettings
    train_samples: int
    val_samples: int
    planned_steps: int = 0
    initial_loss: float = math.nan
    step_loss: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    grad_steps: list[int] = field(default_factory=list)
    stopped_by: str = "plan"
    seconds: float = 0.0
    val_outputs: torch.Tensor | None = None  # final model's outputs on the validation tensors
    compact: bool = False  # the plan's compact variant (a few steps of a costly model: probes/plan.py)

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


@dataclass
class RangeTestRun:
    """Learning rates tried, raw and smoothed losses, and why the test ended."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped_by: str  # "end of range" | "loss exploded" | "budget"

    @property
    def steps(self) -> int:
        return len(self.lrs)


@dataclass
class OneBatchRun:
    losses: list[float]
    reached_params: bool  # the loss's gradient reaches the parameters
    stopped_by: str  # "target reached" | "plan" | "non-finite loss" | "detached" | "budget"
    pixel_errors: list[float] = field(default_factory=list)  # segmentation: misclassified share of the batch's pixels
    pixel_baseline: float | None = None  # segmentation: the error of the batch's commonest class painted everywhere

    @property
    def steps(self) -> int:
        return len(self.losses)


def request_determinism() -> None:
    """Ask torch for deterministic kernels where they exist. warn_only: where none exists (a few CUDA
    backward kernels) the usual one runs, silently. cuDNN's autotuner picks kernels by timing them,
    so it stays off; cuBLAS needs a fixed workspace, set before CUDA starts."""
    import os
    import warnings

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")


def make_optimizer(name: str, params, s: ProbeSettings):
    """The user's optimizer (probes/optim.py) at s.lr."""
    from dnncheck.probes.optim import build_optimizer

    return build_optimizer(name, params, s.lr, s.weight_decay, s.momentum, dict(s.optimizer_args),
                           (s.search_dir,) if s.search_dir else ())


def make_schedule(optimizer, s: ProbeSettings, steps_per_epoch: int):
    """(scheduler, per_step) for an epoch run of s.max_epochs epochs, or (None, False)."""
    from dnncheck.probes.optim import build_scheduler

    if optimizer is None:
        return None, False
    return build_scheduler(s.scheduler, optimizer, dict(s.scheduler_args), s.max_epochs, steps_per_epoch,
                           (s.search_dir,) if s.search_dir else ())


def autocast(device: str):
    """bf16 autocast on a GPU that computes bf16 natively (Ampere and later); float32 elsewhere: on an
    older GPU (a T4) bf16 is emulated, slower than float32, and float16 would need loss scaling."""
    if device.startswith("cuda") and native_bf16():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", enabled=False)


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 had no emulation to exclude
        return bool(torch.cuda.is_bf16_supported())


def forward_all(model: nn.Module, x: torch.Tensor, device: str, batch: int = EVAL_BATCH,
                train: bool = False) -> torch.Tensor:
    """Outputs for every row of x, as float32 on the CPU, in chunks of at most `batch` rows and
    EVAL_VALUES input values: a conv net's first activations are ~10x its input, so 1,024 photos at
    64x64 held ~2 GB at once (digits and MNIST still go 1,024 at a time). Eval mode, or train mode
    with `train` (BatchNorm on each chunk's statistics, as in a training step; no gradients)."""
    per_row = max(1, x[0].numel()) if len(x) else 1
    values = EVAL_VALUES * (CUDA_EVAL_SCALE if device.startswith("cuda") else 1)
    batch = max(min(16, batch), min(batch, values // per_row))
    model.to(device)  # a fresh or user model is built on the CPU; probe models are there already
    was_training = model.training
    model.train(train)
    outs = []
    with torch.no_grad(), autocast(device):
        for chunk in torch.split(x, batch):
            outs.append(model(chunk.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def dense_pass(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, device: str) -> tuple[float, torch.Tensor]:
    """(mean loss, predicted class maps as uint8/int16 N,H,W) of a segmentation model over x, in eval
    mode, chunk by chunk: no more than about EVAL_VALUES output scores are held at once."""
    if not len(x):
        return math.nan, torch.empty(0, dtype=torch.uint8)
    was_training = model.training
    model.to(device).eval()
    total, rows, maps = 0.0, 0, []
    with torch.no_grad(), autocast(device):
        first = model(x[:1].to(device)).float()
        batch = max(1, EVAL_VALUES // max(1, first[0].numel()))
        for start in range(0, len(x), batch):
            out = model(x[start:start + batch].to(device, non_blocking=True)).float()
            target = y[start:start + batch].to(device)
            try:
                total += float(loss_fn(out, target)) * len(out)
            except Exception:
                total = math.nan
            rows += len(out)
            classes = out.argmax(1)
            maps.append(classes.to(torch.uint8 if out.shape[1] <= 256 else torch.int16).cpu())
    model.train(was_training)
    return total / rows, torch.cat(maps)


def dense_rows(scores_per_row: int, cap: int = 512) -> int:
    """Rows of a segmentation batch whose N,C,H,W scores stay within DENSE_SCORES (at least 16, at
    most `cap`): 512 MNIST masks of 11 classes, 16 photos at 224 px."""
    return max(16, min(cap, DENSE_SCORES // max(1, scores_per_row)))


def mean_loss(loss_fn, out: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(loss_fn(out, y))


def accuracy(out: torch.Tensor, y: torch.Tensor, task: str) -> float | None:
    if task != "classification" or out.ndim != 2 or out.shape[1] < 2:
        return None
    return float((out.argmax(1) == y).float().mean())


def train_step(model: nn.Module, loss_fn, optimizer, x: torch.Tensor, y: torch.Tensor, device: str,
               after_backward=None):
    """One forward/backward/update; returns (loss, outputs). No update when the loss does not
    reach any parameter (the caller diagnoses that)."""
    with autocast(device):
        out = model(x)
        loss = loss_fn(out, y)
    if optimizer is not None and loss.requires_grad:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
    return loss, out


def _prepare(model: nn.Module, x: torch.Tensor, device: str):
    """Model and inputs on the device; NHWC for convolutions on CUDA (tensor cores prefer it)."""
    model.to(device).train()
    x = x.to(device, non_blocking=True)
    if device.startswith("cuda") and x.ndim == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _start(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: ProbeSettings):
    """(inputs, targets) on the device, the trainable parameters, and their optimizer (None when
    nothing is trainable): the set-up every loop of the engine shares."""
    x = _prepare(model, x, settings.device)
    y = y.to(settings.device, non_blocking=True)
    params = [p for p in model.parameters() if p.requires_grad]
    return x, y, params, make_optimizer(settings.optimizer, params, settings) if params else None


def train_probe(name: str, model: nn.Module, loss_fn, train: tuple, val: tuple | None, task: str,
                settings: ProbeSettings, guard: Guard | None = None, progress=None) -> ProbeRun:
    """Train `model` in place for settings.max_epochs epochs and return its record. train/val are
    (x, y) CPU tensors. Stops early only on a non-finite loss or when `guard` trips."""
    device = settings.device
    guard = guard or NoGuard()
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    x_train, y_train, _, optimizer = _start(model, train[0], train[1], settings)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batch = min(settings.batch_size, len(x_train))
    steps_per_epoch = max(1, len(x_train) // batch)  # drop the last partial batch, as DataLoader(drop_last=True)
    run = ProbeRun(name, model, task, settings, len(x_train), 0 if val is None else len(val[0]),
                   planned_steps=steps_per_epoch * settings.max_epochs)
    grad_every = max(MIN_GRAD_EVERY, run.planned_steps // MAX_GRAD_RECORDS)
    schedule, per_step = make_schedule(optimizer, settings, steps_per_epoch)
    start = time.perf_counter()
    run.initial_loss = _initial_loss(model, loss_fn, x_train, y_train, device, task)
    task_bar = progress.task(f"probe: {name}", total=settings.max_epochs) if progress else None
    pending = []  # gradient norms still on the device: moved to the host once per epoch
    for epoch in range(settings.max_epochs):
        order = torch.randperm(len(x_train), generator=gen)[: steps_per_epoch * batch].to(device)
        losses, correct = [], []
        for step in range(steps_per_epoch):
            idx = order[step * batch:(step + 1) * batch]
            record = (lambda: pending.append(_grad_norms(run, named))) if run.steps % grad_every == 0 else None
            loss, out = train_step(model, loss_fn, optimizer, x_train[idx], y_train[idx], device, record)
            if per_step:
                schedule.step()
            if task == "classification" and out.ndim == 2 and out.shape[1] > 1:
                correct.append((out.detach().argmax(1) == y_train[idx]).float().mean())
            losses.append(loss.detach().float())
            run.step_loss.append(math.nan)  # placeholder, filled below in one transfer
            # a host sync per step is free on the CPU; on CUDA look every 16 steps
            if (step % 16 == 0 or not device.startswith("cuda")) and not math.isfinite(float(loss.detach())):
                run.stopped_by = "non-finite loss"
                break
            if run.steps < run.planned_steps and guard.expired():  # a finished run is never cut short
                run.stopped_by = "budget"
                break
        values = torch.stack(losses).cpu().tolist()
        run.step_loss[-len(values):] = values
        _keep_grad_norms(run, pending)
        train_acc = float(torch.stack(correct).mean()) if correct else None
        if settings.record_epochs:
            run.epochs.append(_epoch_record(epoch + 1, model, loss_fn, val, task, device, values, train_acc))
        else:
            run.epochs.append({"epoch": epoch + 1, "train_loss": float(np.mean(values)) if values else math.nan,
                               "train_acc": train_acc})
        if schedule is not None and not per_step:
            _step_per_epoch(schedule, run.epochs[-1])
        if task_bar:
            task_bar.advance()
        if run.stopped_by != "plan" or not all(math.isfinite(v) for v in values):
            if run.stopped_by == "plan":
                run.stopped_by = "non-finite loss"
            break
    if task_bar:
        task_bar.close()
    if optimizer is not None:  # a memoised run keeps its model, not the last step's gradients (45 MB for resnet18)
        optimizer.zero_grad(set_to_none=True)
    if val is not None and run.stopped_by != "budget":
        # segmentation: the predicted class maps, not N,C,H,W scores (2,000 masks of 21 classes at
        # 224 px would be 8 GB of float32)
        run.val_outputs = dense_pass(model, loss_fn, val[0], val[1], device)[1] if task == "segmentation" else \
            forward_all(model, val[0], device)
    run.seconds = time.perf_counter() - start
    return run


RANGE_SMOOTHING_STEPS = 100  # a range test this long smooths its loss with 0.9


def range_test(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, settings: ProbeSettings,
               lrs: np.ndarray, guard: Guard | None = None, explode_factor: float = 4.0,
               from_start: bool = False) -> RangeTestRun:
    """Learning-rate range test (Smith 2017): one step per learning rate in `lrs`, on batches drawn
    with a seeded generator; the loss is smoothed with a bias-corrected moving average (0.9 over 100
    steps; over fewer steps, e.g. a compact plan's 30, the same smoothing per decade of learning rate:
    0.9 ** (100 / steps)) and the test ends when it exceeds `explode_factor` times its minimum or is
    non-finite. `from_start` (the compact test on 32 samples, which the model soon memorises): the
    loss must exceed `explode_factor` times its first smoothed value, not its minimum - rising 4x
    from a memorised near-zero loss is a bump, not divergence."""
    guard = guard or NoGuard()
    device = settings.device
    x, y, _, optimizer = _start(model, x, y, settings)
    gen = torch.Generator().manual_seed(settings.seed)
    batch = min(settings.batch_size, len(x))
    run = RangeTestRun([], [], [], "end of range")
    avg, best = 0.0, math.inf
    beta = 0.9 ** (RANGE_SMOOTHING_STEPS / max(1, len(lrs)))
    for k, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        idx = torch.randint(0, len(x), (batch,), generator=gen).to(device)
        loss, _ = train_step(model, loss_fn, optimizer, x[idx], y[idx], device)
        value = float(loss.detach())
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (k + 1))
        run.lrs.append(float(lr))
        run.losses.append(value)
        run.smoothed.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > explode_factor * (run.smoothed[0] if from_start else best):
            run.stopped_by = "loss exploded"
            break
        best = min(best, smoothed)
        if guard.expired() and k + 1 < len(lrs):
            run.stopped_by = "budget"
            break
    return run


def fit_one_batch(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, settings: ProbeSettings,
                  max_steps: int, target_ratio: float, guard: Guard | None = None,
                  pixel_ratio: float | None = None) -> OneBatchRun:
    """Train on one fixed batch until the loss falls below `target_ratio` of its first value (or
    1e-3), for at most `max_steps` steps. With `pixel_ratio` (segmentation) the batch also counts as
    memorised once its pixel error falls to that share of the baseline's (the commonest class painted
    everywhere): a per-pixel cross-entropy keeps falling slowly long after the pixels are right
    (SegNet on 4 MNIST masks: under 1% of pixels wrong after 150 steps, the loss at 40% of its start)."""
    guard = guard or NoGuard()
    device = settings.device
    x, y, params, optimizer = _start(model, x, y, settings)
    run = OneBatchRun([], True, "plan")
    if pixel_ratio is not None:
        run.pixel_baseline = 1.0 - float(torch.bincount(y.reshape(-1).long().cpu()).max()) / max(1, y.numel())
    for step in range(max_steps):
        loss, out = train_step(model, loss_fn, optimizer, x, y, device)
        run.losses.append(float(loss.detach()))
        if run.pixel_baseline is not None:
            run.pixel_errors.append(_pixel_error(out, y))
            if run.pixel_errors[-1] <= pixel_ratio * run.pixel_baseline and loss.requires_grad:
                run.stopped_by = "target reached"
                break
        if not loss.requires_grad:
            run.reached_params, run.stopped_by = False, "detached"
            break
        if step == 0 and all(p.grad is None or not torch.any(p.grad != 0) for p in params):
            run.reached_params = False
        if not math.isfinite(run.losses[-1]):
            run.stopped_by = "non-finite loss"
            break
        if run.losses[-1] <= target_ratio * run.losses[0] or run.losses[-1] < 1e-3:
            run.stopped_by = "target reached"
            break
        if guard.expired() and step + 1 < max_steps:
            run.stopped_by = "budget"
            break
    return run


def _pixel_error(out: torch.Tensor, y: torch.Tensor) -> float:
    """Share of the batch's pixels whose top class is not the mask's (1.0 for outputs not N,C,H,W)."""
    with torch.no_grad():
        if out.ndim != 4 or out.shape[0] != y.shape[0] or out.shape[2:] != y.shape[1:]:
            return 1.0
        return float((out.argmax(1) != y.to(out.device)).float().mean())


def calibrate(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, settings: ProbeSettings,
              steps: int, eval_x: torch.Tensor | None = None) -> tuple[float, float]:
    """(seconds per training step at settings.batch_size, seconds per evaluated sample): the median
    of up to `steps` individually timed steps (fewer once they add up to half a second) after two
    warm-up steps, which pay one-time set-up. The median keeps one step slowed by another process
    from skewing it. For the time estimate only: nothing is decided by it."""
    device = settings.device
    x, y, _, optimizer = _start(model, x, y, settings)
    batch = min(settings.batch_size, len(x))
    xb, yb = x[:batch], y[:batch]
    for _ in range(2):
        train_step(model, loss_fn, optimizer, xb, yb, device)
    times: list[float] = []
    while len(times) < steps and sum(times) < 0.5:
        _sync(device)
        start = time.perf_counter()
        train_step(model, loss_fn, optimizer, xb, yb, device)
        _sync(device)
        times.append(time.perf_counter() - start)
    sample = (eval_x if eval_x is not None and len(eval_x) else x)[:EVAL_BATCH // 4]
    start = time.perf_counter()
    forward_all(model, sample, device)
    return float(np.median(times)), (time.perf_counter() - start) / max(1, len(sample))


def _step_per_epoch(schedule, epoch: dict) -> None:
    """Step an epoch schedule as the user's loop does; ReduceLROnPlateau reads the validation loss
    (the training loss when the run has no validation)."""
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        metric = epoch.get("val_loss")
        metric = epoch.get("train_loss") if metric is None or not math.isfinite(metric) else metric
        if metric is not None and math.isfinite(metric):
            schedule.step(metric)
        return
    schedule.step()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _initial_loss(model, loss_fn, x, y, device, task: str = "classification") -> float:
    """The loss before any update, on up to 512 training samples (train-mode BatchNorm); masks: as
    many as dense_rows allows."""
    rows = dense_rows(y[0].numel() * DENSE_CLASSES) if task == "segmentation" and len(y) else 512
    with torch.no_grad(), autocast(device):
        try:
            return float(loss_fn(model(x[:rows]), y[:rows]))
        except Exception:
            return math.nan


def _grad_norms(run: ProbeRun, named) -> tuple:
    """(step, parameter names, their gradient norms as one tensor left on the device): a host copy
    per record would stall a GPU every few steps."""
    present = [(n, p.grad) for n, p in named if p.grad is not None]
    if not present:
        return run.steps, [], None
    return run.steps, [n for n, _ in present], torch.stack(torch._foreach_norm([g for _, g in present])).float()


def _keep_grad_norms(run: ProbeRun, pending: list) -> None:
    """Move the epoch's pending gradient norms to the run's record (one host copy) and empty the list."""
    kept = [(step, names, norms) for step, names, norms in pending if norms is not None]
    pending.clear()
    if not kept:
        return
    host = torch.cat([norms for _, _, norms in kept]).cpu().tolist()
    at = 0
    for step, names, _ in kept:
        for n, v in zip(names, host[at:at + len(names)]):
            run.grad_norms.setdefault(n, []).append(v)
        at += len(names)
        run.grad_steps.append(step)


def _epoch_record(epoch, model, loss_fn, val, task, device, step_losses, train_acc) -> dict:
    """Train loss and accuracy averaged over the epoch's steps (as a training log shows them; no
    extra pass over the training data) and a full pass over validation."""
    record = {"epoch": epoch, "train_loss": float(np.mean(step_losses)) if step_losses else math.nan,
              "train_acc": train_acc}
    if val is not None and task == "segmentation":
        record["val_loss"], _ = dense_pass(model, loss_fn, val[0], val[1], device)
        record["val_acc"] = None
    elif val is not None:
        out = forward_all(model, val[0], device)
        try:
            record["val_loss"] = mean_loss(loss_fn, out, val[1])
        except Exception:
            record["val_loss"] = math.nan
        record["val_acc"] = accuracy(out, val[1], task)
    return record
