"""Peak memory and wall time of an audit as the photo collection grows (real-size datasets issue).

Generates N photos from ../shared/data/hymenoptera (random crops of 60-100% of each side, mirror
images, brightness changes, re-encoded as 500x375 JPEGs) into root/<split>/<class>/ (80% train,
20% val, seeded), then runs `dnncheck audit ROOT` in a fresh process for each N and reports its wall
time and the peak resident memory of the whole process tree (every child included: the data pass's
workers too), sampled from /proc every 0.2 s. Per N it runs, each with an empty record cache of its
own: the full default audit (cold), `--select input-fidelity` cold, then the same again on the
unchanged files (warm: records from the cache). Generated folders are kept in --work (default: a
temp folder) and reused.

With --only leakage: split-leakage alone, cold then warm, and (siblings) the share of leaked val
photos (a variant of a photo that also has one in train) named in its findings; --kind unique makes
distinct smooth scenes instead (plant.smooth_scene) and says how many near pairs were reported.
With --peers PYTHON (an interpreter where fastdup and cleanvision are installed: a separate virtual
environment, so that their pinned dependencies never touch dnncheck's; neither is a dependency), the
input-fidelity runs are followed by fastdup and cleanvision on the same folder, measured the same way.
Run: make bench-scale  (or python benchmarks/bench_scale.py --sizes 2000,10000 [--only full|fidelity|leakage|data]
[--kind siblings|unique] [--peers /path/to/venv/bin/python])
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


def _make_scene(task) -> None:
    from plant import jpeg, smooth_scene

    i, target, seed = task
    target.write_bytes(jpeg(smooth_scene(np.random.default_rng([seed, i]))))


def generate(root: Path, n: int, seed: int = 0, kind: str = "siblings") -> Path:
    """root/<train|val>/<class>/<i>.jpg, n images in all (every core); reused when complete.
    siblings: variants of the ant/bee photos (80% train, 20% val at random: augmenting before
    splitting), their source photo in root/sources.csv; unique: distinct smooth scenes
    (plant.smooth_scene, 128x96 JPEG), ten classes by index."""
    from concurrent.futures import ProcessPoolExecutor

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    tasks, rows = [], []
    pool = sources() if kind == "siblings" else []
    for i in range(n):
        if kind == "siblings":
            path, label = pool[int(rng.integers(len(pool)))]
        else:
            path, label = None, f"c{i % 10}"
        split = "train" if rng.random() < 0.8 else "val"
        target = root / split / label / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        tasks.append((i, path, label, split, target, seed) if kind == "siblings" else (i, target, seed))
        rows.append(f"{split}/{label}/{target.name},{path.name if path else ''}")
    with ProcessPoolExecutor(os.cpu_count() or 1) as workers:
        list(workers.map(_make if kind == "siblings" else _make_scene, tasks, chunksize=256))
    (root / "sources.csv").write_text("id,source\n" + "\n".join(rows) + "\n")
    done.write_text(str(n))
    return root


def leak_recall(root: Path, results: Path) -> str:
    """Of the val photos whose source photo also has a variant in train (leaked), the share the
    split-leakage check names in a finding's samples, and the JSON's size."""
    import csv

    with open(root / "sources.csv") as fh:
        rows = list(csv.DictReader(fh))
    in_train = {r["source"] for r in rows if r["id"].startswith("train/")}
    leaked = {r["id"] for r in rows if r["id"].startswith("val/") and r["source"] in in_train}
    check = next(c for c in json.loads(results.read_text())["checks"] if c["slug"] == "split-leakage")
    named = {s for f in check["findings"] for s in f["samples"]}
    return (f"leaked val photos named {len(leaked & named)} of {len(leaked)} ({len(leaked & named) / max(1, len(leaked)):.1%}); "
            f"split-leakage {check['duration_s']:.0f} s; JSON {results.stat().st_size / 2**20:.2f} MiB")


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


def measure(cmd: list[str], cache: Path, limit: float | None = None) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak process-tree memory in bytes: PSS, see tree_memory) of a command using
    record cache `cache`. With `limit`: stopped (its process group killed) after that many seconds,
    exit code None."""
    env = {**os.environ, "DNNCHECK_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc.pid))
        if limit is not None and time.perf_counter() - start > limit:
            os.killpg(proc.pid, 9)
            proc.wait()
            return None, time.perf_counter() - start, peak
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


DATA_WIDE = "input-fidelity,imbalance,split-leakage,normalization"  # the data-wide selection


def audit_command(root: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "dnncheck", "audit", str(root), "--quiet", "--json", str(results)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,20000,40000", help="comma-separated photo counts")
    parser.add_argument("--only", choices=("full", "fidelity", "leakage", "data"), default=None,
                        help="only the full default audit, the cold/warm input-fidelity pair, split-leakage alone "
                             "(warm; siblings: with the share of leaked val photos named) or the data-wide checks")
    parser.add_argument("--kind", choices=("siblings", "unique"), default="siblings",
                        help="siblings: variants of the ant/bee photos split at random; unique: distinct smooth scenes")
    parser.add_argument("--work", default="", help="where generated folders are kept (default: a temp folder)")
    parser.add_argument("--budget", default="", help="--budget SECONDS for the audits (e.g. 3600, so that every "
                                                     "probe finishes and runs of two sizes compare)")
    parser.add_argument("--peers", default="", help="a Python with fastdup and cleanvision installed: measure them "
                                                    "on the same folder after input-fidelity")
    args = parser.parse_args()
    if not HYMENOPTERA.exists():
        sys.exit(f"{HYMENOPTERA} is absent: this benchmark needs the shared real data beside the project")
    from dnncheck.data.records import RECORD_BYTES

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dnncheck-scale-"))
    print(f"record: {RECORD_BYTES} bytes per image; {os.cpu_count()} cores", flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        root = generate(work / (f"photos{n}" if args.kind == "siblings" else f"scenes{n}"), n, kind=args.kind)
        print(f"N={n:>7} {args.kind} generated in {time.perf_counter() - start:.0f} s", flush=True)
        if args.only in ("leakage", "data"):
            with tempfile.TemporaryDirectory() as cache:
                out = Path(cache) / "results.json"
                chosen = "split-leakage" if args.only == "leakage" else DATA_WIDE
                budget = ["--budget", args.budget] if args.budget else []
                command = audit_command(root, out) + ["--select", chosen] + budget
                report(n, f"{args.only}, cold", *measure(command, Path(cache)), out)
                report(n, f"{args.only}, warm", *measure(command, Path(cache)), out)
                if args.kind == "siblings":
                    print(f"N={n:>7} {leak_recall(root, out)}", flush=True)
                else:
                    check = next(c for c in json.loads(out.read_text())["checks"] if c["slug"] == "split-leakage")
                    print(f"N={n:>7} near pairs among distinct scenes: {check['metrics'].get('near_duplicate_pairs')} "
                          f"across, within {check['metrics'].get('within_split_duplicate_pairs')}", flush=True)
            continue
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
            if args.peers:
                measure_peers(Path(args.peers), root, n, cold)


PEERS = Path(__file__).parent / "peers"


PEER_LIMIT = 20.0  # a peer may take this many times dnncheck's cold run before it is stopped


def measure_peers(python: Path, root: Path, n: int, ours: tuple[int, float, int]) -> None:
    """fastdup and cleanvision on `root` under `python`, beside dnncheck's cold input-fidelity run
    (cleanvision 0.3.7 did not finish 20,000 photos in 30 minutes here: each is stopped after
    PEER_LIMIT times dnncheck's wall time)."""
    for name in ("fastdup", "cleanvision"):
        with tempfile.TemporaryDirectory() as scratch:
            code, wall, peak = measure([str(python), str(PEERS / f"{name}_run.py"), str(root)], Path(scratch),
                                       limit=PEER_LIMIT * ours[1])
        if code is None:
            print(f"N={n:>7} {name} (peer) stopped unfinished after {wall:.0f} s (peak so far {peak / 2**30:.2f} GiB)",
                  flush=True)
            continue
        report(n, f"{name} (peer)", code, wall, peak)
        print(f"N={n:>7} dnncheck input-fidelity cold / {name}: wall {ours[1] / wall:.2f}, "
              f"peak {ours[2] / max(1, peak):.2f}", flush=True)


if __name__ == "__main__":
    main()
