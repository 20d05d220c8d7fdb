"""--json: the results object of DESIGN section 3."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(result, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
