"""Matplotlib figures (Agg backend) for the HTML report, returned as PNG data URIs.

One function draws each kind of figure record (figures.py) a check put in `CheckResult.figures`;
`figures_for` maps a check's records to a list of (title, data URI). Image grids are not drawn: the
report lays their thumbnails out as HTML cells (`grids_for`)."""

from __future__ import annotations

import base64
import io

import numpy as np

from dnncheck.figures import Bars, ImageGrid, Lines, MarkedImage, Points

MAX_LINES = 10
DPI = 100  # 8-pt captions are 11 px on the 1280 px report (80: 6-9 px labels)
LINE_SIZE = (9.5, 3.8)  # inches: with its legend beside it a line chart spans the report's ~1,150 px content
SCATTER_SIZE = (4.6, 4.4)  # two projections side by side, each with its legend beside it
MAX_BAR_WIDTH = 11.0  # inches: the content width; more categories make thinner bars, not a wider page
MAX_BAR_LABELS = 40  # category labels beyond this overlap: every k-th is labelled


def _plt():
    import logging

    import matplotlib

    # matplotlib logs its notices (e.g. "Clipping input data") straight to stderr, which is kept for
    # errors: only its errors may pass
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_uri(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_uri(image: np.ndarray, max_side: int = 64, marks=()) -> str:
    """A small PNG thumbnail of an HWC image; `marks`: (row, col) pixels of the image ringed in red."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.round(_unit_range(arr) * 255).astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3])
    scale = max_side / max(img.size)
    width, height = img.size
    img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                     Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    if len(marks):  # a one-pixel change is invisible at thumbnail size without a ring around it
        img = _ringed(img.convert("RGB"), marks, img.width / width, img.height / height)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _ringed(img, pixels, x_scale: float, y_scale: float, pad: int = 3):
    """img with a red square around each (row, col) pixel of the image it was scaled from."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    for row, col in pixels:
        draw.rectangle((col * x_scale - pad, row * y_scale - pad, (col + 1) * x_scale + pad, (row + 1) * y_scale + pad),
                       outline=(230, 0, 0), width=2)
    return img


def _unit_range(im: np.ndarray) -> np.ndarray:
    """An image that is not uint8 (normalised tensors, floats) stretched to [0, 1] as a whole: clipping
    drew dark, oversaturated pictures (and matplotlib warned "Clipping input data" in the terminal)."""
    im = np.nan_to_num(np.asarray(im, dtype=np.float64))
    low, high = float(im.min()), float(im.max())
    return (im - low) / (high - low) if high > low else np.zeros_like(im)


def _displayable(im: np.ndarray) -> np.ndarray:
    """What matplotlib's imshow draws unclipped: colour images that are not uint8 in [0, 1]; grey
    images keep their values (a colour map scales them anyway)."""
    if im.ndim != 3 or im.shape[-1] == 1 or im.dtype == np.uint8:
        return im
    return _unit_range(im)


GRID_THUMB = 128  # px: image-grid cells


def grid_cells(f: ImageGrid) -> list[tuple[str, str]]:
    """(thumbnail data URI, caption) per image of a grid. The report lays them out as HTML cells:
    captions wrap and show in full on hover (drawn into one PNG, path-like sample ids overlapped)."""
    marks = list(f.marks) + [()] * (len(f.images) - len(f.marks))
    return [(image_uri(np.asarray(im), GRID_THUMB, ring), str(caption))
            for im, caption, ring in zip(f.images, f.captions, marks)]


def line_plot(series: dict, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False, x=None,
              marks: dict | None = None, band: tuple | None = None) -> str:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=LINE_SIZE)
    for name, values in list(series.items())[:MAX_LINES]:
        ys = np.array([np.nan if v is None else v for v in values], dtype=float)
        xs = np.arange(1, len(ys) + 1) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, ys, label=str(name)[:40], linewidth=1.2)
    if band is not None:
        label, low, high = band
        ax.axvspan(low, high, color="tab:green", alpha=0.12, label=label)
    for k, (label, value) in enumerate((marks or {}).items()):
        ax.axvline(value, color=("tab:red", "tab:purple", "tab:brown")[k % 3], linestyle="--", linewidth=1.2,
                   label=label)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    if logx:
        ax.set_xscale("log")
    if logy:
        from matplotlib.ticker import NullFormatter

        ax.set_yscale("log")
        low, high = ax.get_ylim()
        # two labelled decades or more: label decades only (6x10^-1, 4x10^-1 ... crowded the axis); with
        # fewer, the in-between labels are all the reader has (0.04-0.8 showed a lone 10^-1)
        if np.floor(np.log10(high)) - np.ceil(np.log10(low)) >= 1:
            ax.yaxis.set_minor_formatter(NullFormatter())
    if x is None or all(isinstance(v, (int, np.integer)) for v in x):
        # epochs, steps: whole numbers only (a 3-epoch plot had ticks at 1.25, 1.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # beside the plot, not over the data
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    return _to_uri(fig)


def scatter(coords, labels) -> str:
    """Points coloured by label (the first 20 labels; the report's caption names the projection)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=SCATTER_SIZE)
    labels = np.asarray(labels)
    names = sorted(set(labels.tolist()))[:20]
    for k, name in enumerate(names):
        pts = coords[labels == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, label=str(name)[:12], color=plt.cm.tab20(k % 20))
    ax.set_xticks([])
    ax.set_yticks([])
    # beside the points (inside, it covered a cluster), one column up to 10 labels
    ax.legend(fontsize=9, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              ncol=1 if len(names) <= 10 else 2, handletextpad=0.2, columnspacing=0.6)
    return _to_uri(fig)


def grouped_bars(categories, groups: dict, ylabel: str) -> str:
    plt = _plt()
    n = len(categories)
    fig, ax = plt.subplots(figsize=(min(MAX_BAR_WIDTH, max(6.0, 0.35 * n * max(1, len(groups)))), 3.2))
    width = 0.8 / max(1, len(groups))
    xs = np.arange(n)
    for k, (name, values) in enumerate(groups.items()):
        ax.bar(xs + k * width, values, width, label=name)
    every = -(-n // MAX_BAR_LABELS)  # 500 classes: every 13th labelled
    ax.set_xticks((xs + width * (len(groups) - 1) / 2)[::every])
    ax.set_xticklabels([str(c)[:12] for c in categories][::every], rotation=45 if n > 8 else 0, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=10)
    if len(groups) > 1:  # beside the bars, not over them (one group needs no legend: the title names it)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _to_uri(fig)


def grids_for(figures: dict) -> list[dict]:
    """{title, cols, cells} for every image grid a check produced (cells: grid_cells)."""
    return [{"title": r.title, "cols": max(1, min(r.cols, 8)), "cells": grid_cells(r)}
            for r in figures.values() if isinstance(r, ImageGrid)]


def figures_for(figures: dict) -> list[tuple[str, str]]:
    """(title, PNG data URI) for every figure record a check produced but its image grids."""
    out = []
    for name, record in figures.items():
        if isinstance(record, ImageGrid):
            continue
        try:
            out.append((record.title, DRAW[type(record)](record)))
        except Exception as exc:  # a figure that cannot be drawn must not sink the report
            out.append((f"{getattr(record, 'title', name)}: not drawn ({type(exc).__name__}: {exc})", ""))
    return out


def draw_lines(f: Lines) -> str:
    return line_plot(f.series, f.xlabel, f.ylabel, logx=f.logx, logy=f.logy, x=f.x, marks=f.marks, band=f.band)


def draw_points(f: Points) -> str:
    return scatter(np.asarray(f.coords), f.labels)


def draw_bars(f: Bars) -> str:
    return grouped_bars(f.categories, f.groups, f.ylabel)


def draw_marked_image(f: MarkedImage) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3, 3))
    image = np.asarray(f.image)
    image = _displayable(image)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    rows, cols = zip(*f.pixels)
    ax.scatter(cols, rows, s=60, facecolors="none", edgecolors="red", linewidths=1.5)
    ax.set_title(f.caption, fontsize=8)
    ax.axis("off")
    return _to_uri(fig)


DRAW = {Lines: draw_lines, Points: draw_points, Bars: draw_bars,
        MarkedImage: draw_marked_image}
