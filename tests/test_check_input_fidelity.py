"""input-fidelity (DNC1): planted unreadable, blank, non-finite and shrunk inputs; clean data passes."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from conftest import save_png, shared_data
from dnncheck.checks.input_fidelity import InputFidelity
from dnncheck.cli import app
from dnncheck.results import Status
from helpers import messages, run_one


def _digits_upscaled(tmp_path, factor=4):
    """scikit-learn digits blown up to 32x32 (nearest), saved as an npz."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(np.round(d.images * 255 / 16).astype(np.uint8), np.ones((factor, factor), dtype=np.uint8))
    path = tmp_path / "digits32.npz"
    np.savez(path, x_train=x, y_train=d.target)
    return path


def test_clean_folder_passes(image_folder):
    result = run_one(InputFidelity(), source=str(image_folder(splits=("train", "val"), per_class=8)))
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["unreadable"] == 0 and result.metrics["constant_images"] == 0
    montage = result.figures["montage"]
    assert len(montage.ids) == 8 and montage.images.dtype == np.uint8 and montage.title.startswith("What the model")


def test_broken_files_are_named_and_the_audit_goes_on(image_folder, tmp_path):
    root = image_folder(splits=("train", "val"), per_class=8)
    (root / "train" / "cat" / "empty.png").write_bytes(b"")
    (root / "train" / "cat" / "text.jpg").write_text("not an image")
    good = next((root / "train" / "dog").glob("*.png")).read_bytes()
    (root / "train" / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    save_png(root / "train" / "dog" / "black.png", np.zeros((12, 12), dtype=np.uint8))
    result = run_one(InputFidelity(), source=str(root))
    assert result.status is Status.FAIL
    unreadable = next(f for f in result.findings if "cannot be decoded" in f.message)
    assert set(unreadable.samples) == {"train/cat/empty.png", "train/cat/text.jpg", "train/dog/truncated.png"}
    blank = next(f for f in result.findings if "single flat value" in f.message)
    assert blank.samples == ("train/dog/black.png",)


def test_non_finite_values_fail(tmp_path):
    x = np.random.default_rng(0).random((40, 1, 6, 6)).astype(np.float32)
    x[3, 0, 2, 2] = np.nan
    x[7, 0, 0, 0] = np.inf
    path = tmp_path / "f.npz"
    np.savez(path, x_train=x, y_train=np.arange(40) % 2)
    result = run_one(InputFidelity(), source=str(path), seed=0)
    assert result.status is Status.FAIL
    finding = next(f for f in result.findings if "NaN or Inf" in f.message)
    assert len(finding.samples) == 2


def test_near_constant_images_warn(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 10, 10), dtype=np.uint8)
    x[5] = 100
    x[5, 0, 0] = 101  # almost flat
    path = tmp_path / "n.npz"
    np.savez(path, x_train=x, y_train=np.arange(60) % 2)
    result = run_one(InputFidelity(), source=str(path))
    assert result.status is Status.WARN
    assert any("nearly constant" in f.message for f in result.findings)


def test_squeezing_the_image_too_small_warns_and_a_sensible_size_does_not(tmp_path):
    path = _digits_upscaled(tmp_path)
    tiny = run_one(InputFidelity(), source=str(path), image_size=(2, 2))
    assert tiny.status is Status.WARN and "loses class signal" in messages(tiny)
    assert tiny.metrics["resize_accuracy_drop"] > 0.2
    fine = run_one(InputFidelity(), source=str(path), image_size=(16, 16))
    assert fine.status is Status.PASS, messages(fine)
    assert abs(fine.metrics["resize_accuracy_drop"]) < 0.05


def test_mnist_at_4x4_warns_and_at_native_size_passes(tmp_path):
    data = np.load(shared_data("mnist5k.npz"))
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=data["x"][:2000], y_train=data["y"][:2000])
    assert run_one(InputFidelity(), source=str(path), image_size=(4, 4)).status is Status.WARN
    assert run_one(InputFidelity(), source=str(path)).status is Status.PASS


def test_hymenoptera_with_four_planted_defects(tmp_path):
    root = tmp_path / "hym"
    shutil.copytree(shared_data("hymenoptera"), root)
    ants = root / "train" / "ants"
    first = sorted(ants.glob("*.jpg"))[0].read_bytes()
    (ants / "truncated.jpg").write_bytes(first[: len(first) // 3])
    (ants / "empty.jpg").write_bytes(b"")
    (ants / "notes.jpg").write_text("a text file named .jpg")
    save_png(ants / "black.png", np.zeros((375, 500, 3), dtype=np.uint8))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["audit", str(root), "--select", "DNC1", "--quiet", "--json", str(out)])
    assert result.exit_code == 1, result.stderr
    check = json.loads(out.read_text())["checks"][0]
    named = {s for f in check["findings"] for s in f["samples"]}
    assert {"train/ants/truncated.jpg", "train/ants/empty.jpg", "train/ants/notes.jpg", "train/ants/black.png"} <= named


def test_a_folders_input_fidelity_audit_never_imports_torch(tmp_path):
    """torch's import alone is about 480 MB resident: an audit of data-only checks does without it
    (the model is not built, files are resized in the workers, the environment names torch's version
    from its metadata). torchvision's image extensions are written out for the same reason: they agree."""
    import os
    import subprocess
    import sys

    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from dnncheck.data.folder import TORCHVISION_EXTENSIONS

    assert TORCHVISION_EXTENSIONS == tuple(IMG_EXTENSIONS)
    rng = np.random.default_rng(0)
    for k in range(12):
        folder = tmp_path / "data" / f"c{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    code = ("import sys, json\n"
            "from dnncheck.api import audit\n"
            f"result = audit({str(tmp_path / 'data')!r}, select=['input-fidelity'])\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'status': result.checks[0].status.value}))\n")
    env = {**os.environ, "DNNCHECK_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said["torch"] is False and said["status"] in ("pass", "warn"), said
