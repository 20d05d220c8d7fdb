"""Progress reporting that checks and probes may call without ever printing themselves.

The CLI hands the context a real (rich) progress; tests and `--quiet` get NullProgress.
"""

from __future__ import annotations


class NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress:
    def task(self, description: str, total: float | None = None, unit: str | None = None) -> NullTask:
        return NullTask()

    def stage(self, description: str) -> None:
        """A one-line note of what is being computed now (shown while no bar runs)."""

    def plan(self, record: dict) -> None:
        """The probe plan (ctx.plan_record()), shown before any probe trains."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
