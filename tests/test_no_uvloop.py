"""Without uvloop (Windows, where it does not exist), run() uses asyncio's own loop.

The suite's run() tests (tests/test_run.py, tests/test_runner.py, both
engines) run again in a subprocess where ``import uvloop`` fails: a finder at
the front of ``sys.meta_path`` refuses it, as on a machine without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HIDE_UVLOOP = '''
import importlib.abc
import sys


class HideUvloop(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "uvloop" or name.startswith("uvloop."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideUvloop())
'''

CHECK_LOOP = HIDE_UVLOOP + '''
import asyncio
from cascade_vm import run, task

@task
async def loop_kind():
    return type(asyncio.get_running_loop()).__module__

print(run(loop_kind()), run(loop_kind(), engine="graph"), "uvloop" in sys.modules)
'''

RUN_TESTS = HIDE_UVLOOP + '''
import pytest

code = pytest.main(["tests/test_run.py", "tests/test_runner.py"])
assert "uvloop" not in sys.modules, "uvloop was imported"
sys.exit(code)
'''


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_run_uses_asyncio_loop_without_uvloop():
    proc = _python(CHECK_LOOP)
    assert proc.returncode == 0, proc.stderr
    vm, graph, imported = proc.stdout.split()
    assert vm.startswith("asyncio") and graph.startswith("asyncio")
    assert imported == "False"


def test_run_uses_uvloop_when_installed():
    proc = _python(CHECK_LOOP.replace("sys.meta_path.insert(0, HideUvloop())", ""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["uvloop", "uvloop", "True"]


def test_the_run_tests_pass_without_uvloop():
    proc = _python(RUN_TESTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
