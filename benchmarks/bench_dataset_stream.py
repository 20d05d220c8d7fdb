"""A user's torch Dataset of 20,000 generated images at 224 px, audited through the Python API and as
a `python:` source, with torchvision's resnet18 and the default settings: peak resident memory of
the whole process tree (sampled from /proc every 0.2 s) and wall time. The target (issue "Real
users' models") is under 2 GB: the Dataset is streamed (data/items.py), never materialised.

The images are made on demand from the index (seeded noise plus a class-dependent bright square),
so the Dataset itself holds nothing: all the memory measured is dnncheck's.

Run: make bench-stream  (or python benchmarks/bench_dataset_stream.py [--n 20000] [--select ...])
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import measure  # noqa: E402

SIDE = 224


class GeneratedImages:
    """`n` RGB uint8 images, 224x224, two classes, made from the index on each read."""

    def __init__(self, n: int, offset: int = 0):
        self.n, self.offset = n, offset
        self.classes = ["plain", "square"]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        k = self.offset + i
        rng = np.random.default_rng(k)
        # a smooth random colour field (distinct at any scale, unlike pure noise) plus a little noise
        coarse = rng.integers(30, 200, (8, 8, 3)).astype(np.float32)
        image = np.kron(coarse, np.ones((SIDE // 8, SIDE // 8, 1), np.float32))
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        label = k % 2
        if label:
            top, left = rng.integers(0, SIDE - 64, 2)
            image[top:top + 64, left:left + 64] = 230
        return image, label


def splits(n: int = 20000):
    val = max(200, n // 10)
    return {"train": GeneratedImages(n - val), "val": GeneratedImages(val, offset=n - val)}


def source() -> dict:
    """The `python:` source: bench_dataset_stream:source (size from BENCH_STREAM_N)."""
    return splits(int(os.environ.get("BENCH_STREAM_N", "20000")))


API_SCRIPT = """
import json, sys
sys.path.insert(0, {bench!r})
import dnncheck
from bench_dataset_stream import splits
result = dnncheck.audit(splits({n}), model="resnet18", image_size=(224, 224), select={select!r})
open({out!r}, "w").write(result.to_json())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--select", default="", help="checks to run (default: all)")
    parser.add_argument("--only", default="api,python", help="api, python or both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dnncheck-stream-"))
    select = args.select or None
    runs = {}
    if "api" in args.only:
        out = work / "api.json"
        script = API_SCRIPT.format(bench=str(Path(__file__).parent), n=args.n, select=select, out=str(out))
        runs["dnncheck.audit({train, val}, model=resnet18)"] = ([sys.executable, "-c", script], out)
    if "python" in args.only:
        out = work / "python.json"
        config = work / "stream.toml"
        config.write_text(f'[data]\nsource = "python:bench_dataset_stream:source"\nimage_size = [224, 224]\n'
                          f'[model]\nfactory = "resnet18"\n')
        cmd = [sys.executable, "-m", "dnncheck", "audit", str(config), "--json", str(out), "--quiet"]
        if select:
            cmd += ["--select", select]
        runs["python: source, same Dataset"] = (cmd, out)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    os.environ["BENCH_STREAM_N"] = str(args.n)
    print(f"{args.n:,} generated images at {SIDE}x{SIDE}, checks: {select or 'all'}")
    print("| how | time | peak memory | verdict | checks not run or inconclusive |")
    print("| --- | --- | --- | --- | --- |")
    for name, (cmd, out) in runs.items():
        code, wall, peak = measure(cmd, work / "cache")
        if not out.exists():
            print(f"| {name} | {wall:.0f} s | {peak / 2**30:.2f} GiB | no result (exit {code}) | |", flush=True)
            continue
        doc = json.loads(out.read_text())
        gaps = [c["slug"] for c in doc["checks"] if c["status"] in ("skip", "error") or
                c["metrics"].get("inconclusive")]
        print(f"| {name} | {wall:.0f} s | {peak / 2**30:.2f} GiB | {doc['status']} (exit {code}) | "
              f"{', '.join(gaps) or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
