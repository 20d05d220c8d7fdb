"""label-noise quality and cost on real MNIST digits (../shared/data/mnist5k.npz).

A stratified 70/15/15 split; in train (3,500 digits) labels are corrupted three ways:
- random: 10% flipped to a uniformly chosen other class;
- structured: 30% of the 7s relabelled as 1 (one class partly relabelled as another);
- clean: no change (how much does it flag on clean data?).
For each, F1/precision/recall of the flagged set against the planted one, and the check's own time,
with the default model (smallcnn) and budget, each run in a fresh process.
Run: make bench-label-noise  (or python benchmarks/bench_label_noise.py [--seed N])
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from plant import stratified_split  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist5k.npz"


def corrupt(y: np.ndarray, kind: str, rng) -> tuple[np.ndarray, np.ndarray]:
    y = y.copy()
    if kind == "random":
        idx = rng.choice(len(y), int(0.1 * len(y)), replace=False)
        y[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
    elif kind == "structured":
        sevens = np.flatnonzero(y == 7)
        idx = rng.choice(sevens, int(0.3 * len(sevens)), replace=False)
        y[idx] = 1
    else:
        idx = np.array([], dtype=np.int64)
    return y, np.sort(idx)


def run(npz: Path) -> dict:
    code = f"""
import json
from dnncheck.config import AuditConfig
from dnncheck.context import Context
from dnncheck.runner import run_check
from dnncheck.checks.label_noise import LabelNoise
ctx = Context(AuditConfig(source={str(npz)!r}))
ctx.prepare()
ctx.plan_probes([LabelNoise()])
print(json.dumps(run_check(LabelNoise(), ctx).to_dict()))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not MNIST.exists():
        sys.exit(f"{MNIST} is absent: this benchmark needs the shared real data beside the project")
    data = np.load(MNIST)
    x, y = data["x"], data["y"]
    tr, va, te = stratified_split(y)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("random", "structured", "clean"):
            y_train, planted = corrupt(y[tr], kind, rng)
            path = Path(tmp) / f"{kind}.npz"
            np.savez(path, x_train=x[tr], y_train=y_train, x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te])
            result = run(path)
            flagged = {int(s.split(":")[1]) for f in result["findings"] if "mislabelled" in f["message"]
                       for s in f["samples"]}
            truth = set(planted.tolist())
            tp = len(flagged & truth)
            precision = tp / len(flagged) if flagged else 0.0
            recall = tp / len(truth) if truth else 1.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            m = result["metrics"]
            head = (f"F1 {f1:.3f} (precision {precision:.3f}, recall {recall:.3f})" if truth
                    else f"flags {len(flagged)} of {len(y_train)} ({len(flagged) / len(y_train):.1%})")
            print(f"{kind:10} planted {len(truth):4}: {head}; estimated noise rate {m['estimated_noise_rate']:.3f}; "
                  f"status {result['status']}; check {result['duration_s']:.1f} s; estimators {m['estimators']}")


if __name__ == "__main__":
    main()
