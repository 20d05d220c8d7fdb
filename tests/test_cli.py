"""The command line through typer's CliRunner: exit codes, JSON contract, selection, errors."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAST, write_config
from dnncheck.cli import app

runner = CliRunner()


def audit(*args):
    return runner.invoke(app, ["audit", *args])


@pytest.fixture
def digits_config(tmp_path):
    return write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n[model]\nfactory = 'mlp'\n" + FAST)


def test_audit_writes_json_per_contract(digits_config, tmp_path):
    out = tmp_path / "r.json"
    result = audit(str(digits_config), "--json", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["tool"]["name"] == "dnncheck"
    assert {"python", "torch", "device"} <= set(data["environment"])
    assert data["data"]["classes"] == [str(i) for i in range(10)]
    assert sum(data["data"]["splits"].values()) == 1797
    assert data["model"]["spec"] == "mlp" and data["model"]["parameters"] > 0
    assert data["status"] in ("pass", "warn") and data["exit_code"] == 0
    by_slug = {c["slug"]: c for c in data["checks"]}
    assert set(by_slug) == {"input-fidelity", "normalization", "label-noise", "loss-sanity", "separability",
                            "split-leakage", "external-validation", "imbalance", "training-curves", "overfit",
                            "gradient-health", "learning-rate", "pixel-attack"}
    ls = by_slug["loss-sanity"]
    assert {"id", "slug", "item", "title", "status", "summary", "metrics", "findings", "remedy", "duration_s"} <= set(ls)
    assert ls["id"] == "DNC4" and ls["item"] == 4
    assert abs(ls["metrics"]["expected_initial_loss"] - 2.3026) < 1e-3
    assert result.output == ""  # --quiet prints nothing


def test_fail_on_warn_turns_a_warning_into_exit_1(digits_config):
    # digits has ~125 samples per class: imbalance warns about small data when the advice is not
    # outweighed by what the probe already reaches (here: never, with the threshold at 1.0)
    digits_config.write_text(digits_config.read_text() + "\n[checks.imbalance]\nsmall_data_info_accuracy = 1.0\n")
    assert audit(str(digits_config), "--quiet", "--select", "imbalance").exit_code == 0
    assert audit(str(digits_config), "--quiet", "--select", "imbalance", "--fail-on", "warn").exit_code == 1


def test_failing_check_exits_1_and_never_exits_0(tmp_path, user_module):
    name = user_module("""
import torch.nn as nn
def build(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes), nn.Softmax(dim=1))
""")
    cfg = write_config(tmp_path, f"[data]\nsource = 'sklearn:digits'\n[model]\nfactory = '{name}:build'\n" + FAST)
    result = audit(str(cfg), "--select", "DNC4")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "softmax" in result.output
    assert audit(str(cfg), "--select", "DNC4", "--fail-on", "never", "--quiet").exit_code == 0


def test_crashing_check_is_an_error_result_and_exit_3(digits_config, tmp_path, monkeypatch):
    from dnncheck.checks.imbalance import Imbalance

    def boom(self, ctx):
        raise RuntimeError("planted crash")

    monkeypatch.setattr(Imbalance, "run", boom)
    out = tmp_path / "r.json"
    result = audit(str(digits_config), "--quiet", "--json", str(out), "--select", "imbalance,loss-sanity,input-fidelity")
    assert result.exit_code == 3
    data = json.loads(out.read_text())
    checks = {c["slug"]: c for c in data["checks"]}
    assert checks["imbalance"]["status"] == "error"
    assert "planted crash" in checks["imbalance"]["findings"][0]["evidence"]["traceback"]
    assert checks["loss-sanity"]["status"] == "pass"  # the others still ran
    assert data["status"] == "error"


def test_select_and_ignore_by_id_or_slug(digits_config, tmp_path):
    out = tmp_path / "r.json"
    assert audit(str(digits_config), "--quiet", "--ignore", "loss-sanity", "--json", str(out)).exit_code == 0
    assert [c["id"] for c in json.loads(out.read_text())["checks"]] == ["DNC1", "DNC2", "DNC3", "DNC5", "DNC6", "DNC7", "DNC8",
                                                                        "DNC9", "DNC10", "DNC11", "DNC12", "DNC13"]
    assert audit(str(digits_config), "--quiet", "--select", "dnc4", "--json", str(out)).exit_code == 0
    assert [c["slug"] for c in json.loads(out.read_text())["checks"]] == ["loss-sanity"]


@pytest.mark.parametrize("args, message", [
    (["sklearn:digits", "--select", "imbalanse"], 'unknown check \'imbalanse\' (did you mean "imbalance"?)'),
    (["sklearn:digits", "--fail-on", "sometimes"], "--fail-on: checks.fail_on = 'sometimes' is not valid"),
    (["sklearn:digits", "--device", "gpu"], "expected auto, cpu, cuda or cuda:N"),
    (["sklearn:digits", "--budget", "0"], "expected a positive number of seconds"),
    (["/no/such/data"], "/no/such/data: no such file or folder"),
    (["sklearn:digits", "--model", "vgg99"], "unknown model"),
    (["sklearn:digits", "--model", "no_such_pkg_q:build"], "cannot import module"),
    (["sklearn:digits", "--weights", "/no/weights.pt"], "weights file not found"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = audit(*args, "--quiet")
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in result.output


def test_weights_that_do_not_match_the_model(tmp_path):
    import torch
    from torch import nn

    path = tmp_path / "w.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    result = audit("sklearn:digits", "--model", "mlp", "--weights", str(path), "--quiet")
    assert result.exit_code == 2 and "does not match the model" in result.stderr


def test_weights_that_match_are_loaded(tmp_path):
    import torch

    from dnncheck.models.nets import MLP

    torch.manual_seed(3)
    path = tmp_path / "w.pt"
    torch.save(MLP(64, 10).state_dict(), path)
    cfg = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n" + FAST)
    result = audit(str(cfg), "--model", "mlp", "--weights", str(path), "--quiet", "--select", "DNC4")
    assert result.exit_code == 0, result.stderr


def test_factory_that_raises_exits_2(tmp_path, user_module):
    name = user_module("def build(num_classes):\n    raise ValueError('no such backbone')\n")
    result = audit("sklearn:digits", "--model", f"{name}:build", "--quiet")
    assert result.exit_code == 2 and "raised ValueError at " in result.stderr
    assert ".py:2 in build: no such backbone" in result.stderr


def test_checks_and_explain():
    listing = runner.invoke(app, ["checks"], env={"COLUMNS": "60"})
    assert listing.exit_code == 0 and "loss-sanity" in listing.output and "split-leakage" in listing.output
    explained = runner.invoke(app, ["explain", "DNC4"])
    assert explained.exit_code == 0 and "Why it matters" in explained.output and "initial_loss_tolerance" in explained.output
    assert runner.invoke(app, ["explain", "imbalance"]).exit_code == 0
    assert "pixel-attack" in runner.invoke(app, ["explain", "DNC10"]).output
    unknown = runner.invoke(app, ["explain", "DNC99"])
    assert unknown.exit_code == 2 and "unknown check" in unknown.stderr


def test_bracketed_text_survives_help_explain_and_init(tmp_path):
    """Rich reads [words] as markup and ate them: "default:  in ./pyproject.toml", "thresholds ( in
    the config)", "edit  source"."""
    helped = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    assert "default: [tool.dnncheck] in ./pyproject.toml" in helped.output
    explained = runner.invoke(app, ["explain", "split-leakage"], env={"COLUMNS": "200"})
    assert "thresholds ([checks.split-leakage] in the config)" in explained.output
    # reflowed once to the terminal's width: a source-wrapped sentence reads as one line at 200 columns
    assert "Leakage-free splits: no sample, copy or group crosses from training into evaluation." in explained.output
    assert "exact duplicates (a hash of the decoded pixels or feature row); near duplicates" in explained.output
    written = runner.invoke(app, ["init", str(tmp_path / "c.toml")], env={"COLUMNS": "40"})
    assert "edit [data] source" in written.output and f"dnncheck audit {tmp_path / 'c.toml'}\n" in written.output


def test_init_writes_once_and_never_overwrites(tmp_path):
    path = tmp_path / "dnncheck.toml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    text = path.read_text()
    assert "[data]" in text
    again = runner.invoke(app, ["init", str(path)])
    assert again.exit_code == 2 and "never overwrites" in again.stderr
    assert path.read_text() == text


def test_cli_import_does_not_import_torch():
    code = "import sys, dnncheck.cli, dnncheck.checks; print('torch' in sys.modules, 'umap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_console_script_usage_error_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "dnncheck", "audit", "--budget", "abc"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--budget" in proc.stderr


def test_image_folder_audit_calls_small_data(image_folder, tmp_path):
    root = image_folder(splits=("train", "val"), per_class=12)
    out = tmp_path / "r.json"
    result = audit(str(root), "--model", "smallcnn", "--budget", "20", "--quiet", "--json", str(out))
    assert result.exit_code in (0, 1), result.stderr
    checks = {c["slug"]: c for c in json.loads(out.read_text())["checks"]}
    assert "small data" in json.dumps(checks["imbalance"]["findings"])


def test_markdown_format_and_the_github_step_summary(tmp_path, monkeypatch):
    """--format markdown prints the verdict, one table row per check and the top findings; with
    $GITHUB_STEP_SUMMARY set the same Markdown is appended to that file (unless
    DNNCHECK_NO_STEP_SUMMARY=1), and a summary that cannot be written is a warning, not a failure."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    x = rng.integers(0, 255, (90, 8, 8), dtype=np.uint8)
    np.savez(data, x_train=np.concatenate([x, x[:5]]), y_train=np.r_[np.arange(90) % 3, [1, 2, 0, 1, 2]])
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("DNNCHECK_NO_STEP_SUMMARY", raising=False)
    out = runner.invoke(app, ["audit", str(data), "--select", "split-leakage,imbalance", "--model", "mlp",
                              "--format", "markdown"])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("## ❌ dnncheck: FAIL (exit code 1)")
    assert "| DNC6 split-leakage | ❌ fail |" in out.output and "| DNC9 imbalance |" in out.output
    assert "### Top findings" in out.output and "; samples: `train:" in out.output
    written = summary.read_text()
    assert written.startswith("earlier step\n## ❌ dnncheck: FAIL") and written.count("| DNC6 split-leakage |") == 1
    monkeypatch.setenv("DNNCHECK_NO_STEP_SUMMARY", "1")
    runner.invoke(app, ["audit", str(data), "--select", "split-leakage", "--quiet"])
    assert summary.read_text() == written
    monkeypatch.delenv("DNNCHECK_NO_STEP_SUMMARY")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "such" / "dir" / "s.md"))
    out = runner.invoke(app, ["audit", str(data), "--select", "split-leakage", "--quiet"])
    assert out.exit_code == 1 and "warning: could not append the job summary" in out.stderr


def test_markdown_cells_cannot_break_the_table():
    from dnncheck.report.markdown import _cell

    assert _cell("a | b\nc <script>") == "a \\| b c &lt;script&gt;"
    assert len(_cell("x" * 1000)) == 300


SAMPLE_CONFIGS = Path(__file__).resolve().parents[1] / "sample_configs"


def test_the_sample_configs_run_from_the_clone(tmp_path):
    """digits.toml needs nothing; hymenoptera.toml reads the shared ant/bee folder beside the clone
    (skipped without it) and, moved elsewhere, says how to get the data (exit 2, one line)."""
    from conftest import shared_data

    out = tmp_path / "d.json"
    digits = runner.invoke(app, ["audit", str(SAMPLE_CONFIGS / "digits.toml"), "--select", "input-fidelity",
                                 "--quiet", "--json", str(out)])
    assert digits.exit_code == 0, digits.output
    moved = tmp_path / "h.toml"
    moved.write_text((SAMPLE_CONFIGS / "hymenoptera.toml").read_text())
    missing = runner.invoke(app, ["audit", str(moved), "--quiet"])
    assert missing.exit_code == 2 and "says how to get it: put the ant/bee folder" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    shared_data("hymenoptera")  # skips from here without the shared data
    hym = runner.invoke(app, ["audit", str(SAMPLE_CONFIGS / "hymenoptera.toml"), "--select", "input-fidelity",
                              "--quiet", "--json", str(tmp_path / "h.json")])
    assert hym.exit_code in (0, 1) and json.loads((tmp_path / "h.json").read_text())["data"]["splits"]["train"] > 200
