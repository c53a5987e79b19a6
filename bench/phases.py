"""Where a cold run's time goes: ``python -m bench.phases SHAPE [--engine vm|graph] [--n N]``.

For one shape of ``bench.shapes`` (``chain``, ``alternating``, ``kw_chain``,
``pipelines``, ``dag``, ``async_fanout``, ``dag_loop``, ``plain_map``,
``policy_map``, ``fanout``), on each engine, the microseconds per node of
the four phases of a cold run (fresh tasks, so nothing is cached):

1. **creation**: the user's side, building the ``LazyResult``s;
2. **template**: what a run does on a cache miss: the key walk, the canonical
   order, the template build (collector paused, as the engines do) and the
   binding of the inputs;
3. **compile**: the VM's ``Code`` or the graph executor's ``Plan``;
4. **execute**: ``run()`` with that entry already in the shared cache: it
   makes the event loop, finds the key and binds the inputs again (a walk
   for a DAG: a warm run pays it too), then executes.

The direct split times each phase on its own (medians of ``--repeats``
cold runs), next to the same cold run in one piece (build, then ``run()``).
It is exact for the run's root template; but lazies and templates made
*during* the run (the body of ``dag_loop`` at each tail call, a map's items
at its expansion) are made, built and compiled inside **execute**. So the tool also
profiles one whole cold run with ``cProfile`` and charges the cumulative
time of the named functions below to their phase (what one of them spends
in another is counted once; the profiler's own overhead is included, so
these are shares, not speeds). ``--profile`` prints the top 25 functions of
one cold run by own time.

Engine internals this module calls (the only module of ``bench`` that does;
when the engines change, fix it here):

- ``cascade_graph.cache.lookup(root, use_cache=False)`` -> ``(entry, inputs)``:
  the miss path of a run (``key_and_order``, ``canonical_nodes``,
  ``build_template`` under ``without_gc``, ``inputs_from_order``);
- ``cascade_graph.cache.SHARED.put(key, entry)``: the shared template cache;
- ``cascade_graph.cache.without_gc(fn, arg)``: the collector paused;
- ``cascade_vm.vm.code_for(entry)``: the VM's compile (``compile_template``),
  stored in ``entry.code``;
- ``cascade_graph.plan.compile_plan(template)``: the graph executor's plan,
  stored in ``entry.plan`` (as ``GraphRun.start`` does);
- ``Entry.template`` (``.key``, ``.nodes``), ``Entry.plan``, ``Entry.code``;
- for the profiled split, by file and name: ``cascade_graph/template.py``
  ``key_and_order``, ``canonical_nodes``, ``build_template``,
  ``inputs_from_order``, ``bind_inputs`` (template); ``cascade_vm/compiler.py``
  ``compile_template`` and ``cascade_graph/plan.py`` ``compile_plan``
  (compile); ``cascade_graph/lazy.py`` ``MapTask._expand`` (creation: a map's
  items are made in the run), ``bench/shapes.py`` ``loop_step`` (creation:
  ``dag_loop``'s body calls, made by the task at each iteration);
  ``cascade_vm/__init__.py`` ``run`` (the whole run).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import time
from dataclasses import dataclass

from bench.measure import check_value
from bench.shapes import BY_NAME, Shape
from cascade_graph.cache import SHARED, lookup, without_gc
from cascade_graph.plan import compile_plan
from cascade_vm import run
from cascade_vm.vm import code_for

ENGINES = ("vm", "graph")
PHASES = ("creation", "template", "compile", "execute")

#: profiled split: (file inside the package, function name) -> phase
PROFILED: dict[tuple[str, str], str] = {
    (os.path.join("cascade_graph", "template.py"), "key_and_order"): "template",
    (os.path.join("cascade_graph", "template.py"), "canonical_nodes"): "template",
    (os.path.join("cascade_graph", "template.py"), "build_template"): "template",
    (os.path.join("cascade_graph", "template.py"), "inputs_from_order"): "template",
    (os.path.join("cascade_graph", "template.py"), "bind_inputs"): "template",
    # the first tier (a cold shape's first run, no template): its ordering and
    # checking walk stands in the template's place
    (os.path.join("cascade_graph", "firsttier.py"), "_evaluation_order"): "template",
    (os.path.join("cascade_graph", "firsttier.py"), "_all_taken"): "template",
    (os.path.join("cascade_vm", "compiler.py"), "compile_template"): "compile",
    (os.path.join("cascade_graph", "plan.py"), "compile_plan"): "compile",
    # lazies made inside the run: a map's items, a loop body's calls
    (os.path.join("cascade_graph", "lazy.py"), "_expand"): "creation",
    (os.path.join("bench", "shapes.py"), "loop_step"): "creation",
}


def compile_entry(entry, engine: str) -> None:
    """Compile a cache entry for ``engine``, as the engine does on its first use."""
    if engine == "vm":
        code_for(entry)
    else:
        entry.plan = without_gc(compile_plan, entry.template)


@dataclass
class Split:
    """The seconds of each phase of one cold run, and what it was made of."""

    seconds: dict[str, float]  # phase -> seconds
    whole: float  # the same cold run in one piece: build, then run()
    template_nodes: int  # nodes of the root's template (runs and batches fold many)


def split_once(shape: Shape, n: int, engine: str) -> Split:
    """One cold run taken apart, then one in one piece; both values checked."""
    expected = shape.value(n, 0)
    tasks = shape.tasks()
    gc.collect()
    t0 = time.perf_counter()
    root = shape.build(tasks, n, 0)
    t1 = time.perf_counter()
    entry, _ = lookup(root, False)
    t2 = time.perf_counter()
    compile_entry(entry, engine)
    t3 = time.perf_counter()
    SHARED.put(entry.template.key, entry)
    value = run(root, engine=engine)
    t4 = time.perf_counter()
    check_value(value, expected)
    del root, value
    tasks = shape.tasks()
    gc.collect()
    start = time.perf_counter()
    value = run(shape.build(tasks, n, 0), engine=engine)
    whole = time.perf_counter() - start
    check_value(value, expected)
    seconds = dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))
    return Split(seconds, whole, len(entry.template.nodes))


def _create(shape: Shape, tasks, n: int):
    """The user's side of a run (a named function, so the profile can find it)."""
    return shape.build(tasks, n, 0)


def _cold_run(shape: Shape, n: int, engine: str):
    tasks = shape.tasks()
    return run(_create(shape, tasks, n), engine=engine)


def profile_once(shape: Shape, n: int, engine: str) -> pstats.Stats:
    """``cProfile`` statistics of one whole cold run (value checked)."""
    gc.collect()
    profiler = cProfile.Profile()
    value = profiler.runcall(_cold_run, shape, n, engine)
    check_value(value, shape.value(n, 0))
    return pstats.Stats(profiler)


def profiled_split(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per phase of a profiled cold run (see module docstring).

    A named function's cumulative time, less what it spent in other named
    functions it called directly, goes to its phase (all of them run inside
    ``run()``); ``creation`` also has ``_create`` (before ``run()``);
    ``execute`` is the rest of ``run()``.
    """
    table = stats.stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    named = {func: phase for func in table if (phase := _phase_of(func)) is not None}
    out = dict.fromkeys(PHASES, 0.0)
    for func, phase in named.items():
        ct = table[func][3]
        nested = sum(table[g][4].get(func, (0, 0, 0, 0))[3] for g in named)
        out[phase] += ct - nested
    inside_run = sum(out.values())
    total = 0.0
    for (file, _, name), row in table.items():
        if name == "_create" and file.endswith(os.path.join("bench", "phases.py")):
            out["creation"] += row[3]
        elif name == "run" and file.endswith(os.path.join("cascade_vm", "__init__.py")):
            total = row[3]
    out["execute"] = max(0.0, total - inside_run)
    return out


def _phase_of(func: tuple) -> str | None:
    file, _, name = func
    for (suffix, wanted), phase in PROFILED.items():
        if name == wanted and file.endswith(suffix):
            return phase
    return None


def render_split(shape: Shape, n: int, engine: str, splits: list[Split],
                 profiled: dict[str, float], out) -> None:
    nodes = shape.nodes(n)
    per_node = 1e6 / nodes
    medians = {p: statistics.median(s.seconds[p] for s in splits) for p in PHASES}
    total = sum(medians.values())
    whole = statistics.median(s.whole for s in splits)
    profiled_total = sum(profiled.values()) or 1.0
    print(f"{shape.name}, size {n:,} {shape.size_unit} ({nodes:,} nodes), engine {engine}: "
          f"root template of {splits[0].template_nodes:,} nodes; "
          f"medians of {len(splits)} cold runs", file=out)
    print(f"  {'phase':<10} {'us/node':>9} {'ms':>9} {'share':>6}   "
          f"{'profiled us/node':>16} {'share':>6}", file=out)
    for phase in PHASES:
        print(f"  {phase:<10} {medians[phase] * per_node:>9.2f} {medians[phase] * 1e3:>9.1f} "
              f"{medians[phase] / total:>6.0%}   {profiled[phase] * per_node:>16.2f} "
              f"{profiled[phase] / profiled_total:>6.0%}", file=out)
    print(f"  {'total':<10} {total * per_node:>9.2f} {total * 1e3:>9.1f}", file=out)
    print(f"  {'one piece':<10} {whole * per_node:>9.2f} {whole * 1e3:>9.1f}   "
          "(the same cold run, build then run())", file=out)


def print_top(stats: pstats.Stats, out, limit: int = 25) -> None:
    stats.stream = out
    stats.sort_stats("tottime").print_stats(limit)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.phases",
        description="Microseconds per node of each phase of a cold run: creation, template, "
                    "compile, execute (see the module docstring for what each covers).",
    )
    parser.add_argument("shape", choices=sorted(BY_NAME), help="the workflow shape")
    parser.add_argument("--engine", choices=ENGINES, help="only this engine (default: both)")
    parser.add_argument("--n", type=_positive_int, help="size in the shape's unit "
                        "(links, pipelines, layers, tasks, iterations, items; default: "
                        "the size of its bench row)")
    parser.add_argument("--repeats", type=_positive_int, default=5,
                        help="cold runs per engine (default: 5)")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile's top 25 functions by own time of one "
                             "cold run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, out=None) -> int:
    args = parse_args(argv)
    out = out or sys.stdout
    shape = BY_NAME[args.shape]
    n = args.n or shape.size
    for engine in [args.engine] if args.engine else list(ENGINES):
        splits = [split_once(shape, n, engine) for _ in range(args.repeats)]
        stats = profile_once(shape, n, engine)
        render_split(shape, n, engine, splits, profiled_split(stats), out)
        if args.profile:
            print(f"\ncProfile of one cold run ({engine}), top 25 by own time:", file=out)
            buffer = io.StringIO()
            print_top(stats, buffer)
            print(buffer.getvalue().rstrip(), file=out)
        print(file=out)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
