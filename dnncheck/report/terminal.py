"""The rich terminal report and the progress display; both only read what they are given."""

from __future__ import annotations

import json

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from dnncheck.results import Status

STYLE = {Status.PASS: "bold green", Status.INFO: "bold cyan", Status.SKIP: "dim", Status.WARN: "bold yellow",
         Status.FAIL: "bold red", Status.ERROR: "bold magenta"}
MAX_SAMPLES_SHOWN = 8
MAX_EVIDENCE_CHARS = 300


def status_text(status: Status) -> Text:
    return Text(status.value.upper(), style=STYLE[status])


def render_audit(result, console: Console, verbose: bool = True) -> None:
    from dnncheck.report.safe import sanitized

    result = sanitized(result)  # names from the user's data reach the terminal without escape codes
    console.print(_header(result))
    console.print(_summary_table(result))
    if verbose:  # details for the checks that found something; passes are in the table
        for check in result.checks:
            if check.findings:
                console.print(_details(check))
    plan = result.model.get("probe_plan") or {}
    if plan.get("probes"):
        console.print(plan_table(plan, before=False))
    console.print(_verdict(result))


def plan_table(record: dict, before: bool) -> Table:
    """The probe plan: what each probe will train (before) or trained (after), with the time
    estimated from the calibration and, after, the time it took."""
    total = record.get("estimated_seconds")
    budget = record.get("budget_seconds")
    title = "Probe plan" + (f" (estimated {total:.0f} s of the {budget:g} s budget guard)" if total is not None else
                            f" (budget guard {budget:g} s)")
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("probe", no_wrap=True)
    table.add_column("work", ratio=3, overflow="fold")  # the column that wraps on a narrow terminal
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("DNC", ratio=1)  # the checks using the probe, by number
    table.add_column("estimate", justify="right", no_wrap=True)
    if not before:
        table.add_column("done", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
    for p in record["probes"]:
        estimate = p.get("estimated_seconds")
        if estimate is None:
            estimate = p.get("predicted_seconds")
        row = [p["name"], p["what"], f"{p['steps']:,}", " ".join(c.removeprefix("DNC") for c in p["checks"]),
               Text("not run", style="bold yellow") if p.get("not_run") else
               "?" if estimate is None else f"{estimate:.1f}s"]
        if not before:
            if not p.get("ran"):
                row += [Text("not run", style="dim"), ""]
            else:
                done = Text(f"{p['steps_done']:,}", style="bold yellow" if p.get("cut_short") else "")
                if p.get("cut_short"):
                    done.append(" not finished")
                row += [done, f"{p.get('spent_seconds', 0):.1f}s"]
        table.add_row(*row)
    training = record.get("training")
    if training:  # what the probes imitate, so the user can see it is their training
        title += (f"\nprobes train with {training['optimizer']} at lr {training['lr']:g}, batch {training['batch_size']}"
                  + (f"; schedule {training['schedule']}" if training.get("schedule") else ""))
        table.title = title
    said = (record.get("compute") or {}).get("message")
    if said:  # the plan left probes out: said once, here, before anything trains and in the report
        table.caption = said
    elif before and total is not None and budget is not None and total > budget:
        from dnncheck.probes.plan import completing_advice, round_up_ten

        table.caption = ("the estimate exceeds the budget guard: probes may not finish and their checks be inconclusive. "
                         + completing_advice(round_up_ten(total * 1.5), record.get("cheaper") or (),
                                             "To complete every probe"))
    return table


def _header(result) -> Text:
    data, model, env = result.data, result.model, result.environment
    splits = data.get("splits", {})
    text = Text()
    text.append(f"dnncheck {result.tool.get('version', '')}", style="bold")
    text.append(f"  {data.get('source', '?')}  ")
    if splits:  # an audit; `dnncheck curves` has neither data splits nor a model
        text.append(f"{data.get('task', '')}, {len(data.get('classes', []))} classes, "
                    f"train/val/test {splits.get('train', 0)}/{splits.get('val', 0)}/{splits.get('test', 0)}\n")
        text.append(f"model {model.get('spec', '?')} ({model.get('parameters', 0):,} parameters)  "
                    f"device {env.get('device', '?')}  ", style="dim")
    text.append(f"{result.duration_s:.1f} s", style="dim")
    for note in data.get("notes", []):
        text.append(f"\n  note: {note}", style="dim")
    return text


def _summary_table(result) -> Table:
    table = Table(title="Checklist", title_justify="left", expand=True)
    table.add_column("id", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("summary", ratio=1)
    table.add_column("time", justify="right", no_wrap=True)
    if result.baseline:
        table.add_column("vs baseline", no_wrap=True)
    for c in result.checks:
        row = [c.id, c.slug, status_text(c.status), Text(c.summary), f"{c.duration_s:.1f}s"]
        if result.baseline:
            change = result.baseline.get(c.id, {})
            style = {"worse": "bold red", "new": "yellow", "fixed": "green", "better": "green"}.get(change.get("change"), "dim")
            before = change.get("before")
            row.append(Text(f"{change.get('change', '')}" + (f" (was {before})" if before and change.get("change") != "unchanged" else ""),
                            style=style))
        table.add_row(*row)
    return table


def _details(check) -> Panel:
    parts = []
    for f in check.findings:
        line = Text("  ")
        line.append(f"{f.severity.value.upper():5}", style=STYLE[f.severity])
        line.append(f" {f.message}")
        parts.append(line)
        if f.samples:
            shown = ", ".join(f.samples[:MAX_SAMPLES_SHOWN])
            more = f" (+{len(f.samples) - MAX_SAMPLES_SHOWN} more)" if len(f.samples) > MAX_SAMPLES_SHOWN else ""
            parts.append(Text(f"        samples: {shown}{more}", style="cyan"))
        for key, value in f.evidence.items():
            if key == "traceback":
                tail = value.strip().splitlines()[-4:]
                parts.append(Text("        " + "\n        ".join(tail), style="magenta"))
                continue
            parts.append(Text(f"        {key}: {_short(value)}", style="dim"))
    if check.metrics:
        shown = ", ".join(f"{k}={_short(v, 60)}" for k, v in check.metrics.items())
        parts.append(Text(f"  metrics: {shown}", style="dim"))
    if check.remedy and check.status in (Status.WARN, Status.FAIL):
        parts.append(Text(f"  fix: {check.remedy}", style="italic"))
    if not parts:
        parts.append(Text("  " + check.summary))
    title = Text.assemble(f"{check.id} {check.title} ", status_text(check.status))
    return Panel(Group(*parts), title=title, title_align="left", border_style=STYLE[check.status].split()[-1])


def _verdict(result) -> Text:
    counts = {}
    for c in result.checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    parts = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda kv: -kv[0].rank))
    text = Text("verdict: ")
    text.append(result.status.value.upper(), style=STYLE[result.status])
    text.append(f"  ({parts}; exit code {result.exit_code})")
    return text


def _short(value, limit: int = MAX_EVIDENCE_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RateColumn(ProgressColumn):
    """Items per second for tasks that name their unit (the data pass: images/s)."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit")
        if not unit or not task.speed:
            return Text("")
        return Text(f"{task.speed:,.0f} {unit}/s")


class RichProgress:
    """Progress bars on stderr that vanish when done; only used on a terminal without --quiet."""

    def __init__(self, console: Console):
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(),
                                  console=console, transient=True)
        self._stage = None

    def __enter__(self):
        self._progress.start()
        self._stage = self._progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc):
        self._progress.stop()
        return False

    def stage(self, description: str) -> None:
        if self._stage is not None:
            self._progress.update(self._stage, description=description)

    def plan(self, record: dict) -> None:
        if record.get("probes"):
            self._progress.console.print(plan_table(record, before=True))

    def task(self, description: str, total: float | None = None, unit: str | None = None):
        return _RichTask(self._progress, self._progress.add_task(description, total=total, unit=unit))


class _RichTask:
    def __init__(self, progress: Progress, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        self._progress.update(self._id, completed=completed, description=description)

    def close(self) -> None:
        self._progress.remove_task(self._id)
