"""Template -> Code: scheduling, instruction selection, register allocation.

Three passes, each a loop over the template (never recursion over the graph):

1. **Schedule.** Kahn's algorithm over the node dependencies, sources in
   canonical order. Sync calls run where they become ready. Async calls (and
   calls with policies, which go through ``invoke``) are *started* when ready
   and *awaited* only when nothing else can run, oldest first, so
   independent async calls overlap. A start immediately followed by its own
   await fuses into a direct ``CALL_AWAIT`` / ``INVOKE`` (no task created).
   Param/Env loads come first, so a missing parameter fails before any call.
2. **Select.** Each step becomes instructions over *virtual* registers (node
   ``i`` writes virtual ``i``; container arguments get temporaries; inputs are
   fixed registers). Gated nodes (``run_if``/``after``) get a ``GUARD``.
3. **Allocate.** Linear scan: a register is freed after its last read and
   reused by the next write, so long chains run in a handful of registers.
   The destination of an instruction may reuse a register it reads.
"""

from __future__ import annotations

from collections import deque

from cascade_graph.calls import direct, needs_invoke
from cascade_graph.context import TARGET
from cascade_graph.lazy import CALL as NODE_CALL
from cascade_graph.lazy import ENV, PARAM, ROUTE, Inject
from cascade_graph.template import Template, arg_program, call_function

from . import bytecode as bc
from .bytecode import Code


def _schedule(t: Template) -> list:
    nodes = t.nodes
    n = len(nodes)
    if t.tree and not t.value_nodes:
        for nd in nodes:
            if nd.task.is_async or needs_invoke(nd):
                break
        else:
            # In a tree, canonical (pre-)order puts every node before its
            # descendants, so the reverse is a valid order of sync calls.
            return [("run", i) for i in range(n - 1, -1, -1)]
    indeg = [len(nd.deps) for nd in nodes]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for nd in nodes:
        for d in nd.deps:
            dependents[d].append(nd.index)
    steps = []
    ready: deque = deque()
    for i in t.value_nodes:
        steps.append(("load", i))
    for i in t.value_nodes:
        for d in dependents[i]:
            indeg[d] -= 1
    for i in range(n):
        if indeg[i] == 0 and nodes[i].kind not in (PARAM, ENV):
            ready.append(i)
    done = [False] * n  # value available (run, awaited or loaded)
    for i in t.value_nodes:
        done[i] = True
    # started, not awaited yet; and the pending nodes that are the last missing input
    # of some node. Each set has a queue in insertion order, from which nodes that
    # left the set are dropped lazily (taking the first stays O(1) amortized).
    pending: set = set()
    pending_order: deque = deque()
    unlocks: set = set()
    unlock_order: deque = deque()

    def unlock(x):
        if x not in unlocks:
            unlocks.add(x)
            unlock_order.append(x)

    def first(order: deque, members: set) -> int:
        while order[0] not in members:
            order.popleft()
        return order.popleft()

    def note_unlock(d):
        # d waits on exactly one node: if that node is pending, awaiting it unlocks d
        for x in nodes[d].deps:
            if not done[x] and x in pending:
                unlock(x)

    def release(i):
        done[i] = True
        for d in dependents[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
            elif indeg[d] == 1:
                note_unlock(d)

    while ready or pending:
        if ready:
            i = ready.popleft()
            nd = nodes[i]
            if nd.task.is_async or needs_invoke(nd):
                steps.append(("start", i))
                pending.add(i)
                pending_order.append(i)
                for d in dependents[i]:
                    if indeg[d] == 1:
                        unlock(i)
                        break
            else:
                steps.append(("run", i))
                release(i)
        else:
            # await first the task whose value lets something else run (its first use)
            i = first(unlock_order, unlocks) if unlocks else first(pending_order, pending)
            unlocks.discard(i)
            pending.discard(i)
            if steps[-1] == ("start", i):
                steps[-1] = ("direct", i)
            else:
                steps.append(("await", i))
            release(i)
    return steps


class _Emitter:
    """Pass 2: instructions over virtual registers (node i -> i; temps above n)."""

    def __init__(self, t: Template):
        self.t = t
        self.n = len(t.nodes)
        self.next_temp = self.n
        self.consts: list = []
        self.const_index: dict = {}
        self.code: list = []  # [opcode, a, k, regs, n, tail, argrepr]

    def const(self, value) -> int:
        key = (type(value), id(value))
        i = self.const_index.get(key)
        if i is None:
            i = self.const_index[key] = len(self.consts)
            self.consts.append(value)
        return i

    def emit(self, opcode, a, k=None, regs=(), n=None, tail=False, argrepr=""):
        self.code.append([opcode, a, k, tuple(regs), n, tail, argrepr])
        return len(self.code) - 1

    def operand(self, idx: int) -> int:
        """Virtual register of program slot ``idx`` (inputs are negative: -(j+1))."""
        return idx if idx < self.n else -(idx - self.n) - 1

    def args(self, node) -> tuple[list, int]:
        """Registers holding the call's positional then keyword values; builds containers."""
        if node.simple:  # positional then keyword values, each a literal or a node's
            regs = []
            lit = node.first_input
            for s in node.args + node.kwargs if node.kwnames else node.args:
                if s is None:
                    regs.append(-lit - 1)
                    lit += 1
                else:
                    regs.append(s[1])
            return regs, len(node.args)
        stack: list = []
        for op in arg_program(node, self.n):
            tag = op[0]
            if tag == "V":
                stack.append(self.operand(op[1]))
            elif tag == "I":
                temp = self.temp()
                self.emit(bc.LOADK, temp, self.const(Inject(op[1])), argrepr=f"inject {op[1]!r}")
                stack.append(temp)
            else:
                cnt = op[2] if tag == "C" else len(op[1])
                items = stack[len(stack) - cnt:] if cnt else []
                del stack[len(stack) - cnt:]
                temp = self.temp()
                if tag == "C":
                    self.emit(bc.BUILD, temp, self.const(op[1]), items, n=int(node.task is TARGET),
                              argrepr=op[1].__name__)
                else:
                    self.emit(bc.BUILD_DICT, temp, self.const(op[1]), items,
                              n=int(node.task is TARGET), argrepr=f"dict {list(op[1])!r}")
                stack.append(temp)
        return stack, len(node.args)

    def temp(self) -> int:
        t = self.next_temp
        self.next_temp += 1
        return t


def _fusable(nd) -> bool:
    """Can the one-pass compiler take this node: a sync call of literals, lazies and
    containers of them, with no policy but an inline retry or timeout, no gate?"""
    if nd.simple:
        return not nd.task.is_async
    return (nd.kind == NODE_CALL and not nd.conds and not nd.after and not nd.injects
            and direct(nd.task) and not nd.task.is_async
            and (nd.policy is None or not needs_invoke(nd)))


def _sync_order(nodes) -> tuple[list, list]:
    """(schedule, readers) of a DAG of sync calls: the order ``_schedule`` gives it
    (Kahn's algorithm, sources in canonical order, dependents as they become
    ready) and, per node, how many nodes read its value."""
    n = len(nodes)
    dependents: list = [[] for _ in range(n)]
    indeg = [0] * n
    for nd in nodes:
        deps = nd.deps
        indeg[nd.index] = len(deps)
        for d in deps:
            dependents[d].append(nd.index)
    readers = [len(d) for d in dependents]
    order = [i for i in range(n) if not indeg[i]]
    append = order.append
    for i in order:  # grows while it is read: a FIFO queue
        for d in dependents[i]:
            indeg[d] -= 1
            if not indeg[d]:
                append(d)
    return order, readers


def _compile_sync(t: Template) -> Code | None:
    """One pass for the commonest cold shapes: sync calls with positional and
    keyword literals, lazies and containers of them, no policy.

    In a tree every node's value is read by one instruction group (its
    parent's container builds and call), so a register is free again right
    after that: scheduling (reverse canonical order), selection and
    allocation fuse into one loop. A DAG takes ``_schedule``'s order instead
    and frees a value after its last reader. Container arguments are built
    into temporaries, each read once. Instruction tuples for ``dis`` are made
    only when asked for. Returns None when the template is not of that shape.
    """
    nodes = t.nodes
    if t.value_nodes:
        return None
    for nd in nodes:
        if not _fusable(nd):
            return None
    if t.tree:
        order = range(len(nodes) - 1, -1, -1)
        readers = None  # every value is read once: free right after
    else:
        order, readers = _sync_order(nodes)
    n_inputs = t.n_inputs
    phys = [0] * len(nodes)
    free: list = []
    n_regs = n_inputs
    ops = []
    append = ops.append
    by_arity = _CALL_BY_ARITY
    same: dict = {}  # instruction tuple -> the first equal one
    pool: dict = {}  # id -> constant (tasks, container types and keys), in first-use order
    for i in order:
        nd = nodes[i]
        task = nd.task
        if nd.simple:
            args = nd.args + nd.kwargs if nd.kwnames else nd.args
            if len(args) == 1:  # the commonest: a chain link or a one-literal call
                s = args[0]
                r = nd.first_input if s is None else phys[s[1]]
                src = _ONE_REG[r] if r < _SMALL else (r,)
            else:
                src = []
                lit = nd.first_input
                for s in args:
                    if s is None:
                        src.append(lit)
                        lit += 1
                    else:
                        src.append(phys[s[1]])
                src = tuple(src)
        elif _one_level(nd.args + nd.kwargs):
            # containers of literals and lazies, one level deep (a fan-in's list)
            src, n_regs = _one_level_args(nd, phys, free, n_regs, append, pool)
        else:
            src, n_regs = _fused_args(nd, phys, free, n_regs, len(nodes), append, pool)
        if readers is None:
            for d in nd.deps:
                free.append(phys[d])
        else:
            for d in nd.deps:  # free a value once its last reader has read it
                readers[d] -= 1
                if not readers[d]:
                    free.append(phys[d])
        if free:
            dst = free.pop()
        else:
            dst = n_regs
            n_regs += 1
        phys[i] = dst
        if id(task) not in pool:
            pool[id(task)] = task
        if nd.policy is None:  # (a simple node has none)
            fn = call_function(nd) if nd.kwnames else task.fn
            op = (by_arity[len(src)] if len(src) < 3 else bc.CALLN, dst, fn, src, task, i == 0)
        else:  # an inline policy: the general sync call
            op = (bc.CALL_KW, dst, nd, src, len(nd.args), i == 0)
            pool.setdefault(id(nd), nd)
        if nd.deps:  # equal instructions share one tuple (a chain's links do)
            op = same.setdefault(op, op)
        append(op)
    root = phys[0]
    append((bc.RET, root, None, (root,), None, False))
    ops = tuple(ops)
    consts = tuple(pool.values())
    return Code(raw=lambda: _raw_of_fused(ops, consts, nodes[0].task.name), consts=consts,
                n_inputs=n_inputs, n_regs=n_regs, fill=[None] * (n_regs - n_inputs),
                ops=ops, template=t, has_async=False)


_SMALL = 1 << 12
_ONE_REG = [(r,) for r in range(_SMALL)]  # one-register operand tuples, shared


def _one_level(specs) -> bool:
    """Are ``specs`` literals, lazies and containers of only those (no nesting, no injection)?"""
    for s in specs:
        if s is not None and s[0] != "L":
            if s[0] == "I":
                return False
            for x in s[2]:
                if x is not None and x[0] != "L":
                    return False
    return True


def _one_level_args(nd, phys, free, n_regs, append, pool):
    """Registers of the positional then keyword arguments of ``nd``, whose containers
    hold literals and lazies only: each container built into a temporary, free again
    once the call has read it. Returns (source registers, n_regs)."""
    src = []
    temps = []
    lit = nd.first_input
    target = nd.task is TARGET
    for s in nd.args + nd.kwargs:
        if s is None:
            src.append(lit)
            lit += 1
        elif s[0] == "L":
            src.append(phys[s[1]])
        else:
            regs = []
            for x in s[2]:
                if x is None:
                    regs.append(lit)
                    lit += 1
                else:
                    regs.append(phys[x[1]])
            tmp, n_regs = _new_reg(free, n_regs)
            append((bc.BUILD if s[0] == "C" else bc.BUILD_DICT, tmp, s[1], tuple(regs),
                    None, target))
            pool.setdefault(id(s[1]), s[1])
            src.append(tmp)
            temps.append(tmp)
    free += temps  # read by the call: free again (it may write one)
    return tuple(src), n_regs


def _fused_args(nd, phys, free, n_regs, n_nodes, append, pool):
    """Registers of a node's positional then keyword arguments, building its containers into
    temporaries (each freed once read). Returns (source registers, n_regs)."""
    stack: list = []  # node/input slots (ints) and temporaries ([register])
    target = nd.task is TARGET
    for op in arg_program(nd, n_nodes):
        tag = op[0]
        if tag == "V":
            stack.append(op[1])
            continue
        cnt = op[2] if tag == "C" else len(op[1])
        items = stack[len(stack) - cnt:] if cnt else []
        del stack[len(stack) - cnt:]
        src = tuple([_fused_reg(x, phys, n_nodes) for x in items])
        for x in items:
            if type(x) is list:  # a temporary, read here for the last time
                free.append(x[0])
        dst, n_regs = _new_reg(free, n_regs)
        append((bc.BUILD if tag == "C" else bc.BUILD_DICT, dst, op[1], src, None, target))
        pool.setdefault(id(op[1]), op[1])
        stack.append([dst])
    return tuple([_fused_reg(x, phys, n_nodes) for x in stack]), n_regs


def _new_reg(free: list, n_regs: int) -> tuple:
    """(a register for a container temporary, the new register count): a free one first."""
    if free:
        return free.pop(), n_regs
    return n_regs, n_regs + 1


def _fused_reg(x, phys, n_nodes) -> int:
    """The register of an argument-program value: a temporary, a node's value or an input."""
    if type(x) is list:
        return x[0]
    return phys[x] if x < n_nodes else x - n_nodes


def _raw_of_fused(ops, consts, root_name) -> tuple:
    """The instruction tuples of fused code (see ``Code.raw``), made for disassembly."""
    k_of = {id(c): k for k, c in enumerate(consts)}
    raw = []
    for pc, (op, a, x, src, ex, tail) in enumerate(ops):
        if op == bc.RET:
            raw.append((pc, op, a, None, src, None, False, root_name))
        elif op == bc.BUILD:
            raw.append((pc, op, a, k_of[id(x)], src, int(tail), False, x.__name__))
        elif op == bc.BUILD_DICT:
            raw.append((pc, op, a, k_of[id(x)], src, int(tail), False, f"dict {list(x)!r}"))
        elif op == bc.CALL_KW:
            raw.append((pc, op, a, k_of[id(x)], src, ex, tail, x.task.name))
        else:
            kw = getattr(x, "kwnames", None)  # a keyword caller (template.keyword_caller)
            raw.append((pc, bc.CALL, a, k_of[id(ex)], src, None, tail,
                        repr(ex) if ex.folded else ex.name if kw is None
                        else f"{ex.name} kw={list(kw)}"))
    return tuple(raw)


def compile_template(t: Template) -> Code:
    """Compile ``t`` to a ``Code`` (see module docstring)."""
    code = _compile_sync(t)
    if code is not None:
        return code
    em = _Emitter(t)
    nodes = t.nodes
    for step, i in _schedule(t):
        nd = nodes[i]
        if step == "load":
            em.emit(bc.LOADV, i, em.const(nd.task), argrepr=repr(nd.task))
            continue
        if step == "await":
            em.emit(bc.AWAIT, i, regs=(i,), argrepr=nd.task.name)
            continue
        guard = None
        if nd.conds or nd.after:
            guard = em.emit(bc.GUARD, i, em.const(nd), nd.deps,
                            argrepr=f"{nd.task.name} run_if/after")
        regs, npos = em.args(nd)
        name = repr(nd.task) if getattr(nd.task, "folded", False) else nd.task.name
        tail = i == 0
        invoke = needs_invoke(nd)
        if nd.kind == ROUTE:
            em.emit(bc.ROUTE, i, em.const(nd), regs + list(nd.deps), 2, tail,
                    "Router " + ", ".join(repr(r[0]) for r in nd.routes))
        elif step == "run":
            if (nd.kwnames and not nd.simple) or nd.policy is not None:
                # keywords around containers, or an inline retry/timeout: the general
                # sync call (vm.VM._call)
                em.emit(bc.CALL_KW, i, em.const(nd), regs, npos, tail,
                        f"{name} kw={list(nd.kwnames)}")
            elif nd.kwnames:  # a plain keyword call: a positional call of its caller
                em.emit(bc.CALL, i, em.const(nd.task), regs, call_function(nd), tail,
                        f"{name} kw={list(nd.kwnames)}")
            else:
                em.emit(bc.CALL, i, em.const(nd.task), regs, None, tail, name)
        else:
            kn = em.const(nd)
            if step == "direct":
                op = bc.INVOKE if invoke else bc.CALL_AWAIT
            else:
                op = bc.INVOKE_START if invoke else bc.START
                tail = False
            em.emit(op, i, kn, regs, npos, tail, name + (" (policies)" if invoke else ""))
        if guard is not None:
            em.code[guard][4] = len(em.code)
    em.emit(bc.RET, 0, regs=(0,), argrepr=nodes[0].task.name if nodes[0].kind == NODE_CALL
            else repr(nodes[0].task))
    return _allocate(em, t)


def _reads(ins) -> tuple:
    op = ins[0]
    if op == bc.AWAIT or op == bc.RET:
        return (ins[1],)
    return ins[3]


_CALL_BY_ARITY = (bc.CALL0, bc.CALL1, bc.CALL2)
_ASYNC_OPS = bc.MAY_AWAIT | {bc.START, bc.INVOKE_START}  # the Code has async work
_NODE_OPS = bc.HAS_NODE


def _allocate(em: _Emitter, t: Template) -> Code:
    """Linear-scan register allocation, then lowering to the dispatch form (one pass)."""
    code = em.code
    n_inputs = t.n_inputs
    last_read: dict[int, int] = {}
    for pc, ins in enumerate(code):
        for r in _reads(ins):
            if r >= 0:
                last_read[r] = pc
    phys: dict[int, int] = {}
    free: list[int] = []
    n_regs = n_inputs
    consts = tuple(em.consts)
    raw = []
    ops = []
    CALL = bc.CALL
    for pc, ins in enumerate(code):
        opcode, a, k, regs, n, tail, argrepr = ins
        src = tuple([-r - 1 if r < 0 else phys[r] for r in regs])
        # free registers whose value dies here (so the destination may reuse one)
        for r in (dict.fromkeys(regs) if len(regs) > 1 else regs):
            if r >= 0 and r != a and last_read[r] == pc:
                free.append(phys.pop(r))
        dst = phys.get(a)
        if dst is None:
            if free:
                dst = free.pop()
            else:
                dst = n_regs
                n_regs += 1
            phys[a] = dst
        if opcode == bc.RET:
            src = (dst,)
        raw.append((pc, opcode, dst, k, src, n, tail, argrepr))
        x = consts[k] if k is not None else None
        if opcode == CALL:
            lowered = _CALL_BY_ARITY[len(src)] if len(src) < 3 else bc.CALLN
            ops.append((lowered, dst, x.fn if n is None else n, src, x, tail))
        elif opcode in _NODE_OPS:
            ops.append((opcode, dst, x, src, n, tail))
        elif opcode == bc.BUILD or opcode == bc.BUILD_DICT:
            ops.append((opcode, dst, x, src, None, bool(n)))
        else:
            ops.append((opcode, dst, x, src, None, False))
    return Code(
        raw=tuple(raw),
        consts=consts,
        n_inputs=n_inputs,
        n_regs=n_regs,
        fill=[None] * (n_regs - n_inputs),
        ops=tuple(ops),
        template=t,
        has_async=any(o[0] in _ASYNC_OPS for o in ops),
    )
