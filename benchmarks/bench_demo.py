"""Wall time of the demo audit (`dnncheck audit sklearn:digits`), process start included.

Prints the whole command's wall time, each check's time, the probe training time, and as a
baseline measured in the same run the cost of starting Python and importing torch, so figures
can be compared across noisy shared machines as ratios.
Run: make bench  (or python benchmarks/bench_demo.py [--repeat N])
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("target", nargs="?", default="sklearn:digits")
    args = parser.parse_args()
    baseline = [timed([sys.executable, "-c", "import torch"])[0] for _ in range(args.repeat)]
    walls, last = [], None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        for _ in range(args.repeat):
            wall, proc = timed([sys.executable, "-m", "dnncheck", "audit", args.target, "--quiet", "--json", str(out)])
            if proc.returncode not in (0, 1):
                sys.exit(f"audit failed with exit {proc.returncode}: {proc.stderr.strip()}")
            walls.append(wall)
            last = json.loads(out.read_text())
    help_time = statistics.median(timed([sys.executable, "-m", "dnncheck", "--help"])[0] for _ in range(args.repeat))
    wall = statistics.median(walls)
    base = statistics.median(baseline)
    print(f"demo audit of {args.target}: median wall {wall:.1f} s over {args.repeat} runs "
          f"(min {min(walls):.1f}, max {max(walls):.1f}); status {last['status']}")
    print(f"  baseline `python -c 'import torch'`: {base:.2f} s  -> audit / baseline = {wall / base:.1f}x")
    print(f"  `dnncheck --help`: {help_time:.2f} s")
    print(f"  audit duration inside the process: {last['duration_s']:.1f} s; "
          f"probe training: {last['model'].get('probe_seconds', {})}")
    for check in last["checks"]:
        print(f"  {check['id']:6} {check['slug']:16} {check['status']:5} {check['duration_s']:6.2f} s")


if __name__ == "__main__":
    main()
