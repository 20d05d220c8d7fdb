"""pixel-attack (DNC10): the tutorial's mark and a minority single pixel are found and located;
clean data reports no shortcut; the probes run within the budget."""

from __future__ import annotations

import numpy as np

from conftest import blob_images, shared_data
from dnncheck.checks.pixel_attack import PixelAttack
from dnncheck.config import AuditConfig
from dnncheck.context import Context
from dnncheck.results import Status
from dnncheck.runner import run_check
from helpers import messages, run_one


def _digits(tmp_path, mark=None):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    y = d.target
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    xt, yt = x[:1200].copy(), y[:1200]
    if mark:
        mark(xt, yt)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=xt, y_train=yt, x_val=x[1200:1500], y_val=y[1200:1500], x_test=x[1500:], y_test=y[1500:])
    return path


def _shortcuts(result):
    return [f.evidence for f in result.findings if "pixels" in f.evidence]


def test_the_tutorials_two_pixel_mark_is_found_and_located(tmp_path):
    def mark(x, y):
        x[y == 3, 7, 0], x[y == 3, 7, 1] = 255, 0

    result = run_one(PixelAttack(probes=False), source=str(_digits(tmp_path, mark)))
    assert result.status is Status.FAIL
    (found,) = _shortcuts(result)
    assert found["class"] == "3" and [7, 0] in found["pixels"]
    # every 3 carries it; a stray natural ink pixel of another digit may sit there too
    assert found["share_of_class"] == 1.0 and found["share_of_other_classes"] < 0.01


def test_a_single_pixel_on_a_tenth_of_one_class_is_found(tmp_path):
    def mark(x, y):
        fives = np.flatnonzero(y == 5)
        x[np.random.default_rng(1).choice(fives, len(fives) // 10, replace=False), 0, 7] = 255

    result = run_one(PixelAttack(probes=False), source=str(_digits(tmp_path, mark)))
    (found,) = _shortcuts(result)
    assert found["class"] == "5" and found["pixels"] == [[0, 7]]
    assert 0.05 < found["share_of_class"] < 0.15


def test_clean_digits_report_no_shortcut_and_the_probes_do_their_planned_work(tmp_path):
    cfg = AuditConfig(source=str(_digits(tmp_path)), model="mlp", epochs=5)
    ctx = Context(cfg)
    ctx.prepare()
    ctx.plan_probes([PixelAttack()])
    result = run_check(PixelAttack(), ctx)
    assert not _shortcuts(result), messages(result)
    assert 0 <= result.metrics["trigger_attack_success"] <= 1 and 0 <= result.metrics["one_pixel_flip_rate"] <= 1
    probes = {p["name"]: p for p in ctx.plan_record()["probes"]}
    assert set(probes) == {"fit", "pixel-trigger"}
    assert all(p["ran"] and not p["cut_short"] and p["steps_done"] == p["steps"] for p in probes.values())


def test_rgb_mark_is_found(tmp_path):
    x, y = blob_images(120, 2, size=16, channels=3)
    x[y == 1, 0, 0] = (255, 0, 0)
    x[y == 1, 0, 1] = (0, 255, 0)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=x, y_train=y)
    (found,) = _shortcuts(run_one(PixelAttack(probes=False), source=str(path)))
    assert found["class"] == "1" and {tuple(p) for p in found["pixels"]} >= {(0, 0), (0, 1)}


def _property_shortcuts(result):
    return [f.evidence for f in result.findings if "property" in f.evidence]


def test_clean_mnist_has_no_pixel_or_property_shortcut(tmp_path):
    data = np.load(shared_data("mnist5k.npz"))
    path = tmp_path / "m.npz"
    np.savez(path, x_train=data["x"], y_train=data["y"])
    result = run_one(PixelAttack(probes=False), source=str(path))
    assert not _shortcuts(result) and not _property_shortcuts(result), messages(result)
    # digit 1 has the least ink (brightness ROC AUC ~0.92): real class signal, below property_auc_warn
    assert result.status is Status.PASS and 0.1 < result.metrics["property_balanced_accuracy"] < 0.5


def test_a_darker_mnist_class_is_an_image_property_shortcut(tmp_path):
    """Real MNIST with every 3 exported at 80% intensity (another pipeline for one class)."""
    data = np.load(shared_data("mnist5k.npz"))
    x, y = data["x"].copy(), data["y"]
    x[y == 3] = (x[y == 3] * 0.8).astype(np.uint8)
    path = tmp_path / "dark.npz"
    np.savez(path, x_train=x, y_train=y)
    result = run_one(PixelAttack(probes=False), source=str(path))
    (found,) = _property_shortcuts(result)
    assert result.status is Status.FAIL and found["class"] == "3" and found["direction"] == "lower"
    assert found["property"] == "brightest value" and "property_3" in result.figures
    assert result.summary.startswith("image-property shortcut for class 3: 3 images are darker than the other classes")
    assert "mean brightness, 0-1: median" in result.summary  # what people see, beside the cleaner statistic


def test_bees_saved_as_png_are_a_format_shortcut_and_the_real_folder_has_none(tmp_path):
    """The real ant/bee photos, once as they are and once with every bee re-saved as PNG."""
    from PIL import Image

    root = shared_data("hymenoptera")
    clean = run_one(PixelAttack(probes=False), source=str(root), image_size=(32, 32))
    assert not _property_shortcuts(clean) and clean.status is Status.PASS, messages(clean)
    planted = tmp_path / "hym"
    for photo in root.rglob("*.jpg"):
        target = planted / photo.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if photo.parent.name == "bees":
            with Image.open(photo) as im:
                im.convert("RGB").save(target.with_suffix(".png"), compress_level=1)
        else:
            target.write_bytes(photo.read_bytes())
    result = run_one(PixelAttack(probes=False), source=str(planted), image_size=(32, 32))
    found = _property_shortcuts(result)
    # one finding, about the class that holds the rarer format: "'format is .png' holds for 100% of bees images"
    assert result.status is Status.FAIL and len(found) == 1 and found[0]["class"] == "bees"
    assert found[0]["property"] == "format is .png" and found[0]["roc_auc"] == 1.0


def test_tables_are_skipped(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "t.csv").write_text("a,label\n" + "\n".join(f"{rng.normal()},{i % 2}" for i in range(40)))
    assert run_one(PixelAttack(), source=str(tmp_path / "t.csv")).status is Status.SKIP


def test_a_class_stored_in_greyscale_among_colour_images_is_greyer(tmp_path):
    # its channel shares sit at 1/3, inside the colour class's range: only colourfulness tells it
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    grey = np.repeat(rng.integers(0, 256, (60, 16, 16, 1), dtype=np.uint8), 3, axis=3)
    np.savez(tmp_path / "g.npz", x_train=np.concatenate([colour, grey]), y_train=np.repeat([0, 1], 60))
    result = run_one(PixelAttack(probes=False), source=str(tmp_path / "g.npz"))
    (found,) = _property_shortcuts(result)
    assert found["class"] == "1" and found["property"] == "colourfulness" and found["direction"] == "lower"
    assert "1 images are greyer than 0 images" in result.summary
