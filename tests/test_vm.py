"""The register VM (SPEC section 5): dispatch loop, frames, tail calls, concurrency."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cascade_graph import (
    MemoryStore,
    Param,
    TaskFinished,
    TaskStarted,
    inject,
    resource,
    task,
)
from cascade_vm import run
from cascade_vm.jit import HOT_AFTER
from tests.helpers import Calls, run_on, ticks_during


def _depth():
    f = sys._getframe()
    n = 0
    while f is not None:
        n += 1
        f = f.f_back
    return n


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


def _assert_constant(depths):
    """One depth while the dispatch loop runs the body, one more once it is a
    compiled block (jit.py): constant either way, never growing with the loop."""
    assert len(set(depths[:HOT_AFTER])) == 1
    assert len(set(depths[HOT_AFTER + 1:])) == 1
    assert max(depths) - min(depths) <= 1


def test_root_tail_call_reuses_frame():
    """A non-flat root tail loop runs at a constant Python stack depth."""
    depths = []

    @task
    def probe(x):
        depths.append(_depth())
        return x

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, probe(acc + 1))

    assert run(step(300, 0), engine="vm", hot_path=False) == 300
    _assert_constant(depths)


def test_non_root_tail_call_no_python_recursion():
    """A tail loop below the root also keeps a constant Python stack depth."""
    depths = []

    @task
    def probe(x):
        depths.append(_depth())
        return x

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, probe(acc + 1))

    assert run(add(step(300, 0), 1), engine="vm", hot_path=False) == 301
    _assert_constant(depths)


def test_independent_async_calls_overlap():
    """Two independent async calls both start before either finishes."""

    @task
    async def nap(x):
        await asyncio.sleep(0.01)
        return x

    value, rec = run_on("vm", add(nap(1), nap(2)))
    assert value == 3
    starts = [i for i, e in enumerate(rec.events) if type(e) is TaskStarted and e.task == nap.name]
    first_finish = rec.index(TaskFinished, nap.name)
    assert len(starts) == 2 and max(starts) < first_finish


def test_started_task_tail_loops_stay_concurrent():
    """Two async tail loops started together interleave their iterations."""
    order = []

    @task
    async def loop(tag, n):
        order.append(tag)
        await asyncio.sleep(0.002)
        return tag if n == 0 else loop(tag, n - 1)

    assert run(add(loop("a", 5), loop("b", 5)), engine="vm", hot_path=False) == "ab"
    assert order.index("b") < len(order) - 1 - order[::-1].index("a")


def test_failure_of_later_task_wakes_await():
    """A started task failing while the VM awaits an earlier one stops the run promptly."""
    seen = []

    @task
    async def slow():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return 1

    @task
    async def bad():
        await asyncio.sleep(0.01)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run(add(slow(), bad()), engine="vm")
    assert seen == ["cancelled"]


def test_skipped_start_is_not_awaited():
    """An async call skipped before it starts leaves nothing to await."""

    @task
    async def aident(x):
        return x

    @task
    def pair(a, b):
        return (a, b)

    skipped = aident(1).run_if(False)
    assert run([aident(2), pair(aident(skipped), 3)], engine="vm") == [2, None]


def test_every_feature_runs_without_graph_executor(monkeypatch):
    """The VM runs every language feature natively: the graph executor is never used."""
    import cascade_graph.executor as ex

    def forbidden(*a, **k):
        raise AssertionError("the VM handed work to the graph executor")

    monkeypatch.setattr(ex, "execute", forbidden)
    monkeypatch.setattr(ex.GraphRun, "__init__", forbidden)
    calls = Calls()

    @resource(name="vm_native_res")
    def res():
        yield "R"

    @task
    def use(x, r=inject("vm_native_res")):
        return f"{r}{x}"

    @task
    def flaky(x):
        calls.hit("flaky")
        if calls["flaky"] < 2:
            raise OSError("again")
        return x

    @task
    async def anap(x):
        await asyncio.sleep(0)
        return x

    @task
    def loop(n, acc):
        return acc if n == 0 else loop(n - 1, ident(acc + 1))

    store = MemoryStore()
    target = {
        "map": ident.map([1, 2, 3]),
        "retry": flaky(7).with_retry(3),
        "timeout": anap(1).with_timeout(5),
        "cache": ident(4).with_cache(store=store),
        "res": use(1),
        "param": ident(Param("vm_p", default=2, type=int)),
        "gate": ident(1).run_if(False),
        "after": ident(2).after(ident(3)),
        "loop": loop(10, 0),
        "nested": [anap(5), {"k": (anap(6),)}],
    }
    assert run(target, engine="vm") == {
        "map": [1, 2, 3], "retry": 7, "timeout": 1, "cache": 4, "res": "R1", "param": 2,
        "gate": None, "after": 2, "loop": 10, "nested": [5, {"k": (6,)}],
    }


def test_frame_registers_independent_per_run():
    """Two runs of the same compiled code do not share register state."""

    @task
    def pair(a, b):
        return (a, b)

    assert run(pair(ident(1), ident(2)), engine="vm") == (1, 2)
    assert run(pair(ident(3), ident(4)), engine="vm") == (3, 4)


def test_concurrent_arun_same_template_isolated():
    """Concurrent runs of one template in one loop keep their own values."""
    from cascade_vm import arun

    @task
    async def nap(x):
        await asyncio.sleep(0.001 * (x % 3))
        return x

    async def main():
        return await asyncio.gather(*(arun(add(nap(i), nap(i * 10)), engine="vm")
                                      for i in range(20)))

    assert asyncio.run(main()) == [i * 11 for i in range(20)]


def test_vm_yields_in_sync_workflow():
    """A long sync (non-flat) workflow on the VM yields to other coroutines."""

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    during = ticks_during(step(50_000, 0), engine="vm", hot_path=False)
    assert 2 <= during < 50_000 // 10


def test_async_value_awaited_at_first_use():
    """A consumer of a fast async call runs before a slow, independent async call finishes."""

    @task
    async def slow():
        await asyncio.sleep(0.3)
        return 1

    @task
    async def fast():
        return 2

    @task
    def consume(x):
        return x * 10

    @task
    def pair(a, b):
        return (a, b)

    value, rec = run_on("vm", pair(slow(), consume(fast())))
    assert value == (1, 20)
    assert rec.index(TaskStarted, consume.name) < rec.index(TaskFinished, slow.name)
