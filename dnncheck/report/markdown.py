"""--format markdown and the GitHub Actions job summary: the verdict, a table of the checks with
status and summary, and the top findings. Written to `$GITHUB_STEP_SUMMARY` automatically when that
variable is set (as GitHub documents: append Markdown to the file), unless DNNCHECK_NO_STEP_SUMMARY=1."""

from __future__ import annotations

import os

from dnncheck.results import Status

ICON = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.ERROR: "💥", Status.SKIP: "⏭️",
        Status.INFO: "ℹ️"}
TOP_FINDINGS = 10
MAX_CELL = 300  # characters of a summary in the table
MAX_SAMPLES = 5


def _cell(text: str, limit: int = MAX_CELL) -> str:
    """Table-safe: one line, pipes escaped, HTML-ish characters made inert, long text cut."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown(result) -> str:
    from dnncheck.report.safe import sanitized

    result = sanitized(result)
    counts = {s: sum(c.status is s for c in result.checks) for s in Status if s is not Status.INFO}
    said = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    source = result.data.get("source", "")
    lines = [f"## {ICON[result.status]} dnncheck: {result.status.value.upper()} (exit code {result.exit_code})", "",
             f"{len(result.checks)} checks on `{_cell(source, 120)}`: {said}.", "",
             "| Check | Status | Summary |", "| --- | --- | --- |"]
    for c in result.checks:
        change = result.baseline.get(c.id, {}).get("change") if result.baseline else None
        status = f"{ICON[c.status]} {c.status.value}" + (f" ({change})" if change else "")
        lines.append(f"| {c.id} {c.slug} | {status} | {_cell(c.summary)} |")
    top = _top_findings(result.checks)
    if top:
        lines += ["", "### Top findings", ""]
        for c, f in top:
            samples = ", ".join(f"`{_cell(s, 80)}`" for s in f.samples[:MAX_SAMPLES])
            more = f" (+{len(f.samples) - MAX_SAMPLES} more)" if len(f.samples) > MAX_SAMPLES else ""
            lines.append(f"- **{c.id} {c.slug}** ({f.severity.value}): {_cell(f.message, 500)}"
                         + (f"; samples: {samples}{more}" if samples else ""))
    return "\n".join(lines) + "\n"


def _top_findings(checks) -> list:
    """Fails and errors first, then warnings, in check order."""
    found = [(c, f) for c in checks for f in c.findings if f.severity in (Status.FAIL, Status.ERROR, Status.WARN)]
    found.sort(key=lambda cf: -cf[1].severity.rank)
    return found[:TOP_FINDINGS]


def write_step_summary(result) -> str | None:
    """Append the summary to $GITHUB_STEP_SUMMARY when it is set (and not turned off); the reason it
    could not be written, or None. The variable gets the rules of a report path (dnncheck.outputs):
    never one of the audit's inputs or a file inside a data folder, never a folder or block device;
    a FIFO nobody reads is a warning, not a hang."""
    from pathlib import Path

    from dnncheck.outputs import protected_input, reason, write_in_place

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path or os.environ.get("DNNCHECK_NO_STEP_SUMMARY") == "1":
        return None
    inputs, folders = result.protected or ({}, {})
    refused = protected_input(Path(path), inputs, folders)
    if refused:
        return f"$GITHUB_STEP_SUMMARY {refused}; the job summary was not written"
    try:
        write_in_place(Path(path), (markdown(result) + "\n").encode("utf-8", errors="backslashreplace"), create=True)
    except OSError as exc:
        return f"could not append the job summary to {path} ({reason(exc)})"
    return None
