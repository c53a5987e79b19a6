"""What nodes that stand for several calls share: the run, events, pacing.

A batch (batch.py) and a run of links (repeat.py) are one node to the
engines but many calls to the user. Running inside the engine as a plain
sync call, such a node reaches the run through ``CURRENT_RUN`` (a context
variable the run lifecycle sets) to do per call what the engine would:

- ``listened_call``: one call with its own events, when someone listens;
- ``spans``: the calls in spans sized by the run's ``Pacer`` (hotpath.py, the
  one pacing mechanism), until the run's ``yield_interval`` has passed. The
  node then returns ``pause(rest)``: a continuation (an internal async task)
  that lets the event loop run once and then calls ``rest()``, so a fan-out
  or a chain of slow sync calls yields as often as the engine's own loop
  would, and can be cancelled in between. A node of at most ``FIRST_SPAN``
  calls never reads the clock.
"""

from __future__ import annotations

from contextvars import ContextVar

from .calls import call_sync
from .hotpath import Pacer, yield_to_loop
from .lazy import Task

#: the RunContext of the run executing in this context (set by run_workflow), or None
CURRENT_RUN: ContextVar = ContextVar("cascade_run", default=None)

FIRST_SPAN = 16  # a node of at most this many calls, with no listener, never reads the clock


def listened_call(ctx, task: Task, fn, args: tuple, kwargs: dict | None = None):
    """``fn(*args, **kwargs)`` as one call of ``task`` with its events
    (``calls.call_sync``); the parent of the call is the folded node's
    (``ctx.folded_parent``)."""
    return call_sync(ctx, task, fn, args, kwargs or None, ctx.folded_parent)[0]


def spans(ctx, n: int):
    """(start, end) spans over ``n`` calls, as the run's ``Pacer`` sizes them; they stop
    early (the last end is below ``n``) once the run's ``yield_interval`` has passed."""
    pacer = Pacer(ctx.yield_interval)
    start = 0
    while start < n:
        end = min(start + pacer.batch, n)
        yield start, end
        if end < n and pacer.due():
            return
        start = end


async def _paused(rest, parent):
    await yield_to_loop()
    ctx = CURRENT_RUN.get()
    if ctx is not None:
        ctx.folded_parent = parent
    return rest()


_PAUSE = Task(_paused, name="<pause>")
_PAUSE.internal = True


def pause(rest):
    """The continuation of a folded node that stopped for the event loop: yield once,
    then ``rest()`` (a value, or the next continuation)."""
    ctx = CURRENT_RUN.get()
    return _PAUSE(rest, None if ctx is None else ctx.folded_parent)


__all__ = ["CURRENT_RUN", "FIRST_SPAN", "listened_call", "pause", "spans"]
