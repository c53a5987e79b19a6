"""What a workload is, and the timing helpers every workload's runners share.

``Workload`` is the record ``python -m bench`` measures: a size, a unit, the
kind of figure, and three ways to run it (a plain-Python baseline and an
engine runner taking the engine's name), each returning a ``Sample``.
``timed``, ``traced`` and ``engine_run`` draw the timed region the same way
for every workload: from building the workflow to holding its value.

The workloads themselves live in ``bench.workloads`` (SPEC section 7's
first list) and ``bench.realistic`` (its realistic shapes, cold, warm and at
100k nodes).
"""

from __future__ import annotations

import enum
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from bench.measure import Cell, Sample
from cascade_vm import run


class Kind(enum.Enum):
    """What a workload's figure measures, and which way is better."""

    THROUGHPUT = "throughput"  # units of work per second: higher is better
    WALL_MS = "wall_ms"  # wall milliseconds of one run: lower is better
    PEAK_MB = "peak_mb"  # tracemalloc peak in MB: lower is better


@dataclass(frozen=True)
class Workload:
    """One benchmark: how to run it three ways and what it must return."""

    name: str
    summary: str  # one line for --help and the JSON
    kind: Kind
    unit: str  # what the figure counts, as printed: "iterations/s", "ms wall", ...
    size: int  # problem size at --scale 1 (iterations, nodes, tasks or runs)
    baseline: Callable[[int], Sample]  # size -> sample, plain Python
    engine: Callable[[int, str, dict], Sample]  # size, engine name, run() options -> sample
    expected: Callable[[int], object]  # size -> the value every run must produce
    work: Callable[[int], int]  # size -> units of work in one run (throughput only)
    repeats: int | None = None  # fixed number of samples, overriding --repeats

    def sized(self, scale: float) -> int:
        """The problem size at ``scale`` (at least 1)."""
        return max(1, round(self.size * scale))

    def figure(self, cell: Cell | None, size: int) -> float | None:
        """The reported figure of a cell (a median), or None when it has none."""
        if cell is None or not cell.ok:
            return None
        if self.kind is Kind.PEAK_MB:
            return statistics.median(s.peak_bytes for s in cell.samples) / 1e6
        seconds = statistics.median(s.seconds for s in cell.samples)
        if self.kind is Kind.WALL_MS:
            return seconds * 1000.0
        return self.work(size) / seconds if seconds > 0 else float("inf")

    def speed(self, figure: float | None) -> float | None:
        """A figure turned into "higher is faster", for speed ratios; None if not a speed."""
        if figure is None or self.kind is Kind.PEAK_MB:
            return None
        if self.kind is Kind.WALL_MS:
            return 1.0 / figure if figure > 0 else None
        return figure


def timed(compute: Callable[[], object]) -> Sample:
    """A sample of ``compute()``: its wall time and its value."""
    start = time.perf_counter()
    value = compute()
    return Sample(time.perf_counter() - start, value)


def engine_run(build: Callable[[], object], engine: str, options: dict) -> Sample:
    """Time building a workflow with ``build()`` and running it with ``run()``."""
    return timed(lambda: run(build(), engine=engine, **options))


def traced(compute: Callable[[], object]) -> Sample:
    """Run ``compute()`` under tracemalloc; the sample carries the peak it added."""
    gc.collect()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        sample = timed(compute)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if started_here:
            tracemalloc.stop()
    return Sample(sample.seconds, sample.value, peak)
