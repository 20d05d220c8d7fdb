"""--html: one self-contained file (inline CSS, figures as PNG data URIs, no network requests),
rendered with an autoescaping jinja2 template so names from the user's data show as text."""

from __future__ import annotations

import json
from pathlib import Path

from dnncheck.results import Status

TEMPLATE = "report.html.j2"
MAX_SAMPLES_SHOWN = 20


def render_html(result) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    from dnncheck.plots import figures_for, grids_for, image_uri

    env = Environment(loader=PackageLoader("dnncheck", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["short"] = _short
    env.filters["plain"] = _plain
    thumbs = {sid: image_uri(img, 48) for sid, img in result.thumbnails.items()}
    checks = []
    for c in result.checks:
        checks.append({"c": c, "figures": figures_for(c.figures), "grids": grids_for(c.figures),
                       "in_figures": _ids_in_figures(c.figures),
                       "change": result.baseline.get(c.id) if result.baseline else None,
                       "metrics": {k: v for k, v in c.metrics.items()},
                       "findings": [{"f": f, "samples": f.samples[:MAX_SAMPLES_SHOWN],
                                     "more": max(0, len(f.samples) - MAX_SAMPLES_SHOWN),
                                     "evidence": {k: v for k, v in f.evidence.items() if k != "traceback"},
                                     "traceback": f.evidence.get("traceback")} for f in c.findings]})
    counts = {s.value: sum(c.status is s for c in result.checks) for s in Status if s is not Status.INFO}
    return env.get_template(TEMPLATE).render(r=result, checks=checks, thumbs=thumbs, counts=counts)


def _ids_in_figures(figures) -> set:
    """Samples a check's image grids already show (label-noise's suspects with their suggested labels):
    their finding lists them as ids rather than drawing each image a second time."""
    from dnncheck.figures import ImageGrid

    return {sid for fig in (figures or {}).values() if isinstance(fig, ImageGrid) for sid in fig.ids}


def write_html(result, path: Path) -> None:
    from dnncheck.outputs import write_text

    write_text(path, render_html(result), "HTML report")


def _plain(value) -> str:
    """An environment entry as words: the data pass's record read "files 398, decoded 398, ..., seconds
    2.72" instead of a Python dict in the header."""
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')} {_plain(v)}" for k, v in value.items())
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _short(value, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
