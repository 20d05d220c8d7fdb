"""label-noise (DNC3): planted flips are found and ranked; clean digits are not cried wolf on."""

from __future__ import annotations

import numpy as np

from dnncheck.checks.label_noise import LabelNoise
from dnncheck.results import Status
from helpers import messages, run_one


def _digits_npz(tmp_path, flip_fraction=0.0, seed=0, duplicate_conflict=False, sevens_as_ones=0.0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    y = d.target.copy()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    train, val, test = slice(0, 1400), slice(1400, 1600), slice(1600, None)
    y_train = y[train].copy()
    flipped = rng.choice(1400, int(flip_fraction * 1400), replace=False)
    y_train[flipped] = (y_train[flipped] + rng.integers(1, 10, len(flipped))) % 10
    if sevens_as_ones:  # an annotator's confusion: a share of the 7s labelled 1, nothing else touched
        sevens = np.flatnonzero(y_train == 7)
        flipped = rng.choice(sevens, int(sevens_as_ones * len(sevens)), replace=False)
        y_train[flipped] = 1
    x_train = x[train].copy()
    if duplicate_conflict:
        x_train[1] = x_train[0]
        y_train[1] = (y_train[0] + 1) % 10
    path = tmp_path / "digits.npz"
    # all three splits given, so train ids stay the indices of x_train (no split is carved out)
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x[val], y_val=y[val], x_test=x[test], y_test=y[test])
    return path, set(flipped.tolist())


def _flagged(result):
    finding = next(f for f in result.findings if "mislabelled" in f.message)
    return finding


def test_planted_flips_are_found_ranked_with_suggestions(tmp_path):
    path, planted = _digits_npz(tmp_path, flip_fraction=0.1)
    result = run_one(LabelNoise(), source=str(path), model="mlp", epochs=15)
    assert result.status is Status.FAIL
    finding = _flagged(result)
    flagged = {int(s.split(":")[1]) for s in finding.samples}
    precision = len(flagged & planted) / len(flagged)
    recall = len(flagged & planted) / len(planted)
    assert precision > 0.8 and recall > 0.8, (precision, recall)
    assert len(finding.evidence["given"]) == len(finding.evidence["suggested"]) == len(finding.samples)
    quality = finding.evidence["label_quality"]
    assert quality == sorted(quality)  # most likely mislabelled first
    assert 0.06 < result.metrics["estimated_noise_rate"] < 0.14
    assert set(result.metrics["estimators"]) == {"probe", "deep_knn", "svm"}
    assert result.figures["suspects"].images[0].shape == (8, 8, 1)


def test_clean_digits_are_not_cried_wolf_on(tmp_path):
    path, _ = _digits_npz(tmp_path)
    result = run_one(LabelNoise(), source=str(path), model="mlp", epochs=15)
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["flagged_fraction"] < 0.02
    # the few suspects are advice that fits a pass (a PASS box read "3 training samples look mislabelled")
    suspects = [f for f in result.findings if "mislabelled" in f.message]
    assert len(suspects) == (1 if result.metrics["flagged"] else 0)
    assert all(f.severity is Status.INFO and "may be mislabelled" in f.message and "within the 2% tolerated"
               in f.message for f in suspects)


def test_identical_samples_with_different_labels_fail(tmp_path):
    path, _ = _digits_npz(tmp_path, duplicate_conflict=True)
    result = run_one(LabelNoise(probe=False), source=str(path))
    finding = next(f for f in result.findings if "identical sample pair" in f.message)
    assert finding.severity is Status.FAIL and set(finding.samples) == {"train:0", "train:1"}
    assert result.metrics["estimators"] == ["knn", "svm"]


def test_a_target_without_signal_on_unstructured_features_gets_no_verdict(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "r.csv").write_text("a,target\n" + "\n".join(f"{rng.normal()},{rng.normal()}" for _ in range(50)))
    result = run_one(LabelNoise(), source=str(tmp_path / "r.csv"))
    assert result.status is Status.PASS and "no verdict on the labels" in result.summary
    assert result.metrics["input_structure"] > 0.85


def test_a_table_whose_target_column_is_shifted_by_one_row_fails(tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    clean = run_one(LabelNoise(), source=str(tmp_path / "diabetes.csv"))
    assert clean.status is Status.PASS and "the targets carry signal" in clean.summary, clean.summary
    frame["target"] = np.roll(frame["target"].to_numpy(), 1)
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    shifted = run_one(LabelNoise(), source=str(tmp_path / "shifted.csv"))
    assert shifted.status is Status.FAIL and shifted.summary.startswith("the targets look unrelated to the inputs")
    assert "check that targets and samples are aligned" in messages(shifted)


def test_labels_shifted_by_one_against_their_images_fail_whatever_the_estimators(tmp_path):
    # every label belongs to the previous image: confident learning alone read it as weak estimators (issue 33)
    path, _ = _digits_npz(tmp_path)
    data = dict(np.load(path))
    data["y_train"] = np.roll(data["y_train"], 1)
    np.savez(tmp_path / "rolled.npz", **data)
    result = run_one(LabelNoise(probe=False), source=str(tmp_path / "rolled.npz"))
    assert result.status is Status.FAIL and result.summary.startswith("the labels look unrelated to the inputs")
    assert result.metrics["label_signal_z"] < 3 and result.metrics["input_structure"] < 0.85
    assert not [f for f in result.findings if "weak evidence" in f.message]


def test_estimators_at_chance_make_suspects_information_that_says_why(tmp_path):
    # random labels on random images: the flags are the estimators' guesses, not evidence of noise
    # (issue "The user's training setup": weak evidence is info, not a warning users read as a finding)
    rng = np.random.default_rng(0)
    path = tmp_path / "random.npz"
    np.savez(path, x_train=rng.integers(0, 255, (300, 8, 8), dtype=np.uint8), y_train=rng.integers(0, 2, 300))
    result = run_one(LabelNoise(), source=str(path), model="mlp", epochs=15)
    assert result.status is Status.PASS, result.summary
    assert result.metrics["estimator_skill"] < 0.6 and result.metrics["estimated_noise_rate"] > 0.05
    assert result.summary.startswith("weak evidence") and "weak evidence" in messages(result)
    assert result.metrics["weak_evidence_confirmed"] is False
    assert all(f.severity is Status.INFO for f in result.findings)
    assert result.metrics["input_structure"] > 0.85  # noise images: no structure, so no alignment failure


def test_one_confused_class_pair_is_a_finding_although_the_global_rate_is_tolerated(tmp_path):
    # 20% of the 7s labelled 1: 28 of 1,400 labels (2%), all of one pair (issue 28)
    path, planted = _digits_npz(tmp_path, sevens_as_ones=0.2)
    result = run_one(LabelNoise(), source=str(path), model="mlp", epochs=15)
    pair = next(f for f in result.findings if "labelled 1 look like 7" in f.message)
    assert pair.severity in (Status.WARN, Status.FAIL) and result.status is pair.severity, messages(result)
    assert pair.evidence["given"] == "1" and pair.evidence["suggested"] == "7"
    found = {int(s.split(":")[1]) for s in pair.samples}
    assert len(found & planted) >= 0.8 * len(found)
    assert not [f for f in result.findings if "a systematic confusion" in f.message and f is not pair]
