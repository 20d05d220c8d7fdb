"""Selecting checks, running each in isolation, and deciding statuses and the exit code once."""

from __future__ import annotations

import time
import traceback

from dnncheck.checks import CHECKS, PLANNED, lookup
from dnncheck.errors import UserError
from dnncheck.results import AuditResult, CheckResult, Finding, Status

FAIL_ON_RANK = {"warn": Status.WARN.rank, "fail": Status.FAIL.rank, "never": None}


def select_checks(cfg) -> list:
    """Instantiate the selected checks with their [checks.<slug>] thresholds, in id order."""
    thresholds = {}
    for key, values in cfg.thresholds.items():
        cls = lookup(key, f"{cfg.origin}: [checks.{key}]")
        if cls is not None:
            thresholds[cls] = values
    chosen = [lookup(k, "--select") for k in cfg.select] if cfg.select else list(CHECKS)
    ignored = {lookup(k, "--ignore") for k in cfg.ignore}
    classes = [c for c in CHECKS if c in chosen and c not in ignored]
    if not classes:
        planned = [k for k in cfg.select if lookup(k) is None]
        if planned:
            raise UserError(f"--select {','.join(planned)}: not implemented yet in this version; "
                            f"available: {', '.join(c.slug for c in CHECKS)}")
        raise UserError("--select/--ignore left no check to run; `dnncheck checks` lists them")
    return [cls(**thresholds.get(cls, {})) for cls in classes]


def run_check(check, ctx) -> CheckResult:
    """One check, isolated: a crash becomes an `error` result carrying the traceback."""
    start = time.perf_counter()
    try:
        result = check.run(ctx)
    except UserError:
        raise
    except Exception as exc:  # a bug or an unexpected input: report it, keep auditing
        result = check.result(Status.ERROR, f"the check crashed: {type(exc).__name__}: {exc}",
                              findings=[Finding(Status.ERROR, f"{type(exc).__name__}: {exc}",
                                                evidence={"traceback": traceback.format_exc()})])
    return result.with_duration(time.perf_counter() - start)


def audit_status(results) -> Status:
    return Status.worst(r.status for r in results)


def exit_code(results, fail_on: str) -> int:
    """3 when a check crashed; 1 when a status reaches --fail-on; else 0."""
    if any(r.status is Status.ERROR for r in results):
        return 3
    threshold = FAIL_ON_RANK[fail_on]
    if threshold is not None and any(r.status.rank >= threshold for r in results if r.status is not Status.SKIP):
        return 1
    return 0


def run_audit(ctx, checks, command: str = "", started: float | None = None) -> AuditResult:
    """Run the checks; `started` (perf_counter) lets the duration include loading the data."""
    from dnncheck import __version__

    start = started if started is not None else time.perf_counter()
    results = []
    bar = ctx.progress.task("checks", total=len(checks))
    for check in checks:
        ctx.progress.stage(f"{check.id} {check.slug}")
        results.append(run_check(check, ctx))
        bar.advance()
    bar.close()
    status = audit_status(results)
    data = ctx.dataset.summary()
    data["notes"] = list(ctx.dataset.notes)
    data["normalization"] = _safe(lambda: ctx.normalizer.describe())
    model = dict(ctx.model_info)
    model["probe_runs"] = {name: round(s, 2) for name, s in ctx.budget.spent.items()}
    model["budget_seconds"] = ctx.cfg.budget_seconds
    return AuditResult(tuple(results), status, exit_code(results, ctx.cfg.fail_on),
                       round(time.perf_counter() - start, 3), {"name": "dnncheck", "version": __version__},
                       ctx.environment(), data, model, command)


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


__all__ = ["select_checks", "run_check", "run_audit", "exit_code", "PLANNED"]
