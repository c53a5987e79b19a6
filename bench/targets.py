"""The performance targets ``--check`` enforces, as data, and their evaluation.

A target bounds one engine's figure on one workload, either absolutely
(``chain``: VM >= 300,000 nodes/s) or relative to another column of the same
workload (``countdown``: VM >= 0.40 x the baseline; graph >= 0.90 x the VM).
Relative targets compare speeds, so they read the same way for throughput
and for wall time.

Each evaluation is PASS, FAIL (below target, or the figure is missing
because the engine raised or returned a wrong value) or SKIP (the workload
or a column it needs was not selected with ``--only``/``--engine``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.workloads import BY_NAME, Kind


@dataclass(frozen=True)
class Target:
    """``engine``'s figure on ``workload`` must satisfy ``op bound`` (times ``versus``'s)."""

    workload: str
    engine: str  # "vm" or "graph"
    op: str  # ">=" (at least), "<=" (at most) or "<" (under)
    bound: float
    versus: str | None = None  # a column name: the bound is then a factor of its figure

    def describe(self) -> str:
        unit = BY_NAME[self.workload].unit
        if self.versus is not None:
            return f"{self.workload}: {self.engine} {self.op} {self.bound:.2f} x {self.versus}"
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
    for engine in ("vm", "graph")
)


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
    needed = [target.engine] + ([target.versus] if target.versus else [])
    if row is None or any(row.cells.get(column) is None for column in needed):
        return Verdict(target, "SKIP", None, "not measured in this run")
    for column in needed:
        cell = row.cells[column]
        if not cell.ok:
            return Verdict(target, "FAIL", None, f"{column} has no figure: {cell.error}")
    workload = row.workload
    figure = row.figure(target.engine)
    if target.versus is None:
        measured = figure
        detail = f"measured {_format_absolute(figure, workload.kind)} {workload.unit}"
    else:
        measured = workload.speed(figure) / workload.speed(row.figure(target.versus))
        detail = f"measured {measured:.2f} x"
    status = "PASS" if _HOLDS[target.op](measured, target.bound) else "FAIL"
    return Verdict(target, status, measured, detail)


def evaluate_all(results: dict) -> list[Verdict]:
    return [evaluate(target, results) for target in TARGETS]


def _format_absolute(value: float, kind: Kind) -> str:
    return f"{value:,.0f}" if kind is Kind.THROUGHPUT else f"{value:.2f}"
