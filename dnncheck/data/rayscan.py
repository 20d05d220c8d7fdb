"""The data pass on Ray: `--engine ray` (pip install "dnncheck[ray]").

The file list becomes a Ray Dataset; `map_batches` computes each file's record on the cluster's
workers (the same `record_file` as the local engine, so the same records) and the driver gathers
the compact records in file order. The files must be readable at the same paths on every node (a
shared or network file system). With no `ray_address`, a local Ray instance is started.
"""

from __future__ import annotations

import os

import numpy as np

from dnncheck.errors import UserError

BATCH_FILES = 32


def _records_of_batch(batch: dict, max_side: int, with_digest: bool = True) -> dict:
    import ray

    from dnncheck.data.scan import record_file

    blobs, reasons, digests = [], [], []
    for path in batch["path"]:
        record, reason, digest = record_file(str(path), max_side, with_digest)
        blobs.append(record.tobytes())
        reasons.append(reason)
        digests.append(digest)
    node = ray.get_runtime_context().get_node_id()  # which machine did the work (the data pass says how many)
    return {"index": batch["index"], "record": np.array(blobs, dtype=object), "reason": np.array(reasons, dtype=object),
            "digest": np.array(digests, dtype=object), "node": np.array([node] * len(blobs), dtype=object)}


RAY_CONNECT_TRIES = 3


def _connect(address: str | None):
    try:
        import ray
    except ImportError:
        raise UserError('--engine ray: Ray is not installed; pip install "dnncheck[ray]" (or use --engine local)') from None
    if not ray.is_initialized():
        if address:
            # Ray tries an unreachable head ~20 times, ~40 s each (13 min); three tries say it sooner.
            # A value the user set is kept.
            os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(RAY_CONNECT_TRIES))
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
        except (ConnectionError, ValueError, RuntimeError, SystemExit) as exc:
            # an unreachable address: Ray retries for about two minutes, then calls sys.exit from its core
            where = address or "a local instance"
            why = " ".join(str(exc).split())[:200] if not isinstance(exc, SystemExit) else "no answer from its head node"
            error = UserError(f"--ray-address {where}: cannot connect to Ray ({why}); "
                              "check the address (ray://HEAD:10001 or auto) or use --engine local")
            error.end_process = True  # Ray's core keeps threads that block the interpreter's exit
            raise error from None
    return ray


def ray_records(paths: list[str], settings, advance=None, nodes: set | None = None):
    """(position in `paths`, record, reason, digest) per file, in the order Ray's batches arrive: the
    driver writes each into the audit's records as it comes and keeps no second copy of them. `nodes`
    collects the ids of the Ray nodes that computed records."""
    import warnings

    with warnings.catch_warnings():  # Ray's own deprecation notices are not findings about the data
        warnings.simplefilter("ignore")
        yield from _stream(paths, settings, advance, nodes if nodes is not None else set())


def _stream(paths: list[str], settings, advance, nodes: set):
    from dnncheck.data.records import RECORD_DTYPE

    ray = _connect(settings.ray_address)
    items = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)])
    # batches of up to BATCH_FILES, fewer for a small pass so that every CPU of the cluster gets some
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    batch = int(np.clip(len(paths) // (2 * cpus), 1, BATCH_FILES))
    done = items.map_batches(_records_of_batch, batch_size=batch, batch_format="numpy",
                             fn_kwargs={"max_side": settings.max_side, "with_digest": settings.cache})
    for part in done.iter_batches(batch_size=batch, batch_format="numpy"):
        for index, blob, reason, digest, node in zip(part["index"], part["record"], part["reason"], part["digest"],
                                                     part["node"]):
            nodes.add(str(node))
            yield int(index), np.frombuffer(blob, dtype=RECORD_DTYPE)[0], str(reason), str(digest)
        if advance:
            advance(len(part["index"]))
