"""The command line's observability flags: ``--progress``, ``--trace``, ``--report``, ``-v``/``-q``.

``add_arguments`` adds them to the ``run`` command; ``observing(args)`` is
a context manager that configures logging for the command and yields the
``on_event`` listeners the flags ask for (an empty list when none, so an
unobserved run pays nothing).

- ``--progress``: ``Progress(force=True)``. Asking for it is explicit, so it
  shows even when stderr is not a terminal (then as one final summary, with
  no control codes); without the flag nothing is shown. Needs the ``ui``
  extra; without ``rich``: exit 2, one line saying ``pip install 'cascade[ui]'``.
- ``--trace FILE.json`` / ``--report FILE.html``: ``Trace`` / ``Report``.
  The report is written also when the run fails (then with the traceback).
  A folder that does not exist is bad usage (exit 2) before anything runs.
- ``-v`` / ``-v -v``: the ``cascade`` loggers at INFO (failures, retries and
  resource errors at WARNING, and a line per run) or DEBUG (also a line per
  task call), written as ``LEVEL logger: message`` lines to stderr; the
  ``Log`` listener is attached for them. Without ``-v`` (and with ``-q``)
  only errors: a run's stderr is then exactly what SPEC section 6 says (on
  exit 1, one line naming the task and the error, then the traceback), and
  an unobserved run stays unobserved. Nothing goes to stdout but the result.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

_LEVELS = {-1: logging.ERROR, 0: logging.ERROR, 1: logging.INFO}  # 2 or more: DEBUG


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (the live
    display replaces it while it runs, and tests capture it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The observability flags of ``run``."""
    group = parser.add_argument_group("observing the run")
    group.add_argument("--progress", action="store_true",
                       help="show a live display of the run on stderr (needs cascade[ui])")
    group.add_argument("--trace", metavar="FILE.json",
                       help="write every call to FILE.json in the Chrome trace format "
                       "(open it in ui.perfetto.dev or chrome://tracing)")
    group.add_argument("--report", metavar="FILE.html",
                       help="write a self-contained HTML report of the run (also when it fails)")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="count", default=0,
                      help="log to stderr: -v failures, retries, resource errors and a line "
                      "per run; -v -v also a line per task call")
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="errors only (the default)")


def _output(path: str | None, flag: str, usage_error: type) -> str | None:
    if path is None:
        return None
    target = Path(path).expanduser()
    folder = target.parent
    if not folder.is_dir():
        raise usage_error(f"cannot write {flag} {path}: no such folder {str(folder)!r}")
    if target.is_dir():
        raise usage_error(f"cannot write {flag} {path}: it is a folder; give a file name")
    return str(target)


def listeners(args: argparse.Namespace, usage_error: type) -> list:
    """The ``on_event`` listeners the flags ask for (``usage_error`` for bad ones)."""
    out: list = []
    trace = _output(getattr(args, "trace", None), "--trace", usage_error)
    report = _output(getattr(args, "report", None), "--report", usage_error)
    if getattr(args, "progress", False):
        from cascade_graph.observe.progress import INSTALL_HINT, Progress

        try:
            out.append(Progress(force=True))
        except ImportError:
            raise usage_error("--progress: " + INSTALL_HINT) from None
    if trace is not None:
        from cascade_graph.observe import Trace

        out.append(Trace(trace))
    if report is not None:
        from cascade_graph.observe import Report

        out.append(Report(report))
    if _verbosity(args) >= 1:
        from cascade_graph.observe.log import Log

        out.append(Log())
    return out


def _verbosity(args: argparse.Namespace) -> int:
    return -1 if getattr(args, "quiet", False) else int(getattr(args, "verbose", 0) or 0)


@contextlib.contextmanager
def observing(args: argparse.Namespace, usage_error: type):
    """Configure the ``cascade`` loggers for this command; yield its listeners."""
    found = listeners(args, usage_error)
    logger = logging.getLogger("cascade")
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.setLevel(_LEVELS.get(_verbosity(args), logging.DEBUG))
    logger.propagate = False  # the application's root handlers would print it twice
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
