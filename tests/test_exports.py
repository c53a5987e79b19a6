"""One import line serves a flow (SPEC section 1): cascade_vm re-exports the language."""

from __future__ import annotations

import subprocess
import sys

import cascade_graph
import cascade_vm

#: SPEC section 1: the public names of cascade_graph (events and exceptions checked below)
LANGUAGE = {"task", "Task", "LazyResult", "Router", "Param", "Env", "resource", "inject",
            "MemoryStore", "SQLiteStore", "ParameterError"}
EVENTS = {"RunStarted", "RunFinished", "TaskStarted", "TaskFinished", "TaskFailed",
          "TaskSkipped", "TaskRetrying", "TailCall", "ResourceSetUp", "ResourceTornDown"}


def test_cascade_graph_exports_the_language_events_and_exceptions():
    names = set(cascade_graph.__all__)
    assert LANGUAGE | EVENTS <= names
    errors = {n for n, v in vars(cascade_graph).items()
              if isinstance(v, type) and issubclass(v, Exception)}
    assert errors <= names, errors - names  # every exception of the project is public
    for name in names:
        assert getattr(cascade_graph, name) is not None, name


def test_cascade_vm_reexports_every_public_name_of_cascade_graph():
    assert set(cascade_graph.__all__) <= set(cascade_vm.__all__)
    for name in cascade_graph.__all__:
        assert getattr(cascade_vm, name) is getattr(cascade_graph, name), name
    assert {"run", "arun"} <= set(cascade_vm.__all__)


def test_star_import_gives_a_whole_flow():
    namespace: dict = {}
    exec("from cascade_vm import *", namespace)
    assert {"task", "run", "arun", "Param", "Router", "TaskFailed"} <= set(namespace)


def test_one_import_line_runs_a_flow_on_both_engines():
    """The README's promise, in a fresh interpreter: nothing imported from cascade_graph."""
    code = (
        "from cascade_vm import task, run, Param\n"
        "@task\n"
        "def add(a, b):\n"
        "    return a + b\n"
        "flow = add(1, add(2, Param('n', type=int)))\n"
        "print(run(flow, params={'n': '3'}), run(flow, engine='graph', params={'n': '4'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["6", "7"]
