"""The distribution as a user installs it (SPEC section 1): ``pip install .`` into a
fresh virtual environment, then what landed in site-packages, a flow run from
outside the repository, and mypy finding the installed package's types.

This builds the wheel (pip fetches the build backend, setuptools, and the
runtime dependencies from the package index, as a user's install does), so it
takes some 20-40 s; it runs once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                              ".mypy_cache", ".hypothesis", ".pytest_cache", ".ruff_cache")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages")) + sorted(
        venv.glob("Lib/site-packages"))
    assert found, f"no site-packages under {venv}"
    return found[0]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with ``pip install .`` of a copy of the repository in it."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run([str(_python(venv)), "-m", "pip", "install", "-q", str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


def test_only_the_two_packages_land_in_site_packages(installed):
    site = _site_packages(installed)
    record = next(site.glob("cascade-*.dist-info")) / "RECORD"
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    tops = {t for t in tops if not t.endswith(".dist-info") and t != ".."}
    assert tops == {"cascade_graph", "cascade_vm"}
    assert not (site / "bench").exists()
    assert (site / "cascade_graph" / "py.typed").is_file()
    assert (site / "cascade_vm" / "py.typed").is_file()


def test_uvloop_is_required_only_where_it_exists(installed):
    metadata = (next(_site_packages(installed).glob("cascade-*.dist-info")) / "METADATA")
    requires = [line for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist: uvloop")]
    assert requires == ["Requires-Dist: uvloop>=0.19; sys_platform != \"win32\""]


def test_a_flow_runs_from_outside_the_repository(installed, tmp_path):
    flow = tmp_path / "flow.py"
    flow.write_text(
        "from cascade_vm import Param, task\n\n"
        "@task\n"
        "def countdown(n: int, acc: int) -> int:\n"
        "    return acc if n <= 0 else countdown(n - 1, acc + n)\n\n"
        "main = countdown(Param('n', default=10, type=int), 0)\n"
    )
    for engine in ("vm", "graph"):
        proc = subprocess.run(
            [str(_python(installed)), "-m", "cascade_vm", "run", "flow.py", "-p", "n=100",
             "--engine", engine],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "5050\n"


def test_mypy_finds_the_installed_types(installed, tmp_path):
    """Outside the repository, mypy reads the types of the installed package (py.typed)."""
    shutil.copy(ROOT / "examples" / "typed_flow.py", tmp_path / "typed_flow.py")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable",
         str(_python(installed)), "--cache-dir", str(tmp_path / ".mypy_cache"),
         "typed_flow.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
