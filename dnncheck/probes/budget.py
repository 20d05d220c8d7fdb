"""One time budget for all probe training in an audit.

Each probe asks for an allotment (a share of the total, never more than what is left); the
probe stops itself at its allotment, so the audit's probe time stays within the budget plus the
overrun of one step and one evaluation per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    total: float
    spent: dict[str, float] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - sum(self.spent.values()))

    def allot(self, share: float) -> float:
        """Seconds a probe may use: `share` of the total, capped by what is left."""
        return min(self.total * share, self.remaining)

    def charge(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds

    def timer(self, name: str):
        return _Timer(self, name)


class _Timer:
    def __init__(self, budget: Budget, name: str):
        self.budget, self.name = budget, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.budget.charge(self.name, time.perf_counter() - self.start)
        return False
