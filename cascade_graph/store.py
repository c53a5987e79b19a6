"""The stores of the persistent result cache (``.with_cache``), and how a run uses them.

Keys are made in cachekey.py. A store maps a key to a stored value with an
optional expiry. Two stores:

- ``MemoryStore`` (the default): per process. It keeps each value *pickled*
  (immutable atoms as they are) and unpickles it on every read, so every
  read is a fresh copy: a task that mutates its argument cannot change what
  a later run reads. Pickle rather than ``copy.deepcopy``: the C pickler is
  many times faster, and both stores then accept exactly the same values,
  so moving a workflow from one store to the other never changes what can
  be cached.
- ``SQLiteStore(path)``: a file shared by every process that opens it. The
  file is created with mode 0600. Every entry carries an HMAC-SHA256 over
  its key, value and expiry, with a secret given as ``secret=`` or kept in
  a 0600 key file beside the database (``path + ".key"``); an entry whose
  check fails is never unpickled (a miss, removed, and a ``CacheWarning``
  naming the file). A file holding anything but Cascade's table (triggers,
  views, indexes on the table, another table definition) is refused. A
  locked file waits at most ``timeout`` seconds, then a ``StoreError``
  names the file; a corrupt one is a ``StoreError`` naming it too. See
  docs/security.md.

A run reads and writes through ``CachedCall`` (the one piece calls.py
uses): a ``SQLiteStore`` does its file I/O in a worker thread (a small
pool shared by all stores), so the event loop never waits on the file; a
``MemoryStore`` is read and written inline. A value is pickled for the
store as soon as the invocation returns it (before ``TaskFinished``), so a
value that cannot be stored fails that invocation, with a message saying
so. Other objects with ``get(key,
default)`` and ``set(key, value, ttl)`` methods work as stores too (called
inline; their own rules for what can be stored).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import numbers
import os
import pickle
import secrets
import sqlite3
import stat
import struct
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from .cachekey import cache_key
from .errors import CacheWarning, StoreError

__all__ = ["MemoryStore", "SQLiteStore", "CachedCall", "cache_key", "check_cache_policy",
           "DEFAULT_STORE", "MISSING"]

_MISSING = object()
MISSING = _MISSING

# values kept as they are: immutable, so sharing them is safe
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class Store:
    """Base of Cascade's stores: ``get``/``set`` for users, ``fetch``/``put`` for runs."""

    def prepare(self, value):
        """The stored form of ``value``; raises if it cannot be stored."""
        return pickle.dumps(value, _PROTOCOL)

    def get(self, key: str, default=_MISSING):
        raise NotImplementedError

    def set(self, key: str, value, ttl: float | None = None) -> None:
        self.put_prepared(key, self.prepare(value), ttl)

    def put_prepared(self, key: str, stored, ttl: float | None) -> None:
        raise NotImplementedError

    async def fetch(self, key: str):
        """The value under ``key`` or ``MISSING`` (called on the event loop)."""
        return self.get(key, _MISSING)

    async def put(self, key: str, stored, ttl: float | None) -> None:
        """Store a prepared value (called on the event loop)."""
        self.put_prepared(key, stored, ttl)


def _expiry(ttl: float | None) -> float | None:
    return None if ttl is None else time.time() + ttl


def _unpickle(blob, where: str):
    """``(value, None)``, or ``(MISSING, warning)`` when ``blob`` does not load."""
    try:
        return pickle.loads(blob), None
    except Exception as exc:  # noqa: BLE001 - any failure to load is a miss
        return _MISSING, (f"{where}: a cache entry could not be read back "
                          f"({type(exc).__name__}: {exc}); it was removed and will be recomputed")


# ---------------------------------------------------------------------------
# MemoryStore


class _Pickled:
    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob


class MemoryStore(Store):
    """An in-process cache store (the default): values kept pickled, read as fresh copies."""

    def __init__(self):
        self._data: dict[str, tuple] = {}
        self._lock = threading.Lock()  # runs may share the store from several threads

    def prepare(self, value):
        if type(value) in _ATOMS:
            return value
        return _Pickled(pickle.dumps(value, _PROTOCOL))

    def get(self, key: str, default=_MISSING):
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return default
            stored, expires = item
            if expires is not None and time.time() >= expires:
                del self._data[key]
                return default
        if type(stored) is not _Pickled:
            return stored
        value, warning = _unpickle(stored.blob, "MemoryStore")
        if warning is not None:
            with self._lock:
                if self._data.get(key) is item:
                    del self._data[key]
            warnings.warn(warning, CacheWarning, stacklevel=2)
            return default
        return value

    def put_prepared(self, key: str, stored, ttl: float | None) -> None:
        item = (stored, _expiry(ttl))
        with self._lock:
            self._data[key] = item

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------
# SQLiteStore: the file, its key, its entries

_TABLE = "cascade_entries"
_CREATE = (f"CREATE TABLE {_TABLE} (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, "
           "expires REAL, mac BLOB NOT NULL)")
_LEN = struct.Struct(">Q").pack
_DOUBLE = struct.Struct(">d").pack
_MAC_DOMAIN = b"cascade-cache-entry-v1\0"
_MIN_SECRET = 16  # bytes
_DELETE_IT = "delete it (it is only a cache) or choose another path"


def _private_file(path: str) -> None:
    """Create ``path`` with mode 0600 when it does not exist (an existing file is kept)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cache file {path!r} cannot be opened or created: {exc}") from exc
    os.close(fd)


def _sqlite_error(path: str, exc: sqlite3.Error, timeout: float) -> StoreError:
    """A ``StoreError`` naming the file for an sqlite3 error."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError):
        return StoreError(f"cache file {path!r}: the store was closed ({text}); "
                          "open a new SQLiteStore(path)")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return StoreError(
            f"cache file {path!r} is locked by another connection (waited {timeout:g} s): "
            f"{text}. Retry when the other process is done, pass a longer "
            "SQLiteStore(path, timeout=...), or use another path")
    return StoreError(f"cache file {path!r} is not a usable SQLite cache (corrupt, or not a "
                      f"database): {text}; {_DELETE_IT}")


def _check_schema(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a file holding code-like objects or another definition of our table."""
    for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall():
        if kind in ("trigger", "view") or (kind == "index" and table == _TABLE
                                           and sql is not None):
            raise StoreError(
                f"cache file {path!r} holds a {kind} ({name!r}); a cache file holds nothing "
                f"but Cascade's table, so it was made or changed by someone else: {_DELETE_IT}")
        if kind == "table" and name == _TABLE and sql != _CREATE:
            raise StoreError(
                f"cache file {path!r} holds a table {_TABLE!r} that Cascade did not create "
                f"({sql!r}): {_DELETE_IT}")


def _open(path: str, timeout: float) -> sqlite3.Connection:
    if path != ":memory:":
        _private_file(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc, timeout) from exc
    try:
        # a schema object may not call functions with side effects (defence in depth:
        # triggers and views are refused anyway, and no Python function is registered)
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_CREATE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        _check_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _sqlite_error(path, exc, timeout) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _given_secret(secret) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    elif not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"SQLiteStore: secret must be bytes or str, got {type(secret).__name__}")
    if len(secret) < _MIN_SECRET:
        raise ValueError(
            f"SQLiteStore: secret must be at least {_MIN_SECRET} bytes, got {len(secret)} "
            "(e.g. secrets.token_hex(32), kept out of the shared directory)")
    return bytes(secret)


def _read_key_file(kpath: str) -> bytes:
    """The secret in ``kpath``; the file must be ours, regular, and private."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(kpath, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"cache key file {kpath!r} cannot be read ({exc}); it must be a "
                         "regular file, not a symbolic link: delete it, or pass "
                         "SQLiteStore(path, secret=...)") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        problem = _key_file_problem(st)
        if problem is not None:
            raise StoreError(
                f"cache key file {kpath!r} {problem}: anyone who can write it can forge cache "
                "entries. Delete it (a new one is made; the cache starts afresh), or pass "
                "SQLiteStore(path, secret=...)")
        text = fh.read(4096)
    try:
        secret = bytes.fromhex(text.decode("ascii").strip())
    except ValueError:
        secret = b""
    if len(secret) < _MIN_SECRET:
        raise StoreError(f"cache key file {kpath!r} does not hold a secret (hex, at least "
                         f"{_MIN_SECRET} bytes): delete it so a new one is made")
    return secret


def _key_file_problem(st) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is not None and st.st_uid != uid:
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(st.st_mode):o}, must be 600)"
    return None


def _make_key_file(kpath: str) -> None:
    """Write a new random secret to ``kpath`` (0600), unless another process got there first."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(kpath)),
                               prefix=".cascade-key-")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, kpath)  # atomic: a reader never sees a half-written key
        except FileExistsError:
            pass
        except OSError:  # no hard links here: exclusive create instead
            _make_key_file_directly(kpath)
    finally:
        os.unlink(tmp)


def _make_key_file_directly(kpath: str) -> None:
    try:
        fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def _key_file_secret(kpath: str) -> bytes:
    """The secret kept in ``kpath``, made first when there is none."""
    try:
        return _read_key_file(kpath)
    except FileNotFoundError:
        pass
    try:
        _make_key_file(kpath)  # or another process made it meanwhile: then that one counts
    except OSError as exc:
        raise StoreError(f"cache key file {kpath!r} cannot be created: {exc}") from exc
    try:
        return _read_key_file(kpath)
    except FileNotFoundError as exc:
        raise StoreError(f"cache key file {kpath!r} vanished as it was made") from exc


def _mac(secret: bytes, key: str, blob: bytes, expires: float | None) -> bytes:
    """HMAC-SHA256 over the entry's key, value and expiry (each length-prefixed)."""
    k = key.encode("utf-8", "surrogatepass")
    m = hmac.new(secret, _MAC_DOMAIN, hashlib.sha256)
    m.update(_LEN(len(k)))
    m.update(k)
    m.update(_LEN(len(blob)))
    m.update(blob)
    m.update(b"\0" if expires is None else b"\1" + _DOUBLE(expires))
    return m.digest()


def _check_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"SQLiteStore: timeout must be a number of seconds, got {timeout!r}")
    timeout = float(timeout)
    if not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"SQLiteStore: timeout must be a finite number >= 0, got {timeout!r}")
    return timeout


class SQLiteStore(Store):
    """A cache store in an SQLite file, shared by every process that opens the same path.

    ``secret``: bytes or str (at least 16 bytes) that authenticates entries;
    without it a random one is kept in ``path + ".key"`` (mode 0600).
    ``timeout``: seconds to wait for a lock held by another connection.
    """

    def __init__(self, path, secret=None, *, timeout: float = 5.0):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"SQLiteStore: path must be a str or a path, got {path!r}")
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError(f"SQLiteStore: path must be a str or a path, got {path!r}")
        self.timeout = _check_timeout(timeout)
        if secret is not None:
            self._secret = _given_secret(secret)
        elif self.path == ":memory:":
            self._secret = secrets.token_bytes(32)
        else:
            self._secret = _key_file_secret(self.path + ".key")
        self._lock = threading.Lock()
        self._conn = _open(self.path, self.timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _sql(self, sql: str, params=()) -> list:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc, self.timeout) from exc

    # -- the entries --------------------------------------------------------
    def _read(self, key: str):
        """``(value or MISSING, warning or None)``; runs in any thread."""
        rows = self._sql(f"SELECT value, expires, mac FROM {_TABLE} WHERE key = ?", (key,))
        if not rows:
            return _MISSING, None
        blob, expires, mac = rows[0]
        if not _authentic(self._secret, key, blob, expires, mac):
            self._drop(key, mac)
            return _MISSING, (
                f"cache file {self.path!r}: the entry for key {key[:16]}... failed its "
                "integrity check (HMAC) and was removed without being read; something "
                "else wrote to the file, or it was written with another secret")
        if expires is not None and time.time() >= expires:
            self._drop(key, mac)
            return _MISSING, None
        value, warning = _unpickle(blob, f"cache file {self.path!r}")
        if warning is not None:
            self._drop(key, mac)
        return value, warning

    def _drop(self, key: str, mac) -> None:
        self._sql(f"DELETE FROM {_TABLE} WHERE key = ? AND mac = ?", (key, mac))

    def get(self, key: str, default=_MISSING):
        value, warning = self._read(key)
        if warning is not None:
            warnings.warn(warning, CacheWarning, stacklevel=2)
        return default if value is _MISSING else value

    def put_prepared(self, key: str, stored: bytes, ttl: float | None) -> None:
        expires = _expiry(ttl)
        mac = _mac(self._secret, key, stored, expires)
        self._sql(f"INSERT OR REPLACE INTO {_TABLE} (key, value, expires, mac) "
                  "VALUES (?, ?, ?, ?)", (key, stored, expires, mac))

    async def fetch(self, key: str):
        loop = asyncio.get_running_loop()
        value, warning = await loop.run_in_executor(_file_pool(), self._read, key)
        if warning is not None:
            warnings.warn(warning, CacheWarning, stacklevel=2)
        return value

    async def put(self, key: str, stored, ttl: float | None) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_file_pool(), self.put_prepared, key, stored, ttl)

    def clear(self) -> None:
        self._sql(f"DELETE FROM {_TABLE}")

    def __len__(self) -> int:
        return self._sql(f"SELECT COUNT(*) FROM {_TABLE}")[0][0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _file_pool() -> ThreadPoolExecutor:
    """The threads that do the file I/O of runs (never the event loop's thread).

    Shared by every store, so opening many stores makes no more threads; a
    store's own lock keeps its operations one at a time.
    """
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(4, thread_name_prefix="cascade-sqlite")
    return _POOL


def _authentic(secret: bytes, key: str, blob, expires, mac) -> bool:
    if type(blob) is not bytes or type(mac) is not bytes:
        return False
    if expires is not None and type(expires) is not float:
        return False
    return hmac.compare_digest(mac, _mac(secret, key, blob, expires))


# ---------------------------------------------------------------------------
# what .with_cache accepts, and how a run reads and writes


def is_store(obj) -> bool:
    """A Cascade store, or an object with callable ``get`` and ``set``."""
    if isinstance(obj, Store):
        return True
    return callable(getattr(obj, "get", None)) and callable(getattr(obj, "set", None))


def check_cache_policy(store, ttl):
    """Validate ``.with_cache``'s ``store`` and ``ttl``; returns ``ttl`` as a float or None."""
    if store is not None and not is_store(store):
        if isinstance(store, (str, bytes, os.PathLike)):
            raise TypeError(
                f"with_cache: store must be a store object, got the path {store!r}; for a "
                f"file use store=SQLiteStore({store!r}) (from cascade_graph import SQLiteStore)")
        raise TypeError(
            "with_cache: store must be a store object (MemoryStore(), SQLiteStore(path), or "
            "an object with get(key, default) and set(key, value, ttl) methods), got "
            f"{type(store).__name__} {store!r}")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise TypeError(f"with_cache: ttl must be a number of seconds or None, got "
                        f"{type(ttl).__name__} {ttl!r}")
    try:
        seconds = float(ttl)
    except OverflowError:
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"with_cache: ttl must be a finite number of seconds >= 0, or None "
                         f"(never expires), got {ttl!r}")
    return seconds


@functools.cache
def _lazy_types() -> tuple:
    from .lazy import _LAZY_TYPES  # lazy.py imports this module

    return _LAZY_TYPES


_NOTHING = object()


class CachedCall:
    """The store side of one call of a cached node: look up first, store the final value.

    ``check`` runs on the invocation's result before ``TaskFinished`` (so a
    value that cannot be stored fails that invocation); ``save`` stores the
    node's final value (after tail calls, preparing it then if needed).
    """

    __slots__ = ("store", "name", "key", "ttl", "stored")

    def __init__(self, store, name: str, key: str, ttl: float | None):
        self.store = store
        self.name = name
        self.key = key
        self.ttl = ttl
        self.stored = _NOTHING

    async def lookup(self):
        """The stored value or ``MISSING``."""
        store = self.store
        if isinstance(store, Store):
            return await store.fetch(self.key)
        return store.get(self.key, _MISSING)

    def check(self, value) -> None:
        """Prepare a direct value for the store now; a lazy one (a tail call) is left for later."""
        if isinstance(self.store, Store) and type(value) not in _lazy_types():
            self.stored = self._prepare(value)

    def _prepare(self, value):
        try:
            return self.store.prepare(value)
        except Exception as exc:
            raise TypeError(
                f"task {self.name!r}: its value (a {type(value).__name__}) could not be stored "
                f"in the cache: {type(exc).__name__}: {exc}. A cached value must be picklable: "
                "return plain data (no locks, open files, generators or local functions), or "
                "remove .with_cache() from this call") from exc

    async def save(self, value) -> None:
        """Store the node's final ``value``."""
        store = self.store
        if not isinstance(store, Store):
            store.set(self.key, value, self.ttl)
            return
        stored = self.stored if self.stored is not _NOTHING else self._prepare(value)
        await store.put(self.key, stored, self.ttl)


DEFAULT_STORE = MemoryStore()
