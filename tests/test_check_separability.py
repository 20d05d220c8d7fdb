"""separability (DNC5): a trained probe on digits separates classes; a representation drowned in
noise while the model stays above chance is flagged (the tutorial's Fig. 3)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dnncheck.checks.separability import Separability, _umap
from dnncheck.results import Status
from helpers import messages, run_one

NOISY = """
import torch
from torch import nn

class Noisy(nn.Module):
    # a 4-d learned signal (bounded by tanh) drowned in 256 random features at the penultimate
    # layer: the head still classifies from the 4 dims, but distances between features are noise
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 4))
        self.head = nn.Linear(4 + 256, num_classes)

    def forward(self, x):
        return self.head(torch.cat([torch.tanh(self.body(x)), torch.randn(len(x), 256) * 5], 1))

def build(num_classes, in_channels, image_size):
    return Noisy(in_channels * image_size[0] * image_size[1], num_classes)
"""


def test_trained_probe_on_digits_passes_with_both_projections():
    result = run_one(Separability(), source="sklearn:digits", model="mlp", epochs=10)
    assert result.status is Status.PASS, messages(result)
    m = result.metrics
    assert m["knn_accuracy_features"] > 0.9 and m["silhouette"] > 0.1
    assert m["knn_accuracy_2d_tsne"] > 0.85 and m["knn_accuracy_2d_umap"] > 0.85
    assert result.figures["projection_umap"].coords.shape == (m["samples"], 2)


def test_umap_runs_in_a_child_for_large_views_with_the_same_points(monkeypatch):
    """A large audit (224-px views) projects in a child process, which takes UMAP's 0.22 GiB with it;
    a small one in its own process. Same library, inputs and seed: the same points."""
    import subprocess

    import torch

    from dnncheck.probes.inputs import KEPT_FLOAT32_BYTES, large_view

    assert large_view(torch.empty(450, 3, 224, 224)) and not large_view(torch.empty(1797, 1, 8, 8))
    assert not large_view(torch.empty(KEPT_FLOAT32_BYTES // 4, 1))  # a table is never a large view
    feats = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    children, run = [], subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: children.append(a[0]) or run(*a, **k))
    here = _umap(feats, 0, in_child=False)
    assert not children
    child = _umap(feats, 0, in_child=True)
    assert len(children) == 1 and children[0][1].endswith("umap_worker.py")
    assert child.shape == (60, 2) and child.dtype == np.float32 and np.array_equal(here, child)


def test_a_failed_umap_child_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setattr(sys, "executable", sys.executable + "-missing")
    with pytest.raises((RuntimeError, OSError)):
        _umap(np.zeros((20, 4), np.float32), 0)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match=r"UMAP's projection failed in its child process \(exit 1\)"):
        _umap(np.zeros((20, 4), np.float32), 0)


def test_accuracy_above_chance_without_class_structure_fails(user_module):
    name = user_module(NOISY)
    result = run_one(Separability(umap=False), source="sklearn:digits", model=f"{name}:build", epochs=15)
    m = result.metrics
    assert m["model_accuracy"] > m["chance_accuracy"] + 0.3
    assert result.status is Status.FAIL and "no class structure" in messages(result)
    assert "knn_accuracy_2d" in m  # one projection: the unsuffixed name


def test_regression_is_skipped(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "r.csv").write_text("a,target\n" + "\n".join(f"{rng.normal()},{rng.normal()}" for _ in range(50)))
    assert run_one(Separability(), source=str(tmp_path / "r.csv")).status is Status.SKIP


def test_one_unit_penultimate_layer_is_measured_without_projections(user_module):
    """A width-1 bottleneck before the output layer once crashed t-SNE (2 components from 1 feature)."""
    name = user_module("import torch.nn as nn\n"
                       "def build(num_classes, in_channels, image_size):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.ReLU(), nn.Linear(1, num_classes))\n")
    result = run_one(Separability(), source="sklearn:digits", model=f"{name}:build", epochs=2)
    assert result.status is not Status.ERROR, messages(result)
    assert result.metrics["feature_dims"] == 1 and "projections_skipped" in result.metrics
    assert not result.figures
