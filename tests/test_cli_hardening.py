"""The command line under awkward results and errors (issue 16, classes 13, 14, and a
task's ``SystemExit``).

- ``--json`` on a result JSON cannot hold exactly (NaN, infinities, keys that
  collide once written, nesting deeper than JSON readers read): exit 2, one
  line, no traceback (SPEC section 6).
- A result or an error whose ``__str__`` raises: never an internal traceback;
  the error is shown as ``<unprintable T>``.
- Each error line is printed once.
- ``-p self=1`` for a task target.
- A task calling ``sys.exit(code)``: the run cleans up, then the CLI exits with
  that status and prints nothing (as a Python script would).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import ENGINES, assert_one_line_usage_error, cli, run_main

FLOW = '''
import sys
from cascade_graph import inject, resource, task


@resource(name="cli_hardening_log")
def log():
    yield None
    print("teardown ran", file=sys.stderr, flush=True)


@task
def value(kind: str):
    if kind == "nan":
        return float("nan")
    if kind == "inf":
        return {"a": [1.0, float("-inf")]}
    if kind == "deep":
        x = []
        for _ in range(100_000):
            x = [x]
        return x
    if kind == "just-deep-enough":
        x = 1
        for _ in range(499):
            x = [x]
        return x
    if kind == "collide":
        return {1: "int", "1": "str"}
    if kind == "collide-none":
        return [{None: 1, "null": 2}]
    if kind == "collide-float":
        return {1.5: 1, "1.5": 2}
    if kind == "nan-key":
        return {float("nan"): 1}
    if kind == "fine-keys":
        return {1: "a", 2.5: "b", None: "c", True: "d", "x": "e"}
    if kind == "set":
        return {1, 2}
    return kind


class Unprintable:
    def __str__(self):
        raise ValueError("__str__ is broken")

    __repr__ = __str__


class UnprintableError(Exception):
    def __str__(self):
        raise ValueError("__str__ is broken")


@task
def unprintable_result():
    return Unprintable()


@task
def unprintable_error():
    raise UnprintableError()


@task
def plain_error():
    raise ValueError("plain failure")


@task
def kw(**kwargs):
    return kwargs


@task
def exits(code: str, log=inject("cli_hardening_log")):
    if code == "none":
        sys.exit()
    if code.isdigit():
        sys.exit(int(code))
    sys.exit(code)


main = value("ok")
'''


@pytest.fixture
def flow(tmp_path: Path) -> str:
    path = tmp_path / "hardening_flow.py"
    path.write_text(FLOW)
    return str(path)


# --------------------------------------------------------------------------- --json


@pytest.mark.parametrize("kind, words", [
    ("nan", ["result is nan"]),
    ("inf", ["result['a'][1] is -inf"]),
    ("deep", ["nested more than 500 levels"]),
    ("collide", ["keys 1 and '1'", 'JSON key "1"']),
    ("collide-none", ["result[0]", "None", "'null'"]),
    ("collide-float", ["1.5", "'1.5'"]),
    ("nan-key", ["nan"]),
    ("set", ["not JSON serializable"]),
])
@pytest.mark.parametrize("engine", ENGINES)
def test_json_that_cannot_be_exact_is_one_line_exit_2(capsys, flow, engine, kind, words):
    code, out, err = run_main(capsys, "run", flow, "--target", "value", "-p", f"kind={kind}",
                              "--engine", engine, "--json")
    line = assert_one_line_usage_error(code, err)
    assert out == ""
    assert "cannot be written as JSON" in line and "without --json" in line
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize("kind, expected", [
    ("fine-keys", {"1": "d", "2.5": "b", "null": "c", "x": "e"}),
    ("ok", "ok"),
])
def test_json_that_is_exact_is_printed(capsys, flow, kind, expected):
    code, out, err = run_main(capsys, "run", flow, "--target", "value", "-p", f"kind={kind}",
                              "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == expected


def test_json_nesting_at_the_limit_reads_back(capsys, flow):
    code, out, err = run_main(capsys, "run", flow, "--target", "value", "-p",
                              "kind=just-deep-enough", "--json")
    assert (code, err) == (0, "")
    value = json.loads(out)
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert (depth, value) == (499, 1)


def test_deep_json_in_a_real_process(flow):
    proc = cli("run", flow, "--target", "value", "-p", "kind=deep", "--json")
    line = assert_one_line_usage_error(proc.returncode, proc.stderr)
    assert "nested more than" in line


# --------------------------------------------------------------------------- unprintable


@pytest.mark.parametrize("engine", ENGINES)
def test_unprintable_result_is_one_line(capsys, flow, engine):
    code, out, err = run_main(capsys, "run", flow, "--target", "unprintable_result",
                              "--engine", engine)
    line = assert_one_line_usage_error(code, err)
    assert "cannot be printed" in line and "ValueError: __str__ is broken" in line
    assert out == ""


@pytest.mark.parametrize("engine", ENGINES)
def test_unprintable_error_has_no_internal_traceback(capsys, flow, engine):
    code, out, err = run_main(capsys, "run", flow, "--target", "unprintable_error",
                              "--engine", engine)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == ("error: task 'unprintable_error' failed: "
                        "UnprintableError: <unprintable UnprintableError>")
    assert "cascade_vm" not in err and "cascade_graph" not in err  # only the user's frames
    assert "__str__ is broken" not in err  # the broken __str__'s own error is not shown
    assert out == ""


def test_unprintable_error_in_a_real_process(flow):
    proc = cli("run", flow, "--target", "unprintable_error")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: task 'unprintable_error' failed: UnprintableError: ")
    assert "cli.py" not in proc.stderr


@pytest.mark.parametrize("target", ["plain_error", "unprintable_error"])
def test_each_error_line_is_printed_once(capsys, flow, target):
    code, _, err = run_main(capsys, "run", flow, "--target", target)
    assert code == 1
    first = err.splitlines()[0]
    assert err.count(first) == 1
    assert err.count("cascade: raised by task") == 1


# --------------------------------------------------------------------------- -p self=


@pytest.mark.parametrize("engine", ENGINES)
def test_p_self_for_a_task_target(capsys, flow, engine):
    code, out, err = run_main(capsys, "run", flow, "--target", "kw", "-p", "self=1",
                              "-p", "other=2", "--engine", engine, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"self": "1", "other": "2"}


# --------------------------------------------------------------------------- sys.exit


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("code, status, message", [
    ("0", 0, ""), ("none", 0, ""), ("3", 3, ""), ("bye", 1, "bye\n"),
])
def test_task_calling_sys_exit(flow, engine, code, status, message):
    """Teardown runs, then the process exits with the status sys.exit gives, printing
    nothing else (a string code is printed, as Python prints it)."""
    proc = cli("run", flow, "--target", "exits", "-p", f"code={code}", "--engine", engine)
    assert proc.returncode == status, proc.stderr
    assert proc.stderr == "teardown ran\n" + message
    assert proc.stdout == ""
