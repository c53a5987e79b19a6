"""Events (SPEC section 3, Events): kinds, order, counts, fields, zero cost without a listener."""

from __future__ import annotations

import asyncio

import attrs
import pytest

import cascade_graph
from cascade_graph import (
    RunFinished,
    RunStarted,
    TailCall,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    task,
)
from cascade_graph import events as ev_mod
from cascade_vm import run
from tests.helpers import (
    EVENT_CLASSES,
    per_engine,
    per_switches,
    run_failing,
    run_on,
    until,
)


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


@task
def fail(x):
    raise ValueError(f"fail {x}")


def test_events_importable_from_package():
    """Every event class is importable from cascade_graph."""
    for cls in EVENT_CLASSES:
        assert getattr(cascade_graph, cls.__name__) is cls


def test_events_are_frozen():
    """Events are immutable records."""
    e = TaskStarted(1, "t")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        e.task = "x"


@per_engine
@per_switches
def test_run_started_first_run_finished_last(engine, switches):
    """RunStarted is the first event and RunFinished the last."""
    _, rec = run_on(engine, [ident(1), countdown(5)], switches)
    assert type(rec.events[0]) is RunStarted
    assert type(rec.events[-1]) is RunFinished
    assert len(rec.of(RunStarted)) == len(rec.of(RunFinished)) == 1


@per_engine
def test_run_finished_ok(engine):
    """A successful run ends with RunFinished(ok=True, error=None)."""
    _, rec = run_on(engine, ident(1))
    last = rec.events[-1]
    assert last.ok is True and last.error is None


@per_engine
@per_switches
def test_run_finished_on_failure(engine, switches):
    """A failed run still ends with RunFinished carrying ok=False and the error."""
    exc, rec = run_failing(engine, add(ident(1), fail(2)), switches)
    last = rec.events[-1]
    assert type(last) is RunFinished
    assert last.ok is False and last.error is exc


@per_engine
def test_run_finished_for_value_target(engine):
    """A target with nothing lazy still emits RunStarted and RunFinished."""
    _, rec = run_on(engine, 5)
    assert rec.names() == ["RunStarted", "RunFinished"]


@per_engine
@per_switches
def test_countdown_101_starts_and_finishes(engine, switches):
    """A 101-step countdown emits 101 TaskStarted, 101 TaskFinished and 100 TailCall."""
    _, rec = run_on(engine, countdown(100), switches)
    assert len(rec.of(TaskStarted)) == 101
    assert len(rec.of(TaskFinished)) == 101
    assert len(rec.of(TailCall)) == 100


@per_engine
@per_switches
def test_start_precedes_finish_per_invocation(engine, switches):
    """Starts and finishes alternate for a sequential loop: start, finish, tail call."""
    _, rec = run_on(engine, countdown(3), switches)
    task_events = [type(e).__name__ for e in rec.events if isinstance(e, TaskEvent)]
    assert task_events == ["TaskStarted", "TaskFinished", "TailCall"] * 3 + [
        "TaskStarted", "TaskFinished"]


@per_engine
@per_switches
def test_tail_call_names_target(engine, switches):
    """TailCall names the calling task and the continuation's root task."""

    @task
    def hop(x):
        return ident(x)

    _, rec = run_on(engine, hop(1), switches)
    (tc,) = rec.of(TailCall)
    assert tc.task == hop.name and tc.target == ident.name


@per_engine
@per_switches
def test_tail_call_after_callers_finish(engine, switches):
    """A TailCall comes after the calling invocation's TaskFinished."""

    @task
    def hop(x):
        return ident(x)

    _, rec = run_on(engine, hop(1), switches)
    assert rec.index(TaskFinished, hop.name) < rec.index(TailCall, hop.name)


@per_engine
@per_switches
def test_task_failed_carries_error(engine, switches):
    """A failing invocation emits TaskStarted then TaskFailed with the error."""
    exc, rec = run_failing(engine, ident(fail(1)), switches)
    (failed,) = rec.of(TaskFailed)
    assert failed.error is exc and failed.task == fail.name
    assert rec.index(TaskStarted, fail.name) < rec.index(TaskFailed, fail.name)
    assert not rec.of(TaskFinished, fail.name)


@per_engine
def test_every_task_event_has_task_and_run_id(engine):
    """Every task event carries the task name and the run's id."""

    @task
    def hop(x):
        return ident(x)

    _, rec = run_on(engine, add(hop(1), ident(2).run_if(False)).run_if(True))
    run_id = rec.events[0].run_id
    task_events = [e for e in rec.events if isinstance(e, TaskEvent)]
    assert task_events
    for e in task_events:
        assert e.run_id == run_id
        assert isinstance(e.task, str) and e.task
    assert all(e.run_id == run_id for e in rec.events)


@per_engine
def test_run_ids_differ_between_runs(engine):
    """Each run has its own run_id."""
    _, a = run_on(engine, ident(1))
    _, b = run_on(engine, ident(1))
    assert a.events[0].run_id != b.events[0].run_id


@per_engine
def test_task_skipped_reason_condition(engine):
    """A false run_if emits TaskSkipped(reason='condition')."""
    _, rec = run_on(engine, [ident(1).run_if(False)])
    (sk,) = rec.of(TaskSkipped)
    assert sk.reason == "condition" and sk.task == ident.name


@per_engine
def test_task_skipped_reason_upstream(engine):
    """A consumer of a skipped node emits TaskSkipped(reason='upstream')."""
    _, rec = run_on(engine, [add(ident(1).run_if(False), 2)])
    reasons = {(e.task, e.reason) for e in rec.of(TaskSkipped)}
    assert reasons == {(ident.name, "condition"), (add.name, "upstream")}


@per_engine
def test_retrying_between_failed_and_started(engine):
    """TaskRetrying sits between the failed attempt's TaskFailed and the next TaskStarted."""
    attempts = []

    @task
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("again")
        return "ok"

    value, rec = run_on(engine, flaky().with_retry(5))
    assert value == "ok"
    names = [type(e).__name__ for e in rec.events if isinstance(e, TaskEvent)]
    assert names == ["TaskStarted", "TaskFailed", "TaskRetrying"] * 2 + [
        "TaskStarted", "TaskFinished"]
    r = rec.of(TaskRetrying)
    assert [x.attempt for x in r] == [1, 2]
    assert all(isinstance(x.error, OSError) for x in r)
    assert all(x.delay == 0 for x in r)


@per_engine
@per_switches
def test_each_start_after_dependencies_finished(engine, switches):
    """Each task starts after all of its dependencies finished."""

    def napper(name, seconds):
        @task(name=name)
        async def nap(x):
            await asyncio.sleep(seconds)
            return x

        return nap

    a, b, c = napper("a", 0.003), napper("b", 0.0), napper("c", 0.001)

    @task(name="inner")
    def inner(x, y):
        return x + y

    @task(name="outer")
    def outer(x, y):
        return x + y

    value, rec = run_on(engine, outer(inner(a(1), b(2)), c(3)), switches)
    assert value == 6
    assert rec.index(TaskStarted, "inner") > max(rec.index(TaskFinished, "a"),
                                                rec.index(TaskFinished, "b"))
    assert rec.index(TaskStarted, "outer") > max(rec.index(TaskFinished, "inner"),
                                                rec.index(TaskFinished, "c"))


@per_engine
def test_cancelled_sibling_emits_task_failed(engine):
    """An invocation cancelled because another failed emits TaskFailed."""

    @task
    async def slow():
        await asyncio.sleep(5)
        return 1

    @task
    async def bad():
        await asyncio.sleep(0.01)
        raise ValueError("bad")

    _, rec = run_failing(engine, add(slow(), bad()))
    assert len(rec.of(TaskStarted, slow.name)) == 1
    (failed,) = rec.of(TaskFailed, slow.name)
    assert isinstance(failed.error, asyncio.CancelledError)
    assert type(rec.events[-1]) is RunFinished


@per_engine
def test_listener_sees_every_event_on_fast_path(engine):
    """A listener sees every event even with the fast paths on (observed countdown)."""
    seen = []
    run(countdown(1000), engine=engine, on_event=seen.append)
    assert sum(type(e) is TaskStarted for e in seen) == 1001


def _count_constructions(monkeypatch):
    """Make every event class count its instances, also those the call protocol builds
    with the positional makers (events.make_*); returns the counter list."""
    from cascade_graph import calls

    made = []
    for cls in EVENT_CLASSES:
        orig = cls.__init__

        def counting(self, *a, __orig=orig, __cls=cls, **k):
            made.append(__cls.__name__)
            __orig(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", counting)
    for name in ("make_started", "make_finished", "make_failed", "make_tail_call"):
        maker = getattr(calls, name)

        def counting_maker(*a, __maker=maker):
            e = __maker(*a)
            made.append(type(e).__name__)
            return e

        monkeypatch.setattr(calls, name, counting_maker)
    return made


@per_engine
@per_switches
def test_no_events_built_without_listener(engine, switches, monkeypatch):
    """With no listener, no event object is constructed."""
    made = _count_constructions(monkeypatch)

    @task
    async def anap(x):
        await asyncio.sleep(0)
        return x

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    from cascade_graph import MemoryStore, inject, resource

    @resource(name="no_listener_res", scope="task")
    def res():
        yield "r"

    @task
    def use(r=inject("no_listener_res")):
        return r

    store = MemoryStore()
    run(ident(9).with_cache(store=store), engine=engine)
    target = [countdown(50), step(20, 0), anap(1), ident(2).run_if(False),
              ident(3).with_retry(2), ident.map([1, 2]), use(), ident(9).with_cache(store=store)]
    assert run(target, engine=engine, **switches) == ["done", 20, 1, None, 3, [1, 2], "r", 9]
    assert made == []


@per_engine
def test_no_events_built_on_failure_without_listener(engine, monkeypatch):
    """A failing, retried run with no listener constructs no event either."""
    made = _count_constructions(monkeypatch)

    @task
    async def slow():
        await asyncio.sleep(5)

    with pytest.raises(ValueError):
        run(add(slow(), fail(1).with_retry(2)), engine=engine)
    assert made == []


@per_engine
def test_counting_patch_sees_events_with_listener(engine, monkeypatch):
    """The construction counter does see events when a listener is attached."""
    made = _count_constructions(monkeypatch)
    run(countdown(3), engine=engine, on_event=lambda e: None)
    assert made.count("TaskStarted") == 4


def test_event_module_all_lists_classes():
    """events.__all__ names every event class."""
    assert {c.__name__ for c in EVENT_CLASSES} <= set(ev_mod.__all__)


@per_engine
@per_switches
def test_every_start_ends_under_cancellation(engine, switches):
    """Under failure and cancellation each TaskStarted still gets a TaskFinished or TaskFailed."""

    @task
    async def adown(n):
        await asyncio.sleep(0.001)
        return n if n <= 0 else adown(n - 1)

    @task
    async def bad():
        await asyncio.sleep(0.05)
        raise KeyError("x")

    @task
    def total(*xs):
        return xs

    exc, rec = run_failing(engine, total(adown(500), bad(), ident(adown(500))), switches)
    assert type(exc) is KeyError
    k = rec.kinds()
    for name in (adown.name, bad.name):
        assert k[("TaskStarted", name)] >= 1
        assert k[("TaskStarted", name)] == k[("TaskFinished", name)] + k[("TaskFailed", name)]
    assert type(rec.events[-1]) is RunFinished


@per_engine
def test_cancelled_run_finishes_with_error(engine):
    """Cancelling arun() still emits RunFinished(ok=False) last."""
    from cascade_vm import arun

    @task
    async def slow():
        await asyncio.sleep(5)

    rec_events = []

    async def main():
        t = asyncio.ensure_future(arun(slow(), engine=engine, on_event=rec_events.append))
        await until(lambda: any(type(e) is TaskStarted for e in rec_events))
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    last = rec_events[-1]
    assert type(last) is RunFinished and last.ok is False
    assert isinstance(last.error, asyncio.CancelledError)


def _policy_workflow(store, state):
    from cascade_graph import Param

    @task(name="w_ident")
    def w_ident(x):
        return x

    @task(name="w_flaky")
    def w_flaky(x):
        state[x] = state.get(x, 0) + 1
        if state[x] < 2:
            raise OSError("again")
        return x

    @task(name="w_anap")
    async def w_anap(x):
        await asyncio.sleep(0.001)
        return x

    @task(name="w_hop")
    def w_hop(x):
        return w_ident(x) if x else w_ident(x).run_if(False)

    return [
        w_ident.map([1, 2, 3]).with_retry(2),
        w_flaky.map([4, 5]).with_retry(3),
        w_anap(1).with_timeout(5).with_cache(store=store),
        w_hop(1), w_hop(0), w_ident(w_hop(0)),
        w_ident(4).after(w_anap(5)).run_if(w_anap(0)),
        w_ident(w_ident.map([w_anap(6), 7])),
        Param("pp", default=1),
    ]


@per_switches
def test_engines_agree_on_policy_events(switches):
    """Both engines emit the same event kinds and counts for a policy-rich workflow."""
    from cascade_graph import MemoryStore

    out = {}
    for eng in ("vm", "graph"):
        store = MemoryStore()
        first, rec1 = run_on(eng, _policy_workflow(store, {}), switches)
        second, rec2 = run_on(eng, _policy_workflow(store, {}), switches)  # cache hits
        out[eng] = (first, rec1.kinds(), second, rec2.kinds())
    assert out["vm"] == out["graph"]
    assert out["vm"][3][("TaskSkipped", "w_anap")] >= 1
