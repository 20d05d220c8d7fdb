"""training-curves (DNC13) and `dnncheck curves`: planted histories are diagnosed; healthy ones pass."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from dnncheck.checks.training_curves import TrainingCurves, TrainingCurvesMeasurement
from dnncheck.cli import app
from dnncheck.results import Status
from helpers import messages, run_one

runner = CliRunner()
TRAIN = [0.85 ** i for i in range(20)]


def _overfitting_history():
    val = [1.0 - 0.1 * i for i in range(6)]  # bottoms at 0.5 at epoch 6 (1-based)
    val += [0.5 * (1 + 0.8 * i / 14) for i in range(1, 15)]  # +80% by epoch 20
    return {"loss": TRAIN, "val_loss": val}


def diagnose(history, classes=None):
    check = TrainingCurves()
    return check.conclude(check.judge(TrainingCurvesMeasurement(history, classes, "test"), check.t))


def test_overfitting_names_epoch_6_and_fails():
    result = diagnose(_overfitting_history())
    assert result.status is Status.FAIL
    assert "overfitting from epoch 6" in messages(result)
    assert result.metrics["best_epoch"] == 6 and result.metrics["val_loss_rise_since_best"] == pytest.approx(0.8)


def test_flat_validation_loss_does_not_fail():
    result = diagnose({"loss": TRAIN, "val_loss": [0.7] * 20})
    assert result.status is Status.WARN and "flat" in messages(result)


def test_healthy_history_passes():
    result = diagnose({"loss": TRAIN, "val_loss": [v * 1.1 + 0.05 for v in TRAIN], "val_acc": [0.9] * 20}, classes=10)
    assert result.status is Status.PASS, messages(result)


@pytest.mark.parametrize("history, message", [
    ({"loss": [1.0, 0.8, math.nan, 0.5]}, "non-finite at epoch 3"),
    ({"loss": [1.0, 1.3, 1.9, 2.8, 4.0]}, "diverges"),
    ({"loss": [1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0]}, "oscillates"),
    ({"loss": [0.33, 0.3, 0.28, 0.27]}, "binary cross-entropy over a 10-way softmax"),
    ({"loss": TRAIN, "val_acc": [0.1] * 20}, "near chance"),
])
def test_planted_pathologies(history, message):
    result = diagnose(history, classes=10)
    assert result.status in (Status.WARN, Status.FAIL) and message in messages(result)


def test_curves_command_reads_keras_json_and_sets_exit_codes(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(_overfitting_history()))
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["curves", str(path), "--json", str(out), "--quiet"])
    assert result.exit_code == 1
    check = json.loads(out.read_text())["checks"][0]
    assert check["slug"] == "training-curves" and check["metrics"]["best_epoch"] == 6
    assert runner.invoke(app, ["curves", str(path), "--fail-on", "never", "--quiet"]).exit_code == 0


def test_curves_command_reads_lightning_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss,val_acc\n0,9,1.2,,\n0,19,1.0,,\n0,19,,0.9,0.6\n"
                    "1,29,0.8,,\n1,39,,0.8,0.7\n2,49,0.6,,\n2,59,,0.75,0.72\n")
    out = tmp_path / "r.json"
    assert runner.invoke(app, ["curves", str(path), "--classes", "3", "--json", str(out), "--quiet"]).exit_code == 0
    metrics = json.loads(out.read_text())["checks"][0]["metrics"]
    assert metrics["epochs"] == 3 and metrics["train_loss_first"] == 1.0 and metrics["final_accuracy"] == 0.72


@pytest.mark.parametrize("content, name, message", [
    ("{not json", "h.json", "not valid JSON"),
    ('{"acc": [0.1, 0.2]}', "h.json", "no loss found"),
    ('{"loss": [1, 2], "val_loss": [1]}', "h.json", "different or zero lengths"),
    ("loss\n1\n", "h.txt", "unsupported history file"),
])
def test_curves_bad_files_exit_2(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(app, ["curves", str(path)])
    assert result.exit_code == 2 and message in result.stderr


def test_audit_diagnoses_the_probe_curves():
    result = run_one(TrainingCurves(), source="sklearn:digits", model="mlp", epochs=5)
    assert result.status in (Status.PASS, Status.WARN)
    assert result.metrics["epochs"] == 5 and "the probe" in result.metrics["history_from"]
