"""The --budget guard: a ceiling on probe time that never decides what a probe measures.

What each probe trains is fixed up front by the plan (probes/plan.py) from the data and the
settings, identically on every machine. The budget only stops a probe that would overrun it; the
checks then report that probe's evidence as inconclusive (never pass or fail from partial work).

Each planned probe is guaranteed its share of the budget (SHARES, summing to at most 1); on top
of that a probe may use whatever is not reserved for the planned probes still to come, so time a
fast probe leaves unused goes to the later ones instead of being lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Guaranteed minimum share of --budget per probe, in the order the checks usually run them.
# Roughly proportional to each probe's planned work on the default settings (see the README).
SHARES = {
    "calibration": 0.02,
    "fit": 0.30,
    "normalization": 0.12,
    "label-noise": 0.20,
    "overfit-batch": 0.04,
    "overfit-shuffled": 0.10,
    "pixel-trigger": 0.12,
    "learning-rate": 0.05,
}
assert sum(SHARES.values()) <= 1.0


class Guard:
    """The deadline of one probe (all of its runs, e.g. every cross-fitting fold, share it)."""

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        self.deadline = time.perf_counter() + seconds
        self.tripped = False

    def expired(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.tripped = True
        return self.tripped


class NoGuard(Guard):
    """For direct use of the engine (benchmarks, tests): never stops a run."""

    def __init__(self):
        super().__init__("unguarded", float("inf"))

    def expired(self) -> bool:
        return False


@dataclass
class Budget:
    total: float
    planned: tuple[str, ...] = ()  # probe names in the plan; their shares are reserved until they start
    spent: dict[str, float] = field(default_factory=dict)
    guards: dict[str, Guard] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - sum(self.spent.values()))

    def allot(self, name: str) -> float:
        """Seconds probe `name` may still use: what is left minus the shares of the planned probes
        that have not started yet."""
        pending = [p for p in self.planned if p != name and p not in self.guards]
        reserved = self.total * sum(SHARES.get(p, 0.0) for p in pending)
        return max(0.0, self.remaining - reserved)

    def guard(self, name: str) -> Guard:
        """The guard of probe `name`, started on first request (later runs of it share it)."""
        if name not in self.guards:
            self.guards[name] = Guard(name, self.allot(name))
        return self.guards[name]

    def charge(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds

    def timer(self, name: str):
        return _Timer(self, name)

    def suggest(self, needed_seconds: float, allotted_seconds: float) -> float:
        """A --budget under which a probe that needs `needed_seconds` (but got `allotted_seconds`)
        would finish, with a 50% margin, rounded up to ten seconds."""
        scale = max(1.0, needed_seconds / max(allotted_seconds, 1e-3))
        return float(-(-self.total * scale * 1.5 // 10) * 10)


class _Timer:
    def __init__(self, budget: Budget, name: str):
        self.budget, self.name = budget, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.budget.charge(self.name, time.perf_counter() - self.start)
        return False
