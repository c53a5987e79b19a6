"""``Log()``: the run told to the standard ``logging`` module, one line per call.

Loggers (all under ``cascade``; the package adds a ``NullHandler`` to
``cascade``, so nothing is printed unless the application configures
logging, as the CLI's ``-v``/``-q`` do):

- ``cascade.run``: INFO when a run starts and when it ends (ok or failed,
  with its time and how many calls it made);
- ``cascade.task``: DEBUG, one line per task call when it ends (its call
  id, parent, where it ran, its duration, and the task it tail-called),
  and a line per skip or cache hit;
- ``cascade.resource``: DEBUG per set-up and teardown.

Failures, retries and resource errors are logged at WARNING by the engine
itself, on its failure paths (``cascade_graph/logs.py``), with or without
this listener: they are rare, so logging them costs an unobserved run
nothing, and this listener does not repeat them.

The listener checks the loggers' levels when the run starts: a run whose
loggers would drop every line costs one dictionary lookup per event.
"""

from __future__ import annotations

import logging

from ..events import (
    ResourceSetUp,
    ResourceTornDown,
    RunFinished,
    RunStarted,
    TailCall,
    TaskFailed,
    TaskFinished,
    TaskSkipped,
    TaskStarted,
)
from ..logs import error_line, resource_log, run_log, task_log


class Log:
    """An ``on_event`` listener writing the run to the ``cascade.*`` loggers."""

    def __init__(self):
        self._on = {RunStarted: self._run_started}
        self._t0 = 0.0
        self._calls = 0
        self._parents: dict = {}  # call -> (parent, where) while it runs
        self._pending = None  # the last ended call's line, held for a following TailCall

    def __call__(self, event) -> None:
        handler = self._on.get(type(event))
        if handler is not None:
            handler(event)

    def _run_started(self, e: RunStarted) -> None:
        self._t0 = e.time
        self._calls = 0
        self._parents = {}
        self._pending = None
        on = {RunStarted: self._run_started, RunFinished: self._run_finished,
              TaskStarted: self._counted}
        if task_log.isEnabledFor(logging.DEBUG):
            on.update({TaskStarted: self._task_started, TaskFinished: self._task_ended,
                       TaskFailed: self._task_ended, TailCall: self._tail_call,
                       TaskSkipped: self._skipped})
        if resource_log.isEnabledFor(logging.DEBUG):
            on.update({ResourceSetUp: self._resource, ResourceTornDown: self._resource})
        self._on = on
        run_log.info("run %d started", e.run_id)

    def _counted(self, e) -> None:
        self._calls += 1

    def _task_started(self, e: TaskStarted) -> None:
        self._calls += 1
        self._parents[e.call] = (e.parent, e.where)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            task_log.debug("%s", pending)

    def _task_ended(self, e) -> None:
        self._flush()
        parent, where = self._parents.pop(e.call, (None, "local"))
        line = f"call {e.call} {e.task!s}"
        if type(e) is TaskFailed:
            line += f" failed after {_ms(e.duration)}: {error_line(e.error)}"
        else:
            line += f" finished in {_ms(e.duration)}"
        if parent is not None:
            line += f" (parent {parent})"
        if where != "local":
            line += f" on {where}"
        self._pending = line

    def _tail_call(self, e: TailCall) -> None:
        if self._pending is not None:
            self._pending += f", tail call to {e.target!s}"
        self._flush()

    def _skipped(self, e: TaskSkipped) -> None:
        self._flush()
        if e.reason == "cached":
            task_log.debug("%s: cache hit", e.task)
        else:
            task_log.debug("%s skipped (%s)", e.task, e.reason)

    def _resource(self, e) -> None:
        self._flush()
        what = "set up" if type(e) is ResourceSetUp else "torn down"
        resource_log.debug("resource %r (%s scope) %s", e.resource, e.scope, what)

    def _run_finished(self, e: RunFinished) -> None:
        self._flush()
        self._on = {RunStarted: self._run_started}
        took = e.time - self._t0
        if e.ok:
            run_log.info("run %d finished in %s (%s calls)", e.run_id, _ms(took),
                         f"{self._calls:,}")
        else:
            run_log.info("run %d failed after %s (%s calls): %s", e.run_id, _ms(took),
                         f"{self._calls:,}", error_line(e.error))


def _ms(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s"
