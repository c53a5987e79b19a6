"""Command line: ``python -m bench [--only NAMES] [--engine vm|graph] [--repeats N]
[--scale F | --quick] [--json PATH] [--check] ...``; see ``--help``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial

import uvloop

from bench.measure import Column, sample_interleaved
from bench.report import Row, render_table, render_verdicts, to_json, write_json
from bench.targets import TARGETS, evaluate_all
from bench.workloads import BY_NAME, GROUPS, WORKLOADS, close_clusters

ENGINES = ("vm", "graph")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure both Cascade engines against plain-Python baselines.",
        epilog="workloads: " + "; ".join(f"{w.name} ({w.summary})" for w in WORKLOADS),
    )
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        type=_workload_names,
        help="run only these workloads (default: all); group names: 'realistic' (the "
        "realistic shapes, cold and warm, with chain and chain_warm, and the map memory "
        "rows), 'scaling' (the _100k rows and the rows they are compared with)",
    )
    parser.add_argument("--engine", choices=ENGINES, help="measure only this engine")
    parser.add_argument(
        "--repeats", type=_positive_int, default=5, help="samples per cell (default: 5)"
    )
    parser.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        help="multiply every problem size (default: 1; targets hold at 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: --scale 0.01 --repeats 1",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the targets; exit 1 naming every workload below target",
    )
    parser.add_argument(
        "--budget",
        type=_positive_float,
        default=10.0,
        help="seconds per cell after which no more samples are taken (default: 10)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        help="seconds one run may take before it is stopped as an error (default: 120)",
    )
    parser.add_argument(
        "--no-tail-cache", action="store_true", help="run the engines with tail_cache=False"
    )
    parser.add_argument(
        "--no-hot-path", action="store_true", help="run the engines with hot_path=False"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.repeats = 0.01, 1
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        close_clusters()  # the distributed workloads' cluster, if one started


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    selected = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    engines = [args.engine] if args.engine else list(ENGINES)
    options = {}
    if args.no_tail_cache:
        options["tail_cache"] = False
    if args.no_hot_path:
        options["hot_path"] = False

    by_name = {}
    for group in comparison_groups(selected):
        names = ", ".join(w.name for w in group)
        print(f"bench: {names} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        columns = {}
        sizes = {w.name: w.sized(args.scale) for w in group}
        for workload in group:
            size = sizes[workload.name]
            expected = workload.expected(size)
            repeats = workload.repeats or args.repeats
            columns[workload.name, "baseline"] = Column(
                partial(workload.baseline, size), expected, repeats)
            for engine in engines:
                columns[workload.name, engine] = Column(
                    partial(workload.engine, size, engine, options), expected, repeats)
        cells = sample_interleaved(columns, budget=args.budget, timeout=args.timeout)
        for workload in group:
            by_name[workload.name] = Row(workload, sizes[workload.name], {
                name: cells.get((workload.name, name)) for name in ("baseline", *ENGINES)})
        print(f"bench: {names} done in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    rows = [by_name[w.name] for w in selected]

    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "uvloop": uvloop.__version__,
        "repeats": args.repeats,
        "scale": args.scale,
        "engines": engines,
        "options": options,
        "statistic": "median",
    }
    header = (
        f"Cascade benchmarks: medians of up to {args.repeats} runs, scale {args.scale:g}"
        f" | Python {meta['python']} | uvloop {meta['uvloop']} | {meta['cpus']} CPUs"
    )
    if options:
        header += " | " + ", ".join(f"{key}={value}" for key, value in options.items())
    print()
    render_table(rows, header, sys.stdout)

    results = {row.workload.name: row for row in rows}
    verdicts = evaluate_all(results)
    if args.json:
        write_json(to_json(rows, verdicts, meta), args.json)
    if not args.check:
        return 0
    print()
    if args.scale != 1.0:
        print(f"note: targets are set for --scale 1; this run used --scale {args.scale:g}")
    failing = render_verdicts(verdicts, sys.stdout)
    if failing:
        print(f"below target: {', '.join(failing)}")
        return 1
    print("all measured targets met")
    return 0


def comparison_groups(selected: list) -> list[list]:
    """``selected`` in groups sampled in one rotation: two workloads that a target
    compares (``versus_workload``) are in one group, and so, in turn, is every
    workload linked to them; groups in table order, each in table order."""
    group_of = {w.name: [w] for w in selected}
    for target in TARGETS:
        a, b = group_of.get(target.workload), group_of.get(target.versus_workload)
        if a is None or b is None or a is b:
            continue
        a += b
        for w in b:
            group_of[w.name] = a
    order = {w.name: k for k, w in enumerate(selected)}
    groups = {id(g): g for g in group_of.values()}.values()
    return sorted((sorted(g, key=lambda w: order[w.name]) for g in groups),
                  key=lambda g: order[g[0].name])


def _workload_names(text: str) -> list[str]:
    names = []
    for name in (name.strip() for name in text.split(",")):
        names += GROUPS.get(name, (name,) if name else ())
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(unknown) or repr(text)}; choose from "
            f"{', '.join(BY_NAME)} or a group: {', '.join(GROUPS)}"
        )
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
