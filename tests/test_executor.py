"""The graph executor and its plans (SPEC section 3): dependency-driven, no stage barrier."""

from __future__ import annotations

import asyncio
import sys

from cascade_graph import TaskFinished, TaskStarted, task
from cascade_graph.plan import compile_plan, to_dot
from cascade_graph.template import build_template
from cascade_vm import run
from tests.helpers import run_on, ticks_during


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


@task
async def nap(x, seconds):
    await asyncio.sleep(seconds)
    return x


def _depth():
    f = sys._getframe()
    n = 0
    while f is not None:
        n += 1
        f = f.f_back
    return n


def test_no_stage_barrier():
    """A fast branch's consumer starts before a slow sibling branch finishes."""

    @task
    def consume(x):
        return x * 10

    slow = nap("s", 0.3)
    fast = nap(1, 0.0)
    value, rec = run_on("graph", _pair(slow, consume(fast)))
    assert value == ("s", 10)
    assert rec.index(TaskStarted, consume.name) < rec.index(TaskFinished, nap.name, nth=1)


@task
def _pair_fn(a, b):
    return (a, b)


def _pair(a, b):
    return _pair_fn(a, b)


def test_deep_fast_chain_beside_slow_node():
    """A chain of five nodes completes while a slow independent node is still running."""
    slow = nap("s", 0.3)
    chain = nap(0, 0.0)
    for _ in range(5):
        chain = ident(chain)
    value, rec = run_on("graph", _pair(slow, chain))
    assert value == ("s", 0)
    last_ident = max(i for i, e in enumerate(rec.events)
                     if type(e) is TaskFinished and e.task == ident.name)
    slow_done = max(i for i, e in enumerate(rec.events)
                    if type(e) is TaskFinished and e.task == nap.name)
    assert last_ident < slow_done


def test_node_starts_after_its_dependencies():
    """Every node starts after all of its dependencies finished."""
    a, b = nap(1, 0.02), nap(2, 0.0)
    s = add(a, b)
    value, rec = run_on("graph", add(s, ident(3)))
    assert value == 6
    first_add = rec.index(TaskStarted, add.name)
    finishes = [i for i, e in enumerate(rec.events) if type(e) is TaskFinished
                and e.task == nap.name]
    assert len(finishes) == 2 and max(finishes) < first_add


def test_plan_indegree_and_dependents():
    """The plan indexes edges both ways."""
    x = ident(1)
    root = add(x, ident(x))
    plan = compile_plan(build_template(root))
    # canonical order: 0 add, 1 x, 2 ident(x)
    assert plan.n == 3
    assert plan.indegree == (2, 0, 1)
    assert sorted(plan.dependents[1]) == [0, 2]
    assert plan.dependents[2] == (0,)
    assert plan.sources == (1,)


def test_plan_sources_in_canonical_order():
    """Nodes with no dependencies are the sources, in canonical order."""
    plan = compile_plan(build_template(add(ident(1), ident(2))))
    assert plan.sources == (1, 2)


def test_plan_flat_flag():
    """A flat template's plan is marked for the hot path."""
    assert compile_plan(build_template(ident(1))).flat
    assert not compile_plan(build_template(ident(ident(1)))).flat


def test_to_dot_has_nodes_and_edges():
    """to_dot draws one node per call and one edge per dependency."""
    dot = to_dot(add(ident(1), ident(2)))
    assert dot.startswith("digraph")
    assert dot.count("->") == 2
    assert "ident" in dot and "add" in dot


def test_to_dot_after_edge_dashed():
    """Ordering-only dependencies are drawn dashed."""
    dot = to_dot(ident(1).after(ident(2)))
    assert "dashed" in dot


def test_tail_loop_constant_stack():
    """A non-flat tail loop on the graph executor runs at a constant Python stack depth."""
    depths = []

    @task
    def probe(x):
        depths.append(_depth())
        return x

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, probe(acc + 1))

    assert run(add(step(300, 0), 0), engine="graph", hot_path=False) == 300
    assert len(set(depths)) == 1


def test_graph_executor_yields_in_sync_workflow():
    """A long sync workflow on the graph executor lets another coroutine tick, not per node."""

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    during = ticks_during(step(50_000, 0), engine="graph", hot_path=False)
    assert 2 <= during < 50_000 // 10


def test_wide_fanout_of_sync_tasks():
    """A 5,000-wide fan-out of sync tasks gives the sum of its branches."""

    @task
    def total(*xs):
        return sum(xs)

    assert run(total(*[ident(i) for i in range(5000)]), engine="graph") == sum(range(5000))
