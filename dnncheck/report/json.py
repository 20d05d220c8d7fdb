"""--json: the results object of DESIGN section 3."""

from __future__ import annotations

import json
from pathlib import Path


def json_text(result) -> str:
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def write_json(result, path: Path) -> None:
    from dnncheck.outputs import write_text

    write_text(path, json_text(result), "JSON results")
