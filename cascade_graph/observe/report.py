"""``Report(path)``: one self-contained HTML page per run, written when it ends.

The listener feeds a ``RunRecord`` (record.py: bounded, sampled) while the
run goes, and on ``RunFinished`` (also a failed run's) writes the page
(page.py): the timeline, the per-task table, the workflow's graph and the
failure with its traceback. The graph needs the workflow itself: the run
hands it over through ``observe_workflow(target)`` before ``RunStarted``
(see ``context.show_workflow``); it is drawn when the page is written, so
the run is not slowed by it.

A ``Report`` writes one run at a time; running it again overwrites the file.
"""

from __future__ import annotations

import os

from ..events import RunFinished, RunStarted
from .record import RunRecord


class Report:
    """An ``on_event`` listener writing an HTML report of the run to ``path``.

    ``title`` names the page (default: "cascade run N").
    """

    def __init__(self, path, title: str | None = None):
        self.path = os.fspath(path)
        self.title = title
        self._target = None  # the workflow, for the graph (set by observe_workflow)
        self._has_target = False
        self._record: RunRecord | None = None
        self._on = {RunStarted: self._run_started}  # event type -> handler, per run

    def __repr__(self) -> str:
        return f"Report({self.path!r})"

    def observe_workflow(self, target) -> None:
        """The run's target, handed over before ``RunStarted``: the graph is drawn from it."""
        self._target = target
        self._has_target = True

    def __call__(self, event) -> None:
        handler = self._on.get(type(event))
        if handler is not None:
            handler(event)

    def _run_started(self, e: RunStarted) -> None:
        record = self._record = RunRecord(e)
        on = dict(record.on)
        on[RunFinished] = self._run_finished
        on[RunStarted] = self._run_started
        self._on = on

    def _run_finished(self, e: RunFinished) -> None:
        self._record.finished(e)
        self._write()

    def _write(self) -> None:
        from .page import render

        record, self._record = self._record, None
        target, has_target = self._target, self._has_target
        self._target, self._has_target = None, False
        self._on = {RunStarted: self._run_started}
        html = render(record, target if has_target else _NO_TARGET, self.title)
        tmp = self.path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, self.path)


#: no workflow was handed over: the page has no graph
_NO_TARGET = object()
