"""The Python API: dnncheck.audit(...) on a source string, on in-memory arrays and Datasets, with a
Module instance or a factory; the AuditResult's outputs; bad input as dnncheck.UserError."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dnncheck


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    return np.round(d.images * 255 / 16).astype(np.uint8)[order], d.target[order]


def test_audit_of_a_source_returns_the_result_the_cli_renders(tmp_path):
    result = dnncheck.audit("sklearn:digits", select=["loss-sanity", "imbalance"], model="mlp", seed=0)
    assert result.status.value == "pass" and result.exit_code == 0
    assert [c.slug for c in result.checks] == ["loss-sanity", "imbalance"]
    document = json.loads(result.to_json())
    assert document["status"] == "pass" and document["data"]["source"] == "sklearn:digits"
    result.to_html(tmp_path / "r.html")
    assert "loss-sanity" in (tmp_path / "r.html").read_text() and "imbalance" in result._repr_html_()


def test_in_memory_arrays_and_a_module_instance():
    import torch.nn as nn

    x, y = _digits()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = dnncheck.audit({"train": (x[:1200], y[:1200]), "val": (x[1200:1500], y[1200:1500])}, model=net,
                            select="loss-sanity,imbalance", seed=0)
    checks = {c.slug: c for c in result.checks}
    assert checks["loss-sanity"].status.value == "pass" and checks["loss-sanity"].metrics["output_units"] == 10
    # no test split given: dnncheck carves one out of train, as for any source
    assert result.data["splits"]["val"] == 300 and result.data["made_splits"] == ["test"]
    assert result.data["splits"]["train"] + result.data["splits"]["test"] == 1200
    assert checks["imbalance"].metrics["probe_balanced_accuracy"] > 0.8
    assert net[1].weight.grad is None  # the instance itself was never trained: each probe got a copy
    # the report names them by what they are, not by their internal registered name
    assert result.data["source"] == "in-memory train/val (numpy arrays)"
    assert result.model["spec"] == "Sequential instance" and "_object_" not in result.to_json()
    # once the audit is over dnncheck holds neither the arrays nor the model (a notebook's memory)
    assert not [name for name in vars(dnncheck.api) if name.startswith("_object_")]


def test_torch_datasets_and_a_factory():
    import torch
    import torch.nn as nn
    from torch.utils.data import TensorDataset

    x, y = _digits()
    images = torch.tensor(x[:, None] / 255.0, dtype=torch.float32)
    data = {"train": TensorDataset(images[:900], torch.tensor(y[:900])),
            "val": TensorDataset(images[900:1200], torch.tensor(y[900:1200]))}

    def factory(num_classes, in_channels, image_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))

    result = dnncheck.audit(data, model=factory, select=["loss-sanity"], seed=0)
    assert result.checks[0].status.value == "pass" and result.checks[0].metrics["output_units"] == 10
    assert result.data["source"] == "in-memory train/val (TensorDataset)"
    assert result.model["spec"].startswith("factory ") and result.model["spec"].endswith("factory")


@pytest.mark.parametrize("call, message", [
    (lambda: dnncheck.audit(42), "target: expected a path"),
    (lambda: dnncheck.audit({"train": (np.zeros((10, 8, 8)), np.zeros(9))}), "10 inputs but 9 labels"),
    (lambda: dnncheck.audit("sklearn:digits", model=3.5), "model: expected a spec"),
    (lambda: dnncheck.audit("sklearn:digits", select=["no-such-check"]), "no-such-check"),
    (lambda: dnncheck.audit("/no/such/folder"), "no such file or folder"),
])
def test_bad_input_raises_user_error_with_the_cli_message(call, message):
    with pytest.raises(dnncheck.UserError, match=message):
        call()
    assert not [name for name in vars(dnncheck.api) if name.startswith("_object_")]  # nothing left registered


def test_a_refused_model_leaves_no_data_registered():
    with pytest.raises(dnncheck.UserError, match="model: expected a spec"):
        dnncheck.audit({"train": (np.zeros((10, 8, 8)), np.zeros(10))}, model=3.5)
    assert not [name for name in vars(dnncheck.api) if name.startswith("_object_")]
