"""Batches (cascade_graph/batch.py): a list of like flat calls held as one node.

Every behaviour is checked on both engines and with every tail_cache/hot_path
switch: each item runs exactly once, with its own events, error note and
tail call, exactly as it would as a node of its own.
"""

from __future__ import annotations

import itertools

import pytest

from cascade_graph import Router, task
from cascade_graph import events as ev
from cascade_graph.batch import BatchTask
from cascade_graph.template import build_template, key_and_order
from cascade_vm import run

from .helpers import Calls, per_engine, per_switches, run_failing, run_on

calls = Calls()


@task
def double(x):
    calls.hit(x)
    return 2 * x


@task
def total(xs):
    return sum(xs)


@task
def add(a, b):
    return a + b


@task
def echo(*parts):
    return parts


@task
def countdown(n):
    return countdown(n - 1) if n > 0 else "done"


@task
async def anap(x):
    return x


@task
def to_async(x):
    return anap(x) if x % 2 else x


@task
def to_skipped(x):
    return echo(x).run_if(x % 2 == 0)


@task
def explode(x):
    if x == 3:
        raise KeyError(f"bad item {x}")
    return x


@pytest.fixture(autouse=True)
def _fresh_calls():
    calls.counts.clear()
    calls.order.clear()


def _is_batch(lr) -> bool:
    return any(type(c.task) is BatchTask for c in lr.children)


# -- when a list is a batch ------------------------------------------------


def test_a_list_of_like_flat_calls_is_one_batch_child():
    f = total([double(i) for i in range(5)])
    assert _is_batch(f)
    assert len(f.children) == 1
    assert len(build_template(f).nodes) == 2  # the consumer and the batch


def test_lists_of_different_lengths_share_one_template():
    a = total([double(i) for i in range(3)])
    b = total([double(i) for i in range(3000)])
    assert key_and_order(a)[0] == key_and_order(b)[0]


@pytest.mark.parametrize("items", [
    lambda: [double(1)],  # too short
    lambda: [double(1), add(1, 2)],  # two tasks
    lambda: [double(1), double(x=2)],  # a keyword call
    lambda: [double(1), 5],  # a literal among them
    lambda: [double(1), double(double(2))],  # not flat
    lambda: [anap(1), anap(2)],  # async
    lambda: [double(1), double(2).with_retry(2)],  # a policy
])
def test_lists_that_stay_nodes(items):
    assert not _is_batch(total(items()))


def test_an_item_used_before_keeps_the_list_as_nodes():
    x = double(1)
    add(x, 1)
    assert not _is_batch(total([x, double(2)]))
    y = double(3)
    assert not _is_batch(total([y, y]))


# -- values, once each -----------------------------------------------------


@per_engine
@per_switches
def test_values_and_each_item_once(engine, switches):
    assert run(total([double(i) for i in range(100)]), engine=engine, **switches) == 9900
    assert calls.total() == 100 and set(calls.counts.values()) == {1}
    assert run(echo((double(1), double(2)), [double(3), double(4)]), engine=engine,
               **switches) == ((2, 4), [6, 8])
    assert run([double(1), double(2)], engine=engine, **switches) == [2, 4]  # a target list
    assert run({"k": (double(5), double(6))}, engine=engine, **switches) == {"k": (10, 12)}


@per_engine
@per_switches
def test_an_item_used_again_later_runs_once(engine, switches):
    """Reusing an item after the batch made a DAG: the item becomes a node and
    the batch is built from it, so it still runs once."""
    xs = [double(i) for i in range(4)]
    f = total(xs)
    r = add(f, xs[2])
    assert run(r, engine=engine, **switches) == 12 + 4
    assert calls.total() == 4
    assert run(f, engine=engine, **switches) == 12  # the batch on its own is still a tree
    assert calls.total() == 8


@per_engine
def test_an_item_shared_by_two_lists_runs_once(engine):
    xs = [double(i) for i in range(3)]
    ys = [xs[0], double(10)]
    assert run(add(total(xs), total(ys)), engine=engine) == 6 + 20
    assert calls[0] == 1 and calls.total() == 4


@per_engine
def test_map_items_are_batched_and_run_once(engine):
    assert run(double.map(range(50)), engine=engine) == [2 * i for i in range(50)]
    assert calls.total() == 50


# -- events and errors, item by item ----------------------------------------


@per_engine
@per_switches
def test_each_item_has_its_events(engine, switches):
    value, rec = run_on(engine, total([double(i) for i in range(5)]), switches)
    assert value == 20
    kinds = rec.kinds()
    assert kinds[("TaskStarted", "double")] == 5
    assert kinds[("TaskFinished", "double")] == 5
    assert kinds[("TaskStarted", "total")] == 1
    for i in range(5):  # each item finishes before it is used
        assert rec.index(ev.TaskFinished, "double", i) < rec.index(ev.TaskStarted, "total")


@per_engine
@per_switches
def test_a_failing_item_is_named(engine, switches):
    exc, rec = run_failing(engine, total([explode(i) for i in range(6)]), switches)
    assert isinstance(exc, KeyError)
    assert "cascade: raised by task 'explode'" in exc.__notes__
    failed = rec.of(ev.TaskFailed, "explode")
    assert len(failed) == 1 and failed[0].error is exc
    assert not rec.of(ev.TaskStarted, "total")
    assert len(rec.of(ev.TaskFinished, "explode")) == 3  # items 0..2 ran first


@per_engine
def test_nested_quiet_run_inside_a_listened_one_emits_nothing(engine):
    from cascade_vm import arun

    @task
    async def inner(n):
        return await arun(total([double(i) for i in range(n)]), engine=engine)

    value, rec = run_on(engine, inner(3))
    assert value == 6
    assert not rec.of(ev.TaskStarted, "double")


# -- tail calls from items ---------------------------------------------------


@per_engine
@per_switches
def test_items_that_tail_call(engine, switches):
    value, rec = run_on(engine, echo([countdown(i) for i in range(4)]), switches)
    assert value == (["done"] * 4,)
    assert len(rec.of(ev.TailCall, "countdown")) == 0 + 1 + 2 + 3
    assert run([countdown(i) for i in range(3)], engine=engine, **switches) == ["done"] * 3


@per_engine
@per_switches
def test_items_that_tail_call_into_async_work(engine, switches):
    assert run(total([to_async(i) for i in range(10)]), engine=engine, **switches) == 45


@per_engine
def test_an_item_tail_calling_into_a_skip(engine):
    """A consumer of a skipped item is skipped; in a target list the item is None."""
    assert run(echo([to_skipped(i) for i in range(3)]), engine=engine) is None
    assert run([to_skipped(i) for i in range(3)], engine=engine) == [(0,), None, (2,)]


# -- routes ------------------------------------------------------------------


@per_engine
def test_a_batch_inside_a_route_with_an_item_in_the_workflow(engine):
    xs = [double(i) for i in range(3)]
    routed = add(Router("a", {"a": total(xs), "b": 0}), xs[1])
    assert run(routed, engine=engine) == 6 + 2
    assert calls.total() == 3


# -- policy copies of a fan-in -------------------------------------------------


@per_engine
@per_switches
def test_a_policy_copy_of_a_consumer_shares_its_batch(engine, switches):
    """``.run_if``/``.with_retry`` on a fan-in copy it; the copy keeps the batch (a tree)."""
    f = total([double(i) for i in range(50)])
    for copy in (f.run_if(True), f.with_retry(2), f.with_timeout(5)):
        assert copy.tree and copy.children == f.children
        assert run(copy, engine=engine, **switches) == 2450
    assert calls.total() == 150  # each item once per run
    assert run(f.run_if(False), engine=engine, **switches) is None
    assert calls.total() == 200  # a condition skips its own node; the items still run


# -- pauses (cascade_graph/folded.py) -------------------------------------------


@per_engine
@pytest.mark.parametrize("ctype", [list, tuple])
def test_a_batch_that_pauses_gives_the_same_values_and_events(engine, ctype):
    """With yield_interval=0 a batch stops after every span of calls and goes on after
    the event loop ran; values (tail calls included), events and call counts are those
    of an uninterrupted run."""
    items = ctype([to_async(i) if i % 5 == 0 else double(i) for i in range(200)])
    assert not _is_batch(echo(items))  # mixed tasks: a control run with nodes
    expected = (ctype(i if i % 5 == 0 else 2 * i for i in range(200)),)

    def batched():
        return echo(ctype(to_async(i) for i in range(100)))

    value, rec = run_on(engine, batched(), yield_interval=0)
    assert _is_batch(batched())
    assert value == (ctype(range(100)),)
    assert len(rec.of(ev.TaskStarted, "to_async")) == 100
    assert len(rec.of(ev.TailCall, "to_async")) == 50
    assert run(echo(items), engine=engine, yield_interval=0) == expected
    assert run(total([double(i) for i in range(300)]), engine=engine, yield_interval=0) == (
        299 * 300)


# -- keyword items ------------------------------------------------------------


@task
def scale(x, by=1, plus=0):
    calls.hit(x)
    if x == -1:
        raise ValueError("bad item -1")
    return x * by + plus


def test_like_keyword_calls_are_one_batch():
    """Flat calls with the same keyword names are like calls: one batch; other names,
    or names in another order, keep the list as nodes."""
    assert _is_batch(total([scale(i, by=3) for i in range(5)]))
    assert _is_batch(total([scale(i, plus=1, by=2) for i in range(5)]))
    assert not _is_batch(total([scale(1, by=3), scale(2, plus=3)]))
    assert not _is_batch(total([scale(1, by=3, plus=1), scale(2, plus=1, by=3)]))
    assert not _is_batch(total([scale(1, by=3), scale(2)]))


@per_engine
@per_switches
def test_keyword_items_have_their_values_events_and_error_note(engine, switches):
    """A batch of keyword calls: each item's value, once, with its own events (paused
    or not); a failing item is named."""
    for off in range(3):  # first sight, template, warm
        items = [scale(i + off, by=2, plus=1) for i in range(40)]
        assert run(total(items), engine=engine, **switches) == sum(
            2 * (i + off) + 1 for i in range(40))
    assert set(calls.counts.values()) <= {1, 2, 3}
    value, rec = run_on(engine, echo([scale(i, plus=i) for i in range(30)]), switches,
                        yield_interval=0)
    assert value == ([2 * i for i in range(30)],)
    assert len(rec.of(ev.TaskStarted, "scale")) == 30
    assert run(echo([scale(i, by=3) for i in range(300)]), engine=engine, yield_interval=0,
               **switches) == ([3 * i for i in range(300)],)
    exc, _ = run_failing(engine, total([scale(i, by=2) for i in (1, 2, -1, 4)]), switches)
    assert isinstance(exc, ValueError)
    assert "cascade: raised by task 'scale'" in exc.__notes__


@per_engine
def test_a_keyword_map_under_a_retry_runs_each_item_with_its_keywords(engine):
    """``.map`` over positional and keyword iterables makes keyword items: one batch,
    also under ``.with_retry`` (each item's attempts made in line, with its keywords)."""
    tries = Calls()

    @task
    def shaky(x, by=1):
        tries.hit(x)
        if x == 2 and tries.counts[2] < 2:
            raise ConnectionError("once")
        return x * by

    assert run(shaky.map([0, 1, 3], by=[10] * 3), engine=engine) == [0, 10, 30]
    tries.counts.clear()
    assert run(shaky.map(range(4), by=[3] * 4).with_retry(2), engine=engine) == [0, 3, 6, 9]
    assert tries.counts[2] == 2 and tries.counts[1] == 1


@per_engine
def test_a_keyword_map_builds_its_items_as_their_calls_would(engine):
    """A map with keyword iterables of plain literals builds its items in one pass
    (no keyword call per item): each item must be what calling the task builds, field
    by field; an element that is a lazy or a container sends the map through the
    calls themselves."""
    from cascade_graph.lazy import _flat_keyword_calls

    @task
    def scale(x, by=1, plus=0):
        return x * by + plus

    built = _flat_keyword_calls(scale, [[1, "a", None]], {"by": [2, 3, 4], "plus": [0, 0, 1]})
    calls = [scale(1, by=2, plus=0), scale("a", by=3, plus=0), scale(None, by=4, plus=1)]
    fields = ("task", "args", "kwargs", "shape", "spec", "children", "tree", "uses",
              "copied", "policy")
    for got, want in zip(built, calls, strict=True):
        assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
        assert tuple(got.lits) == tuple(want.lits)
    assert _flat_keyword_calls(scale, [], {"by": [1, double(2)]}) is None
    assert _flat_keyword_calls(scale, [[1, [2]]], {"by": [1, 2]}) is None
    assert run(scale.map([1, 2], by=[double(1), 3], plus=[0, 1]), engine=engine) == [2, 7]
    assert run(scale.map(range(50), by=[2] * 50), engine=engine) == [2 * i for i in range(50)]
    assert run(scale.map(x=range(3), by=[(1, 2)[1]] * 3), engine=engine) == [0, 2, 4]


# -- a map's items made in the map's own call ---------------------------------


def _warnings(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "cascade.task"]


@per_engine
@per_switches
def test_a_quiet_map_of_literals_gives_its_items_values_once(engine, switches):
    """Nobody listens: a map over plain literals runs its items where it is expanded
    (batch.items_here), with every switch giving the same values, each item once, an
    item's tail call followed, and a map of a map's values."""
    assert run(double.map(range(40)), engine=engine, **switches) == [2 * i for i in range(40)]
    assert set(calls.counts.values()) == {1} and calls.total() == 40
    assert run(to_async.map(range(6)), engine=engine, **switches) == list(range(6))
    assert run(double.map(double.map([1, 2])), engine=engine, **switches) == [4, 8]
    assert run(scale.map([1, 2], by=[3, 4]), engine=engine, **switches) == [3, 8]
    assert run(double.map([]), engine=engine, **switches) == []


@per_engine
@pytest.mark.parametrize("size", [5, 400])
def test_a_failing_map_item_is_reported_once_on_its_task(engine, size, caplog):
    """An item of a map made in the map's call (small, or paced with yield_interval=0
    so it goes on after a pause) that raises is named by its own task, in the note
    and in the one warning: not by the map, nor by the pause."""
    caplog.set_level("WARNING", logger="cascade")
    with pytest.raises(KeyError) as info:
        run(explode.map(range(3 - size, 4)), engine=engine, yield_interval=0)
    assert "cascade: raised by task 'explode'" in info.value.__notes__
    assert _warnings(caplog) == ["task 'explode' failed: KeyError: 'bad item 3'"]


@per_engine
def test_a_batch_item_failing_after_a_pause_is_named_by_its_task(engine, caplog):
    caplog.set_level("WARNING", logger="cascade")
    with pytest.raises(KeyError) as info:
        run(total([explode(i) for i in range(-400, 4)]), engine=engine, yield_interval=0)
    assert "cascade: raised by task 'explode'" in info.value.__notes__
    assert _warnings(caplog) == ["task 'explode' failed: KeyError: 'bad item 3'"]


@per_engine
@pytest.mark.parametrize("keywords", [False, True])
def test_a_quiet_map_under_a_retry_retries_only_the_failing_items(engine, keywords, caplog):
    """Items under ``.with_retry`` in a quiet run are first tried as plain calls
    (calls.first_tries): a failing item goes on with its next attempts, warned as
    retried; one that fails them all fails the run, named by its task."""
    caplog.set_level("WARNING", logger="cascade")
    tries = Calls()

    @task(name="shaky")
    def shaky(x, by=1):
        tries.hit(x)
        if x % 7 == 3 and tries.counts[x] < 2:
            raise ConnectionError(f"once {x}")
        if x == 99:
            raise ConnectionError("always")
        return x * by

    items = range(30)
    wf = shaky.map(items, by=[2] * 30) if keywords else shaky.map(items)
    by = 2 if keywords else 1
    assert run(wf.with_retry(3), engine=engine) == [x * by for x in items]
    assert {x for x, n in tries.counts.items() if n == 2} == {3, 10, 17, 24}
    assert set(tries.counts) == set(items) and max(tries.counts.values()) == 2
    assert sum("will be retried" in m for m in _warnings(caplog)) == 4
    tries.counts.clear()
    caplog.clear()
    with pytest.raises(ConnectionError) as info:
        run(shaky.map([1, 99, 2]).with_retry(3), engine=engine)
    assert tries.counts[99] == 3 and tries.counts[2] == 0
    assert "cascade: raised by task 'shaky'" in info.value.__notes__
    assert sum("will be retried" in m for m in _warnings(caplog)) == 2


# -- items that inject resources ------------------------------------------------

_resource_ids = itertools.count()  # resource names no other test registers


@per_engine
@per_switches
def test_a_batch_of_injecting_calls_takes_its_resources_like_its_items(engine, switches):
    """Flat calls injecting resources are one batch. In a quiet run it sets up a
    run-scoped sync resource in line, once, and runs its items with it; a task-scoped
    or async resource, or a listener, makes its items nodes again, each call taking
    its resources as ``invoke`` gives them (events in their order)."""
    from cascade_graph import ResourceSetUp, TaskStarted, inject, resource

    uid = next(_resource_ids)
    log = []

    @resource(name=f"conn{uid}")
    def conn():
        log.append("up")
        yield 10
        log.append("down")

    @resource(name=f"per_call{uid}", scope="task")
    def per_call():
        log.append("task-up")
        yield 1

    @resource(name=f"aconn{uid}")
    async def aconn():
        log.append("async-up")
        yield 100

    @task(name="with_conn")
    def with_conn(x, db=inject(f"conn{uid}")):
        return x + db

    @task(name="with_per_call")
    def with_per_call(x, r=inject(f"per_call{uid}")):
        return x + r

    @task(name="with_aconn")
    def with_aconn(x, db=inject(f"aconn{uid}")):
        return x + db

    items = [with_conn(i) for i in range(20)]
    assert _is_batch(total(items))
    assert run(total(items), engine=engine, **switches) == 190 + 200
    assert log == ["up", "down"]
    assert run(with_conn.map(range(5)), engine=engine, **switches) == [10, 11, 12, 13, 14]
    assert run(total([with_per_call(i) for i in range(6)]), engine=engine, **switches) == 21
    assert log.count("task-up") == 6
    assert run(total([with_aconn(i) for i in range(4)]), engine=engine, **switches) == 406
    assert log.count("async-up") == 1
    value, rec = run_on(engine, total([with_conn(i) for i in range(3)]), switches)
    assert value == 33
    assert len(rec.of(ev.TaskStarted, "with_conn")) == 3
    first = rec.events.index(rec.of(TaskStarted, "with_conn")[0])
    assert rec.events.index(rec.of(ResourceSetUp)[0]) > first


@per_engine
def test_a_batch_of_injecting_calls_fails_as_its_items_would(engine):
    """An unknown resource fails the run before any task runs; a set-up that fails
    fails the run with its error, named by the item's task."""
    from cascade_graph import inject, resource

    uid = next(_resource_ids)

    @task(name="needs_missing")
    def needs_missing(x, db=inject(f"missing{uid}")):
        return x

    with pytest.raises(Exception) as info:
        run(add(double(1), total([needs_missing(i) for i in range(5)])), engine=engine)
    assert f"missing{uid}" in str(info.value)
    assert calls.total() == 0  # double(1) never ran

    @resource(name=f"refuses{uid}")
    def refuses():
        raise ConnectionError("no database")
        yield  # a generator factory

    @task(name="needs_refused")
    def needs_refused(x, db=inject(f"refuses{uid}")):
        return x

    with pytest.raises(ConnectionError) as info:
        run(total([needs_refused(i) for i in range(5)]), engine=engine)
    assert "cascade: raised by task 'needs_refused'" in info.value.__notes__
