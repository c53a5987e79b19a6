"""Determinism: same value and same per-task event counts, every time (issue 7, item 7).

One workflow exercising fan-out, a map over lazies, a diamond, an async tail
loop, retried flaky tasks, a skip, ``.after``, an offloaded task and a
container target, with async tasks
sleeping random tiny delays so completion order changes from run to run. It
runs 200 times on each engine; every run must give the same value and the
same Counter of (event type, task) as every other run, on both engines, and
with the tail cache and hot path off.
"""

from __future__ import annotations

import asyncio
import collections
import random

import pytest
import uvloop

from cascade_graph import TaskFinished, TaskStarted, task
from cascade_vm import arun

from ._support import Events

RUNS = 200
RNG = random.Random(20240607)
ATTEMPTS: collections.Counter = collections.Counter()


async def jitter():
    """Sleep a random tiny delay (0 to 1 ms), or just yield."""
    if RNG.random() < 0.5:
        await asyncio.sleep(RNG.random() * 0.001)
    else:
        await asyncio.sleep(0)


@task(name="fetch")
async def fetch(i):
    await jitter()
    return i * i


@task(name="double")
async def double(x):
    await jitter()
    return 2 * x


@task(name="add")
def add(a, b):
    return a + b


@task(name="total")
def total(xs):
    return sum(xs)


@task(name="threaded", offload=True)
def threaded(xs):
    return sorted(xs)


@task(name="countdown")
async def countdown(n):
    if RNG.random() < 0.2:
        await asyncio.sleep(0)
    return n if n <= 0 else countdown(n - 1)


@task(name="flaky")
async def flaky(key):
    await jitter()
    ATTEMPTS[key] += 1
    if ATTEMPTS[key] < 3:
        raise ConnectionError(f"{key} attempt {ATTEMPTS[key]}")
    return f"{key} ok"


def build():
    squares = [fetch(i) for i in range(8)]
    doubled = double.map(squares)
    s = total(doubled)
    skipped = add(1, 2).run_if(False)
    return {
        "diamond": add(s, fetch(10)),
        "loop": countdown(25),
        "flaky": flaky("a").with_retry(max_attempts=3),
        "skipped": add(skipped, 1),
        "pair": (add(fetch(1), fetch(2)), s),
        "after": add(1, 1).after(fetch(3), flaky("b").with_retry(max_attempts=3)),
        "threaded": threaded([fetch(5), fetch(4)]),
    }


EXPECTED = {
    "diamond": 2 * sum(i * i for i in range(8)) + 100,
    "loop": 0,
    "flaky": "a ok",
    "skipped": None,
    "pair": (5, 2 * sum(i * i for i in range(8))),
    "after": 2,
    "threaded": [16, 25],
}


def _runs(engine, n, **options):
    """Run the workflow ``n`` times in one loop; list of (value, Counter, events)."""

    async def main():
        out = []
        for _ in range(n):
            ATTEMPTS.clear()
            events = Events()
            value = await arun(build(), engine=engine, on_event=events, **options)
            out.append((value, events.counts(), events))
        return out

    return uvloop.run(main())


_BASELINE: dict = {}


def _baseline():
    """The Counter of one plain VM run, shared by the tests of this module."""
    if "counts" not in _BASELINE:
        ((value, counts, _),) = _runs("vm", 1)
        assert value == EXPECTED
        _BASELINE["counts"] = counts
    return _BASELINE["counts"]


def test_two_hundred_runs_same_value_and_event_counts(engine):
    """200 runs with random tiny delays: each value and each Counter equals the VM's first."""
    baseline = _baseline()
    runs = _runs(engine, RUNS)
    for k, (value, counts, _) in enumerate(runs):
        assert value == EXPECTED, f"run {k}: {value!r}"
        assert counts == baseline, f"run {k}: {counts - baseline} / {baseline - counts}"


@pytest.mark.parametrize(
    "options",
    [
        {"hot_path": False},
        {"tail_cache": False},
        {"hot_path": False, "tail_cache": False},
    ],
    ids=["nohot", "nocache", "nohot-nocache"],
)
def test_switches_do_not_change_value_or_events(engine, options):
    """With the hot path or the tail cache off: same value, same Counter, 20 runs each."""
    baseline = _baseline()
    for value, counts, _ in _runs(engine, 20, **options):
        assert value == EXPECTED
        assert counts == baseline


def test_expected_event_counts(engine):
    """The Counter says what the workflow did: e.g. 26 countdown calls, 3 attempts per flaky."""
    ((_, counts, events),) = _runs(engine, 1)
    assert counts["TaskStarted", "fetch"] == 14
    assert counts["TaskStarted", "double"] == 8
    assert counts["TaskStarted", "countdown"] == 26
    assert counts["TailCall", "countdown"] == 25
    assert counts["TaskStarted", "flaky"] == 6
    assert counts["TaskRetrying", "flaky"] == 4
    assert counts["TaskFinished", "threaded"] == 1
    assert counts["TaskSkipped", "add"] == 2  # the false condition, then its consumer
    # every task starts only after the tasks it depends on have finished
    seq = events.events
    start_total = seq.index(next(e for e in seq if type(e) is TaskStarted and e.task == "total"))
    last_double = max(
        i for i, e in enumerate(seq) if type(e) is TaskFinished and e.task == "double"
    )
    assert last_double < start_total
