"""Workflow shapes: how to build each one from its tasks, its value, and its raw twin.

A ``Shape`` is one way a user's workflow may look (SPEC section 7's
realistic shapes, and the ``chain``/``fanout`` of its first list), as data:

- ``tasks()`` makes *fresh* task objects for it. A task is identified by its
  object, so a workflow built from fresh tasks has a shape no run has seen:
  that is what a *cold* run measures (a first sight: run on the first tier
  when it takes the workflow, else its template built and compiled in the
  run). Built from the same tasks again, it is *warm* (cache hits, only new
  values bound).
- ``build(tasks, size, off)`` creates the workflow's ``LazyResult``s (the
  user-side part of a run). ``off`` is added to every literal the shape's
  leaves take, so that a warm run can bind new values to the same structure.
- ``value(size, off)`` is the value every run must produce, as a formula
  (or, for the DAG and the maps, a direct computation of what the formula
  would say), so an engine that skips work cannot look fast.
- ``baseline(size, off)`` runs the same calls in plain Python
  (``bench.baselines``), driving its own uvloop loop when the shape is async.
- ``nodes(size)``: the workflow nodes one run creates and runs, counted
  honestly (every call the user wrote, the fan-in included; for the maps, the
  mapped items): the ``work`` of a throughput figure.

``size`` is in the shape's own unit (``size_unit``): links, pipelines,
layers of ``DAG_WIDTH`` nodes, tasks, loop iterations or mapped items.
The rows built from these shapes are in ``bench.realistic``; the phase
split of one cold run is ``python -m bench.phases``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import uvloop

from bench import baselines
from cascade_graph import task

DAG_WIDTH = 100  # nodes per layer of the layered DAG
MAP_ATTEMPTS = 3  # policy_map: .with_retry(3)


@dataclass(frozen=True)
class Shape:
    """One workflow shape (see module docstring)."""

    name: str
    summary: str  # one line, for --help and the JSON
    size: int  # the size of its 10k-node row, in size_unit
    size_unit: str
    nodes: Callable[[int], int]  # size -> nodes (or mapped items) in one run
    tasks: Callable[[], object]  # fresh task objects, in whatever form build takes them
    build: Callable[[object, int, int], object]  # (tasks, size, off) -> workflow target
    value: Callable[[int, int], object]  # (size, off) -> the value of a run
    baseline: Callable[[int, int], object]  # (size, off) -> the value, by plain Python
    unit: str = "nodes/s"


# --- chain and fanout (SPEC 7's first list) ------------------------------------------------


def _chain(link, n, off):
    node = off
    for _ in range(n):
        node = link(node)
    return node


def _fanout(tasks, n, off):
    double, total = tasks
    return total([double(i + off) for i in range(n)])


# --- the realistic shapes --------------------------------------------------------------------


def _alternating(tasks, n, off):
    a, b = tasks
    node = off
    for k in range(n):
        node = a(node) if k % 2 == 0 else b(node)
    return node


def _kw_chain(step, n, off):
    node = off
    for _ in range(n):
        node = step(node, scale=2)
    return node


def _pipelines(tasks, n, off):
    fetch, parse, total = tasks
    return total([parse(fetch(i + off)) for i in range(n)])


def _dag(tasks, layers, off):
    seed, meet, total = tasks
    width = DAG_WIDTH
    layer = [seed(j + off) for j in range(width)]
    for _ in range(layers - 1):
        layer = [meet(layer[j], layer[(j + 1) % width]) for j in range(width)]
    return total(layer)


def dag_value(layers: int, off: int) -> int:
    """The layered DAG's value: node ``j`` of layer ``k`` is the largest seed of
    ``j .. j+k`` (mod the width) plus ``k``; the run's value sums the last layer."""
    width = DAG_WIDTH
    reach = min(layers, width)  # seeds each node of the last layer sees
    last = layers - 1
    return sum(max((j + t) % width for t in range(reach)) + off + last for j in range(width))


def _async_fanout(tasks, n, off):
    tick, total = tasks
    return total([tick(i + off) for i in range(n)])


def _dag_loop_tasks():
    """Fresh tasks of the loop: ``loop_step``, whose body is a 5-node DAG with one async
    task (``lift``), tail-calling itself until ``n`` is 0."""
    link, bump, lift, add = (task(baselines.link), task(baselines.bump),
                             task(baselines.lift), task(baselines.add))

    def loop_step(n, acc, aux):
        if n <= 0:
            return acc + aux
        a = link(acc)
        return step(n - 1, lift(a), add(a, bump(aux)))

    step = task(loop_step)
    return step


def dag_loop_value(n: int, off: int) -> int:
    """``acc`` grows by 2 a round and ``aux`` by ``acc + 3``: after ``n`` rounds from
    (off, 0), acc + aux = (n + 1) * off + n * n + 4 * n."""
    return (n + 1) * off + n * n + 4 * n


def _map(parse, n, off):
    return parse.map(range(off, off + n))


def _policy_map(parse, n, off):
    return parse.map(range(off, off + n)).with_retry(MAP_ATTEMPTS)


def _map_value(n, off):
    return list(range(off + 1, off + n + 1))


def _tasks(*fns):
    """A factory of fresh tasks wrapping ``fns`` (one task alone, several as a tuple)."""
    if len(fns) == 1:
        return lambda: task(fns[0])
    return lambda: tuple(task(fn) for fn in fns)


def _on_uvloop(coroutine_function):
    """A baseline driving ``coroutine_function(size, off)`` on a fresh uvloop loop."""
    return lambda n, off: uvloop.run(coroutine_function(n, off))


SHAPES: tuple[Shape, ...] = (
    Shape(
        name="chain",
        summary="a linear DAG of one task's links",
        size=10_000, size_unit="links", nodes=lambda n: n,
        tasks=_tasks(baselines.link), build=_chain,
        value=lambda n, off: n + off, baseline=baselines.chain,
    ),
    Shape(
        name="fanout",
        summary="independent tasks feeding one sum (size + 1 nodes)",
        size=2_000, size_unit="tasks", nodes=lambda n: n + 1,
        tasks=_tasks(baselines.double, baselines.total), build=_fanout,
        value=lambda n, off: n * (n - 1) + 2 * n * off, baseline=baselines.fanout,
    ),
    Shape(
        name="alternating",
        summary="a chain alternating two tasks, a(b(a(...)))",
        size=10_000, size_unit="links", nodes=lambda n: n,
        tasks=_tasks(baselines.link, baselines.bump), build=_alternating,
        value=lambda n, off: off + (n + 1) // 2 + 2 * (n // 2), baseline=baselines.alternating,
    ),
    Shape(
        name="kw_chain",
        summary="a chain of step(x, scale=2) (a keyword argument)",
        size=10_000, size_unit="links", nodes=lambda n: n,
        tasks=_tasks(baselines.nudge), build=_kw_chain,
        value=lambda n, off: off + 2 * n, baseline=baselines.kw_chain,
    ),
    Shape(
        name="pipelines",
        summary="two-node pipelines parse(fetch(i)) feeding one sum (2 x size + 1 nodes)",
        size=5_000, size_unit="pipelines", nodes=lambda n: 2 * n + 1,
        tasks=_tasks(baselines.fetch, baselines.parse, baselines.total), build=_pipelines,
        value=lambda n, off: n * n + 2 * n * off, baseline=baselines.pipelines,
    ),
    Shape(
        name="dag",
        summary=f"a layered DAG, layers of {DAG_WIDTH}, each node taking nodes j and j+1 "
                "of the layer before, feeding one sum (size x 100 + 1 nodes)",
        size=100, size_unit=f"layers of {DAG_WIDTH}", nodes=lambda n: n * DAG_WIDTH + 1,
        tasks=_tasks(baselines.seed, baselines.meet, baselines.total), build=_dag,
        value=dag_value, baseline=lambda n, off: baselines.dag(n, DAG_WIDTH, off),
    ),
    Shape(
        name="async_fanout",
        summary="async tasks each awaiting asyncio.sleep(0), feeding one sum (size + 1 nodes); "
                "baseline: asyncio.gather on a fresh uvloop loop",
        size=10_000, size_unit="tasks", nodes=lambda n: n + 1,
        tasks=_tasks(baselines.tick, baselines.total), build=_async_fanout,
        value=lambda n, off: n * (n - 1) // 2 + n * off,
        baseline=_on_uvloop(baselines.async_fanout),
    ),
    Shape(
        name="dag_loop",
        summary="a tail loop whose body is a 5-node DAG with one async task "
                "(5 x size + 1 nodes)",
        size=2_000, size_unit="iterations", nodes=lambda n: 5 * n + 1,
        tasks=_dag_loop_tasks, build=lambda step, n, off: step(n, off, 0),
        value=dag_loop_value, baseline=_on_uvloop(baselines.dag_loop),
    ),
    Shape(
        name="plain_map",
        summary="parse.map(range(size)): one call per item",
        size=10_000, size_unit="items", nodes=lambda n: n, unit="items/s",
        tasks=_tasks(baselines.parse), build=_map,
        value=_map_value, baseline=baselines.map_items,
    ),
    Shape(
        name="policy_map",
        summary=f"parse.map(range(size)).with_retry({MAP_ATTEMPTS}); "
                "baseline: each call in a retry loop",
        size=10_000, size_unit="items", nodes=lambda n: n, unit="items/s",
        tasks=_tasks(baselines.parse), build=_policy_map,
        value=_map_value, baseline=baselines.retried_map_items,
    ),
)

BY_NAME: dict[str, Shape] = {shape.name: shape for shape in SHAPES}
