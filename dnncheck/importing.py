"""Importing user code named as `pkg.module:attribute`, with errors that say what to fix."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from dnncheck.errors import UserError, raised


def import_object(spec: str, what: str, search_dirs: tuple[Path, ...] = ()):
    """Import `pkg.module:attr`; the current folder and `search_dirs` are importable first."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{what} {spec!r}: expected the form pkg.module:name")
    for directory in (Path.cwd(), *search_dirs):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # never leave __pycache__ in the user's folders
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"{what} {spec!r}: cannot import module {exc.name!r}; "
                        "install it or run dnncheck from the folder that holds it") from None
    except (Exception, SystemExit) as exc:  # the user's module failed while importing
        raise UserError(f"{what} {spec!r}: importing {module_name} {raised(exc)}") from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"{what} {spec!r}: module {module_name} has no attribute {attr!r}") from None
