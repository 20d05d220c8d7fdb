"""BLAS threads inside checks: one logistic-regression fit of the size external-validation makes
(2,000 rows of 512 PCA-like features, 10 classes) with OpenBLAS's default thread count and with
runner.blas_threads(), on a quiet machine and beside CPU hogs (`--hogs N` busy processes, default 2).
Prints seconds per fit (median of 3) and the ratio default / limited.

Run: python benchmarks/bench_threads.py [--hogs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import numpy as np


def _hog() -> None:
    while True:
        pass


def _fit_seconds(limit: int | None) -> float:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 512)).astype(np.float64)
    y = rng.integers(0, 10, 2000)
    x[np.arange(2000), y] += 2.0  # a learnable signal: the solver runs its usual iterations
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with threadpool_limits(limits=limit, user_api="blas"):
            LogisticRegression(max_iter=300).fit(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from dnncheck.runner import blas_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hogs", type=int, default=2)
    args = parser.parse_args()
    limited = blas_threads()
    for hogs in (0, args.hogs):
        workers = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(hogs)]
        for w in workers:
            w.start()
        try:
            default, mine = _fit_seconds(None), _fit_seconds(limited)
        finally:
            for w in workers:
                w.terminate()
        print(f"{hogs} hogs: default BLAS threads {default:.2f} s per fit, blas_threads()={limited}: {mine:.2f} s "
              f"(default / limited {default / mine:.1f}x)", flush=True)


if __name__ == "__main__":
    main()
