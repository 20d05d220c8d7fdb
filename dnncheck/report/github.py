"""--format github: GitHub Actions workflow annotations for failed, errored and warned checks, and a
notice for advice (info findings) on checks that pass."""

from __future__ import annotations

from dnncheck.results import Status

LEVEL = {Status.FAIL: "error", Status.ERROR: "error", Status.WARN: "warning"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(result) -> list[str]:
    from dnncheck.report.safe import sanitized

    result = sanitized(result)
    lines = []
    for c in result.checks:
        level = LEVEL.get(c.status)
        advice = [f.message for f in c.findings if f.severity is Status.INFO]
        if level is None and not advice:
            continue
        change = result.baseline.get(c.id, {}).get("change") if result.baseline else None
        title = f"{c.id} {c.slug}" + (f" ({change})" if change else "")
        if level is None:  # a pass with advice true of the data: a notice, never a warning
            level, body = "notice", " ".join(advice)
        else:
            body = c.summary + (f" Fix: {c.remedy}" if c.remedy else "")
        lines.append(f"::{level} title={_escape_property(title)}::{_escape_data(body)}")
    lines.append(f"dnncheck: {result.status.value} (exit code {result.exit_code})")
    return lines
