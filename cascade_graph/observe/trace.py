"""``Trace(path)``: a run written as a Chrome trace-event JSON file, as it runs.

The file opens in Perfetto (ui.perfetto.dev, "Open trace file") and in
``chrome://tracing``. It is the JSON object format::

    {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}

What goes in it (timestamps ``ts`` and durations ``dur`` in microseconds
since ``RunStarted``; ``pid`` is a lane group, ``tid`` a lane in it):

- one complete event (``ph: "X"``) per invocation, from its ``TaskStarted``
  to its ``TaskFinished``/``TaskFailed`` (so ``dur`` is the event's
  ``duration``), ``args`` holding its ``call`` id, ``parent`` and ``where``
  (and the error of a failed one);
- lanes: the driver's calls are process 1, each worker (``TaskStarted.where``
  under a distributed executor) a process of its own, the resources one
  more; within a group a call takes the lowest lane free when it starts
  (``lanes.py``), so overlapping calls never share a lane;
- instant events (``ph: "i"``): a retry on the lane of the failed attempt,
  skips and cache hits on the group's first lane ("skips & cache hits");
- flow events (``ph: "s"`` then ``"f"``, one ``id`` per arrow) for tail
  calls: from the middle of the calling invocation to the start of every
  call whose ``parent`` is it, each end bound to its enclosing slice;
- resources as complete events from set-up to tear-down;
- metadata events (``ph: "M"``) naming every process and lane.

Cheap and streaming: each event is formatted by hand (one f-string) into a
list that is written out every few thousand entries, so memory stays flat
whatever the run's length. State kept per run: the calls running now, the
call that ended last (the protocol emits a ``TailCall`` and a
``TaskRetrying`` right after their call's end), bounded tables of failed
and remote calls (``TaskRetrying`` may come later) and of tail callers (the
parents of calls still to start). An arrow whose parent fell out of that
table (after 65,536 newer tail calls) is left out, never drawn half.

A ``Trace`` writes one run at a time; running it again overwrites the file.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from heapq import heappop, heappush

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

_US = 1e6  # microseconds per second
_FLUSH_EVERY = 4096  # formatted events held before they are written
_RECENT = 1024  # ended calls remembered for a following TailCall / TaskRetrying
_TAIL_CALLERS = 65536  # tail callers remembered for the calls of their continuations
#: the two ends of a tail call's arrow: id, source pid, tid, ts, id, target pid, tid, ts
_ARROW = ('{"ph":"s","name":"tail call","cat":"tail","id":%d,"pid":%d,"tid":%d,"ts":%.3f},\n'
          '{"ph":"f","bp":"e","name":"tail call","cat":"tail","id":%d,"pid":%d,"tid":%d,"ts":%.3f}')
#: one call: name (JSON), pid, tid, ts, dur, colour, call, further arguments
_SLICE = ('{"ph":"X","name":%s,"cat":"task","pid":%d,"tid":%d,"ts":%.3f,"dur":%.3f%s,'
          '"args":{"call":%d%s}}')
#: a call made by a tail call: name (JSON), pid, tid, ts, dur, call, parent
_CHILD_SLICE = ('{"ph":"X","name":%s,"cat":"task","pid":%d,"tid":%d,"ts":%.3f,"dur":%.3f,'
                '"args":{"call":%d,"parent":%d}}')
_MARKERS = 0  # tid of a group's lane for skips and cache hits; call lanes start at 1


def _json(text) -> str:
    return json.dumps(str(text), ensure_ascii=False)


class Trace:
    """An ``on_event`` listener writing the run to ``path`` in the Chrome trace format."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._run = None  # the run being written (_TraceRun), or None between runs
        self._on = {RunStarted: self._run_started}  # event type -> handler, per run

    def __repr__(self) -> str:
        return f"Trace({self.path!r})"

    def __call__(self, event) -> None:
        handler = self._on.get(type(event))
        if handler is not None:
            handler(event)

    def _run_started(self, e) -> None:
        if self._run is not None:  # the last run never finished: keep what it wrote
            self._run.close()
        run = self._run = _TraceRun(self.path, e)
        self._on = {
            RunStarted: self._run_started,
            RunFinished: self._run_finished,
            TaskStarted: run.started,
            TaskFinished: run.ended,
            TaskFailed: run.ended,
            TailCall: run.tail_call,
            TaskRetrying: run.retrying,
            TaskSkipped: run.skipped,
            ResourceSetUp: run.resource_set_up,
            ResourceTornDown: run.resource_torn_down,
        }

    def _run_finished(self, e) -> None:
        run, self._run = self._run, None
        self._on = {RunStarted: self._run_started}
        run.finish(e)


class _TraceRun:
    """The state of one run being written."""

    __slots__ = ("file", "out", "t0", "names", "groups", "lanes", "running", "recent", "last",
                 "local_free",
                 "tailers", "resources", "run_id", "wall", "marker_groups")

    def __init__(self, path: str, start: RunStarted):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish
        self.t0 = start.time
        self.run_id = start.run_id
        self.wall = start.wall
        self.names: dict = {}  # task name -> its JSON string
        self.groups: dict = {}  # where ("local", a worker, "resources") -> pid
        self.lanes: dict = {}  # pid -> Lanes
        self.running: dict = {}  # call -> (ts, pid, tid, name, parent, where)
        self.last = None  # (call, pid, tid, ts, dur) of the call that ended last
        self.recent = OrderedDict()  # call -> the same, for failed calls and workers' calls
        self.tailers: dict = {}  # call -> (pid, tid, ts) where its tail-call arrows leave
        self.resources: dict = {}  # (resource, scope) -> stack of (ts, tid)
        self.marker_groups: set = set()  # pids whose marker lane was used
        self.out = ['{"traceEvents":[\n'
                    '{"ph":"M","name":"process_name","pid":0,"tid":0,'
                    f'"args":{{"name":"cascade run {start.run_id}"}}}}']
        self._group("local")
        self.local_free = self.lanes[1].free  # the driver's free lanes (pid 1), a heap

    # -- plumbing ---------------------------------------------------------

    def _ts(self, t: float) -> float:
        return (t - self.t0) * _US

    def _name(self, name) -> str:
        j = self.names.get(name)
        if j is None:
            j = self.names[name] = _json(name)
        return j

    def _group(self, where) -> int:
        pid = self.groups.get(where)
        if pid is None:
            pid = self.groups[where] = len(self.groups) + 1
            self.lanes[pid] = Lanes()
        return pid

    def _write(self, text: str) -> None:
        out = self.out
        out.append(text)
        if len(out) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        out = self.out
        self.file.write(",\n".join(out))
        out.clear()
        out.append("")  # the next entry starts with a separator

    # -- calls ------------------------------------------------------------

    def started(self, e: TaskStarted) -> None:
        where = e.where
        if where == "local":
            pid = 1
            free = self.local_free
        else:
            pid = self.groups.get(where) or self._group(where)
            free = self.lanes[pid].free
        tid = (heappop(free) if free else self.lanes[pid].take()) + 1
        ts = (e.time - self.t0) * _US
        call = e.call
        parent = e.parent
        self.running[call] = (ts, pid, tid, e.task, parent, where)
        if parent is not None:
            source = self.tailers.get(parent)
            if source is not None:  # both ends of the arrow, written together
                out = self.out
                out.append(_ARROW % (call, *source, call, pid, tid, ts))
                if len(out) >= _FLUSH_EVERY:
                    self._flush()

    def ended(self, e) -> None:
        call = e.call
        info = self.running.pop(call, None)
        if info is None:  # an end with no start (not expected): nothing to draw
            return
        ts, pid, tid, name, parent, where = info
        dur = (e.time - self.t0) * _US - ts
        if dur < 0.0:
            dur = 0.0
        heappush(self.lanes[pid].free, tid - 1)
        self.last = (call, pid, tid, ts, dur)
        jname = self.names.get(name) or self._name(name)
        out = self.out
        if where == "local" and type(e) is TaskFinished:  # the common case: one format
            if parent is None:
                out.append(_SLICE % (jname, pid, tid, ts, dur, "", call, ""))
            else:
                out.append(_CHILD_SLICE % (jname, pid, tid, ts, dur, call, parent))
        else:
            extra = "" if parent is None else f',"parent":{parent}'
            extra, colour = self._extra(e, where, extra)
            out.append(_SLICE % (jname, pid, tid, ts, dur, colour, call, extra))
        if len(out) >= _FLUSH_EVERY:
            self._flush()

    def _extra(self, e, where, extra: str) -> tuple[str, str]:
        """The arguments of a slice that ran on a worker or failed, and its colour."""
        recent = self.recent  # ended calls a TaskRetrying may still name
        recent[e.call] = self.last
        if len(recent) > _RECENT:
            recent.popitem(last=False)
        if where != "local":
            extra += f',"where":{_json(where)}'
        if type(e) is not TaskFailed:
            return extra, ""
        return extra + f',"error":{_json(error_line(e.error))}', ',"cname":"terrible"'

    def _ended_call(self, call: int):
        """(call, pid, tid, ts, dur) of an ended call, or None when forgotten."""
        last = self.last
        if last is not None and last[0] == call:
            return last
        return self.recent.get(call)

    def tail_call(self, e: TailCall) -> None:
        ended = self.last
        if ended is None or ended[0] != e.call:
            ended = self.recent.get(e.call)
            if ended is None:
                return
        call, pid, tid, ts, dur = ended
        tailers = self.tailers
        tailers[call] = (pid, tid, ts + dur / 2)
        if len(tailers) > _TAIL_CALLERS:  # keep the newer half (calls are numbered in order)
            self.tailers = dict(sorted(tailers.items())[_TAIL_CALLERS // 2:])

    def retrying(self, e: TaskRetrying) -> None:
        ended = self._ended_call(e.call)
        pid, tid = (ended[1], ended[2]) if ended is not None else self._marker_lane("local")
        self._write(f'{{"ph":"i","s":"t","name":{_json("retry " + str(e.task))},"cat":"retry",'
                    f'"pid":{pid},"tid":{tid},"ts":{self._ts(e.time):.3f},'
                    f'"args":{{"call":{e.call},"attempt":{e.attempt},"delay":{e.delay!r},'
                    f'"error":{_json(error_line(e.error))}}}}}')

    def _marker_lane(self, where) -> tuple[int, int]:
        pid = self._group(where)
        self.marker_groups.add(pid)
        return pid, _MARKERS

    def skipped(self, e: TaskSkipped) -> None:
        pid, tid = self._marker_lane("local")
        label = "cache hit" if e.reason == "cached" else "skipped"
        self._write(f'{{"ph":"i","s":"t","name":{_json(f"{label} {e.task}")},"cat":{_json(label)},'
                    f'"pid":{pid},"tid":{tid},"ts":{self._ts(e.time):.3f},'
                    f'"args":{{"call":{e.call},"reason":{_json(e.reason)}}}}}')

    # -- resources ----------------------------------------------------------

    def resource_set_up(self, e: ResourceSetUp) -> None:
        pid = self._group("resources")
        tid = self.lanes[pid].take() + 1
        self.resources.setdefault((e.resource, e.scope), []).append((self._ts(e.time), tid))

    def resource_torn_down(self, e: ResourceTornDown) -> None:
        stack = self.resources.get((e.resource, e.scope))
        if stack:
            ts, tid = stack.pop()
            self._resource_span(e.resource, e.scope, ts, tid, self._ts(e.time))

    def _resource_span(self, resource, scope, ts: float, tid: int, end: float) -> None:
        pid = self.groups["resources"]
        self.lanes[pid].give_back(tid - 1)
        self._write(f'{{"ph":"X","name":{_json(resource)},"cat":"resource","pid":{pid},'
                    f'"tid":{tid},"ts":{ts:.3f},"dur":{max(end - ts, 0.0):.3f},'
                    f'"args":{{"scope":{_json(scope)}}}}}')

    # -- the end ------------------------------------------------------------

    def finish(self, e: RunFinished) -> None:
        end = self._ts(e.time)
        for call, info in list(self.running.items()):  # calls that never ended: up to the end
            ts, pid, tid, name, _, _ = info
            self._write(f'{{"ph":"X","name":{self._name(name)},"cat":"task","pid":{pid},'
                        f'"tid":{tid},"ts":{ts:.3f},"dur":{max(end - ts, 0.0):.3f},'
                        f'"args":{{"call":{call},"unfinished":true}}}}')
        for (resource, scope), stack in self.resources.items():
            for ts, tid in stack:
                self._resource_span(resource, scope, ts, tid, end)
        self._write(f'{{"ph":"i","s":"g","name":{_json("run ok" if e.ok else "run failed")},'
                    f'"cat":"run","pid":1,"tid":{_MARKERS},"ts":{end:.3f}}}')
        self.marker_groups.add(1)
        self._metadata()
        other = {"run_id": self.run_id, "wall_start": self.wall, "ok": e.ok}
        if e.error is not None:
            other["error"] = error_line(e.error)
        self.file.write(",\n".join(self.out))
        self.out = []
        self.file.write('\n],"displayTimeUnit":"ms","otherData":'
                        + json.dumps(other, ensure_ascii=False) + "}\n")
        self.close()

    def _metadata(self) -> None:
        for where, pid in self.groups.items():
            title = {"local": "driver (local)", "resources": "resources"}.get(where,
                                                                              f"worker {where}")
            self._write(f'{{"ph":"M","name":"process_name","pid":{pid},"tid":0,'
                        f'"args":{{"name":{_json(title)}}}}}')
            self._write(f'{{"ph":"M","name":"process_sort_index","pid":{pid},"tid":0,'
                        f'"args":{{"sort_index":{pid}}}}}')
            kind = "resource" if where == "resources" else "slot"
            for lane in range(self.lanes[pid].used):
                self._write(f'{{"ph":"M","name":"thread_name","pid":{pid},"tid":{lane + 1},'
                            f'"args":{{"name":"{kind} {lane + 1}"}}}}')
            if pid in self.marker_groups:
                self._write(f'{{"ph":"M","name":"thread_name","pid":{pid},"tid":{_MARKERS},'
                            f'"args":{{"name":"skips & cache hits"}}}}')

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
