"""--html: one self-contained file (inline CSS, figures as PNG data URIs, no network requests),
rendered with an autoescaping jinja2 template so names from the user's data show as text."""

from __future__ import annotations

import json
from pathlib import Path

from dnncheck.results import Status

TEMPLATE = "report.html.j2"
MAX_SAMPLES_SHOWN = 20


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("dnncheck", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["short"] = _short
    env.filters["plain"] = _plain
    return env


def check_view(c, change=None) -> dict:
    """What check_section.html.j2 shows of one CheckResult: figures drawn, findings' samples capped."""
    from dnncheck.plots import figures_for, grids_for

    return {"c": c, "figures": figures_for(c.figures), "grids": grids_for(c.figures),
            "in_figures": _ids_in_figures(c.figures), "change": change,
            "metrics": {k: v for k, v in c.metrics.items()},
            "findings": [{"f": f, "samples": f.samples[:MAX_SAMPLES_SHOWN],
                          "more": max(0, len(f.samples) - MAX_SAMPLES_SHOWN),
                          "evidence": {k: v for k, v in f.evidence.items() if k != "traceback"},
                          "traceback": f.evidence.get("traceback")} for f in c.findings]}


def render_html(result) -> str:
    from dnncheck.plots import image_uri

    thumbs = {sid: image_uri(img, 48) for sid, img in result.thumbnails.items()}
    checks = [check_view(c, result.baseline.get(c.id) if result.baseline else None) for c in result.checks]
    counts = {s.value: sum(c.status is s for c in result.checks) for s in Status if s is not Status.INFO}
    return _environment().get_template(TEMPLATE).render(r=result, checks=checks, thumbs=thumbs, counts=counts)


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


NOTEBOOK_FRAME_HEIGHT = 900  # px of the expanded full report in a notebook cell


def render_notebook(result) -> str:
    """A notebook cell's view of an audit: the verdict and one row per check, then the full HTML report
    in a collapsed <details> (an iframe's srcdoc: its styles stay out of the notebook's page)."""
    import html

    rows = "".join(
        f"<tr><td>{html.escape(c.id)}</td><td>{html.escape(c.slug)}</td>"
        f"<td style='color:{_COLOURS.get(c.status.value, '#333')};font-weight:600'>{c.status.value.upper()}</td>"
        f"<td>{html.escape(c.summary)}</td></tr>" for c in result.checks)
    full = html.escape(render_html(result), quote=True)
    return (f"<div class='dnncheck'><p><b>dnncheck: {result.status.value.upper()}</b> (exit code {result.exit_code}; "
            f"{len(result.checks)} checks, {result.duration_s:.1f} s) on {html.escape(str(result.data.get('source', '')))}"
            f"</p><table><tr><th>id</th><th>check</th><th>status</th><th>summary</th></tr>{rows}</table>"
            f"<details><summary>Full report (findings, evidence, figures)</summary>"
            f"<iframe srcdoc=\"{full}\" style='width:100%;height:{NOTEBOOK_FRAME_HEIGHT}px;border:0'></iframe>"
            f"</details></div>")


def render_check(check) -> str:
    """One check's section, as in the report (check_section.html.j2), for a CheckResult displayed alone
    in a notebook: in an iframe, so the report's styles stay out of the notebook's page."""
    import html

    page = _environment().get_template("check.html.j2").render(x=check_view(check), thumbs={})
    return (f"<iframe srcdoc=\"{html.escape(page, quote=True)}\" "
            f"style='width:100%;height:{NOTEBOOK_FRAME_HEIGHT // 2}px;border:0'></iframe>")


# the text colours of the report's badges (style.css.j2), inline: a notebook page has no report styles
_COLOURS = {"pass": "#176b33", "warn": "#7a5a00", "fail": "#9b1c1c", "error": "#5b1c9b", "skip": "#4a5263",
            "info": "#3b82c4"}
