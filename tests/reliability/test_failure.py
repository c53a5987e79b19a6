"""Task failure: nothing is lost when a task raises (issue 7, item 1).

The user's exception leaves ``run()``/``arun()`` as the very object the user
raised (same type and message, traceback reaching into the user's code) with
one note naming the task; running siblings are cancelled (each emits
``TaskFailed``); run- and task-scoped resources are torn down exactly once,
run scope in reverse order of set-up; no asyncio task of the run is left;
``RunFinished(ok=False, error=exc)`` is the last event.
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio
import traceback

import pytest

from cascade_graph import (
    ResourceSetUp,
    ResourceTornDown,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    inject,
    task,
)
from cascade_graph.errors import task_of
from cascade_vm import run

from ._support import Events, ResourceLog, cascade_notes, run_tracked


class Boom(Exception):
    """The user's own exception type."""


def user_helper(tag: str, raised: list):
    """Plain user code called from a task: the traceback must reach this frame."""
    exc = Boom(f"boom in {tag}")
    raised.append(exc)
    raise exc


def _frames(exc: BaseException) -> list:
    return [(f.name, f.filename) for f in traceback.extract_tb(exc.__traceback__)]


def _check_reaches_user_code(exc: BaseException, task_fn_name: str) -> None:
    frames = _frames(exc)
    assert frames[-1] == ("user_helper", __file__), frames[-3:]
    assert frames[-2] == (task_fn_name, __file__), frames[-3:]


# ---------------------------------------------------------------------------
# One failing task among running siblings, with run and task resources


def _failing_fanout(res: ResourceLog, n_siblings: int = 3):
    """A gather of ``n_siblings`` async siblings that wait forever and one failing task.

    The failing task waits (a bounded number of loop turns) until every sibling
    is running, so that the failure has running siblings to cancel.
    """
    run_a = res.gen("run_a")
    run_b = res.agen("run_b")
    per_call = res.gen("per_call", scope="task")
    state = {"started": 0, "cancelled": 0, "raised": []}

    @task(name="sibling")
    async def sibling(i, a=inject(run_a), t=inject(per_call)):
        state["started"] += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        return i

    @task(name="failing")
    async def failing(x, b=inject(run_b)):
        for _ in range(10_000):
            if state["started"] >= n_siblings:
                break
            await asyncio.sleep(0)
        user_helper("failing", state["raised"])

    @task(name="gather")
    def gather(*xs):
        return xs

    sibs = [sibling(i) for i in range(n_siblings)]
    target = gather(*sibs[:1], failing(0), *sibs[1:])
    return target, state, (run_a, run_b, per_call)


def test_exception_is_the_users_own_object(engine):
    """The very exception object raised in user code leaves run(), same type and message."""
    target, state, _ = _failing_fanout(ResourceLog("exc"))
    with pytest.raises(Boom) as info:
        run(target, engine=engine)
    assert info.value is state["raised"][0]
    assert type(info.value) is Boom
    assert str(info.value) == "boom in failing"


def test_traceback_reaches_into_the_users_function(engine):
    """The traceback's innermost frames are the task function and the helper it called."""
    target, _, _ = _failing_fanout(ResourceLog("tb"))
    with pytest.raises(Boom) as info:
        run(target, engine=engine)
    _check_reaches_user_code(info.value, "failing")


def test_one_note_names_the_failing_task(engine):
    """Exactly one cascade note, and task_of() reads the failing task's name from it."""
    target, _, _ = _failing_fanout(ResourceLog("note"))
    with pytest.raises(Boom) as info:
        run(target, engine=engine)
    assert task_of(info.value) == "failing"
    assert len(cascade_notes(info.value)) == 1, info.value.__notes__


def test_running_siblings_are_cancelled(engine):
    """Each running sibling sees CancelledError and emits TaskFailed (never TaskFinished)."""
    target, state, _ = _failing_fanout(ResourceLog("sib"))
    events = Events()
    with pytest.raises(Boom):
        run(target, engine=engine, on_event=events)
    assert state["started"] == 3
    assert state["cancelled"] == 3
    assert events.count(TaskStarted, "sibling") == 3
    assert events.count(TaskFailed, "sibling") == 3
    assert events.count(TaskFinished, "sibling") == 0
    for e in events.of(TaskFailed, "sibling"):
        assert isinstance(e.error, asyncio.CancelledError)
    assert events.count(TaskFailed, "failing") == 1


def test_resources_torn_down_once_in_reverse_order(engine):
    """Run-scoped resources: once each, reverse of set-up; task-scoped: one per call."""
    res = ResourceLog("res")
    target, _, (run_a, run_b, per_call) = _failing_fanout(res)
    events = Events()
    with pytest.raises(Boom):
        run(target, engine=engine, on_event=events)
    assert res.ups(run_a) == [run_a] and res.ups(run_b) == [run_b]
    res.check_run_scope_reverse([run_a, run_b])
    assert len(res.ups(per_call)) == 3
    res.check_balanced([per_call])
    # the events agree with what the resources' own code logged
    for name in (run_a, run_b, per_call):
        assert events.count(ResourceSetUp, name) == len(res.ups(name))
        assert events.count(ResourceTornDown, name) == len(res.downs(name))
    # run-scoped teardown happens after the cancelled siblings' task-scoped teardown
    last_task_down = max(i for i, (k, n) in enumerate(res.log) if k == "down" and n == per_call)
    first_run_down = min(i for i, (k, n) in enumerate(res.log) if k == "down" and n != per_call)
    assert last_task_down < first_run_down, res.log


def test_no_asyncio_task_of_the_run_is_left(engine):
    """After the failure every task the run created is done; all_tasks() holds none of them."""
    target, _, _ = _failing_fanout(ResourceLog("left"))
    out = run_tracked(target, engine=engine)
    assert isinstance(out.error, Boom)
    assert out.created >= 4  # the siblings and the failing task ran as asyncio tasks
    out.check_nothing_left()


def test_run_finished_reports_the_failure(engine):
    """RunStarted first, RunFinished(ok=False, error=<the exception>) last."""
    target, _, _ = _failing_fanout(ResourceLog("rf"))
    events = Events()
    with pytest.raises(Boom) as info:
        run(target, engine=engine, on_event=events)
    finished = events.check_framing()
    assert finished.ok is False
    assert finished.error is info.value


def test_slow_sibling_cleanup_finishes_before_teardown(engine):
    """A cancelled sibling's own cleanup (which awaits) completes before resources go down."""
    res = ResourceLog("slowclean")
    run_r = res.gen("conn")

    @task(name="sibling")
    async def sibling(c=inject(run_r)):
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)
            res.log.append(("cleanup", "sibling"))

    @task(name="failing")
    async def failing():
        await asyncio.sleep(0.01)
        raise Boom("late")

    @task(name="pair")
    def pair(a, b):
        return a, b

    with pytest.raises(Boom):
        run(pair(sibling(), failing()), engine=engine)
    assert res.log == [("up", run_r), ("cleanup", "sibling"), ("down", run_r)]


# ---------------------------------------------------------------------------
# Failure at every kind of site: inline, async, policies, loops, map, nested


def _site(kind: str):
    """(target, failing task name, function name in the traceback, state) for ``kind``."""
    state = {"raised": [], "cancelled": 0}

    @task(name="sleeper")
    async def sleeper():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise

    @task(name="pair")
    def pair(a, b):
        return (a, b)

    @task(name="fail_sync")
    def fail_sync(x):
        user_helper("sync", state["raised"])

    @task(name="fail_async")
    async def fail_async(x):
        await asyncio.sleep(0)
        user_helper("async", state["raised"])

    @task(name="fail_thread", offload=True)
    def fail_thread(x):
        user_helper("thread", state["raised"])

    @task(name="inc")
    def inc(x):
        return x + 1

    @task(name="loop")
    def loop(n):
        if n == 0:
            user_helper("loop", state["raised"])
        return loop(n - 1)

    @task(name="aloop")
    async def aloop(n):
        if n == 0:
            user_helper("aloop", state["raised"])
        return aloop(n - 1)

    @task(name="nloop")
    def nloop(n):
        if n == 0:
            user_helper("nloop", state["raised"])
        return nloop(inc(n - 2))

    @task(name="item")
    async def item(i):
        await asyncio.sleep(0)
        if i == 3:
            user_helper("item", state["raised"])
        return i

    @task(name="total")
    def total(xs):
        return sum(xs)

    @task(name="starter")
    async def starter(n):
        await asyncio.sleep(0)
        return nloop(n)

    @task(name="kw_fail")
    def kw_fail(*, x):
        user_helper("kw", state["raised"])

    chain = inc(0)
    for _ in range(300):
        chain = inc(chain)

    sites = {
        "sync-inline": (lambda: pair(sleeper(), inc(fail_sync(1))), "fail_sync", "fail_sync"),
        "async": (lambda: pair(sleeper(), inc(fail_async(1))), "fail_async", "fail_async"),
        "offloaded": (lambda: pair(sleeper(), fail_thread(1)), "fail_thread", "fail_thread"),
        "retry-exhausted": (
            lambda: pair(sleeper(), fail_sync(1).with_retry(max_attempts=2)),
            "fail_sync",
            "fail_sync",
        ),
        "keyword-call": (lambda: pair(sleeper(), kw_fail(x=[inc(1)])), "kw_fail", "kw_fail"),
        "deep-chain": (lambda: pair(sleeper(), inc(fail_sync(chain))), "fail_sync", "fail_sync"),
        "flat-loop-root": (lambda: loop(500), "loop", "loop"),
        "flat-loop": (lambda: pair(sleeper(), loop(500)), "loop", "loop"),
        "async-flat-loop": (lambda: pair(sleeper(), aloop(200)), "aloop", "aloop"),
        "nonflat-loop": (lambda: pair(sleeper(), nloop(400)), "nloop", "nloop"),
        "map-item": (lambda: pair(sleeper(), total(item.map(list(range(6))))), "item", "item"),
        "started-continuation": (
            lambda: pair(sleeper(), pair(starter(100), starter(300))),
            "nloop",
            "nloop",
        ),
        "container-target": (
            lambda: [sleeper(), {"x": (inc(1), fail_async(2))}],
            "fail_async",
            "fail_async",
        ),
    }
    make, name, fn_name = sites[kind]
    return make(), name, fn_name, state


SITES = [
    "sync-inline",
    "async",
    "offloaded",
    "retry-exhausted",
    "keyword-call",
    "deep-chain",
    "flat-loop-root",
    "flat-loop",
    "async-flat-loop",
    "nonflat-loop",
    "map-item",
    "started-continuation",
    "container-target",
]


@pytest.mark.parametrize("kind", SITES)
def test_failure_at_every_site(engine, hot_path, kind):
    """Same object, one note naming the task, traceback into user code, siblings cancelled,
    nothing left, RunFinished(ok=False) last, wherever the failing call sits."""
    target, name, fn_name, state = _site(kind)
    events = Events()
    out = run_tracked(target, engine=engine, hot_path=hot_path, on_event=events)
    exc = out.error
    assert isinstance(exc, Boom), repr(exc)
    # the first failure observed; after retries, the last attempt's exception
    assert exc is state["raised"][-1 if kind == "retry-exhausted" else 0]
    assert task_of(exc) == name
    assert len(cascade_notes(exc)) == 1, exc.__notes__
    _check_reaches_user_code(exc, fn_name)
    out.check_nothing_left()
    if events.count(TaskStarted, "sleeper"):
        assert state["cancelled"] == 1
        assert events.count(TaskFailed, "sleeper") == 1
    finished = events.check_framing()
    assert finished.ok is False and finished.error is exc
    # every invocation that started ended with exactly one Finished or Failed
    for tname in {e.task for e in events.of(TaskStarted)}:
        assert events.count(TaskStarted, tname) == (
            events.count(TaskFinished, tname) + events.count(TaskFailed, tname)
        ), tname


def test_first_failure_observed_wins(engine):
    """Two tasks fail one after the other: the first one's exception leaves run()."""
    flag = {}

    @task(name="first")
    async def first():
        await asyncio.sleep(0.001)
        flag["ev"].set()
        raise Boom("first")

    @task(name="second")
    async def second():
        await flag["ev"].wait()
        raise KeyError("second")

    @task(name="pair")
    def pair(a, b):
        return a, b

    async def main():
        from cascade_vm import arun

        flag["ev"] = asyncio.Event()
        return await arun(pair(second(), first()), engine=engine)

    import uvloop

    with pytest.raises(Boom, match="first"):
        uvloop.run(main())


def test_engine_runs_normally_after_a_failure(engine, hot_path):
    """A failed run leaves nothing behind that breaks the next run of the same shapes."""
    fail = {"on": True}

    @task(name="step")
    def step(n):
        if fail["on"] and n == 3:
            raise Boom("step 3")
        return "done" if n == 0 else step(n - 1)

    @task(name="inc")
    def inc(x):
        return x + 1

    @task(name="pair")
    def pair(a, b):
        return a, b

    with pytest.raises(Boom):
        run(pair(inc(1), step(10)), engine=engine, hot_path=hot_path)
    fail["on"] = False
    assert run(pair(inc(1), step(10)), engine=engine, hot_path=hot_path) == (2, "done")
    assert run(step(10), engine=engine, hot_path=hot_path) == "done"
