"""Segmentation masks and multi-label rows (issue 27): loading, and each adapted check on digits with
one planted defect at a time, beside the clean case that must not be flagged."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import taskdata as T
from conftest import shared_data
from dnncheck.checks.imbalance import Imbalance
from dnncheck.checks.input_fidelity import InputFidelity
from dnncheck.checks.label_noise import LabelNoise
from dnncheck.checks.loss_sanity import LossSanity
from dnncheck.config import AuditConfig
from dnncheck.data import load_dataset
from dnncheck.errors import UserError
from dnncheck.results import Status
from helpers import messages, run_one


@pytest.fixture(scope="module")
def digits():
    return T.digits_uint8()


def _save(tmp_path, arrays, name="data.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _seg(tmp_path, digits, defect=None):
    return _save(tmp_path, T.segmentation_arrays(*digits, 1200, 400, defect))


def _multi(tmp_path, digits, defect=None):
    return _save(tmp_path, T.multilabel_arrays(*digits, 1200, 400, defect))


# -- loading ------------------------------------------------------------------------------------
def test_masks_make_a_segmentation_dataset_with_class_ids_per_pixel(tmp_path, digits):
    ds = load_dataset(AuditConfig(source=_seg(tmp_path, digits)))
    assert ds.task == "segmentation" and ds.classes == [str(i) for i in range(11)]
    assert ds.splits["train"].y.shape == (1200 - len(ds.splits["test"]), 24, 24)
    assert ds.summary()["task"] == "segmentation"


def test_masks_stored_as_0_255_are_read_as_two_classes_and_the_mapping_said(tmp_path, digits):
    ds = load_dataset(AuditConfig(source=_seg(tmp_path, digits, "255")))
    assert ds.classes == ["0", "255"] and set(np.unique(ds.splits["train"].y)) == {0, 1}
    assert any("255 -> 1" in note for note in ds.notes)


def test_colour_map_masks_get_one_class_per_colour(tmp_path, digits):
    arrays = T.segmentation_arrays(*digits, 300, 100)
    palette = np.array([[0, 0, 0]] + [[20 * k, 255 - 20 * k, 7 * k] for k in range(1, 11)], dtype=np.uint8)
    arrays["mask_train"], arrays["mask_val"] = palette[arrays["mask_train"]], palette[arrays["mask_val"]]
    ds = load_dataset(AuditConfig(source=_save(tmp_path, arrays)))
    assert ds.mask_facts.colour_map and len(ds.classes) == 11 and ds.classes[0] == "#000000"


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.update(mask_train=a["mask_train"][:, :20]), "a mask needs one class id per image pixel"),
    (lambda a: a.update(mask_train=a["mask_train"][:-1]), "x_train has 300 samples but mask_train has 299"),
    (lambda a: a.pop("mask_val"), "has x_val but no mask_val"),
    (lambda a: a.update(mask_train=a["mask_train"].astype(np.float32) * np.nan), "NaN or Inf"),
    (lambda a: a.update(mask_train=np.zeros_like(a["mask_train"]), mask_val=np.zeros_like(a["mask_val"])),
     "at least two classes"),
])
def test_bad_masks_are_refused_with_one_line_naming_the_array(tmp_path, digits, change, expected):
    arrays = T.segmentation_arrays(*digits, 300, 100)
    change(arrays)
    with pytest.raises(UserError, match=expected):
        load_dataset(AuditConfig(source=_save(tmp_path, arrays)))


def test_multi_hot_rows_are_multilabel_and_one_hot_rows_stay_refused(tmp_path, digits):
    ds = load_dataset(AuditConfig(source=_multi(tmp_path, digits)))
    assert ds.task == "multilabel" and ds.splits["train"].y.shape[1] == 10
    x, y = digits
    one_hot = np.eye(10, dtype=np.uint8)[y]
    path = _save(tmp_path, {"x_train": x, "y_train": one_hot}, "onehot.npz")
    with pytest.raises(UserError, match="looks one-hot"):
        load_dataset(AuditConfig(source=path))
    ds = load_dataset(AuditConfig(source=path, task="multilabel"))
    assert ds.task == "multilabel"


def test_a_task_the_source_cannot_hold_is_refused(tmp_path, digits, image_folder):
    with pytest.raises(UserError, match="segmentation masks are read from an .npz with mask_<split>"):
        load_dataset(AuditConfig(source=str(image_folder()), task="segmentation"))
    with pytest.raises(UserError, match="holds mask_<split> arrays but"):
        load_dataset(AuditConfig(source=_seg(tmp_path, digits), task="classification"))


def test_the_task_key_is_validated_with_the_valid_values(tmp_path):
    from dnncheck.config import build_config
    from conftest import write_config

    path = write_config(tmp_path, '[data]\nsource = "sklearn:digits"\ntask = "detection"\n')
    with pytest.raises(UserError, match="data.task = 'detection' is not valid; expected one of classification"):
        build_config(str(path), {})


# -- input-fidelity ------------------------------------------------------------------------------
def test_clean_digit_masks_pass_input_fidelity(tmp_path, digits):
    result = run_one(InputFidelity(), source=_seg(tmp_path, digits))
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["mask_offset"]["val"] == [0, 0]


@pytest.mark.parametrize("defect, expected", [
    ("255", "masks hold 0 and 255, not class ids 0 and 1"),
    ("shift", "val's masks sit 4 px right of their images' edges"),
    ("bilinear", "hold an id between their neighbours' ids"),
])
def test_each_planted_mask_defect_fails_input_fidelity_naming_it(tmp_path, digits, defect, expected):
    result = run_one(InputFidelity(), source=_seg(tmp_path, digits, defect))
    assert result.status is Status.FAIL
    assert expected in messages(result)


def test_thin_classes_lost_at_the_model_size_are_named(tmp_path, digits):
    result = run_one(InputFidelity(), source=_seg(tmp_path, digits, "thin"), image_size=(6, 6))
    assert result.status is Status.WARN
    assert "resizing masks to 6x6 loses thin classes (11: 100% of its pixels, gone from" in messages(result)
    assert "lost_share" in str(result.findings[0].evidence) and "'0'" not in str(result.findings[0].evidence)


def test_the_montage_tints_masks_over_their_images(tmp_path, digits):
    result = run_one(InputFidelity(), source=_seg(tmp_path, digits))
    grid = result.figures["montage"]
    assert grid.images.shape[-1] == 3 and "Masks over their images" in grid.title
    assert all(caption for caption in grid.captions)


# -- imbalance ----------------------------------------------------------------------------------
def test_segmentation_imbalance_leaves_the_background_out_and_fails_on_a_class_train_lacks(tmp_path, digits):
    clean = run_one(Imbalance(), source=_seg(tmp_path, digits))
    assert clean.status is Status.PASS, messages(clean)
    assert clean.metrics["ratio_leaves_out"] == ["0"] and clean.metrics["imbalance_ratio"] < 3
    absent = run_one(Imbalance(), source=_save(tmp_path, T.segmentation_arrays(*digits, 1200, 400, "absent"), "a.npz"),
                     **FAST)  # the coverage finding needs no trained probe
    assert absent.status is Status.FAIL and "val has classes that train lacks: 4" in messages(absent)


def test_multilabel_imbalance_finds_a_label_train_lacks_and_labels_always_together(tmp_path, digits):
    assert run_one(Imbalance(), source=_multi(tmp_path, digits)).status is Status.PASS
    absent = run_one(Imbalance(), source=_save(tmp_path, T.multilabel_arrays(*digits, 1200, 400, "absent"), "a.npz"))
    assert absent.status is Status.FAIL and "val has classes that train lacks: 3" in messages(absent)
    arrays = T.multilabel_arrays(*digits, 1200, 400)
    for split in ("train", "val"):
        arrays[f"y_{split}"][:, 9] = arrays[f"y_{split}"][:, 8]  # label 9 copies label 8
    twins = run_one(Imbalance(), source=_save(tmp_path, arrays, "twins.npz"))
    assert twins.status is Status.WARN and "8 & 9 (100%)" in messages(twins)


# -- loss-sanity --------------------------------------------------------------------------------
SEG_MODELS = '''
import torch
from torch import nn


class Wrong(nn.Module):
    def __init__(self, in_channels, num_classes, dim=2, channels=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels or num_classes, 3, padding=1)
        self.dim = dim

    def forward(self, x):
        return torch.softmax(self.conv(x), dim=self.dim)


def softmax_over_height(num_classes, in_channels):
    return Wrong(in_channels, num_classes, dim=2)


def too_few_channels(num_classes, in_channels):
    return nn.Conv2d(in_channels, 2, 3, padding=1)


def shrinks(num_classes, in_channels):
    return nn.Conv2d(in_channels, num_classes, 3, stride=2, padding=1)


def per_pixel(num_classes, in_channels):  # a 1x1 convolution: sees ink, never which digit it is
    return nn.Conv2d(in_channels, num_classes, 1)


def softmax_head(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes),
                         nn.Softmax(dim=1))
'''
FAST = {"epochs": 2, "max_train_samples": 400}


@pytest.mark.parametrize("factory, expected", [
    ("softmax_over_height", "softmax over dimension 2 (the height), not over the classes"),
    ("too_few_channels", "the model outputs 2 channel(s) but the masks hold 11 classes"),
    ("shrinks", "the model's score maps are 12x12 but the masks are 24x24"),
])
def test_segmentation_models_with_a_wrong_head_fail_loss_sanity(tmp_path, digits, user_module, factory, expected):
    module = user_module(SEG_MODELS)
    result = run_one(LossSanity(), source=_seg(tmp_path, digits), model=f"{module}:{factory}", **FAST)
    assert result.status is Status.FAIL and expected in messages(result)


def test_the_built_in_segmentation_net_passes_loss_sanity_near_ln_c(tmp_path, digits):
    result = run_one(LossSanity(), source=_seg(tmp_path, digits), **FAST)
    assert result.status is Status.PASS, messages(result)
    assert result.metrics["output_shape"] == [11, 24, 24]
    assert abs(result.metrics["initial_loss"] - np.log(11)) < 0.5 * np.log(11)
    assert result.metrics["probe_final_loss"] < result.metrics["probe_initial_loss"]


def test_pixel_accuracy_on_background_dominated_masks_is_named_misleading(tmp_path, digits):
    result = run_one(LossSanity(), source=_seg(tmp_path, digits), metric="accuracy", **FAST)
    assert result.status is Status.WARN and "where class 0 covers" in messages(result)


# -- overfit ------------------------------------------------------------------------------------
def test_the_built_in_segmentation_net_memorises_a_batch_of_masks_and_a_1x1_convolution_cannot(tmp_path, digits,
                                                                                                user_module):
    from dnncheck.checks.overfit import Overfit

    source = _seg(tmp_path, digits)
    fits = run_one(Overfit(), source=source, **FAST)
    assert fits.status is Status.PASS, messages(fits)
    assert fits.metrics["batch_samples"] == 4 and fits.metrics["batch_final_pixel_error"] <= \
        0.5 * fits.metrics["batch_baseline_pixel_error"]
    blind = run_one(Overfit(), source=source, model=f"{user_module(SEG_MODELS)}:per_pixel", **FAST)
    assert blind.status is Status.FAIL and "cannot overfit one batch of 4 masks" in messages(blind)


def test_multilabel_softmax_head_with_bce_fails_and_logits_with_bce_pass(tmp_path, digits, user_module):
    module = user_module(SEG_MODELS)
    source = _multi(tmp_path, digits)
    bad = run_one(LossSanity(), source=source, model=f"{module}:softmax_head", **FAST)
    assert bad.status is Status.FAIL and "a softmax head with binary cross-entropy" in messages(bad)
    good = run_one(LossSanity(), source=source, model="smallcnn", **FAST)
    assert good.status is Status.PASS, messages(good)
    assert good.metrics["loss"] == "bce" and abs(good.metrics["initial_loss"] - np.log(2)) < 0.2


def test_multi_class_cross_entropy_on_multilabel_targets_fails(tmp_path, digits):
    result = run_one(LossSanity(), source=_multi(tmp_path, digits), loss="cross_entropy", **FAST)
    assert result.status is Status.FAIL and "makes the labels compete" in messages(result)


def _manifest(tmp_path, rows: list[str], header: str) -> str:
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def test_a_manifest_with_mask_path_is_segmentation_and_reads_the_masks(tmp_path, digits):
    arrays = T.segmentation_arrays(*digits, 60, 20)
    T.write_mask_folder(tmp_path, arrays)
    rows = [f"{s}/images/{i:05d}.png,{s}/masks/{i:05d}.png,{s}" for s, n in (("train", 60), ("val", 20))
            for i in range(n)]
    ds = load_dataset(AuditConfig(source=_manifest(tmp_path, rows, "path,mask_path,split")))
    assert ds.task == "segmentation" and ds.splits["val"].ids[0] == "val/images/00000.png"
    assert np.array_equal(ds.splits["val"].y, arrays["mask_val"])
    rows[3] = rows[3].replace("masks/00003.png", "masks/gone.png")
    with pytest.raises(UserError, match="mask file.*do not exist.*gone.png"):
        load_dataset(AuditConfig(source=_manifest(tmp_path, rows, "path,mask_path,split")))


def test_a_manifest_with_a_labels_column_is_multilabel_with_one_column_per_name(tmp_path, digits):
    from PIL import Image

    x, _ = digits
    rows = []
    for i, tags in enumerate(["cat|dog", "dog", "", "cat| bird"] * 10):
        Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{tags}")
    ds = load_dataset(AuditConfig(source=_manifest(tmp_path, rows, "path,labels")))
    assert ds.task == "multilabel" and ds.classes == ["bird", "cat", "dog"]
    by_id = dict(zip(ds.splits["train"].ids + ds.splits["test"].ids + ds.splits["val"].ids,
                     np.concatenate([ds.splits[s].y for s in ("train", "test", "val")])))
    assert by_id["0.png"].tolist() == [0, 1, 1] and by_id["2.png"].tolist() == [0, 0, 0]
    assert by_id["3.png"].tolist() == [1, 1, 0]
    with pytest.raises(UserError, match="path and one of label"):
        load_dataset(AuditConfig(source=_manifest(tmp_path, [r + ",x" for r in rows], "path,labels,label")))


# -- label-noise on masks ------------------------------------------------------------------------
def test_masks_painted_with_another_digits_class_are_found_and_clean_masks_pass(tmp_path, digits):
    # the SVM alone (probe = false) on one digit per mask; the two-digit test below runs the probe
    clean = run_one(LabelNoise(probe=False), source=_seg(tmp_path, digits), **FAST)
    assert clean.status is Status.PASS, messages(clean)
    assert clean.metrics["one_label_per_mask"] and clean.metrics["unit"] == "masks"
    assert clean.metrics["labels"] == [str(k) for k in range(1, 11)]  # background (class 0) left out
    relabelled = run_one(LabelNoise(probe=False), source=_save(tmp_path, T.segmentation_arrays(*digits, 1200, 400,
                                                                                                 "relabel"), "bad.npz"),
                         **FAST)
    assert relabelled.status is Status.FAIL and relabelled.metrics["estimated_noise_rate"] > 0.05, messages(relabelled)
    assert "training masks hold classes the estimators do not see" in messages(relabelled)


def test_masks_holding_two_objects_use_the_multi_label_filter_and_find_a_repainted_digit(tmp_path):
    small = T.digits_uint8(12)  # pairs at 12x24 px: the four probes cost a third of what 24 px would
    clean = run_one(LabelNoise(), source=_save(tmp_path, T.two_digit_masks(*small, 1200, 400)), epochs=2)
    assert clean.status is Status.PASS and not clean.metrics["one_label_per_mask"], messages(clean)
    assert "probe" in clean.metrics["estimators"] and "masks the probe agrees with least" in messages(clean)
    repainted = run_one(LabelNoise(), source=_save(tmp_path, T.two_digit_masks(*small, 1200, 400, relabel=True),
                                                    "bad.npz"), epochs=2)
    assert repainted.status is Status.FAIL, messages(repainted)


# -- the checks not adapted yet ------------------------------------------------------------------
def test_a_check_not_adapted_to_the_task_is_skipped_saying_so(tmp_path, digits):
    from dnncheck.checks.separability import Separability

    result = run_one(Separability(), source=_seg(tmp_path, digits))
    assert result.status is Status.SKIP and "not adapted to segmentation data yet" in result.summary


def test_a_default_audit_of_masks_runs_every_check_without_an_error(tmp_path):
    out = tmp_path / "r.json"
    source = _save(tmp_path, T.segmentation_arrays(*T.digits_uint8(16), 800, 300))  # every probe at a third the cost
    proc = subprocess.run([sys.executable, "-m", "dnncheck", "audit", source, "--quiet", "--json",
                           str(out), "--budget", "30"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    checks = json.loads(out.read_text())["checks"]
    assert not [c["slug"] for c in checks if c["status"] == "error"]
    statuses = {c["slug"]: c["status"] for c in checks}
    # neither reads a probe under this budget (label-noise's is compact: the SVM alone on masks), so no
    # load can make them inconclusive; the probes' checks are judged by their own tests without a guard
    assert statuses["input-fidelity"] == "pass" and statuses["label-noise"] == "pass", statuses


def test_real_mnist_masks_pass_input_fidelity_and_imbalance(tmp_path):
    x, y = T.mnist(shared_data("mnist5k.npz"))
    source = _save(tmp_path, T.segmentation_arrays(x, y, 2000, 600))
    for check in (InputFidelity(), Imbalance()):
        result = run_one(check, source=source)
        assert result.status is Status.PASS, messages(result)


# -- split-leakage ------------------------------------------------------------------------------
def test_images_copied_across_splits_leak_and_a_copy_with_another_mask_is_a_conflict(tmp_path, digits):
    from dnncheck.checks.split_leakage import SplitLeakage

    # digits hold a few genuine near copies (enlarged, the search sees them): their masks differ as
    # the images do, which is no label conflict
    clean = run_one(SplitLeakage(), source=_seg(tmp_path, digits))
    assert clean.status is not Status.FAIL and "carry different labels" not in messages(clean), messages(clean)
    arrays = T.segmentation_arrays(*digits, 1200, 400)
    arrays["x_val"][:30] = arrays["x_train"][:30]
    arrays["mask_val"][:30] = arrays["mask_train"][:30]
    arrays["mask_val"][0] = 0  # one copy annotated differently: its mask is empty
    arrays["mask_val"][0, 0, 0] = 1
    leaked = run_one(SplitLeakage(), source=_save(tmp_path, arrays, "leak.npz"))
    assert leaked.status is Status.FAIL
    text = messages(leaked)
    assert "30 of 400 val samples" in text or "across splits" in text
    conflict = next(f for f in leaked.findings if "carry different labels" in f.message)
    assert conflict.evidence["pairs"][0]["label_a"].startswith("mask ") and "val:0" in conflict.samples


# -- segmentation folders -----------------------------------------------------------------------
def test_a_folder_of_images_and_palette_masks_is_read_as_segmentation(tmp_path, digits):
    root = tmp_path / "seg"
    T.write_mask_folder(root, T.segmentation_arrays(*digits, 300, 100), palette=True)
    ds = load_dataset(AuditConfig(source=str(root)))
    assert ds.task == "segmentation" and ds.classes == [str(i) for i in range(11)]
    assert set(ds.splits) == {"train", "val", "test"} and ds.splits["val"].y.shape[1:] == (24, 24)
    assert ds.splits["train"].ids[0].startswith("train/images/")
    result = run_one(InputFidelity(), source=str(root))
    assert result.status is Status.PASS, messages(result)


def test_an_image_without_its_mask_is_refused_naming_it(tmp_path, digits):
    root = tmp_path / "seg"
    T.write_mask_folder(root, T.segmentation_arrays(*digits, 60, 20))
    (root / "val" / "masks" / "00003.png").unlink()
    with pytest.raises(UserError, match=r"1 image\(s\) have no mask of the same name under masks/ \(val/images/00003.png\)"):
        load_dataset(AuditConfig(source=str(root)))


def test_a_mask_stored_at_another_size_than_its_image_fails_input_fidelity(tmp_path, digits):
    from PIL import Image

    root = tmp_path / "seg"
    T.write_mask_folder(root, T.segmentation_arrays(*digits, 300, 100))
    path = root / "train" / "masks" / "00007.png"
    Image.open(path).resize((12, 12), Image.NEAREST).save(path)
    result = run_one(InputFidelity(), source=str(root))
    assert result.status is Status.FAIL
    assert "1 mask(s) are stored at another size than their image (e.g. 12x12 vs 24x24)" in messages(result)
    assert "train/images/00007.png" in result.findings[0].samples


# -- label-noise on label sets ------------------------------------------------------------------
def test_one_labels_flipped_bits_are_found_by_label_noise_and_clean_label_sets_pass(tmp_path, digits):
    # the SVM per label alone (no probes: the suite's budget); the model's probes join it in an audit,
    # measured on MNIST pairs in the README
    def pairs(defect=None):
        return _save(tmp_path, T.multilabel_arrays(*digits, 700, 100, defect), f"{defect}.npz")

    clean = run_one(LabelNoise(probe=False), source=pairs())
    assert clean.status is Status.PASS, messages(clean)
    assert clean.metrics["unit"] == "label bits" and clean.metrics["estimators"] == ["svm"]
    flipped = run_one(LabelNoise(probe=False), source=pairs("flip3"))  # 3% of the bits: 5.6% estimated
    assert flipped.status in (Status.WARN, Status.FAIL), messages(flipped)
    assert flipped.metrics["estimated_noise_rate"] > 0.02
    assert "most suspect bits on labels 3" in messages(flipped)
