"""split-leakage (DNC6): planted copies, group and label shift are found; clean splits pass."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dnncheck.checks.split_leakage import SplitLeakage
from dnncheck.results import Status
from conftest import shared_data
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
    # each copy and its original make a cluster; the HTML shows the first ones as rows of thumbnails
    assert result.metrics["leaked_evaluation_samples"] >= len(planted) - 1  # two plants may share a source
    rows = [result.figures[f"duplicate_cluster_{k}"] for k in range(1, 5)]
    assert all(len(r.images) == len(r.ids) >= 2 and r.title.startswith(f"Duplicate cluster {k}:")
               for k, r in enumerate(rows, 1))


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


# -- near duplicates as real collections hold them (issue 16) -------------------------------------
def test_within_split_copies_warn_and_cross_split_ones_still_fail(tmp_path):
    """Three training digits stored twice in train: a warning (they weight the loss), not a fail."""
    x, y = _digits()
    tr, va, te = stratified_split(y)
    x_train, y_train = np.concatenate([x[tr], x[tr][:3]]), np.concatenate([y[tr], y[tr][:3]])
    path = tmp_path / "w.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te])
    result = run_one(SplitLeakage(), source=str(path))
    assert result.status is Status.WARN and result.metrics["within_split_duplicate_pairs"] == 3, messages(result)
    (finding,) = [f for f in result.findings if "within_split_pairs" in f.evidence]
    n = len(tr)
    assert {(p["a"], p["b"]) for p in finding.evidence["within_split_pairs"]} == {
        (f"train:{k}", f"train:{n + k}") for k in range(3)}
    assert result.summary.startswith("3 duplicate pair(s) within splits (3 exact)")


def test_copies_between_train_and_the_split_carved_from_it_are_within_the_users_train(tmp_path):
    """No test split given: dnncheck carves one out of train. Exact copies stored twice in train are
    kept on one side of the carving; shifted copies (found only later) that land on both sides sit
    inside the user's train folder: within-split duplicates (warn), never cross-split leakage (fail);
    copies planted in the user's own val still fail."""
    x, y = _digits()
    tr, va, _ = stratified_split(y)
    copies, moved = np.arange(60), np.arange(60, 120)
    shifted = np.roll(x[tr][moved], 1, axis=2)  # one pixel to the right: near copies, not exact ones
    x_train = np.concatenate([x[tr], x[tr][copies], shifted])
    y_train = np.concatenate([y[tr], y[tr][copies], y[tr][moved]])
    path = tmp_path / "carved.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x[va], y_val=y[va])
    result = run_one(SplitLeakage(), source=str(path))
    assert result.status is Status.WARN, messages(result)
    assert result.metrics["exact_duplicate_pairs"] == 0 and result.metrics["near_duplicate_pairs"] == 0
    assert result.metrics["leaked_evaluation_samples"] == 0
    (finding,) = [f for f in result.findings if "within_split_pairs" in f.evidence]
    pairs = finding.evidence["within_split_pairs"]
    straddling = [p for p in pairs if p["a"].split(":")[0] != p["b"].split(":")[0]]
    # the carving kept every exact pair together; about 15% of the shifted ones straddle it (8 px digits are
    # searched for near copies only between splits: MIN_WITHIN_SIDE)
    assert sum(p["kind"] == "exact" for p in pairs) == 60 and 3 <= len(straddling) <= 20
    assert all(p["kind"] == "near" for p in straddling), straddling
    assert set(finding.evidence["by_splits"]) - {"train-train", "test-test"} == {"train-test"}
    assert f"; {len(straddling)} of them pair train with the test split dnncheck carved" in finding.message
    assert "split dnncheck carved out of it for this audit" in finding.message
    # a copy in the val split the user made is still leakage
    x_val = x[va].copy()
    x_val[0] = x[tr][0]
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y[va])
    leaked = run_one(SplitLeakage(), source=str(path))
    assert leaked.status is Status.FAIL and leaked.metrics["exact_duplicate_pairs"] >= 1, messages(leaked)


def _mnist_split(n_train=1500, n_val=400):
    """Real MNIST train/val/test (all three given, so sample ids are the arrays' own indices)."""
    data = np.load(shared_data("mnist5k.npz"))
    order = np.random.default_rng(0).permutation(len(data["y"]))
    x, y = data["x"][order], data["y"][order]
    val, test = slice(n_train, n_train + n_val), slice(n_train + n_val, n_train + 2 * n_val)
    return x[:n_train], y[:n_train], x[val], y[val], x[test], y[test]


def test_mnist_copies_resampled_or_with_new_contrast_are_found_and_the_clean_split_has_none(tmp_path):
    """Real MNIST: 15 validation digits replaced by training digits downscaled to 60-80% and upscaled
    back (a resampling blur), 15 by contrast-changed ones; the same split without them reports nothing."""
    from plant import RESAMPLE_TRANSFORMS

    xt, yt, xv, yv, xs, ys = _mnist_split()
    clean = tmp_path / "clean.npz"
    np.savez(clean, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)
    result = run_one(SplitLeakage(), source=str(clean))
    assert result.metrics["near_duplicate_pairs"] == 0 and result.metrics["within_split_duplicate_pairs"] == 0
    xv2, planted = plant_copies(xt, xv, per_kind=15, seed=2, kinds=RESAMPLE_TRANSFORMS)
    yv2 = yv.copy()
    for s, t, _ in planted:
        yv2[t] = yt[s]
    dirty = tmp_path / "dirty.npz"
    np.savez(dirty, x_train=xt, y_train=yt, x_val=xv2, y_val=yv2, x_test=xs, y_test=ys)
    result = run_one(SplitLeakage(), source=str(dirty))
    pairs = {(p["a"], p["b"]) for f in result.findings for p in f.evidence.get("pairs", []) if "kind" in p}
    assert {(f"train:{s}", f"val:{t}") for s, t, _ in planted} <= pairs
    assert len(pairs) <= len(planted) + 1


def _texture(rng, side=160):
    """A random smooth texture photo (corners everywhere, so ORB has keypoints), RGB uint8."""
    from PIL import Image

    coarse = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((side, side), Image.BICUBIC)


def test_crops_and_mirror_images_of_photos_are_found_and_distinct_photos_are_not(tmp_path):
    """Twelve texture photos in train; validation holds a 65% crop of four of them, a mirror image of
    four more (rescaled, brightened) and four unrelated photos: eight geometric pairs, nothing else."""
    found, expected, result = _photos_with_crops_and_mirror_images(tmp_path)
    assert set(found) == set(expected), sorted(map(sorted, found))
    assert all(found[k]["kind"] == "geometric" for k in expected)
    assert all(found[expected[k]]["mirrored"] for k in range(4, 8))
    assert not any(found[expected[k]]["mirrored"] for k in range(4))
    assert result.status is Status.FAIL and "crops, mirror images or rescaled copies across splits" in result.summary


def test_candidates_from_visual_words_find_mirror_images_and_most_crops_and_nothing_else(tmp_path, monkeypatch):
    """The path a collection with more keypoints than EXACT_MATCHING_MAX_KEYPOINTS takes (about
    130,000 photos): candidate pairs from histograms of visual words, then the same RANSAC fit. It
    finds fewer (63% of the exact matching's pairs on 3,000 sibling photos): here every mirror image
    and the two crops the exact matching fits best (t0, t3: 24 and 19 inliers; t1, t2 fit 11)."""
    from dnncheck import similarity

    monkeypatch.setattr(similarity, "EXACT_MATCHING_MAX_KEYPOINTS", 0)
    calls = []
    real = similarity._pairs_by_words
    monkeypatch.setattr(similarity, "_pairs_by_words", lambda *a: calls.append(1) or real(*a))
    found, expected, result = _photos_with_crops_and_mirror_images(tmp_path)
    assert calls and set(found) <= set(expected), sorted(map(sorted, found))
    assert {expected[k] for k in (0, 3, 4, 5, 6, 7)} <= set(found)
    assert all(found[expected[k]]["mirrored"] for k in range(4, 8))
    assert result.status is Status.FAIL


def _photos_with_crops_and_mirror_images(tmp_path):
    from PIL import ImageEnhance, ImageOps

    rng = np.random.default_rng(0)
    originals = [_texture(rng) for _ in range(12)]
    for k, photo in enumerate(originals):
        (tmp_path / "train" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        photo.save(tmp_path / "train" / f"c{k % 2}" / f"t{k}.png")
    for k in range(12):
        if k < 4:
            made = originals[k].crop((20, 30, 124, 134)).resize((150, 150))
        elif k < 8:
            made = ImageEnhance.Brightness(ImageOps.mirror(originals[k]).resize((120, 120))).enhance(1.2)
        else:
            made = _texture(rng)
        (tmp_path / "val" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        made.save(tmp_path / "val" / f"c{k % 2}" / f"v{k}.png")
    result = run_one(SplitLeakage(), source=str(tmp_path), image_size=(32, 32))
    # unordered: dnncheck carves a test split out of train, and test is listed after val
    found = {frozenset((p["a"], p["b"])): p for f in result.findings for p in f.evidence.get("pairs", [])
             if "kind" in p}
    expected = [frozenset((f"train/c{k % 2}/t{k}.png", f"val/c{k % 2}/v{k}.png")) for k in range(8)]
    return found, expected, result


def test_geometric_matching_is_deterministic():
    from dnncheck.data.records import image_record
    from dnncheck.similarity import geometric_pairs

    rng = np.random.default_rng(1)
    photos = [np.asarray(_texture(rng)) for _ in range(6)]
    photos += [np.ascontiguousarray(p[10:130, 20:140][:, ::-1]) for p in photos[:3]]
    records = np.concatenate([image_record(p) for p in photos])
    first, second = geometric_pairs(records, 10), geometric_pairs(records, 10)
    assert [(p.a, p.b) for p in first[0]] == [(0, 6), (1, 7), (2, 8)]
    assert first == second


def test_the_real_ant_bee_photos_have_no_near_duplicates():
    """Checked by eye (issue 16): the original folder holds no copies; an earlier degenerate fit (10
    points squeezed at scale 60 between an ant and a bee photo) is now refused."""
    result = run_one(SplitLeakage(), source=str(shared_data("hymenoptera")), image_size=(32, 32))
    assert result.metrics["geometric_duplicate_pairs"] == 0 and result.metrics["within_split_duplicate_pairs"] == 0
    assert result.status is Status.PASS, messages(result)


# -- learned embeddings (optional) ---------------------------------------------------------------
def _noisy_copies(tmp_path, n=120):
    """Digits train/val/test where 6 validation digits are noisy copies (sigma 8) of training ones."""
    x, y = _digits()
    rng = np.random.default_rng(3)
    tr, va, te = np.arange(0, n), np.arange(n, n + 40), np.arange(n + 40, n + 80)
    x_val = x[va].copy()
    for k in range(6):
        x_val[k] = np.clip(x[tr][k] + rng.normal(0, 8, x[tr][k].shape), 0, 255).astype(np.uint8)
    y_val = y[va].copy()
    y_val[:6] = y[tr][:6]
    path = tmp_path / "e.npz"
    np.savez(path, x_train=x[tr], y_train=y[tr], x_val=x_val, y_val=y_val, x_test=x[te], y_test=y[te])
    return path


def test_the_models_own_embedding_finds_copies_the_correlation_search_is_told_to_skip(tmp_path):
    result = run_one(SplitLeakage(embedding="model", near_threshold=1.0), source=str(_noisy_copies(tmp_path)),
                     model="mlp")
    found = {(p["a"], p["b"]): p for f in result.findings for p in f.evidence.get("pairs", []) if "kind" in p}
    assert {(f"train:{k}", f"val:{k}") for k in range(6)} <= set(found), sorted(found)
    assert all(found[(f"train:{k}", f"val:{k}")]["kind"] == "embedding" for k in range(6))
    assert result.metrics["embedding_duplicate_pairs"] >= 6


def test_a_torchvision_backbone_needs_its_weights_in_the_torch_cache(tmp_path, monkeypatch):
    import torch
    import torchvision

    from dnncheck.errors import UserError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError, match="not in the torch cache .*resnet18-.*never downloads"):
        SplitLeakage(embedding="torchvision:resnet18")
    with pytest.raises(UserError, match=r'no such classification model \(did you mean "resnet18"\?\)'):
        SplitLeakage(embedding="torchvision:resnet1")
    with pytest.raises(UserError, match='use "model" or "torchvision:<name>"'):
        SplitLeakage(embedding="clip")
    # weights in the cache (random ones here: this machine cannot download) are used, offline
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    cached = tmp_path / "torch" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    result = run_one(SplitLeakage(embedding="torchvision:resnet18", near_threshold=1.0),
                     source=str(_noisy_copies(tmp_path, n=40)), model="mlp")
    found = {(p["a"], p["b"]): p["kind"] for f in result.findings for p in f.evidence.get("pairs", []) if "kind" in p}
    assert {(f"train:{k}", f"val:{k}") for k in range(6)} <= set(found)


@pytest.mark.parametrize("near_pairs, status", [(7, Status.WARN), (8, Status.FAIL)])  # 7/750 < 1% <= 8/750
def test_a_few_lookalikes_across_splits_warn_and_a_share_of_the_split_fails(near_pairs, status):
    """MNIST at 32 px has two pairs of near pixel-identical straight '1' strokes across splits: a true
    finding, but 2 of 750 test digits cannot inflate the test metrics; from 1% of an evaluation split
    near copies fail. An exact copy fails at any count."""
    from types import SimpleNamespace

    from dnncheck.checks.split_leakage import SplitLeakage, _duplicate_findings, duplicate_clusters

    def pair(k, kind="near"):
        return {"a": f"train:{k}", "b": f"test:{k}", "kind": kind, "similarity": 0.991, "label_a": 1, "label_b": 1,
                "split_a": "train", "split_b": "test"}

    def judged(pairs, within=()):
        m = SimpleNamespace(pairs=pairs, within_pairs=tuple(within), classes=("0", "1"), made_splits=(),
                            split_sizes={"train": 3500, "val": 750, "test": 750})
        return _duplicate_findings(m, SplitLeakage.Thresholds(), duplicate_clusters((*pairs, *within), ()))

    found = judged([pair(k) for k in range(near_pairs)])
    assert found[0].severity is status and found[0].evidence["largest_split_share"] == round(near_pairs / 750, 5)
    assert judged([pair(0, "exact")])[0].severity is Status.FAIL
    within = {**pair(1), "b": "train:2", "split_b": "train"}
    assert judged([], [within])[0].severity is Status.INFO  # 2 of 3,500 training samples
    assert judged([], [{**within, "kind": "exact"}])[0].severity is Status.WARN


def _ramp_scene(angle: float, low, high, shapes, size=(96, 128)) -> np.ndarray:
    """A linear colour ramp from `low` to `high` at `angle` with flat shapes ((kind, box, colour))."""
    from PIL import Image, ImageDraw

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    ramp = (ramp - ramp.min()) / np.ptp(ramp)
    base = np.asarray(low, float) + ramp[..., None] * (np.asarray(high, float) - np.asarray(low, float))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for kind, box, colour in shapes:
        (draw.ellipse if kind == "ellipse" else draw.rectangle)(box, fill=tuple(colour))
    return np.asarray(image)


def test_smooth_distinct_scenes_are_not_near_copies_and_their_copies_are(tmp_path):
    """Low-texture scenes fool a 32 px grey comparison: the same light gradient with a small shape
    elsewhere (grey twins) or the same layout in other hues (colour twins, equal in grey) correlate
    at 0.99 or more. Neither is a copy; brightened, re-encoded and contrast-stretched copies are."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from plant import transform

    rng = np.random.default_rng(3)
    train, twins, copies = [], [], []
    for k in range(24):
        angle = rng.uniform(0, 2 * np.pi)
        # saturated ends: a twin in other hues is told apart by its colour (CHROMA_FLOOR)
        low, high = rng.permutation([20, 90, 160]), rng.permutation([100, 170, 240])
        box = [float(v) for v in (rng.uniform(5, 40), rng.uniform(5, 30))]
        square = ("rect", [box[0], box[1], box[0] + 14, box[1] + 14], rng.integers(0, 256, 3))
        scene = _ramp_scene(angle, low, high, [square])
        train.append(scene)
        if k % 2:  # grey twin: the same gradient, a small shape elsewhere
            moved = ("ellipse", [box[0] + 60, box[1] + 40, box[0] + 72, box[1] + 52], square[2])
            twins.append(_ramp_scene(angle, low, high, [moved]))
        else:  # colour twin: every colour turned around the grey axis, so its grey copy is the same
            def turned(c):
                c = np.asarray(c, float)
                return np.clip(c.mean() + np.roll(c - c.mean(), 1) * -1, 0, 255).astype(int)
            twins.append(_ramp_scene(angle, turned(low), turned(high), [(square[0], square[1], turned(square[2]))]))
        copies.append(transform(scene, ("bright20", "jpeg75", "contrast", "noise8")[k % 4], rng))
    x_val = np.stack(twins + copies)
    path = tmp_path / "scenes.npz"
    others = [_ramp_scene(rng.uniform(0, 2 * np.pi), rng.integers(0, 256, 3), rng.integers(0, 256, 3), []) for _ in range(6)]
    np.savez(path, x_train=np.stack(train), y_train=np.arange(24) % 2, x_val=x_val, y_val=np.arange(48) % 2,
             x_test=np.stack(others), y_test=np.arange(6) % 2)
    result = run_one(SplitLeakage(), source=str(path))
    found = {(p["a"], p["b"]) for f in result.findings for p in f.evidence.get("pairs", []) if p.get("kind") == "near"}
    assert found == {(f"train:{k}", f"val:{24 + k}") for k in range(24)}, messages(result)


def _turned(colour):
    """The colour with its chroma negated about its grey level: the same grey, opposite hue."""
    c = np.asarray(colour, float)
    return np.clip(2 * c.mean() - c, 0, 255).astype(int)


def test_flat_scenes_of_one_layout_are_not_crops_of_each_other_and_a_crop_is(tmp_path, monkeypatch):
    """ORB sees grey: a scene and its twin in opposite hues (the same grey image) agree on one
    transform at every corner of their rectangles, and only their colours, moved by that transform,
    tell them apart. A crop of the scene is still found."""
    from PIL import Image

    import dnncheck.similarity as similarity

    rng = np.random.default_rng(5)
    boxes = [[20, 15, 60, 50], [70, 40, 115, 85], [30, 60, 55, 90], [85, 5, 120, 30], [5, 70, 20, 92]]
    train, val = [], []
    for k in range(6):
        colours = [rng.integers(0, 256, 3) for _ in range(2 + len(boxes))]
        shapes = [("rect", box, c) for box, c in zip(boxes, colours[2:])]
        train.append(_ramp_scene(0.3, colours[0], colours[1], shapes))
        val.append(_ramp_scene(0.3, _turned(colours[0]), _turned(colours[1]),
                               [(kind, box, _turned(c)) for kind, box, c in shapes]))
    val.append(np.asarray(Image.fromarray(train[0][8:88, 10:118]).resize((128, 96))))  # a real crop
    for split, images in (("train", train), ("val", val)):
        for k, image in enumerate(images):
            (tmp_path / split / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / split / f"c{k % 2}" / f"{k}.png")

    def geometric(result):
        return {frozenset((p["a"], p["b"])) for f in result.findings
                for key in ("pairs", "within_split_pairs") for p in f.evidence.get(key, []) if p.get("kind") == "geometric"}

    found = geometric(run_one(SplitLeakage(), source=str(tmp_path), image_size=(32, 32)))
    assert found == {frozenset(("train/c0/0.png", "val/c0/6.png"))}, found
    monkeypatch.setattr(similarity, "GEOMETRIC_CHROMA_COSINE", -1.0)  # without the colour gates: the twins pair up
    monkeypatch.setattr(similarity, "LOCAL_CHROMA_COSINE", -1.0)
    without = geometric(run_one(SplitLeakage(), source=str(tmp_path), image_size=(32, 32), cache=False))
    assert frozenset(("train/c0/0.png", "val/c0/0.png")) in without and len(without) >= 3, without


def test_one_shape_fitted_onto_another_is_no_crop_unless_what_lies_beside_it_agrees():
    """ORB's keypoints sit on a flat shape's outline, and one ellipse fits another of like proportions:
    the photometric gate moves the grey copy by the fitted transform and compares what lies beside
    the shape. A real crop agrees there; a scene with that ellipse in the same place and other shapes
    beside it does not; with nothing beside the ellipse on either side nothing can disagree."""
    from PIL import Image

    import dnncheck.similarity as similarity
    from dnncheck.data.records import image_record

    low, high, ellipse = (200, 60, 40), (40, 90, 210), ("ellipse", [40, 30, 70, 50], (250, 240, 90))
    scene = _ramp_scene(0.7, low, high, [ellipse, ("rect", [80, 12, 110, 40], (20, 160, 60)),
                                         ("rect", [20, 58, 50, 80], (120, 30, 150))])
    crop = np.asarray(Image.fromarray(scene[12:84, 16:112]).resize((128, 96), Image.BILINEAR))
    # the crop's frame: x' = (x - 16) * 4/3, y' = (y - 12) * 4/3
    model = np.array([[4 / 3, 0, -16 * 4 / 3], [0, 4 / 3, -12 * 4 / 3]])
    moved = ("ellipse", [(40 - 16) * 4 / 3, (30 - 12) * 4 / 3, (70 - 16) * 4 / 3, (50 - 12) * 4 / 3], ellipse[2])
    other = _ramp_scene(0.7, low, high, [moved, ("rect", [8, 60, 40, 90], (30, 30, 200)),
                                         ("ellipse", [95, 5, 125, 30], (240, 120, 200))])
    alone = _ramp_scene(0.7, low, high, [moved])
    scene_alone = _ramp_scene(0.7, low, high, [ellipse])
    records = np.concatenate([image_record(v) for v in (scene, crop, other, alone, scene_alone)])
    fields = similarity._FitFields(records, np.arange(len(records)))
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    outline = np.stack([(55 - 16 + 15 * np.cos(angles)) * 4 / 3, (40 - 12 + 10 * np.sin(angles)) * 4 / 3], 1)

    def agrees(a, b):
        return similarity._shapes_agree_beside(fields, a, b, 0, model, outline.astype(np.float32))

    assert agrees(0, 1)  # the crop
    assert not agrees(0, 2)  # the same ellipse in the same place, other shapes beside it
    assert agrees(4, 3)  # one ellipse on a plain gradient each: nothing beside it to disagree


def test_scenes_alike_but_for_their_shapes_colours_are_not_near_copies(tmp_path):
    """Two small saturated shapes on one strongly coloured gradient, their hues turned (the same grey
    image): the whole grids' colours still meet at a cosine of 0.95-0.99 (the gradient is most of them),
    what is left beside the gradient points elsewhere. Their copies are still found."""
    from plant import transform

    rng = np.random.default_rng(11)
    train, twins, copies = [], [], []
    for k in range(8):
        low, high = rng.permutation([10, 80, 200]), rng.permutation([60, 150, 250])
        angle = rng.uniform(0, 2 * np.pi)
        x, y = int(rng.integers(5, 30)), int(rng.integers(5, 20))
        boxes = [[x, y, x + 11, y + 11], [x + 60, y + 35, x + 71, y + 46]]
        colours = [rng.permutation([0, 120, 250]) for _ in boxes]
        train.append(_ramp_scene(angle, low, high, [("rect", b, c) for b, c in zip(boxes, colours)]))
        twins.append(_ramp_scene(angle, low, high, [("rect", b, _turned(c)) for b, c in zip(boxes, colours)]))
        copies.append(transform(train[-1], ("bright20", "jpeg75", "contrast", "noise8")[k % 4], rng))
    path = tmp_path / "hues.npz"
    other = _ramp_scene(1.0, (200, 30, 30), (30, 30, 200), [("ellipse", [40, 30, 80, 60], (250, 250, 250))])
    np.savez(path, x_train=np.stack(train), y_train=np.arange(8) % 2, x_val=np.stack(twins + copies),
             y_val=np.arange(16) % 2, x_test=other[None], y_test=np.zeros(1, int))
    result = run_one(SplitLeakage(), source=str(path))
    near = [p for f in result.findings for p in f.evidence.get("pairs", []) if p.get("kind") == "near"]
    assert {(p["a"], p["b"]) for p in near} == {(f"train:{k}", f"val:{8 + k}") for k in range(8)}, messages(result)


def test_keypoints_that_match_no_other_image_give_no_pairs_and_no_error():
    """A collection where one image has a keypoint and the rest none (flat scenes): every match is the
    image's own, none is left to vote (this raised an IndexError and split-leakage became an error)."""
    from PIL import Image

    from dnncheck.data.records import image_record
    from dnncheck.similarity import geometric_pairs
    from plant import photo_sibling, smooth_scene

    rng = np.random.default_rng(0)
    scene = Image.fromarray(smooth_scene(rng))
    records = np.concatenate([image_record(np.asarray(photo_sibling(scene, rng))) for _ in range(2)])
    assert records["kp_count"][:, 0].tolist() == [1, 0]
    assert geometric_pairs(records, 10) == ([], {})
