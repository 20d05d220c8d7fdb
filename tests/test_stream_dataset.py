"""A user's torch Dataset is streamed, never materialised (data/items.py): one pass reads each item
once for its record and label (in DataLoader workers when there are several chunks), the pixels
are read again only for the samples a check loads, and a random transform gives one fixed draw per
sample (seeded by its index), the same in every check and every run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

import dnncheck
from dnncheck.cli import app
from dnncheck.data.items import DatasetImages
from dnncheck.errors import UserError


class CountingImages:
    """`n` 16x16 RGB images of two classes (a bright square for class 1); counts reads per index."""

    def __init__(self, n: int, random_shift: bool = False, fail_at: int | None = None):
        self.n, self.random_shift, self.fail_at = n, random_shift, fail_at
        self.reads = np.zeros(n, dtype=np.int64)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise OSError(f"disk error at {i}")
        self.reads[i] += 1
        rng = np.random.default_rng(i)
        image = rng.integers(0, 120, (16, 16, 3), dtype=np.uint8)
        if i % 2:
            image[4:10, 4:10] = 250
        if self.random_shift:  # an augmentation drawn from the global stream, as torchvision's are
            image = np.roll(image, random.randint(0, 3), axis=1)
        return image, i % 2


def test_one_pass_then_only_what_is_loaded(tmp_path, monkeypatch):
    from dnncheck.data.pysource import load_python

    data = CountingImages(100)
    module = tmp_path / "lazy_source.py"
    module.write_text("from test_stream_dataset import CountingImages\nDATA = CountingImages(100)\n"
                      "def splits():\n    return {'train': DATA}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    ds = load_python("lazy_source:splits", workers=1)
    import lazy_source

    part = ds.splits["train"]
    assert isinstance(part.x, DatasetImages) and len(part.records) == 100
    assert lazy_source.DATA.reads.sum() == 100 + 3  # one pass, and a second read of 3 items (random?)
    subset = part.x.take(np.array([5, 7]))
    assert lazy_source.DATA.reads.sum() == 103  # taking reads nothing
    tensor = subset.resized((8, 8))
    assert tensor.shape == (2, 3, 8, 8) and lazy_source.DATA.reads.sum() == 105
    assert data.reads.sum() == 0


def test_a_random_transform_is_one_fixed_draw_per_sample():
    first = dnncheck.audit({"train": CountingImages(120, random_shift=True)}, select="input-fidelity",
                           image_size=(16, 16))
    again = dnncheck.audit({"train": CountingImages(120, random_shift=True)}, select="input-fidelity",
                           image_size=(16, 16))
    assert any("transform is random" in n for n in first.data["notes"])
    assert json.loads(first.to_json())["checks"][0]["metrics"] == json.loads(again.to_json())["checks"][0]["metrics"]
    state = random.getstate()
    DatasetImages(CountingImages(10, random_shift=True), np.arange(10), 3, np.uint8, "x|train")[3]
    assert random.getstate() == state  # reading leaves the global stream where it was


@pytest.mark.parametrize("workers", [1, 2])
def test_an_item_that_fails_is_named_with_the_users_frame(workers):
    data = CountingImages(200, fail_at=150)
    with pytest.raises(UserError, match=r"reading item 150 of 'train' raised OSError at "
                                        r"test_stream_dataset.py:\d+ in __getitem__: disk error at 150"):
        from dnncheck.data.items import describe_split

        describe_split(data, "python:t|train", workers, 3)


def test_the_cli_exits_2_on_a_failing_item(tmp_path, monkeypatch):
    (tmp_path / "failing_source.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_stream_dataset import CountingImages\n"
        "def splits():\n    return {'train': CountingImages(200, fail_at=150)}\n" % str(__import__("pathlib").Path(__file__).parent))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(app, ["audit", "python:failing_source:splits", "--select", "input-fidelity", "--quiet"])
    assert result.exit_code == 2 and "reading item 150 of 'train'" in result.output


def test_a_split_mixing_images_and_rows_is_one_clear_error():
    from dnncheck.data.items import describe_split

    class Mixed:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return (np.zeros((8, 8, 3), np.uint8) if i < 5 else np.zeros(4)), i % 2

    with pytest.raises(UserError, match=r"python:t: item 5 of 'train' is a 1-D row but item 0 is not"):
        describe_split(Mixed(), "python:t|train", 1, 3)


class TransformedImages(CountingImages):
    """CountingImages with a torchvision-style `transform` attribute applied to each image."""

    def __init__(self, n: int, transform=None):
        super().__init__(n)
        self.transform = transform

    def __getitem__(self, i):
        image, label = super().__getitem__(i)
        return (image if self.transform is None else self.transform(image)), label


def random_roll(image):  # an augmentation drawn from the global stream, as torchvision's are
    return np.roll(image, random.randint(1, 3), axis=1)


def unchanged(image):
    return image


def test_eval_transform_audits_a_fixed_view_and_leaves_the_users_dataset_alone():
    """[data] eval_transform replaces the Dataset's `transform` in a copy: the audit reads unaugmented
    images (identical to a Dataset built with the eval transform), says the training transform is
    random, and the user's object keeps its own transform."""
    import torch

    train = TransformedImages(120, transform=random_roll)
    audited = dnncheck.audit({"train": torch.utils.data.Subset(train, range(100))}, select="input-fidelity",
                             image_size=(16, 16), eval_transform=unchanged)
    plain = dnncheck.audit({"train": torch.utils.data.Subset(TransformedImages(120), range(100))},
                           select="input-fidelity", image_size=(16, 16))
    assert train.transform is random_roll  # the user's Dataset is untouched
    notes = audited.data["notes"]
    assert any("audited through [data] eval_transform" in n for n in notes)
    assert any("transform is random (augmentation): audited through [data] eval_transform instead" in n for n in notes)
    metrics = lambda r: json.loads(r.to_json())["checks"][0]["metrics"]  # noqa: E731
    assert metrics(audited) == metrics(plain)  # the fixed view, not a draw of the augmentation


def test_eval_transform_refusals_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"eval_transform: CountingImages has no `transform` attribute to replace"):
        dnncheck.audit({"train": CountingImages(50)}, select="input-fidelity", eval_transform=unchanged)
    with pytest.raises(UserError, match=r"eval_transform: expected a callable transform"):
        dnncheck.audit({"train": CountingImages(50)}, select="input-fidelity", eval_transform=3)
    config = tmp_path / "dnncheck.toml"
    config.write_text('[data]\nsource = "sklearn:digits"\neval_transform = "os:sep"\n')
    result = CliRunner().invoke(app, ["audit", str(config), "--quiet"])
    assert result.exit_code == 2 and "eval_transform: applies to python: sources" in result.output
