"""Peak memory and wall time of an audit as the photo collection grows (real-size datasets issue).

Generates N photos from ../shared/data/hymenoptera (random crops of 60-100% of each side, mirror
images, brightness changes, re-encoded as 500x375 JPEGs) into root/<split>/<class>/ (80% train,
20% val, seeded), then runs `dnncheck audit ROOT` in a fresh process for each N and reports its wall
time and the peak resident memory of the whole process tree (every child included: the data pass's
workers too), sampled from /proc every 0.2 s. Per N it runs, each with an empty record cache of its
own: the full default audit (cold), `--select input-fidelity` cold, then the same again on the
unchanged files (warm: records from the cache). Generated folders are kept in --work (default: a
temp folder) and reused.

Run: make bench-scale  (or python benchmarks/bench_scale.py --sizes 2000,10000 [--only full|fidelity])
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from plant import crop_and_mirror  # noqa: E402

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
SIZE = (500, 375)  # (width, height) of every generated photo, as the real ones mostly are


def sources() -> list[tuple[Path, str]]:
    files = sorted(p for p in HYMENOPTERA.rglob("*.jpg"))
    return [(p, p.parent.name) for p in files]


def variant(image, rng: np.random.Generator):
    """A random crop (60-100% of each side), maybe mirrored, brightness x0.7-1.3, at 500x375."""
    from PIL import Image, ImageEnhance

    out = crop_and_mirror(image, rng)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.7, 1.3)))
    return out.resize(SIZE, Image.Resampling.BILINEAR)


def _make(task) -> None:
    from PIL import Image

    i, path, label, split, target, seed = task
    rng = np.random.default_rng([seed, i])
    with Image.open(path) as image:
        variant(image.convert("RGB"), rng).save(target, quality=90)


def generate(root: Path, n: int, seed: int = 0) -> Path:
    """root/<train|val>/<ants|bees>/<i>.jpg, n photos in all (two processes); reused when complete."""
    from concurrent.futures import ProcessPoolExecutor

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    pool = sources()
    tasks = []
    for i in range(n):
        path, label = pool[int(rng.integers(len(pool)))]
        split = "train" if rng.random() < 0.8 else "val"
        target = root / split / label / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        tasks.append((i, path, label, split, target, seed))
    with ProcessPoolExecutor(os.cpu_count() or 1) as workers:
        list(workers.map(_make, tasks, chunksize=256))
    done.write_text(str(n))
    return root


def tree_memory(pid: int) -> int:
    """Bytes of memory a process and all its descendants hold (from /proc): the sum of their
    proportional set sizes (PSS, smaps_rollup), where a page shared by k processes counts 1/k in
    each. Summing RSS instead counts every page a forked worker shares with its parent once per
    process: the data pass's DataLoader workers and cleanlab's forks made a 2.5 GB audit read as
    6 GB. Falls back to RSS where smaps_rollup is unreadable."""
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
        total += _process_bytes(p)
        stack.extend(children.get(p, []))
    return total


def _process_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def measure(cmd: list[str], cache: Path) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak process-tree memory in bytes: PSS, see tree_memory) of a command using
    record cache `cache`."""
    env = {**os.environ, "DNNCHECK_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    if proc.returncode not in (0, 1):
        sys.exit(f"audit failed with exit {proc.returncode}: {err.strip()[-500:]}")
    return proc.returncode, wall, peak


def report(n: int, what: str, code: int, wall: float, peak: int, results: Path | None = None) -> None:
    line = (f"N={n:>7} {what:<26} {wall:7.1f} s wall ({n / wall:6.0f} photos/s), peak memory (PSS) {peak / 2**30:5.2f} GiB "
            f"({peak / n / 2**10:6.1f} KiB per photo), exit {code}")
    if results is not None and results.exists():  # the data pass's own figures, from the audit's JSON
        data_pass = json.loads(results.read_text())["environment"].get("data_pass") or {}
        if "seconds" in data_pass:
            line += f"; data pass {data_pass['seconds']:.0f} s ({data_pass['images_per_second']:.0f} images/s)"
    print(line, flush=True)


def audit_command(root: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "dnncheck", "audit", str(root), "--quiet", "--json", str(results)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,20000,40000", help="comma-separated photo counts")
    parser.add_argument("--only", choices=("full", "fidelity"), default=None,
                        help="only the full default audit, or only the cold/warm input-fidelity pair")
    parser.add_argument("--work", default="", help="where generated folders are kept (default: a temp folder)")
    args = parser.parse_args()
    if not HYMENOPTERA.exists():
        sys.exit(f"{HYMENOPTERA} is absent: this benchmark needs the shared real data beside the project")
    from dnncheck.data.records import RECORD_BYTES

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dnncheck-scale-"))
    print(f"record: {RECORD_BYTES} bytes per image; {os.cpu_count()} cores", flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        root = generate(work / f"photos{n}", n)
        print(f"N={n:>7} generated in {time.perf_counter() - start:.0f} s", flush=True)
        if args.only in (None, "full"):
            with tempfile.TemporaryDirectory() as cache:
                out = Path(cache) / "results.json"
                report(n, "full default audit, cold", *measure(audit_command(root, out), Path(cache)), out)
        if args.only in (None, "fidelity"):
            with tempfile.TemporaryDirectory() as cache:
                out = Path(cache) / "results.json"
                fidelity = audit_command(root, out) + ["--select", "input-fidelity"]
                cold = measure(fidelity, Path(cache))
                report(n, "input-fidelity, cold", *cold, out)
                warm = measure(fidelity, Path(cache))
                report(n, "input-fidelity, warm", *warm, out)
                print(f"N={n:>7} warm/cold wall ratio {warm[1] / cold[1]:.2f} (target <= 0.33)", flush=True)


if __name__ == "__main__":
    main()
