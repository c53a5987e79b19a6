"""Batches: a fan-in's list of like flat calls, held as one node.

A fan-out builds many calls of one task whose arguments are all literals
(``[double(i) for i in range(n)]``) and hands the list to one consumer. As
nodes, each item would cost a template record, a compiled instruction and a
dispatch, on both engines, every time such a workflow is cold. When the
consumer is created, ``batch_of`` (called from the argument scan in lazy.py)
replaces such a list, in the consumer's structure, by one hidden child node:
a flat call of a ``BatchTask`` whose one literal input is the tuple of item
calls. Its value is the list (or tuple) of the items' values, computed by a
C-level ``starmap`` over the items' arguments.

The template therefore does not grow with the list: a 2,000-item fan-out and
a 3-item one share one template of two nodes, and binding a new run is the
same O(1) as for any flat call. The user's ``LazyResult``s are unchanged
(the consumer's ``args`` still hold the list), so the reference evaluator,
``to_dot`` and routes see the workflow as written.

When a list is batched (all must hold, else the items stay nodes):

- at least ``BATCH_MIN`` items, all ``LazyResult``s of one shape that is a
  flat call (literals only, positional or keyword, no policy): so one task,
  one arity, the same keyword names;
- the task is plain: sync, not offloaded, not internal (a concurrency limit
  holds nothing back for sync calls made one after the other: ``calls.direct``).
  It may inject resources: when the batch runs in a run nobody listens to and
  each one is there or can be set up in line (``injected_values``), its items
  take them; else the items run as nodes (the gather of them), through
  ``invoke``;
- every item is fresh: distinct, not used by another call yet, not copied.
  (A policy copy of the consumer, `.run_if` and friends, shares its
  original's batch, as it shares its children: `batch_in`.)

The items are then marked used (``uses = 1``), so a later call that reuses
one is not a tree, and the template walk of such a DAG expands the batch back
into item nodes (``expanded_members``): the item runs once, as a node, and
the batch's value is built from the item nodes by the consumer's container
(``gather_node`` in template.py). A tree never needs that.

Semantics kept item by item:

- events: with a listener, each item emits ``TaskStarted``/``TaskFinished``
  (``TaskFailed`` on an error, ``TailCall`` when it returns a lazy call), as
  its node would; the batch itself is internal and emits nothing (see
  folded.py for how it reaches the run).
- pacing: a long batch stops once the run's ``yield_interval`` has passed
  and continues after the event loop has run (``folded.pause``), as the
  engines' loops do between nodes.
- errors: the first item to raise stops the batch; the engines note the
  error with the batch's name, which is the item task's name.
- tail calls: items returning lazy calls make the batch tail-call into the
  consumer's gather of the values (``_collect``, or the run's container
  target for a target list, where a skipped item becomes None), which the
  engines evaluate like any continuation.
- order: items run in list order, at the batch's place in the schedule.

A map of plain literals in a run nobody listens to skips even the item
lazies: its expansion runs the items' argument rows through the same
``run_rows`` (``items_here``), and under an inline retry tries each item as a
plain call first (``calls.first_tries``).
"""

from __future__ import annotations

from functools import partial
from itertools import starmap
from operator import attrgetter, is_

from .calls import DISTRIBUTED, call_inline, failed, first_tries, noted
from .errors import task_of
from .folded import CURRENT_RUN, FIRST_SPAN, listened_call, pause, spans
from .lazy import (
    _ARG_KIND,
    _LAZY_TYPES,
    CALL,
    LazyResult,
    Task,
    _collect,
    _node,
    derived_task,
)
from .resources import injection_order

BATCH_MIN = 2  # items in a list before it is batched

_ARGS = attrgetter("args")
_KWARGS = attrgetter("kwargs")
_SHAPE = attrgetter("shape")
_USES = attrgetter("uses")
_COPIED = attrgetter("copied")


class BatchTask(Task):
    """The internal task of a batch: the items' task, arity and container type.

    One per (item task, arity, container type, gather task), kept on the item
    task, so equal batches share a shape and hence a template.
    """

    internal = True
    folded = True

    @classmethod
    def of(cls, member: Task, nargs: int, ctype: type, gather: Task,
           policy=None, kwnames: tuple = ()) -> BatchTask:
        return derived_task(member, "_batches", (nargs, kwnames, ctype, gather, policy),
                            lambda: cls(member, nargs, ctype, gather, policy, kwnames))

    def __init__(self, member: Task, nargs: int, ctype: type, gather: Task, policy=None,
                 kwnames: tuple = ()):
        self.member = member
        self.nargs = nargs
        self.kwnames = kwnames  # the items' keyword names (``fetch(i, timeout=5)``)
        self.ctype = ctype
        self.gather = gather
        self.policy = policy  # each item's inline policy (a map's .with_retry), or None
        # (parameter, resource) the items' calls inject (their parameters' defaults)
        self.item_injects = injection_order(member, nargs, kwnames, ())
        self.folded_injects = tuple(r for _, r in self.item_injects)
        super().__init__(self._run, name=member.name)

    def __repr__(self) -> str:
        return f"<batch of {self.member.name}>"

    def check_call(self, nargs: int, kwnames: tuple) -> None:
        """The items' arity, checked on the item task (the error names it)."""
        self.member.check_call(self.nargs, self.kwnames)

    def _run(self, members: tuple):
        ctx = CURRENT_RUN.get()
        if ctx is not None and (ctx.executor.runs_remotely(self.member) or (
                self.item_injects and self.injected_values(ctx) is None)):
            # the items run on the run's executor, or their resources need invoke: as
            # nodes, gathered like the container the batch stands for (the items are
            # used, so they are not batched again)
            return self.gather(list(members) if self.ctype is list else self.ctype(members))
        if self.kwnames:
            return self.run_rows(tuple(zip(map(_ARGS, members), map(_KWARGS, members))))
        return self.run_rows(tuple(map(_ARGS, members)))

    def injected_values(self, ctx) -> dict | None:
        """The values of the resources the items inject, when a call could take them
        in line (``calls.invoke_now``'s rule: a run nobody listens to, each one there
        or set up here and now: ``RunResources.values_now``), else None."""
        if ctx is None or ctx.emit is not None:
            return None
        return ctx.resources.values_now(self.folded_injects)

    def run_rows(self, rows: tuple, out: list | None = None):
        """Run the items whose arguments are ``rows`` (each the positional arguments, or
        with keyword names (args, kwargs)) after items whose values are ``out``; the
        batch's value, or a continuation (a pause for the event loop, or a gather of
        tail calls). An item's error is reported on the item's task."""
        ctx = CURRENT_RUN.get()
        if out is None:
            out = []
        try:
            end = self._calls(ctx, rows, out)
        except BaseException as exc:
            if task_of(exc) is None:  # (a listened call has reported it)
                if ctx is None:
                    noted(exc, self.member.name)
                else:
                    failed(ctx, self.member, exc)
            raise
        if end < len(rows):  # the run's yield interval has passed
            return pause(partial(self.run_rows, rows[end:], out))
        if not _LAZY_TYPES.isdisjoint(map(type, out)):
            # some item tail-called: the batch's value is the gather of the values
            return self.gather(out if self.ctype is list else self.ctype(out))
        return out if self.ctype is list else self.ctype(out)

    def _calls(self, ctx, rows: tuple, out: list) -> int:
        """Make the calls of ``rows`` onto ``out``, in spans the run's pacer sizes, until
        its yield interval has passed: how many rows were run."""
        fn = self.member.fn
        if self.item_injects:  # (there: the caller asked injected_values)
            values = self.injected_values(ctx)
            fn = partial(fn, **{p: values[r] for p, r in self.item_injects})
        calls = _keyword_calls if self.kwnames else starmap
        policy = self.policy
        if policy is not None and ctx is not None:  # each item under its policy
            if ctx.emit is None and policy.timeout is None:  # a retry: tried plainly first
                calls = partial(first_tries, ctx, self.member, policy, bool(self.kwnames))
            else:
                fn = partial(_inline_keyword_item if self.kwnames else _inline_item, ctx,
                             self.member, policy, fn)
        if ctx is None or (ctx.emit is None and len(rows) <= FIRST_SPAN):
            out += calls(fn, rows)
            return len(rows)
        end = 0
        for start, end in spans(ctx, len(rows)):
            part = rows[start:end]
            if ctx.emit is None or policy is not None:
                out += calls(fn, part)
            elif self.kwnames:
                out += [listened_call(ctx, self.member, fn, a, k) for a, k in part]
            else:
                out += [listened_call(ctx, self.member, fn, a) for a in part]
        return end


def _keyword_calls(fn, rows):
    """The values of ``fn`` called with each row's positional and keyword arguments
    (positional ones: a C-level ``starmap``)."""
    return [fn(*args, **kwargs) for args, kwargs in rows]


def _inline_item(ctx, task, policy, fn, *args):
    """One item of a batch with a policy: its attempts with their events."""
    return call_inline(ctx, task, fn, args, None, policy, ctx.folded_parent)[0]


def _inline_keyword_item(ctx, task, policy, fn, /, *args, **kwargs):
    """``_inline_item`` for an item with keyword arguments (kept apart: a positional
    item, the common one, makes no dict)."""
    return call_inline(ctx, task, fn, args, kwargs, policy, ctx.folded_parent)[0]


def batch_of(items, gather: Task, policy=None) -> LazyResult | None:
    """The batch node standing for the list or tuple ``items``, or None when it
    does not qualify (see module docstring); marks the items used. ``policy``: an
    inline policy (``calls.inline_policy``) every item is called under."""
    first = items[0]
    if type(first) is not LazyResult or first.spec is not None or first.kind != CALL:
        return None
    task = first.task
    if (not _batchable(task)
            or len(set(map(type, items))) != 1 or len(set(map(_SHAPE, items))) != 1
            or any(map(_USES, items)) or any(map(_COPIED, items))
            or len(set(map(id, items))) != len(items)):
        return None
    members = tuple(items)
    for m in members:
        m.uses = 1
    # (one shape: one task, one argument count, the same keyword names)
    bt = BatchTask.of(task, len(first.args), type(items), gather, policy, tuple(first.kwargs))
    shape = bt._flat1
    if shape is None:
        shape = bt._flat1 = bt._flat_shape(1)
    return _node(bt, (members,), {}, (members,), shape, None, (), True)


def _batchable(task) -> bool:
    """May like flat calls of ``task`` be a batch: a plain sync task, run in process,
    not offloaded? (It may inject resources: the batch
    takes them in line when a call could, else its items run as nodes.)"""
    return not (task.internal or task.is_async or task.offload or DISTRIBUTED.get())


def items_here(map_task, cols: list, kw_cols: dict) -> BatchTask | None:
    """The batch that runs the items of a map of ``map_task``'s task over the columns
    ``cols`` and ``kw_cols`` (lists, of one length) in the map's own call, or None.

    In a run nobody listens to, on the engines' own paths (``tail_cache`` and
    ``hot_path`` on) and in process, a map whose elements are all plain literals and
    whose task is plain (with no policy, or one made in line) has nothing for its
    items to be nodes for: their values are computed where the map is expanded, as
    the batch of those items would compute them (``run_rows``: one C-level
    ``starmap``, paced, a gather when an item tail-calls), with no item lazy, no
    batch node and no continuation for the engine to load."""
    ctx = CURRENT_RUN.get()
    if ctx is None or ctx.emit is not None or not (ctx.tail_cache and ctx.hot_path):
        return None
    task = map_task.task
    policy = map_task.item_policy
    if not _batchable(task) or ctx.executor.runs_remotely(task):
        return None
    if policy is not None and not map_task.inline_items:
        return None
    for column in (*cols, *kw_cols.values()):
        if not _ARG_KIND.isdisjoint(map(type, column)):
            return None  # a lazy, a container or a marker: the items are nodes
    batch = BatchTask.of(task, len(cols), list, _collect, policy, tuple(kw_cols))
    if batch.item_injects and batch.injected_values(ctx) is None:
        return None
    return batch


def rows_of(cols: list, kw_cols: dict) -> tuple:
    """The argument rows of a map's items (``BatchTask.run_rows``) from its columns."""
    if not kw_cols:
        return tuple(zip(*cols))
    nargs = len(cols)
    kwnames = tuple(kw_cols)
    return tuple([(row[:nargs], dict(zip(kwnames, row[nargs:])))
                  for row in zip(*cols, *kw_cols.values())])


def batch_in(children: tuple, items) -> LazyResult | None:
    """The batch among ``children`` (a policy copy's original's) standing for exactly
    ``items``, or None: a copy shares its original's batch as it shares its children."""
    for c in children:
        if type(c.task) is BatchTask and c.task.ctype is type(items):
            members = c.args[0]
            if len(members) == len(items) and all(map(is_, members, items)):
                return c
    return None


def expanded_members(lr) -> tuple | None:
    """The items of batch node ``lr`` when one of them is also used elsewhere (a DAG
    walk then makes them nodes), else None (``lr`` is not a batch, or it runs whole)."""
    if type(lr.task) is not BatchTask:
        return None
    members = lr.args[0]
    return members if max(map(_USES, members)) > 1 else None


def members_of(lr) -> tuple:
    """The items of batch node ``lr`` (route walks see them as its children)."""
    return lr.args[0] if type(lr.task) is BatchTask else ()


__all__ = ["BATCH_MIN", "BatchTask", "batch_in", "batch_of", "expanded_members", "items_here",
           "members_of", "rows_of"]
