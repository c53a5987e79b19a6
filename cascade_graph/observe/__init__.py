"""Observing a run: listeners for ``run(..., on_event=...)``.

``Trace(path)`` writes a Chrome trace-event JSON file (Perfetto,
``chrome://tracing``); ``Report(path)`` one self-contained HTML page (a
timeline, a per-task table, the workflow's graph, the failure);
``Progress()`` a live display on stderr (extra ``ui``: ``rich``); ``Log()``
a line per run and per call on the ``cascade.*`` loggers. Each is a
callable taking every event, finishing its output on ``RunFinished``, and
they combine: ``run(flow, on_event=[Trace("t.json"), Progress()])``.
"""

from .log import Log
from .progress import Progress
from .report import Report
from .trace import Trace

__all__ = ["Trace", "Report", "Progress", "Log"]
