"""Policies (SPEC section 2, Policies): run_if, after, map, retry, timeout, cache, stores."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from cascade_graph import (
    MemoryStore,
    SQLiteStore,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    inject,
    task,
)
from cascade_graph import store as store_mod
from cascade_graph.errors import task_of
from cascade_vm import arun, run
from tests.helpers import Calls, FakeClock, per_engine, per_switches, run_failing, run_on


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


def counted(calls, key, fn=None, name=None):
    """A task that counts its calls under ``key`` and returns ``fn(*args)`` (default: first)."""

    ref = calls.ref  # a plain value: cached copies of this task need a stable closure

    @task(name=name or key)
    def t(*args):
        Calls.of(ref).hit(key)
        return fn(*args) if fn else (args[0] if args else None)

    return t


# ===========================================================================
# run_if


@pytest.mark.parametrize("cond", [False, 0, "", [], None])
@per_engine
def test_run_if_falsy_value_skips(engine, cond):
    """A falsy literal condition skips the node."""
    calls = Calls()
    f = counted(calls, "f")
    assert run(f(1).run_if(cond), engine=engine) is None
    assert calls.total() == 0


@per_engine
def test_run_if_truthy_value_runs(engine):
    """A truthy literal condition runs the node."""
    assert run(ident(1).run_if("yes"), engine=engine) == 1


@per_engine
@per_switches
def test_run_if_lazy_condition(engine, switches):
    """A lazy condition is evaluated and decides whether the node runs."""
    calls = Calls()
    f = counted(calls, "f")
    out = run([f(1).run_if(ident(True)), f(2).run_if(ident(0))], engine=engine, **switches)
    assert out == [1, None]
    assert calls["f"] == 1


@per_engine
def test_run_if_twice_both_must_hold(engine):
    """Two run_if conditions must both hold."""
    out = run([
        ident(1).run_if(True).run_if(True),
        ident(2).run_if(True).run_if(False),
        ident(3).run_if(False).run_if(True),
        ident(4).run_if(ident(1)).run_if(ident(0)),
    ], engine=engine)
    assert out == [1, None, None, None]


@per_engine
def test_run_if_dependencies_still_run(engine):
    """A skipped node's dependencies run anyway."""
    calls = Calls()
    dep = counted(calls, "dep")
    assert run(add(dep(1), 2).run_if(False), engine=engine) is None
    assert calls["dep"] == 1


@per_engine
@per_switches
def test_skip_propagates_to_data_consumer(engine, switches):
    """A node whose data dependency was skipped is skipped with reason 'upstream'."""
    calls = Calls()
    f = counted(calls, "consumer")
    value, rec = run_on(engine, f(ident(1).run_if(False)), switches)
    assert value is None and calls.total() == 0
    assert [(e.task, e.reason) for e in rec.of(TaskSkipped)] == [
        (ident.name, "condition"), ("consumer", "upstream")]


@per_engine
def test_skip_propagates_through_container_argument(engine):
    """A skipped lazy inside a container argument skips the consumer."""
    calls = Calls()
    f = counted(calls, "consumer")
    assert run([f([1, {"k": ident(1).run_if(False)}])], engine=engine) == [None]
    assert calls.total() == 0


@per_engine
def test_skip_propagates_transitively(engine):
    """Skips propagate along a chain of consumers."""
    assert run([add(add(ident(1).run_if(False), 1), 1), ident(5)], engine=engine) == [None, 5]


@per_engine
def test_skip_propagates_through_after(engine):
    """A node whose .after() dependency was skipped is skipped as upstream."""
    calls = Calls()
    f = counted(calls, "f")
    value, rec = run_on(engine, [f(1).after(ident(0).run_if(False))])
    assert value == [None] and calls.total() == 0
    assert ("f", "upstream") in [(e.task, e.reason) for e in rec.of(TaskSkipped)]


@per_engine
@per_switches
def test_tail_call_to_skipped_continuation_skips_caller(engine, switches):
    """A tail call whose continuation is skipped skips the calling node and its consumers."""
    calls = Calls()
    consumer = counted(calls, "consumer")

    @task
    def hop(x):
        return ident(x).run_if(False)

    out = run([consumer(hop(1)), ident(2)], engine=engine, **switches)
    assert out == [None, 2]
    assert calls.total() == 0


@per_engine
def test_skipped_node_function_not_called(engine):
    """A skipped node never calls its function and emits no TaskStarted."""
    calls = Calls()
    f = counted(calls, "f")
    _, rec = run_on(engine, [f(1).run_if(False)])
    assert calls.total() == 0 and not rec.of(TaskStarted, "f")


@per_engine
def test_condition_shared_with_data(engine):
    """One lazy may be both a condition and a data argument; it runs once."""
    calls = Calls()
    c = counted(calls, "c")(1)
    assert run(add(c, 1).run_if(c), engine=engine) == 2
    assert calls["c"] == 1


# ===========================================================================
# after


@per_engine
@per_switches
def test_after_orders_without_passing_value(engine, switches):
    """.after(x) makes the node wait for x; x's value is not an argument."""
    order = []

    @task
    async def first():
        await asyncio.sleep(0.02)
        order.append("first")
        return "ignored"

    @task
    def second():
        order.append("second")
        return "value"

    assert run(second().after(first()), engine=engine, **switches) == "value"
    assert order == ["first", "second"]


@per_engine
def test_after_accumulates(engine):
    """.after twice waits for both."""
    order = []

    def waiter(name, delay):
        @task(name=name)
        async def w():
            await asyncio.sleep(delay)
            order.append(name)

        return w

    @task
    def last():
        order.append("last")
        return 1

    target = last().after(waiter("a", 0.03)()).after(waiter("b", 0.01)())
    assert run(target, engine=engine) == 1
    assert order[-1] == "last" and sorted(order[:2]) == ["a", "b"]


@per_engine
def test_after_dependency_runs_once(engine):
    """A node used as data and as .after() runs once."""
    calls = Calls()
    d = counted(calls, "d")(3)
    assert run(add(d, 1).after(d), engine=engine) == 4
    assert calls["d"] == 1


def test_after_rejects_values():
    """.after() accepts only lazy calls."""
    with pytest.raises(TypeError):
        ident(1).after(5)


@per_engine
def test_after_failure_propagates(engine):
    """An error in an .after() dependency fails the run."""

    @task
    def bad():
        raise KeyError("after")

    exc, _ = run_failing(engine, ident(1).after(bad()))
    assert type(exc) is KeyError


# ===========================================================================
# with_* replaces the earlier one of its kind


@per_engine
def test_with_retry_replaces(engine):
    """A second .with_retry replaces the first."""
    calls = Calls()

    @task
    def bad():
        calls.hit("bad")
        raise OSError("x")

    run_failing(engine, bad().with_retry(5).with_retry(2))
    assert calls["bad"] == 2


@per_engine
def test_with_timeout_replaces(engine):
    """A second .with_timeout replaces the first."""

    @task
    async def nap():
        await asyncio.sleep(0.05)
        return "ok"

    assert run(nap().with_timeout(0.001).with_timeout(5), engine=engine) == "ok"
    exc, _ = run_failing(engine, nap().with_timeout(5).with_timeout(0.001))
    assert isinstance(exc, TimeoutError)


@per_engine
def test_with_cache_replaces(engine):
    """A second .with_cache replaces the first (its store is used)."""
    s1, s2 = MemoryStore(), MemoryStore()
    assert run(ident(1).with_cache(store=s1).with_cache(store=s2), engine=engine) == 1
    assert len(s1) == 0 and len(s2) == 1


@per_engine
def test_policies_combine(engine):
    """run_if, after, retry and timeout on one call all apply."""
    calls = Calls()

    @task
    async def flaky(x):
        calls.hit("flaky")
        if calls["flaky"] < 2:
            raise OSError("again")
        return x

    target = flaky(3).with_retry(3).with_timeout(5).run_if(ident(True)).after(ident(0))
    assert run(target, engine=engine) == 3
    assert calls["flaky"] == 2


# ===========================================================================
# map


@per_engine
def test_map_arity_error_before_run(engine):
    """A map whose item calls cannot bind is a TypeError naming the task, before anything runs."""
    calls = Calls()
    first = counted(calls, "first")

    @task(name="one_arg")
    def one_arg(x):
        return x

    exc, _ = run_failing(engine, [first(1), one_arg.map([1], [2])])
    assert type(exc) is TypeError and "one_arg" in str(exc)
    assert calls.total() == 0


@per_engine
@per_switches
def test_map_one_call_per_element(engine, switches):
    """task.map calls the task once per element and returns results in order."""
    calls = Calls()
    f = counted(calls, "f", lambda x: x * 2)
    assert run(f.map([3, 1, 2]), engine=engine, **switches) == [6, 2, 4]
    assert calls["f"] == 3


@per_engine
def test_map_returns_list(engine):
    """The value of a map is a list, whatever the input iterable."""
    out = run(ident.map((1, 2)), engine=engine)
    assert out == [1, 2] and type(out) is list


@per_engine
def test_map_order_kept_with_async(engine):
    """Async items finishing out of order still give results in input order."""

    @task
    async def nap(x):
        await asyncio.sleep(0.001 * (5 - x))
        return x

    assert run(nap.map(range(6)), engine=engine) == list(range(6))


@per_engine
def test_map_zips_positional(engine):
    """Several iterables are zipped."""
    assert run(add.map([1, 2, 3], [10, 20, 30]), engine=engine) == [11, 22, 33]


@per_engine
def test_map_keyword_iterables(engine):
    """Keyword iterables are zipped too."""
    assert run(add.map([1, 2], b=[10, 20]), engine=engine) == [11, 22]
    assert run(add.map(a=[1, 2], b=[5, 6]), engine=engine) == [6, 8]


@per_engine
def test_map_unequal_lengths_value_error(engine):
    """Iterables of different lengths are a ValueError."""
    exc, _ = run_failing(engine, add.map([1, 2], [1, 2, 3]))
    assert type(exc) is ValueError


@per_engine
def test_map_unequal_lazy_lengths_value_error(engine):
    """Lazy iterables of different lengths are a ValueError at run time."""
    exc, _ = run_failing(engine, add.map(ident([1, 2]), ident([1])))
    assert type(exc) is ValueError


@per_engine
@per_switches
def test_map_lazy_iterable(engine, switches):
    """A lazy iterable decides the fan-out at run time."""

    @task
    def make(n):
        return list(range(n))

    assert run(ident.map(make(4)), engine=engine, **switches) == [0, 1, 2, 3]
    assert run(add.map(make(3), [10, 20, 30]), engine=engine, **switches) == [10, 21, 32]


@per_engine
def test_map_empty(engine):
    """Mapping over an empty iterable gives an empty list and calls nothing."""
    calls = Calls()
    f = counted(calls, "f")
    assert run(f.map([]), engine=engine) == []
    assert calls.total() == 0


@per_engine
def test_map_elements_may_be_lazy(engine):
    """Lazy elements inside a literal list are evaluated before mapping."""
    assert run(add.map([ident(1), 2], [10, ident(20)]), engine=engine) == [11, 22]


@per_engine
def test_map_feeds_consumer(engine):
    """A map's list is an ordinary value for its consumer."""

    @task
    def total(xs):
        return sum(xs)

    assert run(total(ident.map([1, 2, 3])), engine=engine) == 6


@per_engine
def test_map_item_events_per_item(engine):
    """Each item call emits its own TaskStarted/TaskFinished under the task's name."""
    _, rec = run_on(engine, ident.map([1, 2, 3]))
    assert len(rec.of(TaskStarted, ident.name)) == 3
    assert len(rec.of(TaskFinished, ident.name)) == 3


@per_engine
def test_map_item_tail_calls(engine):
    """Map items that tail-call evaluate to their final values."""

    @task
    def down(n):
        return n if n <= 0 else down(n - 1)

    assert run(down.map([3, 5, 0]), engine=engine) == [0, 0, 0]


@per_engine
def test_map_run_if_gates_whole_map(engine):
    """run_if on a map skips every item call."""
    calls = Calls()
    f = counted(calls, "f")
    assert run(f.map([1, 2]).run_if(False), engine=engine) is None
    assert calls.total() == 0


@per_engine
def test_map_after_gates_whole_map(engine):
    """after on a map makes every item wait for the dependency."""
    order = []

    @task
    async def first():
        await asyncio.sleep(0.02)
        order.append("first")

    @task
    def item(x):
        order.append(x)
        return x

    assert run(item.map([1, 2]).after(first()), engine=engine) == [1, 2]
    assert order[0] == "first"


@per_engine
def test_map_retry_applies_per_item(engine):
    """with_retry on a map retries each failing item on its own."""
    calls = Calls()

    @task
    def flaky(x):
        calls.hit(x)
        if calls[x] < 2:
            raise OSError(f"item {x}")
        return x

    assert run(flaky.map([1, 2, 3]).with_retry(2), engine=engine) == [1, 2, 3]
    assert calls.counts == {1: 2, 2: 2, 3: 2}


@per_engine
def test_map_timeout_applies_per_item(engine):
    """with_timeout on a map times out an item that is too slow."""

    @task
    async def nap(x):
        await asyncio.sleep(x)
        return x

    assert run(nap.map([0, 0.01]).with_timeout(2), engine=engine) == [0, 0.01]
    exc, _ = run_failing(engine, nap.map([0, 2]).with_timeout(0.05))
    assert isinstance(exc, TimeoutError)


@per_engine
def test_map_cache_applies_per_item(engine):
    """with_cache on a map caches each item's call separately."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    @task
    def sq(x):
        Calls.of(ref).hit(x)
        return x * x

    assert run(sq.map([1, 2]).with_cache(store=store), engine=engine) == [1, 4]
    value, rec = run_on(engine, sq.map([2, 3]).with_cache(store=store))
    assert value == [4, 9]
    assert calls.counts == {1: 1, 2: 1, 3: 1}
    assert [e.reason for e in rec.of(TaskSkipped)] == ["cached"]


# ===========================================================================
# retry


class Flaky:
    """A failing function: fails ``fails`` times with ``exc``, then returns 'ok'."""

    def __init__(self, fails, exc=OSError):
        self.fails = fails
        self.exc = exc
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.fails:
            raise self.exc(f"attempt {self.calls}")
        return "ok"


@per_engine
@per_switches
def test_retry_succeeds_after_failures(engine, switches):
    """A task failing twice succeeds on the third attempt of three."""
    fl = Flaky(2)
    assert run(task(fl)().with_retry(3), engine=engine, **switches) == "ok"
    assert fl.calls == 3


@per_engine
def test_retry_max_attempts_counts_all(engine):
    """max_attempts counts every attempt: an always-failing task runs that many times."""
    fl = Flaky(99)
    exc, rec = run_failing(engine, task(fl, name="fl")().with_retry(4))
    assert fl.calls == 4
    assert str(exc) == "attempt 4"
    assert len(rec.of(TaskRetrying)) == 3 and len(rec.of(TaskFailed)) == 4


@per_engine
def test_retry_one_attempt_no_retry(engine):
    """max_attempts=1 means no retry."""
    fl = Flaky(1)
    run_failing(engine, task(fl)().with_retry(1))
    assert fl.calls == 1


@per_engine
def test_retry_default_three_attempts(engine):
    """with_retry() with no arguments makes three attempts."""
    fl = Flaky(99)
    run_failing(engine, task(fl)().with_retry())
    assert fl.calls == 3


@per_engine
def test_retry_on_filters(engine):
    """Errors not in retry_on are not retried."""
    fl = Flaky(5, exc=ValueError)
    exc, rec = run_failing(engine, task(fl)().with_retry(5, retry_on=(KeyError,)))
    assert fl.calls == 1 and type(exc) is ValueError and not rec.of(TaskRetrying)


@per_engine
def test_retry_on_single_class(engine):
    """retry_on may be a single exception class."""
    fl = Flaky(1, exc=KeyError)
    assert run(task(fl)().with_retry(3, retry_on=KeyError), engine=engine) == "ok"


@per_engine
def test_retry_on_subclass(engine):
    """retry_on matches subclasses."""
    fl = Flaky(1, exc=FileNotFoundError)
    assert run(task(fl)().with_retry(2, retry_on=(OSError,)), engine=engine) == "ok"


@per_engine
def test_retry_backoff_delays(engine):
    """The pause before attempt k+1 is min(delay * backoff**(k-1), max_delay)."""
    fl = Flaky(99)
    _, rec = run_failing(engine, task(fl, name="fl")().with_retry(
        5, delay=0.01, backoff=2.0, max_delay=0.03))
    assert [r.delay for r in rec.of(TaskRetrying)] == pytest.approx([0.01, 0.02, 0.03, 0.03])
    assert [r.attempt for r in rec.of(TaskRetrying)] == [1, 2, 3, 4]


@per_engine
def test_retry_backoff_without_max_delay(engine):
    """Without max_delay the pause grows geometrically."""
    fl = Flaky(99)
    _, rec = run_failing(engine, task(fl, name="fl")().with_retry(4, delay=0.001, backoff=3.0))
    assert [r.delay for r in rec.of(TaskRetrying)] == pytest.approx([0.001, 0.003, 0.009])


@per_engine
def test_retry_jitter_added(engine):
    """Jitter adds uniform(0, jitter) to each pause."""
    fl = Flaky(99)
    _, rec = run_failing(engine, task(fl, name="fl")().with_retry(
        6, delay=0.002, backoff=1.0, jitter=0.004))
    delays = [r.delay for r in rec.of(TaskRetrying)]
    assert len(delays) == 5
    assert all(0.002 <= d <= 0.006 for d in delays)
    assert len(set(delays)) > 1


@per_engine
def test_retry_pause_is_waited(engine):
    """The engine actually waits the pause between attempts."""
    times = []

    @task
    def bad():
        times.append(time.perf_counter())
        raise OSError("x")

    run_failing(engine, bad().with_retry(2, delay=0.05))
    assert times[1] - times[0] >= 0.045


@per_engine
def test_retry_events_order(engine):
    """Each TaskRetrying comes between a TaskFailed and the next TaskStarted."""
    fl = Flaky(2)
    _, rec = run_on(engine, task(fl, name="fl")().with_retry(3))
    names = [type(e).__name__ for e in rec.events if getattr(e, "task", None) == "fl"]
    assert names == ["TaskStarted", "TaskFailed", "TaskRetrying",
                     "TaskStarted", "TaskFailed", "TaskRetrying",
                     "TaskStarted", "TaskFinished"]


@per_engine
def test_retry_async_task(engine):
    """Async tasks are retried too."""
    calls = Calls()

    @task
    async def aflaky():
        calls.hit("a")
        if calls["a"] < 3:
            raise OSError("x")
        return "ok"

    assert run(aflaky().with_retry(3), engine=engine) == "ok"


@per_engine
@per_switches
def test_retry_does_not_cover_tail_calls(engine, switches):
    """A failure in a tail call's continuation does not retry the calling task."""
    calls = Calls()

    @task
    def fails_later():
        calls.hit("cont")
        raise OSError("continuation")

    @task
    def caller():
        calls.hit("caller")
        return ident(fails_later())

    exc, _ = run_failing(engine, caller().with_retry(3), switches)
    assert type(exc) is OSError
    assert calls.counts == {"caller": 1, "cont": 1}


@per_engine
def test_retry_error_named(engine):
    """The final error after retries names the task."""
    fl = Flaky(99)
    exc, _ = run_failing(engine, task(fl, name="retried")().with_retry(2))
    assert task_of(exc) == "retried"


# ===========================================================================
# timeout


@per_engine
@per_switches
def test_timeout_async_raises_timeout_error(engine, switches):
    """An async task over its timeout is cancelled and TimeoutError is raised."""
    seen = []

    @task
    async def slow():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    exc, _ = run_failing(engine, ident(slow().with_timeout(0.02)), switches)
    assert isinstance(exc, TimeoutError)
    assert seen == ["cancelled"]


@per_engine
def test_timeout_not_reached(engine):
    """A task finishing in time returns its value."""

    @task
    async def quick():
        await asyncio.sleep(0)
        return 5

    assert run(quick().with_timeout(5), engine=engine) == 5


@per_engine
def test_timeout_error_named(engine):
    """The TimeoutError names the task."""

    @task(name="too_slow")
    async def slow():
        await asyncio.sleep(5)

    exc, _ = run_failing(engine, slow().with_timeout(0.01))
    assert task_of(exc) == "too_slow"


@per_engine
def test_timeout_with_retry_retries(engine):
    """A timed-out attempt is retried when retry is set."""
    calls = Calls()

    @task
    async def sometimes_slow():
        calls.hit("s")
        if calls["s"] == 1:
            await asyncio.sleep(5)
        return "ok"

    assert run(sometimes_slow().with_timeout(0.02).with_retry(2), engine=engine) == "ok"
    assert calls["s"] == 2


@per_engine
def test_timeout_does_not_cover_tail_calls(engine):
    """The timeout covers the task's own invocation, not its tail calls."""

    @task
    async def slow_cont():
        await asyncio.sleep(0.1)
        return "late but fine"

    @task
    async def caller():
        return slow_cont()

    assert run(caller().with_timeout(0.03), engine=engine) == "late but fine"


@per_engine
def test_timeout_offloaded_run_moves_on(engine):
    """An offloaded task over its timeout raises TimeoutError without waiting for the thread."""
    import threading

    release = threading.Event()

    @task(offload=True)
    def blocking():
        release.wait(2)
        return "done"

    async def main():
        start = time.perf_counter()
        try:
            await arun(blocking().with_timeout(0.05), engine=engine)
        except TimeoutError:
            return time.perf_counter() - start
        finally:
            release.set()
        raise AssertionError("expected TimeoutError")

    assert asyncio.run(main()) < 1.0


@per_engine
def test_timeout_inline_sync_runs_to_end_then_fails(engine):
    """An inline sync task over its timeout runs to its end, then fails with TimeoutError."""
    finished = []

    @task
    def busy():
        time.sleep(0.05)
        finished.append(1)
        return 1

    exc, _ = run_failing(engine, busy().with_timeout(0.01))
    assert isinstance(exc, TimeoutError) and finished == [1]


def test_timeout_must_be_positive():
    """A non-positive timeout is refused when set."""
    with pytest.raises(ValueError):
        ident(1).with_timeout(0)


# ===========================================================================
# cache


@per_engine
@per_switches
def test_cache_hit_skips_call(engine, switches):
    """A second run with the same arguments uses the cached value."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f", lambda x: x * 3)
    assert run(f(2).with_cache(store=store), engine=engine, **switches) == 6
    assert run(f(2).with_cache(store=store), engine=engine, **switches) == 6
    assert calls["f"] == 1


@per_engine
def test_cache_hit_emits_cached_skip(engine):
    """A cache hit emits TaskSkipped(reason='cached') and no TaskStarted."""
    store = MemoryStore()

    @task(name="cached_task")
    def f(x):
        return x

    run(f(1).with_cache(store=store), engine=engine)
    _, rec = run_on(engine, f(1).with_cache(store=store))
    assert [(e.task, e.reason) for e in rec.of(TaskSkipped)] == [("cached_task", "cached")]
    assert not rec.of(TaskStarted, "cached_task")


@per_engine
def test_cache_miss_on_other_arguments(engine):
    """Different argument values are different entries."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    run([f(1).with_cache(store=store), f(2).with_cache(store=store)], engine=engine)
    assert calls["f"] == 2 and len(store) == 2


@per_engine
def test_cache_argument_types_distinguished(engine):
    """1, 1.0, True and '1' are different cache keys."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    out = run([f(v).with_cache(store=store) for v in (1, 1.0, True, "1")], engine=engine)
    assert out == [1, 1.0, True, "1"]
    assert [type(x) for x in out] == [int, float, bool, str]
    assert calls["f"] == 4


@per_engine
def test_cache_keyword_and_positional_same_key(engine):
    """Arguments are keyed as bound: f(1) and f(x=1) share an entry."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    @task
    def f(x, y=2):
        Calls.of(ref).hit("f")
        return x + y

    assert run(f(1).with_cache(store=store), engine=engine) == 3
    assert run(f(x=1, y=2).with_cache(store=store), engine=engine) == 3
    assert calls["f"] == 1


@per_engine
def test_cache_stable_container_arguments(engine):
    """Builtin containers of stable values are stable arguments."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f", lambda x: 1)
    arg = {"a": [1, 2.5, None], "b": (b"x", {3, 4}), "c": frozenset({1j})}
    run(f(arg).with_cache(store=store), engine=engine)
    run(f({"a": [1, 2.5, None], "b": (b"x", {4, 3}), "c": frozenset({1j})})
        .with_cache(store=store), engine=engine)
    assert calls["f"] == 1


@per_engine
def test_cache_equal_dicts_share_entry(engine):
    """Equal dict arguments built the same way hit the same entry."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f", lambda x: 1)
    run(f({"a": 1, "b": 2}).with_cache(store=store), engine=engine)
    run(f({"a": 1, "b": 2}).with_cache(store=store), engine=engine)
    assert calls["f"] == 1


@per_engine
def test_cache_shared_between_equal_tasks(engine):
    """Two Task objects over the same function share cache entries."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    def fn(x):
        Calls.of(ref).hit("fn")
        return x

    t1, t2 = task(fn), task(fn)
    run(t1(5).with_cache(store=store), engine=engine)
    assert run(t2(5).with_cache(store=store), engine=engine) == 5
    assert calls["fn"] == 1


def _make_closure_task(calls, factor):
    ref = calls.ref

    @task
    def scaled(x):
        Calls.of(ref).hit(factor)
        return x * factor

    return scaled


@per_engine
def test_cache_closure_values_in_key(engine):
    """Tasks differing only in closure values do not share entries."""
    calls = Calls()
    store = MemoryStore()
    assert run(_make_closure_task(calls, 2)(5).with_cache(store=store), engine=engine) == 10
    assert run(_make_closure_task(calls, 3)(5).with_cache(store=store), engine=engine) == 15
    assert run(_make_closure_task(calls, 3)(5).with_cache(store=store), engine=engine) == 15
    assert calls.counts == {2: 1, 3: 1}


@per_engine
def test_cache_code_change_in_key(engine):
    """Functions with the same qualname but different code do not share entries."""
    store = MemoryStore()
    ns1: dict = {"__name__": "cache_mod_x"}
    ns2: dict = {"__name__": "cache_mod_x"}
    exec("def f(x):\n    return x + 1\n", ns1)
    exec("def f(x):\n    return x + 2\n", ns2)
    assert run(task(ns1["f"])(1).with_cache(store=store), engine=engine) == 2
    assert run(task(ns2["f"])(1).with_cache(store=store), engine=engine) == 3


@per_engine
def test_cache_defaults_in_key(engine):
    """Functions differing only in a default value do not share entries."""
    store = MemoryStore()
    ns1: dict = {"__name__": "cache_mod_y"}
    ns2: dict = {"__name__": "cache_mod_y"}
    exec("def f(x, k=1):\n    return x * k\n", ns1)
    exec("def f(x, k=2):\n    return x * k\n", ns2)
    assert run(task(ns1["f"])(5).with_cache(store=store), engine=engine) == 5
    assert run(task(ns2["f"])(5).with_cache(store=store), engine=engine) == 10


@per_engine
def test_cache_key_string_separates(engine):
    """key= strings separate entries of otherwise equal calls."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    run(f(1).with_cache(key="a", store=store), engine=engine)
    run(f(1).with_cache(key="b", store=store), engine=engine)
    run(f(1).with_cache(key="a", store=store), engine=engine)
    assert calls["f"] == 2


@per_engine
def test_cache_key_callable_gets_arguments(engine):
    """A key= callable is called with the call's bound arguments."""
    seen = []
    store = MemoryStore()

    @task
    def f(x, y=3):
        return x + y

    def key(**kw):
        seen.append(kw)
        return "k"

    assert run(f(1).with_cache(key=key, store=store), engine=engine) == 4
    assert seen == [{"x": 1, "y": 3}]


@per_engine
def test_cache_key_callable_separates(engine):
    """Different key= callable results separate entries of equal calls."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    tag = ["one"]

    def key(*a, **kw):
        return tag[0]

    run(f(1).with_cache(key=key, store=store), engine=engine)
    tag[0] = "two"
    run(f(1).with_cache(key=key, store=store), engine=engine)
    run(f(1).with_cache(key=key, store=store), engine=engine)
    assert calls["f"] == 2


@per_engine
def test_cache_key_callable_must_return_str(engine):
    """A key= callable returning a non-str is a TypeError naming the task."""
    exc, _ = run_failing(engine, ident(1).with_cache(key=lambda x: 5, store=MemoryStore()))
    assert type(exc) is TypeError and task_of(exc) == ident.name


def test_cache_key_must_be_str_or_callable():
    """with_cache(key=...) refuses other types."""
    with pytest.raises(TypeError):
        ident(1).with_cache(key=5)


@per_engine
def test_cache_unstable_argument_type_error(engine):
    """An argument without a stable hash is a TypeError naming the task and argument."""

    class Thing:
        pass

    @task(name="needs_stable")
    def f(the_arg):
        return 1

    exc, _ = run_failing(engine, f(Thing()).with_cache(store=MemoryStore()))
    assert type(exc) is TypeError
    assert "needs_stable" in str(exc) and "the_arg" in str(exc)


class _Str(str):
    pass


@pytest.mark.parametrize("value", [
    pytest.param([1, object()], id="object-in-list"),
    pytest.param({"k": frozenset([object()])}, id="object-in-frozenset"),
    pytest.param(_Str("x"), id="str-subclass"),
])
@per_engine
def test_cache_unstable_nested_argument(engine, value):
    """Unstable values nested in containers (or builtin subclasses) are refused too."""

    @task(name="nested_arg")
    def f(v):
        return 1

    exc, _ = run_failing(engine, f(value).with_cache(store=MemoryStore()))
    assert type(exc) is TypeError and "nested_arg" in str(exc)


@per_engine
def test_cache_none_result_cached(engine):
    """A None result is cached like any other."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    @task
    def nothing(x):
        Calls.of(ref).hit("n")

    assert run(nothing(1).with_cache(store=store), engine=engine) is None
    assert run(nothing(1).with_cache(store=store), engine=engine) is None
    assert calls["n"] == 1


@per_engine
def test_cache_skip_not_cached(engine):
    """A skipped cached node stores nothing; a later run computes it."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    assert run(f(1).with_cache(store=store).run_if(False), engine=engine) is None
    assert len(store) == 0
    assert run(f(1).with_cache(store=store), engine=engine) == 1
    assert calls["f"] == 1


@per_engine
def test_cache_skipped_continuation_not_cached(engine):
    """A node whose tail call is skipped is not cached."""
    store = MemoryStore()
    flag = {"run": False}

    @task
    def hop(x):
        return ident(x).run_if(flag["run"])

    assert run(hop(1).with_cache(store=store), engine=engine) is None
    assert len(store) == 0
    flag["run"] = True
    assert run(hop(1).with_cache(store=store), engine=engine) == 1


@per_engine
@per_switches
def test_cache_stores_final_value_after_tail_calls(engine, switches):
    """The cached value is the node's final value, after its tail calls."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    @task
    def cont(x):
        Calls.of(ref).hit("cont")
        return x * 10

    @task
    def start(x):
        Calls.of(ref).hit("start")
        return cont(x)

    assert run(add(start(2).with_cache(store=store), 1), engine=engine, **switches) == 21
    assert run(add(start(2).with_cache(store=store), 1), engine=engine, **switches) == 21
    assert calls.counts == {"start": 1, "cont": 1}


@per_engine
def test_cache_errors_not_cached(engine):
    """A failing call stores nothing."""
    store = MemoryStore()
    fl = Flaky(1)  # a callable object: its state has no stable key, so key= names it
    run_failing(engine, task(fl)().with_cache(key="flaky", store=store))
    assert len(store) == 0
    assert run(task(fl)().with_cache(key="flaky", store=store), engine=engine) == "ok"


@per_engine
def test_cache_ttl_expires(engine, monkeypatch):
    """An entry older than ttl is recomputed; a younger one is reused."""
    clock = FakeClock()
    monkeypatch.setattr(store_mod, "time", clock)
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    run(f(1).with_cache(store=store, ttl=10), engine=engine)
    clock.now += 9
    run(f(1).with_cache(store=store, ttl=10), engine=engine)
    assert calls["f"] == 1
    clock.now += 2
    run(f(1).with_cache(store=store, ttl=10), engine=engine)
    assert calls["f"] == 2


@per_engine
def test_cache_default_store_shared_across_runs(engine):
    """Without store=, entries live in the process-wide MemoryStore."""
    calls = Calls()
    ref = calls.ref
    marker = f"default-store-{engine}-{time.time_ns()}"

    @task
    def f(m):
        Calls.of(ref).hit("f")
        return m

    assert run(f(marker).with_cache(), engine=engine) == marker
    assert run(f(marker).with_cache(), engine=engine) == marker
    assert calls["f"] == 1


@per_engine
def test_cache_injected_resource_excluded_from_key(engine):
    """Injected resource values are not part of the cache key."""
    calls = Calls()
    ref = calls.ref
    store = MemoryStore()

    @task
    def f(x, db=inject("cache_test_db")):
        Calls.of(ref).hit("f")
        return x

    assert run(f(1).with_cache(store=store), engine=engine,
               resources={"cache_test_db": object()}) == 1
    assert run(f(1).with_cache(store=store), engine=engine,
               resources={"cache_test_db": object()}) == 1
    assert calls["f"] == 1


def test_cache_hit_across_engines():
    """An entry written by one engine is read by the other."""
    calls = Calls()
    store = MemoryStore()
    f = counted(calls, "f")
    run(f(7).with_cache(store=store), engine="vm")
    run(f(7).with_cache(store=store), engine="graph")
    assert calls["f"] == 1


# ---------------------------------------------------------------------------
# Stores


def test_memory_store_get_set():
    """MemoryStore returns what was set and the default for missing keys."""
    s = MemoryStore()
    s.set("k", [1])
    assert s.get("k") == [1]
    assert s.get("missing", "dflt") == "dflt"


def test_memory_store_ttl(monkeypatch):
    """MemoryStore entries expire after ttl."""
    clock = FakeClock()
    monkeypatch.setattr(store_mod, "time", clock)
    s = MemoryStore()
    s.set("k", 1, ttl=5)
    clock.now += 4.9
    assert s.get("k", None) == 1
    clock.now += 0.2
    assert s.get("k", None) is None


def test_memory_store_clear():
    """MemoryStore.clear empties it."""
    s = MemoryStore()
    s.set("a", 1)
    s.clear()
    assert len(s) == 0


def test_sqlite_store_roundtrip(tmp_path):
    """SQLiteStore stores picklable values, None included."""
    s = SQLiteStore(tmp_path / "c.db")
    s.set("a", {"x": [1, 2]})
    s.set("n", None)
    assert s.get("a") == {"x": [1, 2]}
    assert s.get("n", "missing") is None
    assert s.get("zz", "missing") == "missing"


def test_sqlite_store_ttl(tmp_path, monkeypatch):
    """SQLiteStore entries expire after ttl."""
    clock = FakeClock()
    monkeypatch.setattr(store_mod, "time", clock)
    s = SQLiteStore(tmp_path / "c.db")
    s.set("k", 1, ttl=5)
    clock.now += 4.9
    assert s.get("k", "gone") == 1
    clock.now += 0.2
    assert s.get("k", "gone") == "gone"


def test_sqlite_store_shared_between_instances(tmp_path):
    """Two SQLiteStore objects on one path see each other's entries."""
    a = SQLiteStore(tmp_path / "c.db")
    b = SQLiteStore(tmp_path / "c.db")
    a.set("k", "v")
    assert b.get("k") == "v"


@per_engine
def test_sqlite_store_in_workflow(engine, tmp_path):
    """A workflow caches into an SQLiteStore."""
    calls = Calls()
    store = SQLiteStore(tmp_path / "w.db")
    f = counted(calls, "f", lambda x: {"v": x})
    assert run(f(1).with_cache(store=store), engine=engine) == {"v": 1}
    assert run(f(1).with_cache(store=SQLiteStore(tmp_path / "w.db")), engine=engine) == {"v": 1}
    assert calls["f"] == 1


_SQLITE_FLOW = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    from cascade_graph import task, SQLiteStore
    from cascade_vm import run

    @task
    def expensive(x, tag):
        with open({marker!r}, "a") as fh:
            fh.write("called\\n")
        return {{"x": x * 2, "tag": tag}}

    store = SQLiteStore({db!r})
    print(run(expensive(21, "t").with_cache(store=store), engine=sys.argv[1]))
''')


@per_engine
def test_sqlite_store_across_processes(engine, tmp_path):
    """Two processes share SQLiteStore entries: the second does not call the task."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    marker = tmp_path / "calls.txt"
    script = tmp_path / "flow_sqlite.py"
    script.write_text(_SQLITE_FLOW.format(root=root, marker=str(marker),
                                          db=str(tmp_path / "shared.db")))
    outs = []
    for eng in (engine, "graph" if engine == "vm" else "vm"):
        proc = subprocess.run([sys.executable, str(script), eng], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout.strip())
    assert outs[0] == outs[1] == "{'x': 42, 'tag': 't'}"
    assert marker.read_text().count("called") == 1


@per_engine
def test_cache_qualname_in_key(engine):
    """Functions with equal code but different qualified names do not share entries."""
    calls = Calls()
    store = MemoryStore()
    ns: dict = {"__name__": "cache_mod_z", "hit": calls.hit}
    exec("def f(x):\n    hit('f')\n    return x\n"
         "def g(x):\n    hit('g')\n    return x\n", ns)
    run(task(ns["f"])(1).with_cache(store=store), engine=engine)
    run(task(ns["g"])(1).with_cache(store=store), engine=engine)
    assert calls.counts == {"f": 1, "g": 1}


@per_engine
def test_policy_does_not_change_value_of_sync_returning_coroutine(engine):
    """A sync task returning a coroutine gives the same kind of value with or without a policy."""

    async def co(x):
        return x * 2

    @task
    def wrapper(x):
        return co(x)

    plain = run(wrapper(1), engine=engine)
    retried = run(wrapper(1).with_retry(2), engine=engine)
    for v in (plain, retried):
        if asyncio.iscoroutine(v):
            v.close()
    assert asyncio.iscoroutine(plain) == asyncio.iscoroutine(retried)


@per_engine
def test_concurrent_timeouts(engine):
    """Timeouts on concurrently running async calls each apply to their own call."""

    @task
    async def nap(x, seconds):
        await asyncio.sleep(seconds)
        return x

    ok = run(add(nap(1, 0.01).with_timeout(2), nap(2, 0.01).with_timeout(2)), engine=engine)
    assert ok == 3
    exc, _ = run_failing(engine, add(nap(1, 0.01).with_timeout(2), nap(2, 5).with_timeout(0.05)))
    assert isinstance(exc, TimeoutError)
