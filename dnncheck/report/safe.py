"""Text from the user's data (class and file names, notes, messages quoting them) is printed to a
terminal: control characters are removed first, so a folder named with escape codes cannot clear
the screen, recolour the report or plant a hyperlink. Newlines and tabs stay."""

from __future__ import annotations

import re

# whole escape sequences first (CSI such as colours and clear-screen, OSC such as hyperlinks and
# titles), so no "[31m" residue is left; then any remaining C0 control except tab and newline, DEL,
# and the C1 controls (an 8-bit CSI starts escapes too)
_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def _clean(value):
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def sanitized(result):
    """A copy of an AuditResult whose every string is printable (for terminal reporters)."""
    from dnncheck.results import AuditResult

    return AuditResult.from_dict(_clean(result.to_dict()))
