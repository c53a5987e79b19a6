"""Cascade's loggers, and the warnings the engine writes on its failure paths.

Loggers, all under ``cascade`` (which gets a ``NullHandler``: nothing is
printed unless the application configures logging, as the CLI's ``-v`` and
``-q`` do):

- ``cascade.run``: a run's start and end (INFO, by ``observe.Log``);
- ``cascade.task``: a task call that failed, and each retry (WARNING, here,
  called by the call protocol); one line per call, skips and cache hits
  (DEBUG, by ``observe.Log``);
- ``cascade.resource``: a set-up or teardown that raised (WARNING, here,
  called by resources.py); each set-up and teardown (DEBUG, ``observe.Log``).

The warnings are written by the engine itself, with or without a listener:
failures and retries are rare, so an unobserved run pays for them only when
they happen (a level check first), never per call.
"""

from __future__ import annotations

import logging

logging.getLogger("cascade").addHandler(logging.NullHandler())
run_log = logging.getLogger("cascade.run")
task_log = logging.getLogger("cascade.task")
resource_log = logging.getLogger("cascade.resource")


def error_line(error) -> str:
    """``'ValueError: first line of the message'`` (the type alone if ``str()`` fails)."""
    if error is None:
        return ""
    try:
        lines = str(error).strip().splitlines()
    except Exception:  # noqa: BLE001 - a user's __str__ may raise; the type still says a lot
        lines = []
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _who(name, call) -> str:
    return f"task {name!r}" + (f" (call {call})" if call else "")


def warn_failed(name, call, error) -> None:
    """Task ``name``'s call ``call`` (0: not numbered, nobody listens) raised ``error``."""
    if task_log.isEnabledFor(logging.WARNING):
        task_log.warning("%s failed: %s", _who(name, call), error_line(error))


def warn_retry(name, call, attempt: int, attempts: int, delay: float) -> None:
    """Attempt ``attempt`` of ``attempts`` failed; the next starts after ``delay`` seconds."""
    if task_log.isEnabledFor(logging.WARNING):
        task_log.warning("%s will be retried in %.3g s (attempt %d of %d)", _who(name, call),
                         delay, attempt + 1, attempts)


def warn_resource(name, scope, what: str, error) -> None:
    """Resource ``name`` failed to ``what`` ("set up" or "tear down") with ``error``."""
    if resource_log.isEnabledFor(logging.WARNING):
        resource_log.warning("resource %r (%s scope) failed to %s: %s", name, scope, what,
                             error_line(error))
