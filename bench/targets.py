"""The performance targets ``--check`` enforces, as data, and their evaluation.

A target bounds one engine's figure on one workload, either absolutely
(``chain``: VM >= 300,000 nodes/s), relative to another column of the same
workload (``countdown``: VM >= 0.40 x the baseline; graph >= 0.90 x the VM),
or relative to another workload's figure on the same engine
(``versus_workload``: ``kw_chain``'s VM nodes/s >= 1/1.5 x ``chain``'s VM
nodes/s). Relative targets compare speeds, so they read the same way for
throughput and for wall time; between two peak-memory rows they compare the
peaks themselves (``policy_map_memory`` <= 1.5 x ``plain_map_memory``).
Across workloads, throughput is per unit of work (nodes/s), so rows of
different sizes compare per node: the scaling targets hold each
``<shape>_100k`` row to 1/1.3 of its 10k row.

Each evaluation is PASS, FAIL (below target, or the figure is missing
because the engine raised or returned a wrong value) or SKIP (the workload
or a column it needs was not selected with ``--only``/``--engine``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.realistic import SCALED, scaled_name
from bench.workloads import BY_NAME, Kind

ENGINES = ("vm", "graph")


@dataclass(frozen=True)
class Target:
    """``engine``'s figure on ``workload`` must satisfy ``op bound``, times the figure of
    column ``versus`` (of ``versus_workload`` when given, else of this workload)."""

    workload: str
    engine: str  # "vm" or "graph"
    op: str  # ">=" (at least), "<=" (at most) or "<" (under)
    bound: float
    versus: str | None = None  # a column name: the bound is then a factor of its figure
    versus_workload: str | None = None  # another workload: the bound is a factor of its
    # figure in column ``versus``, or by default in this target's own engine's column

    @property
    def relative(self) -> bool:
        return self.versus is not None or self.versus_workload is not None

    @property
    def versus_column(self) -> str | None:
        """The column of the figure the bound multiplies (None: absolute)."""
        if self.versus_workload is not None:
            return self.versus or self.engine
        return self.versus

    def describe(self) -> str:
        unit = BY_NAME[self.workload].unit
        if self.versus_workload is not None:
            return (f"{self.workload}: {self.engine} {self.op} {_factor(self.bound)} x "
                    f"{self.versus_workload} ({self.versus_column})")
        if self.versus is not None:
            return f"{self.workload}: {self.engine} {self.op} {_factor(self.bound)} x {self.versus}"
        bound = f"{self.bound:,.0f}" if self.bound == int(self.bound) else f"{self.bound:g}"
        return f"{self.workload}: {self.engine} {self.op} {bound} {unit}"


TARGETS: tuple[Target, ...] = (
    Target("countdown", "vm", ">=", 0.40, versus="baseline"),
    Target("countdown", "graph", ">=", 0.90, versus="vm"),
    Target("countdown_async", "vm", ">=", 0.35, versus="baseline"),
    Target("countdown_async", "graph", ">=", 0.90, versus="vm"),
    Target("observed_countdown", "vm", ">=", 0.05, versus="baseline"),
    Target("observed_countdown", "graph", ">=", 0.05, versus="baseline"),
    # with Trace attached, against the same countdown unobserved (this row's baseline)
    Target("observed_countdown_trace", "vm", ">=", 0.05, versus="baseline"),
    Target("observed_countdown_trace", "graph", ">=", 0.05, versus="baseline"),
    Target("heavy_loop", "vm", ">=", 1_000_000),
    Target("heavy_loop", "graph", ">=", 0.50, versus="vm"),
    Target("chain", "vm", ">=", 300_000),
    Target("chain", "graph", ">=", 150_000),
    Target("fanout", "vm", ">=", 300_000),
    Target("fanout", "graph", ">=", 150_000),
    Target("repeat_run", "vm", ">=", 50_000),
    Target("repeat_run", "graph", ">=", 25_000),
    Target("async_io", "vm", "<=", 25),
    Target("async_io", "graph", "<=", 25),
    Target("memory", "vm", "<", 5),
    Target("memory", "graph", "<", 5),
) + tuple(
    # with the dask extra: 2 workers >= 1.7x in-process on CPU-bound calls; no-op calls
    # within 1.3x of raw client.submit + gather (distributed_tail is reported only)
    Target(name, engine, ">=", bound, versus="baseline")
    for name, bound in (("distributed_fanout", 1.7), ("distributed_noop", 1 / 1.3))
    if name in BY_NAME
    for engine in ENGINES
)

#: issue 13: the realistic shapes of SPEC section 7 (bench.realistic)
REALISTIC_TARGETS: tuple[Target, ...] = (
    # every realistic shape within 1.5x of chain's nodes/s on the same engine, cold and warm
    *(Target(f"{name}{variant}", engine, ">=", 1 / 1.5, versus_workload=f"chain{variant}")
      for variant in ("", "_warm")
      for name in ("alternating", "kw_chain", "pipelines", "dag", "dag_loop")
      for engine in ENGINES),
    # an async fan-out at half the speed of raw asyncio.gather (its baseline) or better
    *(Target(name, engine, ">=", 0.5, versus="baseline")
      for name in ("async_fanout", "async_fanout_warm") for engine in ENGINES),
    # a policy on every map item: >= 0.7x the same map without it, peak memory <= 1.5x
    *(Target(f"policy_map{variant}", engine, ">=", 0.7, versus_workload=f"plain_map{variant}")
      for variant in ("", "_warm") for engine in ENGINES),
    *(Target("policy_map_memory", engine, "<=", 1.5, versus_workload="plain_map_memory")
      for engine in ENGINES),
    # no shape slower per node at 100k nodes than at 10k by more than 1.3x
    *(Target(scaled_name(name), engine, ">=", 1 / 1.3, versus_workload=name)
      for name in SCALED for engine in ENGINES),
)

TARGETS += REALISTIC_TARGETS


@dataclass(frozen=True)
class Verdict:
    """The outcome of one target."""

    target: Target
    status: str  # "PASS", "FAIL" or "SKIP"
    measured: float | None  # the figure (or speed ratio) compared with the bound
    detail: str  # human-readable: what was measured, or why there is no figure


_HOLDS = {
    ">=": lambda value, bound: value >= bound,
    "<=": lambda value, bound: value <= bound,
    "<": lambda value, bound: value < bound,
}


def evaluate(target: Target, results: dict) -> Verdict:
    """Judge ``target`` against ``results`` (workload name -> ``report.Row``)."""
    row = results.get(target.workload)
    other = row if target.versus_workload is None else results.get(target.versus_workload)
    needed = [(row, target.engine)]
    if target.relative:
        needed.append((other, target.versus_column))
    if any(r is None or r.cells.get(column) is None for r, column in needed):
        return Verdict(target, "SKIP", None, "not measured in this run")
    for r, column in needed:
        cell = r.cells[column]
        if not cell.ok:
            where = column if r is row else f"{r.workload.name} {column}"
            return Verdict(target, "FAIL", None, f"{where} has no figure: {cell.error}")
    workload = row.workload
    figure = row.figure(target.engine)
    if not target.relative:
        measured = figure
        detail = f"measured {_format_absolute(figure, workload.kind)} {workload.unit}"
    else:
        measured = _ratio(row, figure, other, other.figure(target.versus_column))
        detail = f"measured {_factor(measured, target.bound)} x"
    status = "PASS" if _HOLDS[target.op](measured, target.bound) else "FAIL"
    return Verdict(target, status, measured, detail)


def _ratio(row, figure: float, other, other_figure: float) -> float:
    """``figure`` over ``other_figure``: as speeds (higher is faster), or as they are
    when both rows measure peak memory."""
    if row.workload.kind is Kind.PEAK_MB and other.workload.kind is Kind.PEAK_MB:
        return figure / other_figure if other_figure else float("inf")
    return row.workload.speed(figure) / other.workload.speed(other_figure)


def _factor(value: float, like: float | None = None) -> str:
    """A factor with two decimals, or three when ``like`` (default: the value) needs them
    (1/1.5 prints as 0.667)."""
    like = value if like is None else like
    return f"{value:.2f}" if abs(like * 100 - round(like * 100)) < 1e-9 else f"{value:.3f}"


def evaluate_all(results: dict) -> list[Verdict]:
    return [evaluate(target, results) for target in TARGETS]


def _format_absolute(value: float, kind: Kind) -> str:
    return f"{value:,.0f}" if kind is Kind.THROUGHPUT else f"{value:.2f}"
