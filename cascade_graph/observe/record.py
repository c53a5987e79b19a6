"""What the HTML report remembers of a run: bounded, whatever the run's length.

``RunRecord`` is fed every event and keeps:

- per task (``TaskStats``): calls, failures, retries, cache hits, skips,
  tail calls, and every call's ``duration`` in a compact ``array('d')``
  (8 bytes a call: exact total, mean and p95 for a million calls in 8 MB);
- the timeline's bars, sampled: every call while the run has made at most
  ``BAR_LIMIT`` of them, after that the ``BAR_LIMIT`` longest (a min-heap on
  duration), so a 100,000-call run draws the calls that matter, not a
  smear of 10 us slivers;
- the activity strip (``Activity``): for each task, how many of its calls
  were running, on average, in each of ``BUCKETS`` equal slices of the run.
  It counts every call. The slice width doubles (merging pairs) whenever
  the run outgrows it, so it needs no end time in advance;
- markers (retries, skips, cache hits, failures): the first ``MARKER_LIMIT``
  of each kind, and how many there were;
- tail-call edges between tasks (caller task -> continuation root task),
  counted, for the graph; lanes as in the trace (``lanes.py``).

Times are seconds since ``RunStarted``. ``summary()`` returns the whole
record as plain JSON-ready data for ``page.py``.
"""

from __future__ import annotations

import heapq
import os
import sys
import traceback
from array import array
from itertools import count

from ..errors import task_of
from ..events import (
    ResourceSetUp,
    ResourceTornDown,
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
from .lanes import Lanes

BAR_LIMIT = 3000  # calls drawn one by one in the timeline
MARKER_LIMIT = 1000  # markers kept per kind
BUCKETS = 240  # slices of the activity strip


class TaskStats:
    """One task's figures."""

    __slots__ = ("name", "index", "calls", "failures", "retries", "cache_hits", "skipped",
                 "tail_calls", "durations")

    def __init__(self, name: str, index: int):
        self.name = name
        self.index = index  # first-seen order: the task's colour in the page
        self.calls = 0  # invocations (each attempt of a retry counts)
        self.failures = 0  # invocations that raised (or were cancelled by a failure)
        self.retries = 0  # TaskRetrying events
        self.cache_hits = 0  # TaskSkipped(reason="cached")
        self.skipped = 0  # other TaskSkipped
        self.tail_calls = 0  # invocations that returned a lazy call
        self.durations = array("d")  # every ended invocation's duration, seconds

    def row(self) -> dict:
        d = sorted(self.durations)
        total = sum(d)
        n = len(d)
        return {
            "task": self.name, "color": self.index, "calls": self.calls,
            "failures": self.failures, "retries": self.retries,
            "cache_hits": self.cache_hits, "skipped": self.skipped,
            "tail_calls": self.tail_calls, "total": total,
            "mean": total / n if n else 0.0,
            "p95": d[min(n - 1, max(0, -(-95 * n // 100) - 1))] if n else 0.0,
            "max": d[-1] if n else 0.0,
        }


class Activity:
    """Busy time per task in equal slices of the run; the slice width doubles as needed."""

    __slots__ = ("width", "busy")

    def __init__(self, width: float = 1e-4):
        self.width = width  # seconds per slice
        self.busy: dict = {}  # task index -> list of BUCKETS busy seconds

    def add(self, task: int, start: float, end: float) -> None:
        width = self.width
        while end >= BUCKETS * width:
            self._widen()
            width = self.width
        row = self.busy.get(task)
        if row is None:
            row = self.busy[task] = [0.0] * BUCKETS
        first = int(start / width)
        last = int(end / width)
        if first == last:  # most calls: within one slice
            row[first] += end - start
            return
        row[first] += (first + 1) * width - start
        for k in range(first + 1, last):
            row[k] += width
        row[last] += end - last * width

    def _widen(self) -> None:
        for task, row in self.busy.items():
            merged = [row[k] + row[k + 1] for k in range(0, BUCKETS, 2)]
            self.busy[task] = merged + [0.0] * (BUCKETS - len(merged))
        self.width *= 2

    def summary(self, end: float) -> dict:
        """Slices up to ``end``: mean number of running calls per task in each."""
        width = self.width
        used = min(BUCKETS, int(end / width) + 1)
        return {"width": width, "rows": {str(t): [round(v / width, 3) for v in row[:used]]
                                         for t, row in self.busy.items()}}


class RunRecord:
    """The bounded record of one run (see the module docstring)."""

    def __init__(self, start: RunStarted):
        self.t0 = start.time
        self.wall = start.wall
        self.run_id = start.run_id
        self.end = 0.0
        self.ok = None  # True/False once finished
        self.error = None
        self.tasks: dict = {}  # name -> TaskStats
        self.groups: dict = {}  # where -> (group index, Lanes)
        self.running: dict = {}  # call -> (start, group, lane, stats)
        self.bars: list = []  # heap of (duration, seq, bar)
        self.seq = count()
        self.ended_calls = 0
        self.activity = Activity()
        self.markers: dict = {"retry": [], "cached": [], "skipped": [], "failed": []}
        self.marker_counts: dict = dict.fromkeys(self.markers, 0)
        self.tail_edges: dict = {}  # (caller task, target task) -> count
        self.resources: dict = {}  # (resource, scope) -> stack of set-up times
        self.resource_spans: list = []  # (name, scope, start, end), first MARKER_LIMIT
        self.on = {
            TaskStarted: self.started, TaskFinished: self.ended, TaskFailed: self.ended,
            TailCall: self.tail_call, TaskRetrying: self.retrying, TaskSkipped: self.skipped,
            ResourceSetUp: self.resource_set_up, ResourceTornDown: self.resource_torn_down,
            RunFinished: self.finished,
        }

    def stats(self, name) -> TaskStats:
        s = self.tasks.get(name)
        if s is None:
            s = self.tasks[name] = TaskStats(str(name), len(self.tasks))
        return s

    def _mark(self, kind: str, item) -> None:
        self.marker_counts[kind] += 1
        if len(self.markers[kind]) < MARKER_LIMIT:
            self.markers[kind].append(item)

    # -- calls -------------------------------------------------------------

    def started(self, e: TaskStarted) -> None:
        group = self.groups.get(e.where)
        if group is None:
            group = self.groups[e.where] = (len(self.groups), Lanes())
        stats = self.tasks.get(e.task) or self.stats(e.task)
        stats.calls += 1
        free = group[1].free
        lane = heapq.heappop(free) if free else group[1].take()
        self.running[e.call] = (e.time - self.t0, group, lane, stats)

    def ended(self, e) -> None:
        info = self.running.pop(e.call, None)
        if info is None:
            return
        start, (gi, lanes), lane, stats = info
        end = e.time - self.t0
        if end < start:
            end = start
        heapq.heappush(lanes.free, lane)
        stats.durations.append(e.duration)
        failed = type(e) is TaskFailed
        if failed:
            stats.failures += 1
            self._mark("failed", [round(end, 6), stats.index, error_line(e.error)])
        self.activity.add(stats.index, start, end)
        took = end - start
        bars = self.bars
        if len(bars) < BAR_LIMIT:  # (rounded for the page in summary())
            heapq.heappush(bars, (took, next(self.seq),
                                  (gi, lane, start, took, stats.index, e.call, int(failed))))
        elif took > bars[0][0]:
            heapq.heapreplace(bars, (took, next(self.seq),
                                     (gi, lane, start, took, stats.index, e.call, int(failed))))
        self.ended_calls += 1

    def tail_call(self, e: TailCall) -> None:
        self.stats(e.task).tail_calls += 1
        key = (str(e.task), str(e.target))
        self.tail_edges[key] = self.tail_edges.get(key, 0) + 1

    def retrying(self, e: TaskRetrying) -> None:
        stats = self.stats(e.task)
        stats.retries += 1
        self._mark("retry", [round(e.time - self.t0, 6), stats.index, e.attempt,
                             round(e.delay, 6), error_line(e.error)])

    def skipped(self, e: TaskSkipped) -> None:
        stats = self.stats(e.task)
        kind = "cached" if e.reason == "cached" else "skipped"
        if kind == "cached":
            stats.cache_hits += 1
        else:
            stats.skipped += 1
        self._mark(kind, [round(e.time - self.t0, 6), stats.index, e.reason])

    def resource_set_up(self, e: ResourceSetUp) -> None:
        self.resources.setdefault((e.resource, e.scope), []).append(e.time - self.t0)

    def resource_torn_down(self, e: ResourceTornDown) -> None:
        stack = self.resources.get((e.resource, e.scope))
        if stack:
            self._span(e.resource, e.scope, stack.pop(), e.time - self.t0)

    def _span(self, name, scope, start: float, end: float) -> None:
        if len(self.resource_spans) < MARKER_LIMIT:
            self.resource_spans.append([str(name), scope, round(start, 6), round(end, 6)])

    def finished(self, e: RunFinished) -> None:
        self.end = e.time - self.t0
        self.ok = e.ok
        self.error = e.error
        for start, _, _, stats in self.running.values():  # never ended: busy up to the end
            self.activity.add(stats.index, start, max(self.end, start))
        self.running.clear()
        for (name, scope), stack in self.resources.items():
            for start in stack:
                self._span(name, scope, start, self.end)

    # -- the summary ----------------------------------------------------------

    def lanes(self) -> list:
        """[title, number of lanes] per group, in group order."""
        out = []
        for where, (_, lanes) in sorted(self.groups.items(), key=lambda kv: kv[1][0]):
            title = "driver" if where == "local" else f"worker {where}"
            out.append([title, lanes.used])
        return out

    def summary(self) -> dict:
        """The record as JSON-ready data."""
        rows = [s.row() for s in self.tasks.values()]
        bars = [[g, lane, round(start, 7), round(took, 7), task, call, failed]
                for _, _, (g, lane, start, took, task, call, failed)
                in sorted(self.bars, key=lambda item: item[2][2])]
        return {
            "run_id": self.run_id, "wall": self.wall, "elapsed": self.end, "ok": self.ok,
            "tasks": rows, "lanes": self.lanes(), "bars": bars,
            "calls": sum(r["calls"] for r in rows), "ended_calls": self.ended_calls,
            "sampled": self.ended_calls > len(bars),
            "activity": self.activity.summary(self.end),
            "markers": self.markers, "marker_counts": self.marker_counts,
            "resources": self.resource_spans,
            "tail_edges": [[a, b, n] for (a, b), n in self.tail_edges.items()],
            "failure": failure_of(self.error),
        }


def failure_of(error) -> dict | None:
    """The run's failure as data: its task, one line, and the traceback's frames.

    Each frame says whether it is the user's code or the engine's (Cascade,
    asyncio, uvloop, threads), so the page can fold the engine's away.
    """
    if error is None:
        return None
    frames = []
    paths = _engine_paths()
    for frame in traceback.extract_tb(error.__traceback__):
        frames.append({"file": frame.filename, "line": frame.lineno, "name": frame.name,
                       "code": frame.line or "", "engine": _is_engine(frame.filename, paths)})
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # noqa: BLE001 - a user's __str__ may raise
        text = f"{type(error).__name__} (its message could not be read)"
    notes = [str(n) for n in getattr(error, "__notes__", None) or ()]
    return {"task": task_of(error), "type": type(error).__name__, "message": error_line(error),
            "frames": frames, "notes": notes, "text": text}


#: frames from these packages are the engine's (or the event loop's), not the user's
_ENGINE_PACKAGES = ("cascade_graph", "cascade_vm", "asyncio", "uvloop", "concurrent", "threading")


def _engine_paths() -> tuple:
    paths = []
    for name in _ENGINE_PACKAGES:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is not None:
            path = os.path.abspath(file)
            paths.append(os.path.dirname(path) + os.sep if path.endswith("__init__.py") else path)
    return tuple(paths)


def _is_engine(filename: str, paths: tuple) -> bool:
    if not filename or filename.startswith("<frozen ") or filename.startswith(
            tuple(f"{name}/" for name in _ENGINE_PACKAGES)):
        return True
    return os.path.abspath(filename).startswith(paths)
