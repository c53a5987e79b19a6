"""Cancellation: cancelling ``arun()`` tears everything down (issue 7, item 2).

The run is cancelled once it has provably reached the state under test (a
counter or a flag set by the tasks themselves, polled every millisecond), never
after a guessed delay. Then: ``CancelledError`` propagates out of ``arun()``;
every task invocation that started ended (``TaskFailed`` for the cancelled
ones); run-scoped resources are torn down once each in reverse order and
task-scoped ones once per set-up; no asyncio task of the run is left; and
``RunFinished(ok=False)`` is the last event. (Ctrl-C on the CLI is tested in
tests/test_cli.py.)
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from cascade_graph import (
    ResourceSetUp,
    ResourceTornDown,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    inject,
    task,
)
from cascade_vm import arun

from ._support import Events, ResourceLog, install_task_recorder, unretrieved

POLL = 0.001
REACH_WITHIN = 5.0  # seconds: a generous bound before the test reports "never reached"


async def _cancel_once(target, reached, events, **options):
    """Start ``arun(target)``, cancel it when ``reached()``; return what was left behind."""
    created = install_task_recorder()
    me = asyncio.current_task()
    t = asyncio.create_task(arun(target, on_event=events, **options))
    deadline = time.monotonic() + REACH_WITHIN
    while not (reached() or t.done()) and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
    assert not t.done(), f"the run ended before it was cancelled: {t!r}"
    assert reached(), "the run never reached the state under test"
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert t.cancelled()
    pending = [x for x in created if not x.done()]
    others = {x for x in asyncio.all_tasks() if x is not me}
    lost = unretrieved(created)
    for x in lost:
        x.exception()
    return pending, others, lost


def cancel_run(target, reached, **options) -> Events:
    """Run, cancel at ``reached``, check the common guarantees; returns the events."""
    events = Events()
    pending, others, lost = uvloop.run(_cancel_once(target, reached, events, **options))
    assert pending == [], f"tasks of the run still pending after cancellation: {pending}"
    assert others == set(), f"asyncio tasks left behind: {others}"
    assert lost == [], f"tasks whose exception nobody retrieved: {lost}"
    finished = events.check_framing()
    assert finished.ok is False
    assert isinstance(finished.error, asyncio.CancelledError), finished.error
    for name in {e.task for e in events.of(TaskStarted)}:
        assert events.count(TaskStarted, name) == (
            events.count(TaskFinished, name) + events.count(TaskFailed, name)
        ), f"{name}: an invocation started but never ended"
    return events


def _check_resources(res: ResourceLog, events: Events, run_scoped, task_scoped=()):
    for name in run_scoped:
        assert res.ups(name) == [name], (name, res.log)
    res.check_run_scope_reverse(run_scoped)
    res.check_balanced(task_scoped)
    for name in list(run_scoped) + list(task_scoped):
        assert events.count(ResourceSetUp, name) == len(res.ups(name)), name
        assert events.count(ResourceTornDown, name) == len(res.downs(name)), name


# ---------------------------------------------------------------------------


def test_cancel_mid_run(engine):
    """Cancelled while async tasks wait: each is cancelled; every resource torn down once."""
    res = ResourceLog("midrun")
    conn = res.gen("conn")
    pool = res.agen("pool")
    per_call = res.gen("per_call", scope="task")
    state = {"started": 0, "cancelled": 0}

    @task(name="waiter")
    async def waiter(i, c=inject(conn), p=inject(pool), t=inject(per_call)):
        state["started"] += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise

    @task(name="gather")
    def gather(*xs):
        return xs

    events = cancel_run(
        gather(*(waiter(i) for i in range(4))), lambda: state["started"] == 4, engine=engine
    )
    assert state["cancelled"] == 4
    assert events.count(TaskFailed, "waiter") == 4
    _check_resources(res, events, [conn, pool], [per_call])
    assert len(res.ups(per_call)) == 4


@pytest.mark.parametrize("shape", ["flat", "flat-root", "async-flat", "nonflat"])
def test_cancel_mid_tail_loop(engine, hot_path, shape):
    """Cancelled inside an endless tail loop (hot or not): the loop stops, resources go down."""
    res = ResourceLog("loop")
    conn = res.gen("conn")
    pool = res.agen("pool")
    state = {"iterations": 0}

    @task(name="spin")
    def spin(n):
        state["iterations"] += 1
        return spin(n + 1)

    @task(name="aspin")
    async def aspin(n):
        state["iterations"] += 1
        return aspin(n + 1)

    @task(name="inc")
    def inc(x):
        return x + 1

    @task(name="nspin")
    def nspin(n):
        state["iterations"] += 1
        return nspin(inc(n))

    @task(name="hold")
    def hold(c=inject(conn), p=inject(pool)):
        return "held"

    @task(name="pair")
    def pair(a, b):
        return a, b

    loops = {"flat": spin(0), "flat-root": spin(0), "async-flat": aspin(0), "nonflat": nspin(0)}
    target = loops[shape] if shape == "flat-root" else pair(hold(), loops[shape])
    events = cancel_run(
        target, lambda: state["iterations"] >= 3000, engine=engine, hot_path=hot_path
    )
    if shape != "flat-root":
        _check_resources(res, events, [conn, pool])
    # the loop really stopped: no iteration runs after the cancellation
    seen = state["iterations"]
    uvloop.run(asyncio.sleep(0.02))
    assert state["iterations"] == seen


def test_cancel_mid_fan_out(engine):
    """Cancelled mid fan-out (a map of waiting async items): every item is cancelled."""
    res = ResourceLog("fanout")
    conn = res.gen("conn")
    per_call = res.agen("per_call", scope="task")
    n = 50
    state = {"started": 0, "cancelled": 0}

    @task(name="item")
    async def item(i, c=inject(conn), t=inject(per_call)):
        state["started"] += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        return i

    @task(name="total")
    def total(xs):
        return sum(xs)

    events = cancel_run(
        total(item.map(list(range(n)))), lambda: state["started"] == n, engine=engine
    )
    assert state["cancelled"] == n
    assert events.count(TaskFailed, "item") == n
    assert events.count(TaskFinished, "total") == 0
    _check_resources(res, events, [conn], [per_call])
    assert len(res.ups(per_call)) == n


def test_cancel_mid_fan_out_of_loops(engine, hot_path):
    """Cancelled while a fan-out of async tasks each runs an endless sync tail loop."""
    res = ResourceLog("fanloops")
    conn = res.gen("conn")
    state = {"iterations": {}, "launched": 0}

    @task(name="spin")
    def spin(i, n):
        state["iterations"][i] = n
        return spin(i, n + 1)

    @task(name="launch")
    async def launch(i, c=inject(conn)):
        state["launched"] += 1
        await asyncio.sleep(0)
        return spin(i, 0)

    @task(name="gather")
    def gather(*xs):
        return xs

    def reached():  # all four launched, and some loop well under way
        return state["launched"] == 4 and any(v >= 500 for v in state["iterations"].values())

    events = cancel_run(
        gather(*(launch(i) for i in range(4))), reached, engine=engine, hot_path=hot_path
    )
    _check_resources(res, events, [conn])


def test_cancel_during_retry_pause(engine):
    """Cancelled while a flaky task waits before its next attempt: no further attempt."""
    res = ResourceLog("retry")
    conn = res.gen("conn")
    per_call = res.gen("per_call", scope="task")
    state = {"attempts": 0}

    @task(name="flaky")
    def flaky(c=inject(conn), t=inject(per_call)):
        state["attempts"] += 1
        raise ConnectionError("down")

    events = cancel_run(
        flaky().with_retry(max_attempts=5, delay=3600),
        lambda: state["attempts"] == 1,
        engine=engine,
    )
    assert state["attempts"] == 1
    assert events.count(TaskRetrying, "flaky") == 1
    _check_resources(res, events, [conn], [per_call])


def test_cancel_during_resource_set_up(engine):
    """Cancelled while an async resource is being set up: the ones set up are torn down."""
    res = ResourceLog("setup")
    gate = asyncio.Event()  # never set: the second resource's set-up never ends
    first = res.gen("first")
    stuck = res.agen("stuck", setup_gate=gate)
    state = {"ran": 0}

    @task(name="needs_both")
    def needs_both(a=inject(first), b=inject(stuck)):
        state["ran"] += 1

    events = cancel_run(needs_both(), lambda: bool(res.ups(stuck)), engine=engine)
    assert state["ran"] == 0
    assert res.downs(first) == [first]
    assert events.count(ResourceTornDown, first) == 1
    assert events.count(ResourceSetUp, stuck) == 0
    assert events.count(ResourceTornDown, stuck) == 0


def test_caller_timeout_around_arun_tears_down(engine, hot_path):
    """asyncio.wait_for around arun(): TimeoutError for the caller, everything torn down."""
    res = ResourceLog("waitfor")
    conn = res.gen("conn")
    state = {"iterations": 0}

    @task(name="spin")
    def spin(n):
        state["iterations"] += 1
        return spin(n + 1)

    @task(name="hold")
    def hold(c=inject(conn)):
        return 1

    @task(name="pair")
    def pair(a, b):
        return a, b

    events = Events()

    async def main():
        created = install_task_recorder()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                arun(pair(hold(), spin(0)), engine=engine, hot_path=hot_path, on_event=events), 0.1
            )
        return [t for t in created if not t.done()]

    assert uvloop.run(main()) == []
    assert state["iterations"] > 0
    finished = events.check_framing()
    assert finished.ok is False
    _check_resources(res, events, [conn])


@pytest.mark.parametrize("shape", ["batch", "run"])
def test_cancel_in_the_middle_of_a_folded_node(engine, shape):
    """A fan-out of slow sync calls (one batch node) or a chain of slow links (one
    run node) pauses at each yield interval, so a cancellation stops it part-way:
    the calls not made yet never start, and every started one has ended."""
    state = {"calls": 0}

    def slow(x):
        state["calls"] += 1
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        return x + 1

    item = task(slow, name="slow")

    @task(name="count_items")
    def count_items(xs):
        return len(xs)

    if shape == "batch":
        target = count_items([item(i) for i in range(2000)])
    else:
        target = 0
        for _ in range(2000):
            target = item(target)
    events = cancel_run(target, lambda: state["calls"] >= 20, yield_interval=0.001)
    assert 20 <= state["calls"] < 2000
    assert events.count(TaskStarted, "slow") == state["calls"]
