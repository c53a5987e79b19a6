"""Taking samples: one timed run, a time limit per run, and the interleaved repeat loop.

A *sample* is one complete run of one column (the baseline, the VM or the
graph executor) of one workload: wall seconds from building the workflow to
holding its value, the value itself (checked against the expected one), and
for the memory workload the ``tracemalloc`` peak.

The repeat loop interleaves the columns (baseline, vm, graph, baseline, vm,
graph, ...) rather than running all repeats of one column back to back, so
that a burst of load on the machine lands on every column alike and the
ratios stay honest. Workloads that a target compares with each other
(``kw_chain`` with ``chain``, a ``_100k`` row with its 10k row) are sampled
in one rotation too (``sample_interleaved``): a slow minute of a shared
machine then slows both figures of a ratio, not one. A column leaves the
rotation when it has its ``repeats`` samples, when it has used up its time
``budget`` (it keeps what it has, at least one sample), or at its first
error: an exception, a run past the time limit, or a wrong value. Errors
are recorded as text, never raised: one broken engine must not hide the
figures of the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    """One complete run of one column."""

    seconds: float  # wall time, workflow built to value in hand
    value: object  # what the run produced; must equal the workload's expected value
    peak_bytes: int | None = None  # tracemalloc peak, for the memory workload only


@dataclass(slots=True)
class Cell:
    """Everything measured for one (workload, column) pair."""

    samples: list[Sample] = field(default_factory=list)  # successful, verified runs
    error: str | None = None  # the first failure, as text; when set, the samples are void
    spent: float = 0.0  # seconds used so far, for the budget

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)


class SampleTimeout(Exception):
    """A run did not finish within the per-run time limit."""


class _Alarm(KeyboardInterrupt):
    """Raised by the time limit's signal handler: a programmatic Ctrl-C.

    It must be a ``KeyboardInterrupt``: event loops (asyncio's and uvloop's)
    swallow and log ordinary exceptions raised in their callbacks, which is
    where a signal handler runs while the loop waits, but let this one
    through. ``time_limit`` turns it into ``SampleTimeout`` on the way out.
    """


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise ``SampleTimeout`` out of the block if it runs longer than ``seconds``.

    Best effort, built on SIGALRM: available on POSIX, in the main thread. The
    alarm interrupts whatever Python code is running, like Ctrl-C would, which
    stops a spinning engine loop or an event loop waiting forever; whatever the
    engine turns the interruption into, the block ends with ``SampleTimeout``.
    Elsewhere (or with ``None``) the block runs unguarded.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    fired = False

    def on_alarm(signum, frame):
        nonlocal fired
        fired = True
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except BaseException:
        if fired:
            raise SampleTimeout(f"no result after {seconds:g} s (see --timeout)") from None
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe_error(error: BaseException) -> str:
    """``TypeName: message`` on one line, the notes an engine added included."""
    text = f"{type(error).__name__}: {error}"
    notes = getattr(error, "__notes__", None)
    if notes:
        text += " (" + "; ".join(str(note) for note in notes) + ")"
    return " ".join(text.split())


def take_sample(run_once: Callable[[], Sample], expected: object, timeout: float | None) -> Sample:
    """Run once under the time limit and check the value; raise ``ValueError`` if it is wrong."""
    gc.collect()  # start each run from the same, clean heap
    with time_limit(timeout):
        sample = run_once()
    check_value(sample.value, expected)
    return sample


def check_value(value: object, expected: object) -> None:
    """Raise ``ValueError`` naming both values when ``value`` is not ``expected``."""
    if value != expected:
        raise ValueError(f"wrong result: got {_short(value)}, expected {_short(expected)}")


@dataclass(frozen=True, slots=True)
class Column:
    """One column to sample: how to run it once, the value it must give, how often."""

    run_once: Callable[[], Sample]
    expected: object
    repeats: int


def sample_interleaved(columns: dict, *, budget: float, timeout: float | None) -> dict:
    """Sample every ``Column`` up to its ``repeats``, one sample of each in turn (in the
    dict's order) until all are done; one ``Cell`` per key."""
    cells = {key: Cell() for key in columns}
    active = list(columns)
    while active:
        for key in list(active):
            column, cell = columns[key], cells[key]
            started = time.perf_counter()
            try:
                cell.samples.append(take_sample(column.run_once, column.expected, timeout))
            # Anything an engine raises is a result to report, not a reason to stop.
            except (Exception, asyncio.CancelledError) as error:  # noqa: BLE001
                cell.error = describe_error(error)
                cell.samples.clear()
            cell.spent += time.perf_counter() - started
            if (cell.error is not None or cell.spent >= budget
                    or len(cell.samples) >= column.repeats):
                active.remove(key)
    return cells


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
