"""Same data, same seed, same verdict: the probe plan fixes the work, the budget only guards.

The plan is a pure function of sizes and settings; an audit with a generous budget gives the same
JSON (timing fields aside) as one with the default; one whose guard cuts every probe short makes
the probes' checks inconclusive (warn) and never fails a check that passes with the default.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dnncheck.cli import app
from dnncheck.probes.plan import MAX_AUTO_EPOCHS, MIN_FIT_EPOCHS, PlanFacts, build_plan, fit_epochs

# every check that trains a probe, on a cheap model (a few seconds in all)
PROBE_CHECKS = "normalization,label-noise,loss-sanity,overfit,imbalance,learning-rate,gradient-health,training-curves"


def _facts(**kw) -> PlanFacts:
    base = dict(train_samples=1258, val_samples=269, full_train=1258, batch_size=64, epochs=None,
                max_train_samples=5000)
    base.update(kw)
    return PlanFacts(**base)


def test_the_plan_is_a_function_of_sizes_and_settings_only():
    requests = {"fit": ({}, ["DNC4"]), "label-noise": ({"folds": 4}, ["DNC3"]),
                "learning-rate": ({"steps": 100}, ["DNC12"])}
    first, again = build_plan(_facts(), requests), build_plan(_facts(), requests)
    assert first.probes == again.probes and list(first.probes) == ["fit", "label-noise", "learning-rate"]
    assert first["fit"].epochs == MAX_AUTO_EPOCHS and first["fit"].steps == MAX_AUTO_EPOCHS * (1258 // 64)
    assert first["label-noise"].runs == 4 and first["learning-rate"].steps == 100


@pytest.mark.parametrize("train, expected", [(245, MAX_AUTO_EPOCHS), (3500, 6), (50_000, MIN_FIT_EPOCHS)])
def test_fit_epochs_follow_the_data_size(train, expected):
    assert fit_epochs(_facts(train_samples=min(train, 5000), full_train=train)) == expected


def test_probe_epochs_set_by_the_user_are_kept():
    assert fit_epochs(_facts(epochs=40)) == 40


def _timeless(value):
    """The JSON without what may differ between two runs: timings, and when and how it was invoked."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()
                if not (k == "duration_s" or k.endswith("_seconds") or k in ("started_at", "command"))}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _audit(tmp_path, name, *flags) -> dict:
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(app, ["audit", "sklearn:digits", "--model", "mlp", "--select", PROBE_CHECKS,
                                      "--quiet", "--json", str(out), *flags])
    assert result.exit_code in (0, 1), result.output
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("default"), "default")


def test_a_larger_budget_changes_nothing(default_run, tmp_path):
    generous = _audit(tmp_path, "generous", "--budget", "600")
    assert _timeless(generous) == _timeless(default_run)
    plan = default_run["model"]["probe_plan"]["probes"]
    assert {p["name"] for p in plan} == {"fit", "normalization", "label-noise", "overfit-batch", "overfit-shuffled",
                                         "learning-rate"}
    assert not any(p["cut_short"] for p in plan)
    assert all(p["steps_done"] == p["steps"] for p in plan if p["kind"] == "epochs")


def test_a_budget_too_small_leaves_probes_out_never_a_failure(default_run, tmp_path):
    """The plan predicts the probes' time from the model's cost: a 1 ms budget runs none of them,
    says so once, and turns nothing into a failure (imbalance's small-data advice is a warning again
    without the probe's accuracy, as before)."""
    tiny = _audit(tmp_path, "tiny", "--budget", "0.001")
    before = {c["slug"]: c for c in default_run["checks"]}
    for check in tiny["checks"]:
        if before[check["slug"]]["status"] in ("pass", "warn"):
            assert check["status"] != "fail", check
        assert not check["metrics"].get("inconclusive")
    assert not any(p["steps_done"] for p in tiny["model"]["probe_plan"]["probes"])
    assert set(tiny["model"]["probe_plan"]["compute"]["not_run"]) == {p["name"] for p in
                                                                      tiny["model"]["probe_plan"]["probes"]}
    assert sum(n.startswith("probe plan: ") for n in tiny["data"]["notes"]) == 1
    assert {c["slug"]: c["status"] for c in tiny["checks"]}["training-curves"] == "skip"


def test_a_guard_that_trips_is_inconclusive_never_a_failure(default_run, tmp_path, monkeypatch):
    """When the prediction is wrong (here: a CPU taken to be a million times faster) the guard still
    stops the probes, and their checks are inconclusive warnings, never failures."""
    from dnncheck.probes import cost

    monkeypatch.setitem(cost.SPEEDS, "cpu", cost.DeviceSpeed("CPU", 1e18, 1e-18, 1e-9))
    tiny = _audit(tmp_path, "tiny", "--budget", "0.001")
    before = {c["slug"]: c for c in default_run["checks"]}
    after = {c["slug"]: c for c in tiny["checks"]}
    for slug, check in after.items():
        if before[slug]["status"] in ("pass", "warn"):
            assert check["status"] != "fail", (slug, check["summary"])
    cut = [p for p in tiny["model"]["probe_plan"]["probes"] if p["cut_short"]]
    assert cut, "a 1 ms guard must cut the probes short"
    for slug in ("normalization", "label-noise", "loss-sanity", "overfit", "learning-rate", "gradient-health",
                 "training-curves"):
        check = after[slug]
        assert check["status"] == "warn" and check["metrics"].get("inconclusive") is True, (slug, check["summary"])
        evidence = [f["evidence"] for f in check["findings"] if f["evidence"].get("inconclusive")]
        assert evidence and evidence[0]["steps_done"] < evidence[0]["steps_planned"]
        assert evidence[0]["suggested_budget_seconds"] > 0.001
