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

from cascade_graph.cache import lookup, without_gc
from cascade_graph.context import SKIPPED, as_root
from cascade_graph.errors import add_task_note
from cascade_graph.events import TailCall, TaskFailed, TaskFinished, TaskSkipped, TaskStarted
from cascade_graph.hotpath import Pacer, hot_loop
from cascade_graph.invoke import invoke
from cascade_graph.lazy import _LAZY_TYPES
from cascade_graph.router import SharedRoute, evaluate_once, select
from cascade_graph.template import build_template

from . import bytecode as bc
from .compiler import L_CALL0, L_CALL1, L_CALL2, L_CALLN, compile_template
from .jit import HOT_AFTER, JIT, failed_at, jit_ops

(CALL_KW, CALL_AWAIT, START, AWAIT, INVOKE, INVOKE_START, BUILD, BUILD_DICT, GUARD, LOADV,
 LOADK, RET, ROUTE) = (bc.CALL_KW, bc.CALL_AWAIT, bc.START, bc.AWAIT, bc.INVOKE,
                       bc.INVOKE_START, bc.BUILD, bc.BUILD_DICT, bc.GUARD, bc.LOADV, bc.LOADK,
                       bc.RET, bc.ROUTE)


def code_for(entry):
    """The VM code of a cache entry, compiled on first use."""
    code = entry.code
    if code is None:
        code = entry.code = without_gc(compile_template, entry.template)
    return code


class VM:
    """Runs one evaluation (the run's target, or a started task's continuation)."""

    def __init__(self, ctx):
        self.ctx = ctx

    # -- loading templates -------------------------------------------------
    def _suspends(self, lazy) -> bool:
        """May evaluating ``lazy`` wait on async work (so it should overlap its siblings)?"""
        ctx = self.ctx
        entry, _ = lookup(lazy, ctx.tail_cache)
        t = entry.template
        if t.flat:
            return t.nodes[0].task.is_async
        return code_for(entry).has_async

    def _load(self, lazy):
        """(ops, registers) for ``lazy``, or (None, None) when it takes the hot path."""
        ctx = self.ctx
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
        tier = code.tier
        if tier[1] is not None:  # hot: its block, unless events must be emitted
            return (tier[1] or code.ops) if ctx.emit is None else code.ops, R
        tier[0] += 1
        if tier[0] >= HOT_AFTER:
            tier[1] = jit_ops(code, _LAZY_TYPES) or ()
        return code.ops, R

    # -- started tasks -----------------------------------------------------
    def _start(self, coro):
        return self.ctx.spawn(coro)

    async def _follow(self, lazy):
        return await VM(self.ctx).run(lazy)

    async def _started(self, node, args, kwargs, via_invoke):
        ctx = self.ctx
        task = node.task
        if via_invoke:
            v = await invoke(ctx, node, args, kwargs, self._follow)
        else:
            emit = ctx.emit
            if emit is not None:
                emit(TaskStarted(ctx.run_id, task.name))
            try:
                v = await task.fn(*args, **kwargs)
            except BaseException as exc:
                _failed(ctx, task, exc)
                raise
            if emit is not None:
                emit(TaskFinished(ctx.run_id, task.name))
        if type(v) in _LAZY_TYPES:
            if ctx.emit is not None and not task.internal:
                ctx.emit(TailCall(ctx.run_id, task.name, getattr(v.task, "name", "?")))
            v = await VM(ctx).run(v)
        return v

    # -- the dispatch loop ---------------------------------------------------
    async def run(self, lazy):
        """Evaluate ``lazy`` to its final value (``SKIPPED`` when it was skipped)."""
        ctx = self.ctx
        emit = ctx.emit
        run_id = ctx.run_id
        LAZY = _LAZY_TYPES
        SK = SKIPPED
        load = self._load
        while True:
            ops, R = load(lazy)
            if ops is not None:
                break
            v = await hot_loop(ctx, lazy)
            if type(v) not in LAZY:
                return v
            lazy = v
        stack: list = []
        pc = 0
        skipped = False
        deferred = ()  # registers holding a task whose value is not read yet (a set once used)
        quiet = emit is None  # no listener: no events to build
        pacer = Pacer(ctx.yield_interval)
        budget = pacer.batch  # calls until the pacer reads the clock
        while True:
            op, a, x, regs, ex, flag = ops[pc]
            pc += 1
            if deferred:
                for r in regs:
                    if r in deferred:
                        deferred.discard(r)
                        t = R[r]
                        v = t.result() if t.done() else await t
                        R[r] = v
                        if v is SK:
                            skipped = True
            # ---- sync calls (x is the function, ex the task) -------------
            if op == L_CALL1 and quiet and not skipped:
                # the commonest instruction, with nothing to check or emit
                try:
                    v = x(R[regs[0]])
                except BaseException as exc:
                    _failed(ctx, ex, exc)
                    raise
                if type(v) not in LAZY:
                    R[a] = v
                    budget -= 1
                    if not budget:
                        budget = await pacer.batch_done()
                    continue
                task = ex
            elif op == JIT:  # a hot frame's calls as one compiled block (jit.py)
                try:
                    p, v = x(R)
                except BaseException as exc:
                    p = failed_at(x, exc)
                    if p is not None:  # a call raised (not a container build)
                        _failed(ctx, ops[p][4], exc)
                    raise
                budget -= a  # a: the calls in the block
                if budget <= 0:
                    budget = await pacer.batch_done()
                if p < 0:
                    pc = len(ops) - 1  # ran to the end: return
                    continue
                # call p made a tail call: go on as if the dispatch loop had made it
                op, a, x, regs, task, flag = ops[p]
                pc = p + 1
            elif op <= L_CALLN and op >= L_CALL0:
                if skipped and _any_skipped(R, regs):
                    _skip(ctx, ex, "upstream")
                    R[a] = SK
                    continue
                if emit is not None and not ex.internal:
                    emit(TaskStarted(run_id, ex.name))
                try:
                    if op == L_CALL1:
                        v = x(R[regs[0]])
                    elif op == L_CALL2:
                        v = x(R[regs[0]], R[regs[1]])
                    elif op == L_CALL0:
                        v = x()
                    else:
                        v = x(*[R[r] for r in regs])
                except BaseException as exc:
                    _failed(ctx, ex, exc)
                    raise
                if emit is not None and not ex.internal:
                    emit(TaskFinished(run_id, ex.name))
                if type(v) not in LAZY:  # the common case, finished here (a task never
                    R[a] = v  # returns SKIPPED itself, so no skip bookkeeping)
                    budget -= 1
                    if not budget:
                        budget = await pacer.batch_done()
                    continue
                task = ex
            elif op == AWAIT:
                t = R[a]
                if type(t) is not asyncio.Task:
                    continue  # skipped before it started
                v = t.result() if t.done() else await t
                R[a] = v
                if v is SK:
                    skipped = True
                continue
            elif op == RET:
                v = R[a]
                if not stack:
                    return v
                ops, R, pc, a, skipped, deferred = stack.pop()
                R[a] = v
                if v is SK:
                    skipped = True
                continue
            elif op == START or op == INVOKE_START:
                node = x
                if skipped and _any_skipped(R, regs):
                    _skip(ctx, node.task, "upstream")
                    R[a] = SK
                    continue
                args, kwargs = _split(R, regs, ex, node.kwnames)
                R[a] = self._start(self._started(node, args, kwargs, op == INVOKE_START))
                continue
            elif op == CALL_AWAIT or op == INVOKE or op == CALL_KW:
                node = x
                task = node.task
                if skipped and _any_skipped(R, regs):
                    _skip(ctx, task, "upstream")
                    R[a] = SK
                    continue
                args, kwargs = _split(R, regs, ex, node.kwnames)
                if op == INVOKE:
                    v = await invoke(ctx, node, args, kwargs, self._follow)
                else:
                    if emit is not None and not task.internal:
                        emit(TaskStarted(run_id, task.name))
                    try:
                        v = task.fn(*args, **kwargs)
                        if op == CALL_AWAIT:
                            v = await v
                    except BaseException as exc:
                        _failed(ctx, task, exc)
                        raise
                    if emit is not None and not task.internal:
                        emit(TaskFinished(run_id, task.name))
            elif op == BUILD or op == BUILD_DICT:
                items = [R[r] for r in regs]
                if skipped and _any_skipped(R, regs):
                    if flag:  # the run's container target: skipped lazies become None
                        items = [None if i is SK else i for i in items]
                    else:
                        R[a] = SK
                        continue
                if op == BUILD:
                    R[a] = items if x is list else x(items)
                else:
                    R[a] = dict(zip(x, items))
                continue
            elif op == GUARD:
                reason = _guard(R, regs, x, skipped)
                if reason is not None:
                    _skip(ctx, x.task, reason)
                    R[a] = SK
                    skipped = True
                    pc = ex
                continue
            elif op == ROUTE:
                node = x
                task = node.task
                if skipped and R[regs[0]] is SK:  # only the selector can skip a router
                    R[a] = SK
                    continue
                values = {d: R[r] for d, r in zip(node.deps, regs[2:])}
                try:
                    v = select(ctx, node, R[regs[0]], R[regs[1]], values)
                except Exception as exc:
                    add_task_note(exc, task.name)
                    raise
                if type(v) is SharedRoute:
                    v = await asyncio.shield(evaluate_once(ctx, v, self._follow))
            elif op == LOADV:
                R[a] = ctx.value_of(x)
                continue
            elif op == LOADK:
                R[a] = x
                continue
            else:  # pragma: no cover - the compiler emits only the opcodes above
                raise AssertionError(f"unknown opcode {op}")

            # ---- after a call: value, or a tail call --------------------
            budget -= 1
            if not budget:
                budget = await pacer.batch_done()
            if type(v) not in LAZY:
                R[a] = v
                if v is SK:
                    skipped = True
                continue
            if emit is not None and not task.internal:
                emit(TailCall(run_id, task.name, getattr(v.task, "name", "?")))
            if not flag:
                if self._suspends(v):
                    # overlap it with the rest of this frame: read at first use
                    R[a] = self._start(self._follow(v))
                    if not deferred:
                        deferred = set()
                    deferred.add(a)
                    continue
                stack.append((ops, R, pc, a, skipped, deferred))
            # enter the continuation (frame reused when flag: the root's tail call)
            while True:
                new_ops, new_R = load(v)
                if new_ops is not None:
                    ops, R, pc, skipped, deferred = new_ops, new_R, 0, False, ()
                    break
                v = await hot_loop(ctx, v)
                if type(v) in LAZY:
                    continue
                # the hot loop finished with a value: return it to the frame below
                if not stack:
                    return v
                ops, R, pc, a, skipped, deferred = stack.pop()
                R[a] = v
                if v is SK:
                    skipped = True
                break


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


def _skip(ctx, task, reason):
    if ctx.emit is not None and (not task.internal or task.reports_skips):
        for _ in range(task.counts_as):
            ctx.emit(TaskSkipped(ctx.run_id, task.name, reason))


def _failed(ctx, task, exc):
    if ctx.emit is not None and not task.internal:
        ctx.emit(TaskFailed(ctx.run_id, task.name, exc))
    if not isinstance(exc, asyncio.CancelledError):
        add_task_note(exc, task.name)


def execute(ctx, root):
    """Run the workflow under ``root`` on the VM: the coroutine giving its value."""
    return VM(ctx).run(root)


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
