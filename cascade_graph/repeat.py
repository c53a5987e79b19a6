"""Link runs: a chain of one task's calls held as one template node.

A chain ``link(link(...link(x)))`` is a run of *links*: calls of one task
whose only argument is the next call down. As template nodes, each link would
cost a record, a compiled instruction and a dispatch on both engines every
time a new chain is seen. ``build_template`` (template.py) collapses each run
of two or more links of one plain sync task in a tree into one node: a call
of a ``RepeatTask`` ("apply ``link`` ``count`` times") on the run's base, so
a cold 10,000-link chain compiles to two calls. The user's ``LazyResult``s
are untouched; only the template is smaller.

Semantics kept link by link (what each link's own node would do):

- events: with a listener (reached through ``folded.CURRENT_RUN``), each link emits
  ``TaskStarted``/``TaskFinished``, ``TaskFailed`` when it raises and
  ``TailCall`` when it returns a lazy call; the run node itself is internal.
  When the base is skipped, the run reports one ``TaskSkipped`` per link
  (``counts_as``).
- errors: the engines note a failure with the run's name, the link task's.
- tail calls: a link returning a lazy call ends the loop; the run's value is
  then a continuation that applies the remaining links to that call's value
  (the top link's own continuation is the value itself), which both engines
  evaluate like any tail call.
- pacing: a long run stops once the run's ``yield_interval`` has passed and
  continues after the event loop has run (``folded.pause``).
"""

from __future__ import annotations

from functools import partial

from .folded import CURRENT_RUN, FIRST_SPAN, listened_call, pause, spans
from .lazy import _LAZY_TYPES, Task, derived_task

_KEEP = 256  # run tasks kept per link task (one per run length seen)


class RepeatTask(Task):
    """The internal task of a run: apply ``link`` ``count`` times to the value below."""

    internal = True
    folded = True
    reports_skips = True  # a skipped run reports each of its links (counts_as)

    @classmethod
    def of(cls, link: Task, count: int) -> RepeatTask:
        return derived_task(link, "_repeats", count, lambda: cls(link, count), keep=_KEEP)

    def __init__(self, link: Task, count: int):
        self.link = link
        self.count = count
        super().__init__(self._run, name=link.name)

    @property
    def counts_as(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"<{self.count} links of {self.link.name}>"

    def _run(self, v):
        ctx = CURRENT_RUN.get()
        fn = self.link.fn
        count = self.count
        lazy = _LAZY_TYPES
        if ctx is None or (ctx.emit is None and count <= FIRST_SPAN):
            for done in range(1, count + 1):
                v = fn(v)
                if type(v) in lazy:
                    return self.continuation(v, done)
            return v
        end = 0
        for start, end in spans(ctx, count):
            for done in range(start + 1, end + 1):
                v = fn(v) if ctx.emit is None else listened_call(ctx, self.link, fn, (v,))
                if type(v) in lazy:
                    return self.continuation(v, done)
        if end < count:  # the run's yield interval has passed: the rest after a pause
            return pause(partial(RepeatTask.of(self.link, count - end)._run, v))
        return v

    def continuation(self, v, done: int):
        """The continuation after ``done`` links, the last of which returned lazy ``v``."""
        left = self.count - done
        if left == 0:
            return v
        if left == 1:
            return self.link(v)
        return RepeatTask.of(self.link, left)(v)


__all__ = ["RepeatTask"]
