"""What every check is: an id, a slug, a checklist item, a docstring that `dnncheck explain`
prints, documented thresholds with defaults, the probes it will train (`probes(ctx)`, for the plan
made before anything trains), and two halves:

- `measure(ctx) -> <Check>Measurement`: what was computed on the user's data and model, as a frozen
  dataclass of plain values (how much data, whether a probe was cut short), or `Skipped(reason)`;
- `judge(measurement, thresholds) -> Verdict`: pure (no Context, no I/O, no clock): thresholds ->
  findings, status, summary, metrics, remedy, figures. Verdict tests build measurements by hand.

`run(ctx)` is the two composed. Checks never print, exit or render; they return results.
Thresholds are overridable in `[checks.<slug>]`, validated here so a typo names the key and the
closest valid one, and reach `judge` as a typed, frozen `<Check>Thresholds` record.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, ClassVar

from dnncheck.config import TASKS
from dnncheck.errors import ProbeCutShort, ProbeNotRun, UserError, closest
from dnncheck.results import CheckResult, Finding, Status


@dataclass(frozen=True)
class Verdict:
    """What a judge concludes from a measurement."""
    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    remedy: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A measurement that does not apply to this data (the check's status is skip)."""
    reason: str


@dataclass(frozen=True)
class ProbeGap:
    """A probe that did not give its evidence, as plain values: cut short by the budget guard
    (inconclusive: a warn, never a verdict) or unable to train the model (the reason)."""
    message: str
    cut_short: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)
    not_run: bool = False  # the plan left the probe out (over budget on this device): said as info

    @classmethod
    def of(cls, exc: Exception) -> "ProbeGap":
        if isinstance(exc, ProbeCutShort):
            return cls(str(exc), True, exc.evidence())
        if isinstance(exc, ProbeNotRun):
            return cls(str(exc), not_run=True, evidence={"not_run": True, "probe": exc.probe})
        return cls(str(exc))

    def finding(self, what: str, severity: Status = Status.WARN) -> Finding:
        if self.not_run:  # the audit says once what did not run and why; here, only what is missing
            return Finding(Status.INFO, self.message, evidence=dict(self.evidence))
        if self.cut_short:  # not finished is no evidence against the model: `what` (why it is missing) is not said
            return Finding(Status.WARN, self.message, evidence=dict(self.evidence), headline=self.headline)
        return Finding(severity, f"{what}: {self.message}")

    @property
    def headline(self) -> str:
        """The gap's first clause, for a summary."""
        e = self.evidence
        if self.cut_short:
            return (f"inconclusive, the {e['probe']} probe was not finished ({e['steps_done']} of "
                    f"{e['steps_planned']} planned steps when the --budget guard stopped it)")
        return self.message


FINISH_PROBES = ("Let the probes finish: the audit's 'probe plan' note gives the --budget that completes every "
                 "probe and cheaper settings (a GPU, a smaller [data] image_size).")


def probe_missing(exc: Exception, what: str, inconclusive_measurement):
    """The measurement when the probe a check reads is missing: Skipped("what: reason"), or, when
    the budget guard cut it short, `inconclusive_measurement(gap)`, which carries the gap to judge."""
    gap = ProbeGap.of(exc)
    if gap.not_run:
        return Skipped(gap.message)
    return inconclusive_measurement(gap) if gap.cut_short else Skipped(f"{what}: {exc}")


def inconclusive(gap: ProbeGap, what: str, metrics: dict | None = None) -> Verdict:
    """The verdict on a measurement whose probe was cut short: warn, never pass or fail."""
    return Verdict(Status.WARN, gap.headline, (gap.finding(what),), dict(metrics or {}))


@dataclass(frozen=True)
class Range:
    """The values a numeric threshold may take, checked when the config is read: an impossible value
    (a negative step count, a share above 1) is exit 2 naming the key, not a crash inside the check,
    and an upper bound keeps counts (folds, steps, evaluations, samples) from making work explode."""
    low: float
    high: float
    low_open: bool = False  # the low end itself is excluded (a ratio that must be positive)

    def admits(self, value) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def said(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"
        low, high = _plain(self.low), _plain(self.high)
        if self.low_open:
            return f"{kind} above {low} and at most {high}"
        return f"{kind} between {low} and {high}"


def _plain(x: float) -> str:
    """100000 -> "100,000"; 1e12 stays 1e12 (a bound, not a figure to read digit by digit); 0.5 stays 0.5."""
    if float(x).is_integer() and abs(x) < 1e7:
        return f"{int(x):,}"
    mantissa, exponent = f"{x:e}".split("e")
    if abs(x) >= 1e7 and float(mantissa).is_integer():
        return f"{int(float(mantissa))}e{int(exponent)}"
    return f"{x:g}"


SHARE = Range(0.0, 1.0)  # a share, rate or probability
POSITIVE_SHARE = Range(0.0, 1.0, low_open=True)
AUC = Range(0.5, 1.0)  # below 0.5 a classifier is better read the other way round
FACTOR = Range(1.0, 1e9)  # "this many times": below 1 the rule reads backwards
SCALE = Range(0.0, 1e12, low_open=True)  # a positive magnitude in the data's units


def _thresholds_record(check_cls):
    """A frozen dataclass with one typed field per documented threshold (defaults included)."""
    fields = [(name, type(default), field(default=default)) for name, (default, _) in check_cls.thresholds.items()]
    return make_dataclass(f"{check_cls.__name__}Thresholds", fields, frozen=True)


ALL_TASKS = TASKS  # a check written for every task ([data] task's values)


class Check:
    id: ClassVar[str] = ""
    slug: ClassVar[str] = ""
    item: ClassVar[int | None] = None
    title: ClassVar[str] = ""
    needs: ClassVar[str] = "data"  # what it needs, for `dnncheck checks`
    # False for a check that reads the data only: an audit of such checks alone neither builds the
    # model nor imports torch (Context.prepare)
    uses_model: ClassVar[bool] = True
    # the tasks (data.dataset.Dataset.task) the check is written for; on others it is skipped, said
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    # name -> (default, what it means)
    thresholds: ClassVar[dict[str, tuple[Any, str]]] = {}
    # name -> the Range a numeric threshold may take (every numeric threshold has one: a test says so)
    ranges: ClassVar[dict[str, Range]] = {}
    # (a, b): threshold a must not exceed threshold b (a warning level below its failing level)
    ordered: ClassVar[tuple[tuple[str, str], ...]] = ()
    # name -> what is valid, for a text threshold (validated by the check's own __init__)
    texts: ClassVar[dict[str, str]] = {}

    Thresholds: ClassVar[type]  # made per subclass from `thresholds`

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.Thresholds = _thresholds_record(cls)

    def __init__(self, **overrides):
        values: dict[str, Any] = {name: default for name, (default, _) in self.thresholds.items()}
        for name, value in overrides.items():
            if name not in self.thresholds:
                raise UserError(f"[checks.{self.slug}] {name}: unknown threshold{closest(name, self.thresholds)}; "
                                f"valid: {', '.join(self.thresholds) or 'none'}")
            default = self.thresholds[name][0]
            if not _same_kind(value, default):
                raise UserError(f"[checks.{self.slug}] {name} = {value!r}: expected {type(default).__name__} "
                                f"like the default {default!r}")
            values[name] = float(value) if isinstance(default, float) else value
            self._require_valid(name, values[name])
        for low, high in self.ordered:
            if values[low] > values[high]:
                raise UserError(f"[checks.{self.slug}] {low} = {values[low]!r} must not exceed {high} = "
                                f"{values[high]!r}; set both so that {low} <= {high}")
        self.t = self.Thresholds(**values)

    def _require_valid(self, name: str, value) -> None:
        """The range of one overridden numeric threshold; exit 2 naming key, value and range."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            valid = self.ranges[name]
            if not valid.admits(value):
                raise UserError(f"[checks.{self.slug}] {name} = {value!r} is out of range; expected "
                                f"{valid.said(isinstance(value, int))}")

    @classmethod
    def threshold_range(cls, name: str) -> str:
        """What `dnncheck explain` shows as a threshold's valid values."""
        default = cls.thresholds[name][0]
        if isinstance(default, bool):
            return "true or false"
        if isinstance(default, str):
            return cls.texts.get(name, "text")
        return cls.ranges[name].said(isinstance(default, int))

    def measure(self, ctx):  # pragma: no cover - every check overrides it
        raise NotImplementedError

    @classmethod
    def judge(cls, measurement, t) -> Verdict:  # pragma: no cover - every check overrides it
        raise NotImplementedError

    def applies_to(self, task: str) -> bool:
        return task in self.tasks

    def run(self, ctx) -> CheckResult:
        task = ctx.dataset.task
        if not self.applies_to(task):
            return self.skip(f"not adapted to {task} data yet (it handles {', '.join(self.tasks)})")
        measurement = self.measure(ctx)
        if isinstance(measurement, Skipped):
            return self.skip(measurement.reason)
        return self.conclude(self.judge(measurement, self.t))

    def conclude(self, v: Verdict) -> CheckResult:
        return self.result(v.status, v.summary, v.metrics, v.findings, v.remedy, v.figures)

    def probes(self, ctx) -> dict[str, dict]:
        """The probes this check will train with the current data and thresholds: name -> the
        planner's parameters (see probes/plan.py). Checks without probes train nothing."""
        return {}

    def result(self, status: Status, summary: str, metrics: dict | None = None, findings=(), remedy: str = "",
               figures: dict | None = None) -> CheckResult:
        metrics = dict(metrics or {})
        if any(f.evidence.get("inconclusive") for f in findings):
            metrics["inconclusive"] = True  # contract: a probe cut short by --budget
            if "inconclusive" not in summary:
                summary += "; inconclusive, a probe was not finished within the --budget guard"
            if all(f.evidence.get("inconclusive") for f in findings if f.severity is not Status.INFO):
                # nothing but unfinished probes: no advice about the model, loss or data follows from that
                remedy = FINISH_PROBES
        return CheckResult(self.id, self.slug, self.item, self.title, status, summary, metrics,
                           tuple(findings), remedy, figures=figures or {})

    def skip(self, reason: str) -> CheckResult:
        return self.result(Status.SKIP, reason)

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def with_reason(summary: str, findings) -> str:
    """For judges whose summary is figures (which alone read like a pass, e.g. "imbalance ratio
    1.0"): a warn or fail puts the headline of its worst finding first."""
    status = verdict(findings)
    if status not in (Status.WARN, Status.FAIL):
        return summary
    return f"{headline([f for f in findings if f.severity is status])}; {summary}"


def headline(findings) -> str:
    """The worst finding's headline (its first clause, as its judge wrote it): a one-line summary."""
    return max(findings, key=lambda f: f.severity.rank).short


def serious(findings) -> list:
    """The findings that are more than information: what a summary must lead with when there are any
    (a pass whose notes are advice reads as its measurement, not as its first note)."""
    return [f for f in findings if f.severity is not Status.INFO]


def verdict(findings, default: Status = Status.PASS) -> Status:
    """The check's status: the worst severity among its findings (info never raises it)."""
    return Status.worst([default, *(f.severity for f in findings if f.severity is not Status.INFO)])


__all__ = ["Check", "CheckResult", "Finding", "ProbeGap", "Skipped", "Status", "Verdict", "headline", "inconclusive", "serious",
           "probe_missing", "verdict", "with_reason"]
