"""The client corpus in the suite (tests/clients): models as practitioners write them, on small real
data, with what was wrong about them fixed. The full default audits of the same corpus are
benchmarks/bench_clients.py (README, "Real users' models")."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from dnncheck.cli import app
from tests.clients.corpus import CLIENTS, config_for

runner = CliRunner()
OUTPUT_KIND = {"tests.clients.models:mnist_net": "log_probabilities"}  # log_softmax head; the rest: logits


def _small(client):
    """Torchvision's models on upsampled digits at 64 px here (the photos at 224 px are the benchmark's)."""
    return replace(client, data="digits64x3", image_size=(64, 64)) if client.data == "hymenoptera" else client


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.factory.rsplit(":", 1)[1])
def test_every_client_builds_runs_and_reads_right(client, tmp_path):
    """Each model builds from its factory, runs on its data, has its cost counted for the plan, and
    its outputs are read for what they are (a CIFAR LeNet's small positive logits were "sigmoid
    outputs"; a tuple output is audited on its logits, with a note)."""
    from dnncheck.config import build_config
    from dnncheck.context import Context

    cfg = build_config(str(config_for(_small(client), tmp_path, per_class=10)), {})
    ctx = Context(cfg)
    ctx.prepare()
    assert ctx.output_info.kind == OUTPUT_KIND.get(client.factory, "logits")
    assert ctx.output_info.units == 10 and ctx.output_info.finite
    cost = ctx._model_cost()
    assert cost is not None and cost.flops > 0 and cost.activations > 0
    if client.factory.endswith("with_aux"):
        assert any("returns a tuple of 2" in n for n in ctx.dataset.notes)


def _audit(client, tmp_path, select, **probe):
    out = tmp_path / "r.json"
    config = config_for(client, tmp_path, per_class=50, probe=probe or None)
    result = runner.invoke(app, ["audit", str(config), "--select", select, "--quiet", "--json", str(out)])
    assert result.exit_code in (0, 1), result.output
    return {c["slug"]: c for c in json.loads(out.read_text())["checks"]}


def test_the_mnist_example_net_gets_no_false_alarm(tmp_path):
    """pytorch/examples' net (log_softmax + nll, fc1 9216x128) on 500 real MNIST digits: its large
    dense layer is advice (info) and no overfitting is called; loss-sanity accepts log_softmax + nll."""
    mnist = next(c for c in CLIENTS if c.factory.endswith("mnist_net"))
    checks = _audit(mnist, tmp_path, "loss-sanity,overfit,training-curves", epochs=6)
    assert {slug: c["status"] for slug, c in checks.items()} == {"loss-sanity": "pass", "overfit": "pass",
                                                                 "training-curves": "pass"}, checks
    dense = [f for f in checks["overfit"]["findings"] if "oversized dense layer" in f["message"]]
    assert len(dense) == 1 and dense[0]["severity"] == "info" and "fc1 9216x128" in dense[0]["message"]


def test_a_cifar_lenet_is_not_called_sigmoid(tmp_path):
    lenet = next(c for c in CLIENTS if c.factory.endswith("cifar_lenet"))
    checks = _audit(lenet, tmp_path, "loss-sanity", epochs=4)
    assert checks["loss-sanity"]["status"] == "pass", checks["loss-sanity"]["summary"]
    assert checks["loss-sanity"]["metrics"]["output_kind"] == "logits"


def test_a_zero_initialised_parameter_has_no_update_ratio():
    """ViT-tiny's class token starts at zero: its update "changed by more than 0.1 of its size per step"
    divided by a norm of 1e-12."""
    from types import SimpleNamespace

    import torch

    from dnncheck.checks.gradient_health import _update_ratios
    from tests.clients.models import vit_tiny

    torch.manual_seed(0)
    fresh = vit_tiny(10, 1, (8, 8))
    trained = vit_tiny(10, 1, (8, 8))
    trained.load_state_dict(fresh.state_dict())
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    ratios = _update_ratios(fresh, SimpleNamespace(model=trained, steps=10))
    assert "cls" not in ratios and "head.weight" in ratios and 0 < ratios["head.weight"] < 0.1


class _Photos:
    """A map-style Dataset as users write one: a transform applied on every read."""

    def __init__(self, random: bool):
        import numpy as np

        self.random = random
        self.images = np.random.default_rng(0).random((40, 3, 16, 16)).astype("float32")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        x = torch.from_numpy(self.images[i])
        if self.random:  # a random flip and jitter, as RandomHorizontalFlip/ColorJitter do
            x = x.flip(-1) if torch.rand(()) < 0.5 else x
            x = x * (0.8 + 0.4 * torch.rand(()))
        return x, i % 2


@pytest.mark.parametrize("random", [True, False])
def test_a_random_transform_in_the_users_dataset_is_said(random):
    """Random augmentation in the user's transform was applied once, silently."""
    import random as stdlib_random

    import dnncheck

    stdlib_random.seed(3)
    result = dnncheck.audit({"train": _Photos(random)}, select=["imbalance"])
    said = [n for n in result.data["notes"] if "transform is random" in n]
    assert len(said) == (1 if random else 0)
    if random:
        assert "split 'train': two reads of item" in said[0]
    assert stdlib_random.random() == pytest.approx(__import__("random").Random(3).random())  # streams kept


def test_an_auxiliary_head_is_said_not_warned(tmp_path):
    """(logits, aux): the probe trains on the logits, so the aux head stays put. That is the probe's
    doing, said as info; it used to warn "1 layer(s) barely move: model.aux.weight"."""
    aux = next(c for c in CLIENTS if c.factory.endswith("with_aux"))
    health = _audit(aux, tmp_path, "gradient-health", epochs=2)["gradient-health"]
    warned = " ".join(f["message"] for f in health["findings"] if f["severity"] in ("warn", "fail"))
    said = " ".join(f["message"] for f in health["findings"] if f["severity"] == "info")
    assert "model.aux" not in warned and "model.aux.weight" in said, health["findings"]


def test_mobilenet_squeeze_excitation_relus_are_silent_from_the_start_not_dead():
    """torchvision's mobilenet_v3_small: about half the units of several squeeze-excitation ReLUs never
    fire on any input already at initialisation; judged against the fresh model, none died in training."""
    import torch

    from dnncheck.checks.gradient_health import GradientHealth, _tally_units, _unit_findings
    from tests.clients.models import tv_mobilenet_v3_small

    torch.manual_seed(0)
    model = tv_mobilenet_v3_small(2)
    tallies = _tally_units(model, torch.randn(16, 3, 64, 64), "cpu")
    dead = {k: t.dead_fraction() for k, t in tallies.items() if t.kind == "relu"}
    died = {k: t.died_fraction(tallies[k]) for k, t in tallies.items() if t.kind == "relu"}
    assert max(dead.values()) > 0.5 and max(died.values()) == 0.0
    _, findings = _unit_findings(dead, {}, GradientHealth.Thresholds(), died)
    assert [f.severity.value for f in findings] == ["info"] and "silent since initialisation" in findings[0].message
