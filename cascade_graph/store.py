"""The persistent result cache of ``.with_cache``: two stores (keys: cachekey.py).

Stores map a key to a value with an optional expiry: ``MemoryStore`` (per
process, the default) and ``SQLiteStore`` (a file shared across processes,
values pickled).
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time

from .cachekey import cache_key

__all__ = ["MemoryStore", "SQLiteStore", "cache_key", "DEFAULT_STORE", "MISSING"]

_MISSING = object()


class MemoryStore:
    """An in-process cache store (the default)."""

    def __init__(self):
        self._data: dict[str, tuple] = {}

    def get(self, key: str, default=_MISSING):
        item = self._data.get(key)
        if item is None:
            return default
        value, expires = item
        if expires is not None and time.time() >= expires:
            del self._data[key]
            return default
        return value

    def set(self, key: str, value, ttl: float | None = None) -> None:
        self._data[key] = (value, None if ttl is None else time.time() + ttl)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class SQLiteStore:
    """A cache store in an SQLite file, shared by every process that opens the same path."""

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cascade_cache "
            "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL)"
        )

    def get(self, key: str, default=_MISSING):
        with self._lock:
            row = self._conn.execute(
                "SELECT value, expires FROM cascade_cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return default
        if row[1] is not None and time.time() >= row[1]:
            return default
        return pickle.loads(row[0])

    def set(self, key: str, value, ttl: float | None = None) -> None:
        blob = pickle.dumps(value)
        expires = None if ttl is None else time.time() + ttl
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO cascade_cache (key, value, expires) VALUES (?, ?, ?)",
                (key, blob, expires),
            )

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM cascade_cache")

    def close(self) -> None:
        self._conn.close()


DEFAULT_STORE = MemoryStore()
MISSING = _MISSING
