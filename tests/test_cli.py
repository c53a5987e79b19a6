"""The command line (SPEC section 6): commands, parameters, output and exit codes.

Most tests call ``cascade_vm.cli.main`` in-process (fast, with ``capsys``);
the ones about the real process (``python -m cascade_vm``, the examples as
``make run`` runs them, Ctrl-C) run it in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade_vm.cli import main

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "tests" / "flows"
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
ENGINES = ("vm", "graph")


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m cascade_vm ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "cascade_vm", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``main(args)`` in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def flow(name: str) -> str:
    return str(FLOWS / name)


def assert_one_line_usage_error(code: int, err: str) -> str:
    """Exit 2 with exactly one line on stderr and no traceback; return the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_the_same_on_both_engines(example):
    """Every example exits 0 with the same, non-empty output on the VM and the graph executor."""
    results = {engine: cli("run", str(example), "--engine", engine) for engine in ENGINES}
    for engine, proc in results.items():
        assert proc.returncode == 0, f"{engine}: {proc.stderr}"
        assert proc.stdout.strip(), engine
        assert proc.stderr == "", engine
    assert results["vm"].stdout == results["graph"].stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("engine", ENGINES)
def test_example_json_output_is_json(capsys, example, engine):
    """``--json`` prints one JSON document for every example."""
    code, out, err = run_main(capsys, "run", example, "--engine", engine, "--json")
    assert code == 0, err
    json.loads(out)


def test_example_has_docstring_and_main():
    """Every example says how to run it and defines ``main``."""
    for example in EXAMPLES:
        text = example.read_text()
        assert text.startswith('"""'), example
        assert "python -m cascade_vm run examples/" in text, example
        assert "\nmain = " in text, example


def test_make_run_command():
    """``make run``'s command works and reports the agent's five steps."""
    proc = cli("run", "examples/countdown_agent.py", "-p", "steps=5")
    assert proc.returncode == 0, proc.stderr
    assert "Thought for 5 steps" in proc.stdout
    assert proc.stdout.count(" -> ") == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_countdown_agent_long_budget_is_a_flat_loop(capsys, engine):
    """The agent's tail-call loop takes a big budget (it stops when its plan is done)."""
    code, out, err = run_main(
        capsys, "run", ROOT / "examples/countdown_agent.py", "-p", "steps=100000",
        "--engine", engine
    )
    assert code == 0, err
    assert "Nothing left open" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_mutual_recursion_deep_parity(capsys, engine):
    """20,001 hops of is_even/is_odd ping-pong (far past the recursion limit) run fine."""
    code, out, err = run_main(
        capsys, "run", ROOT / "examples/mutual_recursion.py", "-p", "n=20001", "--engine", engine,
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["parity"] == "odd"


def test_mutual_recursion_collatz_answer(capsys):
    """27 takes 111 Collatz steps and peaks at 9232."""
    code, out, err = run_main(capsys, "run", ROOT / "examples/mutual_recursion.py", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "n": 27,
        "parity": "odd",
        "collatz": {"steps": 111, "peak": 9232},
    }


def test_word_count_top_param(capsys):
    """``-p top=2`` limits the word count's ranking to two words."""
    code, out, err = run_main(capsys, "run", ROOT / "examples/word_count.py", "-p", "top=2",
                              "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["top"] == [["water", 6], ["river", 5]]
    assert result["summary"]["paragraphs"] == 4


# --------------------------------------------------------------------------- run: output


@pytest.mark.parametrize("engine", ENGINES)
def test_run_prints_result(capsys, engine):
    """The result is printed with print()."""
    assert run_main(capsys, "run", flow("targets.py"), "--engine", engine) == (0, "3\n", "")


def test_run_json(capsys):
    """``--json`` prints the result as JSON."""
    code, out, _ = run_main(capsys, "run", flow("targets.py"), "--target", "pair", "--json")
    assert code == 0
    assert json.loads(out) == [3, {"x": 7}]


def test_run_container_target(capsys):
    """A container of lazies is a target; its value keeps the container's shape."""
    code, out, _ = run_main(capsys, "run", flow("targets.py"), "--target", "pair")
    assert (code, out) == (0, "[3, {'x': 7}]\n")


def test_run_json_not_serialisable(capsys):
    """A result JSON cannot encode exits 2 with one line suggesting to drop --json."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "unencodable", "--json")
    line = assert_one_line_usage_error(code, err)
    assert "without --json" in line


def test_run_default_engine_is_vm(capsys, monkeypatch):
    """Without ``--engine`` the CLI asks for the VM."""
    import cascade_vm

    seen = {}

    def fake_run(target, engine="vm", params=None, **_):
        seen["engine"] = engine
        return "ok"

    monkeypatch.setattr(cascade_vm, "run", fake_run)
    assert run_main(capsys, "run", flow("targets.py")) == (0, "ok\n", "")
    assert seen["engine"] == "vm"


def test_flow_imports_sibling_module(capsys):
    """A flow can import a module from its own folder."""
    assert run_main(capsys, "run", flow("sibling.py")) == (0, "42\n", "")


def test_flow_defining_dataclass(capsys):
    """A flow can define dataclasses (its module is in sys.modules while it runs)."""
    assert run_main(capsys, "run", flow("dataclass_flow.py")) == (0, "Point(x=1, y=2)\n", "")


def test_main_restores_sys_path(capsys):
    """The flow's folder is on sys.path only while main() runs."""
    before = list(sys.path)
    run_main(capsys, "run", flow("sibling.py"))
    assert sys.path == before


def test_flow_run_from_another_directory(tmp_path):
    """The FLOW path is taken relative to the current directory, like any file argument."""
    proc = subprocess.run(
        [sys.executable, "-m", "cascade_vm", "run",
         os.path.relpath(FLOWS / "sibling.py", tmp_path)],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (proc.returncode, proc.stdout) == (0, "42\n"), proc.stderr


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("engine", ENGINES)
def test_task_target_converts_by_annotation(capsys, engine):
    """A task target's parameters come from -p, converted by annotation (str, int, bool, float)."""
    code, out, err = run_main(
        capsys, "run", flow("targets.py"), "--target", "greet", "--engine", engine, "--json",
        "-p", "name=bob", "-p", "times=3", "-p", "excited=yes", "-p", "scale=2.5",
    )
    assert code == 0, err
    assert json.loads(out) == ["bob", 3, True, 2.5]


def test_task_target_defaults_apply(capsys):
    """Parameters with defaults may be left out."""
    code, out, _ = run_main(
        capsys, "run", flow("targets.py"), "--target", "greet", "-p", "name=al", "-p", "times=1",
        "--json",
    )
    assert (code, json.loads(out)) == (0, ["al", 1, False, 1.0])


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("yes", True), ("No", False)],
)
def test_task_target_bool_words(capsys, text, expected):
    """bool parameters accept true/false/1/0/yes/no in any case."""
    code, out, _ = run_main(
        capsys, "run", flow("targets.py"), "--target", "greet", "--json",
        "-p", "name=x", "-p", "times=0", "-p", f"excited={text}",
    )
    assert (code, json.loads(out)[2]) == (0, expected)


def test_task_target_positional_only(capsys):
    """Positional-only parameters are passed positionally."""
    code, out, _ = run_main(capsys, "run", flow("targets.py"), "--target", "only_positional",
                            "-p", "x=4")
    assert (code, out) == (0, "42\n")


def test_task_target_missing_parameter(capsys):
    """A missing required task parameter exits 2 naming it."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "greet", "-p", "name=x")
    line = assert_one_line_usage_error(code, err)
    assert "'times'" in line and "-p times=" in line


@pytest.mark.parametrize("pair", ["times=three", "excited=maybe", "scale=big"])
def test_task_target_bad_value(capsys, pair):
    """A value its annotation rejects exits 2 naming the parameter."""
    code, _, err = run_main(
        capsys, "run", flow("targets.py"), "--target", "greet", "-p", "name=x", "-p", "times=1",
        "-p", pair,
    )
    line = assert_one_line_usage_error(code, err)
    assert repr(pair.split("=")[0]) in line


@pytest.mark.parametrize("engine", ENGINES)
def test_task_target_with_injected_resource(capsys, engine):
    """An ``inject(...)`` parameter of a task target is left to the engine."""
    code, out, err = run_main(capsys, "run", flow("targets.py"), "--target", "say",
                              "-p", "name=bo", "--engine", engine)
    assert (code, out) == (0, "hello bo\n"), err


def test_task_target_injected_parameter_is_not_a_p_name(capsys):
    """-p cannot name an injected parameter."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "say",
                            "-p", "name=bo", "-p", "word=hi")
    line = assert_one_line_usage_error(code, err)
    assert line == "error: no parameter named 'word'; known: name"


def test_task_target_var_keyword(capsys):
    """A task taking **kwargs gets the -p names nothing else takes, as strings."""
    code, out, err = run_main(capsys, "run", flow("targets.py"), "--target", "collect",
                              "-p", "first=1", "-p", "colour=red", "--json")
    assert (code, json.loads(out)) == (0, {"first": 1, "colour": "red"}), err


@pytest.mark.parametrize("engine", ENGINES)
def test_params_from_p(capsys, engine):
    """``Param``s are filled from -p and converted by their type."""
    code, out, err = run_main(
        capsys, "run", flow("targets.py"), "--target", "with_params", "-p", "a=5", "-p", "b=1",
        "--engine", engine,
    )
    assert (code, out) == (0, "6\n"), err


def test_param_default(capsys):
    """A Param left out takes its default."""
    code, out, _ = run_main(capsys, "run", flow("targets.py"), "--target", "with_params",
                            "-p", "a=5")
    assert (code, out) == (0, "15\n")


def test_last_p_wins(capsys):
    """A name given twice takes the last value."""
    code, out, _ = run_main(
        capsys, "run", flow("targets.py"), "--target", "with_params", "-p", "a=1", "-p", "a=2",
    )
    assert (code, out) == (0, "12\n")


@pytest.mark.parametrize("engine", ENGINES)
def test_param_missing(capsys, engine):
    """A required Param left out exits 2 naming it."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "with_params",
                            "--engine", engine)
    assert "'a'" in assert_one_line_usage_error(code, err)


def test_param_bad_value(capsys):
    """A Param value its type rejects exits 2 naming it."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "with_params",
                            "-p", "a=five")
    assert "'a'" in assert_one_line_usage_error(code, err)


def test_unknown_param_name(capsys):
    """A -p name matching no parameter exits 2 listing the known ones."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "with_params",
                            "-p", "a=1", "-p", "nosuch=1")
    line = assert_one_line_usage_error(code, err)
    assert line == "error: no parameter named 'nosuch'; known: a, b"


@pytest.mark.parametrize("engine", ENGINES)
def test_param_met_only_in_a_tail_call(capsys, engine):
    """A module-level Param used only in a tail call is accepted by -p."""
    code, out, err = run_main(capsys, "run", flow("tail_param.py"), "-p", "limit=5",
                              "--engine", engine)
    assert (code, out) == (0, "5\n"), err


def test_unknown_param_name_no_params(capsys):
    """A -p name for a workflow without parameters exits 2 saying so."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "-p", "x=1")
    assert "takes no parameters" in assert_one_line_usage_error(code, err)


def test_unknown_param_name_for_task_lists_its_arguments(capsys):
    """For a task target the known names include the task's parameters."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "greet",
                            "-p", "name=x", "-p", "times=1", "-p", "volume=11")
    line = assert_one_line_usage_error(code, err)
    assert line.endswith("known: excited, name, scale, times")


# --------------------------------------------------------------------------- exit 2


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_no_such_file(capsys):
    """A missing FLOW.py exits 2."""
    code, _, err = run_main(capsys, "run", "no/such/flow.py")
    assert assert_one_line_usage_error(code, err) == "error: no such file: no/such/flow.py"


def test_flow_with_syntax_error(capsys, tmp_path):
    """A syntax error exits 2 naming the file and the line."""
    path = _write(tmp_path, "broken.py", "from cascade_graph import task\n\ndef f(:\n    pass\n")
    code, _, err = run_main(capsys, "run", path)
    line = assert_one_line_usage_error(code, err)
    assert "broken.py" in line and "line 3" in line and "SyntaxError" in line


def test_flow_raising_on_import(capsys, tmp_path):
    """An exception while importing the flow exits 2 saying the exception."""
    path = _write(tmp_path, "raises.py", "x = 1\nraise RuntimeError('no config found')\n")
    code, _, err = run_main(capsys, "run", path)
    line = assert_one_line_usage_error(code, err)
    assert "RuntimeError: no config found" in line and "line 2" in line


def test_flow_missing_import(capsys, tmp_path):
    """A flow importing a module that does not exist exits 2."""
    path = _write(tmp_path, "missing.py", "import no_such_module_for_cascade\n")
    code, _, err = run_main(capsys, "run", path)
    assert "no_such_module_for_cascade" in assert_one_line_usage_error(code, err)


def test_flow_calling_sys_exit_on_import(capsys, tmp_path):
    """sys.exit() at import time is a broken flow too, not the CLI's exit."""
    path = _write(tmp_path, "exits.py", "import sys\nsys.exit(5)\n")
    code, _, err = run_main(capsys, "run", path)
    assert "SystemExit" in assert_one_line_usage_error(code, err)


def test_flow_is_a_directory(capsys, tmp_path):
    """A directory is not a flow."""
    code, _, err = run_main(capsys, "run", tmp_path)
    assert "directory" in assert_one_line_usage_error(code, err)


def test_no_such_target(capsys):
    """A missing target exits 2 listing the workflows available."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", "nope")
    line = assert_one_line_usage_error(code, err)
    assert line.startswith("error: no target 'nope' in ")
    assert line.endswith(
        "workflows available: add, collect, greet, main, only_positional, say, to_set, "
        "unencodable, with_params"
    ), line


def test_no_such_target_no_workflows(capsys, tmp_path):
    """A module with no workflow at all says so."""
    path = _write(tmp_path, "empty.py", "x = 1\n")
    code, _, err = run_main(capsys, "run", path)
    assert "defines no workflow" in assert_one_line_usage_error(code, err)


@pytest.mark.parametrize(
    "target, what",
    [("number", "is an int"), ("plain_function", "is a plain function"),
     ("no_lazy_list", "is a list with no task call inside")],
)
def test_target_not_a_workflow(capsys, target, what):
    """A target that is not a lazy, a task or a container of lazies exits 2 saying how to fix."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--target", target)
    line = assert_one_line_usage_error(code, err)
    assert f"target {target!r} in" in line and what in line and "not a workflow" in line
    assert "@task" in line


@pytest.mark.parametrize("bad", ["novalue", "=3"])
def test_malformed_p(capsys, bad):
    """-p without NAME= exits 2."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "-p", bad)
    assert "NAME=VALUE" in assert_one_line_usage_error(code, err)


def test_unknown_engine(capsys):
    """An unknown engine exits 2 naming the choices."""
    code, _, err = run_main(capsys, "run", flow("targets.py"), "--engine", "fast")
    line = assert_one_line_usage_error(code, err)
    assert "'fast'" in line and "vm" in line and "graph" in line


def test_no_command(capsys):
    """No command at all exits 2 with one line."""
    code, _, err = run_main(capsys)
    assert "run, dis or graph" in assert_one_line_usage_error(code, err)


def test_unknown_command(capsys):
    """An unknown command exits 2 with one line."""
    code, _, err = run_main(capsys, "walk", flow("targets.py"))
    assert_one_line_usage_error(code, err)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "no_such_flow.py"],
        ["run", "tests/flows/targets.py", "--engine", "fast"],
        ["run", "tests/flows/targets.py", "--target", "number"],
        ["run", "tests/flows/targets.py", "--target", "with_params"],
        ["run", "tests/flows/targets.py", "-p", "nosuch=1"],
    ],
)
def test_usage_errors_in_a_real_process(args):
    """In a real process too: exit 2, one stderr line, no traceback, nothing on stdout."""
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_help(capsys):
    """--help exits 0 and describes the commands."""
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "run" in out and "dis" in out and "graph" in out


# --------------------------------------------------------------------------- exit 1


@pytest.mark.parametrize("engine", ENGINES)
def test_failing_task(capsys, engine):
    """A failing task exits 1: one line naming task and error, then the user's traceback."""
    code, out, err = run_main(capsys, "run", flow("failing.py"), "--engine", engine)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "error: task 'divide' failed: ZeroDivisionError: division by zero"
    traceback_text = "\n".join(lines[1:])
    assert "Traceback (most recent call last):" in traceback_text
    assert "in divide" in traceback_text and "in ratio" in traceback_text
    assert "return a / b" in traceback_text
    frames = [line for line in lines if line.lstrip().startswith('File "')]
    assert len(frames) == 2, traceback_text  # divide, then ratio: nothing of the engine's
    assert all("failing.py" in frame for frame in frames), traceback_text


def test_failing_task_in_a_real_process():
    """The real process exits 1 with the same report."""
    proc = cli("run", "tests/flows/failing.py")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "error: task 'divide' failed: ZeroDivisionError: division by zero"
    )
    assert "in ratio" in proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "flow_file, target, words",
    [
        ("runtime_errors.py", "map_lengths", ["'add", "ValueError"]),
        ("router_error.py", "main", ["KeyError", "'nowhere'"]),
        ("runtime_errors.py", "unknown_resource", ["'use_db'", "no_such_resource"]),
        ("runtime_errors.py", "cache_key", ["'identity'", "TypeError"]),
    ],
    ids=["map-lengths", "router-key", "unknown-resource", "cache-key"],
)
def test_runtime_engine_errors_exit_1_naming_the_node(capsys, engine, flow_file, target, words):
    """Errors the engine finds at run time exit 1 with one first line naming the node."""
    code, _, err = run_main(capsys, "run", flow(flow_file), "--target", target, "--engine", engine)
    assert code == 1, err
    first = err.splitlines()[0]
    assert first.startswith("error: task '"), first  # the engine's note names the node
    assert all(word in first for word in words), first


# --------------------------------------------------------------------------- Ctrl-C


def _start_sleepy(tmp_path: Path, engine: str) -> tuple[subprocess.Popen, Path, Path]:
    marker = tmp_path / "started"
    teardown = tmp_path / "teardown"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade_vm", "run", "tests/flows/sleepy.py",
         "--engine", engine, "-p", f"marker={marker}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CASCADE_TEST_TEARDOWN": str(teardown)},
        # A shell starts background jobs with SIGINT ignored, and children inherit
        # that; give the child the default disposition so Python installs its handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the flow never started (exit {proc.returncode}): {err}")
        time.sleep(0.02)
    return proc, marker, teardown


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery is POSIX")
@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_exits_130_with_one_line(tmp_path, engine):
    """SIGINT while a task sleeps: one line 'interrupted', exit 130, resources torn down."""
    proc, _, teardown = _start_sleepy(tmp_path, engine)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run did not stop after SIGINT")
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, err
    assert err == "interrupted\n"
    assert out == ""
    assert teardown.read_text() == "torn down"


# --------------------------------------------------------------------------- dis, graph, --version


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_dis_prints_instructions(capsys, example):
    """``dis`` prints the VM's instruction listing."""
    code, out, err = run_main(capsys, "dis", example)
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_graph_prints_dot(capsys, example):
    """``graph`` prints Graphviz DOT."""
    code, out, err = run_main(capsys, "graph", example)
    assert code == 0, err
    assert out.lstrip().startswith("digraph")
    assert out.rstrip().endswith("}")


@pytest.mark.parametrize("command", ["dis", "graph"])
def test_dis_and_graph_take_a_task_target_with_p(capsys, command):
    """``dis`` and ``graph`` accept a task target whose parameters come from -p."""
    code, out, err = run_main(capsys, command, flow("targets.py"), "--target", "greet",
                              "-p", "name=x", "-p", "times=2")
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize("command", ["dis", "graph"])
def test_dis_and_graph_usage_errors(capsys, command):
    """``dis`` and ``graph`` report bad input like ``run``."""
    code, _, err = run_main(capsys, command, flow("targets.py"), "--target", "nope")
    assert_one_line_usage_error(code, err)


def test_dis_in_a_real_process():
    """``python -m cascade_vm dis`` works as a process."""
    proc = cli("dis", "examples/pipeline.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_graph_in_a_real_process():
    """``python -m cascade_vm graph`` works as a process."""
    proc = cli("graph", "examples/word_count.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("digraph")


def test_version():
    """``--version`` prints 'cascade <version>'."""
    proc = cli("--version")
    assert proc.returncode == 0
    words = proc.stdout.split()
    assert len(words) == 2 and words[0] == "cascade" and words[1][0].isdigit(), proc.stdout
