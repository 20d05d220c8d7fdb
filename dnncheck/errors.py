"""Errors that end an audit before it starts (exit 2) and the messages they carry."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user: the CLI prints the message as one line and exits 2.

    The message must name the file or key at fault and say what to do about it.
    """

    exit_code = 2


class ProbeUnavailable(Exception):
    """A probe training run could not be made; checks that only partly need it carry on."""


def closest(word: str, choices) -> str:
    """' (did you mean "x"?)' for the nearest valid spelling, or '' when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{match[0]}"?)' if match else ""
