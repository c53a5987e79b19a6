"""The VM's instruction set, the ``Code`` object and the disassembler.

A template compiles to a ``Code``: a flat list of instructions over numbered
registers ``R[0..n_regs)`` and a constant pool ``K``. Registers
``0..n_inputs-1`` hold the template's input slots (bound per run, literal
values in canonical order); the rest are temporaries, reused once dead.

Every opcode is defined once, in ``OPS`` below: its number, name, operands,
effect and properties (as CPython's ``dis`` has ``hasconst``). The sets
``HAS_NODE``, ``CALLS``, ``MAY_AWAIT`` and ``LOWERED``, ``OPNAMES`` and the
table at the end of this docstring are derived from it. Operand ``A`` is
always the destination register.

Every call whose result is a ``LazyResult`` makes a tail call. On the
template's root call (the call whose value ``RET`` returns, flagged ``tail``),
the frame is reused: the continuation's inputs are bound and the VM jumps to
its start (``OP_TAILCALL`` style). Elsewhere the frame is pushed on the VM's
own frame stack (a list, not the Python stack) and the continuation's value
lands in ``R[A]`` when it returns.

``Instruction`` records are for reading; ``Code.ops`` is the same program
*lowered* to plain tuples ``(opcode, A, x, regs, extra, flag)`` with constants
resolved, which is what the dispatch loop indexes: ``CALL`` becomes one of
``CALL0``/``CALL1``/``CALL2``/``CALLN`` by arity (``x`` the function,
``extra`` the task), and a hot program gets a ``JIT`` instruction in front
(cascade_vm/jit.py). Lowered opcodes never appear in ``Code.instructions``.

The instruction set (generated from ``OPS``):

"""

from __future__ import annotations

import sys

import attrs


@attrs.frozen(slots=True)
class OpInfo:
    """One opcode: what it is called, what it reads and does, and its properties."""

    code: int  # the number compared in the dispatch loop
    name: str  # its name (``dis`` output, ``OPNAMES``)
    operands: str  # its operands, in the table's notation
    effect: str  # what it does
    node: bool = False  # the constant operand is a template node (HAS_NODE)
    call: bool = False  # it calls a task's function (CALLS)
    awaits: bool = False  # the dispatch loop may await in it (MAY_AWAIT)
    lowered: bool = False  # only in ``Code.ops``, made by lowering (LOWERED)


# Opcodes: small ints, compared in the dispatch loop (most frequent first there).
CALL = 0
CALL_KW = 1
CALL_AWAIT = 2
START = 3
AWAIT = 4
INVOKE = 5
INVOKE_START = 6
BUILD = 7
BUILD_DICT = 8
GUARD = 9
LOADV = 10
LOADK = 11
RET = 12
ROUTE = 13
JIT = 99
CALL0 = 100
CALL1 = 101
CALL2 = 102
CALLN = 103

OPS = (
    OpInfo(LOADV, "LOADV", "A K", "R[A] = value of Param/Env K[K] for this run"),
    OpInfo(LOADK, "LOADK", "A K", "R[A] = K[K]"),
    OpInfo(CALL, "CALL", "A K (B...)", "R[A] = K[K](R[B]...); a sync task, called inline",
           call=True),
    OpInfo(CALL_KW, "CALL_KW", "A K (B...) N",
           "R[A] = K[K](*R[B..][:N], **names->R[B..][N:]); a sync task", node=True, call=True),
    OpInfo(CALL_AWAIT, "CALL_AWAIT", "A K (B...) N",
           "R[A] = await K[K](...); async, nothing to overlap", node=True, call=True,
           awaits=True),
    OpInfo(START, "START", "A K (B...) N", "R[A] = task running K[K](...) (async, concurrent)",
           node=True, call=True),
    OpInfo(AWAIT, "AWAIT", "A", "R[A] = result of the task in R[A]", awaits=True),
    OpInfo(INVOKE, "INVOKE", "A K (B...) N",
           "R[A] = await calls.invoke(K[K] node, ...): the general path", node=True, call=True,
           awaits=True),
    OpInfo(INVOKE_START, "INVOKE_START", "A K (B...) N",
           "R[A] = task running calls.invoke(K[K] node, ...)", node=True, call=True),
    OpInfo(BUILD, "BUILD", "A K (B...)", "R[A] = K[K] (list/tuple/set) of R[B]..."),
    OpInfo(BUILD_DICT, "BUILD_DICT", "A K (B...)", "R[A] = dict(zip(K[K] keys, R[B]...))"),
    OpInfo(ROUTE, "ROUTE", "A K (B...)",
           "R[A] = Router node K[K] picks a route: B0 selector, B1 routes dict, then shared "
           "route roots' values; an unshared route is a lazy: a tail call", node=True,
           awaits=True),
    OpInfo(GUARD, "GUARD", "A K (B...) J",
           "skip check of node K[K] over deps R[B]...: when skipped, R[A] = SKIPPED and "
           "jump to J", node=True),
    OpInfo(RET, "RET", "A", "return R[A] to the caller frame (or the run)"),
    OpInfo(CALL0, "CALL0", "A f () task", "lowered CALL with no argument: R[A] = f()",
           call=True, lowered=True),
    OpInfo(CALL1, "CALL1", "A f (B) task", "lowered CALL with one argument: R[A] = f(R[B])",
           call=True, lowered=True),
    OpInfo(CALL2, "CALL2", "A f (B C) task", "lowered CALL with two arguments", call=True,
           lowered=True),
    OpInfo(CALLN, "CALLN", "A f (B...) task", "lowered CALL with three or more arguments",
           call=True, lowered=True),
    OpInfo(JIT, "JIT", "n block", "run the frame's n calls as one compiled block (jit.py); "
           "a tail call in it continues after the call that made it; an async block "
           "awaits its started calls", call=True, lowered=True, awaits=True),
)

OPNAMES = {o.code: o.name for o in OPS}
HAS_NODE = frozenset(o.code for o in OPS if o.node)
CALLS = frozenset(o.code for o in OPS if o.call)
MAY_AWAIT = frozenset(o.code for o in OPS if o.awaits)
LOWERED = frozenset(o.code for o in OPS if o.lowered)


def _table() -> str:
    rows = [(o.name, o.operands, o.effect) for o in OPS]
    w0 = max(len(r[0]) for r in rows) + 2
    w1 = max(len(r[1]) for r in rows) + 2
    rule = "=" * w0 + " " + "=" * w1 + " " + "=" * 60
    lines = [rule, f"{'opcode':<{w0}} {'operands':<{w1}} effect", rule]
    lines += [f"{n:<{w0}} {ops:<{w1}} {eff}" for n, ops, eff in rows]
    return "\n".join(lines + [rule])


__doc__ += _table()


@attrs.frozen(slots=True)
class Instruction:
    """One instruction, for reading and disassembly."""

    offset: int  # index in the instruction list
    opcode: int  # one of the opcodes above
    opname: str  # its name
    a: int  # destination register
    k: int | None  # constant-pool index, or None
    regs: tuple  # source registers, in order
    n: int | None  # CALL_KW & co: how many regs are positional; GUARD: jump target
    tail: bool  # the template's root call: a tail call here reuses the frame
    argrepr: str  # a readable form of the operands


@attrs.frozen(slots=True, eq=False)
class Code:
    """A compiled template.

    ``raw`` holds each instruction as a plain tuple (offset, opcode, a, k,
    regs, n, tail, argrepr), or is a function returning them (the fused tree
    compiler makes them only for disassembly); ``instructions`` turns them
    into ``Instruction`` records on demand, so compiling never pays for records.
    """

    raw: object  # instruction tuples, see above, or a function that makes them
    consts: tuple  # the constant pool
    n_inputs: int  # registers 0..n_inputs-1 are the input slots
    n_regs: int  # registers in a frame
    fill: list  # [None] * (n_regs - n_inputs), appended to the inputs at binding
    ops: tuple  # lowered instructions for the dispatch loop
    template: object  # the Template compiled
    has_async: bool = False  # some instruction starts or awaits async work

    @property
    def instructions(self) -> tuple:
        """The instructions as ``Instruction`` records."""
        raw = self.raw() if callable(self.raw) else self.raw
        return tuple(Instruction(off, op, OPNAMES[op], a, k, regs, n, tail, argrepr)
                     for off, op, a, k, regs, n, tail, argrepr in raw)


def get_instructions(code: Code):
    """Iterate over the instructions of ``code`` (records, as ``dis.get_instructions``)."""
    return iter(code.instructions)


def format_instruction(ins: Instruction) -> str:
    regs = " ".join(f"r{r}" for r in ins.regs)
    k = "" if ins.k is None else f"k{ins.k}"
    operands = " ".join(x for x in (f"r{ins.a}", k, regs) if x)
    if ins.opcode == GUARD:
        operands += f" ->{ins.n}"
    elif ins.n is not None:
        operands += f" n={ins.n}"
    tail = " (tail)" if ins.tail else ""
    return f"{ins.offset:>6}  {ins.opname:<13}{operands:<28}# {ins.argrepr}{tail}"


def dis(code: Code, file=None) -> None:
    """Print ``code``'s instructions, one per line, in the style of CPython's ``dis``."""
    out = file if file is not None else sys.stdout
    t = code.template
    print(
        f"; {len(t.nodes)} node(s), {code.n_inputs} input(s), {code.n_regs} register(s), "
        f"{len(code.consts)} constant(s)",
        file=out,
    )
    for ins in code.instructions:
        print(format_instruction(ins), file=out)
    if code.consts:
        print("; constants:", file=out)
        for i, c in enumerate(code.consts):
            print(f";   k{i} = {_const_repr(c)}", file=out)


def _const_repr(c) -> str:
    name = getattr(c, "name", None)
    if getattr(c, "folded", False):  # a batch or a run of links: say what it stands for
        return repr(c)
    if name is not None and hasattr(c, "fn"):
        return f"task {name}"
    if hasattr(c, "index") and hasattr(c, "task"):
        return f"node {c.index} ({getattr(c.task, 'name', c.task)!r})"
    return repr(c)
