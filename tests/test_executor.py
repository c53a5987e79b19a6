"""The graph executor and its plans (SPEC section 3): dependency-driven, no stage barrier."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cascade_graph import TaskFinished, TaskStarted, task
from cascade_graph.plan import compile_plan, to_dot
from cascade_graph.template import build_template
from cascade_vm import arun, run
from tests.helpers import per_engine, run_on, ticks_during


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


# --- sweeps: a plan of unconditional calls, called in its queue's order with no queue


def _layers(leaf, node, off, width=6, depth=5):
    """A layered DAG: ``width`` leaves ``leaf(off + j)``, then ``depth`` layers of
    ``node(j, j + 1)`` over the layer below (node 0 of the last layer is the root's)."""
    layer = [leaf(off + j) for j in range(width)]
    for _ in range(depth):
        layer = [node(layer[j], layer[(j + 1) % width]) for j in range(width)]
    return layer


def _layers_value(off, width=6, depth=5):
    layer = [off + j for j in range(width)]
    for _ in range(depth):
        layer = [layer[j] + layer[(j + 1) % width] for j in range(width)]
    return layer


def test_a_sweep_calls_the_nodes_in_the_ready_queues_order(monkeypatch):
    """A plan of sync calls alone is swept (``Plan.sweep``): in a quiet run its nodes
    are called in the order the ready queue calls them without a sweep (given a
    budget that lasts the whole run: where the pacer's budget runs out, a line breaks
    and the queue's order changes), and the run's value is the same; each workflow
    is run enough times to leave the first tier."""
    from cascade_graph import executor as executor_mod
    from cascade_graph import plan as plan_mod
    from cascade_graph.hotpath import Pacer

    class Unlimited(Pacer):
        def __init__(self, interval):
            super().__init__(interval)
            self.batch = 1 << 20

    monkeypatch.setattr(executor_mod, "Pacer", Unlimited)
    calls = []

    @task
    def leaf(x):
        calls.append(("leaf", x))
        return x

    @task
    def node(a, b):
        calls.append(("node", a, b))
        return a + b

    @task
    def inc(x):
        calls.append(("inc", x))
        return x + 1

    @task
    def gather(*xs):
        return list(xs)

    def workflow(off):  # the layers, and a line of links (Plan.next_in_line)
        return gather(*_layers(leaf, node, off), inc(inc(leaf(off))))

    def calls_of(off):
        calls.clear()
        assert run(workflow(off), engine="graph") == _layers_value(off) + [off + 2]
        return list(calls)

    sweeps = []
    real = executor_mod.GraphRun._sweep
    monkeypatch.setattr(executor_mod.GraphRun, "_sweep",
                        lambda self, inst: sweeps.append(inst) or real(self, inst))
    for off in range(3):  # first tier, then the template: swept from here on
        swept = calls_of(off)
    assert sweeps
    monkeypatch.setattr(plan_mod, "plan_sweep", lambda *a: None)
    from cascade_graph.cache import SHARED
    SHARED.clear()
    for _ in range(3):
        queued = calls_of(2)
    assert queued == swept
    assert run(workflow(7), engine="vm") == _layers_value(7) + [9]


@per_engine
def test_a_tail_call_in_a_swept_plan_hands_it_to_the_queue(engine, monkeypatch):
    """A node of a swept plan that returns a lazy call (not the root): its continuation
    runs, the nodes waiting on it run after it, the others go on; every run's value is
    its own, on both engines."""
    from cascade_graph import executor as executor_mod

    handed = []
    real = executor_mod.GraphRun._to_queue
    monkeypatch.setattr(executor_mod.GraphRun, "_to_queue",
                        lambda self, inst, k: handed.append(k) or real(self, inst, k))

    @task
    def count(n, acc):  # a tail loop: a node's value only after n more calls
        return acc if n == 0 else count(n - 1, ident(acc + 1))

    @task
    def node(a, b):
        return a + b

    @task
    def gather(*xs):
        return list(xs)

    def workflow(off):  # the tail call early in the sweep, more nodes ready meanwhile
        return gather(node(count(3, ident(off)), ident(off + 1)),
                      *_layers(ident, node, off, depth=2))

    def value(off):
        return [2 * off + 4, *_layers_value(off, depth=2)]

    async def main():  # (a node the queue never gets would hang the run: time out)
        for off in range(4):
            assert await asyncio.wait_for(arun(workflow(off), engine=engine), 10) == value(off)

    asyncio.run(main())
    assert bool(handed) == (engine == "graph")


@per_engine
def test_async_calls_of_a_swept_plan_still_overlap(engine):
    """An async node that does not finish when started hands a swept plan to the queue,
    which starts the next one while the first waits: two calls that each wait for the
    other to start both finish (one at a time, they would time out)."""

    @task
    async def meet(name, started, other):
        started[name].set()
        await asyncio.wait_for(started[other].wait(), 5)
        return name

    @task
    def pair(a, b):
        return a + b

    async def main():
        for _ in range(3):  # the first tier, then the template (a swept plan)
            started = {"a": asyncio.Event(), "b": asyncio.Event()}
            assert await arun(pair(meet("a", started, "b"), meet("b", started, "a")),
                              engine=engine) == "ab"

    asyncio.run(main())


@per_engine
def test_a_swept_plan_yields_to_the_loop_and_names_a_failing_task(engine):
    """A long swept plan lets other coroutines run (with ``yield_interval=0``, after
    every call); a failing node's error names its task."""

    @task
    def node(a, b):
        if a == -1:
            raise ValueError("no")
        return a + b

    @task
    def gather(*xs):
        return list(xs)

    def workflow(off):
        return gather(*_layers(ident, node, off, width=20, depth=10))

    for off in range(3):
        assert run(workflow(off), engine=engine) == _layers_value(off, 20, 10)
    assert ticks_during(workflow(3), engine=engine, yield_interval=0) >= 100
    with pytest.raises(ValueError) as info:
        run(workflow(-1), engine=engine)
    assert any("node" in note for note in getattr(info.value, "__notes__", []))


@task
def _show(*args, **kwargs):
    return args, kwargs


@task
async def _ashow(*args, **kwargs):
    await asyncio.sleep(0)
    return args, kwargs


def test_calls_with_one_level_containers_are_simple_calls():
    """A plain call whose arguments hold lists, tuples or str-keyed dicts of literals and
    lazies, positional or keyword, is a SIMPLE op (its containers built by a builder
    written once per layout, keywords through the task's keyword caller); a nested
    container, a dict with a key that is not a str, or a policy keeps the argument
    program."""
    from cascade_graph.plan import SIMPLE

    x = ident(1)
    plain = _show([x, 1], (2, x), {"a": x}, k=[x, 3], t=(x,))
    assert compile_plan(build_template(plain)).ops[0].mode == SIMPLE
    for other in (_show([[x], 1]), _show({1: x}), _show([x]).with_timeout(5)):
        assert compile_plan(build_template(other)).ops[0].mode != SIMPLE


@per_engine
def test_one_level_container_calls_run_alike_on_every_tier(engine):
    """Their values, their events, and a skipped lazy inside a container, on each sight
    of a layout (first tier, template, warm)."""
    for off in range(3):
        x = ident(off)
        value, rec = run_on(engine, _show([x, 1], {"a": x, "b": (x, 2)}, k=[x], t=(5, x)))
        assert value == (([off, 1], {"a": off, "b": (off, 2)}), {"k": [off], "t": (5, off)})
        assert len(rec.of(TaskStarted, _show.name)) == len(rec.of(TaskFinished, _show.name)) == 1
        assert run(_ashow([x, 1], k={"a": x}), engine=engine) == (([off, 1],), {"k": {"a": off}})
        skipped = ident(off).run_if(False)  # a skipped value in a container skips the call
        value, rec = run_on(engine, _show([skipped, 1], k={"a": ident(off)}))
        assert value is None
        assert not rec.of(TaskStarted, _show.name)
