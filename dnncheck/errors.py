"""Errors that end an audit before it starts (exit 2) and the messages they carry."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user: the CLI prints the message as one line and exits 2.

    The message must name the file or key at fault and say what to do about it.
    """

    exit_code = 2
    # True when a library left threads behind that keep the interpreter from exiting (Ray after a
    # failed connection): the CLI then ends the process at once after printing the message
    end_process = False


class ProbeUnavailable(Exception):
    """A probe training run could not be made; checks that only partly need it carry on."""


class ProbeNotRun(ProbeUnavailable):
    """The plan left this probe out: the model's predicted cost on this device type does not fit the
    budget (probes/plan.py, select_affordable). Said once for the audit (the plan note); checks say
    what they could not measure as info, or skip when they have nothing else."""

    def __init__(self, probe: str):
        self.probe = probe
        super().__init__(f"the {probe} probe was not run: the probe plan for this model does not fit --budget on "
                         "this device (see the plan note)")


class ProbeCutShort(ProbeUnavailable):
    """The --budget guard stopped a probe before its planned work was done.

    Its evidence is partial, so the checks that depend on it report `warn` with an inconclusive
    finding instead of a verdict. The message names the probe, the steps done of planned and a
    budget that would let it finish; it carries no timing (timings live in `evidence`).
    """

    def __init__(self, probe: str, steps_done: int, steps_planned: int, spent_seconds: float,
                 suggested_budget_seconds: float):
        self.probe, self.steps_done, self.steps_planned = probe, steps_done, steps_planned
        self.spent_seconds, self.suggested_budget_seconds = spent_seconds, suggested_budget_seconds
        # no colon before the first ';': summaries are cut at the first ':' or ';'
        # one budget for the whole audit is suggested in its notes (runner.budget_note), not one per probe
        super().__init__(f"inconclusive, the {probe} probe was not finished ({steps_done} of {steps_planned} "
                         "planned steps when the --budget guard stopped it); the audit's notes give a budget that "
                         "completes every probe, and cheaper settings")

    def evidence(self) -> dict:
        return {"inconclusive": True, "probe": self.probe, "steps_done": self.steps_done,
                "steps_planned": self.steps_planned, "spent_seconds": round(self.spent_seconds, 2),
                "suggested_budget_seconds": self.suggested_budget_seconds}


def closest(word: str, choices) -> str:
    """' (did you mean "x"?)' for the nearest valid spelling, or '' when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{match[0]}"?)' if match else ""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type when the message is empty."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def require_regular_file(path, what: str, fix: str) -> None:
    """UserError unless `path` is a regular file: opening a FIFO blocks forever, a device never ends."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; {fix}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror}); {fix}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
        raise UserError(f"{path}: the {what} is {kind}; {fix}")


def raised(exc: BaseException) -> str:
    """How user code failed, for a one-line message: 'raised ValueError: ...' or 'called sys.exit(5)',
    with where in the user's code (file:line) when the traceback reaches it."""
    where = user_frame(exc)
    at = f" at {where}" if where else ""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}){at}"
    return f"raised {type(exc).__name__}{at}: {' '.join(str(exc).split())[:300]}"


def user_frame(exc: BaseException) -> str | None:
    """'file.py:12 in forward' for the innermost traceback frame outside dnncheck, torch and Python's
    own library: the line of the user's code that raised or led to the raise."""
    import os
    import sysconfig
    import traceback

    import sys

    ours = os.path.dirname(os.path.abspath(__file__))
    library = [ours, sysconfig.get_paths()["stdlib"]]
    torch = sys.modules.get("torch")  # not imported for this: without torch loaded no frame is torch's
    if torch is not None and getattr(torch, "__file__", None):
        library.append(os.path.dirname(os.path.abspath(torch.__file__)))
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = os.path.abspath(frame.filename)
        if not any(name.startswith(root + os.sep) for root in library) and not frame.filename.startswith("<"):
            found = f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    return found


class UserCodeExited(UserError):
    """User code (a model's forward, a Dataset, a factory, a loss) called sys.exit during the audit:
    exit 2 with where it happened, never the user's exit code passed off as dnncheck's."""

    def __init__(self, exc: SystemExit, during: str):
        super().__init__(f"{during}: user code {raised(exc)}; dnncheck cannot audit code that exits the process "
                         "(raise an exception instead)")


# Folders of the operating system, never a dataset: reading them (through a link in a data folder or
# as the source) would put system file names into reports, and /proc or /sys walk without end.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/etc", "/boot", "/run", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                  "/libx32", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/var/log", "/var/run")


def system_folder(path) -> str | None:
    """The system folder `path` really lies in (symbolic links resolved), or None."""
    import os

    real = os.path.realpath(path)
    for folder in SYSTEM_FOLDERS:
        if _within(real, folder):
            return folder
    above = "/" if real == "/" else real + "/"
    holding = [folder for folder in SYSTEM_FOLDERS if folder.startswith(above)]
    return holding[0] if holding else None  # `/` or `/usr` as TARGET: a walk that reaches /proc


def _within(real: str, folder: str) -> bool:
    return real == folder or real.startswith(folder + "/")


def refuse_system_path(path, what: str) -> None:
    """UserError when `path` leads into a system folder; the message names the path, never contents."""
    import os

    folder = system_folder(path)
    if folder:
        real = os.path.realpath(path)
        link = f" (a link to {real})" if real != os.path.abspath(path) else ""
        where = (f"lies in the system folder {folder}" if _within(real, folder)
                 else f"holds system folders such as {folder}")
        raise UserError(f"{path}: the {what}{link} {where}; dnncheck reads datasets, "
                        "never system folders: point it at your data or remove the link")
