"""Link runs (cascade_graph/repeat.py): a chain of one task's calls as one node.

Checked on both engines with every tail_cache/hot_path switch: each link runs
once, in order, with its own events, skip report, error note and tail call,
as it would as a node of its own.
"""

from __future__ import annotations

import pytest

from cascade_graph import events as ev
from cascade_graph import task
from cascade_graph.repeat import RepeatTask
from cascade_graph.template import build_template
from cascade_vm import run

from .helpers import Calls, per_engine, per_switches, run_failing, run_on

calls = Calls()


@task
def inc(x):
    calls.hit(x)
    return x + 1


@task
def other(x):
    return x * 10


@task
def add(a, b):
    return a + b


@task
def bump_via(x):
    """Every third link tail-calls into ``other``'s sibling ``inc``."""
    return inc(x) if x % 3 == 0 else x + 1


@task
async def ainc(x):
    return x + 1


@task
def bump_async(x):
    return ainc(x) if x % 2 else x + 1


@task
def nothing_if_odd(x):
    return add(x, 0).run_if(x % 2 == 0)


@task
def explode_at(x):
    if x == 3:
        raise ValueError(f"link saw {x}")
    return x + 1


def chain(t, n, base=0):
    node = base
    for _ in range(n):
        node = t(node)
    return node


@pytest.fixture(autouse=True)
def _fresh_calls():
    calls.counts.clear()
    calls.order.clear()


def _runs(target) -> list:
    return [nd.task.count for nd in build_template(target).nodes
            if type(nd.task) is RepeatTask]


# -- when links fold ---------------------------------------------------------


def test_runs_of_one_task_fold_and_others_do_not():
    assert _runs(chain(inc, 10)) == [9]  # the first link is a flat call: the base
    mixed = other(chain(inc, 4, other(chain(inc, 3))))
    assert _runs(mixed) == [4, 2]
    assert _runs(inc(other(inc(1)))) == []  # no two links of one task in a row
    async_chain = chain(ainc, 5)
    assert _runs(async_chain) == []


@per_engine
def test_runs_in_a_dag_stay_nodes(engine):
    x = chain(inc, 5)
    shared = add(x, other(x))  # x has two parents: a DAG
    assert _runs(shared) == []
    assert run(shared, engine=engine) == 5 + 50
    assert calls.total() == 5


# -- values, order, once each ------------------------------------------------


@per_engine
@per_switches
def test_values_and_each_link_once_in_order(engine, switches):
    assert run(chain(inc, 1000), engine=engine, **switches) == 1000
    assert calls.order == list(range(1000))
    deep = add(chain(inc, 50, chain(other, 3, 1)), [chain(inc, 4), chain(inc, 2, 7)])
    with pytest.raises(TypeError):  # add(int, list): a real error, raised by add
        run(deep, engine=engine, **switches)
    assert run(add(chain(inc, 50, chain(other, 3, 1)), chain(inc, 4)), engine=engine,
               **switches) == 1000 + 50 + 4


@per_engine
@per_switches
def test_each_link_has_its_events(engine, switches):
    value, rec = run_on(engine, chain(inc, 6), switches)
    assert value == 6
    kinds = rec.kinds()
    assert kinds[("TaskStarted", "inc")] == kinds[("TaskFinished", "inc")] == 6


@per_engine
@per_switches
def test_a_skipped_base_skips_every_link(engine, switches):
    base = add(1, 2).run_if(False)
    value, rec = run_on(engine, chain(inc, 7, base), switches)
    assert value is None
    assert len(rec.of(ev.TaskSkipped, "inc")) == 7
    assert not rec.of(ev.TaskStarted, "inc")


@per_engine
@per_switches
def test_a_failing_link_is_named_and_stops_the_run(engine, switches):
    exc, rec = run_failing(engine, chain(explode_at, 8), switches)
    assert isinstance(exc, ValueError)
    assert "cascade: raised by task 'explode_at'" in exc.__notes__
    assert len(rec.of(ev.TaskFailed, "explode_at")) == 1
    assert len(rec.of(ev.TaskFinished, "explode_at")) == 3


# -- tail calls from links -----------------------------------------------------


@per_engine
@per_switches
def test_links_that_tail_call(engine, switches):
    value, rec = run_on(engine, chain(bump_via, 30), switches)
    assert value == 30
    assert len(rec.of(ev.TailCall, "bump_via")) == 10  # x = 0, 3, ..., 27
    assert run(chain(bump_async, 20), engine=engine, **switches) == 20


@per_engine
@per_switches
def test_a_link_tail_calling_into_a_skip_skips_the_rest(engine, switches):
    value, rec = run_on(engine, chain(inc, 4, nothing_if_odd(chain(inc, 3))), switches)
    assert value is None  # 3 is odd: the continuation is skipped, and so is every link above
    assert len(rec.of(ev.TaskSkipped, "inc")) == 4
    value, rec = run_on(engine, chain(nothing_if_odd, 3, 1), switches)
    assert value is None


@per_engine
def test_a_run_that_pauses_gives_the_same_values_and_events(engine):
    """With yield_interval=0 a run stops after every span of links and goes on after
    the event loop ran: same value, every link once, tail calls included."""
    value, rec = run_on(engine, chain(bump_via, 300), yield_interval=0)
    assert value == 300
    assert len(rec.of(ev.TaskStarted, "bump_via")) == 300
    calls.order.clear()
    assert run(chain(inc, 500), engine=engine, yield_interval=0) == 500
    assert calls.order == list(range(500))
    assert run(chain(bump_async, 100), engine=engine, yield_interval=0) == 100


# -- links with literals: step(x, k), step(x, k=...) ------------------------------

_M = 1_000_003


@task
def mix(x, k=0):
    calls.hit((x, k))
    return (x * 3 + k) % _M  # each link's own literal, in order: a wrong order shows


@task
def mix_via(x, k=0):
    """Every fourth link tail-calls ``mix``: the rest of the run goes on after it."""
    return mix(x, k=k) if k % 4 == 1 else (x * 3 + k) % _M


@task
def explode_at_k(x, k=0):
    if k == 3:
        raise ValueError(f"link saw k={k}")
    return x + k


def lit_chain(t, n, base=0, keyword=True):
    node = base
    for k in range(n):
        node = t(node, k=k) if keyword else t(node, k)
    return node


def lit_value(n, base=0):
    v = base
    for k in range(n):
        v = (v * 3 + k) % _M
    return v


def test_links_with_literals_fold_by_task_and_layout():
    assert _runs(lit_chain(mix, 10)) == [9]  # the first call is flat: the base
    assert _runs(lit_chain(mix, 10, keyword=False)) == [9]
    mixed = lit_chain(mix, 5, lit_chain(mix, 4), keyword=False)  # 5 positional on 3 keyword
    assert _runs(mixed) == [5, 3]
    assert _runs(mix(inc(mix(1, k=2)), k=3)) == []  # no two alike in a row
    template = build_template(lit_chain(mix, 10))
    assert template.n_inputs == 11  # the base's two, then one literal per link


@per_engine
@per_switches
def test_links_with_literals_run_in_order_with_their_own_literals(engine, switches):
    for keyword in (True, False):
        for off in (0, 7, 11):  # a first sight, the template built, then warm
            calls.order.clear()
            assert run(lit_chain(mix, 200, off, keyword), engine=engine,
                       **switches) == lit_value(200, off)
            assert [k for _, k in calls.order] == list(range(200))
    for off in range(12):  # short enough for the VM's second tier (jit.py)
        assert run(lit_chain(mix, 20, off), engine=engine, **switches) == lit_value(20, off)
        assert run(lit_chain(mix_via, 20, off), engine=engine,
                   **switches) == lit_value(20, off)


@per_engine
@per_switches
def test_links_with_literals_have_their_events_and_tail_calls(engine, switches):
    value, rec = run_on(engine, lit_chain(mix, 9), switches)
    assert value == lit_value(9)
    kinds = rec.kinds()
    assert kinds[("TaskStarted", "mix")] == kinds[("TaskFinished", "mix")] == 9
    for off in (0, 5):  # a tail call in the middle of a run: the links above keep theirs
        value, rec = run_on(engine, lit_chain(mix_via, 30, off), switches)
        assert value == lit_value(30, off)
        assert len(rec.of(ev.TailCall, "mix_via")) == 8  # k = 1, 5, ..., 29
    exc, rec = run_failing(engine, lit_chain(explode_at_k, 8), switches)
    assert isinstance(exc, ValueError)
    assert "cascade: raised by task 'explode_at_k'" in exc.__notes__
    assert len(rec.of(ev.TaskFinished, "explode_at_k")) == 3


@per_engine
def test_a_run_of_links_with_literals_that_pauses(engine):
    for _ in range(2):
        value, rec = run_on(engine, lit_chain(mix_via, 300), yield_interval=0)
        assert value == lit_value(300)
        assert len(rec.of(ev.TaskStarted, "mix_via")) == 300
        calls.order.clear()
        assert run(lit_chain(mix, 500, keyword=False), engine=engine,
                   yield_interval=0) == lit_value(500)
        assert [k for _, k in calls.order] == list(range(500))


@task
def mix2(x, k=0, j=0):
    calls.hit((x, k, j))
    return mix2(x, k, j=j + 1000) if k % 5 == 2 and j < 1000 else (x * 3 + k - j) % _M


def two_lit_chain(n, base=0):
    node = base
    for k in range(n):
        node = mix2(node, k, j=k % 3)  # two literals a link, positional and keyword
    return node


def two_lit_value(n, base=0):
    v = base
    for k in range(n):
        j = k % 3 + (1000 if k % 5 == 2 else 0)
        v = (v * 3 + k - j) % _M
    return v


@per_engine
@per_switches
def test_links_with_two_literals_each(engine, switches):
    """Each link's own two literals, in order, with tail calls in the middle of the run
    (k = 2, 7, ...): on the first sight, the template, warm, the VM's second tier."""
    assert _runs(two_lit_chain(10)) == [9]
    for off in range(12):
        n = 40 if off < 3 else 12  # then short enough for the second tier (jit.py)
        assert run(two_lit_chain(n, off), engine=engine, **switches) == two_lit_value(n, off)
    value, rec = run_on(engine, two_lit_chain(30, 4), switches)
    assert value == two_lit_value(30, 4)
    assert len(rec.of(ev.TailCall, "mix2")) == 6  # k = 2, 7, ..., 27


@task
def mix_kw(x=0, k=0):
    calls.hit((x, k))
    return mix_kw(x=x, k=k + 1000) if k % 5 == 3 and k < 1000 else (x * 3 + k) % _M


def kw_lazy_chain(n, base=0):
    node = base
    for k in range(n):
        node = mix_kw(x=node, k=k)  # the lazy passed by keyword: a plain call, not a link
    return node


def kw_lazy_value(n, base=0):
    v = base
    for k in range(n):
        v = (v * 3 + k + (1000 if k % 5 == 3 else 0)) % _M
    return v


@per_engine
@per_switches
def test_a_lazy_passed_by_keyword_is_no_link(engine, switches):
    """``f(x=node, k=1)``: the lazy is a keyword argument, so the call is a plain
    keyword call on every tier (no run), its tail calls included."""
    assert _runs(kw_lazy_chain(10)) == []
    for off in range(12):
        n = 40 if off < 3 else 12
        assert run(kw_lazy_chain(n, off), engine=engine, **switches) == kw_lazy_value(n, off)
