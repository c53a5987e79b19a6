"""The CLI's ``--trace``, ``--report``, ``-v``/``-q`` on both engines (``--progress``: see
test_progress.py). Nothing but the result is ever written to stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cascade_vm.cli import main
from tests.helpers import per_engine

from .test_report import assert_self_contained, page_data
from .trace_format import check_trace

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(ROOT / "tests" / "flows" / "observed.py")


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@per_engine
def test_trace_and_report_from_the_cli(capsys, tmp_path, engine):
    """--trace and --report write their files; stdout holds the result alone."""
    trace, report = tmp_path / "t.json", tmp_path / "r.html"
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, "--trace", trace,
                              "--report", report)
    assert code == 0, err
    assert out == "[47, None]\n"
    by_phase = check_trace(json.loads(trace.read_text()))
    names = {s["name"] for s in by_phase["X"] if s["cat"] == "task"}
    assert {"fetch", "flaky", "square", "countdown", "pick", "finish"} <= names
    assert {"retry", "cache hit", "skipped"} <= {i["cat"] for i in by_phase["i"]}
    assert [s for s in by_phase["X"] if s["cat"] == "resource"]
    html = report.read_text(encoding="utf-8")
    assert_self_contained(html)
    rows = {row["task"]: row for row in page_data(html)["tasks"]}
    assert rows["flaky"]["retries"] == 1 and rows["flaky"]["failures"] == 1
    assert rows["square"]["cache_hits"] == 1 and rows["never"]["skipped"] == 1
    assert rows["countdown"]["tail_calls"] == 20


@per_engine
def test_the_report_is_written_when_the_run_fails(capsys, tmp_path, engine):
    """Exit 1, the usual error on stderr, and a report holding the traceback."""
    report = tmp_path / "r.html"
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, "-p", "fail=true",
                              "--report", report)
    assert code == 1 and out == ""
    assert "error: task 'finish' failed: ValueError: finish refused 11 parts" in err
    data = page_data(report.read_text(encoding="utf-8"))
    assert data["ok"] is False
    assert data["failure"]["task"] == "finish"
    assert "finish refused 11 parts" in data["failure"]["text"]
    assert any(f["name"] == "finish" and not f["engine"] for f in data["failure"]["frames"])


@per_engine
def test_very_verbose_logs_one_line_per_call(capsys, engine):
    """-v -v: a DEBUG line per task call on stderr, run lines at INFO; stdout untouched."""
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, "-v", "-v")
    assert code == 0 and out == "[47, None]\n"
    calls = [line for line in err.splitlines() if re.match(r"DEBUG cascade\.task: call \d+ ", line)]
    # 8 fetches, 2 flaky attempts, 1 square, 21 countdowns, pick, finish
    assert len(calls) == 34
    assert any("countdown finished in" in line and "tail call to countdown" in line
               for line in calls)
    assert "DEBUG cascade.task: square: cache hit" in err
    assert "DEBUG cascade.task: never skipped (condition)" in err
    assert "DEBUG cascade.resource: resource 'ledger' (run scope) set up" in err
    assert re.search(r"INFO cascade\.run: run \d+ finished in .* \(34 calls\)", err)


@per_engine
def test_verbose_warns_about_failures_and_retries(capsys, engine):
    """-v: failures and retries at WARNING (with their call numbers), the run at INFO."""
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, "-v")
    assert code == 0 and out == "[47, None]\n"
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert re.fullmatch(r"WARNING cascade\.task: task 'flaky' \(call \d+\) failed: "
                        r"ConnectionError: first attempt fails", warnings[0])
    assert re.fullmatch(r"WARNING cascade\.task: task 'flaky' \(call \d+\) will be retried "
                        r"in 0 s \(attempt 2 of 2\)", warnings[1])
    assert "DEBUG" not in err and "INFO cascade.run" in err


@per_engine
@pytest.mark.parametrize("flags", [(), ("-q",)])
def test_default_and_quiet_print_errors_only(capsys, engine, flags):
    """Without -v (or with -q): a run's stderr is empty; a failure is the exit-1 report alone."""
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, *flags)
    assert code == 0 and out == "[47, None]\n" and err == ""
    code, out, err = run_main(capsys, "run", FLOW, "--engine", engine, "-p", "fail=true", *flags)
    assert code == 1 and err.startswith("error: task 'finish' failed")
    assert "WARNING" not in err


def test_resource_errors_are_warnings(capsys, tmp_path):
    """-v: a teardown that raises is logged at WARNING on cascade.resource."""
    flow = tmp_path / "broken_teardown.py"
    flow.write_text(
        "from cascade_graph import inject, resource, task\n"
        "@resource(name='observed_broken')\n"
        "def broken():\n    yield 1\n    raise OSError('disk gone')\n"
        "@task\ndef use(r=inject('observed_broken')):\n    return r\n"
        "main = use()\n"
    )
    code, out, err = run_main(capsys, "run", flow, "-v")
    assert code == 1 and out == ""
    assert ("WARNING cascade.resource: resource 'observed_broken' (run scope) failed to tear "
            "down: OSError: disk gone") in err


def test_verbose_and_quiet_exclude_each_other(capsys):
    code, out, err = run_main(capsys, "run", FLOW, "-v", "-q")
    assert code == 2 and out == "" and len(err.splitlines()) == 1


@pytest.mark.parametrize("flag", ["--trace", "--report"])
def test_an_output_in_a_missing_folder_is_bad_usage(capsys, tmp_path, flag):
    """A file in a folder that does not exist: exit 2, one line, nothing run."""
    code, out, err = run_main(capsys, "run", FLOW, flag, tmp_path / "nope" / "out")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: cannot write {flag}") and "no such folder" in line
