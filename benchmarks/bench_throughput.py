"""Probe training throughput against a plain PyTorch loop on the same model and data.

Trains a model for a fixed number of steps twice: with dnncheck's train_probe (which also records
losses, gradient norms every few steps and per-epoch evaluation) and with the plainest loop (forward,
loss, backward, step), both timed from the model and data on the host (the copy to the device
included), then the probe again with the deterministic kernels an audit asks for. Prints samples/s of each and the ratio (target: >= 0.8). Models: the built-in
smallcnn on mnist5k-sized inputs (28x28, 3,500 samples; synthetic when ../shared/data is absent), or
torchvision's resnet18 (`--model resnet18`, 1,024 synthetic RGB images at `--size`, default 224).
Runs on CUDA when present (bf16 autocast, channels_last, tensors kept on the device), else the CPU.
Run: make bench-throughput  (or python benchmarks/bench_throughput.py [--device cuda] [--steps N]
[--model resnet18 --size 224])
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dnncheck.models.nets import SmallCNN
from dnncheck.probes.train import ProbeSettings, autocast, request_determinism, train_probe

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist5k.npz"


def data(n: int = 3500):
    """(inputs, labels) for smallcnn: real MNIST digits when present, normalised."""
    if MNIST.exists():
        d = np.load(MNIST)
        x, y = d["x"][:n], d["y"][:n]
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
    x = torch.tensor(x, dtype=torch.float32)[:, None] / 255.0
    return (x - x.mean()) / x.std(), torch.tensor(y, dtype=torch.long)


def photos(n: int = 1024, size: int = 224):
    """(inputs, labels) for resnet18: seeded noise images, two classes told apart by brightness."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 3, size, size, generator=gen) + 0.5 * y[:, None, None, None]
    return x, y


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        import torchvision

        return torchvision.models.resnet18(num_classes=2)
    return SmallCNN(1, 10)


def plain_loop(x, y, steps, batch, device, model_name="smallcnn"):
    """Samples/s of the plainest loop, timed as the probe is: from the model and data on the host."""
    model = build(model_name)
    _sync(device)
    start = time.perf_counter()
    model.to(device)
    x, y = x.to(device), y.to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < steps:
        order = torch.randperm(len(x), generator=gen).to(device)
        for k in range(len(x) // batch):
            idx = order[k * batch:(k + 1) * batch]
            with autocast(device):
                loss = F.cross_entropy(model(x[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def probe_loop(x, y, steps, batch, device, model_name="smallcnn"):
    model = build(model_name)
    steps_per_epoch = len(x) // batch
    epochs = -(-steps // steps_per_epoch)
    settings = ProbeSettings("adam", 1e-3, batch, epochs, 0, device)
    _sync(device)
    start = time.perf_counter()
    run = train_probe("bench", model, lambda o, t: F.cross_entropy(o.float(), t), (x, y), (x[:len(x) // 5], y[:len(x) // 5]),
                      "classification", settings)
    _sync(device)
    return run.steps * batch / (time.perf_counter() - start)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=0, help="default: 3 epochs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--model", choices=("smallcnn", "resnet18"), default="smallcnn")
    parser.add_argument("--size", type=int, default=224, help="resnet18's input size")
    args = parser.parse_args()
    x, y = photos(size=args.size) if args.model == "resnet18" else data()
    steps = args.steps or 3 * (len(x) // args.batch)
    plain_loop(x[:256], y[:256], 4, args.batch, args.device, args.model)  # warm-up (kernels, allocator)
    plain = plain_loop(x, y, steps, args.batch, args.device, args.model)
    probe = probe_loop(x, y, steps, args.batch, args.device, args.model)
    request_determinism()  # as an audit runs its probes; global, so measured last
    deterministic = probe_loop(x, y, steps, args.batch, args.device, args.model)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    shape = "x".join(map(str, x.shape[2:]))
    print(f"device {name}, {args.model} {shape}, batch {args.batch}, {steps} steps")
    print(f"  plain PyTorch loop: {plain:9.0f} samples/s")
    print(f"  dnncheck probe:     {probe:9.0f} samples/s (with per-epoch evaluation and gradient records)")
    print(f"  ratio probe/plain:  {probe / plain:.2f} (target >= 0.80)")
    print(f"  dnncheck probe with deterministic kernels (as in an audit): {deterministic:.0f} samples/s, "
          f"{deterministic / plain:.2f} of the plain loop")


if __name__ == "__main__":
    main()
