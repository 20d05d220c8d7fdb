"""A cache of per-file records, so that a second audit of unchanged files skips decoding them.

An entry is keyed by the file's absolute path, size and modification time (nanoseconds) and holds
the record computed with given settings (dnncheck's RECORD_VERSION and the decode size): a changed
file, a new dnncheck record format or another decode size is a miss, and the file is read again.
Each entry carries a checksum of its key, settings and bytes; an entry that fails it (a torn write, a
foreign or corrupt database) is ignored and rewritten, never trusted.

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
from pathlib import Path

import numpy as np

from dnncheck.data.records import RECORD_DTYPE, RECORD_VERSION

DB_NAME = f"records-v{RECORD_VERSION}.sqlite"


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


def file_key(path: Path) -> str | None:
    """path, size and mtime of a file, or None when it cannot be stat'ed (then it is not cached)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    # file names need not be valid UTF-8: latin-1 over the raw bytes is a lossless text key
    name = os.fsencode(os.path.abspath(path)).decode("latin-1")
    return f"{name}\0{info.st_size}\0{info.st_mtime_ns}"


class RecordCache:
    """get_many / put_many of (record, reason) per file key, for one set of decode settings."""

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
            except sqlite3.DatabaseError:  # not our database, or corrupt: start a new one
                path.unlink(missing_ok=True)
                return self._connect(path)
        except (OSError, sqlite3.Error) as exc:
            self.problem = f"record cache in {self.directory} unavailable ({exc}); every file is decoded"
            return None

    @staticmethod
    def _connect(path: Path):
        db = sqlite3.connect(path, timeout=60)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, settings TEXT, blob BLOB, "
                       "reason TEXT, checksum BLOB)")
            db.execute("SELECT key, settings, blob, reason, checksum FROM records LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _checksum(self, key: str, blob: bytes, reason: str) -> bytes:
        return hashlib.blake2b(b"\0".join([key.encode(), self.settings.encode(), blob,
                                           reason.encode("utf-8", "surrogateescape")]), digest_size=16).digest()

    def get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, str]]:
        if self._db is None or not keys:
            return {}
        found = {}
        try:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = self._db.execute(f"SELECT key, settings, blob, reason, checksum FROM records WHERE key IN "
                                        f"({','.join('?' * len(part))})", part).fetchall()
                for key, settings, blob, reason, checksum in rows:
                    if (settings == self.settings and isinstance(blob, bytes) and len(blob) == RECORD_DTYPE.itemsize
                            and isinstance(reason, str) and checksum == self._checksum(key, blob, reason)):
                        found[key] = (np.frombuffer(blob, dtype=RECORD_DTYPE).copy(), reason)
        except sqlite3.Error as exc:
            self.problem = f"record cache unreadable ({exc}); files were decoded"
            return {}
        return found

    def put_many(self, items: list[tuple[str, np.ndarray, str]]) -> None:
        if self._db is None or not items:
            return
        rows = []
        for key, record, reason in items:
            blob = record.tobytes()
            rows.append((key, self.settings, blob, reason, self._checksum(key, blob, reason)))
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self.problem = f"record cache not written ({exc})"

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
