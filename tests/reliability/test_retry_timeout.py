"""Retry and timeout under faults (issue 7, item 3).

Flaky tasks (fail k times, then succeed) run exactly the expected number of
attempts, with the events to match; timeouts fire on async tasks stuck
forever, and teardown still happens. What a timeout can and cannot interrupt
(docs/guarantees.md): an async task is cancelled; an inline sync task runs to
its end and then fails with ``TimeoutError``; an offloaded thread cannot be
stopped, but the run does not wait for it.
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio
import collections
import threading
import time

import pytest
import uvloop

from cascade_graph import (
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    inject,
    task,
)
from cascade_graph.errors import task_of
from cascade_vm import arun, run

from ._support import Events, ResourceLog, run_tracked


def _flaky_task(attempts: collections.Counter, fail_times: dict, is_async=False):
    """A task ``flaky(key)`` failing ``fail_times[key]`` times with ConnectionError, then ok."""
    if is_async:

        @task(name="flaky")
        async def flaky(key):
            await asyncio.sleep(0)
            attempts[key] += 1
            if attempts[key] <= fail_times[key]:
                raise ConnectionError(f"{key}: attempt {attempts[key]} failed")
            return f"{key} ok after {attempts[key]}"

    else:

        @task(name="flaky")
        def flaky(key):
            attempts[key] += 1
            if attempts[key] <= fail_times[key]:
                raise ConnectionError(f"{key}: attempt {attempts[key]} failed")
            return f"{key} ok after {attempts[key]}"

    return flaky


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "fails,max_attempts", [(0, 3), (1, 3), (2, 3), (3, 3), (7, 3), (0, 1), (1, 1), (4, 10)]
)
def test_flaky_task_runs_exactly_the_expected_attempts(engine, is_async, fails, max_attempts):
    """min(fails + 1, max_attempts) attempts; success iff fails < max_attempts."""
    attempts: collections.Counter = collections.Counter()
    flaky = _flaky_task(attempts, {"k": fails}, is_async)
    events = Events()
    expected = min(fails + 1, max_attempts)
    target = flaky("k").with_retry(max_attempts=max_attempts)
    if fails < max_attempts:
        assert run(target, engine=engine, on_event=events) == f"k ok after {expected}"
    else:
        with pytest.raises(ConnectionError, match=f"attempt {expected} failed") as info:
            run(target, engine=engine, on_event=events)
        assert task_of(info.value) == "flaky"
    assert attempts["k"] == expected
    assert events.count(TaskStarted, "flaky") == expected
    assert events.count(TaskFailed, "flaky") == min(fails, max_attempts)
    assert events.count(TaskRetrying, "flaky") == expected - 1
    assert events.count(TaskFinished, "flaky") == (1 if fails < max_attempts else 0)
    assert [e.attempt for e in events.of(TaskRetrying)] == list(range(1, expected))


def test_retry_events_are_ordered(engine):
    """Each TaskRetrying sits between the failed attempt's TaskFailed and the next TaskStarted."""
    attempts: collections.Counter = collections.Counter()
    flaky = _flaky_task(attempts, {"k": 3})
    events = Events()
    run(flaky("k").with_retry(max_attempts=5), engine=engine, on_event=events)
    kinds = [type(e).__name__ for e in events.events if getattr(e, "task", None) == "flaky"]
    assert kinds == ["TaskStarted", "TaskFailed", "TaskRetrying"] * 3 + [
        "TaskStarted",
        "TaskFinished",
    ]


def test_errors_not_in_retry_on_are_not_retried(engine):
    """An exception outside retry_on fails at the first attempt."""
    attempts: collections.Counter = collections.Counter()
    flaky = _flaky_task(attempts, {"k": 5})
    with pytest.raises(ConnectionError):
        run(flaky("k").with_retry(max_attempts=4, retry_on=(KeyError,)), engine=engine)
    assert attempts["k"] == 1


def test_each_map_item_retries_on_its_own(engine):
    """.with_retry on a map: every item gets its own attempts."""
    attempts: collections.Counter = collections.Counter()
    fail_times = {f"i{i}": i % 3 for i in range(12)}
    flaky = _flaky_task(attempts, fail_times, is_async=True)
    events = Events()
    keys = list(fail_times)
    out = run(flaky.map(keys).with_retry(max_attempts=3), engine=engine, on_event=events)
    assert out == [f"{k} ok after {fail_times[k] + 1}" for k in keys]
    assert dict(attempts) == {k: n + 1 for k, n in fail_times.items()}
    assert events.count(TaskStarted, "flaky") == sum(n + 1 for n in fail_times.values())
    assert events.count(TaskRetrying, "flaky") == sum(fail_times.values())


def test_concurrent_flaky_tasks_each_exact(engine):
    """Twenty concurrent flaky async calls, each with its own retry budget and count."""
    attempts: collections.Counter = collections.Counter()
    fail_times = {f"c{i}": i % 4 for i in range(20)}
    flaky = _flaky_task(attempts, fail_times, is_async=True)

    @task(name="gather")
    def gather(*xs):
        return xs

    target = gather(*(flaky(k).with_retry(max_attempts=4) for k in fail_times))
    out = run(target, engine=engine)
    assert len(out) == 20
    assert dict(attempts) == {k: n + 1 for k, n in fail_times.items()}


def test_task_resources_per_attempt_and_run_resources_once(engine):
    """Every attempt sets up and tears down its task-scoped resource; run scope: once."""
    res = ResourceLog("retryres")
    conn = res.gen("conn")
    per_call = res.agen("per_call", scope="task")
    state = {"n": 0}

    @task(name="flaky")
    def flaky(c=inject(conn), t=inject(per_call)):
        state["n"] += 1
        if state["n"] < 4:
            raise ConnectionError("again")
        return state["n"]

    assert run(flaky().with_retry(max_attempts=5), engine=engine) == 4
    assert len(res.ups(per_call)) == 4 and len(res.downs(per_call)) == 4
    assert res.ups(conn) == [conn] and res.downs(conn) == [conn]


def test_retry_does_not_cover_tail_calls(engine):
    """A task that succeeds and tail-calls a failing task is not re-run by its retry."""
    state = collections.Counter()

    @task(name="fails")
    def fails(x):
        state["fails"] += 1
        raise ValueError("continuation failed")

    @task(name="outer")
    def outer(x):
        state["outer"] += 1
        return fails(x)

    with pytest.raises(ValueError, match="continuation failed") as info:
        run(outer(1).with_retry(max_attempts=3), engine=engine)
    assert state == {"outer": 1, "fails": 1}
    assert task_of(info.value) == "fails"


# ---------------------------------------------------------------------------
# Timeouts


def _stuck(res: ResourceLog, state: dict):
    conn = res.gen("conn")
    per_call = res.agen("per_call", scope="task")

    @task(name="stuck")
    async def stuck(c=inject(conn), t=inject(per_call)):
        state["started"] += 1
        try:
            await asyncio.Event().wait()  # forever
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise

    return stuck, conn, per_call


def test_timeout_fires_on_an_async_task_stuck_forever(engine):
    """TimeoutError naming the task; the stuck call was cancelled; resources torn down."""
    res = ResourceLog("stuck")
    state = collections.Counter()
    stuck, conn, per_call = _stuck(res, state)
    events = Events()
    out = run_tracked(stuck().with_timeout(0.05), engine=engine, on_event=events)
    assert isinstance(out.error, TimeoutError), out.error
    assert "stuck" in str(out.error)
    assert task_of(out.error) == "stuck"
    assert state == {"started": 1, "cancelled": 1}
    assert res.log == [("up", conn), ("up", per_call), ("down", per_call), ("down", conn)]
    assert events.count(TaskFailed, "stuck") == 1
    out.check_nothing_left()
    finished = events.check_framing()
    assert finished.ok is False and finished.error is out.error


def test_timeout_with_retry_times_out_every_attempt(engine):
    """Each attempt times out and is retried; teardown per attempt; TimeoutError at the end."""
    res = ResourceLog("stuckretry")
    state = collections.Counter()
    stuck, conn, per_call = _stuck(res, state)
    events = Events()
    with pytest.raises(TimeoutError):
        run(stuck().with_timeout(0.02).with_retry(max_attempts=3), engine=engine, on_event=events)
    assert state == {"started": 3, "cancelled": 3}
    assert len(res.ups(per_call)) == 3 and len(res.downs(per_call)) == 3
    assert res.ups(conn) == [conn] and res.downs(conn) == [conn]
    assert events.count(TaskRetrying, "stuck") == 2


def test_timeout_in_a_fan_out_cancels_the_rest(engine):
    """One stuck item among working ones: TimeoutError, the others cancelled, nothing left."""
    state = collections.Counter()

    @task(name="item")
    async def item(i):
        state["started"] += 1
        try:
            await asyncio.sleep(3600 if i == 0 else 0)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        return i

    @task(name="slow")
    async def slow():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["slow cancelled"] += 1
            raise

    @task(name="pair")
    def pair(a, b):
        return a, b

    out = run_tracked(pair(slow(), item.map(list(range(10))).with_timeout(0.05)), engine=engine)
    assert isinstance(out.error, TimeoutError), out.error
    assert state["started"] == 10
    assert state["cancelled"] == 1  # the stuck item, by its timeout
    assert state["slow cancelled"] == 1  # the sibling, because the run failed
    out.check_nothing_left()


def test_timeout_does_not_cover_tail_calls(engine):
    """The timeout covers the task's own invocation; its continuation may take longer."""

    @task(name="slow_continuation")
    async def slow_continuation():
        await asyncio.sleep(0.1)
        return "finished"

    @task(name="quick")
    async def quick():
        return slow_continuation()

    assert run(quick().with_timeout(0.05), engine=engine) == "finished"


def test_inline_sync_task_runs_to_completion_then_times_out(engine):
    """An inline sync call cannot be interrupted: it finishes, then fails with TimeoutError."""
    state = collections.Counter()

    @task(name="busy")
    def busy():
        time.sleep(0.05)
        state["completed"] += 1
        return "result dropped"

    with pytest.raises(TimeoutError, match="busy") as info:
        run(busy().with_timeout(0.01), engine=engine)
    assert state["completed"] == 1
    assert task_of(info.value) == "busy"


def test_inline_sync_task_within_its_timeout_returns(engine):
    """A sync call that finishes in time is unaffected by its timeout."""

    @task(name="fast")
    def fast(x):
        return x * 2

    assert run(fast(21).with_timeout(5), engine=engine) == 42


def _offloaded():
    release = threading.Event()
    state = {"finished": False}

    @task(name="blocked", offload=True)
    def blocked():
        release.wait(1.0)
        state["finished"] = True
        return "late"

    return blocked, release, state


def test_offloaded_timeout_in_arun_does_not_wait_for_the_thread(engine):
    """arun(): TimeoutError arrives while the thread is still blocked (it cannot be stopped)."""
    blocked, release, state = _offloaded()

    async def main():
        with pytest.raises(TimeoutError, match="blocked"):
            await arun(blocked().with_timeout(0.05), engine=engine)
        return state["finished"]

    try:
        finished_when_raised = uvloop.run(main())
    finally:
        release.set()
    assert finished_when_raised is False
    deadline = time.monotonic() + 5  # the thread was not stopped: it ends once released
    while not state["finished"] and time.monotonic() < deadline:
        time.sleep(0.001)
    assert state["finished"] is True


def test_offloaded_timeout_in_run_does_not_wait_for_the_thread(engine):
    """run(): the TimeoutError leaves run() while the thread is still blocked.

    SPEC: "an offloaded task's thread cannot be stopped (the run moves on)". A
    run() that waits for the thread before raising does not move on: a thread
    stuck forever would hang run() forever, defeating the timeout.
    """
    blocked, release, state = _offloaded()
    try:
        with pytest.raises(TimeoutError, match="blocked"):
            run(blocked().with_timeout(0.05), engine=engine)
        finished_when_raised = state["finished"]
    finally:
        release.set()
    assert finished_when_raised is False


def test_stuck_task_without_timeout_can_be_bounded_by_the_caller(engine):
    """No timeout policy: the caller's own deadline (asyncio.wait_for) still tears down."""
    res = ResourceLog("callerbound")
    state = collections.Counter()
    stuck, conn, per_call = _stuck(res, state)

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(arun(stuck(), engine=engine), 0.05)

    uvloop.run(main())
    assert state == {"started": 1, "cancelled": 1}
    res.check_balanced([conn, per_call])
