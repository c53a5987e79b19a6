"""The VM's compiled-block tier (cascade_vm/jit.py): same results, same errors, same events."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from cascade_graph import task
from cascade_graph.cache import SHARED
from cascade_graph.template import key_and_order
from cascade_vm import run
from cascade_vm.jit import HOT_AFTER, MAX_CALLS
from tests.helpers import Recorder

LOOPS = 3 * HOT_AFTER  # iterations: enough to run most of them as a compiled block


@task
def inc(x):
    return x + 1


@task
def pack(a, b, c, d):
    return (a, b, c, d)


@task
def unpack_sum(p):
    a, b, c, d = p
    return sum(a) + sum(b) + sum(c) + sum(d.values()) + len(p)


def _body(n):
    x = inc(n)
    return unpack_sum(pack([x, inc(x)], (x,), {inc(1), 7}, {"k": inc(2)}))


@task
def loop(n, acc):
    if n == 0:
        return acc
    return loop(n - 1, add(acc, _body(n)))


@task
def add(a, b):
    return a + b


def _expected(n):
    acc = 0
    for i in range(n, 0, -1):
        x = i + 1
        acc += (x + (x + 1)) + x + (2 + 7) + 3 + 4  # list, tuple, set, dict, len
    return acc


def _tier(root):
    entry = SHARED.get(key_and_order(root)[0])
    return entry.tier if entry is not None and entry.code is not None else None


def test_a_hot_loop_body_runs_as_a_compiled_block():
    """Containers of every kind, a shared node, calls: the block gives the dispatch
    loop's value, and the body's code is compiled once it is hot."""
    assert run(loop(LOOPS, 0)) == _expected(LOOPS)
    tier = _tier(loop(4, add(0, _body(5))))  # the loop body's template
    assert tier is not None and tier[1], "the hot loop body was not compiled to a block"
    assert run(loop(LOOPS, 0), engine="graph") == _expected(LOOPS)


def test_cold_code_is_not_compiled_to_a_block():
    """A workflow run fewer than HOT_AFTER times stays in the dispatch loop."""
    fresh = task(lambda x: x * 2)
    assert run(add(fresh(1), fresh(2))) == 6  # first sight: the first tier, no template
    assert _tier(add(fresh(1), fresh(2))) is None
    assert run(add(fresh(1), fresh(2))) == 6  # then a template, compiled, not a block
    assert _tier(add(fresh(1), fresh(2)))[1] is None


def test_a_failure_in_a_block_names_its_task():
    """A call raising inside a compiled block is reported on that task, as in the dispatch loop."""

    @task
    def fragile(x):
        if x == 3:
            raise ValueError("three")
        return x

    @task
    def walk(n):
        return n if n == 0 else walk(add(fragile(n), -1))

    with pytest.raises(ValueError, match="three") as info:
        run(walk(LOOPS))
    assert any("fragile" in note for note in info.value.__notes__)


def test_a_tail_call_below_the_root_leaves_the_block():
    """A call inside the block returning a lazy: the dispatch loop takes over there."""

    @task
    def maybe_deep(x):
        return inc(inc(x)) if x % 2 else x  # odd: a tail call from a non-root node

    @task
    def walk(n, acc):
        return acc if n == 0 else walk(n - 1, add(acc, maybe_deep(n)))

    expected = sum((i + 2) if i % 2 else i for i in range(1, LOOPS + 1))
    assert run(walk(LOOPS, 0)) == expected


def test_events_are_all_delivered_when_the_code_is_hot():
    """With a listener the dispatch loop runs even hot code: every event arrives."""
    run(loop(LOOPS, 0))  # make it hot
    rec = Recorder()
    assert run(loop(LOOPS, 0), on_event=rec) == _expected(LOOPS)
    started = [e for e in rec.events if type(e).__name__ == "TaskStarted"]
    assert len(started) == (LOOPS + 1) + LOOPS * 7  # loop calls, then 7 body calls each


def test_long_bodies_stay_in_the_dispatch_loop():
    """More than MAX_CALLS calls: never one block (the clock is read every 64 calls).
    The body alternates two tasks, so its links do not fold into a run (repeat.py)."""

    @task
    def inc_too(x):
        return x + 1

    def chain(value):
        for k in range(MAX_CALLS + 1):
            value = inc(value) if k % 2 else inc_too(value)
        return value

    @task
    def long_walk(n, acc):
        if n == 0:
            return acc
        return long_walk(n - 1, chain(acc))

    assert run(long_walk(LOOPS, 0)) == LOOPS * (MAX_CALLS + 1)
    body = chain(0)
    assert _tier(long_walk(0, body)) == [HOT_AFTER, ()]  # hot, looked at, not compiled


@task
def hop(x):
    """A link that tail-calls into ``inc`` at multiples of 7 and fails at 1,000."""
    if x == 1000:
        raise ValueError("hop reached 1000")
    return inc(x) if x % 7 == 0 else x + 1


@task
def hop_loop(n, acc):
    if n == 0:
        return acc
    value = acc
    for _ in range(5):  # a run of five links (repeat.py), unrolled in the block
        value = hop(value)
    return hop_loop(n - 1, value)


def test_runs_of_links_are_unrolled_with_their_tail_calls_and_errors():
    """A hot body with a run of links: the block holds each link; a link's tail call
    hands back the run's continuation; a failing link is named."""
    assert run(hop_loop(LOOPS, 0)) == LOOPS * 5
    body = 0
    for _ in range(5):
        body = hop(body)
    block = _tier(hop_loop(0, body))[1][0][2]  # compiled, with the run in it
    assert block.__code__.co_firstlineno == 1 and len(block.line_to_pc) >= 5
    with pytest.raises(ValueError) as info:
        run(hop_loop(1000, 0))  # the 1000th link fails, inside a compiled block
    assert "cascade: raised by task 'hop'" in info.value.__notes__


# -- async blocks: a hot body with async calls (START, AWAIT) -------------------------


@task
async def lift(x):
    """Async: suspends on every third value (a task to await), else finishes at once."""
    if x % 3 == 0:
        await asyncio.sleep(0)
    if x == 10_000:
        raise ValueError("lift reached 10000")
    return x + 1


@task
async def lift_or_skip(x):
    """Async: tail-calls a call skipped by its condition once ``x`` reaches 40 (the
    loop's twentieth round: its body is hot by then)."""
    await asyncio.sleep(0)
    return inc(x).run_if(x < 40)


@task
def agent(n, acc, aux, lifter):
    """A loop whose body is a DAG with one async call (``lifter``), as agent loops are."""
    if n <= 0:
        return (acc, aux)
    a = inc(acc)
    return agent(n - 1, LIFTERS[lifter](a), add(a, inc(aux)), lifter)


LIFTERS = {"lift": lift, "skip": lift_or_skip}


def _agent_value(n, acc=0, aux=0):
    for _ in range(n):
        a = acc + 1
        acc, aux = a + 1, a + aux + 1
    return (acc, aux)


def test_a_hot_body_with_async_calls_runs_as_an_async_block():
    """The block starts the async call, awaits it when it suspended, and gives the
    dispatch loop's values; the compiled block is flagged async."""
    assert run(agent(LOOPS, 0, 0, "lift")) == _agent_value(LOOPS)
    a = inc(0)
    body = agent(0, lift(a), add(a, inc(0)), "lift")  # the body's shape: ``a`` shared
    jit = _tier(body)[1][0]
    assert jit[5] is True and inspect.iscoroutinefunction(jit[2])
    assert run(agent(LOOPS, 0, 0, "lift"), engine="graph") == _agent_value(LOOPS)


@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_a_failing_async_call_in_an_async_block_is_noted_once(engine):
    """An async call failing inside the block (on the VM; the same loop on the graph
    executor): the error names its task once."""
    run(agent(LOOPS, 0, 0, "lift"), engine=engine)  # hot
    with pytest.raises(ValueError, match="10000") as info:
        run(agent(LOOPS, 9_989, 0, "lift"), engine=engine)  # lift(10000) in round six
    notes = [n for n in info.value.__notes__ if "raised by task" in n]
    assert notes == ["cascade: raised by task 'lift'"]


def test_a_skipped_continuation_hands_the_frame_back_to_the_dispatch_loop():
    """An awaited call whose tail call was skipped: its consumers are skipped as in
    the dispatch loop and on the graph executor (the block gives the frame back): the
    loop's next round is skipped, so the run's value is None."""
    assert run(agent(LOOPS, 1, 0, "skip"), engine="graph") is None
    assert run(agent(LOOPS, 1, 0, "skip")) is None
    a = inc(0)
    assert _tier(agent(0, lift_or_skip(a), add(a, inc(0)), "skip"))[1][0][5] is True  # async
    assert run(agent(LOOPS, 1, 0, "skip"), hot_path=False) is None


@task
async def lift_by(x, *, by):
    """Async, keyword-only: suspends on every third value."""
    if x % 3 == 0:
        await asyncio.sleep(0)
    return x + by


@task
def agent_kw(n, acc, aux):
    """``agent``'s loop with the async call made by keyword (``lift_by(a, by=1)``)."""
    if n <= 0:
        return (acc, aux)
    a = inc(acc)
    return agent_kw(n - 1, lift_by(a, by=1), add(a, inc(aux)))


def test_an_async_call_with_keywords_runs_in_the_async_block():
    """A started call's keywords are passed as the dispatch loop passes them."""
    assert run(agent_kw(LOOPS, 0, 0)) == _agent_value(LOOPS)
    a = inc(0)
    jit = _tier(agent_kw(0, lift_by(a, by=1), add(a, inc(0))))[1][0]
    assert jit[5] is True
    assert run(agent_kw(LOOPS, 0, 0), engine="graph") == _agent_value(LOOPS)
