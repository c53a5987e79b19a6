"""Smoke tests of the benchmark package (``python -m bench``) at tiny sizes.

These check that every workload runs on both engines, produces verified
values and lands in the JSON; that the realistic shapes compute what their
formulas say; that targets (absolute, against a column, against another
workload) judge figures as documented; and that the phase split runs.
They never assert on speed.
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from bench import phases, realistic, shapes
from bench.__main__ import main
from bench.measure import Cell, Column, Sample, sample_interleaved
from bench.report import Row
from bench.targets import TARGETS, Target, evaluate
from bench.workloads import BY_NAME, WORKLOADS
from cascade_vm import run


def run_bench(tmp_path, *argv):
    """Run ``python -m bench --quick ... --json`` in-process; return (exit code, JSON document)."""
    path = tmp_path / "bench.json"
    code = main(["--quick", *argv, "--json", str(path)])
    return code, json.loads(path.read_text())


def test_quick_run_covers_every_workload_on_both_engines(tmp_path, capsys):
    """A quick run measures every workload for the baseline and both engines, without errors."""
    code, document = run_bench(tmp_path)
    assert code == 0
    assert set(document["workloads"]) == {workload.name for workload in WORKLOADS}
    for name, entry in document["workloads"].items():
        for column in ("baseline", "vm", "graph"):
            cell = entry[column]
            assert cell is not None, (name, column)
            assert cell["error"] is None, (name, column, cell["error"])
            assert cell["figure"] is not None, (name, column)
    assert "countdown" in capsys.readouterr().out


def test_only_and_engine_select_what_runs(tmp_path, capsys):
    """--only limits the workloads, --engine the engines; unmeasured targets are skipped."""
    code, document = run_bench(tmp_path, "--only", "countdown,chain", "--engine", "vm")
    assert code == 0
    assert set(document["workloads"]) == {"countdown", "chain"}
    assert document["workloads"]["chain"]["graph"] is None
    statuses = {(c["workload"], c["engine"]): c["status"] for c in document["checks"]}
    assert statuses[("heavy_loop", "vm")] == "SKIP"
    assert statuses[("countdown", "graph")] == "SKIP"


def test_unknown_workload_is_a_usage_error(capsys):
    """--only with a name that is not a workload exits 2 and lists the known names."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "no_such_workload"])
    assert exit_info.value.code == 2
    assert "countdown" in capsys.readouterr().err


def test_wrong_value_becomes_a_cell_error():
    """A column returning the wrong value gets an error instead of a figure."""
    cells = sample_interleaved(
        {"right": Column(lambda: Sample(0.001, "done"), "done", 2),
         "wrong": Column(lambda: Sample(0.001, "oops"), "done", 2)},
        budget=10.0,
        timeout=None,
    )
    assert cells["right"].ok and len(cells["right"].samples) == 2
    assert not cells["wrong"].ok
    assert cells["wrong"].error.startswith("ValueError: wrong result")


def test_interleaved_columns_take_turns_up_to_their_own_repeats():
    """Columns of several workloads are sampled in one rotation, each up to its repeats."""
    ran = []

    def column(name, value):
        def run_once():
            ran.append(name)
            return Sample(0.001, value)
        return run_once

    cells = sample_interleaved({
        "a": Column(column("a", 1), 1, 3),
        "b": Column(column("b", 2), 2, 1),
        "c": Column(column("c", 3), 3, 2),
    }, budget=10.0, timeout=None)
    assert ran == ["a", "b", "c", "a", "c", "a"]
    assert [len(cells[k].samples) for k in "abc"] == [3, 1, 2]


def test_workloads_a_target_compares_are_sampled_together():
    from bench.__main__ import comparison_groups
    from bench.workloads import WORKLOADS

    groups = {w.name: [x.name for x in g] for g in comparison_groups(list(WORKLOADS))
              for w in g}
    assert groups["kw_chain"] == groups["chain"] == groups["dag_100k"]
    assert "chain_warm" not in groups["chain"] and "kw_chain_warm" in groups["chain_warm"]
    assert groups["policy_map"] == ["plain_map", "policy_map"]
    assert groups["countdown"] == ["countdown"]
    names = [w.name for w in WORKLOADS]
    for group in groups.values():  # in table order
        assert group == sorted(group, key=names.index)


# --- the realistic shapes, their targets and the phase split -----------------------------

@pytest.mark.parametrize("shape", shapes.SHAPES, ids=lambda s: s.name)
def test_shape_baseline_gives_the_formula(shape):
    """Each shape's raw-Python twin computes the value its formula states, for new literals
    too (so a check against the formula is a check against the same calls by hand)."""
    for size in (1, 2, 5, 23):
        for off in (0, 7):
            assert shape.baseline(size, off) == shape.value(size, off), (size, off)


@pytest.mark.parametrize("engine", ["vm", "graph"])
@pytest.mark.parametrize("shape", shapes.SHAPES, ids=lambda s: s.name)
def test_shape_runs_cold_and_warm_on_the_engine(shape, engine):
    """Built from fresh tasks (cold) and again from the same tasks with new literals
    (warm), each shape gives its formula's value on both engines."""
    tasks = shape.tasks()
    for off in (0, 3):
        assert run(shape.build(tasks, 12, off), engine=engine) == shape.value(12, off)


def test_warm_runner_checks_the_value_for_its_literals():
    """A warm run is checked against the value for its own literals: a shape whose
    formula is wrong for new literals is a wrong result, not a figure."""
    chain = shapes.BY_NAME["chain"]
    assert realistic.warm(chain).engine(10, "vm", {}).value == 10
    broken = dataclasses.replace(chain, value=lambda n, off: n)  # ignores off
    with pytest.raises(ValueError, match="wrong result"):
        realistic.warm(broken).engine(10, "vm", {})


def _row(name, **figures):
    """A measured row of workload ``name`` whose columns take ``seconds`` or peak bytes."""
    workload = BY_NAME[name]
    cells = {}
    for column, value in figures.items():
        cell = Cell()
        cell.samples.append(Sample(value, None, peak_bytes=int(value * 1e6)))
        cells[column] = cell
    return Row(workload, workload.size, cells)


def test_target_versus_another_workload_compares_per_node_speed():
    """A cross-workload target compares nodes/s on the same engine: kw_chain taking 1.4x
    chain's time per node passes 1/1.5; taking 2x fails; a missing row is a SKIP."""
    target = Target("kw_chain", "vm", ">=", 1 / 1.5, versus_workload="chain")
    results = {"chain": _row("chain", vm=1.0), "kw_chain": _row("kw_chain", vm=1.4)}
    verdict = evaluate(target, results)
    assert verdict.status == "PASS" and verdict.measured == pytest.approx(1 / 1.4)
    results["kw_chain"] = _row("kw_chain", vm=2.0)
    assert evaluate(target, results).status == "FAIL"
    assert evaluate(target, {"kw_chain": results["kw_chain"]}).status == "SKIP"
    assert target.describe() == "kw_chain: vm >= 0.667 x chain (vm)"


def test_scaling_target_reads_throughput_per_node():
    """chain_100k doing ten times the nodes in ten times the time scales perfectly."""
    target = Target("chain_100k", "graph", ">=", 1 / 1.3, versus_workload="chain")
    results = {"chain": _row("chain", graph=0.1), "chain_100k": _row("chain_100k", graph=1.0)}
    assert evaluate(target, results).measured == pytest.approx(1.0)


def test_memory_target_versus_another_workload_compares_peaks():
    """Between two peak-memory rows the ratio is of the peaks: 1.4x passes <= 1.5x."""
    target = Target("policy_map_memory", "graph", "<=", 1.5,
                    versus_workload="plain_map_memory")
    results = {"plain_map_memory": _row("plain_map_memory", graph=10.0),
               "policy_map_memory": _row("policy_map_memory", graph=14.0)}
    verdict = evaluate(target, results)
    assert verdict.status == "PASS" and verdict.measured == pytest.approx(1.4)
    results["policy_map_memory"] = _row("policy_map_memory", graph=16.0)
    assert evaluate(target, results).status == "FAIL"


def test_failed_reference_row_fails_the_target():
    """When the other workload's cell has an error, the target fails naming it."""
    target = Target("dag", "vm", ">=", 1 / 1.5, versus_workload="chain")
    broken = Cell(error="ValueError: wrong result")
    results = {"chain": Row(BY_NAME["chain"], 10, {"vm": broken}), "dag": _row("dag", vm=1.0)}
    verdict = evaluate(target, results)
    assert verdict.status == "FAIL" and "chain vm has no figure" in verdict.detail


def test_every_realistic_row_has_its_targets():
    """Issue 13's targets exist for both engines: realistic shapes against chain (cold
    and warm), async fan-out against gather, the policy map, its memory, scaling."""
    pairs = {(t.workload, t.engine, t.versus_workload or t.versus) for t in TARGETS}
    for engine in ("vm", "graph"):
        for name in ("alternating", "kw_chain", "pipelines", "dag", "dag_loop"):
            assert (name, engine, "chain") in pairs
            assert (f"{name}_warm", engine, "chain_warm") in pairs
        assert ("async_fanout", engine, "baseline") in pairs
        assert ("async_fanout_warm", engine, "baseline") in pairs
        assert ("policy_map", engine, "plain_map") in pairs
        assert ("policy_map_memory", engine, "plain_map_memory") in pairs
        for name in realistic.SCALED:
            assert (f"{name}_100k", engine, name) in pairs
    for target in TARGETS:  # every target names workloads that exist
        assert target.workload in BY_NAME
        assert target.versus_workload is None or target.versus_workload in BY_NAME


def test_check_json_carries_cross_workload_verdicts(tmp_path, capsys):
    """--check on a few rows: the JSON has the cross-workload checks with their reference."""
    code, document = run_bench(tmp_path, "--only", "chain,kw_chain", "--engine", "graph",
                               "--check")
    assert code in (0, 1)  # quick sizes: no speed means anything
    checks = {(c["workload"], c["engine"]): c for c in document["checks"]}
    check = checks[("kw_chain", "graph")]
    assert check["versus_workload"] == "chain" and check["versus"] == "graph"
    assert check["status"] in ("PASS", "FAIL") and check["measured"] > 0
    assert checks[("kw_chain", "vm")]["status"] == "SKIP"
    assert "kw_chain: graph >= 0.667 x chain (graph)" in capsys.readouterr().out


def test_phases_prints_every_phase_for_both_engines():
    """python -m bench.phases: four phases per engine, and a profile when asked."""
    out = io.StringIO()
    assert phases.main(["kw_chain", "--n", "40", "--repeats", "1", "--profile"], out=out) == 0
    text = out.getvalue()
    for engine in ("vm", "graph"):
        assert f"kw_chain, size 40 links (40 nodes), engine {engine}" in text
    for phase in (*phases.PHASES, "one piece", "by own time"):
        assert phase in text


@pytest.mark.parametrize("name", ["dag", "dag_loop", "policy_map"])
def test_phases_profiled_split_finds_the_named_functions(name):
    """The profiled split finds the engines' template and compile functions, or the
    first tier's walk for a cold DAG (which compiles nothing): a renamed internal
    shows up here as a zero. The whole run is charged somewhere."""
    shape = shapes.BY_NAME[name]
    split = phases.profiled_split(phases.profile_once(shape, 6, "vm"))
    assert split["template"] > 0 and split["execute"] > 0
    assert (split["compile"] == 0) == (name == "dag")
    assert split["creation"] > 0
