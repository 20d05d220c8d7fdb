"""The streaming data pass over image files, and on-demand pixels for the samples that need them.

`scan_files` turns each file into its compact record (data/records.py) in worker processes (all
cores by default), a chunk of files at a time, so that nothing holds all decoded images; records
come back in file order, the same whatever the number of workers or the engine. Unchanged files are
taken from the record cache (data/cache.py). With `engine = "ray"` the pass runs as Ray Data
`map_batches` over the file list on a Ray cluster (`ray_address`), or a local Ray instance.

`load_resized` decodes a set of files again and resizes them to the model's input size, in the same
workers: probes, projections and figures load only the samples they use.

Workers are started with `spawn` (a fork of a process whose torch already ran threads can hang) and
kept for the audit; `shutdown()` ends them. They import numpy and Pillow only, never torch (whose
import alone holds about 480 MB per process).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnncheck.data.records import RECORD_DTYPE, empty_records, failed_record, image_record

CHUNK_FILES = 32  # files per task: enough to amortise the hand-off, small enough to balance the workers
CACHE_WRITE_EVERY = 2048  # records per cache transaction
ARRAYS_IN_WORKERS_FROM = 16384  # in-memory images: below this, starting workers (~2 s) costs more than it saves
ARRAY_CHUNK = 1024  # in-memory images per task
INLINE_BELOW = 64  # fewer files than this are read in this process (starting workers costs ~2 s)
WORKERS_PER_CORE = 2  # --workers above this many per core is capped: the pass is CPU-bound (decoding)
PARENT_POLL_SECONDS = 1.0  # how often a worker checks that the audit that started it is still alive


@dataclass(frozen=True)
class ScanSettings:
    max_side: int = 256
    workers: int = 0  # 0: every core
    cache: bool = True
    engine: str = "local"  # local | ray
    ray_address: str | None = None
    verify_cache: bool = False  # hash every file and decode again those whose content changed

    @classmethod
    def from_config(cls, cfg) -> "ScanSettings":
        return cls(cfg.decode_max_side, cfg.workers, cfg.cache, cfg.engine, cfg.ray_address, cfg.verify_cache)

    @property
    def worker_count(self) -> int:
        """Every core by default; a request above WORKERS_PER_CORE per core is capped (said by capped_note)."""
        return min(self.workers, self.max_workers) if self.workers else usable_cores()

    @property
    def max_workers(self) -> int:
        return WORKERS_PER_CORE * usable_cores()

    @property
    def capped_note(self) -> str | None:
        if self.workers <= self.max_workers:
            return None
        return (f"workers = {self.workers} capped at {self.max_workers} ({WORKERS_PER_CORE} per core, "
                f"{usable_cores()} cores): each worker process holds about 40 MB and more than the cores only compete")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- the per-file work (runs in the workers) ---------------------------------------------------------
def record_file(path: str, max_side: int, with_digest: bool = True) -> tuple[np.ndarray, str, str]:
    """(record, "", digest) for an image, (failed record, reason, digest) for a file that cannot be
    decoded; digest: the file's content hash, kept in the cache for --verify-cache ("" without a cache:
    then nothing would keep it, and hashing reads the file a second time)."""
    from dnncheck.data.cache import content_digest
    from dnncheck.data.images import DecodeError, decode_image

    digest = content_digest(path) if with_digest else ""
    try:
        image, native, mode, facts = decode_image(Path(path), max_side)
    except DecodeError as exc:
        return failed_record(), str(exc), digest
    except Exception as exc:  # a decoder bug on one odd file is that file's failure, never the pass's
        return failed_record(), f"the decoder failed ({type(exc).__name__}: {str(exc)[:200]})", digest
    try:
        return image_record(image, native, mode, facts), "", digest
    except MemoryError:
        return failed_record(native, mode), "too large to process in memory", digest
    except Exception as exc:  # a feature library (OpenCV) refusing one image: that file alone is skipped
        return failed_record(native, mode), f"its record could not be computed ({type(exc).__name__}: " \
                                            f"{str(exc)[:200]})", digest


def record_chunk(paths: list[str], max_side: int, with_digest: bool = True) -> tuple[np.ndarray, list[str], list[str],
                                                                                  list]:
    """Records, reasons and digests of the files, and the warnings decoding them raised (returned,
    not printed: a worker's stderr is the user's terminal, also under --quiet)."""
    import warnings

    out, reasons, digests = empty_records(len(paths)), [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for k, path in enumerate(paths):
            rec, reason, digest = record_file(path, max_side, with_digest)
            out[k] = rec[0]
            reasons.append(reason)
            digests.append(digest)
    return out, reasons, digests, [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def reraise_warnings(caught: list) -> None:
    """Warnings a worker recorded, raised again here, where the audit turns them into report notes."""
    import warnings

    for message, category, filename, lineno in caught:
        warnings.warn_explicit(message, category, filename, lineno)


def resized_chunk(paths: list[str], max_side: int, channels: int, size: tuple[int, int]) -> np.ndarray:
    """N,C,H,W float32: each file decoded as in the data pass, channels matched, resized to `size`
    (antialiased bilinear, as probes.inputs.raw_tensor does for in-memory images)."""
    from dnncheck.data.resize import resize

    out = np.empty((len(paths), channels, *size), dtype=np.float32)
    for k, path in enumerate(paths):
        out[k] = resize(decode_for_model(path, max_side, channels), size).transpose(2, 0, 1)
    return out


def decode_for_model(path: str, max_side: int, channels: int) -> np.ndarray:
    """One file's HWC uint8 image with the dataset's channel count (grey repeated when it has colour)."""
    from dnncheck.data.images import DecodeError, decode_image
    from dnncheck.errors import UserError

    try:
        image = decode_image(Path(path), max_side)[0]
    except DecodeError as exc:
        raise UserError(f"{path}: decoded in the data pass but not now ({exc}); was the file changed during the "
                        "audit? Rerun on a dataset nobody writes to") from None
    if image.shape[-1] != channels:
        image = np.repeat(image[..., :1], channels, axis=-1) if channels == 3 else image[..., :1]
    return image


# -- the pool ------------------------------------------------------------------------------------------
_POOL: dict = {}


def _worker_start(parent_pid: int) -> None:
    """One BLAS thread per worker: the workers already fill the cores (two BLAS threads in each of
    two workers on two cores made the pass three times slower than one process, measured). And the
    worker dies with the audit: a SIGKILLed audit left its spawn workers blocked forever. Warnings
    never reach the worker's stderr (the user's terminal, also under --quiet): the data pass returns
    them to the audit (record_chunk), repeats elsewhere are dropped."""
    import warnings

    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore")
    threadpool_limits(1)
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` ends: Linux's parent-death signal (prctl PR_SET_PDEATHSIG,
    immediate), and everywhere a daemon thread that polls the parent's pid (the parent may already
    have died before the signal was armed, and other systems have no such signal)."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="dnncheck-parent-watch", daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    if _POOL.get("workers") != workers:
        shutdown()
        import multiprocessing

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                                   initargs=(os.getpid(),))
        _POOL.update(workers=workers, pool=pool)
    return _POOL["pool"]


def shutdown() -> None:
    pool = _POOL.pop("pool", None)
    _POOL.pop("workers", None)
    if pool is not None:
        pool.shutdown(cancel_futures=True)


def _run_chunks(fn, chunks: list[list[str]], args: tuple, workers: int, on_done=None):
    """fn(chunk, *args) for each chunk, in order; in this process when the work is small."""
    if workers <= 1 or sum(len(c) for c in chunks) < INLINE_BELOW:
        for chunk in chunks:
            out = fn(chunk, *args)
            if on_done:
                on_done(len(chunk))
            yield out
        return
    from concurrent.futures.process import BrokenProcessPool

    pool = _pool(workers)
    futures = [pool.submit(fn, chunk, *args) for chunk in chunks]
    try:
        for i, chunk in enumerate(chunks):
            try:
                if futures[i] is None:  # the pool broke earlier: the rest is done here
                    raise BrokenProcessPool
                out = futures[i].result()
                futures[i] = None  # a consumed result is not kept alive by its future
            except BrokenProcessPool:  # a worker was killed (out of memory, a signal): finish here
                shutdown()
                out = fn(chunk, *args)
                futures = [None] * len(futures)
            if on_done:
                on_done(len(chunk))
            yield out
    finally:
        for future in futures:
            if future is not None:
                future.cancel()


def _chunks(items: list[str], size: int = CHUNK_FILES) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- the data pass ----------------------------------------------------------------------------------
@dataclass
class ScanResult:
    records: "StoredRecords"  # aligned with the paths; heavy fields on disk (data/store.py)
    reasons: list[str]  # "" or why the file could not be decoded
    decoded: int  # files read in this pass (the rest came from the cache)
    notes: list[str]
    ray_nodes: int | None = None  # engine ray: how many nodes computed records


def scan_files(paths: list[Path], settings: ScanSettings, progress=None) -> ScanResult:
    from dnncheck.data.cache import RecordCache, cache_dir, file_key

    from dnncheck.data.store import RecordStore, scratch_folder

    names = [str(p) for p in paths]
    store, reasons = RecordStore(len(names), scratch_folder() if settings.cache else None), [""] * len(names)
    keys = [file_key(p) for p in paths]
    cache = RecordCache(cache_dir(), f"max_side={settings.max_side}") if settings.cache else None
    hit, digests = _from_cache(cache, keys, store, reasons)
    notes = []
    if digests and settings.verify_cache:
        changed = _changed_since_cached(digests, names, settings.worker_count)
        hit[changed] = False
        if len(changed):
            notes.append(f"--verify-cache: {len(changed)} file(s) changed since their cached record although size and "
                         "times did not; they were decoded again")
    todo = np.flatnonzero(~hit).tolist()
    found = len(names) - len(todo)
    nodes: set = set()  # Ray nodes that computed records (engine ray)
    task = progress.task("reading images", total=len(names), unit="images") if progress else None
    if task and found:
        task.advance(found)
    if todo:
        advance = task.advance if task else None
        todo_names = [names[i] for i in todo]
        if settings.engine == "ray":
            from dnncheck.data.rayscan import ray_records

            done = ray_records(todo_names, settings, advance, nodes)
        else:
            done = _local_records(todo_names, settings, advance)
        pending = []  # written to the cache as the pass goes: an interrupted pass keeps what it read
        for k, rec, reason, digest in done:
            i = todo[k]
            rec = np.array(rec, dtype=RECORD_DTYPE).reshape(1)  # a copy: the chunk it came from goes
            store.add(i, rec)
            reasons[i] = reason
            if cache and keys[i]:
                pending.append((keys[i], rec, reason, digest))
            if len(pending) >= CACHE_WRITE_EVERY:
                cache.put_many(pending)
                pending = []
        if cache:
            cache.put_many(pending)
    if task:
        task.close()
    if cache:
        if cache.problem:
            notes.append(cache.problem)
        cache.close()
    records = store.records()
    if store.problem:
        notes.append(store.problem)
    return ScanResult(records, reasons, len(todo), notes, len(nodes) if settings.engine == "ray" else None)


def _from_cache(cache, keys: list, store, reasons: list) -> tuple[np.ndarray, dict[int, str]]:
    """Cached records written straight into the record store (and `reasons`): which positions were found,
    and the content digest stored with each (for --verify-cache)."""
    hit = np.zeros(len(keys), dtype=bool)
    digests: dict[int, str] = {}
    if cache is None:
        return hit, digests
    where: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            where.setdefault(key, []).append(i)  # one file listed twice: both positions get its record
    for key, record, reason, digest in cache.iter_many(list(where)):
        for i in where[key]:
            store.add(i, record)
            reasons[i], hit[i], digests[i] = reason, True, digest
    return hit, digests


def _changed_since_cached(digests: dict[int, str], names: list[str], workers: int) -> np.ndarray:
    """Positions of cache hits whose file no longer has the content hash stored with its record
    (hashed in the workers)."""
    from dnncheck.data.cache import digest_chunk

    positions = sorted(digests)
    now = [d for part in _run_chunks(digest_chunk, _chunks([names[i] for i in positions]), (), workers) for d in part]
    return np.array([i for i, d in zip(positions, now) if not d or d != digests[i]], dtype=np.int64)


def _local_records(names: list[str], settings: ScanSettings, advance=None):
    """(position, record, reason, digest) per file, in order, as the worker processes finish their chunks."""
    position = 0
    for chunk_records, chunk_reasons, chunk_digests, caught in _run_chunks(
            record_chunk, _chunks(names), (settings.max_side, settings.cache), settings.worker_count, advance):
        reraise_warnings(caught)
        for k in range(len(chunk_reasons)):
            yield position, chunk_records[k], chunk_reasons[k], chunk_digests[k]
            position += 1


def records_of_arrays(x, workers: int, on_done=None) -> np.ndarray:
    """records.array_records of in-memory images (an N,H,W,C array or a list of HWC arrays); split
    over the worker processes from ARRAYS_IN_WORKERS_FROM images on (~0.25 ms of Python per 28x28
    image: 70,000 MNIST digits took 17 s in one process). Records are identical either way."""
    from dnncheck.data.records import array_records, empty_records

    if workers <= 1 or len(x) < ARRAYS_IN_WORKERS_FROM:
        return array_records(x, on_chunk=on_done)
    out = empty_records(len(x))
    chunks = [x[i:i + ARRAY_CHUNK] for i in range(0, len(x), ARRAY_CHUNK)]
    start = 0
    for part in _run_chunks(array_records, chunks, (), workers, on_done):
        out[start:start + len(part)] = part
        start += len(part)
    return out


def load_resized(paths: list[str], max_side: int, channels: int, size: tuple[int, int], workers: int,
                 progress=None) -> np.ndarray:
    """N,C,H,W float32 array of the files decoded and resized to the model's input size (numpy: the
    callers that want a tensor wrap it, input-fidelity never imports torch)."""
    if not paths:
        return np.empty((0, channels, *size), dtype=np.float32)
    task = progress.task("loading samples", total=len(paths), unit="images") if progress and len(paths) >= INLINE_BELOW else None
    out = np.empty((len(paths), channels, *size), dtype=np.float32)  # filled chunk by chunk: no second copy
    start = 0
    for part in _run_chunks(resized_chunk, _chunks(paths), (max_side, channels, tuple(size)), workers,
                            task.advance if task else None):
        out[start:start + len(part)] = part
        start += len(part)
    if task:
        task.close()
    return out


assert RECORD_DTYPE.itemsize < 10240  # a record stays a few KB (README: bytes per record)
