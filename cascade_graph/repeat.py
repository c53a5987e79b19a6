"""Link runs: a chain of one task's calls held as one template node.

A chain ``link(link(...link(x)))`` is a run of *links*: calls of one task
whose first argument is the next call down and whose other arguments, if
any, are literals in one layout (``step(x)``, ``step(x, 1)``,
``step(x, scale=2)``). As template nodes, each link would cost a record, a
compiled instruction and a dispatch on both engines every time a new chain
is seen. ``build_template`` (template.py) collapses each run of two or more
links of one plain sync task and layout in a tree into one node: a call of a
``RepeatTask`` ("apply ``link`` ``count`` times") on the run's base, so a
cold 10,000-link chain compiles to two calls. The links' literals are the
run node's inputs, the top link's first (canonical order), so a run binds
exactly the inputs its links would. The user's ``LazyResult``s are
untouched; only the template is smaller.

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

from .calls import keyword_caller, positional_form
from .folded import CURRENT_RUN, FIRST_SPAN, listened_call, pause, spans
from .lazy import _LAZY_TYPES, _ONE_LAZY_SPEC, Task, _literal_link_spec, derived_task

_KEEP = 256  # run tasks kept per link task (one per run length seen)


class RepeatTask(Task):
    """The internal task of a run: apply ``link`` ``count`` times to the value below,
    link ``j`` (counted from the top, 0) with literals ``lits[j*width:(j+1)*width]``."""

    internal = True
    folded = True
    reports_skips = True  # a skipped run reports each of its links (counts_as)

    @classmethod
    def of(cls, link: Task, count: int, spec=None) -> RepeatTask:
        """The run of ``count`` links of ``link`` with argument spec ``spec`` (a link's:
        one lazy argument, or a link with literals; None for the former)."""
        layout = None if spec is None or spec is _ONE_LAZY_SPEC else (len(spec[0]), spec[1])
        return derived_task(link, "_repeats", (count, layout),
                            lambda: cls(link, count, layout), keep=_KEEP)

    def __init__(self, link: Task, count: int, layout: tuple | None = None):
        self.link = link
        self.count = count
        self.layout = layout  # (positional arguments, keyword names); None: one argument
        if layout is None:
            self.width = 0  # literals per link
            self.call = link.fn  # called with the value below, then the link's literals
        else:
            npos, kwnames = layout
            self.width = npos - 1 + len(kwnames)
            self.call = link.fn if not kwnames else (positional_form(link.fn, npos, kwnames)
                                                     or keyword_caller(link.fn, npos, kwnames))
        super().__init__(self._run, name=link.name)

    @property
    def counts_as(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"<{self.count} links of {self.link.name}>"

    def _run(self, v, *lits):
        ctx = CURRENT_RUN.get()
        count = self.count
        if ctx is None or (ctx.emit is None and count <= FIRST_SPAN):
            return self._links(v, 0, count, lits, None)[0]
        end = 0
        for start, end in spans(ctx, count):
            v, tail_called = self._links(v, start, end, lits, ctx)
            if tail_called:
                return v
        if end < count:  # the run's yield interval has passed: the rest after a pause
            left = count - end
            rest = RepeatTask.of(self.link, left, self._spec())
            return pause(partial(rest._run, v, *lits[:left * self.width]))
        return v

    def _links(self, v, start: int, end: int, lits: tuple, ctx) -> tuple:
        """Links ``start + 1 .. end`` (counted from the bottom, 1) on value ``v``:
        (value, False), or (the run's continuation, True) when one returned a lazy."""
        call = self.call
        width = self.width
        lazy = _LAZY_TYPES
        if ctx is None or ctx.emit is None:
            if not width:
                for done in range(start + 1, end + 1):
                    v = call(v)
                    if type(v) in lazy:
                        return self.continuation(v, done), True
                return v, False
            count = self.count
            done = start
            span = lits[(count - end) * width:(count - start) * width]  # these links', top first
            if width == 1:  # (``step(x, 1)``, ``step(x, scale=2)``)
                for lit in reversed(span):  # the bottom link first
                    v = call(v, lit)
                    done += 1
                    if type(v) in lazy:
                        return self.continuation(v, done, lits), True
                return v, False
            # each link's literals as one tuple, made by zip (no slice per link)
            for row in reversed(list(zip(*[span[k::width] for k in range(width)]))):
                v = call(v, *row)
                done += 1
                if type(v) in lazy:
                    return self.continuation(v, done, lits), True
            return v, False
        count = self.count
        for done in range(start + 1, end + 1):  # someone listens: each link's events
            j = (count - done) * width  # the link's literals (the top link's come first)
            v = listened_call(ctx, self.link, call, (v, *lits[j:j + width]))
            if type(v) in lazy:
                return self.continuation(v, done, lits), True
        return v, False

    def _spec(self):
        """The spec of this run's links (None: one lazy argument)."""
        return None if self.layout is None else _literal_link_spec(*self.layout)

    def continuation(self, v, done: int, lits: tuple = ()):
        """The continuation after ``done`` links, the last of which returned lazy ``v``:
        the links above, with their literals (the first ``left`` links' of ``lits``)."""
        left = self.count - done
        if left == 0:
            return v
        if left > 1:
            return RepeatTask.of(self.link, left, self._spec())(v, *lits[:left * self.width])
        if self.layout is None:
            return self.link(v)
        npos, kwnames = self.layout  # the top link, as the user wrote it
        return self.link(v, *lits[:npos - 1], **dict(zip(kwnames, lits[npos - 1:self.width])))


__all__ = ["RepeatTask"]
