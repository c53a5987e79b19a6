"""The call protocol (cascade_graph/calls.py): call numbers, parents, durations,
concurrency limits and the executor seam, on both engines."""

from __future__ import annotations

import asyncio
import collections

import pytest

from cascade_graph import events as ev
from cascade_graph import task
from cascade_graph.calls import LOCAL, Executor, InProcess
from cascade_vm import run
from tests.helpers import Recorder, per_engine, per_switches


@task
def dec(n):
    return n - 1


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@task
async def acountdown(n):
    await asyncio.sleep(0)
    return "done" if n <= 0 else acountdown(n - 1)


@task
def double(x):
    return 2 * x


@task
def total(xs):
    return sum(xs)


@task
def hop(x):
    return x + 1


@task
def flaky_once(x, seen=[]):  # noqa: B006 - state across attempts, on purpose
    seen.append(x)
    if len(seen) % 2:
        raise ConnectionError("flaky")
    return x


@task
def outer(n):
    """A tail call whose continuation is a DAG with its own calls."""
    return total([double(i) for i in range(n)]) if n else 0


def check_call_structure(events) -> None:
    """Every call has one start and one end, later events share it, parents point
    back, durations are >= 0 and times never go backwards per call."""
    starts, ends = {}, {}
    for e in events:
        if type(e) is ev.TaskStarted:
            assert e.call not in starts, f"call {e.call} started twice"
            starts[e.call] = e
            assert e.parent is None or e.parent in starts, f"parent {e.parent} unknown"
            assert e.parent is None or e.parent in ends, f"parent {e.parent} still running"
            assert e.where == "local"
        elif type(e) in (ev.TaskFinished, ev.TaskFailed):
            assert e.call in starts and e.call not in ends, f"call {e.call} ended twice"
            assert starts[e.call].task == e.task
            assert e.duration >= 0
            assert e.time >= starts[e.call].time
            ends[e.call] = e
        elif type(e) in (ev.TailCall, ev.TaskRetrying):
            assert e.call in ends, f"{type(e).__name__} of a call not ended: {e.call}"
        elif type(e) is ev.TaskSkipped:
            assert e.call > 0 and e.call not in starts
    assert set(starts) == set(ends)


@per_engine
@per_switches
def test_every_call_has_one_number_a_start_and_an_end(engine, switches):
    """A tail loop, a fan-out and a DAG in a continuation: call numbers are unique,
    each with one start and one end, and every parent is an earlier ended call."""
    rec = Recorder()
    assert run(outer(5), engine=engine, on_event=rec, **switches) == 20
    check_call_structure(rec.events)
    rec = Recorder()
    assert run(countdown(50), engine=engine, on_event=rec, **switches) == "done"
    check_call_structure(rec.events)
    assert len(rec.of(ev.TaskStarted, "countdown")) == 51


@per_engine
@per_switches
def test_a_tail_calls_continuation_names_its_parent(engine, switches):
    """Each countdown step after the first has the previous step as its parent."""
    rec = Recorder()
    run(countdown(5), engine=engine, on_event=rec, **switches)
    started = rec.of(ev.TaskStarted, "countdown")
    assert started[0].parent is None
    for before, after in zip(started, started[1:]):
        assert after.parent == before.call
    tails = rec.of(ev.TailCall, "countdown")
    assert [t.call for t in tails] == [s.call for s in started[:-1]]


@per_engine
def test_an_async_loop_names_its_parents(engine):
    """The same with an async task."""
    rec = Recorder()
    assert run(acountdown(4), engine=engine, on_event=rec) == "done"
    started = rec.of(ev.TaskStarted, "acountdown")
    assert [s.parent for s in started[1:]] == [s.call for s in started[:-1]]
    check_call_structure(rec.events)


@per_engine
def test_a_dag_in_a_continuation_has_the_tail_caller_as_parent(engine):
    """The calls of ``outer``'s continuation (a fan-out and its sum) name ``outer``'s call."""
    rec = Recorder()
    run(outer(3), engine=engine, on_event=rec)
    (o,) = rec.of(ev.TaskStarted, "outer")
    inner = rec.of(ev.TaskStarted, "double") + rec.of(ev.TaskStarted, "total")
    assert len(inner) == 4
    assert {s.parent for s in inner} == {o.call}


@per_engine
def test_each_retry_attempt_is_a_new_call(engine):
    """A retried task: two calls, the failed one's TaskRetrying shares its number."""
    rec = Recorder()
    assert run(flaky_once(7).with_retry(3), engine=engine, on_event=rec) == 7
    started = rec.of(ev.TaskStarted, "flaky_once")
    failed = rec.of(ev.TaskFailed, "flaky_once")
    (retrying,) = rec.of(ev.TaskRetrying, "flaky_once")
    assert len(started) == 2 and started[0].call != started[1].call
    assert failed[0].call == retrying.call == started[0].call
    check_call_structure(rec.events)


@per_engine
def test_run_started_carries_wall_clock_time(engine):
    """RunStarted.wall is time.time() and every event has a perf_counter time."""
    import time

    rec = Recorder()
    before = time.time()
    run(hop(hop(1)), engine=engine, on_event=rec)
    (started,) = rec.of(ev.RunStarted)
    assert before <= started.wall <= time.time()
    times = [e.time for e in rec.events]
    assert times == sorted(times)


def _events_by_kind(rec) -> collections.Counter:
    return rec.kinds()


@per_switches
def test_batches_and_runs_emit_the_same_events_on_both_engines_with_yield_interval_0(
        switches):
    """With ``yield_interval=0`` and a listener, a 100-item fan-out and a 200-link chain
    pause for the event loop, and the pauses are not calls: both engines emit exactly
    the user's calls, no ``<pause>``."""
    def flow():
        chain = hop(0)
        for _ in range(199):
            chain = hop(chain)
        return [total([double(i) for i in range(100)]), chain]

    seen = {}
    for engine in ("vm", "graph"):
        rec = Recorder()
        assert run(flow(), engine=engine, on_event=rec, yield_interval=0,
                   **switches) == [9900, 200]
        check_call_structure(rec.events)
        seen[engine] = _events_by_kind(rec)
        assert not [e for e in rec.events if getattr(e, "task", "").startswith("<")]
    assert seen["vm"] == seen["graph"]
    assert seen["vm"][("TaskStarted", "double")] == 100
    assert seen["vm"][("TaskStarted", "hop")] == 200


# ---------------------------------------------------------------------------
# concurrency limits


def _limited(limit):
    state = {"now": 0, "most": 0, "order": []}

    @task(concurrency=limit)
    async def fetch(i):
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        state["order"].append(i)
        await asyncio.sleep(0.005)
        state["now"] -= 1
        return i

    return fetch, state


@per_engine
@per_switches
def test_concurrency_limits_a_fan_out(engine, switches):
    """concurrency=2: at most two invocations at once, started in call order."""
    fetch, state = _limited(2)
    assert run(total([fetch(i) for i in range(10)]), engine=engine, **switches) == 45
    assert state["most"] == 2
    assert state["order"] == list(range(10))


@per_engine
def test_concurrency_limits_map_items_and_retries(engine):
    """The limit covers map items and retried attempts."""
    fetch, state = _limited(3)
    assert run(fetch.map(range(12)).with_retry(2), engine=engine) == list(range(12))
    assert state["most"] == 3


@per_engine
def test_concurrency_limits_tail_loops(engine):
    """Four concurrent tail loops of one task with concurrency=1 never overlap."""
    state = {"now": 0, "most": 0}

    @task(concurrency=1)
    async def step(n):
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.001)
        state["now"] -= 1
        return n if n <= 0 else step(n - 1)

    assert run([step(5), step(5), step(5), step(5)], engine=engine) == [0, 0, 0, 0]
    assert state["most"] == 1


@per_engine
def test_a_limit_is_per_run(engine):
    """Two runs in one event loop do not share a task's limit."""
    from cascade_vm import arun

    fetch, state = _limited(1)

    async def both():
        return await asyncio.gather(arun(total([fetch(i) for i in range(3)]), engine=engine),
                                    arun(total([fetch(i) for i in range(3)]), engine=engine))

    assert asyncio.run(both()) == [3, 3]
    assert state["most"] == 2


def test_concurrency_must_be_a_positive_int():
    """A bad limit is a TypeError at decoration, naming the task."""
    with pytest.raises(TypeError, match=r"bad'.*concurrency must be a positive int"):
        @task(concurrency=0)
        def bad():
            return 1


# ---------------------------------------------------------------------------
# the executor seam


def test_the_default_executor_runs_everything_here():
    """LOCAL places nothing remotely and is an InProcess executor."""
    assert isinstance(LOCAL, InProcess)
    assert not LOCAL.runs_remotely(hop)
    assert LOCAL.where == "local"


class _Recording(Executor):
    """An executor that runs ``remote`` tasks itself, as a cluster would, and counts them."""

    where = "tcp://test-worker:1"

    def __init__(self):
        self.calls = []
        self.opened = self.closed = 0

    async def start(self):
        self.opened += 1

    async def close(self):
        self.closed += 1

    def runs_remotely(self, t):
        return t is remote_double

    async def call(self, t, args, kwargs):
        self.calls.append(tuple(args))
        await asyncio.sleep(0)
        return t.fn(*args, **kwargs), self.where


@task
def remote_double(x):
    return 2 * x


@per_engine
def test_an_executor_runs_the_calls_it_places_remotely(engine):
    """Calls the executor places remotely go to Executor.call; their TaskStarted names
    the worker; the executor is opened and closed once per run."""
    exe = _Recording()
    rec = Recorder()
    value = run(total([remote_double(1), remote_double(2), hop(3)]), engine=engine,
                executor=exe, on_event=rec)
    assert value == 10
    assert sorted(exe.calls) == [(1,), (2,)]
    assert (exe.opened, exe.closed) == (1, 1)
    where = {e.task: e.where for e in rec.of(ev.TaskStarted)}
    assert where == {"remote_double": exe.where, "hop": "local", "total": "local"}


@per_engine
@per_switches
def test_a_sync_task_with_a_limit_is_a_plain_call(engine, switches):
    """A sync, in-process, not offloaded task never runs two invocations at once (the
    event loop's thread runs one call at a time), so its concurrency limit holds
    nothing back and it is a plain call everywhere (``calls.direct``); an async one
    with a limit, or an offloaded one, still takes ``invoke``."""
    from cascade_graph.calls import direct

    running = {"now": 0, "most": 0}

    @task(concurrency=1)
    def inc(x):
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        running["now"] -= 1
        return x + 1

    @task(concurrency=1)
    async def ainc(x):
        return x + 1

    @task(concurrency=1, offload=True)
    def oinc(x):
        return x + 1

    assert direct(inc) and not direct(ainc) and not direct(oinc)
    assert run(total([inc(i) for i in range(20)]), engine=engine, **switches) == 210
    assert run(inc.map(range(5)), engine=engine, **switches) == [1, 2, 3, 4, 5]
    assert run(total([inc(inc(i)) for i in range(5)]), engine=engine, **switches) == 20
    assert running["most"] == 1
    rec = Recorder()
    value = run(total([inc(i) for i in range(3)]), engine=engine, on_event=rec, **switches)
    assert value == 6 and len(rec.of(ev.TaskStarted, inc.name)) == 3


@per_engine
@per_switches
def test_calls_through_invoke_keep_their_kind_on_a_first_sight(engine, switches):
    """A cold workflow of links and fan-ins (the first tier's, on the default switches)
    with an offloaded task, an async one with a limit and one injecting a resource:
    each call is made as its kind asks (the offloaded one in a worker thread, the
    limited ones within their limit, the resource set up once and given), and an
    unknown resource fails the run before any task ran."""
    import threading

    from cascade_graph import inject, resource

    threads, running, log = [], {"now": 0, "most": 0}, []

    @task(name="in_thread", offload=True)
    def in_thread(x):
        threads.append(threading.current_thread() is threading.main_thread())
        return x + 1

    @task(name="limited", concurrency=2)
    async def limited(x):
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.001)
        running["now"] -= 1
        return x * 2

    name = f"store_{id(log)}"

    @resource(name=name)
    def store():
        log.append("up")
        yield 100

    @task(name="stored")
    def stored(x, base=inject(name)):
        return base + x

    for _ in range(2):  # a first sight, then the template
        threads.clear()
        items = [limited(in_thread(double(i))) for i in range(6)] + [in_thread(7)]
        assert run(total(items), engine=engine, **switches) == 8 + sum(
            2 * (2 * i + 1) for i in range(6))
        assert threads == [False] * 7 and running["most"] <= 2
    for _ in range(2):
        threads.clear()
        items = [stored(limited(in_thread(double(i)))) for i in range(6)]
        assert run(total(items), engine=engine, **switches) == sum(
            100 + 2 * (2 * i + 1) for i in range(6))
        assert threads == [False] * 6 and running["most"] <= 2
    assert log == ["up", "up"]

    missing = f"missing_{id(log)}"

    @task(name="needs_nothing_known")
    def needs_nothing_known(x, db=inject(missing)):
        return x

    ran = []

    @task(name="records")
    def records(x):
        ran.append(x)
        return x

    with pytest.raises(Exception) as info:
        run(total([records(1), needs_nothing_known(double(2))]), engine=engine, **switches)
    assert missing in str(info.value) and ran == []
