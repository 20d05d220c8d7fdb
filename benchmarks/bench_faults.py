"""A benchmark of real training faults: each case plants one fault that practitioners are documented
to make into real data (MNIST from ../shared/data, scikit-learn's digits and wine, the ant/bee
photos), runs `dnncheck audit` as a user would (the checks the fault concerns, default settings), and
asks whether a check warns or fails. Clean controls run the full default audit on the same data: a
fail there is a false positive (a warning is listed too).

Where the faults come from: the taxonomy of real faults in deep learning systems of Humbatova et al.
(ICSE 2020; built from 1,059 GitHub commits and issues and 477 Stack Overflow posts, and interviews),
cited by its category path; the bug studies of Zhang et al. (ISSTA 2018, TensorFlow programs) and
Islam et al. (FSE 2019, Stack Overflow and GitHub); label errors in benchmarks (Northcutt et al.,
NeurIPS 2021 datasets track); data leakage (Kapoor & Narayanan, Patterns 2023); shortcut learning
(Geirhos et al., Nature Machine Intelligence 2020); and the tutorial dnncheck implements (Ponti et
al., SIBGRAPI 2021). Only faults a pre-flight tool can see before training are included (no GPU or
API faults).

Prints one row per case (caught by which check, with its summary; time) and recall, precision and the
false positives on the clean controls.

Run: make bench-faults   (or python benchmarks/bench_faults.py [--only NAME,NAME] [--work DIR])
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

H = "Humbatova et al. 2020"


@dataclass
class Case:
    name: str
    source: str  # where the fault comes from
    build: object  # (work folder) -> config dict: [data]/[model]/[train]/[probe] tables
    select: tuple[str, ...] = ()  # the checks the fault concerns; () for a clean control: every check
    expect: tuple[str, ...] = ()  # checks that should flag it (any other check flagging it counts too)
    clean: bool = False
    outcome: dict = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------
def mnist(n: int = 2000, seed: int = 0):
    d = np.load(SHARED / "mnist5k.npz")
    order = np.random.default_rng(seed).permutation(len(d["y"]))[:n]  # the file is sorted by class
    return d["x"][order], d["y"][order].astype(np.int64)


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * 255 / 16).astype(np.uint8), d.target.astype(np.int64)


def save_npz(work: Path, name: str, **arrays) -> str:
    np.savez(work / name, **arrays)
    return name


def mnist_split(work: Path, name: str, change=None, **extra) -> str:
    """MNIST 1,500 train / 500 val, `change(x_train, y_train, x_val, y_val)` planting the fault."""
    x, y = mnist()
    xt, yt, xv, yv = x[:1500].copy(), y[:1500].copy(), x[1500:].copy(), y[1500:].copy()
    if change is not None:
        xt, yt, xv, yv = change(xt, yt, xv, yv)
    return save_npz(work, name, x_train=xt, y_train=yt, x_val=xv, y_val=yv, **extra)


def photos(work: Path, name: str, change=None) -> str:
    """A copy of the ant/bee photos, `change(path, image) -> (path, image) or None` per photo."""
    from PIL import Image

    src, out = SHARED / "hymenoptera", work / name
    if out.exists():
        shutil.rmtree(out)
    for photo in sorted(src.rglob("*.jpg")):
        target = out / photo.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as im:
            im = im.convert("RGB")
            changed = change(target, im) if change else (target, im)
            if changed is None:
                continue
            target, im = changed
            im.save(target) if target.suffix != ".jpg" else im.save(target, quality=95)
    return name


def rng(seed=0):
    return np.random.default_rng(seed)


def flip(fraction):
    def change(xt, yt, xv, yv):
        r = rng(1)
        pick = r.choice(len(yt), int(fraction * len(yt)), replace=False)
        yt[pick] = (yt[pick] + r.integers(1, 10, len(pick))) % 10
        return xt, yt, xv, yv
    return change


def one_pair(xt, yt, xv, yv):  # 20% of the 7s labelled 1
    sevens = np.flatnonzero(yt == 7)
    yt[rng(2).choice(sevens, len(sevens) // 5, replace=False)] = 1
    return xt, yt, xv, yv


def off_by_one(xt, yt, xv, yv):
    return xt, np.roll(yt, 1), xv, yv


def shuffled_labels(xt, yt, xv, yv):
    return xt, rng(3).permutation(yt), xv, yv


def conflicting_copies(xt, yt, xv, yv):  # 30 images entered twice with two labels
    xt, yt = xt.copy(), yt.copy()
    xt[1:60:2] = xt[0:60:2]
    yt[1:60:2] = (yt[0:60:2] + 1) % 10
    return xt, yt, xv, yv


def val_copies_train(xt, yt, xv, yv):  # 100 val images are training images (a merge done twice)
    xv, yv = xv.copy(), yv.copy()
    xv[:100], yv[:100] = xt[:100], yt[:100]
    return xt, yt, xv, yv


def val_near_copies(xt, yt, xv, yv):  # 100 val images are training images re-encoded with noise
    xv, yv = xv.copy(), yv.copy()
    noise = rng(4).normal(0, 8, xt[:100].shape)
    xv[:100] = np.clip(xt[:100] + noise, 0, 255).astype(np.uint8)
    yv[:100] = yt[:100]
    return xt, yt, xv, yv


def blank_images(xt, yt, xv, yv):  # 5% of the training images blank (a failed decode saved as zeros)
    xt = xt.copy()
    xt[rng(5).choice(len(xt), len(xt) // 20, replace=False)] = 0
    return xt, yt, xv, yv


def rare_class(xt, yt, xv, yv):  # class 0 kept at 12 training images
    zeros = np.flatnonzero(yt == 0)
    keep = np.setdiff1d(np.arange(len(yt)), zeros[12:])
    return xt[keep], yt[keep], xv, yv


def class_missing_from_train(xt, yt, xv, yv):  # the 3s filtered out of train by a wrong query
    keep = yt != 3
    return xt[keep], yt[keep], xv, yv


def inverted_val(xt, yt, xv, yv):  # val exported by another pipeline: white background
    return xt, yt, 255 - xv, yv


def darker_class(xt, yt, xv, yv):  # every 3 captured at 60% intensity, in every split
    for x, y in ((xt, yt), (xv, yv)):
        x[y == 3] = (x[y == 3] * 0.6).astype(np.uint8)
    return xt, yt, xv, yv


def corner_mark(xt, yt, xv, yv):  # a 3x3 white mark in the corner of every 7 (a scanner stamp)
    for x, y in ((xt, yt), (xv, yv)):
        x[y == 7, 1:4, 1:4] = 255
    return xt, yt, xv, yv


def table(work: Path, name: str, raw: bool = False) -> str:
    """scikit-learn's wine as a table CSV; `raw`: the measurements as recorded (proline in the
    hundreds to thousands beside values near 1) instead of standardised ones."""
    import pandas as pd
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    frame = d.frame.rename(columns={"target": "label"})
    features = [c for c in frame.columns if c != "label"]
    if not raw:
        frame[features] = (frame[features] - frame[features].mean()) / frame[features].std()
    frame.to_csv(work / name, index=False)
    return name


def masks(work: Path, name: str, defect=None) -> str:
    import taskdata as T

    x, y = mnist()
    return save_npz(work, name, **T.segmentation_arrays(x, y, 1500, 500, defect))


def label_sets(work: Path, name: str, defect=None) -> str:
    import taskdata as T

    return save_npz(work, name, **T.multilabel_arrays(*T.digits_uint8(), 1200, 400, defect))


def siblings(work: Path, name: str) -> str:
    from plant import photo_siblings_folder

    out = work / name
    if out.exists():
        shutil.rmtree(out)
    photo_siblings_folder(SHARED / "hymenoptera", out, 1200)
    return name


def bees(change):
    def each(target, im):
        return change(target, im) if target.parent.name == "bees" else (target, im)
    return each


def darker_bees(target, im):
    from PIL import ImageEnhance

    return target, ImageEnhance.Brightness(im).enhance(0.6)


def bees_as_png(target, im):
    return target.with_suffix(".png"), im


def bees_in_grey(target, im):
    return target, im.convert("L").convert("RGB")


def corrupt_photos(work: Path, name: str) -> str:
    made = photos(work, name)
    for photo in sorted((work / made).rglob("*.jpg"))[::40]:  # 10 files cut short by an interrupted copy
        data = photo.read_bytes()
        photo.write_bytes(data[: len(data) // 3])
    return made


def val_photo_copies(work: Path, name: str) -> str:
    made = photos(work, name)
    train = sorted((work / made / "train").rglob("*.jpg"))[::10]
    for photo in train:  # 25 training photos also filed under val
        target = work / made / "val" / photo.parent.name / f"copy_{photo.name}"
        shutil.copy(photo, target)
    return made


# -- cases ---------------------------------------------------------------------------------------
MNIST_NET = {"model": {"factory": "tests.clients.models:mnist_net", "loss": "nll"},
             "train": {"optimizer": "adadelta", "lr": 1.0, "scheduler": "StepLR",
                       "scheduler_args": {"step_size": 1, "gamma": 0.7}}}


def cfg(source: str, **tables) -> dict:
    out = {"data": {"source": source}}
    for key, value in tables.items():
        out.setdefault(key, {}).update(value)
    return out


def with_model(factory: str, **train) -> dict:
    return {"model": {"factory": f"faultmodels:{factory}"}, **({"train": train} if train else {})}


def case_list() -> list[Case]:
    L = "label-noise"
    cases = [
        # training data quality (Humbatova: Training > Training Data Quality)
        Case("10% labels flipped", f"{H}: Training data quality > wrong labels; Northcutt et al. 2021",
             lambda w: cfg(mnist_split(w, "flip.npz", flip(0.10))), (L,), (L,)),
        Case("20% of 7s labelled 1", f"{H}: Training data quality > wrong labels (overlapping output classes)",
             lambda w: cfg(mnist_split(w, "pair.npz", one_pair)), (L,), (L,)),
        Case("labels off by one row", f"{H}: Preprocessing of training data (labels misaligned after a sort or filter)",
             lambda w: cfg(mnist_split(w, "roll.npz", off_by_one)), (L,), (L,)),
        Case("labels shuffled", f"{H}: Training data quality > wrong labels; Zhang et al. 2017 (random labels)",
             lambda w: cfg(mnist_split(w, "shuffled.npz", shuffled_labels)), (L,), (L,)),
        Case("identical images, two labels", f"{H}: Training data quality > wrong labels",
             lambda w: cfg(mnist_split(w, "conflict.npz", conflicting_copies)), (L,), (L,)),
        Case("val holds training images", f"{H}: Validation/testing; Kapoor & Narayanan 2023 (leakage: duplicates)",
             lambda w: cfg(mnist_split(w, "dup.npz", val_copies_train)), ("split-leakage",), ("split-leakage",)),
        Case("val holds re-encoded training images", "Kapoor & Narayanan 2023 (leakage: near duplicates)",
             lambda w: cfg(mnist_split(w, "near.npz", val_near_copies)), ("split-leakage",), ("split-leakage",)),
        Case("augmented before splitting", "Kapoor & Narayanan 2023 (leakage: preprocessing before the split)",
             lambda w: cfg(siblings(w, "siblings"), data={"image_size": [64, 64]}), ("split-leakage",),
             ("split-leakage",)),
        Case("val photos filed twice", f"{H}: Validation/testing (test data in training)",
             lambda w: cfg(val_photo_copies(w, "valcopies"), data={"image_size": [64, 64]}), ("split-leakage",),
             ("split-leakage",)),
        Case("5% blank images", f"{H}: Training data quality > low quality data",
             lambda w: cfg(mnist_split(w, "blank.npz", blank_images)), ("input-fidelity",), ("input-fidelity",)),
        Case("truncated photo files", f"{H}: Training data quality > low quality data (corrupt files)",
             lambda w: cfg(corrupt_photos(w, "corrupt"), data={"image_size": [64, 64]}), ("input-fidelity",),
             ("input-fidelity",)),
        Case("a class of 12 images", f"{H}: Training data quality > unbalanced training data",
             lambda w: cfg(mnist_split(w, "rare.npz", rare_class)), ("imbalance",), ("imbalance",)),
        Case("a class missing from train", f"{H}: Training data quality > unbalanced training data",
             lambda w: cfg(mnist_split(w, "missing.npz", class_missing_from_train)), ("imbalance",),
             ("imbalance",)),
        Case("val from another pipeline", "Ponti et al. 2021 item 6; Geirhos et al. 2020 (distribution shift)",
             lambda w: cfg(mnist_split(w, "inverted.npz", inverted_val)), ("split-leakage",), ("split-leakage",)),
        Case("external set inverted", "Ponti et al. 2021 item 7 (external validation)",
             lambda w: cfg(mnist_split(w, "ext.npz"), data={"external": save_npz(
                 w, "ext_inv.npz", x_train=255 - mnist(2500)[0][2000:], y_train=mnist(2500)[1][2000:])}),
             ("external-validation",), ("external-validation",)),
        # shortcuts (Geirhos et al. 2020)
        Case("one class darker", "Geirhos et al. 2020 (shortcut: capture conditions per class)",
             lambda w: cfg(mnist_split(w, "dark.npz", darker_class)), ("pixel-attack",), ("pixel-attack",)),
        Case("a mark on one class", "Geirhos et al. 2020 (shortcut: a watermark)",
             lambda w: cfg(mnist_split(w, "mark.npz", corner_mark)), ("pixel-attack",), ("pixel-attack",)),
        Case("bees darker", "Geirhos et al. 2020 (shortcut: capture conditions per class)",
             lambda w: cfg(photos(w, "darkbees", bees(darker_bees)), data={"image_size": [64, 64]}),
             ("pixel-attack",), ("pixel-attack",)),
        Case("bees saved as PNG", "Geirhos et al. 2020 (shortcut: file format per class)",
             lambda w: cfg(photos(w, "pngbees", bees(bees_as_png)), data={"image_size": [64, 64]}),
             ("pixel-attack",), ("pixel-attack",)),
        Case("bees in greyscale", "Geirhos et al. 2020 (shortcut: colour mode per class)",
             lambda w: cfg(photos(w, "greybees", bees(bees_in_grey)), data={"image_size": [64, 64]}),
             ("pixel-attack",), ("pixel-attack",)),
        # preprocessing (Humbatova: Training > Preprocessing of training data)
        Case("no normalisation", f"{H}: Preprocessing of training data > missing normalisation",
             lambda w: cfg(mnist_split(w, "raw.npz"), data={"normalize": "none"}), ("normalization",),
             ("normalization",)),
        Case("unscaled table features", f"{H}: Preprocessing of training data > missing normalisation",
             lambda w: cfg(table(w, "wine_raw.csv", raw=True), data={"normalize": "none"}),
             ("normalization",), ("normalization",)),
        # model (Humbatova: Model > Layers / Activation function; Training > Loss function)
        Case("softmax before CrossEntropyLoss", f"{H}: Training > Loss function > redundant softmax; Islam et al. 2019",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("softmax_before_cross_entropy")),
             ("loss-sanity",), ("loss-sanity",)),
        Case("ReLU on the output", f"{H}: Model > Layers > Activation function > wrong activation",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("relu_on_the_output")), ("loss-sanity",),
             ("loss-sanity",)),
        Case("sigmoid with cross-entropy", f"{H}: Model > Activation function > wrong type of activation",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("sigmoid_with_cross_entropy")),
             ("loss-sanity",), ("loss-sanity",)),
        Case("5 outputs for 10 classes", f"{H}: Model > Layers > wrong number of neurons; Zhang et al. 2018",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("too_few_outputs")), ("loss-sanity",),
             ("loss-sanity",)),
        Case("NLLLoss on logits", f"{H}: Training > Loss function > missing softmax (log_softmax)",
             lambda w: cfg(mnist_split(w, "m.npz"), model={"factory": "faultmodels:cnn", "loss": "nll"}),
             ("loss-sanity",), ("loss-sanity",)),
        Case("MSE on class labels", f"{H}: Training > Loss function > wrong loss function",
             lambda w: cfg(mnist_split(w, "m.npz"), model={"factory": "faultmodels:cnn", "loss": "mse"}),
             ("loss-sanity",), ("loss-sanity",)),
        Case("every parameter frozen", f"{H}: Training > Training process (frozen layers); Islam et al. 2019",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("everything_frozen")), ("overfit",),
             ("overfit",)),
        Case("output detached", f"{H}: API / Tensors: wrong tensor handling (.detach() in forward)",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("detached_output")), ("overfit",),
             ("overfit",)),
        Case("dead ReLUs", f"{H}: Model > Layers > Activation function (dead units); Training > wrong initialisation",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("dead_relus")), ("gradient-health",),
             ("gradient-health",)),
        Case("weights initialised 30x too large", f"{H}: Training > Hyperparameters > wrong weights initialisation",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("exploding_init")),
             ("gradient-health", "loss-sanity"), ("gradient-health", "loss-sanity")),
        Case("12 sigmoid layers", f"{H}: Model > Activation function (vanishing gradient); Islam et al. 2019",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("deep_sigmoid_mlp")), ("gradient-health",),
             ("gradient-health",)),
        Case("batch statistics in forward", f"{H}: Model > Layers (normalisation across the batch)",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("batch_mixing")), ("loss-sanity",),
             ("loss-sanity",)),
        # training (Humbatova: Training > Hyperparameters)
        Case("learning rate 10 with SGD", f"{H}: Training > Hyperparameters > suboptimal learning rate",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("cnn", optimizer="sgd", lr=10.0)),
             ("learning-rate",), ("learning-rate",)),
        Case("learning rate 1e-7", f"{H}: Training > Hyperparameters > suboptimal learning rate",
             lambda w: cfg(mnist_split(w, "m.npz"), **with_model("cnn", lr=1e-7)), ("learning-rate",),
             ("learning-rate",)),
        # segmentation and label sets (issue 27)
        Case("masks saved as 0/255", f"{H}: Preprocessing of training data (wrong label encoding)",
             lambda w: cfg(masks(w, "m255.npz", "255")), ("input-fidelity",), ("input-fidelity",)),
        Case("masks resized bilinearly", f"{H}: Preprocessing of training data (labels interpolated)",
             lambda w: cfg(masks(w, "mbil.npz", "bilinear")), ("input-fidelity",), ("input-fidelity",)),
        Case("val masks shifted 4 px", f"{H}: Preprocessing of training data (misaligned annotation)",
             lambda w: cfg(masks(w, "mshift.npz", "shift")), ("input-fidelity",), ("input-fidelity",)),
        Case("masks with the wrong class", f"{H}: Training data quality > wrong labels",
             lambda w: cfg(masks(w, "mrelabel.npz", "relabel")), (L,), (L,)),
        Case("softmax over the height", f"{H}: Model > Layers > Activation function (wrong axis)",
             lambda w: cfg(masks(w, "mdim.npz"), model={"factory": "tasks_models:softmax_over_height"}),
             ("loss-sanity",), ("loss-sanity",)),
        Case("softmax head with BCE on label sets", f"{H}: Training > Loss function > wrong loss function",
             lambda w: cfg(label_sets(w, "ml.npz"), model={"factory": "tasks_models:softmax_head"}),
             ("loss-sanity",), ("loss-sanity",)),
        Case("cross-entropy on label sets", f"{H}: Training > Loss function > wrong loss function",
             lambda w: cfg(label_sets(w, "ml.npz"), model={"loss": "cross_entropy"}), ("loss-sanity",),
             ("loss-sanity",)),
        Case("10% of label bits flipped", f"{H}: Training data quality > wrong labels",
             lambda w: cfg(label_sets(w, "mlflip.npz", "flip")), (L,), (L,)),
    ]
    controls = [
        Case("clean MNIST, smallcnn", "control", lambda w: cfg(mnist_split(w, "clean.npz")), clean=True),
        Case("clean MNIST, pytorch/examples net", "control",
             lambda w: cfg(mnist_split(w, "clean.npz"), **MNIST_NET), clean=True),
        Case("clean digits", "control", lambda w: cfg("sklearn:digits"), clean=True),
        Case("clean ant/bee photos", "control", lambda w: cfg(str(SHARED / "hymenoptera")), clean=True),
        Case("clean wine table", "control", lambda w: cfg(table(w, "wine.csv")), clean=True),
        Case("clean MNIST masks", "control", lambda w: cfg(masks(w, "masks.npz")), clean=True),
        Case("clean label sets", "control", lambda w: cfg(label_sets(w, "sets.npz")), clean=True),
    ]
    return cases + controls


TASK_MODELS = '''
import torch
from torch import nn


class SoftmaxOverHeight(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

    def forward(self, x):
        return torch.softmax(self.conv(x), dim=2)


def softmax_over_height(num_classes, in_channels):
    return SoftmaxOverHeight(in_channels, num_classes)


def softmax_head(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes),
                         nn.Softmax(dim=1))
'''


def toml(config: dict) -> str:
    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for table_name, keys in config.items():
        nested = {k: v for k, v in keys.items() if isinstance(v, dict)}
        lines.append(f"[{table_name}]")
        lines += [f"{k} = {value(v)}" for k, v in keys.items() if not isinstance(v, dict)]
        for k, v in nested.items():
            lines.append(f"[{table_name}.{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def run(case: Case, work: Path, budget: int) -> dict:
    folder = work / case.name.replace(" ", "_").replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).parent / "faultmodels.py", folder / "faultmodels.py")
    (folder / "tasks_models.py").write_text(TASK_MODELS)
    config = case.build(folder)
    (folder / "dnncheck.toml").write_text(toml(config))
    out = folder / "result.json"
    command = [sys.executable, "-m", "dnncheck", "audit", str(folder / "dnncheck.toml"), "--quiet", "--json", str(out),
               "--budget", str(budget)]
    if case.select:
        command += ["--select", ",".join(case.select)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "tests"), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if not out.exists():
        return {"exit": proc.returncode, "seconds": seconds, "flags": [], "error": proc.stderr.strip()[-300:]}
    result = json.loads(out.read_text())
    flags = [(c["slug"], c["status"], c["summary"]) for c in result["checks"] if c["status"] in ("warn", "fail", "error")]
    return {"exit": proc.returncode, "seconds": seconds, "flags": flags, "error": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated case names (substrings)")
    parser.add_argument("--work", default="", help="folder for generated data, configs and results")
    parser.add_argument("--budget", type=int, default=600, help="--budget of each audit")
    args = parser.parse_args()
    if not (SHARED / "mnist5k.npz").exists():
        sys.exit(f"bench_faults needs ../shared/data (mnist5k.npz, hymenoptera/); not found at {SHARED}")
    work = Path(args.work or tempfile.mkdtemp(prefix="dnncheck-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in args.only.split(",") if w]
    cases = [c for c in case_list() if not wanted or any(w in c.name for w in wanted)]
    print("| case | where the fault comes from | checks run | caught by | time |")
    print("| --- | --- | --- | --- | --- |")
    for case in cases:
        case.outcome = run(case, work, args.budget)
        o = case.outcome
        if case.clean:
            said = "; ".join(f"{slug} {status}: {summary[:140]}" for slug, status, summary in o["flags"]) or "nothing"
        else:
            said = "; ".join(f"{slug} {status}: {summary[:140]}" for slug, status, summary in o["flags"]
                             if status != "error") or "MISSED"
        if o["error"]:
            said += f" (no result: {o['error']})"
        checks = ", ".join(case.select) or "all (control)"
        print(f"| {case.name} | {case.source} | {checks} | {said} | {o['seconds']:.0f} s |", flush=True)
    faults = [c for c in cases if not c.clean]
    controls = [c for c in cases if c.clean]
    caught = [c for c in faults if any(s in ("warn", "fail") for _, s, _ in c.outcome["flags"])]
    by_expected = [c for c in faults if any(slug in c.expect and s in ("warn", "fail")
                                            for slug, s, _ in c.outcome["flags"])]
    false_fails = [c for c in controls if any(s == "fail" for _, s, _ in c.outcome["flags"])]
    warned = [c for c in controls if any(s == "warn" for _, s, _ in c.outcome["flags"])]
    errors = [c for c in cases if any(s == "error" for _, s, _ in c.outcome["flags"]) or c.outcome["error"]]
    print()
    if faults:
        print(f"recall: {len(caught)}/{len(faults)} = {len(caught) / len(faults):.2f} "
              f"({len(by_expected)} by the check the fault concerns)")
    if controls:
        flagged = len(caught) + len(false_fails)
        precision = len(caught) / flagged if flagged else float("nan")
        print(f"precision: {precision:.2f} (fails on clean controls: {len(false_fails)} of {len(controls)}; "
              f"controls with a warning: {len(warned)})")
    if errors:
        print(f"errors: {', '.join(c.name for c in errors)}")
    print(f"time: {sum(c.outcome['seconds'] for c in cases):.0f} s; work folder: {work}")


if __name__ == "__main__":
    main()
