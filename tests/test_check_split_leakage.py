"""split-leakage (DNC6): planted copies, group and label shift are found; clean splits pass."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dnncheck.checks.split_leakage import SplitLeakage
from dnncheck.results import Status
from helpers import messages, run_one

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from plant import TRANSFORMS, plant_copies, stratified_split  # noqa: E402


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * 255 / 16).astype(np.uint8), d.target


def _save(tmp_path, x, y, tr, va, te, name="d.npz", **extra):
    path = tmp_path / name
    np.savez(path, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te], **extra)
    return path


def test_clean_digits_splits_pass(tmp_path):
    x, y = _digits()
    tr, va, te = stratified_split(y)
    result = run_one(SplitLeakage(), source=str(_save(tmp_path, x, y, tr, va, te)))
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["near_duplicate_pairs"] == 0 and result.metrics["exact_duplicate_pairs"] == 0


def test_planted_copies_of_every_kind_are_found(tmp_path):
    x, y = _digits()
    tr, va, te = stratified_split(y)
    x_val, planted = plant_copies(x[tr], x[va], per_kind=4, seed=1)
    y_val = y[va].copy()
    for s, t, _ in planted:
        y_val[t] = y[tr][s]
    path = tmp_path / "p.npz"
    np.savez(path, x_train=x[tr], y_train=y[tr], x_val=x_val, y_val=y_val, x_test=x[te], y_test=y[te])
    result = run_one(SplitLeakage(), source=str(path))
    assert result.status is Status.FAIL
    pairs = {(p["a"], p["b"]): p for f in result.findings for p in f.evidence.get("pairs", [])}
    for s, t, kind in planted:
        pair = pairs.get((f"train:{s}", f"val:{t}"))
        assert pair is not None, f"missed {kind} copy train:{s} -> val:{t}"
        assert pair["kind"] == ("exact" if kind == "exact" else "near")
        assert set(pair) == {"a", "b", "kind", "similarity"}
    assert len(pairs) <= len(planted) + 1  # nothing else (at most one natural near-twin)
    assert len(TRANSFORMS) * 4 == len(planted)


def test_copies_with_different_labels_are_flagged(tmp_path):
    x, y = _digits()
    tr, va, te = stratified_split(y)
    x_val, y_val = x[va].copy(), y[va].copy()
    x_val[0], y_val[0] = x[tr][0], (y[tr][0] + 1) % 10
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x[tr], y_train=y[tr], x_val=x_val, y_val=y_val, x_test=x[te], y_test=y[te])
    result = run_one(SplitLeakage(), source=str(path))
    assert result.metrics["conflicting_label_pairs"] == 1
    assert any("carry different labels" in f.message for f in result.findings)


def test_shared_groups_are_named(tmp_path):
    x, y = _digits()
    tr, va, te = stratified_split(y)
    groups = {"group_train": np.arange(len(tr)) // 10, "group_val": np.arange(len(va)) // 10 + 10000,
              "group_test": np.arange(len(te)) // 10 + 20000}
    groups["group_val"][:3] = 7  # patient 7 also appears in val
    result = run_one(SplitLeakage(), source=str(_save(tmp_path, x, y, tr, va, te, **groups)))
    assert result.status is Status.FAIL
    finding = next(f for f in result.findings if "group(s) appear" in f.message)
    assert "7 (train/val)" in finding.message
    assert {p["kind"] for p in finding.evidence["pairs"]} == {"group"}
    assert result.metrics["leaked_groups"] == 1


def test_label_shift_between_splits_warns(tmp_path):
    x, y = _digits()
    tr, va, te = stratified_split(y)
    va = va[(y[va] < 5) | (np.arange(len(va)) % 4 == 0)]  # val mostly digits 0-4
    result = run_one(SplitLeakage(), source=str(_save(tmp_path, x, y, tr, va, te)))
    assert result.status is Status.WARN and "label distributions differ" in messages(result)
    assert result.metrics["label_shift_p_value"] < 1e-3


def test_made_splits_are_info_with_the_tutorials_rule():
    result = run_one(SplitLeakage(), source="sklearn:digits")
    assert result.status is Status.PASS and result.findings[0].severity is Status.INFO
    assert "test split you evaluate once" in messages(result) and "k-fold" in messages(result)


def test_duplicate_table_rows_across_splits(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,c,label,split"]
    train = rng.normal(size=(100, 3))
    for r in train:
        rows.append(f"{r[0]},{r[1]},{r[2]},{int(r.sum() > 0)},train")
    for k in range(30):
        r = train[k] if k < 3 else rng.normal(size=3)
        rows.append(f"{r[0]},{r[1]},{r[2]},{int(r.sum() > 0)},{'val' if k % 2 else 'test'}")
    (tmp_path / "t.csv").write_text("\n".join(rows))
    result = run_one(SplitLeakage(), source=str(tmp_path / "t.csv"))
    assert result.metrics["exact_duplicate_pairs"] == 3


def test_a_table_column_that_is_the_target_plus_noise_fails_and_clean_diabetes_passes(tmp_path):
    """Classic target leakage: a column computed from the label. scikit-learn's diabetes (bundled)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    for name, extra in (("clean", None), ("leaky", y + rng.normal(0, 1.0, len(y)))):
        columns = [x[:, i] for i in range(x.shape[1])] + ([extra] if extra is not None else []) + [y]
        header = [f"f{i}" for i in range(x.shape[1])] + (["target_copy"] if extra is not None else []) + ["target"]
        rows = [",".join(header)] + [",".join(f"{v:.6g}" for v in row) for row in zip(*columns)]
        (tmp_path / f"{name}.csv").write_text("\n".join(rows))
    leaky = run_one(SplitLeakage(), source=str(tmp_path / "leaky.csv"))
    assert leaky.status is Status.FAIL and "target_copy" in leaky.summary
    clean = run_one(SplitLeakage(), source=str(tmp_path / "clean.csv"))
    assert not any(f.severity is Status.FAIL for f in clean.findings), messages(clean)
    assert clean.metrics["best_single_feature_score"] < 0.5  # diabetes' best single feature explains ~1/3


def test_validation_from_another_pipeline_is_named_as_covariate_shift(tmp_path):
    """Validation images inverted (another export pipeline): a shift between splits, said as such."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255 / 16).astype(np.uint8)
    path = tmp_path / "shifted.npz"
    np.savez(path, x_train=x[:1200], y_train=d.target[:1200], x_val=255 - x[1200:], y_val=d.target[1200:])
    result = run_one(SplitLeakage(), source=str(path))
    assert result.status is Status.WARN and result.summary.startswith("covariate shift: a classifier tells train")
    assert result.metrics["split_shift_auc"]["val"] > 0.95
    same = tmp_path / "same.npz"
    np.savez(same, x_train=x[:1200], y_train=d.target[:1200], x_val=x[1200:], y_val=d.target[1200:])
    assert run_one(SplitLeakage(), source=str(same)).metrics["split_shift_auc"]["val"] < 0.7


@pytest.mark.parametrize("features", [1, 2, 3])
def test_a_table_with_few_features_reports_no_chance_near_copies(tmp_path, features):
    """One or two continuous columns: many distinct rows lie within 1% of each other by chance."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, features)).astype(np.float32)
    path = tmp_path / "few.npz"
    np.savez(path, x_train=x, y_train=(x.sum(axis=1) > 0).astype(int))
    result = run_one(SplitLeakage(), source=str(path))
    assert result.metrics["near_duplicate_pairs"] == 0 and result.status is Status.PASS, messages(result)
    assert "only exact copies" in messages(result)


def test_a_scaled_table_row_is_not_a_near_copy(tmp_path):
    """A cosine calls rows x and 2x identical; the table similarity must not."""
    from dnncheck.similarity import row_similarity

    z = np.array([[1.0, 2.0, -1.0, 0.5], [2.0, 4.0, -2.0, 1.0], [1.0, 2.0, -1.0, 0.5001]])
    scores = row_similarity(z, np.array([0, 0]), np.array([1, 2]))
    assert scores[0] < 0.9 and scores[1] > 0.9999
