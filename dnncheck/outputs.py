"""Where reports go: never onto the user's inputs, never half-written, never over a device.

Every report path is checked before the audit starts: a path that resolves to an input (data,
config, weights, external set, baseline, history), is a hard link of one, or lies inside a data
folder is refused (exit 2), since dnncheck only ever reads the user's files.

How a report is written depends on what the path is (`os.stat`, following symbolic links):
- nothing yet, or a regular file: written to a temporary file beside it and renamed over it, so a
  failed or interrupted write leaves the previous report (or nothing) in place. A symbolic link is
  written through: its target is replaced and the link keeps pointing at it.
- a character device or a FIFO (`/dev/null`, `/dev/tty`, a named pipe), or a file descriptor
  (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`, a link to one, a shell's `>(...)`): written
  through in place, as `echo > PATH` would. Renaming over such a path would replace the machine's
  `/dev/null` with a regular file when run as root. A FIFO nobody reads is refused at once
  (opened non-blocking) instead of hanging the audit.
- a folder, a socket or a block device: refused (exit 2).
`-` means standard output.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

from dnncheck.errors import UserError

STDOUT = "-"
STDOUT_ALIASES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")
# a path that names an open file descriptor: writes go through it, whatever file it is
_FD_PATH = re.compile(r"^/(?:dev/(?:fd/\d+|std(?:in|out|err))|proc/(?:self|thread-self|\d+)/fd/\d+)$")
MAX_LINK_HOPS = 40  # as the kernel's own limit on symbolic links in one lookup


def is_stdout(path) -> bool:
    return str(path) == STDOUT or str(path) in STDOUT_ALIASES


def check_outputs(outputs: dict[str, Path | None], inputs: dict[str, Path | None],
                  folders: dict[str, Path | None] | None = None) -> None:
    """UserError naming the flag and the input it would destroy; `folders` are data folders whose
    insides are off limits too."""
    to_stdout = [flag for flag, path in outputs.items() if path is not None and is_stdout(path)]
    if len(to_stdout) > 1:
        raise UserError(f"{' and '.join(to_stdout)}: only one report can go to standard output (-); give the "
                        "others file paths")
    claimed: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None or is_stdout(path):
            continue
        refused = protected_input(Path(path), inputs, folders)
        if refused:
            raise UserError(f"{flag} {refused}")
        if written_through(Path(path)):
            continue  # /dev/null twice is fine: nothing is replaced
        target = Path(path).resolve()
        if target in claimed:
            raise UserError(f"{flag} {path}: is also the {claimed[target]} path; give each report its own file")
        claimed[target] = flag


def _overlong(path: Path) -> str | None:
    """Why the file system will refuse this name (a part over NAME_MAX bytes, the whole over PATH_MAX),
    said before the audit instead of failing to write its report after it."""
    import os

    shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:60]}...{str(path)[-15:]}"
    name_max, path_max = _name_limits(path)
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        return f"{shown}: the path is over the file system's {path_max} bytes; use a shorter one"
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > name_max:
        return f"{shown}: a name in it is {longest} bytes long, over the file system's {name_max}; use a shorter name"
    return None


def _name_limits(path: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the file system the report would go to (Linux's 255 and 4096 where it
    cannot be asked)."""
    import os

    for folder in (path.parent, *path.parent.parents):
        try:
            if len(os.fsencode(str(folder.absolute()))) < 4096 and folder.is_dir():
                return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
        except (OSError, ValueError, AttributeError):
            continue
    return 255, 4096


def protected_input(path: Path, inputs: dict[str, Path | None], folders: dict[str, Path | None] | None) -> str | None:
    """Why writing a report to `path` is refused ("PATH: is ..."), or None when it may be written."""
    too_long = _overlong(path)
    if too_long:
        return too_long
    kind = _special_kind(path)
    if kind:
        return (f"{path}: is {kind}; a report goes to a regular file, a character device such as /dev/null, "
                "a FIFO or standard output (-)")
    if written_through(path):
        return None
    target = path.resolve()
    for what, source in inputs.items():
        if source is not None and (target == Path(source).resolve() or _same_file(path, Path(source))):
            return (f"{path}: is the {what} this audit reads; dnncheck never overwrites its inputs, write the "
                    "report elsewhere")
    for what, tree in (folders or {}).items():
        if tree is not None and Path(tree).is_dir() and Path(tree).resolve() in target.parents:
            return (f"{path}: lies inside the {what} folder {Path(tree).resolve()}; dnncheck never writes next "
                    "to your data, write the report elsewhere")
    return None


def _special_kind(path: Path) -> str | None:
    """'a folder' / 'a socket' / 'a block device' for paths no report may be written to."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    return None


def written_through(path: Path) -> bool:
    """True for paths written in place rather than replaced: character devices, FIFOs, and file
    descriptors (/dev/stdout, /proc/self/fd/N, or a symbolic link leading to one)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or _leads_to_descriptor(path)


def _leads_to_descriptor(path: Path) -> bool:
    current = os.path.abspath(path)
    for _ in range(MAX_LINK_HOPS):
        if _FD_PATH.match(current):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return False


def _same_file(a: Path, b: Path) -> bool:
    """Hard links (and any other path to the same inode) count as the same file."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_text(path: Path, text: str, what: str) -> None:
    """Write `text` to `path` (see the module docstring for how); UserError when it cannot be written."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    data = text.encode("utf-8", errors="backslashreplace")  # undecodable file names survive as escapes
    kind = _special_kind(path)
    if kind:  # became one since the audit started
        raise UserError(f"{path}: is {kind}; cannot write the {what} there")
    try:
        if written_through(path):
            write_in_place(path, data)
        else:
            _replace_atomically(Path(os.path.realpath(path)), data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the {what} ({reason(exc)})") from None


def write_in_place(path: Path, data: bytes, create: bool = False) -> None:
    """Append through a device, FIFO or descriptor path (or to a regular file, made when `create`)
    without replacing it: appending keeps what a shell's `> log` already holds when the path is a
    descriptor of that file. A FIFO with no reader raises at once instead of blocking."""
    if sys.stdout is not None and is_stdout(path):
        sys.stdout.flush()  # keep order with what Python already buffered for standard output
    flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if create:
        flags |= os.O_CREAT
    fd = os.open(path, flags, 0o666)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def reason(exc: OSError) -> str:
    if exc.errno == errno.ENXIO:
        return "it is a FIFO that no process is reading; start the reader first"
    return exc.strerror or str(exc)


def _replace_atomically(path: Path, data: bytes) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name is cut: a report name near the 255-byte limit plus 14 characters was too long
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, _report_mode(path))  # mkstemp makes 0600; a report is shared like any file
        os.replace(tmp, path)
        tmp = None
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
