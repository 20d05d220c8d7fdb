"""Peak memory and wall time of an audit as the photo collection grows (real-size datasets issue).

Generates N photos from ../shared/data/hymenoptera (random crops of 60-100% of each side, mirror
images, brightness changes, re-encoded as 500x375 JPEGs) into root/<split>/<class>/ (80% train,
20% val, seeded), then runs `dnncheck audit ROOT` in a fresh process for each N and reports its wall
time and the peak resident memory of the whole process tree (every child included), sampled from
/proc every 0.2 s. Generated folders are kept in --work (default: a temp folder) and reused.

Run: make bench-scale  (or python benchmarks/bench_scale.py --sizes 2000,10000 [--select input-fidelity])
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
SIZE = (500, 375)  # (width, height) of every generated photo, as the real ones mostly are


def sources() -> list[tuple[Path, str]]:
    files = sorted(p for p in HYMENOPTERA.rglob("*.jpg"))
    return [(p, p.parent.name) for p in files]


def variant(image, rng: np.random.Generator):
    """A random crop (60-100% of each side), maybe mirrored, brightness x0.7-1.3, at 500x375."""
    from PIL import Image, ImageEnhance, ImageOps

    w, h = image.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.7, 1.3)))
    return out.resize(SIZE, Image.Resampling.BILINEAR)


def generate(root: Path, n: int, seed: int = 0) -> Path:
    """root/<train|val>/<ants|bees>/<i>.jpg, n photos in all; reused when already complete."""
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    pool = sources()
    for i in range(n):
        path, label = pool[int(rng.integers(len(pool)))]
        split = "train" if rng.random() < 0.8 else "val"
        target = root / split / label / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            variant(image.convert("RGB"), rng).save(target, quality=90)
    done.write_text(str(n))
    return root


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            pass
        stack.extend(children.get(p, []))
    return total


def measure(cmd: list[str]) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak process-tree RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    if proc.returncode not in (0, 1):
        sys.exit(f"audit failed with exit {proc.returncode}: {err.strip()[-500:]}")
    return proc.returncode, wall, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,20000,40000", help="comma-separated photo counts")
    parser.add_argument("--select", default="", help="checks to run (default: the full default audit)")
    parser.add_argument("--work", default="", help="where generated folders are kept (default: a temp folder)")
    args = parser.parse_args()
    if not HYMENOPTERA.exists():
        sys.exit(f"{HYMENOPTERA} is absent: this benchmark needs the shared real data beside the project")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dnncheck-scale-"))
    for n in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        root = generate(work / f"photos{n}", n)
        made = time.perf_counter() - start
        cmd = [sys.executable, "-m", "dnncheck", "audit", str(root), "--quiet"]
        if args.select:
            cmd += ["--select", args.select]
        code, wall, peak = measure(cmd)
        print(f"N={n:>7}: audit {wall:7.1f} s wall, peak RSS {peak / 2**30:5.2f} GiB "
              f"({peak / n / 2**10:6.0f} KiB per photo), exit {code}; generating took {made:.0f} s"
              + (f"; checks {args.select}" if args.select else "; full default audit"))


if __name__ == "__main__":
    main()
