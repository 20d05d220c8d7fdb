"""Shared fixtures: tiny synthetic datasets written to tmp_path, and the shared real data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` two workers share the cores: one thread each for torch, OpenMP and BLAS (set
    # before any of them loads). Two threads each oversubscribed 2 cores, and OpenMP's spinning
    # made the suite several times slower instead of faster.
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_name] = "1"

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_record_cache(tmp_path_factory):
    """The suite never reads or writes the user's record cache: one of its own per run."""
    import os

    old = os.environ.get("DNNCHECK_CACHE_DIR")
    os.environ["DNNCHECK_CACHE_DIR"] = str(tmp_path_factory.mktemp("record-cache"))
    yield
    if old is None:
        os.environ.pop("DNNCHECK_CACHE_DIR", None)
    else:
        os.environ["DNNCHECK_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch):
    """Audits in the suite do not append to a real GitHub job summary when CI runs on Actions (the
    step-summary test turns this off for itself)."""
    monkeypatch.setenv("DNNCHECK_NO_STEP_SUMMARY", "1")


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real data sits beside the project checkout in CI")
    return path


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path)


def blob_images(n: int, classes: int, size: int = 12, channels: int = 1, seed: int = 0):
    """Images whose class is the position of a bright square: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 40, size=(n, size, size, channels), dtype=np.uint8)
    for i, c in enumerate(y):
        r = (c * 3) % (size - 3)
        x[i, r:r + 3, r:r + 3, :] = 230
    return x, y


@pytest.fixture
def image_folder(tmp_path):
    """root/<split>/<class>/<file>.png with 2 classes, grayscale."""
    def make(splits=("train", "val"), per_class=6, classes=("cat", "dog"), rgb=False):
        root = tmp_path / "folder"
        x, y = blob_images(per_class * len(classes) * len(splits), len(classes), channels=3 if rgb else 1)
        for i, (img, label) in enumerate(zip(x, y)):
            split = splits[(i // len(classes)) % len(splits)]
            parts = (split,) if split else ()
            save_png(root.joinpath(*parts, classes[label], f"img{i:03d}.png"), img if rgb else img[..., 0])
        return root
    return make


@pytest.fixture
def npz_file(tmp_path):
    def make(name="arrays.npz", **arrays):
        path = tmp_path / name
        np.savez(path, **arrays)
        return path
    return make


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a Python module into tmp_path and make it importable (uniquely named per test)."""
    counter = {"n": 0}

    def make(source: str) -> str:
        counter["n"] += 1
        name = f"usermod_{abs(hash(str(tmp_path))) % 10**8}_{counter['n']}"
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop(name, None)
        return name
    return make


def write_config(tmp_path: Path, text: str, name: str = "dnncheck.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FAST = """
[train]
batch_size = 64
[probe]
epochs = 3
"""
