"""A cache of per-file records, so that a second audit of unchanged files skips decoding them.

What it trusts (as git's index does): an entry is keyed by the file's absolute path, size,
modification time, status-change time (nanoseconds), inode and device. Replacing a file, even by one
of the same size with its old mtime restored (`touch -r`, regenerated fixed-size BMP/TIFF, 1-second
file systems), changes its ctime or inode, which no user tool can set back: the file is read again.
What it cannot see is content rewritten in place by a tool that also restores ctime (only root, by
changing the clock). For that, and for file systems that reuse inodes and round times,
`--verify-cache` (`[data] verify_cache = true`) hashes every file (BLAKE2b of its bytes, stored with
each record when it is made) and decodes again any whose hash differs; `--no-cache` reads everything.

Each entry also holds the settings the record was computed with (dnncheck's RECORD_VERSION and the
decode size) and a checksum of key, settings and bytes; an entry that fails it (a torn write, a
foreign or corrupt database) is ignored and rewritten, never trusted. Records of files that could
not be decoded are stored compressed (they are all zeros but for the reason): 50,000 empty files
made a 482 MB cache at full record size.

Faults degrade to "no cache" with one note, never a failed audit: a database another process keeps
locked is waited for LOCK_WAIT_SECONDS and then left alone (never deleted: the other audit is using
it); a damaged database is rebuilt once; an unwritable folder turns the cache off.

Where: $DNNCHECK_CACHE_DIR, else the platform's user cache folder ($XDG_CACHE_HOME/dnncheck, else
~/.cache/dnncheck on Linux; ~/Library/Caches/dnncheck on macOS; %LOCALAPPDATA%/dnncheck/Cache on
Windows). Never next to the user's files. SQLite (Python's standard library) gives atomic
transactions and safe use by two audits at once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import zlib
from pathlib import Path

import numpy as np

from dnncheck.data.records import RECORD_DTYPE, RECORD_VERSION
from dnncheck.errors import UserError

CACHE_SCHEMA = 2  # 2: keys with ctime/inode/device, content digests, compressed failed records
DB_NAME = f"records-v{RECORD_VERSION}-s{CACHE_SCHEMA}.sqlite"
LOCK_WAIT_SECONDS = 10.0  # how long a lock held by another process is waited for before the cache is bypassed
DIGEST_CHUNK = 1 << 20


def cache_dir() -> Path:
    override = os.environ.get("DNNCHECK_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "dnncheck"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "dnncheck" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dnncheck"


def refuse_cache_inside(folders: dict[str, Path | None], config_path: Path | None) -> None:
    """UserError (exit 2) when the cache folder lies inside a data folder, an external set or the
    config file's folder tree: dnncheck never writes into the user's data or project (and an audit
    would then list its own cache). The config's folder counts unless it is the home folder or above
    it, where every default cache location lies."""
    cache = Path(os.path.realpath(cache_dir()))
    places = {what: folder for what, folder in folders.items() if folder is not None and Path(folder).is_dir()}
    if config_path is not None:
        home = Path(os.path.realpath(Path.home()))
        config_folder = Path(os.path.realpath(Path(config_path).parent))
        if config_folder != home and config_folder not in home.parents:
            places["config file's folder"] = config_folder
    for what, folder in places.items():
        real = Path(os.path.realpath(folder))
        if cache == real or real in cache.parents:
            named = "DNNCHECK_CACHE_DIR" if os.environ.get("DNNCHECK_CACHE_DIR") else "the cache folder"
            place = what if what.endswith("folder") else f"{what} folder"
            raise UserError(f"{named} = {cache} lies inside the {place} {folder}; dnncheck never writes there: "
                            "set DNNCHECK_CACHE_DIR to a folder outside your data and project")


def file_key(path: Path) -> str | None:
    """path, size, mtime, ctime, inode and device of a file, or None when it cannot be stat'ed (then
    it is not cached)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    # file names need not be valid UTF-8: latin-1 over the raw bytes is a lossless text key
    name = os.fsencode(os.path.abspath(path)).decode("latin-1")
    return "\0".join([name, str(info.st_size), str(info.st_mtime_ns), str(info.st_ctime_ns), str(info.st_ino),
                      str(info.st_dev)])


def content_digest(path) -> str:
    """BLAKE2b (128-bit) of a regular file's bytes, hex; "" when it cannot be read or is not a regular
    file (opened non-blocking and checked first: a FIFO would block, /dev/zero never end)."""
    import stat

    digest = hashlib.blake2b(digest_size=16)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        with os.fdopen(fd, "rb", closefd=False) as handle:
            for block in iter(lambda: handle.read(DIGEST_CHUNK), b""):
                digest.update(block)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return digest.hexdigest()


def digest_chunk(paths: list[str]) -> list[str]:
    return [content_digest(p) for p in paths]


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class RecordCache:
    """iter_many / put_many of (record, reason, digest) per file key, for one set of decode settings."""

    def __init__(self, directory: Path, settings: str):
        self.directory = directory
        self.settings = f"v{RECORD_VERSION};{settings}"
        self.problem: str | None = None  # why the cache is off, for the report's notes
        self._db = self._open()

    def _open(self):
        path = self.directory / DB_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                return self._connect(path)
            except sqlite3.DatabaseError as exc:
                if _is_busy(exc):
                    raise
                path.unlink(missing_ok=True)  # not our database, or damaged: rebuilt once
                db = self._connect(path)
                self.problem = f"record cache {path} was damaged ({exc}) and was rebuilt; every file was decoded"
                return db
        except (OSError, sqlite3.Error) as exc:
            self._give_up(exc, "unavailable")
            return None

    @staticmethod
    def _connect(path: Path):
        db = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, settings TEXT, blob BLOB, "
                       "reason TEXT, digest TEXT, checksum BLOB)")
            db.execute("SELECT key, settings, blob, reason, digest, checksum FROM records LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _give_up(self, exc: BaseException, what: str) -> None:
        """The cache is off for the rest of this audit, with one note saying why."""
        db = getattr(self, "_db", None)  # None while the database is being opened
        if db is not None:
            db.close()
        self._db = None
        if _is_busy(exc):
            self.problem = (f"record cache in {self.directory} is busy (another process held its lock for over "
                            f"{LOCK_WAIT_SECONDS:g} s); this audit went on without it and left it in place")
        elif self.problem is None:
            self.problem = f"record cache in {self.directory} {what} ({exc}); files were decoded"

    def _checksum(self, key: str, blob: bytes, reason: str, digest: str) -> bytes:
        return hashlib.blake2b(b"\0".join([key.encode(), self.settings.encode(), blob,
                                           reason.encode("utf-8", "surrogateescape"), digest.encode()]),
                               digest_size=16).digest()

    def iter_many(self, keys: list[str]):
        """(key, record, reason, digest) of each valid entry among `keys`, 500 at a time: the caller
        copies each record where it belongs (a dict of every hit held a second copy of all records,
        235 MB for 25,000 photos, and left the heap fragmented). A record is only valid until the
        next one is read. A database error ends the stream (with the cache's note)."""
        if self._db is None or not keys:
            return
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            try:
                rows = self._db.execute(f"SELECT key, settings, blob, reason, digest, checksum FROM records WHERE "
                                        f"key IN ({','.join('?' * len(part))})", part).fetchall()
            except sqlite3.Error as exc:
                self._give_up(exc, "unreadable")
                return
            for key, settings, blob, reason, digest, checksum in rows:
                record = self._record(key, settings, blob, reason, digest, checksum)
                if record is not None:
                    yield key, record, reason, digest

    def _record(self, key, settings, blob, reason, digest, checksum) -> np.ndarray | None:
        """The stored record when the entry is whole and made with these settings, else None."""
        if not (settings == self.settings and isinstance(blob, bytes) and isinstance(reason, str)
                and isinstance(digest, str) and checksum == self._checksum(key, blob, reason, digest)):
            return None
        if reason:  # failed files' records are stored compressed
            try:
                blob = zlib.decompress(blob)
            except zlib.error:
                return None
        if len(blob) != RECORD_DTYPE.itemsize:
            return None
        return np.frombuffer(blob, dtype=RECORD_DTYPE)

    def put_many(self, items: list[tuple[str, np.ndarray, str, str]]) -> None:
        if self._db is None or not items:
            return
        rows = []
        for key, record, reason, digest in items:
            blob = record.tobytes()
            if reason:
                blob = zlib.compress(blob, 6)
            rows.append((key, self.settings, blob, reason, digest, self._checksum(key, blob, reason, digest)))
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self._give_up(exc, "not written")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
