"""The VM's second tier: a hot, all-sync program compiled to one Python function.

The dispatch loop pays about sixty bytecodes per instruction (fetch, unpack,
opcode tests, event and skip checks, the yield budget) around a call that
is often a few bytecodes of user code. A loop body such as ``heavy_loop``'s
(twenty chained links and a tail call) runs the same ``Code`` thousands of
times, so once a ``Code`` has been entered ``HOT_AFTER`` times, and if it
qualifies, its straight-line instructions are turned into Python source,
one statement per instruction, and compiled once:

    def block(R, f0=<fn>, f1=<fn>, LAZY=<lazy types>):
        v = f0(R[0])
        if v.__class__ in LAZY: return 1, v
        R[2] = v
        ...
        return -1, None

Registers stay in ``R``, so the dispatch loop can take over at any point.
The VM runs the block through one ``JIT`` instruction put in front of the
lowered ops (``JIT`` ops, then the ops themselves shifted by one):

- the block ran to the end: the VM continues at the ``RET``;
- call ``p`` returned a lazy (a tail call): the block returns ``(p, v)`` and
  the VM handles ``v`` exactly as if the dispatch loop had made that call,
  continuing at ``p + 1`` (the block never resumes);
- a call raised: the traceback's line in the block names the instruction,
  so the failure is reported on the right task.

A run of links (a ``RepeatTask`` call, see cascade_graph/repeat.py) is
unrolled into the block, one statement per link, and counts as that many
calls. Qualifying programs hold only sync calls, container builds, plain
async calls (``START``, ``AWAIT``) and the return, and at
most ``MAX_CALLS`` calls (the dispatch loop reads the clock every 64 calls, so
a block never runs longer between yield checks). The block is used only when
no event listener is attached (it emits nothing); otherwise the dispatch loop
runs the same code.

A program with async calls (a loop body whose DAG has an ``async def`` task,
as agent loops have) becomes an ``async def`` block, flagged on its ``JIT``
instruction, that the dispatch loop awaits: ``START`` is the dispatch loop's
quiet start (``calls.start_async_quiet``: the call's first step now, a task
only when it suspends), ``AWAIT`` reads a task's value (awaiting it when not
done yet). ``SKIPPED`` cannot occur in a block's registers until an ``AWAIT``
reads it (a started call's continuation was skipped): the block then hands
the frame back to the dispatch loop after that ``AWAIT`` (``(p, SKIPPED)``),
which goes on with the skip bookkeeping. A failing async call was reported
where it failed (by the quiet start or its task), so only sync calls' lines
name a task (``failed_at``).
"""

from __future__ import annotations

import asyncio

from cascade_graph.calls import SKIPPED, start_async_quiet
from cascade_graph.repeat import RepeatTask

from . import bytecode as bc
from .bytecode import CALL0, CALLN, JIT

HOT_AFTER = 8  # entries of a Code before its block is compiled
MAX_CALLS = 64  # calls in one block at most: the dispatch loop's clock-check period


def jit_ops(code, lazy_types) -> tuple | None:
    """``code.ops`` behind a ``JIT`` instruction running them as one block, or None
    when the program does not qualify (see module docstring)."""
    ops = code.ops
    calls = 0
    awaits = False  # an async block (see module docstring)
    for op in ops:
        o = op[0]
        if CALL0 <= o <= CALLN:
            calls += op[4].count if type(op[4]) is RepeatTask else 1
        elif o == bc.START:
            calls += 1
            awaits = True
        elif o == bc.AWAIT:
            awaits = True
        elif o not in (bc.BUILD, bc.BUILD_DICT, bc.RET):
            return None
    if calls > MAX_CALLS or ops[-1][0] != bc.RET:
        return None
    if awaits:
        lines = ["async def block(R, ctx, follow, {params}):"]
        consts: dict = {"LAZY": lazy_types, "START": start_async_quiet, "TASK": asyncio.Task,
                        "SK": SKIPPED}
    else:
        lines = ["def block(R, {params}):"]
        consts = {"LAZY": lazy_types}
    line_to_pc: dict = {}

    def const(value) -> str:
        name = f"k{len(consts)}"
        consts[name] = value
        return name

    for i, (o, a, x, regs, ex, _tail) in enumerate(ops):  # ex: a call's task, a START's npos
        p = i + 1  # its index behind the JIT instruction
        args = ", ".join(f"R[{r}]" for r in regs)
        if CALL0 <= o <= CALLN and type(ex) is RepeatTask:
            # a run of links, unrolled: link k returning a lazy hands back the run's
            # continuation after k links, as the run's own call would have returned
            f, rt, w = const(ex.call), const(ex), ex.width
            lines.append(f"    v = R[{regs[0]}]")
            for k in range(1, ex.count + 1):
                j = 1 + (ex.count - k) * w  # link k's literals (the top link's first)
                line_to_pc[len(lines) + 1] = p
                passed = "".join(f", R[{r}]" for r in regs[j:j + w])
                lines.append(f"    v = {f}(v{passed})")
                lines.append(f"    if v.__class__ in LAZY: return {p}, {rt}.continuation(v, {k}, "
                         f"({''.join(f'R[{r}], ' for r in regs[1:])}))")
            lines.append(f"    R[{a}] = v")
        elif CALL0 <= o <= CALLN:
            line_to_pc[len(lines) + 1] = p
            lines.append(f"    v = {const(x)}({args})")
            lines.append(f"    if v.__class__ in LAZY: return {p}, v")
            lines.append(f"    R[{a}] = v")
        elif o == bc.START:  # the quiet start: a value, or the task computing it
            pos = ", ".join(f"R[{r}]" for r in regs[:ex])
            kw = ", ".join(f"{k!r}: R[{r}]" for k, r in zip(x.kwnames, regs[ex:]))
            lines.append(f"    v = START(ctx, {const(x.task)}, [{pos}], {{{kw}}}, follow)")
            lines.append("    if v.__class__ in LAZY: v = ctx.spawn(follow(v))")
            lines.append(f"    R[{a}] = v")
        elif o == bc.AWAIT:  # a skipped value hands the frame back (module docstring)
            lines.append(f"    v = R[{a}]")
            lines.append("    if v.__class__ is TASK:")
            lines.append(f"        v = R[{a}] = v.result() if v.done() else await v")
            lines.append(f"        if v is SK: return {p + 1}, v")
        elif o == bc.BUILD:
            if x is list:
                lines.append(f"    R[{a}] = [{args}]")
            elif x is tuple:
                lines.append(f"    R[{a}] = ({args}{',' if len(regs) == 1 else ''})")
            else:
                lines.append(f"    R[{a}] = {const(x)}([{args}])")
        elif o == bc.BUILD_DICT:
            lines.append(f"    R[{a}] = dict(zip({const(x)}, [{args}]))")
    lines.append("    return -1, None")
    lines[0] = lines[0].format(params=", ".join(f"{k}={k}" for k in consts))
    namespace = dict(consts)
    exec(compile("\n".join(lines), f"<cascade block {id(code):#x}>", "exec"), namespace)
    block = namespace["block"]
    block.line_to_pc = line_to_pc
    return ((JIT, calls, block, (), None, awaits),) + ops


def failed_at(block, exc: BaseException) -> int | None:
    """The index (behind the JIT instruction) of the call in ``block`` that raised ``exc``."""
    tb = exc.__traceback__
    code = block.__code__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return block.line_to_pc.get(tb.tb_lineno)
        tb = tb.tb_next
    return None
