"""The graph executor's compiled form of a template: a dependency-driven plan.

A ``Plan`` is computed once per template (kept in the shared cache entry) and
is plain data: for each node its *op* (how to run it), the indices of the
nodes waiting on it (``dependents``) and how many nodes it waits on
(``indegree``). Edges are indexed both ways up front, so completing a node
touches only its own dependents: no scan over edges at run time.

Value slots of an instance: ``vals[0:n]`` hold node values, ``vals[n:]`` the
bound inputs, so a node's arguments are fetched with one ``itemgetter``.

``to_dot`` (drawing.py, re-exported here) renders a workflow as Graphviz DOT.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter

import attrs

from .calls import direct, needs_invoke
from .drawing import to_dot  # noqa: F401 - re-exported: python -m cascade_vm graph
from .lazy import CALL, ENV, PARAM, ROUTE
from .template import Template, arg_program, call_function, gathered_program, one_level_getter

# op modes
SIMPLE = 0  # positional literal/node arguments, no policy: call fn(*getter(vals))
BUILT = 1  # arguments from an argument program (containers, keywords), no invoke
INVOKE = 2  # the general path (calls.needs_invoke): run through calls.invoke
VALUE = 3  # a Param/Env node, resolved when the instance starts
ROUTER = 4  # a Router's route node: select a route (router.select)


@attrs.define(slots=True, eq=False)
class Op:
    """How to run one node of a plan (never mutated once compiled)."""

    mode: int  # SIMPLE, BUILT, INVOKE or VALUE
    fn: object  # the task's function (None for VALUE)
    is_async: bool
    getter: object  # SIMPLE: itemgetter over vals, or None for no arguments
    single: bool  # SIMPLE: the getter returns one value (wrap it in a tuple)
    program: tuple  # BUILT/INVOKE: argument program
    nargs: int  # BUILT/INVOKE: how many program results are positional
    gated: bool  # has run_if conditions or after-dependencies
    name: str
    quiet: bool  # internal task: emits no events
    node: object  # the template Node


class SimpleOp(Op):
    """An ``Op`` for a SIMPLE node (most of a cold workflow): the fields a simple
    call never varies are class-level constants, and the task's own facts are
    looked up once per task, so building one assigns six fields, not eleven."""

    __slots__ = ()
    mode = SIMPLE
    program = ()
    gated = False

    def __init__(self, facts, getter, single, nargs, node):
        self.fn, self.is_async, self.name, self.quiet = facts
        self.getter = getter
        self.single = single
        self.nargs = nargs
        self.node = node


@attrs.frozen(slots=True, eq=False)
class Plan:
    """A template compiled for the graph executor."""

    template: Template
    n: int  # number of nodes
    ops: tuple  # Op per node
    dependents: tuple  # node index -> tuple of nodes waiting on it
    indegree: tuple  # node index -> how many distinct nodes it waits on
    sources: tuple  # nodes with nothing to wait on, in canonical order
    value_nodes: tuple  # PARAM/ENV nodes
    flat: bool  # the hot path applies
    # node index -> the node that waits on it alone and on nothing else, a sync SIMPLE
    # call (a chain's next link), or -1: a quiet run calls it right after (executor.py)
    next_in_line: tuple
    # node index -> is it a sync SIMPLE call (a quiet run calls it without the protocol)
    inline: tuple
    # when every node is a call with no conditions, SIMPLE or BUILT (containers,
    # keywords, an inline policy; sync, or async: started at once in a quiet run):
    # ``(i, fn, getter, how)`` per node (``_sweep_entry``), in the order the ready
    # queue would run them (``sweep_order``); a quiet run calls them in that order with
    # no queue (executor.py ``GraphRun._sweep``). Else None.
    sweep: tuple | None = None


def compile_plan(template: Template) -> Plan:
    """Compile ``template`` into a Plan (iterative; linear in nodes and edges)."""
    nodes = template.nodes
    n = len(nodes)
    dependents: list[list[int]] = [[] for _ in range(n)]
    indegree = []
    ops = []
    append = ops.append
    facts: dict = {}  # id(task) -> (fn, is_async, name, quiet): asked once per task
    for node in nodes:
        deps = node.deps
        for d in deps:
            dependents[d].append(node.index)
        indegree.append(len(deps))
        if node.simple:  # (never gated: run_if/after make a node not simple)
            task = node.task
            f = facts.get(id(task))
            if f is None:
                f = facts[id(task)] = (task.fn, task.is_async, task.name, bool(task.internal))
            if node.kwnames:  # a plain keyword call: its caller takes every value in order
                f = (call_function(node),) + f[1:]
            args = node.args
            if len(args) == 1 and not node.kwnames:
                s = args[0]
                k = n + node.first_input if s is None else s[1]
                append(SimpleOp(f, itemgetter(k), True, 1, node))
            else:
                append(SimpleOp(f, *_simple_getter(node, n), node))
        else:
            append(_one_level_op(node, n, facts) or _op(node, n))
    sources = tuple([i for i in range(n) if not indegree[i] and nodes[i].kind not in (PARAM, ENV)])
    inline = tuple([op.mode == SIMPLE and not op.is_async for op in ops])
    line = _next_in_line(ops, dependents, indegree)
    return Plan(
        template=template,
        n=n,
        ops=tuple(ops),
        dependents=tuple([tuple(d) for d in dependents]),
        indegree=tuple(indegree),
        sources=sources,
        value_nodes=template.value_nodes,
        flat=template.flat,
        next_in_line=line,
        inline=inline,
        sweep=plan_sweep(ops, dependents, indegree, sources, line),
    )


#: how a sweep calls a node (``Plan.sweep``): a sync SIMPLE node's fn(value),
#: fn(*values) or fn(); any other through the protocol (executor ``_call_now``)
SWEEP_ONE, SWEEP_MANY, SWEEP_NONE, SWEEP_OTHER = range(4)


def _sweepable(op: Op) -> bool:
    """Is this node called (or, async, started) at once in a quiet run, with no
    condition to check: a SIMPLE or BUILT node without conditions?"""
    return (op.mode == SIMPLE or op.mode == BUILT) and not op.gated


def _sweep_entry(i: int, op: Op) -> tuple:
    if op.mode != SIMPLE or op.is_async:
        return i, None, op, SWEEP_OTHER
    if op.getter is None:
        return i, op.fn, None, SWEEP_NONE
    return i, op.fn, op.getter, SWEEP_ONE if op.single else SWEEP_MANY


def plan_sweep(ops: list, dependents: list, indegree: list, sources: tuple,
               line: tuple) -> tuple | None:
    """``Plan.sweep``: when every node is ``_sweepable``, an entry per node in
    ``sweep_order``; else None (and for a single node, which the hot path runs)."""
    if len(ops) < 2 or not all(map(_sweepable, ops)):
        return None
    return tuple([_sweep_entry(i, ops[i])
                  for i in sweep_order(dependents, indegree, sources, line)])


def sweep_order(dependents, indegree, sources, line) -> list:
    """The order in which a quiet run's scheduler would call the nodes of a plan of
    unconditional calls, when none returns a lazy call and every async one finishes
    when started: the ready queue, first in first out from the sources, a node's
    ``next_in_line`` called right after it (``_run_simple``, budget unlimited)."""
    waiting = list(indegree)
    ready = deque(sources)
    order: list = []
    while ready:
        i = ready.popleft()
        order.append(i)
        while line[i] > 0:
            i = line[i]
            order.append(i)
        for d in dependents[i]:
            waiting[d] -= 1
            if not waiting[d]:
                ready.append(d)
    return order


def _next_in_line(ops: list, dependents: list, indegree: list) -> tuple:
    """For each node, the one node that waits on it alone, when that node is a sync SIMPLE
    call waiting on nothing else; else -1 (and always -1 into the root, node 0, whose
    value ends the instance)."""
    line = [-1] * len(ops)
    for i, waiting in enumerate(dependents):
        if len(waiting) == 1:
            j = waiting[0]
            op = ops[j]
            if j and indegree[j] == 1 and op.mode == SIMPLE and not op.is_async and not op.gated:
                line[i] = j
    return tuple(line)


def _simple_getter(node, base: int) -> tuple:
    """(getter, single, nargs) of a SIMPLE node: one itemgetter over the value slots."""
    idx = []
    lit = base + node.first_input
    for s in node.args + node.kwargs if node.kwnames else node.args:
        if s is None:
            idx.append(lit)
            lit += 1
        else:
            idx.append(s[1])
    return (itemgetter(*idx) if idx else None), len(idx) == 1, len(idx)


def _one_level_op(node, base: int, facts: dict) -> SimpleOp | None:
    """A SIMPLE op for a plain call whose arguments hold one-level containers of
    literals and lazies (``pair([x, 1])``, ``report(parts={"a": x})``): called as
    ``fn(*get(vals))``, its containers built by ``one_level_getter``, with the task's
    keyword caller for keywords, as a plain keyword call of a sync task is; None for
    any other node (a policy, a condition, an injection, an internal task, nesting,
    keywords to an async task)."""
    task = node.task
    if (node.kind != CALL or node.policy is not None or node.conds or node.after
            or node.injects or task.internal or not direct(task)
            or (node.kwnames and task.is_async)):  # (an async call gets its keywords)
        return None
    get = one_level_getter(node, base)
    if get is None:
        return None
    f = facts.get(id(task))
    if f is None:
        f = facts[id(task)] = (task.fn, task.is_async, task.name, bool(task.internal))
    return SimpleOp((call_function(node),) + f[1:], get, False, len(node.args), node)


def _op(node, base: int) -> Op:
    task = node.task
    gated = bool(node.conds or node.after)
    if node.kind == ROUTE:
        return Op(ROUTER, None, False, None, False, gathered_program(arg_program(node, base)), 2,
                  False, task.name, True, node)
    if node.kind != CALL:
        return Op(VALUE, None, False, None, False, (), 0, False,
                  getattr(task, "name", "?"), True, node)
    quiet = bool(task.internal)
    if node.simple:
        getter, single, nargs = _simple_getter(node, base)
        return Op(SIMPLE, call_function(node), task.is_async, getter, single, (), nargs, gated,
                  task.name, quiet, node)
    mode = INVOKE if needs_invoke(node) else BUILT
    return Op(mode, task.fn, task.is_async, None, False, gathered_program(arg_program(node, base)),
              len(node.args), gated, task.name, quiet, node)
