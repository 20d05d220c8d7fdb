"""Which data each client model suits, and the config an audit of it uses (the suite's small runs and
benchmarks/bench_clients.py's full default audits share this table).

Data, all real: 500 real MNIST digits per class from ../shared/data/mnist5k.npz, resized (bilinear)
to the model's input size and channels (scikit-learn's digits upsampled when it is absent: the suite
stays hermetic), and the real ant/bee photos at a torchvision model's input size. Not upsampled 8x8
digits for the CIFAR-sized models: blown up to 32 px, two writers' 1s become "near copies" across
splits, which split-leakage rightly reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Client:
    name: str
    factory: str  # a --model spec
    data: str  # "mnist" | "mnist<size>x<channels>" | "digits<size>x<channels>" | "hymenoptera"
    image_size: tuple[int, int]
    loss: str = "cross_entropy"
    train: dict = field(default_factory=dict)  # [train] keys as the model's own project trains it
    scheduler_args: dict = field(default_factory=dict)  # [train.scheduler_args]
    # slug -> phrases of warnings that are true of this model on this data (said in README's table)
    expected: dict = field(default_factory=dict)


MODELS = "tests.clients.models"
CLIENTS = (
    # pytorch/examples' MNIST script: Adadelta at lr 1.0, StepLR(step_size=1, gamma=0.7), batch 64
    Client("pytorch/examples MNIST net", f"{MODELS}:mnist_net", "mnist", (28, 28), "nll",
           train={"optimizer": "adadelta", "lr": 1.0, "scheduler": "StepLR"},
           scheduler_args={"step_size": 1, "gamma": 0.7}),
    Client("CIFAR LeNet", f"{MODELS}:cifar_lenet", "mnist32x3", (32, 32)),
    Client("CIFAR ResNet-18", f"{MODELS}:cifar_resnet18", "mnist32x3", (32, 32)),
    Client("torchvision resnet18", f"{MODELS}:tv_resnet18", "hymenoptera", (224, 224)),
    Client("torchvision mobilenet_v3_small", f"{MODELS}:tv_mobilenet_v3_small", "hymenoptera", (224, 224)),
    Client("torchvision efficientnet_b0", f"{MODELS}:tv_efficientnet_b0", "hymenoptera", (224, 224)),
    Client("ViT-tiny", f"{MODELS}:vit_tiny", "mnist32x3", (32, 32)),
    Client("BatchNorm + dropout CNN", f"{MODELS}:bn_dropout", "mnist32x1", (32, 32)),
    Client("tuple output (logits, aux)", f"{MODELS}:with_aux", "mnist32x1", (32, 32)),
)


def digits(size: int, channels: int, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 N,size,size[,channels] images (bilinear upsampling of the 8x8)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.arange(len(d.target)) if per_class is None else np.concatenate(
        [np.flatnonzero(d.target == c)[:per_class] for c in range(10)])
    x = np.stack([np.asarray(Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).resize((size, size),
                                                                                              Image.BILINEAR))
                  for i in keep])
    if channels == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    return x, d.target[keep]


def mnist(per_class: int | None = None, size: int = 28, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST digits at `size` px with `channels` (digits when the shared data is absent)."""
    from PIL import Image

    path = SHARED_DATA / "mnist5k.npz"
    if not path.exists():
        return digits(size, channels, per_class)
    data = np.load(path)
    x, y = data["x"], data["y"]
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        x, y = x[keep], y[keep]
    if size != x.shape[1]:
        x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in x])
    if channels == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    return x, y


def source_for(client: Client, work: Path, per_class: int | None = None) -> str:
    """The data source of a client's audit, written into `work` when it is generated."""
    if client.data == "hymenoptera":
        return str(SHARED_DATA / "hymenoptera")
    if client.data == "mnist":
        x, y = mnist(per_class)
    else:
        import re

        kind, size, channels = re.fullmatch(r"([a-z]+)(\d+)x(\d+)", client.data).groups()
        if kind == "mnist":
            x, y = mnist(per_class, int(size), int(channels))
        else:
            x, y = digits(int(size), int(channels), per_class)
    path = work / f"{client.data}-{per_class or 'all'}.npz"
    if not path.exists():
        np.savez(path, x_train=x, y_train=y)
    return str(path)


def config_for(client: Client, work: Path, per_class: int | None = None, probe: dict | None = None) -> Path:
    """A TOML config auditing `client` on its data; `probe` adds [probe] settings (epochs, ...)."""
    lines = ["[data]", f'source = "{source_for(client, work, per_class)}"',
             f"image_size = [{client.image_size[0]}, {client.image_size[1]}]",
             "[model]", f'factory = "{client.factory}"', f'loss = "{client.loss}"']
    if client.train:
        lines += ["[train]"] + [f"{k} = {_toml(v)}" for k, v in client.train.items()]
    if client.scheduler_args:
        lines += ["[train.scheduler_args]"] + [f"{k} = {_toml(v)}" for k, v in client.scheduler_args.items()]
    if probe:
        lines += ["[probe]"] + [f"{k} = {v}" for k, v in probe.items()]
    path = work / (client.factory.rsplit(":", 1)[1] + ".toml")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
