"""The persistent result cache of ``.with_cache``: stable keys and two stores.

A cache key is a SHA-256 over the function's ``module.qualname``, a
fingerprint of its code (bytecode, constants, nested code, defaults, closure
values) and a stable encoding of the bound argument values (injected
resources excluded). Stable values are ``None``, ``bool``, ``int``, ``float``,
``complex``, ``str``, ``bytes`` and builtin containers of them; anything else
is a ``TypeError`` naming the task and the argument. ``key=`` (a string, or
a callable on the call's arguments returning one) is mixed in to separate
tasks that would otherwise share entries.

Stores map a key to a value with an optional expiry: ``MemoryStore`` (per
process, the default) and ``SQLiteStore`` (a file shared across processes,
values pickled).
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import threading
import time
import types

_MISSING = object()


class _Unstable(TypeError):
    pass


def _encode(value, out: list) -> None:
    """Append a stable, type-tagged encoding of ``value`` (iterative)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if v is None or t is bool:
            out.append(f"{t.__name__}:{v!r};")
        elif t in (int, float, complex, str):
            out.append(f"{t.__name__}:{v!r};")
        elif t is bytes:
            out.append(f"bytes:{v.hex()};")
        elif t in (list, tuple):
            out.append(f"{t.__name__}[{len(v)}:")
            stack.append(_Mark("]"))
            stack.extend(reversed(v))
        elif t is dict:
            out.append(f"dict[{len(v)}:")
            stack.append(_Mark("]"))
            for k in reversed(list(v)):
                stack.append(v[k])
                stack.append(k)
        elif t in (set, frozenset):
            parts = []
            for item in v:
                sub: list = []
                _encode(item, sub)
                parts.append("".join(sub))
            out.append(f"{t.__name__}[{len(v)}:" + "".join(sorted(parts)) + "]")
        elif t is _Mark:
            out.append(v.text)
        else:
            raise _Unstable(t.__name__)


class _Mark:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _code_fingerprint(fn, out: list) -> None:
    codes = [getattr(fn, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is None:
            continue
        out.append(code.co_code.hex())
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                codes.append(c)
            else:
                out.append(repr(c))
        out.append(repr(code.co_names))
    for d in (getattr(fn, "__defaults__", None) or ()):
        out.append(repr(d))
    for k, d in sorted((getattr(fn, "__kwdefaults__", None) or {}).items()):
        out.append(f"{k}={d!r}")
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            out.append(repr(cell.cell_contents))
        except ValueError:
            out.append("<empty>")


def cache_key(task, spec, bound: dict) -> str:
    """The stable key of one call of ``task`` with ``bound`` arguments (name -> value)."""
    fn = task.fn
    parts = [f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', task.name)}"]
    _code_fingerprint(fn, parts)
    for name, value in bound.items():
        try:
            parts.append(f"|{name}=")
            _encode(value, parts)
        except _Unstable as exc:
            raise TypeError(
                f"task {task.name!r}: argument {name!r} is a {exc.args[0]}, which has no stable "
                "hash for .with_cache(); pass None/bool/int/float/complex/str/bytes or builtin "
                "containers of them (convert the argument, e.g. to a str or a tuple)"
            ) from None
    if spec.key is not None:
        k = spec.key(**bound) if callable(spec.key) else spec.key
        if not isinstance(k, str):
            raise TypeError(f"task {task.name!r}: cache key function returned {k!r}, not a str")
        parts.append(f"|key={k}")
    return hashlib.sha256("".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


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
