"""Selecting checks, running each in isolation, and deciding statuses and the exit code once."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

from dnncheck.checks import CHECKS, lookup
from dnncheck.errors import UserCodeExited, UserError
from dnncheck.results import AuditResult, CheckResult, Finding, Status

FAIL_ON_RANK = {"warn": Status.WARN.rank, "fail": Status.FAIL.rank, "never": None}


def select_checks(cfg) -> list:
    """Instantiate the selected checks with their [checks.<slug>] thresholds, in id order."""
    thresholds = {lookup(key, f"{cfg.origin}: [checks.{key}]"): values for key, values in cfg.thresholds.items()}
    chosen = [lookup(k, "--select") for k in cfg.select] if cfg.select else list(CHECKS)
    ignored = {lookup(k, "--ignore") for k in cfg.ignore}
    classes = [c for c in CHECKS if c in chosen and c not in ignored]
    if not classes:
        raise UserError("--select/--ignore left no check to run; `dnncheck checks` lists them")
    return [cls(**thresholds.get(cls, {})) for cls in classes]


def run_check(check, ctx) -> CheckResult:
    """One check, isolated: a crash becomes an `error` result carrying the traceback."""
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    try:
        with threadpool_limits(limits=blas_threads(), user_api="blas"):
            result = check.run(ctx)
    except UserError:
        raise
    except SystemExit as exc:  # only user code exits; dnncheck's exit code is decided in one place (cli)
        raise UserCodeExited(exc, f"check {check.id} {check.slug}") from None
    except Exception as exc:  # a bug or an unexpected input: keep auditing
        result = check.result(Status.ERROR, f"the check crashed: {type(exc).__name__}: {exc}",
                              findings=[Finding(Status.ERROR, f"{type(exc).__name__}: {exc}",
                                                evidence={"traceback": traceback.format_exc()})])
    return result.with_duration(time.perf_counter() - start)


def blas_threads() -> int:
    """BLAS threads for the scikit-learn/numpy work inside checks: half the cores the audit may use,
    at least 1, at most 4. Their problems are small (at most a few thousand rows by a few hundred
    features); on a busy 2-core machine OpenBLAS's default (one spinning thread per core) made one
    logistic-regression fit of external-validation take 33-60 s against 0.65 s single-threaded
    (issue "The user's training setup"); benchmarks/bench_threads.py measures a 2,000 x 512 fit here at
    0.13 s default vs 0.05 s limited on a quiet machine, 0.42 s vs 0.08 s beside two CPU hogs. torch
    keeps its own thread pool (not BLAS-limited here)."""

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


MMAP_THRESHOLD = 4 * 2**20  # bytes: glibc serves larger allocations with their own mappings
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def bound_heap_growth() -> None:
    """Fix glibc's mmap threshold at 4 MiB for this process: every tensor of 4 MiB or more gets its
    own mapping, returned to the system the moment it is freed. glibc's default threshold rises to
    32 MiB after the first large free, after which 224-px activations (8-100 MB a batch) are carved
    from the heap and freed pages stay resident between steps. Measured with
    benchmarks/profile_memory.py (2,000 generated 224-px images, resnet18, five probe checks): peaks
    fell from 2.06 to 1.77 GiB, wall time rose 14% (fresh mappings are zero-filled). A user's own
    MALLOC_MMAP_THRESHOLD_ wins; a no-op off glibc. The setting stays for the rest of the process
    (glibc cannot return to its adaptive threshold)."""
    import ctypes
    import ctypes.util

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        pass


_INTERRUPTS: list[int] = []


@contextlib.contextmanager
def interrupts_remembered():
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered until the audit ends. A
    Ctrl-C that lands in a ctypes callback (numba compiling UMAP's functions: llvmlite's object-cache
    callback) is printed as "Exception ignored" and swallowed there, and the audit used to run on to
    exit 0 and write its report; raise_if_interrupted() re-raises it after the check it hit. A
    handler the user installed (or SIGINT ignored) is left alone; off the main thread, nothing."""
    import signal
    import threading

    _INTERRUPTS.clear()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def remember(signum, frame):
        _INTERRUPTS.append(signum)
        raise KeyboardInterrupt

    def quiet_about_remembered_interrupts(unraisable):
        # The swallowed Ctrl-C would print "Exception ignored ... Traceback ... KeyboardInterrupt"
        # before dnncheck's own one-line message; it is remembered, so that print says nothing new.
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _INTERRUPTS:
            return
        previous_hook(unraisable)

    previous_hook = sys.unraisablehook
    sys.unraisablehook = quiet_about_remembered_interrupts
    signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = previous_hook


def raise_if_interrupted() -> None:
    if _INTERRUPTS:
        raise KeyboardInterrupt


def release_freed_memory() -> None:
    """Hand memory a finished check freed back to the operating system. glibc keeps freed heap pages
    (activations of a 224-px forward pass, PCA work arrays) for reuse: measured on 1,000 generated
    224-px images, the resident level after a check fell by 0.3-0.4 GB with malloc_trim, and every
    later check's peak sits on that level. A no-op where the C library has no malloc_trim."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()  # cycles (models with hooks, frames of a crashed check) hold tensors until collected
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        pass


def audit_status(results) -> Status:
    return Status.worst(r.status for r in results)


def exit_code(results, fail_on: str, gating: set[str] | None = None) -> int:
    """3 when a check crashed; 1 when a status reaches --fail-on; else 0.

    `gating`: with --baseline, only these check ids (the ones that got worse) count.
    """
    counted = [r for r in results if gating is None or r.id in gating]
    if any(r.status is Status.ERROR for r in counted):
        return 3
    threshold = FAIL_ON_RANK[fail_on]
    if threshold is not None and any(r.status.rank >= threshold for r in counted if r.status is not Status.SKIP):
        return 1
    return 0


def load_baseline(path) -> dict[str, str]:
    """Check id -> status from a previous --json result; a bad file is a UserError (exit 2)."""
    import json
    from pathlib import Path

    from dnncheck.errors import require_regular_file

    path = Path(path)
    require_regular_file(path, "--baseline file", "pass a previous `dnncheck audit --json` result")
    try:
        # only the checks are read (CheckResult.from_dict): a trimmed result with just them still works
        checks = [CheckResult.from_dict(c) for c in json.loads(path.read_text(encoding="utf-8"))["checks"]]
        return {c.id: c.status.value for c in checks}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise UserError(f"--baseline {path}: not a dnncheck --json result (needs checks with id and status)") from None


def compare_to_baseline(results, before: dict[str, str]) -> dict[str, dict]:
    """Per check: its status in the baseline and whether it is new, worse, better, fixed or unchanged."""
    out = {}
    for r in results:
        old = before.get(r.id)
        if old is None:
            change = "new"
        else:
            old_rank, new_rank = Status(old).rank, r.status.rank
            change = "unchanged" if old_rank == new_rank else "worse" if new_rank > old_rank else (
                "fixed" if r.status in (Status.PASS, Status.SKIP) else "better")
        out[r.id] = {"before": old, "change": change}
    return out


def run_audit(ctx, checks, command: str = "", started: float | None = None, baseline: dict | None = None) -> AuditResult:
    """Run the checks; `started` (perf_counter) lets the duration include loading the data.

    `baseline` (id -> status of a previous run): only checks that got worse (or are new and at
    --fail-on) decide the exit code.
    """
    import datetime

    start = started if started is not None else time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    ctx.plan_probes(checks)  # every probe's work is fixed here, before anything trains
    ctx.progress.plan(ctx.plan_record())
    results = []
    bar = ctx.progress.task("checks", total=len(checks))
    for check in checks:
        ctx.progress.stage(f"{check.id} {check.slug}")
        results.append(run_check(check, ctx))
        raise_if_interrupted()
        release_freed_memory()
        bar.advance()
    bar.close()
    data = ctx.dataset.summary()
    data["notes"] = list(ctx.dataset.notes)
    said = ctx.probe_runner.budget_note()
    if said:  # what the budget left out or undone, and the one budget that completes it, once for the audit
        data["notes"].append(f"probe plan: {said}")
    data["normalization"] = _safe(ctx.normalization_summary)
    model = dict(ctx.model_info)
    model["probe_plan"] = ctx.plan_record()
    model["probe_seconds"] = {name: round(s, 2) for name, s in ctx.probe_seconds.items()}
    model["budget_seconds"] = ctx.cfg.budget_seconds
    comparison = compare_to_baseline(results, baseline) if baseline is not None else {}
    gating = {cid for cid, c in comparison.items() if c["change"] in ("worse", "new")} if baseline is not None else None
    return audit_result(results, ctx.cfg.fail_on, start, ctx.environment(), data, model, command, started_at,
                        comparison, gating, sample_thumbnails(ctx.dataset, results))


def audit_result(results, fail_on: str, started: float, environment: dict, data: dict, model: dict, command: str,
                 started_at: str = "", baseline: dict | None = None, gating: set | None = None,
                 thumbnails: dict | None = None) -> AuditResult:
    """The one place an AuditResult is made (audit and curves): status and exit code from the checks,
    the duration from `started` (perf_counter)."""
    from dnncheck import __version__

    results = tuple(results)
    return AuditResult(results, audit_status(results), exit_code(results, fail_on, gating),
                       round(time.perf_counter() - started, 3), {"name": "dnncheck", "version": __version__},
                       environment, data, model, command, started_at, baseline or {}, thumbnails or {})


THUMBNAILS_PER_FINDING = 8


def sample_thumbnails(ds, results) -> dict:
    """The first few images each finding names, for the HTML report (images only)."""
    if not ds.is_image:
        return {}
    out = {}
    for r in results:
        for f in r.findings:
            for sample_id in f.samples[:THUMBNAILS_PER_FINDING]:
                if sample_id not in out:
                    image = ds.sample(sample_id)
                    if image is not None:
                        out[sample_id] = image
    return out


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


__all__ = ["select_checks", "run_check", "run_audit", "audit_result", "exit_code"]
