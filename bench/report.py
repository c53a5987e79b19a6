"""Presenting results: the measured rows, the printed table and the JSON document.

A ``Row`` holds one workload's cells (``baseline``, ``vm``, ``graph``; a
column not selected is ``None``). Figures are medians (see
``Workload.figure``). Ratios compare speeds, so "higher is faster" holds in
every ratio column: throughput / throughput, or for wall-time workloads
baseline ms / engine ms. The memory rows have no ratios.

The table and the JSON carry the same figures. JSON layout::

    {"meta": {...python, uvloop, platform, cpus, repeats, scale, options...},
     "workloads": {name: {"summary", "kind", "unit", "size",
                          "baseline" | "vm" | "graph": null (not run) or
                              {"figure", "error", "seconds": [...], "peak_bytes": [...]?},
                          "ratios": {"vm/baseline", "graph/baseline", "graph/vm"}}},
     "checks": [{"target", "workload", "engine", "versus", "versus_workload",
                 "op", "bound", "status", "measured", "detail"}]}

``versus`` is the column a relative target's bound multiplies (None when the
bound is absolute), ``versus_workload`` the other workload it reads that
column of (None: the target's own workload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TextIO

from bench.measure import Cell
from bench.targets import Verdict
from bench.workloads import Kind, Workload

COLUMNS = ("baseline", "vm", "graph")
RATIOS = (("vm", "baseline"), ("graph", "baseline"), ("graph", "vm"))
ERROR_WIDTH = 30  # characters of an error message shown in a table cell


@dataclass
class Row:
    """One workload's measurements."""

    workload: Workload
    size: int  # the problem size actually run (after --scale)
    cells: dict[str, Cell | None]  # column name -> cell; None when the column was not run

    def figure(self, column: str) -> float | None:
        return self.workload.figure(self.cells.get(column), self.size)

    def ratio(self, numerator: str, denominator: str) -> float | None:
        """Speed of ``numerator`` over speed of ``denominator``; None if either is missing."""
        top = self.workload.speed(self.figure(numerator))
        bottom = self.workload.speed(self.figure(denominator))
        if top is None or not bottom:
            return None
        return top / bottom


def format_figure(value: float, kind: Kind) -> str:
    if kind is Kind.THROUGHPUT:
        return f"{value:,.0f}"
    if kind is Kind.WALL_MS:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(rows: list[Row], header: str, out: TextIO) -> None:
    """Print the results table, then the full text of every error it abbreviates."""
    titles = ["workload", "size", "unit", *COLUMNS, *(f"{a}/{b}" for a, b in RATIOS)]
    errors: list[str] = []
    lines = []
    for row in rows:
        cells = [row.workload.name, f"{row.size:,}", row.workload.unit]
        for column in COLUMNS:
            cell = row.cells.get(column)
            if cell is None:
                cells.append("-")
            elif not cell.ok:
                errors.append(f"[{len(errors) + 1}] {row.workload.name} / {column}: {cell.error}")
                cells.append(f"[{len(errors)}] {_abbreviate(cell.error or 'no sample')}")
            else:
                cells.append(format_figure(row.figure(column), row.workload.kind))
        for numerator, denominator in RATIOS:
            ratio = row.ratio(numerator, denominator)
            cells.append("-" if ratio is None else f"{ratio:.2f}x")
        lines.append(cells)

    widths = [max(len(line[i]) for line in [titles, *lines]) for i in range(len(titles))]
    left_aligned = {0, 2}  # workload and unit read left to right; numbers align right

    def render(line: list[str]) -> str:
        return "  ".join(
            text.ljust(width) if i in left_aligned else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths))
        ).rstrip()

    print(header, file=out)
    print(file=out)
    print(render(titles), file=out)
    print("  ".join("-" * width for width in widths), file=out)
    for line in lines:
        print(render(line), file=out)
    print(file=out)
    print(
        "Figures are medians. Ratios compare speed (higher is faster); for async_io,"
        " baseline ms / engine ms (ideal wall time: 10 ms).",
        file=out,
    )
    if any(row.workload.name.endswith(("_warm", "_100k")) for row in rows):
        print(
            "Realistic shapes: a row without suffix is cold (new tasks: a first sight, run"
            " on the first tier, or built and compiled when it takes the template path);"
            " _warm: the shape run before, new literals; _100k: cold"
            " at about 10x the nodes. Sizes are in the shape's unit (links, pipelines,"
            " layers of 100, tasks, iterations, items); see --help.",
            file=out,
        )
    if errors:
        print(file=out)
        print("Errors:", file=out)
        for line in errors:
            print("  " + line, file=out)


def render_verdicts(verdicts: list[Verdict], out: TextIO) -> list[str]:
    """Print one PASS/FAIL/SKIP line per target; return the workloads below target."""
    for verdict in verdicts:
        print(f"{verdict.status}  {verdict.target.describe()}  ({verdict.detail})", file=out)
    failing = []
    for verdict in verdicts:
        if verdict.status == "FAIL" and verdict.target.workload not in failing:
            failing.append(verdict.target.workload)
    return failing


def to_json(rows: list[Row], verdicts: list[Verdict], meta: dict) -> dict:
    """The JSON document: the same figures as the table, plus the raw samples."""
    workloads = {}
    for row in rows:
        entry = {
            "summary": row.workload.summary,
            "kind": row.workload.kind.value,
            "unit": row.workload.unit,
            "size": row.size,
        }
        for column in COLUMNS:
            entry[column] = _cell_json(row, column)
        entry["ratios"] = {f"{a}/{b}": row.ratio(a, b) for a, b in RATIOS}
        workloads[row.workload.name] = entry
    checks = [
        {
            "target": verdict.target.describe(),
            "workload": verdict.target.workload,
            "engine": verdict.target.engine,
            "versus": verdict.target.versus_column,
            "versus_workload": verdict.target.versus_workload,
            "op": verdict.target.op,
            "bound": verdict.target.bound,
            "status": verdict.status,
            "measured": verdict.measured,
            "detail": verdict.detail,
        }
        for verdict in verdicts
    ]
    return {"meta": meta, "workloads": workloads, "checks": checks}


def write_json(document: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")


def _cell_json(row: Row, column: str) -> dict | None:
    cell = row.cells.get(column)
    if cell is None:
        return None
    entry = {
        "figure": row.figure(column),
        "error": cell.error,
        "seconds": [sample.seconds for sample in cell.samples],
    }
    if row.workload.kind is Kind.PEAK_MB:
        entry["peak_bytes"] = [sample.peak_bytes for sample in cell.samples]
    return entry


def _abbreviate(text: str) -> str:
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 3] + "..."
