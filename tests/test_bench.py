"""Smoke tests of the benchmark package (``python -m bench``) at tiny sizes.

These check that every workload runs on both engines, produces verified
values and lands in the JSON. They never assert on speed.
"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.measure import Sample, sample_columns
from bench.workloads import WORKLOADS


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
    cells = sample_columns(
        {"right": lambda: Sample(0.001, "done"), "wrong": lambda: Sample(0.001, "oops")},
        "done",
        repeats=2,
        budget=10.0,
        timeout=None,
    )
    assert cells["right"].ok and len(cells["right"].samples) == 2
    assert not cells["wrong"].ok
    assert cells["wrong"].error.startswith("ValueError: wrong result")
