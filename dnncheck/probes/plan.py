"""The probe plan: how much each probe trains, decided before anything trains.

Every number here is a function of the data's sizes and the user's settings, never of the
machine, so two audits of the same data with the same seed do the same work and reach the same
verdicts on a quiet laptop, a busy CI runner or a GPU. `--budget` only guards (probes/budget.py).
A faster machine does not buy more evidence automatically: `probe.epochs` and
`probe.max_train_samples` are the user's levers for that.

The step targets below were sized on the 2-core reference machine: the whole default plan takes
about 9 s on scikit-learn's digits and 44 s on 5,000 MNIST digits, a seventh of the default budget
(README, "How probes work").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from dnncheck.probes.budget import SHARES

# Target optimizer steps per probe. Epoch-based probes round up to whole epochs.
FIT_STEPS = 300  # the shared "trained briefly on train" run
MIN_FIT_EPOCHS = 5  # enough epochs for a curve with an onset (training-curves, overfit)
MAX_AUTO_EPOCHS = 15  # small data: more than 15 passes adds little to a probe
NORMALIZATION_STEPS = 150  # the comparison run; compared with the fit run's first steps
LABEL_NOISE_FOLD_STEPS = 100  # per cross-fitting fold
SHUFFLED_STEPS = 100  # shuffled-label memorisation run
TRIGGER_STEPS = 150  # planted-trigger run
MIN_SIDE_EPOCHS = 2  # comparison runs see at least two passes over their data
CALIBRATION_STEPS = 10  # at most this many timed training steps (after two warm-ups) for the time estimate


@dataclass(frozen=True)
class PlanFacts:
    """What the plan depends on: sizes and settings, nothing measured on the machine."""

    train_samples: int  # the probes' training subsample (at most probe.max_train_samples)
    val_samples: int  # the probes' validation subsample (0 without a validation/test split)
    full_train: int  # every training sample (cross-fitting predicts each one)
    batch_size: int
    epochs: int | None  # probe.epochs when the user set it, else None (planned here)
    max_train_samples: int

    @property
    def batch(self) -> int:
        return max(1, min(self.batch_size, self.train_samples))

    def steps_per_epoch(self, samples: int | None = None) -> int:
        """Full batches per epoch (the last partial batch is dropped, as DataLoader(drop_last=True))."""
        n = self.train_samples if samples is None else samples
        return max(1, n // max(1, min(self.batch_size, n)))


@dataclass(frozen=True)
class PlannedProbe:
    name: str
    kind: str  # "epochs" | "range-test" | "one-batch"
    what: str  # one line for people
    runs: int  # 1, or one per cross-fitting fold
    epochs: int  # per run (0 for step-based probes)
    steps: int  # planned optimizer steps over all runs (a maximum where the probe may stop early)
    batch_size: int
    train_samples: int  # per run
    eval_samples: int  # samples evaluated without training, in total
    evaluate_epochs: bool = False  # validation loss/accuracy recorded after every epoch
    checks: tuple[str, ...] = ()
    compact: bool = False  # the reduced variant a costly model gets (COMPACT below)
    val_samples: int | None = None  # validation samples evaluated (None: all of the plan's)

    @property
    def share(self) -> float:
        return SHARES.get(self.name, 0.0)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["checks"] = list(self.checks)
        out["share"] = self.share
        return out


def _epochs_for(target_steps: int, steps_per_epoch: int, low: int, high: int) -> int:
    return int(min(high, max(low, math.ceil(target_steps / steps_per_epoch))))


def fit_epochs(f: PlanFacts) -> int:
    if f.epochs is not None:
        return f.epochs
    return _epochs_for(FIT_STEPS, f.steps_per_epoch(), MIN_FIT_EPOCHS, MAX_AUTO_EPOCHS)


def _epoch_probe(name: str, what: str, f: PlanFacts, epochs: int, eval_each_epoch: bool, final_eval: bool = True,
                 runs: int = 1, samples: int | None = None) -> PlannedProbe:
    n = f.train_samples if samples is None else samples
    steps = epochs * f.steps_per_epoch(n) * runs
    evals = (f.val_samples * epochs if eval_each_epoch else 0) + (f.val_samples if final_eval else 0)
    return PlannedProbe(name, "epochs", what, runs, epochs, steps, min(f.batch_size, n), n, evals, eval_each_epoch)


def plan_fit(f: PlanFacts) -> PlannedProbe:
    epochs = fit_epochs(f)
    source = "probe.epochs" if f.epochs is not None else f"about {FIT_STEPS} steps, {MIN_FIT_EPOCHS}-{MAX_AUTO_EPOCHS} epochs"
    return _epoch_probe("fit", f"the model trained briefly on train ({epochs} epochs: {source})", f, epochs, True)


def _side_epochs(f: PlanFacts, target_steps: int) -> int:
    """Epochs of a comparison run: about `target_steps`, never more than the fit run."""
    return _epochs_for(target_steps, f.steps_per_epoch(), MIN_SIDE_EPOCHS, max(MIN_SIDE_EPOCHS, fit_epochs(f)))


def plan_normalization(f: PlanFacts) -> PlannedProbe:
    epochs = _side_epochs(f, NORMALIZATION_STEPS)
    return _epoch_probe("normalization", f"the same model on differently normalised inputs ({epochs} epochs)", f,
                        epochs, False, final_eval=False)


def label_noise_fold_samples(f: PlanFacts, folds: int) -> int:
    """Training samples of one fold's probe: the other folds, capped at max_train_samples."""
    return min(f.max_train_samples, f.full_train - math.ceil(f.full_train / folds))


def plan_label_noise(f: PlanFacts, folds: int = 4) -> PlannedProbe:
    n = label_noise_fold_samples(f, folds)
    epochs = _epochs_for(LABEL_NOISE_FOLD_STEPS, f.steps_per_epoch(n), 1, MAX_AUTO_EPOCHS)
    probe = _epoch_probe("label-noise", f"one fresh probe per cross-fitting fold ({folds} folds x {epochs} epochs)", f,
                         epochs, False, final_eval=False, runs=folds, samples=n)
    # each fold predicts its held-out samples and embeds a reference set for the deep k-NN vote
    from dnncheck.probes.crossfit import DEEP_KNN_REFERENCE

    return replace(probe, eval_samples=f.full_train + folds * min(n, DEEP_KNN_REFERENCE))


def plan_shuffled(f: PlanFacts) -> PlannedProbe:
    epochs = _side_epochs(f, SHUFFLED_STEPS)
    return _epoch_probe("overfit-shuffled", f"the model on randomly permuted labels ({epochs} epochs)", f, epochs,
                        False, final_eval=False)


def plan_trigger(f: PlanFacts) -> PlannedProbe:
    epochs = _side_epochs(f, TRIGGER_STEPS)
    return _epoch_probe("pixel-trigger", f"the model with a planted one-pixel trigger ({epochs} epochs)", f, epochs,
                        False, final_eval=True)


def plan_one_batch(f: PlanFacts, batch: int = 32, max_steps: int = 200) -> PlannedProbe:
    n = max(1, min(batch, f.full_train))
    return PlannedProbe("overfit-batch", "one-batch", f"fit one batch of {n} (at most {max_steps} steps)", 1, 0,
                        max_steps, n, n, 0)


def plan_range_test(f: PlanFacts, steps: int = 100) -> PlannedProbe:
    return PlannedProbe("learning-rate", "range-test", f"learning-rate range test (at most {steps} steps)", 1, 0,
                        steps, f.batch, f.train_samples, 0)


# The compact plan: what a model too costly for the full plan on its device type still gets (a
# resnet18 at 224 px on a 2-core CPU: 3.6 GFLOP per sample). The probes that decide the most per
# sample trained run small and fixed, so the evidence is still a function of the data and the
# settings only: the one-batch test on 8 samples (a correct model memorises them in a few steps;
# Karpathy's "overfit one batch"), a range test of 30 steps on batches of 8 from 32 samples, and a short fit (4
# epochs over 48 stratified training samples in batches of 8, 64 validation samples evaluated
# after each) that loss-sanity, gradient-health, training-curves, imbalance and separability read.
# Label noise gets a linear head on the model's frozen (untrained) features instead of one trained
# model per fold: one forward pass over the training split. Comparison runs (normalization,
# shuffled labels, planted trigger) have no compact form: their checks judge their other evidence.
COMPACT_BATCH = 8  # the one-batch test
COMPACT_BATCH_STEPS = 40
COMPACT_RANGE_STEPS = 30
COMPACT_RANGE_BATCH = 8
COMPACT_RANGE_TRAIN = 32  # the range test's batches are drawn from these (stratified): a model from scratch
# shows in 30 steps on 32 samples at which rates its loss falls and where it explodes; on random
# batches of a few hundred photos it barely moves at any rate
COMPACT_FIT_TRAIN = 48
COMPACT_FIT_VAL = 64
COMPACT_FIT_BATCH = 8  # resnet18 at 224 px keeps about 75 MB of activations per sample for backward
COMPACT_FIT_EPOCHS = 4


def compact_one_batch(f: PlanFacts, batch: int = 32, max_steps: int = 200) -> PlannedProbe:
    n = max(1, min(batch, COMPACT_BATCH, f.full_train))
    steps = min(max_steps, COMPACT_BATCH_STEPS)
    return PlannedProbe("overfit-batch", "one-batch", f"fit one batch of {n} (at most {steps} steps; compact)", 1, 0,
                        steps, n, n, 0, compact=True)


def compact_range_test(f: PlanFacts, steps: int = 100) -> PlannedProbe:
    n, batch = min(steps, COMPACT_RANGE_STEPS), min(f.batch, COMPACT_RANGE_BATCH)
    samples = min(f.train_samples, COMPACT_RANGE_TRAIN)
    return PlannedProbe("learning-rate", "range-test", f"learning-rate range test ({n} steps of {batch} drawn from "
                        f"{samples} samples; compact)", 1, 0, n, batch, samples, 0, compact=True)


def compact_fit(f: PlanFacts) -> PlannedProbe:
    n = min(f.train_samples, COMPACT_FIT_TRAIN)
    batch = min(f.batch_size, COMPACT_FIT_BATCH, n)
    val = min(f.val_samples, COMPACT_FIT_VAL)
    steps = COMPACT_FIT_EPOCHS * max(1, n // batch)
    return PlannedProbe("fit", "epochs", f"the model trained briefly on {n} training samples ({COMPACT_FIT_EPOCHS} "
                        f"epochs in batches of {batch}; compact)", 1, COMPACT_FIT_EPOCHS, steps, batch, n,
                        val * (COMPACT_FIT_EPOCHS + 1), True, compact=True, val_samples=val)


def compact_label_noise(f: PlanFacts, folds: int = 4) -> PlannedProbe:
    return PlannedProbe("label-noise", "features", f"a linear head on the model's frozen features ({folds} folds; "
                        "compact)", 1, 0, 0, f.batch, 0, f.train_samples, compact=True)


COMPACT = {
    "overfit-batch": compact_one_batch,
    "learning-rate": compact_range_test,
    "fit": compact_fit,
    "label-noise": compact_label_noise,
}
# A probe compared with another's run needs that run in its full form.
COMPARED_WITH = {"normalization": "fit"}

# name -> planner(facts, **parameters the requesting check passes)
PLANNERS = {
    "fit": plan_fit,
    "normalization": plan_normalization,
    "label-noise": plan_label_noise,
    "overfit-batch": plan_one_batch,
    "overfit-shuffled": plan_shuffled,
    "pixel-trigger": plan_trigger,
    "learning-rate": plan_range_test,
}
assert set(PLANNERS) <= set(SHARES)


@dataclass(frozen=True)
class Calibration:
    """Seconds per training step (at the plan's batch size) and per evaluated sample, timed on a
    few steps of a fresh model: used only to estimate, never to decide."""

    step_seconds: float
    eval_sample_seconds: float


# What runs first when the whole plan does not fit the budget: the cheap, decisive probes, then the
# shared fit run most checks read, then the runs one check each reads.
PRIORITY = ("overfit-batch", "learning-rate", "fit", "normalization", "overfit-shuffled", "pixel-trigger",
            "label-noise")
# Which compact probe is made whole first when there is room: the fit seven checks read (and the
# normalization comparison needs), then the one-batch test, the range test, label noise.
DEPTH_PRIORITY = ("fit", "overfit-batch", "learning-rate", "label-noise")
PLAN_MARGIN = 0.7  # the predicted work may fill this share of the budget (predictions are within ~2x)


@dataclass
class ProbePlan:
    facts: PlanFacts
    probes: dict[str, PlannedProbe]
    calibration: Calibration | None = None
    cost: object | None = None  # probes.cost.ModelCost of the model at its input size
    speed: object | None = None  # probes.cost.DeviceSpeed of the device type
    not_run: tuple[str, ...] = ()  # probes left out because their predicted cost does not fit the budget
    params: dict = field(default_factory=dict)  # name -> the planner parameters the checks asked with
    message: str = ""  # the one sentence that says what runs and what does not, when something does not
    reason: str = ""  # the message without its advice (the audit's note gives one budget: ProbeRunner.budget_note)
    cheaper: tuple[str, ...] = ()  # settings that make the probes cheaper (Context.cheaper_settings)
    full_seconds: float = 0.0  # the predicted time of the full plan (before compact variants)

    def predicted(self, name: str) -> float | None:
        """Seconds probe `name` is predicted to take on this device type (from the model's cost, not a clock)."""
        if self.cost is None or self.speed is None:
            return None
        return self.seconds_of(self.probes[name])

    @property
    def compact(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.probes.items() if p.compact)

    def seconds_of(self, spec: PlannedProbe) -> float:
        return self.cost.train_seconds(self.speed, spec.steps, spec.batch_size) + self.cost.eval_seconds(
            self.speed, spec.eval_samples)

    def select_affordable(self, budget_seconds: float) -> None:
        """Fit the plan into the budget (with PLAN_MARGIN), from the predicted costs: first coverage,
        the compact form of every probe that has one, in PRIORITY order; then depth, each compact
        probe upgraded to its full form in DEPTH_PRIORITY order while the room lasts; then the runs
        with no compact form, whole: the shuffled-label and pixel-trigger runs (second evidence for
        checks that already judge without them) and the comparison runs whose basis runs in full.
        The whole fit seven checks read comes before a second opinion for one. What fits nowhere is
        left out."""
        if self.cost is None:
            return
        full = dict(self.probes)
        self.full_seconds = sum(self.seconds_of(p) for p in full.values())
        order = sorted(full, key=lambda n: PRIORITY.index(n) if n in PRIORITY else len(PRIORITY))
        room, chosen = budget_seconds * PLAN_MARGIN, {}
        for name in order:  # coverage
            if name not in COMPACT:
                continue
            spec = replace(COMPACT[name](self.facts, **self.params.get(name, {})), checks=full[name].checks)
            if self.seconds_of(spec) <= room:
                chosen[name], room = spec, room - self.seconds_of(spec)
        for name in sorted(chosen, key=lambda n: DEPTH_PRIORITY.index(n) if n in DEPTH_PRIORITY else len(order)):
            if chosen[name].compact:  # depth
                extra = self.seconds_of(full[name]) - self.seconds_of(chosen[name])
                if extra <= room:
                    chosen[name], room = full[name], room - extra
        for name in order:  # whole runs with no compact form
            if name in chosen:
                continue
            basis = COMPARED_WITH.get(name)
            basis_whole = basis is None or basis not in full or (basis in chosen and not chosen[basis].compact)
            if basis_whole and self.seconds_of(full[name]) <= room:
                chosen[name], room = full[name], room - self.seconds_of(full[name])
        self.probes = {name: chosen.get(name, spec) for name, spec in full.items()}
        self.not_run = tuple(n for n in order if n not in chosen)
        if self.not_run or self.compact:
            self.reason = self._say(budget_seconds)
            self.message = f"{self.reason}. {completing_advice(self.budget_for_full_plan, self.cheaper)}"

    @property
    def budget_for_full_plan(self) -> float:
        """The --budget under which the full plan is predicted to fit (with PLAN_MARGIN), in tens of seconds."""
        return round_up_ten(self.full_seconds / PLAN_MARGIN)

    def _say(self, budget_seconds: float) -> str:
        total = self.full_seconds
        full = [n for n in self.probes if n not in self.not_run and not self.probes[n].compact]
        device = self.speed.name
        parts = []
        if full:
            parts.append("running " + ", ".join(full))
        if self.compact:
            parts.append("compact: " + ", ".join(self.compact))
        parts.append("not run: " + (", ".join(self.not_run) or "none"))
        return (f"model probes need about {_duration(total)} of {device} time for this model "
                f"({self.cost.flops / 1e9:.3g} GFLOP per sample), more than --budget {budget_seconds:g} s allows: "
                f"{'; '.join(parts)}")

    def __getitem__(self, name: str) -> PlannedProbe:
        return self.probes[name]

    def estimate(self, name: str) -> float | None:
        """Estimated seconds for a probe on this machine, from the calibration."""
        c, p = self.calibration, self.probes[name]
        if c is None:
            return None
        relative = p.batch_size / max(1, self.facts.batch)  # a step on a smaller batch costs proportionally less
        return p.steps * c.step_seconds * min(1.0, relative) + p.eval_samples * c.eval_sample_seconds

    def estimated_total(self) -> float | None:
        values = [self.estimate(n) for n in self.probes]
        return None if not values or any(v is None for v in values) else float(sum(values))


def completing_advice(budget: float, cheaper, goal: str = "For the full plan") -> str:
    """'For the full plan run with --budget B, or make the probes cheaper: ...' (one budget, the alternatives)."""
    text = f"{goal} run with --budget {budget:g}"
    return text + (f", or make the probes cheaper: {'; '.join(cheaper)}" if cheaper else "")


def round_up_ten(seconds: float) -> float:
    return float(-(-seconds // 10) * 10)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"


def build_plan(facts: PlanFacts, requests: dict[str, tuple[dict, list[str]]]) -> ProbePlan:
    """requests: probe name -> (planner parameters, ids of the checks that use it)."""
    probes, params = {}, {}
    for name in SHARES:  # a stable order, the order the shares table lists
        if name in requests and name in PLANNERS:
            params[name], checks = requests[name]
            probes[name] = replace(PLANNERS[name](facts, **params[name]),
                                   checks=tuple(sorted(set(checks), key=_check_order)))
    return ProbePlan(facts, probes, params=params)


def _check_order(check_id: str) -> int:
    return int(check_id[3:]) if check_id[3:].isdigit() else 0
