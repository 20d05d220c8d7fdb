"""Records out of core: the light fields of each record in memory, the heavy ones on disk.

A record (data/records.py) is about 9.7 KB, of which 9.5 KB are what only the duplicate search reads:
the 16x16 descriptors and their shifts, the 32 px grey copy, the colour grid and the ORB keypoints.
Held in memory they were most of an audit's peak (100,000 images: 0.97 GB; a million would not fit
a 24 GB machine). `RecordStore` keeps the other fields (about 220 bytes a record: sizes, value and
channel statistics, the content digest, the keypoint count) in a numpy array and writes each heavy
field to its own file (one column per file, so a search over the descriptors reads only them),
read back with positioned reads (`os.preadv`) a chunk or a gathered set of rows at a time.

Not memory-mapped: pages of a mapped file that a scan touched count in the process's resident set
until they are unmapped, so a pass over a million records' descriptors would have shown as 2.5 GB.
What the positioned reads bring in sits in the kernel's page cache, which is not the process's.

The files are anonymous temporary files (unlinked as they are made: nothing is left behind, even by an
audit that is killed) in dnncheck's cache folder (data/cache.py), never next to the user's files;
with the cache off (--no-cache), which writes nothing there, in the system's temporary folder.

`StoredRecords` is what a split holds: the light array, the store and each record's row in it.
Indexing it by a field name gives a light field as an array, or a heavy field read whole (fine for a
few thousand rows; the searches read heavy fields with `rows` and `chunks`); indexing it by positions
gives another StoredRecords over the same files (no heavy data copied).
"""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np

from dnncheck.data.records import RECORD_DTYPE

HEAVY_FIELDS = ("descriptors", "grey", "chroma", "kp_xy", "kp_desc")
LIGHT_DTYPE = np.dtype([(name, RECORD_DTYPE.fields[name][0]) for name in RECORD_DTYPE.names
                        if name not in HEAVY_FIELDS])
LIGHT_BYTES = LIGHT_DTYPE.itemsize
PUT_BATCH = 512  # records written to the columns at a time by `add`
CHUNK_ROWS = 8192  # rows read at a time by `chunks` (descriptors: 21 MB)


def scratch_folder() -> str | None:
    """Where the heavy columns go: dnncheck's cache folder when it can be made, else the system's
    temporary folder (None)."""
    from dnncheck.data.cache import cache_dir

    folder = cache_dir() / "scratch"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


class Column:
    """One heavy field of N records in an anonymous temporary file, row by row.

    A disk that is full, read-only or refuses the file's size (a quota, RLIMIT_FSIZE) does not end
    the audit: the column moves to memory (`memory`), as before records went out of core, and
    `problem` says why, for the report's notes."""

    def __init__(self, field: str, n: int, folder: str | None):
        base, shape = RECORD_DTYPE.fields[field][0].base, RECORD_DTYPE.fields[field][0].shape
        self.field, self.dtype, self.shape, self.n = field, base, shape, n
        self.row_bytes = int(base.itemsize * np.prod(shape, dtype=np.int64))
        self._lock = threading.Lock()  # for the seek-and-read fallback where os.preadv is missing
        self.memory: np.ndarray | None = None
        self.problem: str | None = None
        self.file = None
        for place in dict.fromkeys([folder, None]):  # the cache's scratch folder, else the system's
            try:
                self.file = tempfile.TemporaryFile(dir=place, prefix=f"dnncheck-{field}-")
                self.file.truncate(n * self.row_bytes)  # sparse: rows never written read as zeros
                self.fd = self.file.fileno()
                return
            except OSError as exc:
                self._drop_file()
                self.problem = str(exc)
        self.memory = np.zeros((n, *shape), base)

    def _drop_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _to_memory(self, exc: OSError) -> None:
        """The file could not take more (disk full mid-pass): what it holds and the rest go to memory."""
        self.problem = str(exc)
        memory = np.empty((self.n, *self.shape), self.dtype)
        self._read_into(memoryview(memory).cast("B"), 0)
        self._drop_file()
        self.memory = memory

    def write(self, first_row: int, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self.memory is None:
            try:
                self._write_file(first_row, values)
                return
            except OSError as exc:
                self._to_memory(exc)
        self.memory[first_row:first_row + len(values)] = values

    def _write_file(self, first_row: int, values: np.ndarray) -> None:
        data = memoryview(values).cast("B")
        offset = first_row * self.row_bytes
        while len(data):
            written = self._pwrite(data, offset)
            data, offset = data[written:], offset + written

    def read_range(self, lo: int, hi: int) -> np.ndarray:
        if self.memory is not None:
            return self.memory[lo:hi].copy()
        out = np.empty((max(0, hi - lo), *self.shape), self.dtype)
        self._read_into(memoryview(out).cast("B"), lo * self.row_bytes)
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows at `rows` (any order, repeats allowed), one positioned read per run of consecutive rows."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.memory is not None:
            return self.memory[rows]
        out = np.empty((len(rows), *self.shape), self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        buffer = np.empty_like(out)
        flat = memoryview(buffer).cast("B")
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        for s, e in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist()):
            self._read_into(flat[s * self.row_bytes:e * self.row_bytes], int(ordered[s]) * self.row_bytes)
        out[order] = buffer
        return out

    def _read_into(self, target: memoryview, offset: int) -> None:
        while len(target):
            got = self._pread(target, offset)
            if got <= 0:  # past the end (cannot happen: the file is sized at creation); zeros
                target[:] = bytes(len(target))
                return
            target, offset = target[got:], offset + got

    def _pread(self, target: memoryview, offset: int) -> int:
        if hasattr(os, "preadv"):
            return os.preadv(self.fd, [target], offset)
        with self._lock:
            self.file.seek(offset)
            return self.file.readinto(target)

    def _pwrite(self, data: memoryview, offset: int) -> int:
        if hasattr(os, "pwrite"):
            return os.pwrite(self.fd, data, offset)
        with self._lock:
            self.file.seek(offset)
            return self.file.write(data)

    def close(self) -> None:
        self._drop_file()
        self.memory = None


class RecordStore:
    """N records: light fields in `light`, heavy fields in one Column each. Filled by `put`."""

    def __init__(self, n: int, folder: str | None = None):
        """folder: where the heavy columns' files go (None: the system's temporary folder)."""
        self.light = np.zeros(n, dtype=LIGHT_DTYPE)
        self.columns = {field: Column(field, n, folder) for field in HEAVY_FIELDS}
        self._pending: list[np.ndarray] = []
        self._pending_first = 0

    def __len__(self) -> int:
        return len(self.light)

    def put(self, first: int, records: np.ndarray) -> None:
        """Full records (RECORD_DTYPE, one or more, consecutive from row `first`)."""
        records = np.atleast_1d(records)
        # a multi-field view in LIGHT_DTYPE's field order: structured assignment goes field by position
        self.light[first:first + len(records)] = records[list(LIGHT_DTYPE.names)]
        for field, column in self.columns.items():
            column.write(first, records[field])

    def add(self, row: int, record: np.ndarray) -> None:
        """One record for `row`, buffered: runs of consecutive rows are written together (`flush` ends one)."""
        if self._pending and (row != self._pending_first + len(self._pending) or len(self._pending) >= PUT_BATCH):
            self.flush()
        if not self._pending:
            self._pending_first = row
        self._pending.append(np.array(record, dtype=RECORD_DTYPE).reshape(1))

    def flush(self) -> None:
        if self._pending:
            self.put(self._pending_first, np.concatenate(self._pending))
            self._pending = []

    @property
    def problem(self) -> str | None:
        """Why heavy columns are held in memory (a full or read-only disk), for the report's notes."""
        moved = [c for c in self.columns.values() if c.memory is not None]
        if not moved:
            return None
        return (f"the scratch files for the duplicate search could not be written ({moved[0].problem}); "
                f"{len(moved)} of {len(self.columns)} record columns were kept in memory instead")

    def records(self) -> "StoredRecords":
        self.flush()
        return StoredRecords(self.light, self.columns, np.arange(len(self.light), dtype=np.int64))


class StoredRecords:
    """Records of a split: light fields in memory, heavy ones in a RecordStore's files (see the module
    docstring). Duck-types the record array for what the checks do with one."""

    dtype = RECORD_DTYPE

    def __init__(self, light: np.ndarray, columns: dict, rows: np.ndarray):
        """columns: the store's heavy columns, not the store itself: a split's records then keep only
        their own light fields, not every record's (which held 211 MB of a million images' light
        fields alive beside the splits' copies)."""
        self.light, self.columns, self.rows = light, columns, rows

    def __len__(self) -> int:
        return len(self.light)

    @property
    def nbytes(self) -> int:
        return int(self.light.nbytes + self.rows.nbytes)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key in HEAVY_FIELDS:
                return self.columns[key].read(self.rows)
            return self.light[key]
        if isinstance(key, (int, np.integer)):  # one whole record, read in
            return self[np.array([key])].materialize()[0]
        return StoredRecords(self.light[key], self.columns, self.rows[key])

    def gather(self, field: str, index) -> np.ndarray:
        """records[field][index] without reading the field's other rows."""
        if field in HEAVY_FIELDS:
            return self.columns[field].read(self.rows[np.asarray(index, dtype=np.int64)])
        return self.light[field][index]

    def chunks(self, field: str, size: int = CHUNK_ROWS):
        """(start, values) of `field` for consecutive runs of at most `size` records."""
        for start in range(0, len(self), size):
            yield start, self.gather(field, np.arange(start, min(len(self), start + size)))

    def tobytes(self) -> bytes:
        return self.materialize().tobytes()

    def __array__(self, dtype=None, copy=None):  # np.asarray(records): every field read in (small sets, tests)
        out = self.materialize()
        return out if dtype is None else out.astype(dtype)

    def materialize(self) -> np.ndarray:
        """Every field of every record in memory (a full record array; for small sets and tests)."""
        out = np.zeros(len(self), dtype=RECORD_DTYPE)
        for name in LIGHT_DTYPE.names:
            out[name] = self.light[name]
        for field in HEAVY_FIELDS:
            out[field] = self[field]
        return out


def light_fields(records) -> np.ndarray:
    """The in-memory fields of a record array or StoredRecords (for concatenating splits' statistics)."""
    if isinstance(records, StoredRecords):
        return records.light
    out = np.zeros(len(records), dtype=LIGHT_DTYPE)
    out[:] = records[list(LIGHT_DTYPE.names)]
    return out
