"""The user's optimizer and learning-rate schedule, as the probes rebuild them for every run.

`[train] optimizer` names any `torch.optim` optimizer (case and underscores ignored: "adadelta",
"RMSprop", "adamw") or a `pkg.module:factory` called as factory(params, lr=..., **optimizer_args);
`[train.optimizer_args]` are its keyword arguments. `[train] scheduler` names a
`torch.optim.lr_scheduler` class ("StepLR", "onecycle_lr") or a `pkg.module:factory` called as
factory(optimizer, **scheduler_args).

A probe is the first few epochs of the user's training, so a schedule is applied the way the user's
loop applies it, with one adjustment for schedules whose length is the whole training (said in the
plan, `describe_schedule`):
- per-epoch schedules (StepLR, MultiStepLR, ExponentialLR, ...) step once per probe epoch with the
  user's arguments: the probe sees the first epochs of their schedule;
- schedules that span the whole training are compressed onto the probe: OneCycleLR's total_steps
  becomes the probe's steps (stepped per batch), CosineAnnealingLR's T_max the probe's epochs;
- CyclicLR steps per batch with the user's arguments; ReduceLROnPlateau steps per epoch on the
  validation loss (the training loss when there is no validation split).
The learning-rate range test and the one-batch test use the optimizer at a fixed learning rate: they
measure the optimizer, not the schedule.
"""

from __future__ import annotations

import inspect

import torch

from dnncheck.errors import UserError, raised
from dnncheck.importing import import_object

# optimizers a probe cannot drive: LBFGS needs a closure per step, SparseAdam sparse gradients
UNSUPPORTED = {"lbfgs": "needs a closure at every step", "sparseadam": "takes sparse gradients only"}
PER_STEP_SCHEDULES = ("OneCycleLR", "CyclicLR")  # the user steps these after every batch
WHOLE_TRAINING = {"OneCycleLR": "total_steps", "CosineAnnealingLR": "T_max"}  # compressed onto the probe


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _classes(module, base) -> dict[str, type]:
    return {_key(n): c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}


def optimizer_classes() -> dict[str, type]:
    """{normalised name: class} of torch.optim's optimizers the probes can drive."""
    return {k: c for k, c in _classes(torch.optim, torch.optim.Optimizer).items() if k not in UNSUPPORTED}


def scheduler_classes() -> dict[str, type]:
    sched = torch.optim.lr_scheduler
    found = _classes(sched, sched.LRScheduler)
    found[_key("ReduceLROnPlateau")] = sched.ReduceLROnPlateau  # not an LRScheduler subclass in every torch
    for name in ("lrscheduler", "chainedscheduler", "sequentiallr"):  # need other schedulers as arguments
        found.pop(name, None)
    return found


def is_factory(spec: str) -> bool:
    return ":" in spec


def optimizer_class(spec: str):
    """The torch.optim class named by `spec`, or None for a `pkg.module:factory`."""
    if is_factory(spec):
        return None
    known = optimizer_classes()
    if _key(spec) in UNSUPPORTED:
        raise UserError(f"[train] optimizer = {spec!r}: the probes cannot use it ({UNSUPPORTED[_key(spec)]}); "
                        f"name another torch.optim optimizer ({', '.join(c.__name__ for c in known.values())})")
    if _key(spec) not in known:
        raise UserError(f"[train] optimizer = {spec!r}: torch.optim has no such optimizer; valid names: "
                        f"{', '.join(sorted(c.__name__ for c in known.values()))} or pkg.module:factory")
    return known[_key(spec)]


def scheduler_class(spec: str):
    if is_factory(spec):
        return None
    known = scheduler_classes()
    if _key(spec) not in known:
        raise UserError(f"[train] scheduler = {spec!r}: torch.optim.lr_scheduler has no such schedule the probes "
                        f"can use; valid names: {', '.join(sorted(c.__name__ for c in known.values()))} "
                        "or pkg.module:factory")
    return known[_key(spec)]


def build_optimizer(spec: str, params, lr: float, weight_decay: float, momentum: float, args: dict,
                    search_dirs=()):
    """The user's optimizer over `params`. The legacy keys [train] weight_decay and momentum apply
    where the optimizer takes them (momentum: SGD only, as documented) unless optimizer_args set them."""
    cls = optimizer_class(spec)
    if cls is None:
        factory = import_object(spec, "[train] optimizer", tuple(search_dirs))
        return _called(factory, spec, "optimizer", (params,), {"lr": lr, **args}, torch.optim.Optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {"lr": lr}
    if "weight_decay" in accepted:
        kwargs["weight_decay"] = weight_decay
    if cls is torch.optim.SGD:
        kwargs["momentum"] = momentum
    kwargs.update(args)
    return _called(cls, spec, "optimizer", (params,), kwargs, torch.optim.Optimizer)


def _called(fn, spec: str, key: str, positional: tuple, kwargs: dict, expected: type):
    try:
        made = fn(*positional, **kwargs)
    except (Exception, SystemExit) as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in ("lr",))
        raise UserError(f"[train] {key} = {spec!r} with ({args}): building it {raised(exc)}; "
                        f"fix [train.{key}_args]") from None
    if not isinstance(made, expected) and not (key == "scheduler" and hasattr(made, "step")):
        raise UserError(f"[train] {key} = {spec!r}: the factory returned {type(made).__name__}, not a "
                        f"{expected.__name__}")
    return made


def build_scheduler(spec: str | None, optimizer, args: dict, epochs: int, steps_per_epoch: int, search_dirs=()):
    """(scheduler, per_step) for a probe of `epochs` x `steps_per_epoch` steps, or (None, False)."""
    if not spec:
        return None, False
    cls = scheduler_class(spec)
    if cls is None:
        factory = import_object(spec, "[train] scheduler", tuple(search_dirs))
        made = _called(factory, spec, "scheduler", (optimizer,), dict(args), object)
        return made, type(made).__name__ in PER_STEP_SCHEDULES
    kwargs = dict(args)
    name = cls.__name__
    if name == "OneCycleLR":
        kwargs.setdefault("max_lr", optimizer.param_groups[0]["lr"])
        for key in ("epochs", "steps_per_epoch"):
            kwargs.pop(key, None)
        kwargs["total_steps"] = max(1, epochs * steps_per_epoch)
    elif name == "CosineAnnealingLR":
        kwargs["T_max"] = max(1, epochs)
    elif name == "CyclicLR":
        kwargs.setdefault("base_lr", optimizer.param_groups[0]["lr"] / 10)
        kwargs.setdefault("max_lr", optimizer.param_groups[0]["lr"])
    return _called(cls, spec, "scheduler", (optimizer,), kwargs, object), name in PER_STEP_SCHEDULES


def describe_optimizer(spec: str, args: dict) -> str:
    cls = optimizer_class(spec)
    name = spec if cls is None else cls.__name__
    return name + (f"({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else "")


def describe_schedule(spec: str | None, args: dict) -> str | None:
    """How the probes apply the user's schedule, for the plan and the report."""
    if not spec:
        return None
    cls = scheduler_class(spec)
    name = spec if cls is None else cls.__name__
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k not in (WHOLE_TRAINING.get(name), "epochs",
                                                                         "steps_per_epoch"))
    text = f"{name}({shown})"
    if name in WHOLE_TRAINING:
        return f"{text}, its {WHOLE_TRAINING[name]} compressed onto each probe's length"
    if name in PER_STEP_SCHEDULES:
        return f"{text}, stepped after every batch"
    if name == "ReduceLROnPlateau":
        return f"{text}, stepped each probe epoch on the validation loss"
    return f"{text}, stepped once per probe epoch (a probe sees the first epochs of the schedule)"


def validate(spec: str, args: dict, scheduler: str | None, scheduler_args: dict, lr: float, weight_decay: float,
             momentum: float, search_dirs=()) -> None:
    """Build the optimizer and schedule once on a stand-in parameter so that a bad name or argument
    is exit 2 before any check runs (UserError naming the key)."""
    stand_in = [torch.nn.Parameter(torch.zeros(2, 2))]
    optimizer = build_optimizer(spec, stand_in, lr, weight_decay, momentum, args, search_dirs)
    build_scheduler(scheduler, optimizer, scheduler_args, 2, 2, search_dirs)
