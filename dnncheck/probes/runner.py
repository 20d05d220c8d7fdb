"""The probe runner: the plan every probe follows, the budget guard around it, and what was done.

It receives sizes, tensors and callables (a fresh model, the loss, the settings), never the
Context: the Context asks it to plan once, before anything trains, and to run each probe under
its guard. A probe the guard stops raises ProbeCutShort (its checks report inconclusive); one the
user's model or loss cannot train raises ProbeUnavailable with the reason.
"""

from __future__ import annotations

from dnncheck.errors import ProbeCutShort, ProbeNotRun, ProbeUnavailable, UserError
from dnncheck.probes.budget import Budget
from dnncheck.probes.plan import PLANNERS, Calibration, PlanFacts, build_plan, completing_advice, round_up_ten


class ProbeRunner:
    def __init__(self, facts: PlanFacts, budget_seconds: float):
        self.facts = facts
        self.budget_seconds = budget_seconds
        self.plan = build_plan(facts, {})
        self.budget = Budget(budget_seconds, planned=())
        self._outcomes: dict[str, dict] = {}

    def plan_probes(self, requests: dict[str, tuple[dict, list[str]]], calibration=None, cost=None,
                    device_type: str = "cpu", cheaper=()) -> None:
        """Fix every requested probe's work (probe name -> (planner parameters, check ids)) and, from
        the model's `cost` (probes.cost.ModelCost) on this device type, leave out what cannot fit
        the budget; then, if anything trains, `calibration()` prepares (untimed: loading tensors is
        not probe work) a function whose run, timed, gives (seconds per step, per sample) for the
        estimate shown beside the prediction."""
        from dnncheck.probes.cost import speed_of

        self.plan = build_plan(self.facts, requests)
        self.plan.cost, self.plan.speed, self.plan.cheaper = cost, speed_of(device_type), tuple(cheaper)
        self.plan.select_affordable(self.budget_seconds)
        running = [n for n in self.plan.probes if n not in self.plan.not_run]
        self.budget = Budget(self.budget_seconds, planned=("calibration", *running))
        # a plan cut down to fit is already the prediction's doing: timing full-size steps of a
        # costly model would spend the budget the compact probes need
        if running and calibration is not None and not (self.plan.not_run or self.plan.compact):
            calibrate = calibration()
            try:
                with self.budget.timer("calibration"):
                    step, per_sample = calibrate()
            except UserError:
                raise
            except Exception:  # a model that cannot train says so in the checks that need it
                return
            self.plan.calibration = Calibration(step, per_sample)

    def planned(self, name: str, **params):
        """The plan's entry for probe `name`; a probe no selected check announced (a check run on
        its own) is planned now with `params`, the same way."""
        if name not in self.plan.probes:
            self.plan.probes[name] = PLANNERS[name](self.facts, **params)
        return self.plan.probes[name]

    def guarded(self, name: str, work):
        """Run `work(guard)` as probe `name`: timed against the budget, errors of the user's model
        or loss turned into ProbeUnavailable, a tripped guard into ProbeCutShort."""
        if name in self.plan.not_run:
            raise ProbeNotRun(name)
        guard = self.budget.guard(name)
        try:
            with self.budget.timer(name):
                run = work(guard)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:  # the user's model or loss cannot train on this data
            raise ProbeUnavailable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
        outcome = self._outcomes.setdefault(name, {"steps_done": 0, "cut_short": False})
        outcome["steps_done"] += run.steps
        outcome["cut_short"] = outcome["cut_short"] or run.stopped_by == "budget"
        if run.stopped_by == "budget":
            raise self._cut_short(name)
        return run

    def _cut_short(self, name: str) -> ProbeCutShort:
        """The exception for a probe the guard stopped, with a budget that would let it finish."""
        done = self._outcomes.get(name, {}).get("steps_done", 0)
        planned = self.plan[name].steps
        spent = self.budget.spent.get(name, 0.0)
        needed = spent * planned / max(1, done)
        return ProbeCutShort(name, done, planned, spent, self.budget.suggest(needed, self.budget.guards[name].seconds))

    def cut_short(self) -> list[str]:
        return [name for name, outcome in self._outcomes.items() if outcome["cut_short"]]

    def completing_budget(self) -> float | None:
        """One --budget for the audit under which every planned probe would finish: at the pace
        measured in this run (a cut-short probe's seconds per step times its planned steps, a probe
        never started at its estimate), with a 50% margin, and at least what the plan predicts for
        its full form. None when nothing was cut short and the plan left nothing out."""
        plan = self.plan
        if not self.cut_short() and not plan.message:
            return None
        needed = self.budget.spent.get("calibration", 0.0)
        for name, spec in plan.probes.items():
            if name in plan.not_run:
                continue
            outcome, spent = self._outcomes.get(name), self.budget.spent.get(name, 0.0)
            if outcome is None:
                needed += plan.estimate(name) or plan.predicted(name) or 0.0
            elif outcome["cut_short"]:
                needed += spent * spec.steps / max(1, outcome["steps_done"])
            else:
                needed += spent
        measured = round_up_ten(needed * 1.5) if self.cut_short() else 0.0
        return max(measured, plan.budget_for_full_plan if plan.message else 0.0)

    def budget_note(self) -> str | None:
        """The audit's one note on what its budget left undone and the one --budget that completes it."""
        budget = self.completing_budget()
        if budget is None:
            return None
        parts = [self.plan.reason] if self.plan.reason else []
        cut = self.cut_short()
        if cut:
            parts.append(f"not finished within the --budget guard ({self.budget_seconds:g} s): {', '.join(cut)} "
                         "(their checks are inconclusive)")
        return "; ".join(parts) + ". " + completing_advice(budget, self.plan.cheaper, "To complete every probe")

    @property
    def spent(self) -> dict[str, float]:
        return self.budget.spent

    def record(self) -> dict:
        """`model.probe_plan` for the JSON: the planned work per probe, and what was done of it."""
        plan = self.plan
        probes = []
        for name, spec in plan.probes.items():
            entry = spec.to_dict()
            estimate = plan.estimate(name)
            entry["estimated_seconds"] = None if estimate is None else round(estimate, 2)
            predicted = plan.predicted(name)
            entry["predicted_seconds"] = None if predicted is None else round(predicted, 2)
            entry["not_run"] = name in plan.not_run
            outcome = self._outcomes.get(name, {"steps_done": 0, "cut_short": False})
            entry.update(ran=name in self._outcomes, steps_done=outcome["steps_done"], cut_short=outcome["cut_short"],
                         spent_seconds=round(self.budget.spent.get(name, 0.0), 2))
            entry["spent_over_estimated_seconds"] = _ratio(entry["spent_seconds"], estimate, outcome["steps_done"], spec.steps)
            probes.append(entry)
        total = plan.estimated_total()
        compute = None
        if plan.cost is not None:
            compute = {**plan.cost.to_dict(), "device_type": plan.speed.name,
                       "flops_per_second": plan.speed.flops_per_second,
                       "seconds_per_activation": plan.speed.seconds_per_activation,
                       "not_run": list(plan.not_run), "message": plan.message}
        ran = [p for p in probes if p["spent_over_estimated_seconds"] and not p["cut_short"]]
        estimated_ran = sum(p["spent_seconds"] / p["spent_over_estimated_seconds"] for p in ran)  # scaled to the steps done
        return {"probes": probes, "budget_seconds": self.budget_seconds, "compute": compute, "cheaper": list(plan.cheaper),
                "estimated_seconds": None if total is None else round(total, 2),
                # measured / estimated seconds over the probes that ran to the end (1.0: exact; the
                # estimate is kept within 2x on the digits demo, 5k MNIST and the ant/bee photos).
                # Named *_seconds: it varies with the machine's load, as every *_seconds field may
                "spent_over_estimated_seconds": round(sum(p["spent_seconds"] for p in ran) / estimated_ran, 3) if estimated_ran else None,
                "calibration_seconds": round(self.budget.spent.get("calibration", 0.0), 2)}


def _ratio(spent: float, estimate: float | None, done: int, planned: int) -> float | None:
    """Measured over estimated seconds for a probe, scaled to the steps it did (a probe that stopped
    early at its target, e.g. the one-batch test, did less than the estimate assumed)."""
    if not estimate or not done or not planned:
        return None
    return round(spent / (estimate * min(1.0, done / planned)), 3)
