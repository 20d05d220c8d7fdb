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
    """One check's section as HTML (a CheckResult displayed alone in a notebook): status, summary,
    findings with their sample ids, remedy, metrics and figures."""
    import html

    from dnncheck.plots import figures_for

    findings = "".join(
        f"<li><b>{f.severity.value}</b>: {html.escape(f.message)}"
        + (f"<br><small>samples: {html.escape(', '.join(map(str, f.samples[:MAX_SAMPLES_SHOWN])))}"
           f"{f' and {len(f.samples) - MAX_SAMPLES_SHOWN} more' if len(f.samples) > MAX_SAMPLES_SHOWN else ''}</small>"
           if f.samples else "") + "</li>" for f in check.findings)
    metrics = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_short(v, 120))}</td></tr>"
                      for k, v in check.metrics.items())
    figures = "".join(f"<figure><img src='{uri}' style='max-width:100%'><figcaption>{html.escape(title)}"
                      f"</figcaption></figure>" for title, uri in figures_for(check.figures) if uri)
    return (f"<div class='dnncheck-check'><h3>{html.escape(check.id)} {html.escape(check.slug)}: "
            f"{html.escape(check.title)} <span style='color:{_COLOURS.get(check.status.value, '#333')}'>"
            f"{check.status.value.upper()}</span></h3><p>{html.escape(check.summary)}</p>"
            f"<ul>{findings}</ul>" + (f"<p><b>What to do:</b> {html.escape(check.remedy)}</p>" if check.remedy else "")
            + (f"<details><summary>metrics</summary><table>{metrics}</table></details>" if metrics else "")
            + figures + "</div>")


_COLOURS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "error": "#8250df", "skip": "#57606a",
            "info": "#0969da"}
