"""normalization (DNC2): raw pixels, mixed feature scales, leaked statistics; normalised inputs pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dnncheck.checks.normalization import Normalization
from dnncheck.results import Status
from helpers import messages, run_one


def test_auto_normalised_digits_pass_and_the_probe_compares_runs():
    result = run_one(Normalization(), source="sklearn:digits", model="mlp")
    assert result.status is Status.PASS, messages(result)
    assert abs(result.metrics["per_channel"]["channel 0"]["mean"]) < 1e-3
    assert result.metrics["probe_alternative"].startswith("raw")
    assert result.metrics["probe_steps_as_fed"] and set(result.figures["loss_curves"].series) == \
        {"as fed (zscore)", "raw (not normalised)"}


def test_uint8_fed_as_is_fails():
    result = run_one(Normalization(probe=False), source="sklearn:digits", normalize="none")
    assert result.status is Status.FAIL and "pixel values still in 0..255" in messages(result)


def test_float_images_in_0_255_fail(tmp_path):
    from sklearn.datasets import load_digits

    x = (load_digits().images * 255 / 16).astype(np.float32)[:, None]  # float N,C,H,W in 0..255
    path = tmp_path / "f.npz"
    np.savez(path, x_train=x, y_train=load_digits().target)
    result = run_one(Normalization(probe=False), source=str(path))
    assert result.status is Status.FAIL and "0..255" in messages(result)


def _table(tmp_path, scales, name="t.csv", split=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(scales))) * np.array(scales)
    y = (x / np.where(np.array(scales) > 0, scales, 1)).sum(1) > 0
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(len(scales))])
    frame["label"] = y.astype(int)
    if split is not None:
        frame["split"] = split
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_features_on_wildly_different_scales_fail_with_the_fix(tmp_path):
    path = _table(tmp_path, [1e-3, 1.0, 1e5])
    result = run_one(Normalization(), source=str(path), model="mlp")
    assert result.status is Status.FAIL
    scale = next(f for f in result.findings if "feature scales differ" in f.message)
    assert "f2" in scale.message and "z-score" in scale.message
    assert result.metrics["feature_scale_ratio"] > 1e7
    assert "StandardScaler" in result.remedy


def test_standardised_table_passes_and_zscore_mode_fixes_the_scales(tmp_path):
    assert run_one(Normalization(probe=False), source=str(_table(tmp_path, [1, 1, 1]))).status is Status.PASS
    fixed = run_one(Normalization(probe=False), source=str(_table(tmp_path, [1e-3, 1.0, 1e5])), normalize="zscore")
    assert fixed.status is Status.PASS, messages(fixed)


def test_constant_feature_warns(tmp_path):
    path = _table(tmp_path, [1, 1, 0])
    result = run_one(Normalization(probe=False), source=str(path))
    assert result.status is Status.WARN and "constant feature" in messages(result)


def test_statistics_fitted_on_all_splits_are_flagged(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3)) * [2, 5, 1] + [3, -1, 0]
    x = (x - x.mean(0)) / x.std(0)  # standardised over every split together
    split = np.where(np.arange(300) < 200, "train", np.where(np.arange(300) < 250, "val", "test"))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=(x.sum(1) > 0).astype(int), split=split)
    frame.to_csv(tmp_path / "leak.csv", index=False)
    result = run_one(Normalization(probe=False), source=str(tmp_path / "leak.csv"))
    assert result.status is Status.WARN and "statistics of all splits together" in messages(result)
    # the same data standardised on train only is fine
    train = split == "train"
    x2 = (x - x[train].mean(0)) / x[train].std(0)
    frame2 = pd.DataFrame(x2, columns=["a", "b", "c"]).assign(label=frame["label"], split=split)
    frame2.to_csv(tmp_path / "ok.csv", index=False)
    assert run_one(Normalization(probe=False), source=str(tmp_path / "ok.csv")).status is Status.PASS
