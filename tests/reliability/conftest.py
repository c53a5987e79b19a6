"""Fixtures of the reliability tests: every test runs on both engines.

The interpreters that measure the tracemalloc peak of 100,000- and
1,000,000-iteration tail loops (test_scale.py), one per (engine, hot_path),
start at the first reliability test that is not a fairness test (the
fairness tests run first), so that they run beside the other tests instead of
after them; ``memory_workers`` hands them to the memory test. Nothing starts
when the memory test is not selected.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import ENGINES, LARGE, SMALL

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_memory_worker.py")
MEMORY_TEST = "test_million_iteration_tail_loop_runs_in_constant_memory"


@pytest.fixture(params=ENGINES)
def engine(request):
    """The engine under test: 'vm' (register VM) or 'graph' (graph executor)."""
    return request.param


@pytest.fixture(params=[True, False], ids=["hot", "nohot"])
def hot_path(request):
    """The hot path switch: results and guarantees must not depend on it."""
    return request.param


_PROCS: dict = {}


def pytest_collection_modifyitems(session, config, items):
    """Run the fairness tests first among the reliability tests, before the memory
    workers start: they measure how often a coroutine gets the loop, and the workers
    would take CPU from them. Only the order inside this directory changes."""
    here = Path(__file__).parent
    mine = [i for i, item in enumerate(items) if Path(str(item.path)).parent == here]
    if not mine:
        return
    block = [items[i] for i in mine]
    fairness = [item for item in block if Path(str(item.path)).name == "test_fairness.py"]
    rest = [item for item in block if Path(str(item.path)).name != "test_fairness.py"]
    for i, item in zip(mine, fairness + rest):
        items[i] = item


def _start_memory_workers(session) -> None:
    if _PROCS or not any(MEMORY_TEST in item.nodeid for item in session.items):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    for engine in ENGINES:
        for hot in (True, False):
            _PROCS[engine, hot] = subprocess.Popen(
                [sys.executable, str(WORKER), engine, "1" if hot else "0", str(SMALL), str(LARGE)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )


@pytest.fixture(scope="session")
def _memory_worker_processes():
    yield _PROCS
    for p in _PROCS.values():
        if p.poll() is None:
            p.kill()
        p.communicate()


@pytest.fixture(autouse=True)
def _memory_workers_start(request, _memory_worker_processes):
    """Start the memory workers at the first reliability test that is not a fairness test."""
    if Path(str(request.node.path)).name != "test_fairness.py":
        _start_memory_workers(request.session)


@pytest.fixture
def memory_workers(_memory_worker_processes):
    """{(engine, hot_path): Popen} of the memory measurements."""
    return _memory_worker_processes
