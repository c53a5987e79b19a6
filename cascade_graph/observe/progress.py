"""``Progress()``: a live display of the run on stderr, drawn with ``rich`` (extra ``ui``).

It shows tasks done, running, failed, retried, cache hits, tail calls (with
their rate per second over the last second) and the elapsed time, and a
small table of the busiest tasks. The listener only counts (a few integer
increments per event); ``rich``'s own refresh thread draws the counters
several times a second, so a fast loop is not slowed by drawing.

When it shows (decided when the run starts):

- ``Progress()``: only when stderr is a terminal, so a script run from cron
  or with stderr sent to a file gets no display at all;
- ``Progress(force=True)`` (what the CLI's ``--progress`` uses: asking for
  it is explicit): always. On a terminal it is live; elsewhere ``rich``
  draws nothing while the run goes and prints the final state once at the
  end, with no control codes.

On ``RunFinished`` the display is drawn one last time, with the final
counts and the outcome, and left on the screen. What tasks print to stdout
while it runs is written above it when stdout is the same terminal, and
left alone otherwise (a piped stdout stays the result's alone).

Without ``rich`` installed, making a ``Progress`` raises ``ImportError``
with one line: ``pip install 'cascade[ui]'``.
"""

from __future__ import annotations

import sys
import time

from ..events import (
    RunFinished,
    RunStarted,
    TailCall,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
)
from ..logs import error_line

INSTALL_HINT = "Progress needs the 'ui' extra (rich): pip install 'cascade[ui]'"
_TOP_TASKS = 6  # rows of the per-task table


def _rich():
    try:
        import rich  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


class _TaskCounts:
    __slots__ = ("done", "running", "failed")

    def __init__(self):
        self.done = 0
        self.running = 0
        self.failed = 0


class Progress:
    """An ``on_event`` listener showing the run live on stderr (see the module docstring)."""

    def __init__(self, *, force: bool = False, file=None, refresh_per_second: float = 8):
        _rich()
        self.force = force
        self.file = file  # default: sys.stderr when the run starts
        self.refresh_per_second = refresh_per_second
        self._live = None
        self._reset()
        self._on = {
            RunStarted: self._started_run, RunFinished: self._finished_run,
            TaskStarted: self._started, TaskFinished: self._finished, TaskFailed: self._failed,
            TaskRetrying: self._retrying, TaskSkipped: self._skipped, TailCall: self._tail_call,
        }

    def _reset(self) -> None:
        self.run_id = None
        self.t0 = time.perf_counter()
        self.end = None  # perf_counter at RunFinished
        self.ok = None
        self.error = None
        self.done = self.running = self.failed = self.retried = 0
        self.cache_hits = self.skipped = self.tail_calls = 0
        self.tasks: dict = {}  # name -> _TaskCounts
        self._rate = (self.t0, 0, 0.0)  # (when, tail calls then, rate shown)

    def __call__(self, event) -> None:
        handler = self._on.get(type(event))
        if handler is not None:
            handler(event)

    # -- counting ------------------------------------------------------------

    def _task(self, name) -> _TaskCounts:
        t = self.tasks.get(name)
        if t is None:
            t = self.tasks[name] = _TaskCounts()
        return t

    def _started(self, e) -> None:
        self.running += 1
        self._task(e.task).running += 1

    def _finished(self, e) -> None:
        self.running -= 1
        self.done += 1
        t = self._task(e.task)
        t.running -= 1
        t.done += 1

    def _failed(self, e) -> None:
        self.running -= 1
        self.failed += 1
        t = self._task(e.task)
        t.running -= 1
        t.failed += 1

    def _retrying(self, e) -> None:
        self.retried += 1

    def _skipped(self, e) -> None:
        if e.reason == "cached":
            self.cache_hits += 1
        else:
            self.skipped += 1

    def _tail_call(self, e) -> None:
        self.tail_calls += 1

    # -- the display -----------------------------------------------------------

    def _started_run(self, e: RunStarted) -> None:
        self._stop()
        self._reset()
        self.run_id = e.run_id
        self.t0 = e.time
        self._rate = (e.time, 0, 0.0)
        self._live = self._open()
        if self._live is not None:
            self._live.start()

    def _open(self):
        from rich.console import Console
        from rich.live import Live

        file = self.file if self.file is not None else sys.stderr
        tty = _isatty(file)
        if not tty and not self.force:
            return None
        console = Console(file=file)
        same_terminal = tty and file is sys.stderr and _isatty(sys.stdout)
        return Live(console=console, get_renderable=self.render, transient=False,
                    refresh_per_second=self.refresh_per_second, redirect_stdout=same_terminal,
                    redirect_stderr=tty and file is sys.stderr)

    def _finished_run(self, e: RunFinished) -> None:
        self.end = e.time
        self.ok = e.ok
        self.error = e.error
        self._stop()

    def _stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.update(self.render(), refresh=True)
            live.stop()

    def rate(self) -> float:
        """Tail calls per second: over the last second while running, the mean once ended."""
        if self.end is not None:
            span = self.end - self.t0
            return self.tail_calls / span if span > 0 else 0.0
        now = time.perf_counter()
        when, count, shown = self._rate
        if now - when >= 1.0 or (count == 0 and now - when >= 0.25):
            shown = (self.tail_calls - count) / (now - when)
            self._rate = (now, self.tail_calls, shown)
        return shown

    def render(self):
        """What the display shows now (a ``rich`` renderable)."""
        from rich.console import Group
        from rich.text import Text

        elapsed = (self.end if self.end is not None else time.perf_counter()) - self.t0
        head = Text()
        if self.end is None:
            head.append("\u25b6 running", style="bold cyan")
        elif self.ok:
            head.append("\u2714 finished", style="bold green")
        else:
            head.append("\u2718 failed", style="bold red")
            if self.error is not None:
                head.append(f"  {error_line(self.error)}", style="red")
        head.append(f"   cascade run {self.run_id}   elapsed {_seconds(elapsed)}", style="dim")
        counters = Text("  ")
        for label, value, style in (
            ("done", self.done, "green"), ("running", self.running, "cyan"),
            ("failed", self.failed, "red" if self.failed else "dim"),
            ("retried", self.retried, "yellow" if self.retried else "dim"),
            ("cache hits", self.cache_hits, "green" if self.cache_hits else "dim"),
        ):
            counters.append(f"{label} ", style="dim")
            counters.append(f"{value:,}", style=f"bold {style}")
            counters.append("   ")
        tails = Text("  tail calls ", style="dim")
        tails.append(f"{self.tail_calls:,}", style="bold magenta" if self.tail_calls else "dim")
        tails.append("   ")
        tails.append(f"{self.rate():,.0f}", style="bold magenta" if self.tail_calls else "dim")
        tails.append(" per second", style="dim")
        return Group(head, counters, tails, self._table())

    def _table(self):
        from rich.table import Table

        table = Table(box=None, padding=(0, 2), show_edge=False, header_style="dim")
        table.add_column("task")
        table.add_column("done", justify="right")
        table.add_column("running", justify="right")
        table.add_column("failed", justify="right")
        busiest = sorted(self.tasks.items(), key=lambda kv: (-kv[1].running, -kv[1].done))
        for name, t in busiest[:_TOP_TASKS]:
            table.add_row(str(name), f"{t.done:,}", f"{t.running:,}",
                          f"[red]{t.failed:,}[/red]" if t.failed else "0")
        if len(busiest) > _TOP_TASKS:
            table.add_row(f"[dim]... {len(busiest) - _TOP_TASKS} more tasks[/dim]", "", "", "")
        return table


def _isatty(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(int(s), 60)
    return f"{minutes} min {seconds:02d} s"
