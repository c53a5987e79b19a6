"""The VM's instruction set, the ``Code`` object and the disassembler.

A template compiles to a ``Code``: a flat list of instructions over numbered
registers ``R[0..n_regs)`` and a constant pool ``K``. Registers
``0..n_inputs-1`` hold the template's input slots (bound per run, literal
values in canonical order); the rest are temporaries, reused once dead.

Instruction set (operand ``A`` is always the destination register):

==============  =====================  =============================================
opcode          operands               effect
==============  =====================  =============================================
LOADV           A K                    R[A] = value of Param/Env K[K] for this run
LOADK           A K                    R[A] = K[K]
CALL            A K (B...)             R[A] = K[K](R[B]...); a sync task, called inline
CALL_KW         A K (B...) N           R[A] = K[K](*R[B..][:N], **names->R[B..][N:])
CALL_AWAIT      A K (B...) N           R[A] = await K[K](...); async, nothing to overlap
START           A K (B...) N           R[A] = task running K[K](...) (async, concurrent)
AWAIT           A                      R[A] = result of the task in R[A]
INVOKE          A K (B...) N           R[A] = await invoke(K[K] node, ...): policies
INVOKE_START    A K (B...) N           R[A] = task running invoke(K[K] node, ...)
BUILD           A K (B...)             R[A] = K[K] (list/tuple/set) of R[B]...
BUILD_DICT      A K (B...)             R[A] = dict(zip(K[K] keys, R[B]...))
ROUTE           A K (B...)             R[A] = Router node K[K] picks a route: B0 selector,
                                       B1 routes dict, then shared route roots' values;
                                       an unshared route is a lazy: a tail call
GUARD           A K (B...) J           skip check of node K[K] over deps R[B]...: when
                                       skipped, R[A] = SKIPPED and jump to J
RET             A                      return R[A] to the caller frame (or the run)
==============  =====================  =============================================

Every call whose result is a ``LazyResult`` makes a tail call. On the
template's root call (the call whose value ``RET`` returns, flagged ``tail``),
the frame is reused: the continuation's inputs are bound and the VM jumps to
its start (``OP_TAILCALL`` style). Elsewhere the frame is pushed on the VM's
own frame stack (a list, not the Python stack) and the continuation's value
lands in ``R[A]`` when it returns.

``Instruction`` records are for reading; ``Code.ops`` is the same program
lowered to plain tuples ``(opcode, A, x, regs, node, flag)`` with constants
resolved, which is what the dispatch loop indexes.
"""

from __future__ import annotations

import sys

import attrs

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

OPNAMES = {
    CALL: "CALL",
    CALL_KW: "CALL_KW",
    CALL_AWAIT: "CALL_AWAIT",
    START: "START",
    AWAIT: "AWAIT",
    INVOKE: "INVOKE",
    INVOKE_START: "INVOKE_START",
    BUILD: "BUILD",
    BUILD_DICT: "BUILD_DICT",
    GUARD: "GUARD",
    LOADV: "LOADV",
    LOADK: "LOADK",
    RET: "RET",
    ROUTE: "ROUTE",
}


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
    tier: list = attrs.field(factory=lambda: [0, None])  # [entries, JIT ops or ()]: jit.py

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
