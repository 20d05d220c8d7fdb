"""Reports for people and CI: HTML (rendered in headless Chromium), JUnit, --baseline, --format github."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAST, blob_images, save_png, write_config
from dnncheck.cli import app

runner = CliRunner()
HOSTILE = "<img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """An audit of an image folder whose class is named like an XSS payload, with every output."""
    tmp = tmp_path_factory.mktemp("hostile")
    x, y = blob_images(48, 2)
    for i, (img, label) in enumerate(zip(x, y)):
        split = "train" if i < 32 else "val"
        save_png(tmp / "data" / split / (HOSTILE if label else "plain") / f"{i}.png", img[..., 0])
    cfg = write_config(tmp, "[data]\nsource = 'data'\n[model]\nfactory = 'mlp'\n" + FAST)
    out = {k: tmp / f"report.{k}" for k in ("html", "json", "xml")}
    result = runner.invoke(app, ["audit", str(cfg), "--quiet", "--html", str(out["html"]), "--json", str(out["json"]),
                                 "--junit", str(out["xml"])])
    assert result.exit_code in (0, 1), result.stderr
    return out


def test_html_is_self_contained_and_escapes_user_names(hostile_report):
    html = hostile_report["html"].read_text()
    assert HOSTILE not in html  # never raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "http://" not in html and "https://" not in html  # no network requests
    assert "data:image/png;base64," in html
    assert hostile_report["html"].stat().st_size < 5_000_000


def test_junit_has_one_testcase_per_check(hostile_report):
    root = ET.parse(hostile_report["xml"]).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    checks = json.loads(hostile_report["json"].read_text())["checks"]
    assert int(suite.get("tests")) == len(cases) == len(checks)
    assert int(suite.get("failures")) == sum(c["status"] == "fail" for c in checks) == \
        sum(case.find("failure") is not None for case in cases)
    assert int(suite.get("skipped")) == sum(case.find("skipped") is not None for case in cases)
    assert {case.get("name") for case in cases} == {f"{c['id']} {c['slug']}" for c in checks}
    assert all(case.get("classname") == "dnncheck" for case in cases)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium(hostile_report, tmp_path):
    url = hostile_report["html"].as_uri()
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    checks = json.loads(hostile_report["json"].read_text())["checks"]
    assert 'id="summary"' in dom and 'id="verdict"' in dom
    for c in checks:
        assert f'id="{c["id"]}"' in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom  # shown as text, not turned into an element
    assert "<img src=\"x\"" not in dom and "onerror=\"alert(1)\"" not in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,2000",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20  # not blank: text, tables and figures
    assert (pixels < 80).mean() > 0.02  # the dark header and text are there


def test_baseline_gates_only_what_got_worse(tmp_path, user_module):
    cfg = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n[model]\nfactory = 'mlp'\n" + FAST)
    first = tmp_path / "first.json"
    assert runner.invoke(app, ["audit", str(cfg), "--select", "DNC4,DNC9", "--quiet", "--json", str(first)]).exit_code == 0
    # against its own result an audit exits 0, even with --fail-on warn (imbalance warns on digits)
    again = runner.invoke(app, ["audit", str(cfg), "--select", "DNC4,DNC9", "--quiet", "--fail-on", "warn",
                                "--baseline", str(first), "--json", str(tmp_path / "again.json")])
    assert again.exit_code == 0
    changes = json.loads((tmp_path / "again.json").read_text())["baseline"]
    assert {c["change"] for c in changes.values()} == {"unchanged"}
    # a softmax head makes loss-sanity worse: that gates
    name = user_module("import torch.nn as nn\ndef build(num_classes, in_channels, image_size):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes), nn.Softmax(1))\n")
    worse = runner.invoke(app, ["audit", str(cfg), "--select", "DNC4,DNC9", "--model", f"{name}:build",
                                "--baseline", str(first), "--json", str(tmp_path / "worse.json")])
    assert worse.exit_code == 1
    assert "worse" in worse.output and "(was pass)" in worse.output
    assert json.loads((tmp_path / "worse.json").read_text())["baseline"]["DNC4"] == {"before": "pass", "change": "worse"}


def test_bad_baseline_exits_2(tmp_path):
    (tmp_path / "b.json").write_text("{}")
    result = runner.invoke(app, ["audit", "sklearn:digits", "--baseline", str(tmp_path / "b.json"), "--quiet"])
    assert result.exit_code == 2 and "not a dnncheck --json result" in result.stderr


def test_baseline_needs_only_check_ids_and_statuses(tmp_path):
    """A baseline trimmed to its checks (id and status) is read; one without statuses is refused."""
    from dnncheck.errors import UserError
    from dnncheck.runner import load_baseline

    (tmp_path / "b.json").write_text('{"checks": [{"id": "DNC1", "status": "warn"}]}')
    assert load_baseline(tmp_path / "b.json") == {"DNC1": "warn"}
    (tmp_path / "c.json").write_text('{"status": "pass", "checks": [{"id": "DNC1"}]}')
    with pytest.raises(UserError, match="not a dnncheck --json result"):
        load_baseline(tmp_path / "c.json")


def test_github_format_prints_workflow_annotations(tmp_path):
    cfg = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n[model]\nfactory = 'mlp'\n" + FAST +
                       "\n[checks.imbalance]\nsmall_data_info_accuracy = 1.0\n")
    result = runner.invoke(app, ["audit", str(cfg), "--select", "DNC6,DNC9,DNC4", "--format", "github"])
    lines = result.output.strip().splitlines()
    assert any(line.startswith("::warning title=DNC9 imbalance::") for line in lines)
    # splits made by dnncheck are advice (info): a notice, not a warning
    assert any(line.startswith("::notice title=DNC6 split-leakage::no separate val") for line in lines)
    assert not any("DNC4" in line for line in lines)  # passes are not annotated
    assert lines[-1].startswith("dnncheck: warn")
    bad = runner.invoke(app, ["audit", "sklearn:digits", "--format", "xml"])
    assert bad.exit_code == 2 and "expected rich, github or markdown" in bad.stderr


def test_github_annotations_escape_newlines_and_colons():
    from dnncheck.report.github import _escape_data, _escape_property

    assert _escape_data("a\nb%") == "a%0Ab%25"
    assert _escape_property("DNC1: a,b") == "DNC1%3A a%2Cb"


def test_every_figure_record_kind_is_drawn_by_its_function():
    """Figures are typed records (dnncheck/figures.py), each kind drawn by one function of plots.py."""
    import numpy as np

    from dnncheck.figures import Bars, ImageGrid, Lines, MarkedImage, Points
    from dnncheck.plots import DRAW, figures_for, grids_for

    records = {"grid": ImageGrid("grid", [np.zeros((4, 4, 1), np.uint8)] * 2, ["a", "b"]),
               "lines": Lines("lines", {"loss": [1.0, None, 0.5]}, "epoch", "loss", logy=True),
               "points": Points("points", np.random.default_rng(0).normal(size=(10, 2)), ["x", "y"] * 5),
               "bars": Bars("bars", ["cat", "dog"], {"train": [3, 4]}, "samples"),
               "marked": MarkedImage("marked", np.ones((5, 5, 3)), [[1, 2]], "circled")}
    # image grids become HTML cells (grids_for); every other kind is drawn by its function
    assert set(DRAW) | {ImageGrid} == {type(r) for r in records.values()}
    drawn = figures_for(records)
    assert [title for title, _ in drawn] == [n for n in records if n != "grid"]
    assert all(uri.startswith("data:image/png;base64,") and len(uri) > 200 for _, uri in drawn)
    (grid,) = grids_for(records)
    assert [c for _, c in grid["cells"]] == ["a", "b"] and all(u.startswith("data:image/png") for u, _ in grid["cells"])


def test_normalised_colour_images_are_drawn_without_clipping_warnings():
    """A normalised RGB tensor used to be clipped by matplotlib (dark pictures, and a "Clipping input
    data" warning in the user's terminal)."""
    import warnings

    import numpy as np

    from dnncheck.figures import MarkedImage
    from dnncheck.plots import _displayable, draw_marked_image

    image = np.random.default_rng(0).normal(0, 2, (8, 8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uri = draw_marked_image(MarkedImage("m", image, [[1, 2]], "c"))
    assert uri.startswith("data:image/png;base64,")
    shown = _displayable(image)  # stretched, not clipped: dividing by the max and clipping blackened half
    assert shown.min() == 0 and shown.max() == 1 and (shown > 0).mean() > 0.9


def test_samples_drawn_in_a_figure_are_not_drawn_again_as_thumbnails():
    """Label-noise's suspects showed twice: as the finding's thumbnails and in its figure."""
    import numpy as np

    from dnncheck.figures import ImageGrid
    from dnncheck.report.html import render_html
    from dnncheck.results import AuditResult, CheckResult, Finding, Status

    image = np.zeros((8, 8, 1), np.uint8)
    finding = Finding(Status.WARN, "2 suspects", samples=("train:1", "train:2"))
    check = CheckResult("DNC3", "label-noise", 3, "Label noise", Status.WARN, "2 suspects", findings=(finding,),
                        figures={"suspects": ImageGrid("Suspects", [image], ["train:1 (given 3)"], ids=["train:1"])})
    result = AuditResult((check,), Status.WARN, 0, 1.0, {"name": "dnncheck", "version": "0"}, {}, {"source": "x"}, {},
                         thumbnails={"train:1": image, "train:2": image})
    html = render_html(result)
    assert 'alt="train:2"' in html and 'alt="train:1"' not in html and "<code>train:1</code>" in html


def test_image_grids_are_html_cells_with_whole_captions():
    """Long sample ids overlapped in the drawn grid; as HTML cells they wrap and show on hover."""
    import numpy as np

    from dnncheck.figures import ImageGrid
    from dnncheck.report.html import render_html
    from dnncheck.results import AuditResult, CheckResult, Status

    long_id = "train/ants/1225872729_6f0856588f_01196.jpg (train)"
    grid = ImageGrid("Duplicate pairs, side by side", [np.zeros((30, 40, 3), np.uint8)], [long_id], cols=6)
    check = CheckResult("DNC6", "split-leakage", 6, "Leakage-free splits", Status.PASS, "ok", figures={"pairs": grid})
    html = render_html(AuditResult((check,), Status.PASS, 0, 1.0, {"name": "dnncheck", "version": "0"}, {},
                                   {"source": "x"}, {}))
    assert f'<div class="cell" title="{long_id}">' in html and f"<div>{long_id}</div>" in html
    assert "repeat(6, 136px)" in html


def test_bar_charts_stay_within_the_page_for_many_classes():
    """0.35 inch per bar made a 500-class chart 525 inches wide; now the page width, every k-th labelled."""
    import base64
    import io

    from PIL import Image

    from dnncheck.plots import DPI, MAX_BAR_WIDTH, grouped_bars

    uri = grouped_bars([f"class{i}" for i in range(500)], {"train": list(range(500)), "val": [1] * 500}, "samples")
    width = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).width
    assert width <= (MAX_BAR_WIDTH + 2) * DPI  # the bars plus the legend beside them


def test_html_header_shows_environment_records_as_words():
    from dnncheck.report.html import render_html
    from dnncheck.results import AuditResult, Status

    env = {"data_pass": {"files": 398, "from_cache": 0, "seconds": 2.7183}}
    html = render_html(AuditResult((), Status.PASS, 0, 1.0, {"name": "dnncheck", "version": "0"}, env,
                                   {"source": "x"}, {}))
    assert "data pass files 398, from cache 0, seconds 2.72" in html and "{" not in html.split("<header>")[1][:2000]


def test_grid_marks_ring_the_changed_pixel():
    """A one-pixel flip is invisible at thumbnail size: the attacked image's pixel is ringed in red."""
    import base64
    import io

    from PIL import Image

    from dnncheck.figures import ImageGrid
    from dnncheck.plots import GRID_THUMB, grid_cells

    image = np.zeros((8, 8, 1), np.uint8)
    cells = grid_cells(ImageGrid("flips", [image, image], ["clean", "attacked"], marks=[(), [(2, 5)]]))
    clean, ringed = (np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB"))
                     for u, _ in cells)
    assert clean.max() == 0  # unmarked image untouched
    red = (ringed[..., 0] > 200) & (ringed[..., 1] < 50)
    rows, cols = np.nonzero(red)
    step = GRID_THUMB // 8  # the ring surrounds pixel (2, 5) of the 8x8 image and nothing else
    assert rows.min() < 2 * step < 3 * step < rows.max() and cols.min() < 5 * step < 6 * step < cols.max()
    assert rows.max() - rows.min() < 2 * step
