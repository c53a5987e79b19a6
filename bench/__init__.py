"""Cascade's benchmarks: ``python -m bench`` (``make bench``; ``make bench-check``).

What it answers: how fast each engine (the register VM and the graph
executor, both through the public ``cascade_vm.run``/``arun``) runs the
workloads of SPEC section 7, next to plain Python doing the same work in the
same process, and whether the project's performance targets hold.

Design
------
- ``bench.records``: what a workload is (size, unit, figure kind, baseline
  runner, engine runner, expected value) and the timing helpers. Runners
  time themselves: the timed region runs from building the workflow to
  holding its value.
- ``bench.workloads``: SPEC 7's first list, and ``WORKLOADS``, every row in
  table order. ``bench.shapes``: the workflow shapes (chain, fanout and the
  realistic ones), each with fresh tasks, a builder, its value as a formula
  and its raw-Python twin; ``bench.realistic``: their rows, cold, warm, at
  100k nodes and under tracemalloc.
- ``bench.baselines``: the plain-Python equivalents (a trampoline making one
  small object per step for the countdowns, an async trampoline, direct
  calls, ``asyncio.gather``). The tasks wrap these same functions where the
  work is the same, so engine and baseline run identical user code.
- ``bench.measure``: samples. Columns (baseline, vm, graph) are interleaved
  repeat by repeat so that machine noise hits all of them alike; each run
  starts after a ``gc.collect()``, under a per-run time limit; every value
  is checked, so a wrong engine cannot look fast. Failures become text in
  the cell and the bench goes on.
- ``bench.report``: figures are MEDIANS of the samples (throughput = work /
  median seconds; wall ms; tracemalloc peak MB). Ratios compare speeds
  (higher is faster). The printed table and ``--json PATH`` carry the same
  figures; the JSON adds the raw samples.
- ``bench.targets``: the targets ``--check`` enforces, as data: absolute, or
  a factor of another column or of another workload's figure on the same
  engine. It prints a PASS/FAIL/SKIP line per target and exits 1 naming each
  workload below target.
- ``bench.phases`` (``python -m bench.phases SHAPE``): a cold run split into
  creation, template, compile and execute; the one module that calls the
  engines' internals.

docs/benchmarks.md describes the rows, the targets and the phase split.

Sizes are SPEC's at ``--scale 1``; ``--scale`` (or ``--quick``) shrinks them
for smoke tests, where no speed means anything. Nothing here asserts on
speed except ``--check``, on demand.
"""
