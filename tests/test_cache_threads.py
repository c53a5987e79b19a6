"""Thread safety of the shared caches: ``run()`` called from several threads at once.

The tail-call cache (``TemplateCache``) and the result cache's ``MemoryStore`` are
shared by every run in the process. Several threads, a tiny template cache that
evicts all the time, thousands of runs, and the caches' counters checked against
the truth afterwards: the node counter equals the sum of its entries' sizes, the
store holds exactly the keys written, every result is right.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from cascade_graph import MemoryStore, task
from cascade_graph import cache as cache_mod
from cascade_graph import store as store_mod
from cascade_graph.cache import TemplateCache
from cascade_vm import run
from tests.helpers import per_engine

THREADS = 6
RUNS_PER_THREAD = 250


@task
def inc(x):
    return x + 1


@task
def add(a, b):
    return a + b


@task
def walk(n, acc):
    """A non-flat tail loop: one template lookup per iteration shape."""
    return acc if n <= 0 else walk(n - 1, inc(acc))


@task
def square(x):
    return x * x


def _shape(i: int, store: MemoryStore):
    """Workflow number ``i`` (one of several structures) and its expected value."""
    kind = i % 5
    if kind == 0:
        return inc(inc(i)), i + 2
    if kind == 1:
        return add(inc(i), inc(inc(i))), 2 * i + 3
    if kind == 2:
        return walk(3, i), i + 3
    if kind == 3:
        k = i % 7
        return add(square(k).with_cache(store=store), inc(k)), k * k + k + 1
    k = i % 11
    return square(inc(k)).with_cache(store=store, ttl=0), (k + 1) ** 2  # expires at once


@pytest.fixture
def tiny_cache(monkeypatch):
    """A template cache small enough that the threads evict each other's entries."""
    small = TemplateCache(maxsize=3, maxnodes=12)
    monkeypatch.setattr(cache_mod, "SHARED", small)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: make races likely
    yield small
    sys.setswitchinterval(old)


def _check_counters(small: TemplateCache) -> None:
    entries = list(small._entries.values())
    assert small.nodes == sum(len(e.template.nodes) for e in entries)
    assert len(entries) <= small.maxsize
    assert small.nodes <= small.maxnodes or len(entries) == 1


@per_engine
def test_runs_from_many_threads_keep_the_caches_true(engine, tiny_cache):
    """Thousands of runs from several threads: right results, no errors, true counters."""
    store = MemoryStore()
    errors: list = []
    wrong: list = []
    start = threading.Barrier(THREADS)

    def worker(t: int):
        start.wait()
        for j in range(RUNS_PER_THREAD):
            i = t * RUNS_PER_THREAD + j
            target, expected = _shape(i, store)
            try:
                value = run(target, engine=engine, hot_path=(j % 2 == 0))
            except Exception as exc:  # noqa: BLE001 - collected, checked below
                errors.append(exc)
                continue
            if value != expected:
                wrong.append((i, value, expected))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert wrong == []
    _check_counters(tiny_cache)
    assert tiny_cache.hits + tiny_cache.misses >= THREADS * RUNS_PER_THREAD
    # the store holds one entry per distinct kept key: square(k) for k < 7; ttl=0 ones expired
    assert store.get("missing", None) is None
    assert 1 <= len(store) <= 7 + 11


def test_template_cache_counters_under_contention():
    """get/put from many threads on one tiny cache: counters match the entries exactly."""
    small = TemplateCache(maxsize=4, maxnodes=40)
    roots = []
    node = inc(0)
    for _ in range(30):  # 30 structures of growing size
        node = inc(node)
        roots.append(node)
    lookups = [0] * THREADS
    errors: list = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def worker(t: int):
            try:
                for j in range(600):
                    small.entry_for(roots[(t * 7 + j) % len(roots)])
                    lookups[t] += 1
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    _check_counters(small)
    assert small.hits + small.misses == sum(lookups)


class _YieldingClock:
    """A clock whose every reading lets other threads run (as a real one may, at any time)."""

    def time(self) -> float:
        time.sleep(0)
        return time.time()


def test_memory_store_under_contention(monkeypatch):
    """Concurrent get/set/expiry on one MemoryStore: no KeyError, every read a valid value."""
    monkeypatch.setattr(store_mod, "time", _YieldingClock())
    store = MemoryStore()
    errors: list = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def worker(t: int):
            try:
                for j in range(1500):
                    key = f"k{j % 5}"
                    store.set(key, [j % 5], ttl=0 if j % 3 == 0 else None)
                    got = store.get(key, None)
                    if got is not None and got != [j % 5]:
                        errors.append(("wrong", key, got))
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert len(store) <= 5
