"""Model building, introspection and the probe engine (seeded, budgeted, recorded)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dnncheck.errors import UserError
from dnncheck.models.build import ModelInputs, build_model
from dnncheck.models.introspect import capture_penultimate, describe_outputs, final_activation, parameter_count
from dnncheck.probes.budget import Guard
from dnncheck.probes.train import ProbeSettings, fit_one_batch, range_test, train_probe

IMG = ModelInputs(num_classes=10, in_channels=1, image_size=(8, 8))


@pytest.mark.parametrize("spec", ["mlp", "smallcnn", "resnet18"])
def test_builtins_produce_one_output_per_class(spec):
    model = build_model(spec, IMG)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_smallcnn_refuses_tables():
    with pytest.raises(UserError, match="use --model mlp"):
        build_model("smallcnn", ModelInputs(3, 5, None))


def test_factory_gets_only_the_keywords_it_accepts(user_module):
    name = user_module("""
import torch.nn as nn
seen = {}
def build(num_classes, image_size):
    seen.update(num_classes=num_classes, image_size=image_size)
    return nn.Linear(4, num_classes)
""")
    build_model(f"{name}:build", IMG)
    import importlib

    assert importlib.import_module(name).seen == {"num_classes": 10, "image_size": (8, 8)}


def test_factory_returning_a_non_module_is_refused(user_module):
    name = user_module("def build():\n    return 42\n")
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model(f"{name}:build", IMG)


def test_torchscript_model(tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))), str(path))
    model = build_model(str(path), IMG)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    (tmp_path / "broken.ts").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a loadable TorchScript"):
        build_model(str(tmp_path / "broken.ts"), IMG)


def test_introspection():
    model = build_model("smallcnn", IMG)
    counts = parameter_count(model)
    assert counts["parameters"] == counts["trainable"] > 0
    with capture_penultimate(model) as feats:
        model(torch.rand(5, 1, 8, 8))
    assert feats[0].shape == (5, 128 * 16)
    softmaxed = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))
    assert final_activation(softmaxed) == "softmax"
    assert describe_outputs(softmaxed(torch.rand(4, 1, 8, 8))).kind == "probabilities"
    assert describe_outputs(torch.log_softmax(torch.randn(4, 10), 1)).kind == "log_probabilities"
    assert describe_outputs(torch.randn(4, 10) * 3).kind == "logits"


def _digits_tensors():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(0))  # writers are grouped
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)[order]
    y = torch.tensor(d.target)[order]
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


def _settings(**kw):
    base = dict(optimizer="adam", lr=1e-3, batch_size=64, max_epochs=3, seed=0)
    base.update(kw)
    return ProbeSettings(**base)


def test_probe_is_reproducible_and_learns():
    train, val = _digits_tensors()
    loss = nn.functional.cross_entropy
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_probe("t", build_model("mlp", IMG), loss, train, val, "classification",
                                _settings(max_epochs=6)))
    assert runs[0].step_loss == runs[1].step_loss
    run = runs[0]
    assert len(run.epochs) == 6 and run.stopped_by == "plan"
    assert run.steps == run.planned_steps == 6 * (1200 // 64)
    assert run.epochs[-1]["val_acc"] > 0.9
    assert abs(run.initial_loss - math.log(10)) < 0.5
    assert run.grad_norms and all(len(v) == len(run.grad_steps) for v in run.grad_norms.values())
    assert run.val_outputs.shape == (597, 10)


class _TripsAfter(Guard):
    """A guard that trips after a fixed number of checks: the engine's reaction to a cut, without a clock."""

    def __init__(self, checks: int):
        super().__init__("t", 0.0)
        self.left = checks

    def expired(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_tripped_guard_stops_the_run_and_says_so():
    train, val = _digits_tensors()
    run = train_probe("t", build_model("mlp", IMG), nn.functional.cross_entropy, train, val, "classification",
                      _settings(max_epochs=10), guard=_TripsAfter(7))
    assert run.stopped_by == "budget" and run.steps == 8 < run.planned_steps
    assert run.val_outputs is None  # a cut-short run offers no final evidence


def test_a_guard_tripping_on_the_last_planned_step_does_not_cut_a_finished_run():
    train, val = _digits_tensors()
    planned = 2 * (1200 // 64)
    run = train_probe("t", build_model("mlp", IMG), nn.functional.cross_entropy, train, val, "classification",
                      _settings(max_epochs=2), guard=_TripsAfter(planned - 1))
    assert run.stopped_by == "plan" and run.steps == planned and run.val_outputs is not None


def test_probe_stops_on_non_finite_loss():
    train, val = _digits_tensors()
    run = train_probe("t", build_model("mlp", IMG), nn.functional.cross_entropy, train, val, "classification",
                      _settings(optimizer="sgd", lr=1e6, momentum=0.0, max_epochs=5))
    assert run.stopped_by == "non-finite loss"
    assert not all(math.isfinite(v) for v in run.step_loss)


def test_range_test_and_one_batch_run_in_the_same_engine():
    import numpy as np

    (x, y), _ = _digits_tensors()
    torch.manual_seed(0)
    lrs = 1e-5 * (1e7) ** (np.arange(60) / 59)
    test = range_test(build_model("mlp", IMG), nn.functional.cross_entropy, x, y, _settings(), lrs)
    assert test.stopped_by == "loss exploded" and 10 < test.steps < 60  # lr up to 100 blows any net up
    cut = range_test(build_model("mlp", IMG), nn.functional.cross_entropy, x, y, _settings(), lrs, _TripsAfter(5))
    assert cut.stopped_by == "budget" and cut.steps == 6
    torch.manual_seed(0)
    batch = fit_one_batch(build_model("mlp", IMG), nn.functional.cross_entropy, x[:32], y[:32], _settings(), 200, 0.05)
    assert batch.stopped_by == "target reached" and batch.losses[-1] <= 0.05 * batch.losses[0]


def test_budget_reserves_the_shares_of_probes_still_to_come():
    from dnncheck.probes.budget import SHARES, Budget

    assert sum(SHARES.values()) <= 1.0
    b = Budget(100, planned=("fit", "normalization"))
    assert b.allot("fit") == pytest.approx(100 - 100 * SHARES["normalization"])
    b.guard("fit")
    b.charge("fit", 30)
    assert b.allot("normalization") == pytest.approx(70)  # what fit left unused goes to the next probe
    b.charge("normalization", 80)
    assert b.remaining == 0 and b.allot("other") == 0


@pytest.mark.parametrize("setting", ["auto", "zscore", "minmax", "none", {"mean": [0.5], "std": [0.25]}])
def test_normalised_inputs_invert_to_the_stored_values(setting):
    """Report pictures are drawn from inputs put back in the data's own scale (pixel-attack's flips)."""
    import torch

    from dnncheck.probes.inputs import fit_normalizer

    raw = torch.randint(0, 256, (12, 1, 5, 5)).float()
    normalizer = fit_normalizer(setting, raw, 255.0, True)
    assert torch.allclose(normalizer.invert(normalizer(raw)), raw, atol=1e-3)
