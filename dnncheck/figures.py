"""Figures as typed records: what a check wants drawn, as data (checks never render). The HTML
report draws each kind with one function of plots.py; records are not part of the JSON.

`CheckResult.figures` maps a name to one record; the name orders and labels nothing, it only lets
tests and readers find a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageGrid:
    """Images in a grid, each with a caption (HWC arrays: uint8 as they are, floats rescaled)."""
    title: str
    images: list
    captions: list[str]
    cols: int = 8
    ids: list[str] = field(default_factory=list)  # the samples shown, when they are samples
    marks: list = field(default_factory=list)  # per image, (row, col) pixels to ring in red ([] or missing: none)


@dataclass(frozen=True)
class Lines:
    """One line per series (None: a missing point); x defaults to 1..n."""
    title: str
    series: dict[str, list]
    xlabel: str
    ylabel: str
    x: list | None = None
    logx: bool = False
    logy: bool = False
    marks: dict = field(default_factory=dict)  # label -> x of a vertical line (e.g. the configured lr)
    band: tuple | None = None  # (label, x_low, x_high): a shaded x range (e.g. the suggested lr range)


@dataclass(frozen=True)
class Points:
    """A 2-D scatter coloured by label (projections)."""
    title: str
    coords: Any  # N x 2 array
    labels: list


@dataclass(frozen=True)
class Bars:
    """Grouped bars: one group of bars per category, one bar per series."""
    title: str
    categories: list
    groups: dict[str, list]
    ylabel: str


@dataclass(frozen=True)
class MarkedImage:
    """One image with pixels circled ([row, col])."""
    title: str
    image: Any  # HWC array
    pixels: list
    caption: str
