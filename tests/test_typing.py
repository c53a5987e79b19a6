"""Typed tasks (SPEC section 1): what ``mypy --strict`` sees of a flow.

mypy runs once per session, from the repository root (where it finds the
packages as source: ``[tool.mypy]`` in pyproject.toml), on the typed example
flow and on a snippet whose lines say what mypy must reveal (``# R: type``)
or reject (``# E: error-code``). The runtime half checks that typing costs
nothing: ``Task`` and ``LazyResult`` are generic without changing a call.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import cascade_vm
from cascade_graph import LazyResult, Task, task
from cascade_vm import arun, run

ROOT = Path(__file__).resolve().parent.parent
TYPED_FLOW = "examples/typed_flow.py"

SNIPPET = '''\
import asyncio
from cascade_vm import LazyResult, Param, Router, inject, run, arun, task

@task
def add(a: int, b: int) -> int:
    return a + b

@task
async def fetch(url: str) -> bytes:
    await asyncio.sleep(0)
    return url.encode()

@task
def countdown(n: int) -> str:
    return "done" if n <= 0 else countdown(n - 1)

@task
def step(n: int) -> int | LazyResult[int]:
    return n if n <= 0 else step(n - 1)

@task(name="halve", offload=True)
def half(x: int) -> float:
    return x / 2

@task(concurrency=2)
async def limited(x: int) -> list[int]:
    return [x]

@task
def uses_db(key: str, db: dict[str, int] = inject("db")) -> int:
    return db[key]

async def inside() -> None:
    reveal_type(await arun(add(1, 2)))  # R: int

reveal_type(add)  # R: cascade_graph.lazy.Task[[a: int, b: int], int]
reveal_type(add(1, 2))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(add(1, add(2, 3)))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(run(add(1, 2)))  # R: int
reveal_type(run(add(1, 2), engine="graph"))  # R: int
reveal_type(fetch)  # R: cascade_graph.lazy.Task[[url: str], bytes]
reveal_type(run(fetch("x")))  # R: bytes
reveal_type(run(countdown(3)))  # R: str
reveal_type(run(step(3)))  # R: int
reveal_type(half)  # R: cascade_graph.lazy.Task[[x: int], float]
reveal_type(run(limited(1)))  # R: list[int]
reveal_type(run(uses_db("k")))  # R: int
reveal_type(add.map([1, 2], [3, 4]))  # R: cascade_graph.lazy.LazyResult[list[int]]
reveal_type(run(add.map(range(3), range(3))))  # R: list[int]
reveal_type(add(1, 2).run_if(True))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(add(1, 2).after(fetch("x")))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(add(1, 2).with_retry(3, delay=0.1))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(add(1, 2).with_timeout(1.5))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(add(1, 2).with_cache(ttl=10))  # R: cascade_graph.lazy.LazyResult[int]
reveal_type(run(add(1, Param("n", default=1, type=int))))  # R: int
reveal_type(run(add(1, Router(Param("k"), routes={"a": add(1, 1)}))))  # R: int
reveal_type(run([add(1, 2), fetch("x")]))  # R: Any
add(1, "2")  # E: arg-type
add(1)  # E: call-arg
add(1, 2, c=3)  # E: call-arg
half("x")  # E: arg-type
run(add(1, 2), engin="vm")  # E: call-overload
wrong: str = run(add(1, 2))  # E: assignment
'''


def _expectations(text: str) -> tuple[dict[int, str], dict[int, str]]:
    """(line -> revealed type, line -> error code) from the snippet's markers."""
    reveals, errors = {}, {}
    for number, line in enumerate(text.splitlines(), start=1):
        if "  # R: " in line:
            reveals[number] = line.split("  # R: ", 1)[1]
        elif "  # E: " in line:
            errors[number] = line.split("  # E: ", 1)[1]
    return reveals, errors


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory) -> dict[str, list[tuple[int, str, str]]]:
    """mypy --strict on the typed example and the snippet: file -> [(line, kind, text)]."""
    snippet = tmp_path_factory.mktemp("typing") / "snippet.py"
    snippet.write_text(SNIPPET)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--show-error-codes", "--no-pretty",
         "--no-error-summary", TYPED_FLOW, str(snippet)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert "No module named mypy" not in proc.stderr, "mypy is in the dev extra: make test"
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report: dict[str, list[tuple[int, str, str]]] = {"flow": [], "snippet": []}
    pattern = re.compile(r"^(.*?):(\d+): (error|note): (.*)$")
    for line in proc.stdout.splitlines():
        match = pattern.match(line)
        assert match, f"unexpected mypy output: {line}\n{proc.stdout}"
        path, number, kind, text = match.groups()
        which = "snippet" if Path(path).name == "snippet.py" else "flow"
        assert which == "snippet" or path == TYPED_FLOW, f"error outside the files: {line}"
        report[which].append((int(number), kind, text))
    return report


def test_typed_example_flow_passes_mypy_strict(mypy_report):
    assert mypy_report["flow"] == []


def test_revealed_types(mypy_report):
    reveals, _ = _expectations(SNIPPET)
    seen = {n: text for n, kind, text in mypy_report["snippet"]
            if kind == "note" and text.startswith("Revealed type is")}
    for number, expected in reveals.items():
        line = SNIPPET.splitlines()[number - 1]
        assert number in seen, f"line {number}: nothing revealed ({line})"
        # older mypy spells builtins out (builtins.int): compare without it
        got = seen[number].removeprefix("Revealed type is ").strip('"').replace("builtins.", "")
        assert got == expected, f"line {number}: {got} != {expected}"


def test_type_errors_are_reported_where_expected(mypy_report):
    """A wrong literal, arity, keyword or run() option is an error; nothing else is."""
    _, errors = _expectations(SNIPPET)
    found = {}
    for number, kind, text in mypy_report["snippet"]:
        if kind == "error":
            found[number] = re.search(r"\[([\w-]+)\]$", text).group(1)
    assert found == errors


def test_run_overloads_list_the_same_options_as_run():
    """The typed overloads of run()/arun() take exactly the implementation's options."""
    for fn in (run, arun):
        wanted = list(inspect.signature(fn).parameters)
        overloads = typing.get_overloads(fn)
        assert len(overloads) == 2, fn
        for stub in overloads:
            assert list(inspect.signature(stub).parameters) == wanted, fn


def test_task_overloads_list_the_same_options_as_task():
    wanted = list(inspect.signature(task).parameters)
    keywords = [n for n in wanted if n != "fn"]
    for stub in typing.get_overloads(task):
        names = list(inspect.signature(stub).parameters)
        assert names in (["fn"], keywords), names


def test_packages_ship_py_typed():
    import cascade_graph

    for package in (cascade_graph, cascade_vm):
        assert (Path(package.__file__).parent / "py.typed").is_file(), package.__name__


def test_generic_at_run_time_without_cost():
    """Subscripting works (annotations may be evaluated); a call is still a plain LazyResult."""
    assert Task[[int], int] is not None and LazyResult[int] is not None

    @task
    def inc(x: int) -> int:
        return x + 1

    lazy = inc(1)
    assert type(lazy) is LazyResult
    assert not hasattr(lazy, "__dict__")  # still slotted: no per-call dict
    assert "__orig_class__" not in dir(lazy)
    assert type(inc).__call__ is Task.__call__  # no wrapper around the call
    assert run(lazy) == 2 and run(lazy, engine="graph") == 2
