"""imbalance (DNC9): planted imbalance and small data are flagged; balanced, ample data passes."""

from __future__ import annotations

import numpy as np

from conftest import blob_images, shared_data
from dnncheck.checks.imbalance import Imbalance
from dnncheck.results import Status
from helpers import messages, run_one


def _npz(tmp_path, counts, seed=0):
    """Blob images with the given number of training samples per class (val/test made from train)."""
    x, y = blob_images(sum(counts) * 4, len(counts), seed=seed)
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in enumerate(counts)])
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x[keep, ..., 0], y_train=y[keep])
    return path


def test_severe_imbalance_fails_and_names_the_small_class(tmp_path):
    result = run_one(Imbalance(small_data_per_class=10), source=str(_npz(tmp_path, [400, 400, 12])), model="mlp")
    assert result.status is Status.FAIL
    assert result.metrics["imbalance_ratio"] >= 20
    assert "the smallest classes are 2" in messages(result)


def test_moderate_imbalance_warns(tmp_path):
    result = run_one(Imbalance(small_data_per_class=10), source=str(_npz(tmp_path, [300, 300, 60])), model="mlp")
    assert result.status is Status.WARN
    assert "imbalance ratio 5.0" in messages(result)
    assert set(result.metrics["per_class_recall"]) == {"0", "1", "2"}


def test_balanced_ample_data_passes(tmp_path):
    result = run_one(Imbalance(small_data_per_class=100, augment_per_class=100),
                     source=str(_npz(tmp_path, [200, 200, 200])), model="mlp")
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["probe_balanced_accuracy"] > result.metrics["majority_baseline_accuracy"]


def test_digits_is_called_small_data_as_info_since_the_probe_already_learns_it():
    from dnncheck.config import AuditConfig
    from dnncheck.context import Context

    ctx = Context(AuditConfig(source="sklearn:digits", model="mlp", epochs=3))
    ctx.prepare()
    ctx.plan_probes([Imbalance()])
    measured = Imbalance().measure(ctx)  # one probe, judged under both settings
    result = Imbalance.judge(measured, Imbalance().t)
    assert result.status is Status.PASS and "small data" in messages(result)
    assert result.findings[0].severity is Status.INFO and result.metrics["probe_balanced_accuracy"] >= 0.9
    assert result.metrics["imbalance_ratio"] < 1.2
    strict = Imbalance.judge(measured, Imbalance(small_data_info_accuracy=1.0).t)
    assert strict.status is Status.WARN and strict.summary.startswith("1")  # the reason leads the summary


def test_probe_no_better_than_majority_fails(tmp_path):
    # labels independent of the images: nothing to learn, so the probe falls back to the majority
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(800, 8, 8), dtype=np.uint8)
    y = np.where(rng.random(800) < 0.85, 0, 1)
    path = tmp_path / "noise.npz"
    np.savez(path, x_train=x, y_train=y)
    result = run_one(Imbalance(small_data_per_class=10, ratio_warn=3.0), source=str(path), model="mlp")
    assert result.status is Status.FAIL
    assert "no better than always predicting 0" in messages(result)


def test_regression_targets_outside_train_range_warn(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,target,split"]
    rows += [f"{rng.normal()},{rng.uniform(0, 10)},train" for _ in range(100)]
    rows += [f"{rng.normal()},{rng.uniform(8, 20)},val" for _ in range(30)]
    rows += [f"{rng.normal()},{rng.uniform(0, 10)},test" for _ in range(30)]
    (tmp_path / "r.csv").write_text("\n".join(rows))
    result = run_one(Imbalance(), source=str(tmp_path / "r.csv"), model="mlp")
    assert result.status is Status.WARN
    assert result.metrics["val_outside_train_range"] > 0.5 and result.metrics["test_outside_train_range"] < 0.05
    assert len(result.findings) == 1  # test stays within the range: only val is named
    assert all(s.startswith("val:") for s in result.findings[0].samples)


def test_hymenoptera_is_small_data():
    root = shared_data("hymenoptera")
    result = run_one(Imbalance(), source=str(root), model="mlp", image_size=(32, 32), epochs=2)
    assert result.status is Status.WARN
    assert "small data" in messages(result)
    assert result.metrics["min_class_count"] < 130


def _mnist_splits(tmp_path, name, relabel_train=None, relabel_val=None):
    """Real MNIST digits (../shared/data/mnist5k.npz, stored sorted by class): 2,000 shuffled as train,
    600 more as val."""
    data = np.load(shared_data("mnist5k.npz"))
    order = np.random.default_rng(0).permutation(len(data["y"]))
    x, y = data["x"][order], data["y"][order].astype(np.int64)
    y_train, y_val = y[:2000], y[2000:2600]
    path = tmp_path / f"{name}.npz"
    np.savez(path, x_train=x[:2000], y_train=relabel_train(y_train) if relabel_train else y_train,
             x_val=x[2000:2600], y_val=relabel_val(y_val) if relabel_val else y_val)
    return path


def test_mnist_label_encodings_planted_and_clean(tmp_path):
    """Real MNIST with labels 1..10 everywhere (class 0 empty), with validation labels shifted by one
    against train's (another label map), and as it is: only the planted encodings are named."""
    one_based = run_one(Imbalance(), source=str(_mnist_splits(tmp_path, "one", lambda y: y + 1, lambda y: y + 1)),
                        model="mlp")
    assert one_based.status is Status.FAIL and one_based.summary.startswith("class 0 has no samples in any split")
    shifted = run_one(Imbalance(), source=str(_mnist_splits(tmp_path, "shift", None, lambda y: (y + 1) % 10)),
                      model="mlp")
    assert shifted.status is Status.FAIL and "val labels look encoded differently" in messages(shifted)
    assert shifted.metrics["renamed_accuracy"] > 0.8 > shifted.metrics["probe_accuracy"] + 0.5
    clean = run_one(Imbalance(), source=str(_mnist_splits(tmp_path, "clean")), model="mlp")
    assert "encoded differently" not in messages(clean) and clean.metrics["empty_classes"] == 0
    assert clean.metrics["renamed_accuracy"] == clean.metrics["probe_accuracy"]
