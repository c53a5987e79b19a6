"""The stores of ``.with_cache`` (SPEC section 2): SQLiteStore's file security, fresh
copies from both stores, the checks on ``ttl=``/``store=``, and values that cannot
be stored.

Every workflow test runs on both engines. The hostile files are made with the
stdlib ``sqlite3`` module the way an attacker with write access to a shared
directory would make them.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import sqlite3
import stat
import threading
import time
import warnings

import pytest

from cascade_graph import MemoryStore, SQLiteStore, TaskFailed, TaskFinished, TaskStarted, task
from cascade_graph.errors import CacheWarning, StoreError, task_of
from cascade_vm import run
from tests.helpers import per_engine, run_failing, run_on

# ---------------------------------------------------------------------------
# helpers


class Evil:
    """Unpickling this writes a marker file: the proof that a pickle from the file ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path: str) -> str:
    with open(path, "a") as fh:
        fh.write("ran\n")
    return "attacker's value"


@task(name="rate")
def rate(x):
    _CALLS.append(x)
    return {"rate": x * 2}


_CALLS: list = []


@pytest.fixture(autouse=True)
def _fresh_calls():
    _CALLS.clear()
    yield
    _CALLS.clear()


@pytest.fixture
def umask022():
    old = os.umask(0o022)  # the usual umask: files 0644 unless made otherwise
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _rows(path) -> list:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = []
        for t in tables:
            out += conn.execute(f"SELECT * FROM {t}").fetchall()
        return out
    finally:
        conn.close()


def _overwrite_values(path, blob: bytes) -> int:
    """Replace every stored value in every table of ``path`` (the attacker's edit)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        n = 0
        for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            n += conn.execute(f"UPDATE {t} SET value = ?", (blob,)).rowcount
        return n
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# class 1: the SQLite file, its key, its entries


@per_engine
def test_sqlite_files_created_private(engine, tmp_path, umask022):
    """The database, its WAL files and its key file are created 0600 (not 0644)."""
    db = tmp_path / "c.sqlite"
    store = SQLiteStore(db)  # kept open: its WAL files exist while it is
    assert run(rate(1).with_cache(store=store), engine=engine) == {"rate": 2}
    made = [p for p in tmp_path.iterdir() if p.name.startswith("c.sqlite")]
    assert {db.name, db.name + "-wal", db.name + "-shm"} <= {p.name for p in made}
    for p in made:
        assert _mode(p) == 0o600, (p.name, oct(_mode(p)))
    assert (tmp_path / "c.sqlite.key").exists()


@per_engine
def test_tampered_value_is_never_unpickled(engine, tmp_path):
    """A value edited in the file fails the HMAC: not unpickled, a miss, removed, warned."""
    db = tmp_path / "c.sqlite"
    marker = tmp_path / "pwned"
    store = SQLiteStore(db)
    assert run(rate(3).with_cache(store=store), engine=engine) == {"rate": 6}
    assert _overwrite_values(db, pickle.dumps(Evil(str(marker)))) >= 1
    with pytest.warns(CacheWarning, match=str(db)):
        value = run(rate(3).with_cache(store=SQLiteStore(db)), engine=engine)
    assert value == {"rate": 6}
    assert not marker.exists()
    assert _CALLS == [3, 3]  # recomputed, then stored again under a valid HMAC
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(rate(3).with_cache(store=SQLiteStore(db)), engine=engine) == {"rate": 6}
    assert _CALLS == [3, 3]


@per_engine
def test_prefilled_file_rows_are_never_unpickled(engine, tmp_path):
    """An attacker's file, made in advance with evil rows under every plausible table: no code
    runs, whatever the key."""
    db = tmp_path / "shared.sqlite"
    marker = tmp_path / "pwned"
    store = SQLiteStore(tmp_path / "probe.sqlite")  # learn the key the way anyone can
    run(rate(5).with_cache(store=store), engine=engine)
    key = _rows(tmp_path / "probe.sqlite")[0][0]
    evil = pickle.dumps(Evil(str(marker)))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE cascade_cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                 "expires REAL)")  # the table of earlier versions
    conn.execute("INSERT INTO cascade_cache VALUES (?, ?, NULL)", (key, evil))
    conn.execute("CREATE TABLE cascade_entries (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT "
                 "NULL, expires REAL, mac BLOB NOT NULL)")
    conn.execute("INSERT INTO cascade_entries VALUES (?, ?, NULL, ?)", (key, evil, b"\0" * 32))
    conn.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run(rate(5).with_cache(store=SQLiteStore(db)), engine=engine) == {"rate": 10}
        assert run(rate(5).with_cache(store=SQLiteStore(db)), engine=engine) == {"rate": 10}
    assert not marker.exists()
    assert _CALLS == [5, 5]  # the probe's run, then the forged entry was a miss
    assert [w for w in caught if issubclass(w.category, CacheWarning)
            and str(db) in str(w.message)]


def _hostile_trigger_file(db, marker) -> None:
    """A file whose tables rewrite every inserted value into an evil pickle."""
    evil = pickle.dumps(Evil(str(marker)))
    conn = sqlite3.connect(db, isolation_level=None)
    for table, columns in (("cascade_cache", "key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                                             "expires REAL"),
                           ("cascade_entries", "key TEXT PRIMARY KEY NOT NULL, value BLOB NOT "
                                               "NULL, expires REAL, mac BLOB NOT NULL")):
        conn.execute(f"CREATE TABLE {table} ({columns})")
        conn.execute(f"CREATE TRIGGER evil_{table} AFTER INSERT ON {table} BEGIN "
                     f"UPDATE {table} SET value = x'{evil.hex()}' WHERE key = NEW.key; END")
    conn.close()


@per_engine
def test_file_with_trigger_is_refused(engine, tmp_path):
    """A file prepared with an AFTER INSERT trigger is refused, naming the file; nothing runs."""
    db = tmp_path / "shared.sqlite"
    marker = tmp_path / "pwned"
    _hostile_trigger_file(db, marker)
    with pytest.raises(StoreError, match="trigger") as info:
        store = SQLiteStore(db)
        for _ in range(2):
            run(rate(7).with_cache(store=store), engine=engine)
    assert str(db) in str(info.value)
    assert not marker.exists()


def test_foreign_table_definition_and_views_are_refused(tmp_path):
    """Our table defined otherwise, or a view, or an index on our table: refused."""
    cases = {
        "other-columns": ["CREATE TABLE cascade_entries (key TEXT, value BLOB, expires REAL, "
                          "mac BLOB, extra TEXT)"],
        "view": ["CREATE VIEW cascade_view AS SELECT 1"],
        "index": ["CREATE TABLE cascade_entries (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT "
                  "NULL, expires REAL, mac BLOB NOT NULL)",
                  "CREATE INDEX cascade_idx ON cascade_entries (value)"],
    }
    for name, statements in cases.items():
        db = tmp_path / f"{name}.sqlite"
        conn = sqlite3.connect(db, isolation_level=None)
        for sql in statements:
            conn.execute(sql)
        conn.close()
        with pytest.raises(StoreError) as info:
            SQLiteStore(db)
        assert str(db) in str(info.value), name


def test_other_tables_are_ignored(tmp_path):
    """A file with an unrelated table (e.g. an old cache table) is used; that table is not read."""
    db = tmp_path / "c.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    s = SQLiteStore(db)
    s.set("k", [1])
    assert s.get("k") == [1]


@per_engine
def test_corrupt_file_is_an_error_naming_it(engine, tmp_path):
    """A file that is not a database: StoreError naming the file, at open."""
    db = tmp_path / "c.sqlite"
    db.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreError) as info:
        run(rate(1).with_cache(store=SQLiteStore(db)), engine=engine)
    assert str(db) in str(info.value)
    assert "corrupt" in str(info.value)
    assert _CALLS == []


@per_engine
def test_file_corrupted_while_open_fails_the_task_naming_file(engine, tmp_path):
    """A file damaged under an open store: the cached task fails naming the file."""
    db = tmp_path / "c.sqlite"
    store = SQLiteStore(db)
    store.set("warm", 1)
    store.close()
    store = SQLiteStore(db)
    for p in tmp_path.iterdir():
        if p.name.startswith("c.sqlite") and not p.name.endswith(".key"):
            p.write_bytes(b"\xff" * 8192)
    exc, _ = run_failing(engine, rate(2).with_cache(store=store))
    assert isinstance(exc, StoreError)
    assert str(db) in str(exc)
    assert task_of(exc) == "rate"


@task
async def ticker(gaps: list, seconds: float):
    """Ticks every 10 ms for ``seconds``, recording the longest gap between ticks."""
    last = time.perf_counter()
    end = last + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return "ticked"


@per_engine
def test_locked_file_is_an_error_and_the_loop_keeps_running(engine, tmp_path):
    """A write lock held elsewhere: a bounded wait off the event loop, then StoreError naming
    the file and saying it is locked."""
    db = tmp_path / "c.sqlite"
    store = SQLiteStore(db, timeout=1.0)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    gaps: list = []
    try:
        started = time.perf_counter()
        exc, _ = run_failing(engine, [rate(4).with_cache(store=store), ticker(gaps, 3.0)])
        waited = time.perf_counter() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(exc, StoreError), exc
    assert str(db) in str(exc) and "locked" in str(exc)
    assert task_of(exc) == "rate"
    assert 0.9 <= waited < 2.9  # the bounded wait, not the ticker's 3 s and no hang
    assert gaps and max(gaps) < 0.5, max(gaps)  # generous: the loop was never held


def test_locked_file_at_open_is_an_error(tmp_path):
    """A file locked (rollback journal) when the store opens it: StoreError after the timeout."""
    db = tmp_path / "c.sqlite"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked") as info:
            SQLiteStore(db, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(db) in str(info.value)


def test_key_file_is_made_private_and_reused(tmp_path, umask022):
    """Without secret=, a random secret is kept in path + '.key' (0600) and reused."""
    db = tmp_path / "c.sqlite"
    SQLiteStore(db).set("k", {"v": 1})
    key_file = tmp_path / "c.sqlite.key"
    assert _mode(key_file) == 0o600
    secret = key_file.read_text().strip()
    assert len(bytes.fromhex(secret)) == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SQLiteStore(db).get("k") == {"v": 1}
    assert key_file.read_text().strip() == secret


@pytest.mark.parametrize("problem", ["open-to-others", "symlink", "empty"])
def test_unsafe_key_file_is_refused(tmp_path, problem):
    """A key file others could have written (or planted) is an error naming it."""
    db = tmp_path / "c.sqlite"
    key_file = tmp_path / "c.sqlite.key"
    if problem == "open-to-others":
        key_file.write_text("ab" * 32 + "\n")
        key_file.chmod(0o666)
    elif problem == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text("ab" * 32 + "\n")
        target.chmod(0o600)
        key_file.symlink_to(target)
    else:
        key_file.write_text("")
        key_file.chmod(0o600)
    with pytest.raises(StoreError) as info:
        SQLiteStore(db)
    assert str(key_file) in str(info.value)


def test_given_secret_makes_no_key_file_and_separates(tmp_path):
    """secret= is used instead of a key file; an entry written with another secret fails its
    check (a miss with a warning), never a wrong value."""
    db = tmp_path / "c.sqlite"
    a = SQLiteStore(db, secret="a" * 32)
    a.set("k", "from a")
    assert not (tmp_path / "c.sqlite.key").exists()
    assert SQLiteStore(db, secret=b"a" * 32).get("k") == "from a"
    with pytest.warns(CacheWarning, match="integrity"):
        assert SQLiteStore(db, secret="b" * 32).get("k", "miss") == "miss"
    assert SQLiteStore(db, secret="a" * 32).get("k", "miss") == "miss"  # it was removed


@pytest.mark.parametrize("secret, error", [("short", ValueError), (12345, TypeError)])
def test_bad_secret_is_refused(tmp_path, secret, error):
    """A secret too short to resist guessing, or not bytes/str: refused, naming secret."""
    with pytest.raises(error, match="secret"):
        SQLiteStore(tmp_path / "c.sqlite", secret=secret)


def test_sqlite_store_path_must_be_a_path():
    """SQLiteStore(42) is a TypeError naming the path argument."""
    with pytest.raises(TypeError, match="path"):
        SQLiteStore(42)


def test_expiry_is_authenticated(tmp_path, monkeypatch):
    """Moving an entry's expiry in the file makes it fail its check (not live longer)."""
    db = tmp_path / "c.sqlite"
    s = SQLiteStore(db)
    s.set("k", "v", ttl=60)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE cascade_entries SET expires = expires + 1e9")
    conn.close()
    with pytest.warns(CacheWarning):
        assert s.get("k", "miss") == "miss"


def test_entry_moved_to_another_key_fails(tmp_path):
    """A valid entry copied under another key fails its check: the HMAC covers the key."""
    db = tmp_path / "c.sqlite"
    s = SQLiteStore(db)
    s.set("a", "value of a")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO cascade_entries SELECT 'b', value, expires, mac "
                 "FROM cascade_entries WHERE key = 'a'")
    conn.close()
    with pytest.warns(CacheWarning):
        assert s.get("b", "miss") == "miss"
    assert s.get("a") == "value of a"


def test_sqlite_store_len_and_clear(tmp_path):
    """len() counts entries; clear() empties the file."""
    s = SQLiteStore(tmp_path / "c.sqlite")
    s.set("a", 1)
    s.set("b", 2)
    assert len(s) == 2
    s.clear()
    assert len(s) == 0
    s.close()


# ---------------------------------------------------------------------------
# class 3: every read is a fresh copy


@task
def make_list(n):
    _CALLS.append(n)
    return [n, {"inner": [n]}]


@task
def vandal(value):
    """A downstream task that mutates its argument in place."""
    value.append("poison")
    value[1]["inner"].append("poison")
    return len(value)


def _stores(tmp_path):
    return {"memory": MemoryStore(), "sqlite": SQLiteStore(tmp_path / "c.sqlite")}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@per_engine
def test_downstream_mutation_does_not_poison_the_cache(engine, tmp_path, kind):
    """A task mutating a cached value (on the computing run and on a hit) changes no later run."""
    store = _stores(tmp_path)[kind]
    for _ in range(3):
        lazy = make_list(1).with_cache(store=store)
        assert run([lazy, vandal(lazy)], engine=engine) == [[1, {"inner": [1, "poison"]},
                                                              "poison"], 3]
    assert run(make_list(1).with_cache(store=store), engine=engine) == [1, {"inner": [1]}]
    assert _CALLS == [1]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_get_returns_a_fresh_copy(tmp_path, kind):
    """get() never hands out the stored object, nor the object that was set."""
    store = _stores(tmp_path)[kind]
    value = {"a": [1, 2]}
    store.set("k", value)
    value["a"].append(3)
    first = store.get("k")
    assert first == {"a": [1, 2]}
    first["a"].append(4)
    assert store.get("k") == {"a": [1, 2]}
    assert store.get("k") is not store.get("k")


def test_memory_store_keeps_atoms_as_they_are():
    """Immutable atoms need no copy: the same object comes back."""
    s = MemoryStore()
    big = 10**50
    s.set("k", big)
    assert s.get("k") is big


# ---------------------------------------------------------------------------
# class 5: ttl= and store= checked when .with_cache() is called


@task
def ident(x):
    return x


@pytest.mark.parametrize("ttl, error, words", [
    ("60", TypeError, "ttl"),
    (True, TypeError, "ttl"),
    ([1], TypeError, "ttl"),
    (math.nan, ValueError, "finite"),
    (math.inf, ValueError, "finite"),
    (-1, ValueError, ">= 0"),
    (10**400, ValueError, "finite"),
])
def test_bad_ttl_is_refused_when_given(ttl, error, words):
    """ttl must be a finite number >= 0 or None: checked at .with_cache(), naming ttl."""
    with pytest.raises(error, match="ttl") as info:
        ident(1).with_cache(ttl=ttl)
    assert words in str(info.value)


@pytest.mark.parametrize("store, words", [
    ("x.sqlite", "SQLiteStore('x.sqlite')"),
    (b"x.sqlite", "SQLiteStore"),
    (42, "store object"),
    ({}, "store object"),
])
def test_bad_store_is_refused_when_given(store, words):
    """store= must be a store object; a path says to use SQLiteStore(path)."""
    with pytest.raises(TypeError, match="store") as info:
        ident(1).with_cache(store=store)
    assert words in str(info.value)


def test_path_object_store_is_refused(tmp_path):
    """A pathlib.Path is a path, not a store."""
    with pytest.raises(TypeError, match="SQLiteStore"):
        ident(1).with_cache(store=tmp_path / "x.sqlite")


@per_engine
def test_valid_ttls_work(engine):
    """ttl=0 expires at once (recomputed each run); an int ttl is accepted and kept."""
    store = MemoryStore()
    calls = _CALLS  # a global: a closure over a growing list would change the key each call

    @task
    def f(x):
        _CALLS.append(x)
        return x

    assert f(1).with_cache(ttl=0).policy.cache.ttl == 0.0
    assert f(1).with_cache(ttl=5).policy.cache.ttl == 5.0
    assert run(f(1).with_cache(store=store, ttl=0, key="t"), engine=engine) == 1
    assert run(f(1).with_cache(store=store, ttl=0, key="t"), engine=engine) == 1
    assert len(calls) == 2
    assert run(f(2).with_cache(store=store, ttl=3600, key="t"), engine=engine) == 2
    assert run(f(2).with_cache(store=store, ttl=3600, key="t"), engine=engine) == 2
    assert len(calls) == 3


@per_engine
def test_duck_typed_store_is_accepted(engine):
    """Any object with get(key, default) and set(key, value, ttl) is a store."""

    class DictStore:
        def __init__(self):
            self.data = {}

        def get(self, key, default=None):
            return self.data.get(key, default)

        def set(self, key, value, ttl=None):
            self.data[key] = value

    store = DictStore()
    assert run(rate(8).with_cache(store=store), engine=engine) == {"rate": 16}
    assert run(rate(8).with_cache(store=store), engine=engine) == {"rate": 16}
    assert _CALLS == [8] and len(store.data) == 1


# ---------------------------------------------------------------------------
# class 16: a value the store cannot serialise fails that task


@task(name="locky")
def locky(x):
    return {"x": x, "lock": threading.Lock()}


@task(name="hands_off")
def hands_off(x):
    return locky(x)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@per_engine
def test_unstorable_value_fails_that_task(engine, tmp_path, kind):
    """TaskFailed for the task (no TaskFinished), its note names it, the message says the value
    could not be stored in the cache and how to fix it."""
    store = _stores(tmp_path)[kind]
    exc, rec = run_failing(engine, ident(locky(1).with_cache(store=store)))
    assert type(exc) is TypeError
    assert task_of(exc) == "locky"
    msg = str(exc)
    assert "could not be stored in the cache" in msg and "picklable" in msg
    assert "lock" in msg  # the underlying reason
    assert "locky" in msg
    assert len(rec.of(TaskStarted, "locky")) == 1
    assert rec.of(TaskFinished, "locky") == []
    assert [e.error for e in rec.of(TaskFailed, "locky")] == [exc]
    assert len(store) == 0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@per_engine
def test_unstorable_final_value_after_tail_call_names_the_cached_task(engine, tmp_path, kind):
    """The cached node's final value comes from a tail call: the error names the cached task."""
    store = _stores(tmp_path)[kind]
    exc, rec = run_failing(engine, hands_off(2).with_cache(store=store))
    assert type(exc) is TypeError and "could not be stored in the cache" in str(exc)
    assert task_of(exc) == "hands_off"
    assert len(store) == 0


@per_engine
def test_storable_values_of_many_kinds_round_trip(engine, tmp_path):
    """Anything picklable is cached and comes back equal, in both stores."""
    import fractions

    value = {"t": (1, 2.5, None), "s": {1, 2}, "f": fractions.Fraction(1, 3), "b": b"\0",
             "deep": [[[["x"]]]]}

    @task
    def give(x):
        return value

    for store in _stores(tmp_path).values():
        assert run(give(1).with_cache(store=store, key="k"), engine=engine) == value
        got, rec = run_on(engine, give(1).with_cache(store=store, key="k"))
        assert got == value and got is not value
        assert rec.of(TaskStarted) == []


def test_closed_store_is_a_clear_error(tmp_path):
    """Using a store after close() names the file and says it was closed."""
    s = SQLiteStore(tmp_path / "c.sqlite")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get("k")
