"""The compute-aware probe plan (probes/cost.py, plan.select_affordable): costs predicted from the
model's FLOPs and activations per device type, never from a clock; what does not fit --budget is
left out in priority order and said once; its checks skip or say it as info."""

from __future__ import annotations

import json

import numpy as np

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dnncheck.cli import app
from dnncheck.probes.cost import ModelCost, measure_cost, speed_of
from dnncheck.probes.plan import PRIORITY, PlanFacts
from dnncheck.probes.runner import ProbeRunner

runner = CliRunner()
FACTS = PlanFacts(train_samples=245, val_samples=153, full_train=245, batch_size=64, epochs=None,
                  max_train_samples=4000)
EVERY_PROBE = {name: ({}, ["DNC0"]) for name in PRIORITY}
RESNET18_224 = ModelCost(3.63e9, 7.48e6)  # torchvision resnet18 at 224x224, measured by measure_cost


def test_costs_are_counted_from_the_model():
    cost = measure_cost(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.zeros(1, 1, 8, 8))
    assert cost.flops == 2 * 64 * 10 and cost.activations == 64 + 10  # flatten's and linear's outputs
    conv = measure_cost(nn.Conv2d(3, 8, 3, padding=1), torch.zeros(1, 3, 16, 16))
    assert conv.flops == 2 * 3 * 8 * 9 * 16 * 16 and conv.activations == 8 * 16 * 16
    assert measure_cost(torch.jit.script(nn.Linear(4, 2)), torch.zeros(1, 4)) is None
    assert cost.modules == 2 and conv.modules == 1  # leaf modules: each launches its kernels every step


def _plan(cost, budget, device_type="cpu"):
    probes = ProbeRunner(FACTS, budget)
    cheaper = ("a GPU (--device cuda)",) if device_type == "cpu" else ()  # as Context.cheaper_settings says it
    probes.plan_probes(EVERY_PROBE, calibration=None, cost=cost, device_type=device_type, cheaper=cheaper)
    return probes.plan


def test_resnet18_at_224_on_a_cpu_runs_the_compact_plan_and_says_it_once():
    plan = _plan(RESNET18_224, 300)
    # the decisive probes run small; the comparison runs (no compact form) are left out
    assert set(plan.compact) == {"overfit-batch", "learning-rate", "fit", "label-noise"}
    assert set(plan.not_run) == {"normalization", "overfit-shuffled", "pixel-trigger"}
    assert sum(plan.predicted(n) for n in plan.compact) <= 300 * 0.7
    assert plan["overfit-batch"].batch_size == 8 and plan["fit"].train_samples == 48
    assert plan["fit"].val_samples == 64 and plan["label-noise"].kind == "features"
    assert plan["label-noise"].steps == 0 and plan["label-noise"].eval_samples == FACTS.full_train
    assert plan.message.startswith("model probes need about ") and "minutes of CPU time" in plan.message
    assert "compact: " in plan.message and "not run: normalization" in plan.message
    assert "For the full plan run with --budget" in plan.message and "--device cuda" in plan.message
    record = ProbeRunner(FACTS, 300)
    record.plan_probes(EVERY_PROBE, cost=RESNET18_224)
    doc = record.record()
    assert doc["compute"]["not_run"] == list(plan.not_run)
    assert {p["name"] for p in doc["probes"] if p["compact"]} == set(plan.compact)
    # the same model on the same device type: the same plan, whatever the machine's speed today
    assert _plan(RESNET18_224, 300).not_run == plan.not_run and _plan(RESNET18_224, 300).message == plan.message


def test_a_budget_too_small_even_for_the_compact_plan_leaves_everything_out():
    plan = _plan(RESNET18_224, 10)  # 7 s of room: not even one forward pass over the training split
    assert set(plan.not_run) == set(PRIORITY) and plan.compact == ()
    assert "not run: " in plan.message


def test_normalization_is_left_out_when_the_fit_it_is_compared_with_is_compact():
    facts = PlanFacts(train_samples=4000, val_samples=2000, full_train=4000, batch_size=64, epochs=None,
                      max_train_samples=4000)
    probes = ProbeRunner(facts, 300)
    probes.plan_probes({"fit": ({}, ["DNC2"]), "normalization": ({}, ["DNC2"])}, cost=ModelCost(1e9, 1e6))
    assert probes.plan["fit"].compact and probes.plan.not_run == ("normalization",)


def test_coverage_first_then_depth_in_priority_order():
    """Half the budget a small CNN's full plan needs: every probe with a compact form runs (coverage),
    then compact probes are upgraded to their full form, the fit first (depth), and only then the
    runs with no compact form; the predicted total fits the room."""
    from dnncheck.probes.plan import COMPACT

    small = ModelCost(2e7, 2e5)  # a small CNN
    everything = sum(_plan(small, 10**6).predicted(n) for n in PRIORITY)
    plan = _plan(small, everything * 0.5)  # half of what everything needs (x 0.7 margin)
    assert all(name not in plan.not_run for name in COMPACT)
    assert plan.compact  # depth did not reach every probe...
    more = _plan(small, everything * 0.9)
    assert not more["fit"].compact and "normalization" not in more.not_run  # the fit is made whole first
    whole_fit = _plan(small, 10**6).seconds_of(_plan(small, 10**6)["fit"])
    for budget in np.linspace(everything * 0.05, everything * 1.4, 40):
        step = _plan(small, budget)  # a second opinion (shuffled labels, pixel trigger) never displaces the fit:
        extras = {"overfit-shuffled", "pixel-trigger"} - set(step.not_run)  # it runs with a compact fit only in
        if extras and step["fit"].compact:  # room smaller than the fit's upgrade
            upgrade = whole_fit - step.seconds_of(step["fit"])
            assert sum(step.seconds_of(step[n]) for n in extras) < upgrade, (budget, extras)
    assert sum(plan.predicted(n) for n in PRIORITY if n not in plan.not_run) <= everything * 0.5 * 0.7
    assert _plan(small, everything / 0.7 + 1).not_run == ()  # it all fits: nothing is said
    assert _plan(small, everything / 0.7 + 1).compact == () and _plan(small, everything / 0.7 + 1).message == ""


def test_a_costly_one_batch_test_does_not_crowd_out_the_rest():
    """A CIFAR ResNet-18 (1.1 GFLOP per sample at 32 px): the full one-batch test alone would fill
    the budget; coverage first keeps the fit, range test and label noise in the plan."""
    plan = _plan(ModelCost(1.11e9, 1.48e6), 300)
    assert {"overfit-batch", "learning-rate", "fit", "label-noise"}.isdisjoint(plan.not_run)


def test_the_plan_for_cuda_is_exercised_on_cpu():
    """No GPU here: the plan for a CUDA device type is computed the same way, with the GPU constants."""
    gpu = _plan(RESNET18_224, 300, "cuda")
    assert gpu.not_run == () and speed_of("cuda").name == "GPU"
    assert sum(gpu.predicted(n) for n in PRIORITY) < 300 * 0.7 < sum(_plan(RESNET18_224, 300).predicted(n)
                                                                    for n in PRIORITY)


def test_on_a_gpu_the_host_launching_kernels_is_part_of_a_step():
    """Measured on an H200: small batches cost the same whatever their size, and more per module
    (efficientnet_b0's 230 leaf modules, 36 ms a step) than a 6-module net's 2.4 ms."""
    gpu, cpu = speed_of("cuda"), speed_of("cpu")
    deep, shallow = ModelCost(7.7e8, 2e7, 230), ModelCost(7.7e8, 2e7, 6)
    assert deep.train_seconds(gpu, 1, 8) > 3 * shallow.train_seconds(gpu, 1, 8)
    assert deep.train_seconds(cpu, 1, 8) == shallow.train_seconds(cpu, 1, 8)  # the CPU fit has no such term
    assert 0.025 < deep.train_seconds(gpu, 1, 8) < 0.1  # measured 0.036 s


def test_probes_use_bf16_only_on_gpus_that_compute_it_natively(monkeypatch):
    """bf16 autocast on Ampere and later; float32 on an older GPU (emulated bf16 is slower) and on the CPU."""
    from dnncheck.probes import train

    asked = []
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype=None, enabled=True:
                        asked.append((device_type, dtype, enabled)))
    for native in (True, False):
        train.native_bf16.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        train.autocast("cuda:0")
    train.native_bf16.cache_clear()
    train.autocast("cpu")
    assert asked == [("cuda", torch.bfloat16, True), ("cuda", None, False), ("cpu", None, False)]


def test_checks_of_probes_not_run_skip_or_say_info_and_never_gate(tmp_path):
    """One note for the audit; the checks that only read probes skip, and --fail-on warn still exits 0."""
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["audit", "sklearn:digits", "--model", "smallcnn", "--budget", "0.05", "--select",
                                 "training-curves,learning-rate,gradient-health,overfit", "--fail-on", "warn",
                                 "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    statuses = {c["slug"]: c["status"] for c in doc["checks"]}
    assert statuses == {"gradient-health": "skip", "learning-rate": "skip", "training-curves": "skip",
                        "overfit": "pass"}
    notes = [n for n in doc["data"]["notes"] if n.startswith("probe plan: ")]
    assert len(notes) == 1 and "not run: " in notes[0]
    assert notes[0].count("--budget ") == 2 and "run with --budget " in notes[0]  # the guard's and one suggestion
    assert "a GPU (--device cuda)" in notes[0]
    overfit = next(c for c in doc["checks"] if c["slug"] == "overfit")
    assert {f["severity"] for f in overfit["findings"]} == {"info"}
    assert all("was not run" in f["message"] or "parameters" in f["message"] for f in overfit["findings"])
    assert doc["model"]["probe_plan"]["compute"]["device_type"] == "CPU"
    assert not any(c["metrics"].get("inconclusive") for c in doc["checks"])


def test_a_costly_model_gets_the_compact_plan_and_every_check_still_judges(tmp_path, monkeypatch):
    """A model taken to cost 1 GFLOP per sample (the small CNN on digits, so the suite stays fast):
    the range test, the fit and label noise run compact, and no check is inconclusive, skipped or
    errored for want of a probe; the compact fit trains on its stratified 48 samples."""
    from dnncheck.probes import cost

    monkeypatch.setattr(cost, "measure_cost", lambda model, sample: ModelCost(1e9, 1e6))
    out = tmp_path / "r.json"
    checks = "normalization,label-noise,loss-sanity,overfit,imbalance,learning-rate,gradient-health,training-curves"
    result = runner.invoke(app, ["audit", "sklearn:digits", "--model", "smallcnn", "--select", checks, "--quiet",
                                 "--json", str(out)])
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(out.read_text())
    probes = {p["name"]: p for p in doc["model"]["probe_plan"]["probes"]}
    assert {n for n, p in probes.items() if p["compact"]} == {"learning-rate", "fit", "label-noise"}
    assert probes["fit"]["steps_done"] == probes["fit"]["steps"] == 24 and probes["overfit-batch"]["ran"]
    assert doc["model"]["probe_plan"]["compute"]["not_run"] == ["normalization", "overfit-shuffled"]
    for check in doc["checks"]:
        assert check["status"] in ("pass", "warn", "fail"), (check["slug"], check["summary"])
        assert not check["metrics"].get("inconclusive"), check["slug"]
    by_slug = {c["slug"]: c for c in doc["checks"]}
    assert "frozen_features" in by_slug["label-noise"]["metrics"]["estimators"]
    assert by_slug["learning-rate"]["metrics"]["range_test_steps"] <= 30
    assert "compact probe" in by_slug["training-curves"]["metrics"]["history_from"]
