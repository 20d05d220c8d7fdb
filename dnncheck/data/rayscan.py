"""The data pass on Ray: `--engine ray` (pip install "dnncheck[ray]").

The file list becomes a Ray Dataset; `map_batches` computes each file's record on the cluster's
workers (the same `record_file` as the local engine, so the same records) and the driver gathers
the compact records in file order. The files must be readable at the same paths on every node (a
shared or network file system). With no `ray_address`, a local Ray instance is started.
"""

from __future__ import annotations

import numpy as np

from dnncheck.errors import UserError

BATCH_FILES = 32


def _records_of_batch(batch: dict, max_side: int, with_digest: bool = True) -> dict:
    from dnncheck.data.scan import record_file

    blobs, reasons, digests = [], [], []
    for path in batch["path"]:
        record, reason, digest = record_file(str(path), max_side, with_digest)
        blobs.append(record.tobytes())
        reasons.append(reason)
        digests.append(digest)
    return {"index": batch["index"], "record": np.array(blobs, dtype=object), "reason": np.array(reasons, dtype=object),
            "digest": np.array(digests, dtype=object)}


def _connect(address: str | None):
    try:
        import ray
    except ImportError:
        raise UserError('--engine ray: Ray is not installed; pip install "dnncheck[ray]" (or use --engine local)') from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = address or "a local instance"
            raise UserError(f"--ray-address {where}: cannot connect to Ray ({' '.join(str(exc).split())[:200]}); "
                            "check the address (ray://HEAD:10001 or auto) or use --engine local") from None
    return ray


def ray_records(paths: list[str], settings, advance=None) -> list[tuple[np.ndarray, str, str]]:
    import warnings

    with warnings.catch_warnings():  # Ray's own deprecation notices are not findings about the data
        warnings.simplefilter("ignore")
        return _gather(paths, settings, advance)


def _gather(paths: list[str], settings, advance=None) -> list[tuple[np.ndarray, str, str]]:
    from dnncheck.data.records import RECORD_DTYPE

    ray = _connect(settings.ray_address)
    items = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)])
    done = items.map_batches(_records_of_batch, batch_size=BATCH_FILES, batch_format="numpy",
                             fn_kwargs={"max_side": settings.max_side, "with_digest": settings.cache})
    out: list = [None] * len(paths)
    for batch in done.iter_batches(batch_size=BATCH_FILES, batch_format="numpy"):
        for index, blob, reason, digest in zip(batch["index"], batch["record"], batch["reason"], batch["digest"]):
            out[int(index)] = (np.frombuffer(blob, dtype=RECORD_DTYPE).copy(), str(reason), str(digest))
        if advance:
            advance(len(batch["index"]))
    return [(rec[0], reason, digest) for rec, reason, digest in out]
