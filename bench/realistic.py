"""The rows of SPEC section 7's realistic shapes: cold, warm, at 100k nodes, peak memory.

Every row is built from a ``bench.shapes.Shape`` and measured like every
other workload (baseline, vm, graph, interleaved; medians), through the
public ``run()``. Four variants:

- **cold** (``<shape>``): each sample makes fresh task objects, so the
  workflow's shape is new to the process: the template is built and compiled
  inside the timed run. The task objects are made before the timer starts.
- **warm** (``<shape>_warm``): the same task objects for every sample of the
  process. Before its first sample, each engine runs the shape twice,
  untimed, with ``off = 0`` (the first sight runs on the first tier, the
  second builds the template: its template and compiled form are then in the
  shared cache). The warm rows are sampled in one rotation (bench.measure);
  their templates fit the shared cache together, and one that was evicted
  all the same is run once more, untimed, before the sample. Every sample
  then times a run whose literals are new
  (``off`` = a number no other run used). With the default 5 samples a VM
  code is entered 6 times, short of its second tier (the JIT, after 8
  entries). The value is checked in the runner, against the value for that
  ``off``.
- **100k** (``<shape>_100k``): the cold row at about ten times the nodes
  (100,000 for the chains, 100,001 for the others; ``fanout_100k`` is
  50 times the 2,000 of ``fanout``), three samples. The scaling targets
  compare its nodes/s with the 10k row's on the same engine.
- **memory** (``plain_map_memory``, ``policy_map_memory``): the cold map
  under ``tracemalloc``, one sample, after an untraced 3-item map of other
  fresh tasks (so one-time set-up is not charged); the figure is the traced
  peak in MB. The policy target compares the two rows' peaks per engine.

The timed region is the same as everywhere else (``bench.records``): from
building the ``LazyResult``s to holding the value, with ``run()`` making its
loop; async baselines run on a fresh ``uvloop.run`` loop likewise.
"""

from __future__ import annotations

import gc
import itertools

from bench.measure import Sample, check_value
from bench.records import Kind, Workload, engine_run, timed, traced
from bench.shapes import BY_NAME as SHAPES
from bench.shapes import Shape
from cascade_graph.cache import SHARED
from cascade_graph.template import template_key
from cascade_vm import run

#: shapes with cold and warm rows, in table order (chain's cold row is SPEC's ``chain``)
REALISTIC = ("alternating", "kw_chain", "pipelines", "dag", "async_fanout", "dag_loop",
             "plain_map", "policy_map")
#: shape -> its size in the 100k row (fanout's 10k reference is its 2,000-task row)
SCALED = {"chain": 100_000, "alternating": 100_000, "kw_chain": 100_000, "pipelines": 50_000,
          "dag": 1_000, "async_fanout": 100_000, "fanout": 100_000}
SCALED_REPEATS = 3
MEMORY = ("plain_map", "policy_map")

_warm_tasks: dict[str, object] = {}  # shape name -> the task objects of its warm rows
_warmed: set[tuple] = set()  # (shape, size, engine, options) run once already
_offsets = itertools.count(1)  # the literals of warm runs: never two runs alike


def cold_engine(shape: Shape):
    """The engine runner of ``shape``'s cold row."""

    def measure(n, engine, options):
        tasks = shape.tasks()  # new tasks: a new template, compiled in this run
        return engine_run(lambda: shape.build(tasks, n, 0), engine, options)

    return measure


def _warm_engine(shape: Shape):
    def measure(n, engine, options):
        tasks = _warm_tasks.get(shape.name)
        if tasks is None:
            tasks = _warm_tasks[shape.name] = shape.tasks()
        known = (shape.name, n, engine, tuple(sorted(options.items())))
        if known not in _warmed:  # untimed: from now on the shape is known
            # twice: a first sight runs on the first tier; the second builds the template
            for _ in range(2):
                run(shape.build(tasks, n, 0), engine=engine, **options)
            _warmed.add(known)
            gc.collect()
        elif template_key(shape.build(tasks, n, 0)) not in SHARED:
            # evicted by the rows sampled in the same rotation: known again, untimed
            run(shape.build(tasks, n, 0), engine=engine, **options)
            gc.collect()
        off = next(_offsets)
        sample = engine_run(lambda: shape.build(tasks, n, off), engine, options)
        return _checked(shape, n, off, sample)

    return measure


def _warm_baseline(shape: Shape):
    def measure(n):
        off = next(_offsets)
        return _checked(shape, n, off, timed(lambda: shape.baseline(n, off)))

    return measure


def _checked(shape: Shape, n: int, off: int, sample: Sample) -> Sample:
    """``sample`` checked against the value for ``off``; its value is then the row's
    value (the one for ``off = 0``), which the sampler checks in turn."""
    check_value(sample.value, shape.value(n, off))
    return Sample(sample.seconds, shape.value(n, 0))


def _memory_engine(shape: Shape):
    def measure(n, engine, options):
        run(shape.build(shape.tasks(), 3, 0), engine=engine, **options)  # warm-up, untraced
        tasks = shape.tasks()
        return traced(lambda: run(shape.build(tasks, n, 0), engine=engine, **options))

    return measure


def cold(shape: Shape, name: str | None = None, size: int | None = None,
         repeats: int | None = None) -> Workload:
    """``shape``'s cold row (named ``name``, at ``size``)."""
    return Workload(
        name=name or shape.name,
        summary=f"{shape.summary}; cold: new tasks, compiled in the run",
        kind=Kind.THROUGHPUT,
        unit=shape.unit,
        size=size or shape.size,
        baseline=lambda n: timed(lambda: shape.baseline(n, 0)),
        engine=cold_engine(shape),
        expected=lambda n: shape.value(n, 0),
        work=shape.nodes,
        repeats=repeats,
    )


def warm(shape: Shape) -> Workload:
    """``shape``'s warm row."""
    return Workload(
        name=f"{shape.name}_warm",
        summary=f"{shape.summary}; warm: known shape, new literals",
        kind=Kind.THROUGHPUT,
        unit=shape.unit,
        size=shape.size,
        baseline=_warm_baseline(shape),
        engine=_warm_engine(shape),
        expected=lambda n: shape.value(n, 0),
        work=shape.nodes,
    )


def memory(shape: Shape) -> Workload:
    """``shape``'s peak-memory row (cold, under tracemalloc)."""
    return Workload(
        name=f"{shape.name}_memory",
        summary=f"{shape.summary}; cold, under tracemalloc: peak of traced memory",
        kind=Kind.PEAK_MB,
        unit="MB peak",
        size=shape.size,
        baseline=lambda n: traced(lambda: shape.baseline(n, 0)),
        engine=_memory_engine(shape),
        expected=lambda n: shape.value(n, 0),
        work=shape.nodes,
        repeats=1,
    )


def scaled_name(shape_name: str) -> str:
    return f"{shape_name}_100k"


def _rows() -> tuple[Workload, ...]:
    rows = [warm(SHAPES["chain"])]
    for name in REALISTIC:
        rows += [cold(SHAPES[name]), warm(SHAPES[name])]
    rows += [memory(SHAPES[name]) for name in MEMORY]
    rows += [cold(SHAPES[name], scaled_name(name), size, SCALED_REPEATS)
             for name, size in SCALED.items()]
    return tuple(rows)


#: every row of this module, in table order
REALISTIC_WORKLOADS: tuple[Workload, ...] = _rows()
