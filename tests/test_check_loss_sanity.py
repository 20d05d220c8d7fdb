"""loss-sanity (DNC4): planted mismatches between labels, outputs and loss; clean set-ups pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnncheck.checks.loss_sanity import LossSanity
from dnncheck.results import Status
from helpers import messages, run_one

HEADS = """
import torch
import torch.nn as nn

def softmax_head(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], 64), nn.ReLU(),
                         nn.Linear(64, num_classes), nn.Softmax(dim=1))

def five_outputs(in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], 5))

def frozen(num_classes, in_channels, image_size):
    model = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))
    for p in model.parameters():
        p.requires_grad_(False)
    return model

def relu_head(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], 64), nn.ReLU(),
                         nn.Linear(64, num_classes), nn.ReLU())

def log_softmax_over_batch(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes),
                         nn.LogSoftmax(dim=0))

class BatchCentred(nn.Module):
    # subtracts the batch mean of its hidden layer: a sample's prediction depends on its batch-mates
    def __init__(self, num_classes, width):
        super().__init__()
        self.hidden, self.out = nn.Linear(width, 32), nn.Linear(32, num_classes)

    def forward(self, x):
        h = self.hidden(x.flatten(1))
        return self.out(torch.relu(h - h.mean(0, keepdim=True)))

def batch_centred(num_classes, in_channels, image_size):
    return BatchCentred(num_classes, in_channels * image_size[0] * image_size[1])

def sigmoid_regressor(num_features):
    return nn.Sequential(nn.Linear(num_features, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
"""


@pytest.fixture
def heads(user_module):
    return user_module(HEADS)


def test_plain_model_passes_with_initial_loss_near_ln_c():
    result = run_one(LossSanity(), source="sklearn:digits", model="mlp")
    assert result.status is Status.PASS, messages(result)
    assert abs(result.metrics["initial_loss"] - math.log(10)) < 0.3
    assert result.metrics["expected_initial_loss"] == pytest.approx(math.log(10), abs=1e-3)
    assert result.metrics["probe_final_loss"] < 0.5 * result.metrics["probe_initial_loss"]


def test_softmax_head_with_cross_entropy_fails(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:softmax_head")
    assert result.status is Status.FAIL
    assert "softmax inside the model" in messages(result)
    assert result.metrics["output_kind"] == "probabilities"


def test_final_relu_is_named_as_such_not_as_sigmoid_outputs(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:relu_head")
    assert result.status is Status.FAIL and result.summary.startswith("the model ends in a ReLU")
    assert "sigmoid" not in messages(result)


def test_log_softmax_over_the_batch_dimension_fails(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:log_softmax_over_batch", loss="nll")
    assert result.status is Status.FAIL and "normalises over dimension 0, the batch" in result.summary


def test_a_forward_that_mixes_the_batch_fails(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:batch_centred")
    assert result.status is Status.FAIL and result.summary.startswith("a sample's outputs change when the other")
    assert result.metrics["batch_mixing"] > 0.01
    plain = run_one(LossSanity(), source="sklearn:digits", model="mlp")
    assert plain.metrics["batch_mixing"] < 1e-4


def test_fewer_outputs_than_classes_fails_and_names_samples(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:five_outputs")
    assert result.status is Status.FAIL
    finding = next(f for f in result.findings if "output unit" in f.message)
    assert "5 output unit(s) but the data has 10 classes" in finding.message
    assert finding.samples and finding.evidence["unreachable_classes"] == ["5", "6", "7", "8", "9"]
    # the probe cannot train either, and says why
    assert "could not train" in messages(result)


def test_bce_over_softmax_fails_with_its_tell_tale_initial_loss(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:softmax_head", loss="bce")
    assert result.status is Status.FAIL
    assert "binary cross-entropy over a 10-way softmax" in messages(result)
    assert result.metrics["initial_loss"] == pytest.approx(0.325, abs=0.02)


def test_nll_on_logits_fails():
    result = run_one(LossSanity(), source="sklearn:digits", model="mlp", loss="nll")
    assert result.status is Status.FAIL and "NLLLoss expects log-probabilities" in messages(result)


def test_frozen_model_warns_that_the_loss_did_not_fall(heads):
    result = run_one(LossSanity(), source="sklearn:digits", model=f"{heads}:frozen")
    assert result.status is Status.WARN and "did not fall" in messages(result)


def _regression_csv(tmp_path, scale):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    target = (x @ np.array([1.0, -2.0, 0.5])) * scale
    lines = ["a,b,c,target"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, target)]
    path = tmp_path / "reg.csv"
    path.write_text("\n".join(lines))
    return path


def test_regression_targets_outside_sigmoid_range_fail(tmp_path, heads):
    path = _regression_csv(tmp_path, scale=10)
    result = run_one(LossSanity(), source=str(path), model=f"{heads}:sigmoid_regressor")
    assert result.status is Status.FAIL
    assert "ends in sigmoid" in messages(result)


def test_plain_regression_passes_and_accuracy_metric_fails(tmp_path):
    path = _regression_csv(tmp_path, scale=1)
    clean = run_one(LossSanity(), source=str(path), model="mlp", epochs=10)
    assert clean.status is Status.PASS, messages(clean)
    wrong_metric = run_one(LossSanity(), source=str(path), model="mlp", metric="accuracy")
    assert wrong_metric.status is Status.FAIL and "on a continuous target" in messages(wrong_metric)


def test_raw_diabetes_target_is_named_and_a_standardised_one_passes(tmp_path):
    """scikit-learn's diabetes (bundled): its target runs 25..346; raw, MSE starts near 2.9e4."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    for name, target in (("raw", y), ("scaled", (y - y.mean()) / y.std())):
        lines = [",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])]
        lines += [",".join(f"{v:.6g}" for v in (*row, t)) for row, t in zip(x, target)]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines))
    raw = run_one(LossSanity(), source=str(tmp_path / "raw.csv"), model="mlp")
    assert raw.status is Status.WARN and raw.summary.startswith("the regression target is not scaled")
    scaled = run_one(LossSanity(), source=str(tmp_path / "scaled.csv"), model="mlp", epochs=10)
    assert scaled.status is Status.PASS, messages(scaled)
