"""Where reports go: never onto the user's inputs, never half-written.

Every report path is checked before the audit starts: a path that resolves to an input (data,
config, weights, external set, baseline, history), is a hard link of one, or lies inside a data
folder is refused (exit 2), since dnncheck only ever reads the user's files. Reports are written
to a temporary file beside the target and renamed over it, so a failed or interrupted write
leaves the previous report (or nothing) in place. `-` means standard output.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from dnncheck.errors import UserError

STDOUT = "-"


def is_stdout(path) -> bool:
    return str(path) == STDOUT


def check_outputs(outputs: dict[str, Path | None], inputs: dict[str, Path | None],
                  folders: dict[str, Path | None] | None = None) -> None:
    """UserError naming the flag and the input it would destroy; `folders` are data folders whose
    insides are off limits too."""
    to_stdout = [flag for flag, path in outputs.items() if path is not None and is_stdout(path)]
    if len(to_stdout) > 1:
        raise UserError(f"{' and '.join(to_stdout)}: only one report can go to standard output (-); give the "
                        "others file paths")
    existing = {what: Path(p) for what, p in inputs.items() if p is not None}
    trees = {what: Path(p).resolve() for what, p in (folders or {}).items() if p is not None and Path(p).is_dir()}
    claimed: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None or is_stdout(path):
            continue
        path = Path(path)
        if path.is_dir():
            raise UserError(f"{flag} {path}: is a folder; give a file path for the report")
        target = path.resolve()
        for what, source in existing.items():
            if target == source.resolve() or _same_file(path, source):
                raise UserError(f"{flag} {path}: is the {what} this audit reads; dnncheck never overwrites its "
                                "inputs, write the report elsewhere")
        for what, tree in trees.items():
            if tree in target.parents:
                raise UserError(f"{flag} {path}: lies inside the {what} folder {tree}; dnncheck never writes "
                                "next to your data, write the report elsewhere")
        if target in claimed:
            raise UserError(f"{flag} {path}: is also the {claimed[target]} path; give each report its own file")
        claimed[target] = flag


def _same_file(a: Path, b: Path) -> bool:
    """Hard links (and any other path to the same inode) count as the same file."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_text(path: Path, text: str, what: str) -> None:
    """Write `text` to `path` atomically (or to stdout for `-`); UserError when it cannot be written."""
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    data = text.encode("utf-8", errors="backslashreplace")  # undecodable file names survive as escapes
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, _report_mode(path))  # mkstemp makes 0600; a report is shared like any file
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise UserError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _report_mode(path: Path) -> int:
    """The mode the report would have had if written in place: the old report's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
