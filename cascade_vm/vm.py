"""The register VM: one dispatch loop over ``Code.ops``, frames on a list.

State of a running frame, all locals of ``VM.run``: ``ops`` (the lowered
program), ``R`` (the register list: inputs, then temporaries), ``pc``, and
``skipped`` (some register holds ``SKIPPED``, so calls must check their
arguments; False in almost every frame, so the check costs one test).
Suspended frames are tuples ``(ops, R, pc, dst, skipped)`` on ``stack``.

Handlers are chosen by comparing the opcode int, most frequent first; there
is no ``getattr`` and no per-instruction allocation beyond the call itself.
Sync tasks are called directly: a workflow without async tasks awaits only
when it yields to the event loop (every ``yield_interval`` seconds of work).

Tail calls: a call returning a ``LazyResult`` either reuses the frame (the
root call, flagged ``tail``: bind the continuation's inputs and jump to its
start) or pushes the frame and runs the continuation, whose ``RET`` writes
the caller's register. Flat continuations go through the shared hot path.
Started async tasks run their own tail calls inside their task (a nested
``VM``), so a fan-out of looping async tasks stays concurrent.

A non-root call whose continuation may wait on async work (``_suspends``)
is not run in place: it is started as a task, its register is marked
*deferred*, and the first instruction that reads the register awaits it,
so sibling calls that tail-call into async work overlap.

Failure: the first started task to fail interrupts the run wherever the VM
is (the run lifecycle in cascade_graph.context cancels the engine and
reports that failure), then everything still running is cancelled.
"""

from __future__ import annotations

import asyncio

from cascade_graph.cache import attach, lookup, without_gc
from cascade_graph.calls import (
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
from cascade_graph.calls import skipped as skip
from cascade_graph.context import SKIPPED, as_root
from cascade_graph.firsttier import FIRST_SIGHT, NOT_TAKEN, first_sight, run_first, tiered, wants
from cascade_graph.hotpath import Pacer, hot_loop
from cascade_graph.lazy import _LAZY_TYPES
from cascade_graph.router import SharedRoute, evaluate_once, select
from cascade_graph.template import build_template

from . import bytecode as bc
from .bytecode import CALL0, CALL1, CALL2, CALLN, JIT
from .compiler import compile_template
from .jit import HOT_AFTER, failed_at, jit_ops

(CALL_KW, CALL_AWAIT, START, AWAIT, INVOKE, INVOKE_START, BUILD, BUILD_DICT, GUARD, LOADV,
 LOADK, RET, ROUTE) = (bc.CALL_KW, bc.CALL_AWAIT, bc.START, bc.AWAIT, bc.INVOKE,
                       bc.INVOKE_START, bc.BUILD, bc.BUILD_DICT, bc.GUARD, bc.LOADV, bc.LOADK,
                       bc.RET, bc.ROUTE)


def code_for(entry):
    """The VM code of a cache entry, compiled on first use."""
    code = entry.code
    if code is None:
        code = attach(entry, "code", without_gc(compile_template, entry.template))
    return code


class VM:
    """Runs one evaluation (the run's target, or a started task's continuation)."""

    def __init__(self, ctx):
        self.ctx = ctx

    # -- loading templates -------------------------------------------------
    def _suspends(self, lazy) -> bool:
        """May evaluating ``lazy`` wait on async work (so it should overlap its siblings)?

        A first sight is not known until the first tier has walked its lazies (a
        template built here to find out would be the cost that tier saves): it is
        overlapped. That run is quiet, so only when its calls run can differ."""
        ctx = self.ctx
        if first_sight(ctx, lazy):
            return True
        entry, _ = lookup(lazy, ctx.tail_cache)
        t = entry.template
        if t.flat:
            return t.nodes[0].task.is_async
        return code_for(entry).has_async

    def _load(self, lazy):
        """(ops, registers) for ``lazy``, or (None, None) when it takes the hot path, or
        (None, ``FIRST_SIGHT``) when the first tier takes it (``_enter`` runs it)."""
        ctx = self.ctx
        if wants(ctx, lazy):
            return None, FIRST_SIGHT
        entry, inputs = lookup(lazy, ctx.tail_cache)
        t = entry.template
        if t.flat and ctx.hot_path:
            return None, None
        if t.resource_names:
            ctx.resources.check(t.resource_names)
        for p in t.route_params:
            ctx.value_of(p)
        code = code_for(entry)
        R = inputs if type(inputs) is list else list(inputs)
        R += code.fill
        tier = entry.tier
        if tier[1] is not None:  # hot: its block, unless events must be emitted
            return (tier[1] or code.ops) if ctx.emit is None else code.ops, R
        tier[0] += 1
        if tier[0] >= HOT_AFTER:
            tier[1] = jit_ops(code, _LAZY_TYPES) or ()
        return code.ops, R

    # -- started tasks -----------------------------------------------------
    def _start(self, coro):
        return self.ctx.spawn(coro)

    async def _follow(self, lazy, parent=None):
        return await VM(self.ctx).run(lazy, parent)

    async def _call(self, op, node, args, kwargs, parent):
        """A call that is not a plain sync call: ``(value, call)`` (the protocol's)."""
        ctx = self.ctx
        if op == INVOKE or op == INVOKE_START:
            made = invoke_now(ctx, node, args, kwargs, parent)
            if made is not None:
                return made
            return await invoke(ctx, node, args, kwargs, self._follow, parent)
        task = node.task
        if task.is_async:
            return await call_async(ctx, task, args, kwargs, parent)
        if node.policy is not None:  # an inline retry or timeout (calls.inline_policy)
            return call_inline(ctx, task, task.fn, args, kwargs, node.policy, parent)
        return call_sync(ctx, task, task.fn, args, kwargs, parent)

    async def _started(self, op, node, args, kwargs, parent):
        """A started async call, its tail calls followed in the task (a nested VM)."""
        v, call = await self._call(op, node, args, kwargs, parent)
        if type(v) in _LAZY_TYPES:
            v = await VM(self.ctx).run(v, call or parent)
        return v

    async def _route(self, node, R, regs, parent):
        """The value of a ROUTE instruction: a value, or the selected route's lazy call."""
        ctx = self.ctx
        values = {d: R[r] for d, r in zip(node.deps, regs[2:])}
        selector = R[regs[0]]
        if ctx.executor.is_remote(selector):  # a selector held remotely comes here first
            selector = R[regs[0]] = await ctx.executor.fetch(selector)
        try:
            v = select(ctx, node, selector, R[regs[1]], values)
        except Exception as exc:
            noted(exc, node.task.name)
            raise
        if type(v) is SharedRoute:
            v = await asyncio.shield(evaluate_once(ctx, v, self._follow))
        return v

    # -- frames ----------------------------------------------------------------
    async def _enter(self, v, parent, stack: list, first: bool = False) -> tuple:
        """Evaluate lazy ``v`` (made by call ``parent``): the frame to run next,
        ``(ops, R, pc, a, skipped, deferred, parent)``, or ``(None, value)`` when the
        value is the run's (a flat loop on the hot path, or a first sight run from its
        lazies, may finish a frame below). ``first``: ``_load`` gave ``v`` to the first
        tier already."""
        load = self._load
        while True:
            if first:  # a structure seen for the first time: from its lazies
                got = await run_first(self.ctx, v, self._follow)
                if type(got) not in _LAZY_TYPES:
                    if got is not NOT_TAKEN:
                        return _resume(stack, got)
                else:
                    v = got  # its root's tail call
            ops, R = load(v)
            if ops is not None:
                return ops, R, 0, 0, False, (), parent
            first = R is FIRST_SIGHT
            if first:
                continue
            v, call = await hot_loop(self.ctx, v, parent)
            if type(v) not in _LAZY_TYPES:
                return _resume(stack, v)
            parent = call or parent

    async def _read_deferred(self, R, regs, deferred: set) -> bool:
        """Await the started evaluations ``regs`` read; True when one was skipped."""
        skipped = False
        for r in regs:
            if r in deferred:
                deferred.discard(r)
                t = R[r]
                v = t.result() if t.done() else await t
                R[r] = v
                if v is SKIPPED:
                    skipped = True
        return skipped

    # -- the dispatch loop ---------------------------------------------------
    async def run(self, lazy, parent=None):
        """Evaluate ``lazy`` to its final value (``SKIPPED`` when it was skipped);
        ``parent`` is the call whose tail call made ``lazy`` (None for the run's target).

        One loop over the frame's lowered ops (see the module docstring). The
        commonest instructions are handled inline, the rest by helpers: a
        function call per instruction is what this loop exists to avoid.
        """
        ctx = self.ctx
        LAZY = _LAZY_TYPES
        SK = SKIPPED
        stack: list = []
        ops, R, pc, a, skipped, deferred, parent = await self._enter(lazy, parent, stack)
        if ops is None:
            return R
        quiet = ctx.emit is None  # no listener: no events to build
        call = 0  # the call number of the last observed call (its tail call's parent)
        pacer = Pacer(ctx.yield_interval)
        budget = pacer.batch  # calls until the pacer reads the clock
        while True:
            op, a, x, regs, ex, flag = ops[pc]
            pc += 1
            if deferred and await self._read_deferred(R, regs, deferred):
                skipped = True
            # ---- sync calls (x is the function, ex the task) -------------
            if op == CALL1 and quiet and not skipped:
                # the commonest instruction, with nothing to check or emit
                try:
                    v = x(R[regs[0]])
                except BaseException as exc:
                    failed(ctx, ex, exc)
                    raise
                if type(v) not in LAZY:
                    R[a] = v
                    budget -= 1
                    if not budget:
                        budget = await pacer.batch_done()
                    continue
            elif op == JIT:  # a hot frame's calls as one compiled block (jit.py)
                try:  # (flag: an async block, with started calls to await)
                    p, v = (await x(R, ctx, self._follow)) if flag else x(R)
                except BaseException as exc:
                    _block_failed(ctx, x, ops, exc)
                    raise
                budget -= a  # a: the calls in the block
                if budget <= 0:
                    budget = await pacer.batch_done()
                if p < 0:
                    pc = len(ops) - 1  # ran to the end: return
                    continue
                if v is SK:  # an awaited call's continuation was skipped: go on at p
                    skipped = True
                    pc = p
                    continue
                # call p made a tail call: go on as if the dispatch loop had made it
                op, a, x, regs, ex, flag = ops[p]
                pc = p + 1
            elif op <= CALLN and op >= CALL0:
                if skipped and _any_skipped(R, regs):
                    R[a] = skip(ctx, ex, "upstream")
                    continue
                if not quiet:
                    v, call = call_sync(ctx, ex, x, [R[r] for r in regs], None, parent)
                elif op == CALL2:
                    try:
                        v = x(R[regs[0]], R[regs[1]])
                    except BaseException as exc:
                        failed(ctx, ex, exc)
                        raise
                else:
                    v = _call_quiet(ctx, ex, x, R, regs)
                if type(v) not in LAZY:  # the common case, finished here (a task never
                    R[a] = v  # returns SKIPPED itself, so no skip bookkeeping)
                    budget -= 1
                    if not budget:
                        budget = await pacer.batch_done()
                    continue
            elif op == AWAIT:
                t = R[a]
                if type(t) is asyncio.Task:  # else: finished when started, or skipped
                    v = R[a] = t.result() if t.done() else await t
                    skipped = skipped or v is SK
                continue
            elif op == RET:
                v = R[a]
                if not stack:
                    return v
                ops, R, pc, a, skipped, deferred, parent = _resume(stack, v)
                continue
            elif op <= INVOKE_START:  # CALL_KW, CALL_AWAIT, START, INVOKE, INVOKE_START
                if skipped and _any_skipped(R, regs):
                    R[a] = skip(ctx, x.task, "upstream")
                    continue
                args, kwargs = _split(R, regs, ex, x.kwnames)
                if op == START and quiet:  # started eagerly: often finished here
                    v = start_async_quiet(ctx, x.task, args, kwargs, self._follow)
                    if type(v) in LAZY:  # its tail call, overlapping, read at its AWAIT
                        v = ctx.spawn(self._follow(v))
                    R[a] = v
                    budget -= 1
                    if not budget:
                        budget = await pacer.batch_done()
                    continue
                made = invoke_now(ctx, x, args, kwargs, parent) if op == INVOKE_START else None
                if made is not None:  # nothing of it waits: made here (then as a CALL_KW)
                    v, call = made
                elif op == START or op == INVOKE_START:
                    started = self._started(op, x, args, kwargs, parent)
                    # quiet: its first step now (a value, or the task going on with it);
                    # an offloaded call's thread starts when its task does (calls.eager)
                    R[a] = (start_eagerly(ctx, started) if quiet and eager(x.task)
                            else self._start(started))
                    continue
                else:
                    v, call = await self._call(op, x, args, kwargs, parent)
            elif op == BUILD or op == BUILD_DICT:
                R[a] = _build(op, x, R, regs, flag, skipped)
                continue
            elif op == GUARD:
                if ctx.executor is not LOCAL:  # conditions held remotely come here first
                    await _fetch_conditions(ctx.executor, R, regs, x)
                reason = _guard(R, regs, x, skipped)
                if reason is not None:
                    R[a] = skip(ctx, x.task, reason)
                    skipped = True
                    pc = ex
                continue
            elif op == ROUTE:
                if skipped and R[regs[0]] is SK:  # only the selector can skip a router
                    R[a] = SK
                    continue
                v = await self._route(x, R, regs, parent)
                call = 0  # a selected route is no call's tail call
            else:
                R[a] = ctx.value_of(x) if op == LOADV else x  # LOADV, LOADK
                continue

            # ---- after a call: value, or a tail call --------------------
            budget -= 1
            if not budget:
                budget = await pacer.batch_done()
            if type(v) not in LAZY:
                R[a] = v
                skipped = skipped or v is SK
                continue
            into = call or parent  # the continuation's calls are this call's children
            if not flag:
                if self._suspends(v):
                    # overlap it with the rest of this frame: read at first use
                    R[a] = self._start(self._follow(v, into))
                    if not deferred:
                        deferred = set()
                    deferred.add(a)
                    continue
                stack.append((ops, R, pc, a, skipped, deferred, parent))
            # enter the continuation (frame reused when flag: the root's tail call); a
            # body with instructions is loaded here, with no coroutine for ``_enter``
            loaded, R = self._load(v)
            if loaded is not None:
                ops, pc, a, skipped, deferred, parent = loaded, 0, 0, False, (), into
                continue
            ops, R, pc, a, skipped, deferred, parent = await self._enter(
                v, into, stack, R is FIRST_SIGHT)
            if ops is None:
                return R


def _resume(stack: list, v) -> tuple:
    """Pop the frame below, its waiting register given ``v``: the frame to run, or
    ``(None, v)`` when there is none (``v`` is the run's value)."""
    if not stack:
        return None, v, 0, 0, False, (), None
    ops, R, pc, a, skipped, deferred, parent = stack.pop()
    R[a] = v
    return ops, R, pc, a, skipped or v is SKIPPED, deferred, parent


def _call_quiet(ctx, task, fn, R, regs):
    """A lowered sync call with no listener (other than the two-argument one)."""
    try:
        return fn(R[regs[0]]) if len(regs) == 1 else fn(*[R[r] for r in regs])
    except BaseException as exc:
        failed(ctx, task, exc)
        raise


def _block_failed(ctx, block, ops, exc) -> None:
    """A JIT block raised ``exc``: report it on the task whose call raised it."""
    p = failed_at(block, exc)
    if p is not None:  # a call raised (not a container build)
        failed(ctx, ops[p][4], exc)


def _any_skipped(R, regs) -> bool:
    for r in regs:
        if R[r] is SKIPPED:
            return True
    return False


def _split(R, regs, npos, kwnames):
    vals = [R[r] for r in regs]
    if not kwnames:
        return vals, {}
    return vals[:npos], dict(zip(kwnames, vals[npos:]))


async def _fetch_conditions(executor, R, regs, node) -> None:
    """Replace the remote values of ``node``'s conditions in ``R`` by their values."""
    deps = node.deps
    for c in node.conds:
        if type(c) is tuple:
            r = regs[deps.index(c[1])]
            if executor.is_remote(R[r]):
                R[r] = await executor.fetch(R[r])


def _guard(R, regs, node, skipped):
    """Why the gated ``node`` is skipped, or None. ``regs`` hold its deps in order."""
    deps = node.deps
    if skipped:
        for r in regs:
            if R[r] is SKIPPED:
                return "upstream"
    for c in node.conds:
        if type(c) is tuple:
            if not R[regs[deps.index(c[1])]]:
                return "condition"
        elif not c:
            return "condition"
    return None


def _build(op, x, R, regs, target: bool, skipped: bool):
    """The value of a BUILD/BUILD_DICT instruction (``SKIPPED`` when an item was skipped,
    except in the run's container ``target``, where a skipped item becomes None)."""
    items = [R[r] for r in regs]
    if skipped and _any_skipped(R, regs):
        if not target:
            return SKIPPED
        items = [None if i is SKIPPED else i for i in items]
    if op == BUILD_DICT:
        return dict(zip(x, items))
    return items if x is list else x(items)


def execute(ctx, root):
    """The awaitable value of the workflow under ``root`` on the VM (a structure
    seen for the first time runs from its lazies: firsttier.py)."""
    return tiered(ctx, root, VM(ctx).run)


def compile_target(target):
    """The VM ``Code`` for a workflow target (a lazy or a container of lazies)."""
    root = as_root(target)
    if root is None:
        raise TypeError(f"nothing to compile: {target!r} holds no lazy call")
    return compile_template(build_template(root))


def disassemble(target, file=None) -> None:
    """Print the VM instructions of ``target`` (``python -m cascade_vm dis``)."""
    code = compile_target(target)
    if code.template.flat:
        print("; flat template: runs on the shared hot path (shown compiled for reference)",
              file=file)
    bc.dis(code, file=file)
