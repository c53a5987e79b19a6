"""``run FLOW.py --help`` lists the target's parameters (SPEC section 6), and an error
line is printed once when no frame of the user's code is left to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cascade_vm.cli import main

ROOT = Path(__file__).resolve().parents[1]
TARGETS = "tests/flows/targets.py"


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> dict[str, list[str]]:
    """The parameter rows of a help text: name -> [type, default, help...]."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("parameters of "))
    assert lines[start + 1].split() == ["NAME", "TYPE", "DEFAULT", "HELP"]
    rows = {}
    for line in lines[start + 2:]:
        cells = line.split(None, 3)
        rows[cells[0]] = cells[1:]
    return rows


def test_help_lists_the_params_of_a_lazy_target(capsys):
    code, out, err = run_main(capsys, "run", TARGETS, "--target", "with_params", "--help")
    assert code == 0 and err == ""
    assert "--engine" in out  # the command's own options come first
    assert "parameters of 'with_params' in tests/flows/targets.py" in out
    assert table(out) == {"a": ["int", "required", "required"], "b": ["int", "10"]}


def test_help_lists_a_task_targets_arguments_with_annotations_and_defaults(capsys):
    code, out, _ = run_main(capsys, "run", TARGETS, "--target", "greet", "--help")
    assert code == 0
    assert table(out) == {
        "name": ["str", "required"],
        "times": ["int", "required"],
        "excited": ["bool", "False"],
        "scale": ["float", "1.0"],
    }


def test_help_leaves_out_injected_resources_and_var_arguments(capsys):
    code, out, _ = run_main(capsys, "run", TARGETS, "--target", "say", "--help")
    assert code == 0 and table(out) == {"name": ["str", "required"]}
    code, out, _ = run_main(capsys, "run", TARGETS, "--target", "collect", "--help")
    assert code == 0 and table(out) == {"first": ["int", "required"]}
    code, out, _ = run_main(capsys, "run", TARGETS, "--target", "add", "--help")
    assert code == 0 and table(out) == {"a": ["str", "required"], "b": ["str", "required"]}


def test_help_with_no_parameters_says_so(capsys):
    code, out, _ = run_main(capsys, "run", TARGETS, "--help")  # main = add(1, 2)
    assert code == 0
    assert "the target 'main' of tests/flows/targets.py takes no parameters" in out


def test_help_lists_a_param_met_only_in_a_tail_call(capsys):
    code, out, _ = run_main(capsys, "run", "tests/flows/tail_param.py", "--help")
    assert code == 0 and table(out) == {"limit": ["int", "3"]}


def test_help_shows_the_help_text_of_params(capsys):
    code, out, _ = run_main(capsys, "run", "examples/countdown_agent.py", "--help")
    assert code == 0
    assert table(out) == {"steps": ["int", "3", "how many thoughts the agent may have"]}


def test_help_without_a_flow_is_the_commands_help(capsys):
    code, out, _ = run_main(capsys, "run", "--help")
    assert code == 0 and "--engine" in out and "NAME  TYPE" not in out
    code, out, _ = run_main(capsys, "dis", "-h")
    assert code == 0 and "--target" in out


@pytest.mark.parametrize("args, words", [
    (["run", "tests/flows/nope.py", "--help"], "no such file"),
    (["run", TARGETS, "--target", "nothing", "--help"], "no target 'nothing'"),
])
def test_help_for_a_bad_flow_or_target_exits_2(capsys, args, words):
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and words in err


def test_run_without_a_flow_is_a_usage_error(capsys):
    code, out, err = run_main(capsys, "run")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: run: missing FLOW.py, the Python file defining the workflow "
        "(see 'python -m cascade_vm run --help')"]


def test_help_in_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "cascade_vm", "run", "examples/countdown_agent.py", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "steps" in proc.stdout and "how many thoughts" in proc.stdout


# --------------------------------------------------------------------------- one error line


@pytest.mark.parametrize("engine", ["vm", "graph"])
@pytest.mark.parametrize("flow, target", [
    ("tests/flows/router_error.py", "main"),
    ("tests/flows/runtime_errors.py", "map_lengths"),
])
def test_an_error_with_no_user_frames_is_printed_once(capsys, engine, flow, target):
    code, out, err = run_main(capsys, "run", flow, "--target", target, "--engine", engine)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: task '")


@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_an_error_with_user_frames_keeps_its_traceback(capsys, engine):
    code, _, err = run_main(capsys, "run", "tests/flows/failing.py", "--engine", engine)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == "error: task 'divide' failed: ZeroDivisionError: division by zero"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines.count("ZeroDivisionError: division by zero") == 1
