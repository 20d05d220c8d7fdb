"""Every data source of DESIGN section 2, its sample ids, and its bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import blob_images, save_png, shared_data
from dnncheck.config import AuditConfig
from dnncheck.data import load_dataset
from dnncheck.errors import UserError


def load(source, **kw):
    return load_dataset(AuditConfig(source=str(source), **kw))


def all_ids(ds):
    return [i for s in ds.splits.values() for i in s.ids]


def test_digits_is_split_70_15_15_with_array_ids():
    ds = load("sklearn:digits")
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["val"] - 270) <= 1 and abs(sizes["test"] - 270) <= 1
    assert ds.splits["val"].ids[:2] == ["val:0", "val:1"]
    assert ds.splits["train"].ids[-1] == f"train:{sizes['train'] - 1}"
    assert ds.image_size == (8, 8) and ds.channels == 1
    assert ds.splits["train"].x.dtype == np.uint8 and ds.splits["train"].x.max() > 200
    # stratified: every class in every split
    assert all(len(np.unique(s.y)) == 10 for s in ds.splits.values())
    assert sorted(ds.made_splits) == ["test", "val"]


def test_digits_split_is_seeded():
    a, b, c = load("sklearn:digits", seed=1), load("sklearn:digits", seed=1), load("sklearn:digits", seed=2)
    assert np.array_equal(a.splits["val"].x, b.splits["val"].x)
    assert not np.array_equal(a.splits["val"].x, c.splits["val"].x)


def test_folder_with_splits_uses_relative_paths_as_ids(image_folder):
    root = image_folder(splits=("train", "val", "test"))
    ds = load(root)
    assert ds.classes == ["cat", "dog"]
    assert set(ds.splits) == {"train", "val", "test"} and ds.made_splits == []
    assert ds.splits["val"].ids[0].startswith("val/") and ds.splits["val"].ids[0].endswith(".png")
    assert ds.splits["train"].native_sizes.tolist()[0] == [12, 12]


def test_folder_without_splits_makes_them_and_keeps_path_ids(image_folder):
    root = image_folder(splits=(None,), per_class=20)
    ds = load(root)
    assert set(ds.made_splits) == {"val", "test"}
    assert all(i.split("/")[0] in ("cat", "dog") for i in all_ids(ds))
    assert len(set(all_ids(ds))) == 40


def test_folder_mixed_modes_are_converted_consistently(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    save_png(root / "a" / "gray.png", rng.integers(0, 255, (10, 10), dtype=np.uint8))
    save_png(root / "a" / "rgb.png", rng.integers(0, 255, (10, 10, 3), dtype=np.uint8))
    save_png(root / "b" / "palette.png", rng.integers(0, 255, (10, 10, 3), dtype=np.uint8), mode="P")
    save_png(root / "b" / "rgba.png", rng.integers(0, 255, (10, 10, 4), dtype=np.uint8))
    ds = load(root, seed=0)
    part = [s for s in ds.splits.values()]
    assert ds.channels == 3
    images = [im for s in part for im in (s.x if isinstance(s.x, list) else list(s.x))]
    assert all(im.shape == (10, 10, 3) for im in images)
    modes = sorted(m for s in part for m in s.modes)
    assert modes == ["L", "P", "RGB", "RGBA"]


def test_unreadable_images_are_skipped_and_counted(image_folder):
    root = image_folder(splits=("train", "val"))
    (root / "train" / "cat" / "empty.png").write_bytes(b"")
    (root / "train" / "cat" / "text.jpg").write_text("not an image")
    good = (root / "train" / "dog").glob("*.png").__next__().read_bytes()
    (root / "train" / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "dog" / "notes.txt").write_text("ignored")
    ds = load(root)
    bad = dict(ds.unreadable)
    assert set(bad) == {"train/cat/empty.png", "train/cat/text.jpg", "train/dog/truncated.png"}
    assert "empty" in bad["train/cat/empty.png"]
    assert ds.ignored_files == ["train/dog/notes.txt"]


def test_large_images_are_held_downscaled_with_native_size(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(3):
            save_png(tmp_path / "big" / c / f"{i}.png", rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    ds = load(tmp_path / "big", decode_max_side=64)
    part = ds.splits["train"]
    first = part.x[0]
    assert max(first.shape[:2]) == 64
    assert part.native_sizes[0].tolist() == [300, 400]
    assert ds.image_size == (64, 64)


def test_manifest_with_split_and_group(tmp_path):
    x, y = blob_images(12, 2)
    rows = ["path,label,split,group"]
    for i in range(12):
        save_png(tmp_path / "imgs" / f"{i}.png", x[i, ..., 0])
        rows.append(f"imgs/{i}.png,{'ab'[y[i]]},{'train' if i < 8 else 'val'},p{i // 2}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    ds = load(tmp_path / "m.csv")
    assert ds.splits["train"].ids[0] == "imgs/0.png"
    assert ds.classes == ["a", "b"]
    assert list(ds.splits["val"].groups) == ["p4", "p4", "p5", "p5"]
    assert "test" in ds.made_splits
    # the made test split keeps groups whole
    test_groups = set(ds.splits["test"].groups)
    assert not test_groups & set(ds.splits["train"].groups)


def test_manifest_with_no_existing_paths_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnope/1.png,a\nnope/2.png,b\n")
    with pytest.raises(UserError, match="none of the 2 paths exist"):
        load(tmp_path / "m.csv")


def test_table_csv_classification_and_ids(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["f1,f2,label,split"] + [f"{rng.normal()},{rng.normal()},{'xy'[i % 2]},{'train' if i < 30 else 'test'}"
                                    for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    ds = load(tmp_path / "t.csv")
    assert ds.modality == "table" and ds.feature_names == ["f1", "f2"]
    assert ds.splits["test"].ids[0] == "test:0"
    assert ds.made_splits == ["val"] and ds.splits["val"].ids[0] == "val:0"


def test_table_csv_regression(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["a,b,target"] + [f"{rng.normal()},{rng.normal()},{rng.normal() * 10}" for _ in range(60)]
    (tmp_path / "r.csv").write_text("\n".join(lines))
    ds = load(tmp_path / "r.csv")
    assert ds.task == "regression" and ds.classes == []
    assert ds.splits["train"].y.dtype == np.float64


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n", "needs a `label`"),
    ("a,label\nx,1\ny,0\n", "not numeric"),
    ("", "empty"),
])
def test_table_csv_errors(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(UserError, match=message):
        load(tmp_path / "bad.csv")


def test_npz_with_val_and_groups(npz_file):
    x, y = blob_images(40, 4)
    path = npz_file(x_train=x[:30, ..., 0], y_train=y[:30], x_val=x[30:, ..., 0], y_val=y[30:],
                    group_train=np.arange(30) // 3)
    ds = load(path)
    assert ds.splits["val"].ids == [f"val:{i}" for i in range(10)]
    assert ds.channels == 1 and ds.image_size == (12, 12)
    assert ds.made_splits == ["test"]


def test_npz_float_nchw_images_become_hwc(npz_file):
    x = np.random.default_rng(0).random((20, 3, 10, 10)).astype(np.float32)
    ds = load(npz_file(x_train=x, y_train=np.arange(20) % 2))
    assert ds.channels == 3 and ds.splits["train"].x.shape[1:] == (10, 10, 3)
    assert not any("channels last" in note for note in ds.notes)


def test_npz_float_channels_last_images_are_read_with_a_note(npz_file):
    """Float images are documented as N,C,H,W: a channels-last float batch is read, and said so."""
    x = np.random.default_rng(0).random((20, 10, 10, 3)).astype(np.float32)
    ds = load(npz_file(x_train=x, y_train=np.arange(20) % 2))
    assert ds.channels == 3 and ds.splits["train"].x.shape[1:] == (10, 10, 3)
    assert any("read as N,H,W,C (channels last" in note for note in ds.notes)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 5, 5))}, "missing x_train and y_train"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(3)}, "x_train has 4 samples but y_train has 3"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.array([0, 1, -1, 1])}, "must be >= 0"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.array([0, 1.5, 1, 0])}, "must be integers"),
    ({"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(4), "x_val": np.zeros((2, 5, 5))}, "no y_val"),
])
def test_npz_errors(npz_file, arrays, message):
    with pytest.raises(UserError, match=message):
        load(npz_file(**arrays))


def test_python_source(user_module):
    name = user_module("""
import torch
from torch.utils.data import TensorDataset

def make():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 6, 6, generator=g)
    y = torch.arange(30) % 3
    return {"train": TensorDataset(x[:24], y[:24]), "val": TensorDataset(x[24:], y[24:])}
""")
    ds = load(f"python:{name}:make")
    assert ds.classes == ["0", "1", "2"] and ds.channels == 1 and ds.image_size == (6, 6)
    assert ds.splits["val"].ids == [f"val:{i}" for i in range(6)]
    assert ds.made_splits == ["test"]


def test_python_source_errors(user_module):
    name = user_module("def make():\n    return [1, 2]\n")
    with pytest.raises(UserError, match="must return a dict"):
        load(f"python:{name}:make")
    with pytest.raises(UserError, match="cannot import module"):
        load("python:no_such_module_xyz:make")


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such file or folder"),
    ("empty", "the folder is empty"),
    ("flat", "no class subfolders"),
    ("single_class", "single class"),
])
def test_folder_errors(tmp_path, setup, message):
    root = tmp_path / "d"
    if setup != "missing":
        root.mkdir()
    if setup == "flat":
        save_png(root / "a.png", np.zeros((4, 4), dtype=np.uint8))
    if setup == "single_class":
        for i in range(4):
            save_png(root / "only" / f"{i}.png", np.full((4, 4), i * 10, dtype=np.uint8))
    with pytest.raises(UserError, match=message):
        load(root)


def test_hymenoptera_real_folder():
    root = shared_data("hymenoptera")
    ds = load(root)
    assert ds.classes == ["ants", "bees"] and ds.channels == 3
    assert len(ds.splits["val"]) == 153
    assert ds.made_splits == ["test"]
    assert ds.image_size == (64, 64)
    assert max(ds.splits["train"].native_sizes.max(axis=0)) >= 375
    assert len(ds.unreadable) == 0


def test_carving_keeps_each_set_of_exact_copies_on_one_side():
    """Samples 0-9 each stored three times: whichever side the carving draws a set's first sample to,
    the whole set goes there; distinct samples keep the side they were drawn to."""
    from dnncheck.data.splits import _copies_kept_together

    sets = np.r_[np.arange(10), np.arange(10), np.arange(10), np.arange(10, 50)]
    carve = np.arange(0, 70, 3)  # every third sample, splitting most sets
    keep = np.setdiff1d(np.arange(70), carve)
    kept, carved, straddled = _copies_kept_together(sets, keep, carve)
    assert straddled == 10 and len(kept) + len(carved) == 70 and not np.intersect1d(kept, carved).size
    for s in range(10):
        members = np.flatnonzero(sets == s)
        side = np.isin(members, carved)
        assert side.all() or not side.any()
        assert side[0] == (members[0] in carve)  # the set follows its first sample
    assert np.array_equal(np.isin(np.arange(30, 70), carved), np.isin(np.arange(30, 70), carve))
    assert _copies_kept_together(None, keep, carve)[2] == 0
