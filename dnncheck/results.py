"""Result records and the JSON contract (DESIGN section 3).

Records are immutable: checks build them, the runner stamps timing on a copy, reporters only read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

SCHEMA_VERSION = 1


class Status(str, enum.Enum):
    PASS = "pass"
    INFO = "info"  # a finding's severity only: advice true of the data, never raising a check's status
    SKIP = "skip"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        # pass < skip < warn < fail; error sits above everything for the audit's status
        return _RANK[self]

    @classmethod
    def worst(cls, statuses) -> "Status":
        statuses = list(statuses)
        return max(statuses, key=lambda s: s.rank) if statuses else cls.PASS


_RANK = {Status.PASS: 0, Status.INFO: 0, Status.SKIP: 1, Status.WARN: 2, Status.FAIL: 3, Status.ERROR: 4}


@dataclass(frozen=True)
class Finding:
    severity: Status
    message: str
    samples: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    # the message's first clause for a one-line summary, set by the judge that wrote the message
    # (summaries are built from fields, never cut back out of prose); not in the JSON
    headline: str = field(default="", compare=False)

    @property
    def short(self) -> str:
        return self.headline or self.message

    def to_dict(self) -> dict:
        return {"severity": self.severity.value, "message": self.message,
                "samples": list(self.samples), "evidence": _plain(self.evidence)}

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(Status(d["severity"]), d["message"], tuple(d.get("samples", ())), d.get("evidence", {}))


@dataclass(frozen=True)
class CheckResult:
    id: str
    slug: str
    item: int | None
    title: str
    status: Status
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    remedy: str = ""
    duration_s: float = 0.0
    # Figures for the HTML report (not part of the JSON contract): name -> a record of dnncheck/figures.py.
    figures: dict[str, Any] = field(default_factory=dict, compare=False)

    def _repr_html_(self) -> str:
        """A check result displayed in a notebook: its own section (findings, remedy, metrics, figures)."""
        from dnncheck.report.html import render_check

        return render_check(self)

    def with_duration(self, seconds: float) -> "CheckResult":
        return replace(self, duration_s=round(seconds, 3))

    def to_dict(self) -> dict:
        return {"id": self.id, "slug": self.slug, "item": self.item, "title": self.title,
                "status": self.status.value, "summary": self.summary,
                "metrics": _plain(self.metrics), "findings": [f.to_dict() for f in self.findings],
                "remedy": self.remedy, "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        return cls(d["id"], d.get("slug", ""), d.get("item"), d.get("title", ""), Status(d["status"]),
                   d.get("summary", ""), d.get("metrics", {}),
                   tuple(Finding.from_dict(f) for f in d.get("findings", ())),
                   d.get("remedy", ""), d.get("duration_s", 0.0))


@dataclass(frozen=True)
class AuditResult:
    checks: tuple[CheckResult, ...]
    status: Status
    exit_code: int
    duration_s: float
    tool: dict[str, str]
    environment: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    command: str = ""
    started_at: str = ""  # ISO time the audit started
    # check id -> {"before": status or None, "change": new|worse|better|unchanged|fixed}, with --baseline
    baseline: dict[str, dict] = field(default_factory=dict)
    # sample id -> HWC image, for thumbnails in the HTML report (not part of the JSON)
    thumbnails: dict[str, Any] = field(default_factory=dict, compare=False)
    # ({what: input file or folder}, {what: data folder}) the audit read: reports are never written
    # over or inside them (dnncheck.outputs); not part of the JSON
    protected: tuple = field(default=(), compare=False, repr=False)

    def to_json(self) -> str:
        """The --json document as text."""
        from dnncheck.report.json import json_text

        return json_text(self)

    def to_html(self, path) -> None:
        """Write the self-contained HTML report with --html's rules: never over an input or inside a data
        folder (UserError), atomically, a device such as /dev/null written through."""
        from pathlib import Path

        from dnncheck.errors import UserError
        from dnncheck.outputs import protected_input
        from dnncheck.report.html import write_html

        inputs, folders = self.protected or ({}, {})
        refused = protected_input(Path(path), inputs, folders)
        if refused:
            raise UserError(f"to_html {refused}")
        write_html(self, Path(path))

    def _repr_html_(self) -> str:
        """Notebooks show the verdict and a row per check, with the full HTML report one click away."""
        from dnncheck.report.html import render_notebook

        return render_notebook(self)

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION, "tool": self.tool, "duration_s": self.duration_s,
               "environment": _plain(self.environment), "data": _plain(self.data),
               "model": _plain(self.model), "status": self.status.value,
               "exit_code": self.exit_code, "command": self.command, "started_at": self.started_at,
               "checks": [c.to_dict() for c in self.checks]}
        if self.baseline:
            out["baseline"] = self.baseline
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "AuditResult":
        return cls(tuple(CheckResult.from_dict(c) for c in d.get("checks", ())), Status(d["status"]),
                   d.get("exit_code", 0), d.get("duration_s", 0.0), d.get("tool", {}),
                   d.get("environment", {}), d.get("data", {}), d.get("model", {}), d.get("command", ""),
                   d.get("started_at", ""), d.get("baseline", {}))


def _plain(value):
    """Convert numpy scalars/arrays and tuples into JSON-ready Python values; NaN/Inf become None."""
    import math

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
