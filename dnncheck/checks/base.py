"""What every check is: an id, a slug, a checklist item, a docstring that `dnncheck explain`
prints, documented thresholds with defaults, the probes it will train (`probes(ctx)`, for the plan
made before anything trains) and `run(ctx) -> CheckResult`.

Checks never print, exit or render; they return results. Thresholds are overridable in
`[checks.<slug>]` and validated here so a typo names the key and the closest valid one.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from dnncheck.errors import ProbeCutShort, UserError, closest
from dnncheck.results import CheckResult, Finding, Status


class Check:
    id: ClassVar[str] = ""
    slug: ClassVar[str] = ""
    item: ClassVar[int | None] = None
    title: ClassVar[str] = ""
    needs: ClassVar[str] = "data"  # what it needs, for `dnncheck checks`
    # name -> (default, what it means)
    thresholds: ClassVar[dict[str, tuple[Any, str]]] = {}

    def __init__(self, **overrides):
        self.t: dict[str, Any] = {name: default for name, (default, _) in self.thresholds.items()}
        for name, value in overrides.items():
            if name not in self.thresholds:
                raise UserError(f"[checks.{self.slug}] {name}: unknown threshold{closest(name, self.thresholds)}; "
                                f"valid: {', '.join(self.thresholds) or 'none'}")
            default = self.thresholds[name][0]
            if not _same_kind(value, default):
                raise UserError(f"[checks.{self.slug}] {name} = {value!r}: expected {type(default).__name__} "
                                f"like the default {default!r}")
            self.t[name] = float(value) if isinstance(default, float) else value

    def run(self, ctx) -> CheckResult:  # pragma: no cover - every check overrides it
        raise NotImplementedError

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
                summary += "; inconclusive, a probe was cut short by the --budget guard"
        return CheckResult(self.id, self.slug, self.item, self.title, status, summary, metrics,
                           tuple(findings), remedy, figures=figures or {})

    def skip(self, reason: str) -> CheckResult:
        return self.result(Status.SKIP, reason)

    def without_probe(self, exc: Exception, what: str) -> CheckResult:
        """The result when the probe everything here reads is missing: inconclusive (warn) when the
        budget guard cut it short, else a skip that says why."""
        if isinstance(exc, ProbeCutShort):
            return self.result(Status.WARN, str(exc).split("; ")[0], findings=[probe_finding(exc, what)])
        return self.skip(f"{what}: {exc}")

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def headline(findings, sep: str = "; ") -> str:
    """The worst finding's message up to `sep` (with its space: Pillow modes such as "I;16" hold a
    bare ';'): a one-line summary for the table."""
    worst = max(findings, key=lambda f: f.severity.rank)
    return worst.message.split(sep)[0]


def probe_finding(exc: Exception, what: str, severity: Status = Status.WARN) -> Finding:
    """A finding for a probe that did not give its evidence: inconclusive (always warn, never a
    verdict) when the budget guard cut it short, else `severity` with the reason."""
    if isinstance(exc, ProbeCutShort):
        return Finding(Status.WARN, f"{exc} ({what})", evidence=exc.evidence())
    return Finding(severity, f"{what}: {exc}")


def verdict(findings, default: Status = Status.PASS) -> Status:
    """The check's status: the worst severity among its findings."""
    return Status.worst([default, *(f.severity for f in findings)])


__all__ = ["Check", "CheckResult", "Finding", "Status", "headline", "probe_finding", "verdict"]
