"""The HTML report in a real browser: headless Chromium renders it, its script runs
with no console error, and a screenshot is saved under build/ (``make e2e``).

Marked ``e2e``: ``make test`` leaves these out; ``make e2e`` runs them (CI installs
Debian's ``chromium`` first when it is missing).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
FLOW = str(ROOT / "tests" / "flows" / "observed.py")

pytestmark = pytest.mark.e2e


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium found: apt-get install -y chromium (make e2e needs it)")


def browse(page: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` in headless Chromium with console logging on stderr."""
    return subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", *extra,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (errors, CSP refusals, uncaught exceptions)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def make_report(tmp_path: Path, engine: str, *args: str) -> tuple[Path, int]:
    report = tmp_path / f"report-{engine}.html"
    proc = subprocess.run(
        [sys.executable, "-m", "cascade_vm", "run", FLOW, "--engine", engine,
         "--report", str(report), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    return report, proc.returncode


@pytest.mark.parametrize(("engine", "args", "code", "shot"), [
    ("vm", (), 0, "report.png"),
    ("graph", ("-p", "fail=true"), 1, "report-failed.png"),
])
def test_report_renders_in_chromium(tmp_path, engine, args, code, shot):
    """The script ran (bars, rows, cards are in the DOM), nothing on the console."""
    report, returncode = make_report(tmp_path, engine, *args)
    assert returncode == code
    dom = browse(report, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-rendered="true"' in html, "the page's script did not finish"
    bars = re.findall(r'<rect [^>]*class="bar(?: failed)?"', html)
    assert len(bars) >= 30
    rows = re.findall(r'<tr class="task-row" data-task="([^"]+)"', html)
    assert sorted(rows) == sorted(["fetch", "flaky", "square", "countdown", "pick", "finish",
                                   "never"])
    assert len(re.findall(r'<div class="card ', html)) == 8
    assert 'class="area"' in html  # the activity strip
    if code:
        assert 'class="bar failed"' in html
        assert "finish refused 11 parts" in html
    assert console_messages(dom.stderr) == []
    BUILD.mkdir(exist_ok=True)
    picture = BUILD / shot
    shown = browse(report, f"--screenshot={picture}", "--window-size=1400,1000",
                   "--hide-scrollbars")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert picture.stat().st_size > 20_000
    assert console_messages(shown.stderr) == []


def test_the_console_check_sees_a_script_error(tmp_path):
    """The console check above can fail: a page whose script throws is seen."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><script>undefinedFunction()</script>")
    dom = browse(page, "--dump-dom")
    assert any("undefinedFunction" in line for line in console_messages(dom.stderr))
