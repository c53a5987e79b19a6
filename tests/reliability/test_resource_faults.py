"""Resource faults: failing set-up or teardown (issue 7, item 8).

A resource whose set-up fails, or whose teardown fails, is reported clearly
(the exception names the resource), and the teardown of every other resource
still runs: run scope once each in reverse order of set-up, task scope once
per set-up. SPEC: a teardown error is raised after every teardown ran, unless
the run already failed (then the run's own error leaves ``run()`` unchanged,
and the teardown failure must still be reported: a note on that error).
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio
import collections

import pytest
import uvloop

from cascade_graph import (
    ResourceError,
    ResourceSetUp,
    ResourceTornDown,
    TaskFailed,
    TaskStarted,
    inject,
    resource,
    task,
)
from cascade_graph.errors import task_of
from cascade_vm import arun, run

from ._support import Events, ResourceLog, run_tracked


def _mentions(exc: BaseException, name: str) -> bool:
    """True when the exception's message or one of its notes names ``name``."""
    return name in str(exc) or any(name in n for n in getattr(exc, "__notes__", None) or ())


@task(name="pair")
def pair(a, b):
    return a, b


# ---------------------------------------------------------------------------
# Set-up failures


def _bad_resource(res: ResourceLog, kind: str) -> str:
    """Register a resource named 'bad' whose set-up raises OSError, of the given kind."""
    if kind == "generator":
        return res.gen("bad", fail_setup=OSError("cannot connect to db:5432"))
    if kind == "async-generator":
        return res.agen("bad", fail_setup=OSError("cannot connect to db:5432"))
    full = res.name("bad")

    def bad():
        res.log.append(("up", full))
        raise OSError("cannot connect to db:5432")

    resource(bad, name=full)
    return full


@pytest.mark.parametrize("kind", ["generator", "async-generator", "function"])
def test_setup_failure_is_reported_and_the_others_torn_down(engine, kind):
    """The set-up's own exception, noting resource and task; every other resource torn down."""
    res = ResourceLog("setupfail")
    conn = res.gen("conn")
    pool = res.agen("pool")
    per_call = res.gen("per_call", scope="task")
    bad = _bad_resource(res, kind)
    state = collections.Counter()

    @task(name="ready")
    async def ready(c=inject(conn), p=inject(pool)):
        return "ready"

    @task(name="waiting")
    async def waiting(t=inject(per_call)):
        state["waiting"] += 1
        await asyncio.sleep(3600)

    @task(name="needs_bad")
    async def needs_bad(x, b=inject(bad)):
        state["needs_bad body"] += 1

    events = Events()
    out = run_tracked(pair(waiting(), needs_bad(ready())), engine=engine, on_event=events)
    exc = out.error
    assert type(exc) is OSError and str(exc) == "cannot connect to db:5432", repr(exc)
    assert _mentions(exc, f"setting up resource {bad!r}"), exc.__notes__
    assert task_of(exc) == "needs_bad"
    assert state["needs_bad body"] == 0
    assert res.ups(bad) == [bad] and res.downs(bad) == []
    assert events.count(ResourceSetUp, bad) == 0 and events.count(ResourceTornDown, bad) == 0
    res.check_run_scope_reverse([conn, pool])
    assert res.downs(conn) == [conn] and res.downs(pool) == [pool]
    res.check_balanced([per_call])
    out.check_nothing_left()
    finished = events.check_framing()
    assert finished.ok is False and finished.error is exc


def test_failed_run_resource_is_set_up_once_per_run(engine):
    """Three concurrent users of a run-scoped resource whose set-up fails: one attempt."""
    res = ResourceLog("setuponce")
    bad = res.agen("bad", fail_setup=OSError("no"))

    @task(name="user")
    async def user(i, b=inject(bad)):
        return i

    @task(name="gather")
    def gather(*xs):
        return xs

    with pytest.raises(OSError):
        run(gather(user(1), user(2), user(3)), engine=engine)
    assert res.ups(bad) == [bad], f"set-up attempted {len(res.ups(bad))} times: {res.log}"


def test_task_scope_setup_failure_is_retried_with_the_attempt(engine):
    """A task-scoped set-up failing twice, under with_retry(3): third attempt runs the body."""
    res = ResourceLog("tasksetup")
    full = res.name("flaky_conn")
    tries = collections.Counter()

    def flaky_conn():
        tries["setup"] += 1
        res.log.append(("up", full))
        if tries["setup"] < 3:
            raise ConnectionError(f"set-up attempt {tries['setup']}")
        yield "conn"
        res.log.append(("down", full))

    resource(flaky_conn, name=full, scope="task")

    @task(name="query")
    def query(c=inject(full)):
        tries["body"] += 1
        return c

    events = Events()
    assert run(query().with_retry(max_attempts=3), engine=engine, on_event=events) == "conn"
    assert tries == {"setup": 3, "body": 1}
    assert res.downs(full) == [full]
    assert events.count(TaskStarted, "query") == 3


def test_setup_failure_in_a_tail_call_continuation(engine):
    """A continuation needing a failing resource: reported; earlier resources torn down."""
    res = ResourceLog("tailsetup")
    conn = res.gen("conn")
    bad = res.gen("bad", fail_setup=PermissionError("denied"))

    @task(name="late")
    def late(b=inject(bad)):
        return b

    @task(name="first")
    def first(c=inject(conn)):
        return late()

    with pytest.raises(PermissionError, match="denied") as info:
        run(first(), engine=engine)
    assert _mentions(info.value, bad)
    assert res.downs(conn) == [conn] and res.downs(bad) == []


# ---------------------------------------------------------------------------
# Teardown failures


def _three(res: ResourceLog, failing: dict, make=None):
    """Run resources a, b, c (set up in that order); ``failing`` maps short name -> error."""
    make = make or res.gen
    names = [make(s, fail_teardown=failing.get(s)) for s in ("a", "b", "c")]

    @task(name="use_all")
    def use_all(a=inject(names[0]), b=inject(names[1]), c=inject(names[2])):
        return "used"

    return names, use_all


@pytest.mark.parametrize("kind", ["generator", "async-generator"])
def test_teardown_failure_is_raised_after_every_teardown(engine, kind):
    """b's teardown fails in an otherwise good run: all three torn down (c, b, a), then
    b's error leaves run() naming b, and RunFinished reports it."""
    res = ResourceLog("tdfail")
    make = res.gen if kind == "generator" else res.agen
    (a, b, c), use_all = _three(res, {"b": RuntimeError("flush failed")}, make)
    events = Events()
    with pytest.raises(RuntimeError, match="flush failed") as info:
        run(use_all(), engine=engine, on_event=events)
    assert res.downs() == [c, b, a]
    assert _mentions(info.value, f"tearing down resource {b!r}")
    for name in (a, b, c):
        assert events.count(ResourceTornDown, name) == 1
    finished = events.check_framing()
    assert finished.ok is False and finished.error is info.value


def test_two_teardown_failures_are_both_reported(engine):
    """b and c both fail to tear down: every teardown runs, and both are reported."""
    res = ResourceLog("tdtwo")
    (a, b, c), use_all = _three(res, {"b": RuntimeError("b broke"), "c": OSError("c broke")})
    with pytest.raises((RuntimeError, OSError)) as info:
        run(use_all(), engine=engine)
    assert res.downs() == [c, b, a]
    assert _mentions(info.value, b) and _mentions(info.value, c), (
        f"{info.value!r} with notes {getattr(info.value, '__notes__', None)}"
    )


def test_teardown_failure_after_a_task_failure_is_reported(engine):
    """The run failed (KeyError) and b's teardown fails too: the KeyError leaves run()
    unchanged, every teardown runs, and b's failure is reported on it."""
    res = ResourceLog("tdafter")
    (a, b, c), _ = _three(res, {"b": RuntimeError("flush failed")})

    @task(name="use_then_fail")
    def use_then_fail(x=inject(a), y=inject(b), z=inject(c)):
        raise KeyError("missing row")

    with pytest.raises(KeyError) as info:
        run(use_then_fail(), engine=engine)
    assert str(info.value) == "'missing row'"
    assert task_of(info.value) == "use_then_fail"
    assert res.downs() == [c, b, a]
    assert _mentions(info.value, b), f"teardown failure of {b} not reported: {info.value.__notes__}"


def test_task_scope_teardown_failure_fails_the_task(engine):
    """A task-scoped teardown failing after a good call: the task fails with it (named),
    and run-scoped resources are still torn down."""
    res = ResourceLog("tasktd")
    conn = res.gen("conn")
    per_call = res.gen("per_call", scope="task", fail_teardown=RuntimeError("release failed"))

    @task(name="work")
    def work(c=inject(conn), t=inject(per_call)):
        return "done"

    events = Events()
    with pytest.raises(RuntimeError, match="release failed") as info:
        run(work(), engine=engine, on_event=events)
    assert _mentions(info.value, per_call)
    assert task_of(info.value) == "work"
    assert events.count(TaskFailed, "work") == 1
    assert res.downs() == [per_call, conn]


def test_task_scope_teardown_failure_after_a_failed_call_is_reported(engine):
    """The call failed and its task-scoped teardown fails too: the call's error leaves
    run(), and the teardown failure is reported on it."""
    res = ResourceLog("tasktdafter")
    per_call = res.gen("per_call", scope="task", fail_teardown=RuntimeError("release failed"))

    @task(name="work")
    def work(t=inject(per_call)):
        raise ValueError("bad input row")

    with pytest.raises(ValueError, match="bad input row") as info:
        run(work(), engine=engine)
    assert res.downs() == [per_call]
    assert _mentions(info.value, per_call), (
        f"teardown failure of {per_call} not reported: {info.value.__notes__}"
    )


def test_resource_that_yields_twice(engine):
    """A generator resource yielding twice: ResourceError naming it; the others torn down."""
    res = ResourceLog("twice")
    conn = res.gen("conn")
    full = res.name("greedy")

    def greedy():
        yield 1
        yield 2

    resource(greedy, name=full)

    @task(name="use")
    def use(c=inject(conn), g=inject(full)):
        return g

    with pytest.raises(ResourceError, match="yielded more than once") as info:
        run(use(), engine=engine)
    assert full in str(info.value)
    assert res.downs() == [conn]


def test_teardown_failure_during_cancellation_still_tears_everything_down(engine):
    """arun() cancelled while a resource's teardown will fail: CancelledError propagates
    and every teardown runs."""
    res = ResourceLog("tdcancel")
    (a, b, c), _ = _three(res, {"b": RuntimeError("flush failed")})
    started = {}

    @task(name="hang")
    async def hang(x=inject(a), y=inject(b), z=inject(c)):
        started["yes"] = True
        await asyncio.sleep(3600)

    async def main():
        t = asyncio.create_task(arun(hang(), engine=engine))
        while "yes" not in started:
            await asyncio.sleep(0.001)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    uvloop.run(main())
    assert res.downs() == [c, b, a]
