"""Running (SPEC section 3): run/arun, targets, errors, cancellation, concurrency, scale."""

from __future__ import annotations

import asyncio
import time

import pytest

from cascade_graph import Router, task
from cascade_graph.errors import task_of
from cascade_vm import arun, run
from tests.helpers import per_engine, per_switches, run_failing, until


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


@task
async def lift_100(x):
    await asyncio.sleep(0)
    return x + 100


@task
def total(*xs):
    return sum(xs)


# ---------------------------------------------------------------------------
# The facade


def test_default_engine_is_vm(monkeypatch):
    """run() uses the VM unless told otherwise."""
    import cascade_vm

    used = []
    real = cascade_vm.ENGINES["vm"]

    async def spy(ctx, root):
        used.append("vm")
        return await real(ctx, root)

    monkeypatch.setitem(cascade_vm.ENGINES, "vm", spy)
    assert run(add(1, ident(2))) == 3
    assert used == ["vm"]


def test_unknown_engine_value_error():
    """An unknown engine name is a ValueError naming it."""
    with pytest.raises(ValueError, match="nope"):
        run(ident(1), engine="nope")


def test_unknown_engine_value_error_in_arun():
    """arun with an unknown engine raises ValueError too."""
    with pytest.raises(ValueError):
        asyncio.run(arun(ident(1), engine="nope"))


def test_unknown_engine_runs_nothing():
    """A bad engine name fails before any task runs."""
    ran = []

    @task
    def f():
        ran.append(1)

    with pytest.raises(ValueError):
        run(f(), engine="nope")
    assert ran == []


@per_engine
def test_run_inside_running_loop_is_runtime_error(engine):
    """run() inside a running event loop raises a clear RuntimeError."""

    async def main():
        with pytest.raises(RuntimeError, match="arun"):
            run(ident(1), engine=engine)

    asyncio.run(main())


@per_engine
def test_arun_in_plain_asyncio_loop(engine):
    """arun() works in a plain asyncio event loop."""

    @task
    async def nap(x):
        await asyncio.sleep(0)
        return x

    assert asyncio.run(arun(add(nap(1), ident(2)), engine=engine)) == 3


@per_engine
def test_arun_runs_in_awaiting_loop(engine):
    """arun() runs the tasks in the loop that awaits it."""

    @task
    async def loop_of():
        return asyncio.get_running_loop()

    async def main():
        return await arun(loop_of(), engine=engine), asyncio.get_running_loop()

    got, expected = asyncio.run(main())
    assert got is expected


@per_engine
def test_run_uses_uvloop(engine):
    """run() runs the workflow on a uvloop event loop (asyncio's where uvloop is missing:
    tests/test_no_uvloop.py runs this file with uvloop hidden)."""
    try:
        import uvloop
    except ImportError:
        uvloop = None

    @task
    async def loop_type():
        return type(asyncio.get_running_loop())

    if uvloop is None:
        assert run(loop_type(), engine=engine).__module__.startswith("asyncio")
    else:
        assert run(loop_type(), engine=engine) is uvloop.Loop


# ---------------------------------------------------------------------------
# Targets


@per_engine
def test_value_target_returned_as_same_object(engine):
    """A target with nothing lazy is returned as it is."""
    for value in ([1, [2]], {"a": (1,)}, {1, 2}, "s", None, object()):
        assert run(value, engine=engine) is value


@per_engine
def test_container_target_gives_container(engine):
    """A container of lazies gives the same container of values."""
    out = run([ident(1), (ident(2), 3), {"c": ident(4)}, {ident(5)}], engine=engine)
    assert out == [1, (2, 3), {"c": 4}, {5}]
    assert type(out[1]) is tuple and type(out[3]) is set


@per_engine
def test_container_target_dict_order(engine):
    """A dict target keeps its key order."""
    out = run({"z": ident(1), "a": ident(2)}, engine=engine)
    assert list(out) == ["z", "a"]


@per_engine
@per_switches
def test_skipped_target_returns_none(engine, switches):
    """A skipped run target makes run() return None."""
    assert run(ident(1).run_if(False), engine=engine, **switches) is None


@per_engine
@per_switches
def test_skipped_lazy_in_container_target_is_none(engine, switches):
    """A skipped lazy inside a container target becomes None."""
    skipped = ident(1).run_if(False)
    out = run([skipped, {"k": add(skipped, 1)}, ident(2)], engine=engine, **switches)
    assert out == [None, {"k": None}, 2]


@per_engine
@per_switches
def test_target_tail_skipped_continuation_is_none(engine, switches):
    """A tail call whose continuation is skipped skips the caller: the target is None."""

    @task
    def hop():
        return ident(1).run_if(False)

    assert run(hop(), engine=engine, **switches) is None
    assert run([hop(), ident(2)], engine=engine, **switches) == [None, 2]


# ---------------------------------------------------------------------------
# Errors


class Boom(Exception):
    pass


@per_engine
@per_switches
def test_error_same_type_and_message(engine, switches):
    """A task's exception leaves run() with the same type and str()."""

    @task
    def bad(x):
        raise Boom(f"boom {x}")

    exc, _ = run_failing(engine, add(ident(1), bad(2)), switches)
    assert type(exc) is Boom and str(exc) == "boom 2"


@per_engine
def test_error_is_same_object(engine):
    """The exception raised is the very object the task raised."""
    raised = []

    @task
    def bad():
        e = Boom("x")
        raised.append(e)
        raise e

    exc, _ = run_failing(engine, ident(bad()))
    assert exc is raised[0]


@per_engine
@per_switches
def test_error_note_names_task(engine, switches):
    """The exception carries a note naming the task (read back by task_of)."""

    @task(name="the_culprit")
    def bad():
        raise Boom("x")

    exc, _ = run_failing(engine, ident(bad()), switches)
    assert task_of(exc) == "the_culprit"
    assert any("the_culprit" in n for n in exc.__notes__)


@per_engine
def test_error_note_names_async_task(engine):
    """An async task's exception is named too."""

    @task(name="async_culprit")
    async def bad():
        await asyncio.sleep(0)
        raise Boom("x")

    exc, _ = run_failing(engine, add(bad(), ident(1)))
    assert task_of(exc) == "async_culprit"


@per_engine
def test_error_note_added_once(engine):
    """The task note is added once, even when the error passes through tail calls."""

    @task(name="deep_bad")
    def bad(n):
        if n == 0:
            raise Boom("x")
        return ident(bad(n - 1))

    exc, _ = run_failing(engine, bad(3))
    assert sum("deep_bad" in n for n in exc.__notes__) == 1


@per_engine
@per_switches
def test_error_in_tail_loop_named(engine, switches):
    """An error deep in a tail loop names the failing task."""

    @task(name="looper")
    def loop(n):
        if n == 0:
            raise Boom("end")
        return loop(n - 1)

    exc, _ = run_failing(engine, ident(loop(100)), switches)
    assert type(exc) is Boom and task_of(exc) == "looper"


@per_engine
def test_error_in_map_item_named(engine):
    """An error in one map item carries the item task's name."""

    @task(name="map_item")
    def item(x):
        if x == 2:
            raise Boom("two")
        return x

    exc, _ = run_failing(engine, item.map([1, 2, 3]))
    assert type(exc) is Boom and task_of(exc) == "map_item"


@per_engine
def test_error_from_offloaded_task_same_object(engine):
    """An exception raised in a worker thread leaves run() as the same object, named."""
    raised = []

    @task(offload=True, name="threaded")
    def bad():
        e = Boom("thread")
        raised.append(e)
        raise e

    exc, _ = run_failing(engine, ident(bad()))
    assert exc is raised[0] and task_of(exc) == "threaded"


@per_engine
def test_base_exception_passes_through(engine):
    """A KeyboardInterrupt-like BaseException from a task is not swallowed."""

    class Stop(BaseException):
        pass

    @task
    def bad():
        raise Stop()

    with pytest.raises(Stop):
        run(ident(bad()), engine=engine)


@per_engine
def test_concurrent_siblings_cancelled(engine):
    """When a task fails, concurrent siblings are cancelled (they see CancelledError)."""
    seen = []

    @task
    async def sleeper(i):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append(i)
            raise
        return i

    @task
    async def bad():
        await asyncio.sleep(0.01)
        raise Boom("x")

    exc, _ = run_failing(engine, total(sleeper(1), sleeper(2), bad(), sleeper(3)))
    assert type(exc) is Boom
    assert sorted(seen) == [1, 2, 3]


@per_engine
def test_no_task_left_behind_after_failure(engine):
    """After a failed arun(), no asyncio task of the run is left in the loop."""

    @task
    async def sleeper(i):
        await asyncio.sleep(5)
        return i

    @task
    async def bad():
        await asyncio.sleep(0.01)
        raise Boom("x")

    @task
    async def loop(n):
        await asyncio.sleep(0.001)
        return loop(n - 1) if n else 0

    async def main():
        before = asyncio.all_tasks()
        with pytest.raises(Boom):
            await arun(total(sleeper(1), loop(10_000), bad(), sleeper(2)), engine=engine)
        return asyncio.all_tasks() - before

    assert asyncio.run(main()) == set()


@per_engine
def test_no_task_left_behind_after_success(engine):
    """After a successful arun(), no asyncio task of the run remains."""

    @task
    async def nap(i):
        await asyncio.sleep(0.001)
        return i

    async def main():
        before = asyncio.all_tasks()
        await arun(total(*[nap(i) for i in range(20)]), engine=engine)
        return asyncio.all_tasks() - before

    assert asyncio.run(main()) == set()


@per_engine
def test_cancelling_arun_cancels_tasks(engine):
    """Cancelling the awaiting coroutine cancels the run's tasks and leaves none behind."""
    seen = []

    started = []

    @task
    async def sleeper(i):
        started.append(i)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append(i)
            raise
        return i

    async def main():
        before = asyncio.all_tasks()
        t = asyncio.ensure_future(arun(total(sleeper(1), sleeper(2)), engine=engine))
        await until(lambda: len(started) == 2)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return asyncio.all_tasks() - before - {t}

    assert asyncio.run(main()) == set()
    assert sorted(seen) == [1, 2]


@pytest.mark.parametrize("position", ["first", "last"])
@per_engine
def test_failure_stops_concurrent_async_loop(engine, position):
    """A failure cancels a concurrent async tail loop instead of letting it run to its end."""
    iterations = []

    @task
    async def aloop(n):
        iterations.append(n)
        await asyncio.sleep(0.005)
        return n if n <= 0 else aloop(n - 1)

    @task
    async def bad():
        await asyncio.sleep(0.02)
        raise Boom("x")

    loop = ident(aloop(300))
    target = total(bad(), loop) if position == "last" else total(loop, bad())
    exc, _ = run_failing(engine, target)
    assert type(exc) is Boom
    assert len(iterations) < 300


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "nohot"])
@per_engine
def test_failure_stops_concurrent_sync_loop(engine, hot_path):
    """A failure of an async task cancels a sync tail loop running beside it."""
    iterations = [0]

    @task
    def sloop(n):
        iterations[0] += 1
        return n if n <= 0 else sloop(n - 1)

    @task
    async def bad():
        await asyncio.sleep(0.005)
        raise Boom("x")

    exc, _ = run_failing(engine, total(bad(), ident(sloop(200_000))), hot_path=hot_path)
    assert type(exc) is Boom
    assert iterations[0] < 200_000


@per_engine
def test_first_failure_wins(engine):
    """When several tasks fail, the first failure observed is raised."""

    @task
    async def bad(name, delay):
        await asyncio.sleep(delay)
        raise Boom(name)

    exc, _ = run_failing(engine, total(bad("late", 0.2), bad("early", 0.01)))
    assert str(exc) == "early"


@per_engine
def test_sync_error_after_async_started(engine):
    """A sync task failing while async siblings run cancels them."""
    seen = []

    @task
    async def sleeper():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("c")
            raise

    @task
    def bad(_):
        raise Boom("sync")

    @task
    async def anap():
        await asyncio.sleep(0.01)
        return 1

    exc, _ = run_failing(engine, total(bad(anap()), sleeper()))
    assert str(exc) == "sync" and seen == ["c"]


# ---------------------------------------------------------------------------
# Concurrency and fairness


@per_engine
def test_hundred_sleepers_run_concurrently(engine):
    """100 independent tasks sleeping 0.1 s finish well under 0.5 s."""

    @task
    async def nap(i):
        await asyncio.sleep(0.1)
        return i

    start = time.perf_counter()
    assert run(total(*[nap(i) for i in range(100)]), engine=engine) == sum(range(100))
    assert time.perf_counter() - start < 0.5


@per_engine
def test_hundred_sleepers_in_container_target(engine):
    """100 sleeping tasks in a list target also run concurrently."""

    @task
    async def nap(i):
        await asyncio.sleep(0.1)
        return i

    start = time.perf_counter()
    assert run([nap(i) for i in range(100)], engine=engine) == list(range(100))
    assert time.perf_counter() - start < 0.5


@per_engine
def test_hundred_sleepers_behind_sync_consumers(engine):
    """Sleepers each behind a sync consumer still overlap."""

    @task
    async def nap(i):
        await asyncio.sleep(0.1)
        return i

    start = time.perf_counter()
    assert run(total(*[ident(nap(i)) for i in range(100)]), engine=engine) == sum(range(100))
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("shape", ["map", "continuation", "policies", "sibling-continuations"])
@per_engine
def test_hundred_sleepers_concurrent_in_other_shapes(engine, shape):
    """Sleepers in a map, a continuation, under policies or in sibling continuations overlap."""

    @task
    async def nap(i):
        await asyncio.sleep(0.1)
        return i

    @task
    def fan(lo, hi):
        return total(*[nap(i) for i in range(lo, hi)])

    @task
    def summed(xs):
        return sum(xs)

    if shape == "map":
        target = summed(nap.map(range(100)))
    elif shape == "continuation":
        target = fan(0, 100)
    elif shape == "policies":
        target = total(*[nap(i).with_retry(2).with_timeout(5) for i in range(100)])
    else:
        target = total(*[fan(i * 10, i * 10 + 10) for i in range(10)])
    start = time.perf_counter()
    assert run(target, engine=engine) == sum(range(100))
    assert time.perf_counter() - start < 0.5


@per_engine
def test_sync_tasks_tail_calling_async_overlap(engine):
    """Sibling sync tasks whose tail calls sleep still overlap (10 x 0.1 s well under 0.5 s)."""

    @task
    async def nap(i):
        await asyncio.sleep(0.1)
        return i

    @task
    def hop(i):
        return nap(i)

    start = time.perf_counter()
    assert run(total(*[hop(i) for i in range(10)]), engine=engine) == sum(range(10))
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "nohot"])
@per_engine
def test_loop_lets_other_coroutine_tick(engine, hot_path):
    """A hot tail loop in arun() lets another coroutine run meanwhile."""

    @task
    def countdown(n):
        return "done" if n <= 0 else countdown(n - 1)

    async def main():
        ticks = []
        stop = asyncio.Event()

        async def ticker():
            while not stop.is_set():
                ticks.append(1)
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        n0 = len(ticks)
        await arun(countdown(200_000), engine=engine, hot_path=hot_path)
        stop.set()
        await t
        return len(ticks) - n0

    assert asyncio.run(main()) >= 2


# ---------------------------------------------------------------------------
# Scale


def _chain(n):
    node = ident(0)
    for _ in range(n - 1):
        node = ident(node)
    return node


@per_engine
def test_100k_chain_runs(engine):
    """A 100,000-node chain compiles and runs without RecursionError."""
    assert run(_chain(100_000), engine=engine) == 0


@per_engine
def test_100k_fanout_runs(engine):
    """A 100,000-wide fan-out compiles and runs without RecursionError."""
    assert run(total(*[ident(i) for i in range(100_000)]), engine=engine) == sum(range(100_000))


@per_engine
def test_deep_non_tail_recursion(engine):
    """Nested tail calls below the root, 5,000 deep, run without RecursionError."""

    @task
    def inc(x):
        return x + 1

    @task
    def depth(n):
        return 0 if n == 0 else inc(depth(n - 1))

    assert run(depth(5000), engine=engine) == 5000


@per_engine
def test_an_async_link_on_a_first_sight_is_awaited(engine):
    """A workflow seen for the first time (the first tier) whose chain link or keyword
    link is an async task: its coroutine is awaited, not passed on."""

    @task
    async def lift(x, by=1):
        await asyncio.sleep(0)
        return x + by

    @task
    def inc(x):
        return x + 1

    assert run(inc(lift(inc(1))), engine=engine) == 4
    assert run(inc(lift(inc(1), by=5)), engine=engine) == 8
    assert run(lift(lift(lift(1))), engine=engine) == 4


@per_engine
def test_a_shared_link_inside_a_run_of_links_keeps_its_value(engine):
    """A first sight whose run of one task's links has a link that another node
    reads too: the run is one inner loop, and the shared link's value is kept."""

    @task
    def inc(x, by=1):
        return x + by

    @task
    def add(a, b):
        return a + b

    x = inc(inc(1))
    assert run(add(x, inc(x)), engine=engine) == 3 + 4
    x = inc(inc(1, by=2), by=2)
    assert run(add(inc(x, by=2), x), engine=engine) == 7 + 5
    x = inc(inc(1))
    assert run([inc(inc(x)), x], engine=engine) == [5, 3]


@per_engine
def test_a_chain_of_several_tasks_runs_link_by_link_on_a_first_sight(engine):
    """A first sight whose chain mixes tasks (``a(b(a(...)))``, keyword links, an async
    link): one inner loop runs the sync links in order, a shared link keeps its value,
    an async link breaks the loop, and a failing link is named in the error."""
    calls = []

    @task
    def a(x):
        calls.append("a")
        return x * 2

    @task
    def b(x, by=1):
        calls.append("b")
        return x + by

    @task
    def bad(x):
        raise Boom(f"bad({x})")

    assert run(a(b(a(b(a(1))))), engine=engine) == ((1 * 2 + 1) * 2 + 1) * 2
    assert calls == ["a", "b", "a", "b", "a"]
    assert run(b(a(b(a(3), by=5)), by=7), engine=engine) == (3 * 2 + 5) * 2 + 7
    assert run(a(b(lift_100(b(a(1))))), engine=engine) == ((1 * 2 + 1) + 100 + 1) * 2
    shared = b(a(b(1)))
    assert run(add(a(b(shared)), shared), engine=engine) == (5 + 1) * 2 + 5  # shared: 5
    exc, _ = run_failing(engine, a(b(bad(b(a(1))))))
    assert str(exc) == "bad(3)"
    assert any("bad" in note for note in getattr(exc, "__notes__", ()))


@per_engine
def test_flat_calls_of_one_task_run_in_one_loop_on_a_first_sight(engine):
    """A first sight with many flat calls of one task that are not a batch (one is also
    read elsewhere, or they carry keywords): one inner loop runs them in order; a call
    returning a lazy ends it (its tail call goes on), and a failing call is named."""
    calls = []

    @task
    def f(x, by=0):
        calls.append(x)
        if x == 13:
            raise Boom("thirteen")
        return f(x + 100) if x == 7 else x + by

    @task
    def gather(xs, extra):
        return sum(xs) + extra

    items = [f(i, by=1) for i in range(20) if i != 13]
    assert run(gather(items, items[3]), engine=engine) == (
        sum(i + 1 for i in range(20) if i not in (7, 13)) + 107 + 4)
    assert sorted(calls) == sorted([i for i in range(20) if i != 13] + [107])  # once each
    shared = f(3)
    items = [f(i) for i in range(10, 16)]
    with pytest.raises(Boom, match="thirteen") as caught:
        run(gather(items, items[0]), engine=engine)  # quiet: the first tier's
    assert caught.value.__notes__ == [f"cascade: raised by task '{f.name}'"]
    assert shared is not None


@per_engine
def test_an_async_fan_in_on_a_first_sight_reads_each_item_once_it_ends(engine):
    """A first sight whose last node waits on many started async calls (a fan-in of
    ``await asyncio.sleep``): each is read as it ends, its tail call included, and
    the fan-in runs once, after all of them; a failing item stops the run, named."""
    ran = []

    @task
    async def tick(i, delay=0.0):
        await asyncio.sleep(delay)
        if i == 66:
            raise Boom("sixty-six")
        return tick(i + 1000) if i == 5 else i

    @task
    def total(xs):
        ran.append(len(xs))
        return sum(xs)

    # the slower items first: later items end before earlier ones are read
    items = [tick(i, 0.002 * (i % 3 == 0)) for i in range(40)]
    assert run(total(items), engine=engine) == sum(range(40)) - 5 + 1005
    assert ran == [40]
    with pytest.raises(Boom, match="sixty-six") as caught:
        run(total([tick(i) for i in range(60, 70)]), engine=engine)
    assert caught.value.__notes__ == [f"cascade: raised by task '{tick.name}'"]


@per_engine
def test_inline_retries_and_timeouts_keep_a_first_sight_on_the_first_tier(engine):
    """A fan-out with one item under ``.with_retry()``, ``.with_timeout()``,
    ``.run_if()`` or ``.after()`` (made in line, as the engines make them) runs on the
    first tier: no template is built; the attempts are made, an exhausted retry
    raises the last error with one task note, a sync call past its timeout raises
    ``TimeoutError``, a false condition skips the item and so its consumer (the run
    gives None; a target list None for the item), ``.after`` runs its lazies first.
    A retry with a delay, and an async call's retry, go through the protocol as
    tasks, on the first tier too."""
    from cascade_graph.cache import SHARED
    from cascade_graph.firsttier import forget
    from cascade_graph.template import template_key

    attempts = []

    @task
    def flaky(i, fails=0):
        attempts.append(i)
        if attempts.count(i) <= fails:
            raise ConnectionError(f"flaky({i})")
        return i

    @task
    def slow(i):
        time.sleep(0.05)
        return i

    @task
    def total(xs):
        return sum(xs)

    items = [flaky(i) for i in range(20)]
    items[5] = flaky(5, fails=2).with_retry(3)
    items[7] = flaky(7).with_timeout(5)
    workflow = total(items)
    assert run(workflow, engine=engine) == sum(range(20))
    assert attempts.count(5) == 3 and template_key(workflow) not in SHARED
    attempts.clear()
    with pytest.raises(ConnectionError, match="flaky") as caught:
        run(total([flaky(1), flaky(2, fails=5).with_retry(2)]), engine=engine)
    assert attempts.count(2) == 2 and len(caught.value.__notes__) == 1
    with pytest.raises(TimeoutError):
        run(total([flaky(1), slow(2).with_timeout(0.01)]), engine=engine)
    for gated, value in ((flaky(3).run_if(True), 4), (flaky(3).run_if(flaky(0)), None),
                         (flaky(3).run_if(flaky(2)), 4)):
        workflow = total([flaky(1), gated])
        forget()  # (two of these are one structure: each is a first sight here)
        assert run(workflow, engine=engine) == value
        assert template_key(workflow) not in SHARED
    assert run([flaky(1), flaky(3).run_if(False)], engine=engine) == [1, None]
    attempts.clear()
    workflow = total([flaky(1), flaky(3).after(flaky(8), flaky(9))])
    assert run(workflow, engine=engine) == 4 and template_key(workflow) not in SHARED
    assert attempts.index(8) < attempts.index(3) and attempts.index(9) < attempts.index(3)
    attempts.clear()
    workflow = total([flaky(1), flaky(3, fails=1).with_retry(2, delay=0.001)])
    assert run(workflow, engine=engine) == 4 and attempts.count(3) == 2
    assert template_key(workflow) not in SHARED

    @task
    async def aflaky(i, fails=0):
        attempts.append(i)
        await asyncio.sleep(0)
        if attempts.count(i) <= fails:
            raise ConnectionError(f"aflaky({i})")
        return flaky(i) if i == 4 else i  # (4: a tail call, followed)

    attempts.clear()
    workflow = total([aflaky(i, fails=i % 2).with_retry(2) for i in range(6)]
                     + [aflaky(9).with_timeout(5)])
    assert run(workflow, engine=engine) == sum(range(6)) + 9
    assert template_key(workflow) not in SHARED
    assert [attempts.count(i) for i in range(6)] == [1, 2, 1, 2, 2, 2]  # (4: 1 + its tail)
    with pytest.raises(ConnectionError, match="aflaky") as caught:
        run(total([aflaky(1), aflaky(7, fails=3).with_retry(2)]), engine=engine)
    assert len(caught.value.__notes__) == 1


@per_engine
def test_policy_copies_over_lazies_run_on_the_first_tier_with_their_arguments(engine):
    """A first sight whose calls over lazies carry an inline retry or timeout (a link,
    a keyword link, two lazies, a list of lazies, a flat call) runs on the first tier
    with each call's own arguments, lazies replaced: no template is built."""
    from cascade_graph.cache import SHARED
    from cascade_graph.template import template_key

    attempts = []

    @task
    def step(x, k=1, *more):
        attempts.append(x)
        if attempts.count(x) == 1 and x % 7 == 3:
            raise ConnectionError(f"step({x})")
        return x + k + sum(more)

    @task
    def total(xs, bonus=0):
        return sum(xs) + bonus

    node = step(0).with_retry(2)
    for i in range(40):
        kind = i % 4
        if kind == 0:
            node = step(node, 2).with_retry(2)
        elif kind == 1:
            node = step(node, k=3).with_timeout(30).with_retry(2)
        elif kind == 2:
            node = step(node, step(1), 1).with_retry(2)
        else:
            node = total([node, step(2).with_retry(2)], bonus=1).with_retry(2)
    got = run(node, engine=engine)
    attempts.clear()
    plain = 1  # the same arithmetic, by hand
    for i in range(40):
        kind = i % 4
        plain = (plain + 2 if kind == 0 else plain + 3 if kind == 1
                 else plain + 2 + 1 if kind == 2 else plain + 3 + 1)
    assert got == plain
    assert template_key(node) not in SHARED


@per_engine
def test_params_and_envs_keep_a_first_sight_on_the_first_tier(engine, monkeypatch):
    """A workflow reading a ``Param`` or an ``Env`` runs on the first tier (no template
    built): each is resolved once, before any task runs, so a missing required
    parameter or a bad value fails the run with nothing run, as on the engines."""
    from cascade_graph import Env, Param, ParameterError
    from cascade_graph.cache import SHARED
    from cascade_graph.firsttier import forget
    from cascade_graph.template import template_key

    ran = []

    @task
    def scale(i, by):
        ran.append(i)
        return i * by

    @task
    def total(xs, extra=0):
        return sum(xs) + int(extra)

    by = Param("by", default=2, type=int)
    monkeypatch.setenv("CASCADE_TEST_EXTRA", "5")
    extra = Env("CASCADE_TEST_EXTRA")
    workflow = total([scale(i, by) for i in range(10)], extra=extra)
    assert run(workflow, engine=engine, params={"by": "3"}) == 3 * 45 + 5
    assert template_key(workflow) not in SHARED and len(ran) == 10
    needed = Param("needed", type=int)
    for bad, params in ((total([scale(1, by), scale(2, needed)]), {}),
                        (total([scale(1, by), scale(2, by)]), {"by": "x"})):
        ran.clear()
        forget()
        with pytest.raises(ParameterError):
            run(bad, engine=engine, params=params)
        assert ran == [] and template_key(bad) not in SHARED
    forget()
    assert run(total([scale(1, by), scale(2, needed)], extra=by), engine=engine,
               params={"needed": 4}) == 2 + 8 + 2


@per_engine
def test_a_known_chain_runs_its_links_in_line(engine):
    """A chain run a second time (its template compiled): the links that wait on one node
    alone run one after the other on both engines; a link that tail-calls, an async
    link and a failing link each end the line where they are, with the right value
    or the failing task named."""

    @task
    def a(x):
        return x * 2

    @task
    def b(x, by=1):
        return x + by

    @task
    def again(x):  # a tail call in the middle of the chain
        return b(x, by=10) if x < 1000 else x

    @task
    def fails_at(x, limit):
        if x > limit:
            raise Boom(f"fails_at({x})")
        return x

    def chain(x, n):
        for k in range(n):
            x = a(x) if k % 3 == 0 else b(x, by=k) if k % 3 == 1 else again(x)
        return x

    def expected(x, n):
        for k in range(n):
            x = x * 2 if k % 3 == 0 else x + k if k % 3 == 1 else (x + 10 if x < 1000 else x)
        return x

    for start in (1, 2, 3):  # the first sight, then the known shape twice
        assert run(chain(start, 300), engine=engine) == expected(start, 300)
        assert run(b(lift_100(chain(start % 7, 30)), by=1), engine=engine) == (
            expected(start % 7, 30) + 101)
        assert run(chain(b(chain(start, 200), by=3), 200), engine=engine) == expected(
            expected(start, 200) + 3, 200)
    for limit in (40, 5, 40, 5):  # quiet runs: the first tier, then the engine's
        flow = a(b(fails_at(b(a(b(a(3)))), limit)))
        if limit == 40:
            assert run(flow, engine=engine) == 32
            continue
        with pytest.raises(Boom, match=r"fails_at\(15\)") as failure:
            run(flow, engine=engine)
        assert any("fails_at" in note for note in failure.value.__notes__)


@per_engine
def test_keyword_calls_of_every_name_run_on_a_known_shape(engine):
    """Keyword arguments named like anything ``**`` can pass (``fn``, ``p0``, a Python
    keyword, a name with a dash, a non-ASCII name) reach the task by that name, on the
    first sight and on the known shape (where the engines call a keyword caller)."""

    @task
    def keep(x=0, **named):
        return x, sorted(named.items())

    @task
    def inc(x):
        return x + 1

    names = {"fn": 1, "p0": 2, "k0": 3, "class": 4, "a-b": 5, "ﬁ": 6, "x1": 7}
    layouts = [{name: value} for name, value in names.items()] + [names, {"fn": 1, "k0": 3}]
    for start in (1, 2, 3):
        for named in layouts:
            want = (start + 1, sorted(named.items()))
            assert run(keep(inc(start), **named), engine=engine) == want
        assert run(keep(x=inc(start), fn=start), engine=engine) == (start + 1, [("fn", start)])


# ---------------------------------------------------------------------------
# The collector around workflows (collector.py)


@per_engine
def test_a_fan_out_raises_the_young_threshold_until_it_ends(engine):
    """A run with many live tasks collects young objects every 20,000 allocations
    while it runs, and leaves the raised threshold when it ends."""
    import gc

    from cascade_graph.collector import COLLECTOR, MANY_TASKS, RAISED_YOUNG

    seen = []

    @task
    async def probe(i):
        await asyncio.sleep(0)
        seen.append((gc.get_threshold()[0], COLLECTOR.runs))
        return i

    n = MANY_TASKS + 50
    assert run([probe(i) for i in range(n)], engine=engine) == list(range(n))
    assert seen[-1] == (RAISED_YOUNG, 1)
    assert COLLECTOR.runs == 0


@per_engine
def test_a_small_run_leaves_the_collector_alone(engine):
    """A run with few tasks never enters the raised threshold (no cost on small runs)."""
    from cascade_graph.collector import COLLECTOR

    seen = []

    @task
    async def probe(i):
        seen.append(COLLECTOR.runs)
        return i

    assert run([probe(i) for i in range(10)], engine=engine) == list(range(10))
    assert seen == [0] * 10


def test_building_a_large_workflow_raises_the_young_threshold_until_it_is_built():
    """While lazies are most of the new objects, young collections are rarer; once
    the program makes other objects, the user's threshold is back."""
    import gc

    from cascade_graph.collector import COLLECTOR, RAISED_YOUNG

    kept = [[i] for i in range(1_000)]  # the newest young objects: no lazies
    gc.collect(1)  # the hook looks at them (and puts back a threshold earlier tests raised)
    before = gc.get_threshold()
    assert not COLLECTOR.building and COLLECTOR.runs == 0 and before[0] < RAISED_YOUNG
    node = 0
    for _ in range(30_000):
        node = ident(node)
    gc.collect(1)
    assert COLLECTOR.building and gc.get_threshold() == (RAISED_YOUNG, *before[1:])
    assert run(node) == 0
    kept = [[i] for i in range(1_000)]  # other objects, newer than the lazies
    gc.collect(1)
    assert not COLLECTOR.building and gc.get_threshold() == before
    del kept, node


def test_the_collector_leaves_a_threshold_the_user_changed():
    """A threshold set by the program while raised is not overwritten."""
    import gc

    from cascade_graph.collector import COLLECTOR

    kept = [[i] for i in range(1_000)]
    gc.collect(1)
    before = gc.get_threshold()
    node = 0
    for _ in range(5_000):
        node = ident(node)
    gc.collect(1)
    assert COLLECTOR.building
    try:
        gc.set_threshold(5_000, *before[1:])
        kept = [[i] for i in range(1_000)]
        gc.collect(1)
        assert not COLLECTOR.building and gc.get_threshold()[0] == 5_000
        del kept, node
    finally:
        gc.set_threshold(*before)


@per_engine
def test_a_continuation_seen_for_the_first_time_runs_on_the_first_tier(engine):
    """A tail call's lazy or a map's items that no run has seen yet run from their
    lazies (firsttier.py), as a target seen for the first time does: no template is
    built for them; from the second sight on they are templates. A continuation the
    tier does not take (a router) goes to the engine; a continuation's own tail
    call goes on; a failing call in one is named; every value is the run's own."""
    from cascade_graph.cache import SHARED
    from cascade_graph.template import template_key

    @task
    async def fetch(i):
        await asyncio.sleep(0)
        return i

    @task
    def add(a, b):
        return a + b

    @task
    def fail_at(i, bad):
        if i == bad:
            raise LookupError(f"no {i}")
        return i

    @task
    def plan(n, bad=-1):  # a sub-workflow made at run time: a continuation
        return add(fetch(n), fail_at(n + 1, bad))

    @task
    def again(n):  # a continuation whose root tail-calls into another one
        return plan(n) if n > 0 else add(fetch(0), fetch(0))

    assert run(fetch.map(range(50)), engine=engine) == list(range(50))
    sub = plan.fn(3)
    assert template_key(sub) not in SHARED  # run from its lazies, in the run of plan(3)
    assert run(plan(3), engine=engine) == 7
    assert template_key(plan.fn(4)) not in SHARED
    assert run(plan(4), engine=engine) == 9  # second sight: the template
    assert template_key(plan.fn(5)) in SHARED
    assert run(plan(5), engine=engine) == 11
    assert run(add(again(6), again(0)), engine=engine) == 13
    with pytest.raises(LookupError, match="no 9") as caught:
        run(add(plan(8, 9), 1), engine=engine)
    assert caught.value.__notes__ == [f"cascade: raised by task '{fail_at.name}'"]

    @task
    def retried(n):  # a delayed retry: through the protocol, on the first tier too
        return add(fetch(n), fail_at(n, -1).with_retry(2, delay=0.001))

    assert run(retried(2), engine=engine) == 4
    assert template_key(retried.fn(3)) not in SHARED

    @task
    def routed(n):  # a router: a continuation the first tier leaves to the engine
        return add(fetch(n), Router(n % 2, routes={0: fail_at(n, -1), 1: fetch(n)}))

    assert run(routed(2), engine=engine) == 4
    assert template_key(routed.fn(3)) in SHARED


# -- async calls started eagerly: their own task from the first step ---------------


@per_engine
def test_an_async_call_started_with_others_owns_its_task_from_its_first_step(engine):
    """Async calls that overlap (a fan-out, run cold on the first tier, then on the
    template, then hot) run their first step eagerly; ``asyncio.current_task()`` is
    then already the task that runs the rest, so what a call enters in its first
    step and leaves after a suspension (``asyncio.timeout``, a ``TaskGroup``, a
    library's cancel scope, which checks it is left in the task it was entered in)
    belongs to it: a timeout that fires cancels that call, never the run."""
    seen = []

    @task(name="guarded_fetch")
    async def guarded_fetch(x):
        mine = asyncio.current_task()
        try:
            async with asyncio.timeout(0.01 if x % 3 == 0 else 5):
                await asyncio.sleep(0.2 if x % 3 == 0 else 0)
        except TimeoutError:
            seen.append(asyncio.current_task() is mine)
            return -x
        seen.append(asyncio.current_task() is mine)
        return x

    @task(name="grouped")
    async def grouped(x):
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(asyncio.sleep(0))
                tg.create_task(_fails_after_yield(x))
        except ExceptionGroup as group:  # the child's error, not the run cancelled
            return group.exceptions[0].args[0]
        return -1

    @task
    def gather(xs):
        return xs

    for _ in range(10):  # first sight, template, then the VM's compiled block
        seen.clear()
        assert run(gather([guarded_fetch(i) for i in range(6)]), engine=engine) == [
            0, 1, 2, -3, 4, 5]
        assert seen == [True] * 6
    assert run(gather([grouped(i) for i in range(4)]), engine=engine) == [0, 1, 2, 3]


async def _fails_after_yield(x):
    await asyncio.sleep(0)
    raise ValueError(x)


@per_engine
def test_a_loop_with_a_task_factory_makes_the_runs_tasks(engine):
    """A loop's task factory (``set_task_factory``: tracing, monitoring) makes every
    task of the run, eagerly started calls included."""

    @task(name="pause_then")
    async def pause_then(x):
        await asyncio.sleep(0)
        return x

    @task
    def gather(xs):
        return xs

    async def main():
        made = []
        loop = asyncio.get_running_loop()

        def factory(loop, coro, **kwargs):
            t = asyncio.Task(coro, loop=loop, **kwargs)
            made.append(t)
            return t

        loop.set_task_factory(factory)
        value = await arun(gather([pause_then(i) for i in range(5)]), engine=engine)
        return value, made

    value, made = asyncio.run(main())
    assert value == [0, 1, 2, 3, 4]
    assert len(made) >= 5 and all(t.done() for t in made)
