"""The graph executor: runs plans node by node as their dependencies finish.

State (all plain data, owned by one ``GraphRun``):

``ready``
    A deque of ``(instance, node)`` pairs whose dependencies are all done.
``done``
    A deque of finished asyncio tasks (async calls, policy calls, hot loops)
    with the ``(instance, node)`` they complete, pushed by done-callbacks;
    each task's result is ``(value, call)``, as the call protocol gives it.
``Instance``
    One evaluation of a plan: ``vals`` (node values, then inputs),
    ``waiting`` (dependencies still pending per node), and where its root's
    value goes: ``parent``/``slot`` (another instance's node), a future
    (``follow`` for cached calls), or None for the run's target; and
    ``parent_call``, the call whose tail call made it (its calls' ``parent``).

Invariants: a node is started only when ``waiting[node] == 0``; the root
(node 0) finishes last in its instance, since every node is reachable from
it. The scheduler loop runs sync calls inline, starts async calls as tasks,
and sleeps only when nothing is ready and nothing has finished. In a quiet
run, an instance of a plan of unconditional calls is *swept* instead: its
nodes are called in the order the queue would call them (``Plan.sweep``),
with no counts, until a tail call or an async call still going hands it to
the queue (``_sweep``, ``_to_queue``).

Tail calls: a node whose call returns a ``LazyResult`` starts an instance of
the continuation's plan whose root delivers to that node. A tail call by an
instance's *root* delivers straight to the instance's own parent, so a loop
holds one instance at a time: constant memory, and no Python recursion
anywhere (completion walks up parents in a loop). Flat continuations take
the shared hot path (``hotpath.hot_loop``).
"""

from __future__ import annotations

import asyncio
from asyncio import Task
from collections import deque

from .cache import attach, lookup, without_gc
from .calls import (
    LOCAL,
    call_async,
    call_inline,
    call_sync,
    eager,
    failed,
    invoke,
    invoke_now,
    noted,
    start_async_quiet,
    start_eagerly,
)
from .calls import skipped as skip
from .context import SKIPPED, TARGET
from .firsttier import NOT_TAKEN, run_first, tiered, wants
from .hotpath import Pacer, hot_loop
from .lazy import _LAZY_TYPES, Inject
from .plan import INVOKE, ROUTER, SIMPLE, SWEEP_MANY, SWEEP_ONE, SWEEP_OTHER, compile_plan
from .router import SharedRoute, evaluate_once, select
from .template import run_program

_PENDING = object()


class Instance:
    """One evaluation of a plan (see module docstring)."""

    __slots__ = ("plan", "vals", "waiting", "parent", "slot", "skipped", "parent_call", "swept")

    def __init__(self, plan, vals, parent, slot, parent_call, swept=0):
        self.plan = plan
        self.vals = vals
        # a swept instance (``GraphRun._sweep``) counts nothing until it takes the queue
        self.waiting = None if swept else list(plan.indegree)
        self.swept = swept  # nodes of ``plan.sweep`` called so far, plus one; 0: not swept
        self.parent = parent
        self.slot = slot
        self.skipped = False  # some node value is SKIPPED: consumers must check
        self.parent_call = parent_call  # the call whose tail call made this evaluation


class GraphRun:
    """The scheduler of one run on the graph executor."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.ready: deque = deque()
        self.done: deque = deque()
        self.wake: asyncio.Future | None = None
        self.result = _PENDING
        self.loop = asyncio.get_running_loop()
        self.quiet_run = ctx.emit is None  # no listener: events need no building
        self.remote = ctx.executor is not LOCAL  # values may be held remotely (fetch them)
        self.budget = 1  # nodes until the pacer reads the clock (set by run)
        # plans of sync calls alone run in their queue's order without the queue (_sweep)
        self.sweeps = self.quiet_run and not self.remote

    # -- starting evaluations -------------------------------------------
    def start(self, lazy, parent, slot, parent_call=None, found=None) -> None:
        """Begin evaluating ``lazy``; its value goes to ``parent``'s node ``slot``.
        ``parent_call`` made ``lazy`` by a tail call (None: the run's target).

        ``found`` is ``lookup(lazy)`` when the caller has it already.
        """
        ctx = self.ctx
        if found is None and wants(ctx, lazy):  # seen for the first time: from its lazies
            self._spawn(self._first_sight(lazy), parent, slot)
            return
        entry, inputs = found if found is not None else lookup(lazy, ctx.tail_cache)
        plan = entry.plan
        if plan is None:
            plan = attach(entry, "plan", without_gc(compile_plan, entry.template))
        if plan.flat and ctx.hot_path:
            self._spawn(hot_loop(ctx, lazy, parent_call), parent, slot)
            return
        n = plan.n
        vals = [None] * n
        vals += inputs
        if entry.template.resource_names:
            ctx.resources.check(entry.template.resource_names)
        for p in entry.template.route_params:
            ctx.value_of(p)
        if plan.sweep is not None and self.sweeps:  # unconditional calls alone: no queue
            self.ready.append((Instance(plan, vals, parent, slot, parent_call, 1), -1))
            return
        inst = Instance(plan, vals, parent, slot, parent_call)
        if plan.value_nodes:
            ops = plan.ops
            values = [ctx.value_of(ops[i].node.task) for i in plan.value_nodes]
            for i, v in zip(plan.value_nodes, values):
                self.complete(inst, i, v)
        ready = self.ready
        for i in plan.sources:
            ready.append((inst, i))

    async def _first_sight(self, lazy):
        """``(value, 0)`` of ``lazy`` run by the first tier (firsttier.py): its value, or
        its root's tail call, or ``lazy`` itself when the tier hands it back (then
        ``complete`` starts it again, on the plan this time)."""
        value = await run_first(self.ctx, lazy, self.follow)
        return (lazy if value is NOT_TAKEN else value), 0

    def _spawn(self, coro, inst, i) -> None:
        """Run ``coro`` (giving ``(value, call)``) as a task; it completes node ``i``."""
        self._when_done(self.ctx.spawn(coro), inst, i, True)

    def _when_done(self, task, inst, i, with_call: bool) -> None:
        """Task ``task`` completes node ``i`` when it ends; its result is ``(value,
        call)`` when ``with_call``, else the value."""
        done = self.done

        def finished(t):
            done.append((inst, i, t, with_call))
            w = self.wake
            if w is not None and not w.done():
                w.set_result(None)

        task.add_done_callback(finished)

    async def follow(self, lazy, parent_call=None):
        """Evaluate ``lazy`` to its final value (cached calls, shared routes)."""
        fut = self.loop.create_future()
        self.start(lazy, fut, 0, parent_call)
        w = self.wake
        if w is not None and not w.done():
            w.set_result(None)
        return await fut

    # -- finishing nodes ---------------------------------------------------
    def complete(self, inst, i, value, call=0) -> None:
        """Node ``i`` of ``inst`` has ``value`` (made by call number ``call``): store it,
        wake dependents, deliver roots; a lazy value starts its continuation."""
        while True:
            if type(value) in _LAZY_TYPES:
                into = call or (inst.parent_call if type(inst) is Instance else None)
                if i == 0 and type(inst) is Instance:
                    self.start(value, inst.parent, inst.slot, into)
                else:
                    self.start(value, inst, i, into)
                return
            if type(inst) is not Instance:  # the run's target, or a future
                if inst is None:
                    self.result = value
                elif not inst.done():
                    inst.set_result(value)
                return
            if i == 0:
                value, inst, i = value, inst.parent, inst.slot
                continue
            inst.vals[i] = value
            if value is SKIPPED:
                inst.skipped = True
            waiting = inst.waiting
            ready = self.ready
            for d in inst.plan.dependents[i]:
                waiting[d] -= 1
                if not waiting[d]:
                    ready.append((inst, d))
            return

    # -- running nodes -----------------------------------------------------
    def _skip_reason(self, inst, op):
        """None when the node should run, else why it is skipped."""
        vals = inst.vals
        node = op.node
        if inst.skipped:
            # a router waits on shared routes but only its selector can skip it
            for d in (node.data_deps if op.mode == ROUTER else node.deps):
                if vals[d] is SKIPPED:
                    if node.task is TARGET:
                        continue
                    return "upstream"
        for c in node.conds:
            if type(c) is tuple:
                if not vals[c[1]]:
                    return "condition"
            elif not c:
                return "condition"
        return None

    def _run_node(self, inst, i, op) -> None:
        """Run node ``i`` (op ``op``) of ``inst``, other than the quiet simple call
        (``_run_simple``, which the scheduler loop calls itself)."""
        if op.gated or inst.skipped:
            if self.remote and self._fetch_conditions(inst, i, op):
                return  # the node runs again once its conditions' values are here
            reason = self._skip_reason(inst, op)
            if reason is not None:
                skip(self.ctx, op.node.task, reason)
                self.complete(inst, i, SKIPPED)
                return
        args, kwargs = self._args_of(inst, op)
        if op.mode == ROUTER:
            self._route(inst, i, op, args)
        else:
            self._call(inst, i, op, args, kwargs)

    def _run_simple(self, inst, i, op) -> None:
        """The commonest node, in a quiet run: a sync positional call (nothing skipped).
        Then the nodes in line after it (``Plan.next_in_line``: each waits on the one
        before alone) run one after the other without the ready queue, and then the
        next ready node when it is such a call too (the scheduler would run it next:
        no task can finish while this runs), while the pacer's budget lasts (so a line
        of slow calls yields as often as the queue would); a root's or a lazy value
        completes like any node's."""
        ready = self.ready
        budget = self.budget
        vals, waiting, plan = inst.vals, inst.waiting, inst.plan
        ops, line, inline, dependents = plan.ops, plan.next_in_line, plan.inline, plan.dependents
        while True:
            while True:
                g = op.getter
                try:
                    if op.single:
                        value = op.fn(g(vals))
                    else:
                        value = op.fn(*g(vals)) if g is not None else op.fn()
                except BaseException as exc:
                    failed(self.ctx, op.node.task, exc)
                    raise
                if not i or type(value) in _LAZY_TYPES:
                    self.budget = budget
                    self.complete(inst, i, value)
                    return
                vals[i] = value
                j = line[i]
                if j <= 0 or budget <= 1:
                    break
                waiting[j] = 0
                budget -= 1
                i = j
                op = ops[j]
            for d in dependents[i]:  # complete(), its common case inlined
                waiting[d] -= 1
                if not waiting[d]:
                    ready.append((inst, d))
            if budget <= 2 or not ready:
                break
            nxt, i = ready[0]
            if nxt is not inst or not inline[i]:  # (nothing here makes inst skipped)
                break
            ready.popleft()
            budget -= 1
            op = ops[i]
        self.budget = budget

    def _sweep(self, inst) -> None:
        """Call the nodes of ``inst`` (a plan of unconditional calls, in a quiet run) in
        the order the ready queue would (``Plan.sweep``), with no queue and no counts,
        while the pacer's budget lasts (then the sweep is queued again, to go on after
        the pacer's turn). The root's value completes the instance. A lazy value of
        another node (a tail call), or an async call that did not finish when started,
        hands the instance to the queue (``_to_queue``), which waits on that node."""
        sweep = inst.plan.sweep
        vals = inst.vals
        first = k = inst.swept - 1
        end = min(len(sweep), k + max(self.budget, 1))  # one less here, one in run's loop
        while k < end:
            i, fn, g, how = sweep[k]
            k += 1
            if how == SWEEP_OTHER:  # g: the op (its protocol call notes a failure)
                value = self._call_now(g, *self._args_of(inst, g), inst.parent_call)[0]
            else:
                try:
                    if how == SWEEP_ONE:
                        value = fn(g(vals))
                    else:
                        value = fn(*g(vals)) if how == SWEEP_MANY else fn()
                except BaseException as exc:
                    failed(self.ctx, inst.plan.ops[i].node.task, exc)
                    raise
            t = type(value)
            if not i or t in _LAZY_TYPES or t is Task:  # root (last), tail call, call going
                self.budget -= k - first - 1
                if i:
                    self._to_queue(inst, k)
                if t is Task:  # its value is the node's (no call number)
                    self._when_done(value, inst, i, False)
                else:
                    self.complete(inst, i, value)
                return
            vals[i] = value
        self.budget -= k - first - 1
        inst.swept = k + 1
        self.ready.append((inst, -1))

    def _to_queue(self, inst, k: int) -> None:
        """Sweep node ``k - 1`` of ``inst`` made a tail call, or its async call is still
        going: from here on the instance runs from the ready queue (counts of the nodes
        swept before that node; ready: the unswept nodes with nothing to wait on)."""
        plan = inst.plan
        sweep = plan.sweep
        dependents = plan.dependents
        waiting = list(plan.indegree)
        for j in range(k - 1):
            for d in dependents[sweep[j][0]]:
                waiting[d] -= 1
        inst.waiting = waiting
        inst.swept = 0
        ready = self.ready
        for j in range(k, len(sweep)):
            i = sweep[j][0]
            if not waiting[i]:
                ready.append((inst, i))

    def _arguments(self, inst, op):
        """(args, kwargs) of a BUILT, INVOKE or ROUTER node, from its argument program."""
        vals = inst.vals
        if op.node.task is TARGET:
            vals = [None if v is SKIPPED else v for v in vals]
        out = run_program(op.program, vals, Inject)
        return tuple(out[: op.nargs]), dict(zip(op.node.kwnames, out[op.nargs:]))

    def _args_of(self, inst, op) -> tuple:
        """(args, kwargs) of node ``op`` of ``inst``: a SIMPLE node's from its getter
        (kwargs None), any other's from its argument program."""
        if op.mode == SIMPLE:
            g = op.getter
            vals = inst.vals
            return (() if g is None else ((g(vals),) if op.single else g(vals))), None
        return self._arguments(inst, op)

    def _call(self, inst, i, op, args, kwargs) -> None:
        """Call node ``i``'s task through the protocol (inline, or as a task)."""
        if op.mode == INVOKE:
            made = invoke_now(self.ctx, op.node, args, kwargs, inst.parent_call)
            if made is None:
                call = invoke(self.ctx, op.node, args, kwargs, self.follow, inst.parent_call)
                if not (self.quiet_run and eager(op.node.task)):
                    self._spawn(call, inst, i)
                    return
                made = start_eagerly(self.ctx, call)  # its first step now
                if type(made) is Task:  # going on: (value, call) when it ends
                    self._when_done(made, inst, i, True)
                    return
            self.complete(inst, i, *made)  # made here, nothing of it waiting
        elif op.is_async and not self.quiet_run:
            self._spawn(call_async(self.ctx, op.node.task, args, kwargs, inst.parent_call),
                        inst, i)
        else:
            value, call = self._call_now(op, args, kwargs, inst.parent_call)
            if type(value) is Task:  # its value is the node's (no call number)
                self._when_done(value, inst, i, False)
            else:
                self.complete(inst, i, value, call)

    def _call_now(self, op, args, kwargs, parent) -> tuple:
        """``(value, call)`` of a call made here and now: a sync one (under its inline
        retry or timeout, if any), or in a quiet run an async one started eagerly,
        whose value is its asyncio ``Task`` when it did not finish at once."""
        task = op.node.task
        if op.is_async:
            return start_async_quiet(self.ctx, task, args, kwargs or {}, self.follow), 0
        if op.node.policy is not None:  # an inline retry or timeout (calls.inline_policy)
            return call_inline(self.ctx, task, op.fn, args, kwargs, op.node.policy, parent)
        return call_sync(self.ctx, task, op.fn, args, kwargs, parent)

    def _route(self, inst, i, op, args) -> None:
        """A router node: its selected route's value, or the route as a continuation."""
        if self.remote and self.ctx.executor.is_remote(args[0]):
            self._spawn(self._route_fetched(inst, op, args), inst, i)
            return
        value = self._select(inst, op, args)
        if type(value) is SharedRoute:
            self._spawn(_shielded(evaluate_once(self.ctx, value, self.follow)), inst, i)
            return
        self.complete(inst, i, value)

    def _select(self, inst, op, args):
        node = op.node
        try:
            return select(self.ctx, node, args[0], args[1],
                          {d: inst.vals[d] for d in node.deps})
        except Exception as exc:
            noted(exc, op.name)
            raise

    async def _route_fetched(self, inst, op, args):
        """A router whose selector is held remotely: fetched, then selected."""
        args = (await self.ctx.executor.fetch(args[0]), *args[1:])
        value = self._select(inst, op, args)
        if type(value) is SharedRoute:
            return await _shielded(evaluate_once(self.ctx, value, self.follow))
        return value, 0

    def _fetch_conditions(self, inst, i, op) -> bool:
        """In a distributed run, when a condition of node ``i`` is a remote value: fetch
        the conditions' values into the instance, then run node ``i`` again (True)."""
        executor = self.ctx.executor
        vals = inst.vals
        deps = [c[1] for c in op.node.conds
                if type(c) is tuple and executor.is_remote(vals[c[1]])]
        if not deps:
            return False

        async def fetch():
            got = await executor.fetch([vals[d] for d in deps])
            for d, v in zip(deps, got):
                vals[d] = v
            self.ready.append((inst, i))
            w = self.wake
            if w is not None and not w.done():
                w.set_result(None)

        self.ctx.spawn(fetch())
        return True

    # -- the scheduler loop ------------------------------------------------
    async def run(self, root):
        ctx = self.ctx
        found = lookup(root, ctx.tail_cache)
        parent = None
        if ctx.hot_path:
            # A flat target runs its tail loop right here, with no task hop.
            while found is not None and found[0].template.flat:
                value, call = await hot_loop(ctx, root, parent)
                if type(value) not in _LAZY_TYPES:
                    return value
                root, parent = value, call or parent
                found = None if wants(ctx, root) else lookup(root, ctx.tail_cache)
        if found is None:  # the loop's continuation, seen for the first time
            self._spawn(self._first_sight(root), None, 0)
        else:
            self.start(root, None, 0, parent, found)
        ready, done = self.ready, self.done
        popleft = ready.popleft
        run_node, run_simple = self._run_node, self._run_simple
        quiet = self.quiet_run
        pacer = Pacer(ctx.yield_interval)
        self.budget = pacer.batch  # nodes until the pacer reads the clock (_run_simple too)
        while self.result is _PENDING:
            while done:  # finished tasks first: their dependents join the ready queue
                inst, i, t, with_call = done.popleft()
                if t.cancelled():
                    raise asyncio.CancelledError()
                exc = t.exception()
                if exc is not None:
                    raise exc
                if with_call:
                    value, call = t.result()
                    self.complete(inst, i, value, call)
                else:
                    self.complete(inst, i, t.result())
            if ready:
                inst, i = popleft()
                plan = inst.plan
                if i < 0:
                    self._sweep(inst)  # a swept plan (Plan.sweep), from where it stopped
                elif quiet and plan.inline[i] and not inst.skipped:
                    run_simple(inst, i, plan.ops[i])  # the commonest node
                else:
                    run_node(inst, i, plan.ops[i])
                self.budget -= 1
                if self.budget <= 0:
                    self.budget = await pacer.batch_done()
            elif self.result is _PENDING:
                self.wake = self.loop.create_future()
                await self.wake
                self.wake = None
        return self.result


async def _shielded(t):
    """The value of task ``t``, which other waiters share (cancelling this waiter spares it),
    as ``(value, call)``: a shared route's value is no call's own."""
    return await asyncio.shield(t), 0


def execute(ctx, root):
    """The awaitable value of the workflow under ``root`` on the graph executor (a structure
    seen for the first time runs from its lazies: firsttier.py)."""
    return tiered(ctx, root, lambda lazy: GraphRun(ctx).run(lazy))
