"""The command line (DESIGN section 1): the only place that prints errors and decides to exit.

Importing this module must stay cheap: torch, torchvision and umap are imported only inside the
commands that need them, so `dnncheck --help` and `dnncheck checks` answer at once.
"""

from __future__ import annotations

import functools
import shlex
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dnncheck import __version__
from dnncheck.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="A pre-flight checklist for training deep neural networks.")


def _say_warning(message: str) -> None:
    from dnncheck.report.safe import printable

    print(f"dnncheck: warning: {printable(' '.join(message.split()))}", file=sys.stderr)


def _say_error(message: str) -> None:
    from dnncheck.report.safe import printable

    # one line, whatever the message quotes (paths and names may hold newlines or escape codes)
    print(f"dnncheck: error: {printable(' '.join(message.split()))}", file=sys.stderr)


def user_errors_exit_2(fn):
    """Bad input ends with one plain line on stderr and exit code 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            _say_error(str(exc))
            if exc.end_process:  # nothing was written yet; threads a library left would keep us waiting
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(2)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # reports are written only at the end, atomically: none is half-written
            print("dnncheck: interrupted; no report was written", file=sys.stderr)
            raise typer.Exit(130) from None
    return wrapper


@app.command()
@user_errors_exit_2
def audit(
    target: Optional[str] = typer.Argument(None, help="a .toml config, a dataset (folder, .npz, .csv) or sklearn:digits; "
                                           "default: [tool.dnncheck] in ./pyproject.toml, else ./dnncheck.toml"),
    model: Optional[str] = typer.Option(None, "--model", help="smallcnn | mlp | resnet18 | pkg.module:factory | model.ts"),
    weights: Optional[str] = typer.Option(None, "--weights", help="state_dict to load into the model"),
    select: Optional[str] = typer.Option(None, "--select", help="comma-separated check ids or slugs to run"),
    ignore: Optional[str] = typer.Option(None, "--ignore", help="comma-separated check ids or slugs to skip"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="fail | warn | never: which status makes the exit code 1"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the results as JSON here"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML report here"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML here (one testcase per check)"),
    output_format: str = typer.Option("rich", "--format", help="rich | github (workflow annotations) | markdown"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="a previous --json result: only checks that got worse gate"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    budget: Optional[float] = typer.Option(None, "--budget", help="seconds for all probe training"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed for splits, subsamples and probes"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no report or progress on the terminal"),
    engine: Optional[str] = typer.Option(None, "--engine", help="local | ray: who runs the data pass over image files"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="with --engine ray: the cluster's address"),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes for the data pass (default: every core)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="decode every file; neither read nor write the record cache"),
    verify_cache: bool = typer.Option(False, "--verify-cache", help="hash every file; decode again those whose content "
                                      "changed since their cached record"),
):
    """Run the checklist on a dataset and model."""
    started = time.perf_counter()
    from dnncheck.api import audit_config

    _check_format(output_format)
    cfg = audit_config(target, model=model, weights=weights, select=select, ignore=ignore, fail_on=fail_on,
                       device=device, budget=budget, seed=seed, engine=engine, ray_address=ray_address,
                       workers=workers, no_cache=no_cache, verify_cache=verify_cache)
    from dnncheck.config import input_paths
    from dnncheck.outputs import check_outputs
    from dnncheck.runner import load_baseline

    inputs, folders = input_paths(cfg)
    check_outputs({"--json": json_path, "--html": html_path, "--junit": junit_path},
                  {**inputs, "baseline": baseline}, folders)

    before = load_baseline(baseline) if baseline else None
    result = _run(cfg, quiet, started, before)
    _write_and_show(result, json_path, quiet, html_path, junit_path, output_format)
    raise typer.Exit(result.exit_code)


def _check_format(output_format: str) -> None:
    if output_format not in ("rich", "github", "markdown"):
        raise UserError(f"--format {output_format!r}: expected rich, github or markdown")


def _run(cfg, quiet: bool, started: float, baseline=None):
    from dnncheck.api import execute
    from dnncheck.progress import NullProgress

    err = Console(stderr=True)
    if quiet or not err.is_terminal:
        progress = NullProgress()
    else:
        from dnncheck.report.terminal import RichProgress

        progress = RichProgress(err)
    command = "dnncheck " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return execute(cfg, progress, command, started, baseline)


@app.command()
@user_errors_exit_2
def curves(
    history: Path = typer.Argument(..., help="Keras history JSON or a CSV log (epoch/step, loss, val_loss, metric columns)"),
    classes: Optional[int] = typer.Option(None, "--classes", help="number of classes, for the loss-scale and chance tests"),
    fail_on: str = typer.Option("fail", "--fail-on", help="fail | warn | never"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the results as JSON here"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML report here"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML here"),
    output_format: str = typer.Option("rich", "--format", help="rich | github (workflow annotations) | markdown"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no report on the terminal"),
):
    """Diagnose a training history you already have (overfitting onset, divergence, plateaus, ...)."""
    _check_format(output_format)
    started = time.perf_counter()
    from dnncheck.checks.training_curves import TrainingCurves, TrainingCurvesMeasurement
    from dnncheck.config import FAIL_ON
    from dnncheck.curves import read_history
    from dnncheck.outputs import check_outputs

    check_outputs({"--json": json_path, "--html": html_path, "--junit": junit_path}, {"history": history})
    from dnncheck.runner import audit_result

    if fail_on not in FAIL_ON:
        raise UserError(f"--fail-on {fail_on!r}: expected one of {', '.join(FAIL_ON)}")
    if classes is not None and classes < 2:
        raise UserError(f"--classes {classes}: expected an integer >= 2")
    check = TrainingCurves()
    measured = TrainingCurvesMeasurement(read_history(history), classes, str(history))
    result = check.conclude(check.judge(measured, check.t)).with_duration(time.perf_counter() - started)
    audit = audit_result((result,), fail_on, started, {"python": sys.version.split()[0]}, {"source": str(history)}, {},
                         "dnncheck " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    from dataclasses import replace

    audit = replace(audit, protected=({"history": history}, {}))
    _write_and_show(audit, json_path, quiet, html_path, junit_path, output_format)
    raise typer.Exit(audit.exit_code)


def _write_and_show(result, json_path: Optional[Path], quiet: bool, html_path: Optional[Path] = None,
                    junit_path: Optional[Path] = None, output_format: str = "rich") -> None:
    """Every requested output; the report files are written (atomically) before anything is
    printed. A report written to `-` owns standard output; the terminal report then goes to stderr."""
    from dnncheck.outputs import is_stdout
    from dnncheck.report.json import write_json

    writers = [(json_path, write_json)]
    if junit_path:
        from dnncheck.report.junit import write_junit

        writers.append((junit_path, write_junit))
    if html_path:
        from dnncheck.report.html import write_html

        writers.append((html_path, write_html))
    for path, write in writers:
        if path:
            write(result, path)
    from dnncheck.report.markdown import write_step_summary

    problem = write_step_summary(result)  # GitHub Actions' job summary, when $GITHUB_STEP_SUMMARY is set
    if problem:
        _say_warning(problem)
    if quiet:
        return
    to_stdout = any(path is not None and is_stdout(path) for path in (json_path, html_path, junit_path))
    console = Console(stderr=True) if to_stdout else Console()
    if output_format == "markdown":
        from dnncheck.report.markdown import markdown

        console.print(markdown(result), markup=False, highlight=False, soft_wrap=True, end="")
        return
    if output_format == "github":
        from dnncheck.report.github import annotations

        console.print("\n".join(annotations(result)), markup=False, highlight=False, soft_wrap=True)
        return
    from dnncheck.report.terminal import render_audit

    render_audit(result, console)


@app.command("checks")
def list_checks():
    """List every check: id, slug, checklist item, what it needs."""
    from rich.table import Table

    from dnncheck.checks import CHECKS

    table = Table(title="dnncheck checks", title_justify="left")
    for col in ("id", "slug", "item", "title", "needs"):
        # ids and slugs are what users type: never cut or wrapped, whatever the terminal's width
        table.add_column(col, no_wrap=col in ("id", "slug", "item"), overflow="fold")
    for c in sorted(CHECKS, key=lambda c: int(c.id[3:])):
        table.add_row(c.id, c.slug, "" if c.item is None else str(c.item), c.title, c.needs)
    Console().print(table)


@app.command()
@user_errors_exit_2
def explain(key: str = typer.Argument(..., help="a check id (DNC4) or slug (loss-sanity)")):
    """What a check checks, why it matters, how it is computed and how to fix what it finds."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from dnncheck.checks import lookup

    check = lookup(key, "explain")
    console = Console()
    item = f", checklist item {check.item}" if check.item else ""
    console.print(f"[bold]{check.id} {check.slug}[/bold]: {check.title}{item}\n", highlight=False)
    for indent, paragraph in reflowed(check.doc()):
        console.print(Padding(Text(paragraph), (0, 0, 0, indent), expand=False), highlight=False)
    if check.thresholds:
        table = Table(title=Text(f"thresholds ([checks.{check.slug}] in the config)"), title_justify="left")
        table.add_column("name", no_wrap=True)  # a key people copy into their config: never broken
        table.add_column("default")
        table.add_column("meaning (valid values)", overflow="fold")
        for name, (default, meaning) in check.thresholds.items():
            table.add_row(name, repr(default), f"{meaning} (valid: {check.threshold_range(name)})")
        console.print(table)


def reflowed(doc: str) -> list[tuple[int, str]]:
    """(indent, text) paragraphs of a docstring whose lines were wrapped for the source: the lines of
    a paragraph joined, so the terminal wraps them once at its own width. A heading (no indent) is
    its own paragraph; a blank line or a line starting with "- " starts a new one."""
    out: list[tuple[int, str]] = []
    for line in doc.splitlines():
        text = line.strip()
        indent = len(line) - len(line.lstrip())
        if not text:
            out.append((0, ""))
        elif out and out[-1][1] and indent and out[-1][0] == indent and not text.startswith("- "):
            out[-1] = (indent, f"{out[-1][1]} {text}")
        else:
            out.append((indent, text))
    return out


@app.command()
@user_errors_exit_2
def init(path: Path = typer.Argument(Path("dnncheck.toml"), help="where to write the starter config")):
    """Write a commented starter config (never overwrites an existing file)."""
    from dnncheck.config import STARTER_CONFIG

    import os

    try:  # O_EXCL: fails on any existing name, a dangling symlink included, so nothing is written through it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UserError(f"{path}: already exists (or is a symbolic link) and dnncheck never overwrites files; "
                        "pass another PATH") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(STARTER_CONFIG.format(name=path.name))
    # soft_wrap: the terminal wraps the line; Rich's own wrapping broke it inside "[data] source" and
    # inside the path when output was not a terminal (80 columns)
    Console().print(f"wrote {path}; edit [data] source, then run: dnncheck audit {path}", highlight=False,
                    markup=False, soft_wrap=True)


def _version_callback(value: bool):
    if value:
        print(f"dnncheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="print the version and exit")):
    """A pre-flight checklist for training deep neural networks."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one plain line and exit 2."""
    try:
        code = app(args=argv, prog_name="dnncheck", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):  # outside a command (while typer parses): nothing was started
        print("dnncheck: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # click's UsageError (vendored by recent typer, so matched by shape): bad flags or arguments
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if not exc.format_message():  # `dnncheck` alone: help was printed, nothing went wrong
            sys.exit(0)
        command = getattr(getattr(exc, "ctx", None), "command_path", "dnncheck")
        _say_error(f"{exc.format_message()} (see `{command} --help`)")
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
