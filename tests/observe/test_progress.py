"""``--progress`` / ``Progress()``: the live display, read from a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade_vm import run
from cascade_vm.cli import main

from .screen import Screen

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(ROOT / "tests" / "flows" / "progress_loop.py")


def run_in_terminal(*args: str, timeout: float = 60) -> tuple[int, Screen, list[str]]:
    """Run ``python -m cascade_vm ARGS`` with stdout and stderr on a pseudo-terminal.

    Returns the exit code, the final screen and snapshots of the screen taken
    while the run went (one per read).
    """
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "cascade_vm", *args], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    screen = Screen()
    snapshots = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen.feed(chunk.decode("utf-8", "replace"))
            snapshots.append(screen.text())
    finally:
        os.close(master)
        code = proc.wait(timeout=30)
    return code, screen, snapshots


@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_progress_on_a_terminal_is_live_and_ends_right(engine):
    """On a terminal the display redraws while the run goes and ends with the final counts."""
    code, screen, snapshots = run_in_terminal("run", FLOW, "--engine", engine, "--progress")
    assert code == 0, screen.text()
    text = screen.text()
    assert screen.frames >= 2  # redrawn in place, not printed once
    assert any("running" in s and "elapsed" in s for s in snapshots)
    final = [line for line in screen.lines() if line.strip()]
    assert "\u2714 finished" in text
    # 41 tick calls, 2 flaky attempts (one failed), 3 naps, 1 total
    assert "done 46" in text and "running 0" in text
    assert "failed 1" in text and "retried 1" in text and "cache hits 0" in text
    assert "tail calls 40" in text
    assert final[-1].strip() == "5"  # the result, after the display
    row = [line for line in final if line.strip().startswith("tick")]
    assert row and row[0].split()[1] == "41"


def test_progress_shows_a_failure():
    """A failing run ends the display with the error; the exit code is 1."""
    code, screen, _ = run_in_terminal("run", str(ROOT / "tests" / "flows" / "failing.py"),
                                      "--progress")
    assert code == 1
    assert "\u2718 failed" in screen.text() and "ZeroDivisionError" in screen.text()


def test_progress_when_stderr_is_not_a_terminal(capsys):
    """``--progress`` asked for explicitly: a plain final summary, no control codes."""
    code = main(["run", FLOW, "--progress", "-p", "steps=3"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "5\n"
    assert "\x1b[" not in err
    assert "finished" in err and "done 9" in err and "tail calls 3" in err


def test_progress_object_stays_silent_off_a_terminal():
    """``Progress()`` without ``force`` shows nothing when its file is not a terminal."""
    from cascade_graph.observe import Progress
    from tests.observe.test_trace import countdown

    sink = io.StringIO()
    assert run(countdown(5), on_event=Progress(file=sink)) == "done"
    assert sink.getvalue() == ""
    sink = io.StringIO()
    run(countdown(5), on_event=Progress(file=sink, force=True))
    assert "done 6" in sink.getvalue() and "tail calls 5" in sink.getvalue()


def test_without_rich_progress_says_which_extra_to_install():
    """With rich missing, ``--progress`` is one line naming the extra (exit 2), and
    ``Progress()`` an ImportError saying the same."""
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from cascade_vm.cli import main\n"
        f"sys.exit(main(['run', {FLOW!r}, '--progress']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "pip install 'cascade[ui]'" in line
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from cascade_graph.observe import Progress\n"
        "try:\n    Progress()\nexcept ImportError as e:\n    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == "Progress needs the 'ui' extra (rich): pip install 'cascade[ui]'"
