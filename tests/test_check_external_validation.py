"""external-validation (DNC7): inverted digits as an external set fail; no external set warns;
an external set from the same distribution passes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_config
from dnncheck.checks.external_validation import ExternalValidation
from dnncheck.cli import app
from dnncheck.results import Status
from helpers import messages, run_one


def _digits(tmp_path, external_transform=None, name="d.npz"):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    y = d.target
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    arrays = dict(x_train=x[:1000], y_train=y[:1000], x_val=x[1000:1200], y_val=y[1000:1200],
                  x_test=x[1200:1450], y_test=y[1200:1450])
    if external_transform is not None:
        arrays.update(x_external=external_transform(x[1450:]), y_external=y[1450:])
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_inverted_digits_as_external_set_fail(tmp_path):
    path = _digits(tmp_path, lambda x: 255 - x)
    result = run_one(ExternalValidation(), source=str(path), model="mlp", epochs=10)
    assert result.status is Status.FAIL, messages(result)
    m = result.metrics
    assert m["internal_accuracy"] > 0.85 and m["external_accuracy"] < 0.5
    assert m["internal_accuracy_ci"][0] <= m["internal_accuracy"] <= m["internal_accuracy_ci"][1]
    assert m["shift_auc"] > 0.9
    assert "hardest hit" in messages(result)


def test_same_distribution_external_set_passes(tmp_path):
    path = _digits(tmp_path, lambda x: x)
    result = run_one(ExternalValidation(), source=str(path), model="mlp", epochs=10)
    assert result.status is Status.PASS, messages(result)
    assert abs(result.metrics["accuracy_drop"]) < 0.1 and result.metrics["shift_auc"] < 0.7


def test_no_external_set_is_info_with_probast_and_claim(tmp_path):
    result = run_one(ExternalValidation(), source=str(_digits(tmp_path)), model="mlp")
    assert result.status is Status.PASS and result.findings[0].severity is Status.INFO
    assert "PROBAST" in messages(result) and "CLAIM" in messages(result)
    assert 0 < result.metrics["repeated_split_accuracy_std"] < 0.1


def test_external_key_in_config_loads_another_source(tmp_path):
    from sklearn.datasets import load_digits

    path = _digits(tmp_path)
    d = load_digits()
    np.savez(tmp_path / "ext.npz", x_train=255 - np.round(d.images[:300] * 255 / 16).astype(np.uint8),
             y_train=d.target[:300])
    cfg = write_config(tmp_path, f"[data]\nsource = '{path.name}'\nexternal = 'ext.npz'\n[model]\nfactory = 'mlp'\n"
                                 "[probe]\nepochs = 3\n")
    result = CliRunner().invoke(app, ["audit", str(cfg), "--select", "DNC7", "--quiet", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.stderr


def test_external_with_unknown_class_exits_2(tmp_path):
    path = _digits(tmp_path)
    np.savez(tmp_path / "ext.npz", x_train=np.zeros((5, 8, 8), np.uint8), y_train=np.array([0, 1, 2, 3, 12]))
    cfg = write_config(tmp_path, f"[data]\nsource = '{path.name}'\nexternal = 'ext.npz'\n")
    result = CliRunner().invoke(app, ["audit", str(cfg), "--quiet"])
    assert result.exit_code == 2 and "not among the training classes" in result.stderr


@pytest.mark.parametrize("bad", ["missing.npz"])
def test_missing_external_path_exits_2(tmp_path, bad):
    path = _digits(tmp_path)
    cfg = write_config(tmp_path, f"[data]\nsource = '{path.name}'\nexternal = '{bad}'\n")
    result = CliRunner().invoke(app, ["audit", str(cfg), "--quiet"])
    assert result.exit_code == 2 and "no such file" in result.stderr
