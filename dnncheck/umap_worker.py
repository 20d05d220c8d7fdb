"""Runs one UMAP projection in a child process: `python umap_worker.py SEED NEIGHBOURS` reads a float32
feature matrix as .npy on stdin and writes the 2-D float32 projection as .npy on stdout.

Why a child process: importing umap-learn and compiling its numba functions leaves about 0.22 GiB
(LLVM and the compiled code) in a process for good, and every check after separability would carry it;
a child returns it when it exits. Audits of large views (probes/inputs.py: large_view) run it here;
small ones call `project` in their own process, where later audits reuse the compiled code. Run by path, it imports neither dnncheck nor torch, so it never
re-runs the user's script (as multiprocessing's spawn would) and starts in about a second before
umap's own import. The result is the same as in-process: the same library, inputs and seed.
"""

from __future__ import annotations

import io
import sys
import warnings


def project(feats, seed: int, neighbours: int):
    """UMAP's seeded 2-D projection of `feats` (float32), as float32 points."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables its parallelism
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=0.1, random_state=seed)
        return reducer.fit_transform(feats).astype(np.float32)


def main() -> None:
    import numpy as np

    seed, neighbours = int(sys.argv[1]), int(sys.argv[2])
    feats = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
    points = project(feats, seed, neighbours)
    out = io.BytesIO()
    np.save(out, points, allow_pickle=False)
    sys.stdout.buffer.write(out.getvalue())


if __name__ == "__main__":
    main()
