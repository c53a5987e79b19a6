"""Templates: the structure of a workflow with every literal pulled out into a slot.

A ``Template`` is what both engines compile: the distinct nodes reachable
from a root ``LazyResult`` in *canonical order* (an iterative pre-order walk,
children in order of first reference, each node at its first visit), each
node's argument specs with children named by canonical index, its policies,
and where its literals sit in the flat input list.

Two runs with the same template key have the same structure; only the inputs
differ. Binding a new root to a cached template is one walk that
concatenates each node's ``lits`` in canonical order (no walk at all for a
single call). The key is ``root.shape`` when the root's subtree is a tree;
otherwise one walk computes a key that also records which nodes are shared.

Specs (see lazy.py): ``None`` is a literal slot; ``("L", i)`` the value of
node ``i``; ``("C", type, specs)`` a list/tuple/set built from item specs;
``("D", keys, specs)`` a dict; ``("I", name)`` an injected resource.
"""

from __future__ import annotations

import itertools
from operator import itemgetter
from typing import Any

import attrs

from .batch import BatchTask, expanded_members, members_of
from .calls import direct, keyword_caller, noted
from .lazy import (
    _LAZY_TYPES,
    _LITERAL_LINK_SPEC_IDS,
    _ONE_LAZY_SPEC,
    _ONE_LEVEL_SPEC_IDS,
    _POS_SPEC_IDS,
    _SHAPES,
    CALL,
    ENV,
    PARAM,
    ROUTE,
    LazyResult,
    Policy,
    intern_shape,
)
from .repeat import RepeatTask
from .resources import injection_order


@attrs.define(slots=True, eq=False)
class Node:
    """One node of a template. All child references are canonical indices.

    Never mutated after ``build_template`` (not frozen only because frozen
    attrs classes are slower to build, and a cold 10,000-node workflow builds
    10,000 of these).
    """

    index: int  # canonical index (0 is the root)
    kind: int  # lazy.CALL / PARAM / ENV
    task: Any  # the Task (or the Param/Env for value nodes)
    args: tuple  # positional specs
    kwnames: tuple  # keyword names, in call order
    kwargs: tuple  # keyword specs, aligned with kwnames
    deps: tuple  # distinct node indices this node waits for (data, conditions, after)
    data_deps: tuple  # the subset of deps whose values are arguments
    conds: tuple  # run_if conditions: ("L", i) or a bool
    after: tuple  # node indices, ordering only
    policy: Policy | None  # retry/timeout/cache (conds/after above are resolved copies)
    first_input: int  # index of this node's first literal in the input list
    n_inputs: int  # how many literals it has
    injects: tuple  # (parameter, resource name) filled by injection
    simple: bool  # positional literal/child args only, no policy, no injection
    routes: tuple = ()  # ROUTE nodes: (key, shared root, frontier, rid): see _route_info
    multi_routes: frozenset = frozenset()  # rids of routes named by more than one router


class CallNode(Node):
    """A ``Node`` for a plain positional call (a chain link, a flat call, positional
    literals and distinct lazies): the fields such a call never varies are
    class-level constants, so building one assigns six fields, not seventeen
    (a cold 10,000-node chain builds 10,000 of these). Made by ``call_node``."""

    __slots__ = ()
    kind = CALL
    kwnames = ()
    kwargs = ()
    conds = ()
    after = ()
    policy = None
    injects = ()
    simple = True
    routes = ()
    multi_routes = frozenset()



def call_node(index, task, args, deps, first_input, n_inputs) -> CallNode:
    """A new ``CallNode``: the only way one is made (a plain function call, cheaper
    than calling the class)."""
    nd = _new_node(CallNode)
    nd.index = index
    nd.task = task
    nd.args = args
    nd.deps = nd.data_deps = deps
    nd.first_input = first_input
    nd.n_inputs = n_inputs
    return nd


class _PlainNode(Node):
    """The fields a plain call (no policy, no gate, no injection, no route) never
    varies, as class-level constants."""

    __slots__ = ()
    kind = CALL
    conds = ()
    after = ()
    policy = None
    injects = ()
    routes = ()
    multi_routes = frozenset()


class KeywordNode(_PlainNode):
    """A ``Node`` for a plain call of a sync task with keyword arguments
    (``step(x, scale=2)``): positional then keyword specs, each a literal or a
    distinct lazy. ``simple`` like a ``CallNode``: the engines call
    ``call_function(node)`` with its positional then keyword values."""

    __slots__ = ()
    simple = True


class ContainerNode(_PlainNode):
    """A ``Node`` for a plain call whose arguments, positional or keyword, are literals,
    distinct lazies and one-level containers of those (``pair([x, 1])``,
    ``report(parts={"a": x})``); not ``simple`` (its containers are built). Made by
    ``_Builder._add_containers``."""

    __slots__ = ()
    simple = False


def plain_node(cls, index, task, args, kwnames, kwargs, deps, first_input, n_inputs):
    """A new ``KeywordNode`` or ``ContainerNode`` (``cls``; see ``call_node``)."""
    nd = _new_node(cls)
    nd.index = index
    nd.task = task
    nd.args = args
    nd.kwnames = kwnames
    nd.kwargs = kwargs
    nd.deps = nd.data_deps = deps
    nd.first_input = first_input
    nd.n_inputs = n_inputs
    return nd


def call_function(node):
    """What an engine calls for simple ``node`` with its positional then keyword
    values, in order: the task's function, or for keyword arguments its
    ``keyword_caller``."""
    if node.kwnames:
        return keyword_caller(node.task.fn, len(node.args), node.kwnames)
    return node.task.fn


_new_node = object.__new__


@attrs.frozen(slots=True, eq=False)
class Template:
    """A compiled-once structure; ``key`` names it in the shared cache."""

    key: int
    nodes: tuple  # Node records in canonical order; nodes[0] is the root
    n_inputs: int
    tree: bool  # binding walks without a visited set
    flat: bool  # a single plain call whose arguments are all inputs: the hot path
    value_nodes: tuple  # indices of PARAM/ENV nodes
    resource_names: tuple  # (resource, task name) for every injection in the template
    route_params: tuple = ()  # Param nodes inside routers' routes: resolved at start too


def canonical_nodes(root: LazyResult, tree: bool) -> list:
    """The distinct nodes under ``root`` in canonical order (iterative pre-order)."""
    out = []
    stack = [root]
    pop, push, append = stack.pop, stack.extend, out.append
    if tree:
        while stack:
            n = pop()
            while True:  # follow single-child links without the stack
                append(n)
                ch = n.children
                if len(ch) != 1:
                    break
                n = ch[0]
            if ch:
                push(ch[::-1])
        return out
    seen = set()
    while stack:
        n = pop()
        if n in seen:
            continue
        seen.add(n)
        append(n)
        ch = n.children or expanded_members(n)
        if ch:
            push(ch[::-1])
    return out


def bind_inputs(root: LazyResult, template: Template) -> list | tuple:
    """The input list of ``root`` for ``template`` (same key): literals in canonical order."""
    if not root.children:
        return root.lits
    if not template.tree:
        return inputs_from_order(canonical_nodes(root, False))
    # a tree: the canonical pre-order walk, following single-child links without the stack
    inputs = []
    stack = [root]
    pop, push = stack.pop, stack.extend
    while stack:
        n = pop()
        while True:
            if n.lits:
                inputs += n.lits
            ch = n.children
            if len(ch) != 1:
                break
            n = ch[0]
        if ch:
            push(ch[::-1])
    return inputs


def template_key(root: LazyResult) -> int:
    """The structural key of the workflow under ``root``."""
    return key_and_order(root)[0]


def key_and_order(root: LazyResult) -> tuple:
    """(template key, canonical node list or None for a tree): one walk at most.

    A tree's key is its root's shape. A DAG's key adds, to the root's shape
    (the structure unfolded as a tree), what the canonical walk meets at each
    step: -1 for a node seen for the first time, else the canonical index of
    the node met again. Given the unfolded structure that sequence fixes which
    references are the same node. Routers add their route layout at the end.
    One flat tuple of ints, interned, made in the walk that orders the nodes.
    """
    if root.tree:
        return root.shape, None
    order: list = []
    index: dict = {}
    parts = ["dag", root.shape]
    routers = []
    stack = [root]
    pop, push, append, met = stack.pop, stack.extend, order.append, parts.append
    get = index.get
    count = 0
    while stack:
        n = pop()
        i = get(n)
        if i is not None:
            met(i)
            continue
        met(-1)
        index[n] = count
        count += 1
        append(n)
        ch = n.children
        if ch:
            push(ch[::-1])
        elif type(n.task) is BatchTask:
            ch = expanded_members(n)
            if ch:  # a batch whose items are nodes here (batch.py)
                met(-2)
                push(ch[::-1])
        if n.kind == ROUTE:
            routers.append(n)
    if routers:  # routes are not children: their layout goes in the key as well
        route_ids: dict = {}
        for n in routers:
            met(_route_info(n, index, route_ids))
    key = tuple(parts)
    shape = _SHAPES.get(key)
    return (intern_shape(key) if shape is None else shape), order


_WRITTEN_GUIDE = 64  # nodes: a DAG up to this size is bound by a function of its own


def dag_guide(order: list) -> tuple | None:
    """For a DAG's canonical ``order``: (per node, the canonical indices of its
    children; the guide written out as a function, or None), which ``bind_by_guide``
    follows; None when the template has routers or batches whose items are nodes
    (their layouts are not only children)."""
    steps = _guide_steps(order)
    if steps is None:
        return None
    return steps, (_written_guide(steps, order, True) if len(steps) <= _WRITTEN_GUIDE
                   else None)


def tree_binder(root: LazyResult):
    """For a small tree (at most ``_WRITTEN_GUIDE`` nodes, found by a walk that stops
    past that): ``bind(root) -> inputs`` for every tree of its key, written out as
    code (what ``bind_inputs`` walks: a tree's key is its root's shape, so nothing is
    checked); None for a larger tree, or one with routers or batches (``bind_inputs``
    walks it)."""
    order = []
    stack = [root]
    while stack:  # the canonical pre-order of a tree (canonical_nodes), bounded
        n = stack.pop()
        order.append(n)
        if len(order) > _WRITTEN_GUIDE:
            return None
        if n.children:
            stack += n.children[::-1]
    steps = _guide_steps(order)
    return None if steps is None else _written_guide(steps, order, False)


def _guide_steps(order: list) -> tuple | None:
    """Per node of canonical ``order``, the canonical indices of its children; None
    when there are routers or batches whose items may be nodes."""
    index = {n: i for i, n in enumerate(order)}
    steps = []
    for n in order:
        if n.kind == ROUTE or (not n.children and type(n.task) is BatchTask):
            return None
        steps.append(tuple([index[c] for c in n.children]))
    return tuple(steps)


def _written_guide(steps: tuple, order: list, dag: bool):
    """``bind_by_guide``'s walk for ``steps``, written out as straight-line code (as
    the VM's second tier writes out a block: jit.py): each node's children unpacked
    into the names of their canonical indices, for a ``dag`` an identity test where
    a reference meets a node again and one set of every node, and the literals of
    the nodes that have some (the same nodes in every workflow of this key: the
    layout is structural)."""
    lines = ["def bind(n0):"]
    met = {0}
    for i, at in enumerate(steps):
        if not at:
            continue
        names, again = [], []
        for p, c in enumerate(at):
            if c in met:
                names.append(f"m{i}_{p}")
                again.append(f"m{i}_{p} is not n{c}")
            else:
                met.add(c)
                names.append(f"n{c}")
        lines.append(f"    {', '.join(names)}, = n{i}.children")
        if again:
            lines.append(f"    if {' or '.join(again)}: return None")
    if dag:
        every = ", ".join(f"n{i}" for i in range(len(steps)))
        lines.append(f"    if len({{{every}}}) != {len(steps)}: return None")
    lits = ", ".join(f"*n{i}.lits" for i, n in enumerate(order) if n.lits)
    lines.append(f"    return [{lits}]")
    namespace: dict = {}
    exec(compile("\n".join(lines), "<cascade guide>", "exec"), namespace)
    return namespace["bind"]


def bind_by_guide(root: LazyResult, guide: tuple) -> list | None:
    """The inputs of DAG ``root`` for the template whose ``dag_guide`` is ``guide``, or
    None when ``root`` is not that DAG. Given the same root shape (the structure
    unfolded as a tree), the walk follows the template's own child indices: a child
    met again must be the node met first at that index, and the nodes must all be
    distinct. That is the template key's check (``key_and_order``) without a
    visited map, a stack or a key to build: one pass in canonical order (for a
    small DAG, written out as code of its own)."""
    steps, written = guide
    if written is not None:
        return written(root)
    n = len(steps)
    nodes = [None] * n
    nodes[0] = root
    inputs: list = []
    for i, at in enumerate(steps):
        lr = nodes[i]
        if lr.lits:
            inputs += lr.lits
        for c, child in zip(at, lr.children):
            held = nodes[c]
            if held is None:
                nodes[c] = child
            elif held is not child:
                return None  # a reference the template shares is two nodes here
    if len(set(nodes)) != n:
        return None  # two of the template's nodes are one node here
    return inputs


def inputs_from_order(order: list) -> list:
    """The input list, given the canonical node list."""
    inputs: list = []
    for n in order:
        if n.lits:
            inputs += n.lits
    return inputs


def _route_info(n, index, route_ids: dict) -> tuple:
    """Per route key of ROUTE node ``n``: (key, shared root index or None, frontier, rid).

    A route whose root is a node of the workflow anyway is *shared*: the
    router takes its value. Otherwise its sub-workflow runs only when selected,
    and ``frontier`` lists the nodes inside it that are nodes of the workflow
    too, as (position in the route's own walk, canonical index): those run
    once, in the workflow, and the route gets their values. ``rid`` numbers
    such a route in order of first appearance among the template's routers
    (``route_ids``, filled across calls): routers naming the same route object
    share one evaluation of it.
    """
    out = []
    for k, v in n.args[1].items():
        if type(v) not in _LAZY_TYPES:
            out.append((k, None, (), None))
        elif v in index:
            out.append((k, index[v], (), None))
        else:
            rid = route_ids.setdefault(id(v), len(route_ids))
            out.append((k, None, tuple(route_frontier(v, index)), rid))
    return tuple(out)


def _check_map(lr) -> None:
    """An ungated map over literal iterables of different lengths fails before any task runs."""
    check = getattr(lr.task, "check_literal_lengths", None)
    if check is not None:
        try:
            check(lr.args, lr.kwargs)
        except ValueError as exc:
            noted(exc, lr.task.name)
            raise


def _check_routes(route_node, params: list) -> None:
    """Errors knowable before a router runs: wrong arity anywhere in the routes'
    sub-workflows (which run only when selected) and a literal selector with no
    route. The routes' ``Param`` nodes are appended to ``params``: they are
    parameters of the run too, resolved when it starts."""
    from .router import SelectorCheck, check_key

    sel, routes = route_node.args
    stack = [v for v in routes.values() if type(v) in _LAZY_TYPES]
    seen = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.kind == CALL:
            n.task.check_call(len(n.args), tuple(n.kwargs))
        elif n.kind == ROUTE:
            stack.extend(v for v in n.args[1].values() if type(v) in _LAZY_TYPES)
        elif n.kind == PARAM:
            params.append(n)
        stack.extend(n.children)
    if type(sel) not in _LAZY_TYPES:
        try:
            check_key(sel, routes)
        except KeyError as exc:
            noted(exc, route_node.task.name)
            raise
    elif sel.kind == PARAM:  # checked when the run starts, with the run's parameters
        params.append(SelectorCheck(sel, tuple(routes)))


def _route_obj(route_node, key) -> int:
    return id(route_node.args[1][key])


def route_frontier(route_root, index) -> list:
    """(walk position, canonical index) of workflow nodes inside a route's sub-workflow.

    The walk is canonical pre-order that does not descend into workflow nodes;
    positions count every node visited, so the same structure gives the same
    positions for new objects.
    """
    found = []
    stack = [route_root]
    seen = set()
    pos = 0
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        m = index.get(n)
        if m is not None:
            found.append((pos, m))
        else:
            refs = route_refs(n)
            if refs:
                stack.extend(refs[::-1])
        pos += 1
    return found


def route_refs(n) -> tuple:
    """What a walk inside a route's sub-workflow descends into: the children,
    and for a nested router also its routes (they may hold workflow nodes)."""
    if n.kind == ROUTE:
        return n.children + tuple(v for v in n.args[1].values() if type(v) in _LAZY_TYPES)
    return n.children or members_of(n)


def _localized(specs: tuple, local: list) -> tuple:
    """One-level ``specs`` with child references rewritten to canonical indices."""
    out = []
    for s in specs:
        if s is None:
            out.append(None)
        elif s[0] == "L":
            out.append(("L", local[s[1]]))
        else:
            out.append((s[0], s[1], tuple([None if x is None else ("L", local[x[1]])
                                           for x in s[2]])))
    return tuple(out)


def _resolve_specs(specs: tuple, local: list) -> tuple:
    """One iterative pass over a call's argument specs.

    Returns ``(resolved, refs, n_literals, injected)``: the specs with child
    references rewritten from local to canonical indices (``local``), every
    referenced node index in argument order, how many literal slots they
    hold, and (argument index, resource name) of each injection, in argument order.
    Containers one level deep (a fan-in's list) take a direct loop.
    """
    refs: list = []
    injected: list = []
    n_lit = 0
    out: list = []
    for spec in specs:
        if spec is None:
            n_lit += 1
            out.append(None)
            continue
        tag = spec[0]
        if tag == "L":
            c = local[spec[1]]
            refs.append(c)
            out.append(("L", c))
            continue
        if tag == "I":
            injected.append((len(out), spec[1]))
            out.append(spec)
            continue
        mark, lits_before = len(refs), n_lit
        items = []
        for x in spec[2]:
            if x is None:
                n_lit += 1
                items.append(None)
            elif x[0] == "L":
                c = local[x[1]]
                refs.append(c)
                items.append(("L", c))
            else:
                break
        else:
            out.append((tag, spec[1], tuple(items)))
            continue
        del refs[mark:]  # nested containers: start this one again with the general walk
        n_lit = lits_before
        first_injected = len(injected)
        resolved, n_lit = _resolve_nested(spec, local, refs, injected, n_lit)
        injected[first_injected:] = [(len(out), name) for name in injected[first_injected:]]
        out.append(resolved)
    return tuple(out), refs, n_lit, injected


def _resolve_nested(spec, local, refs, injected, n_lit) -> tuple:
    """``_resolve_specs`` for one container spec at any depth (iterative, post-order)."""
    stack = [[spec, spec[2], []]]  # frames: [spec, items, resolved items]
    while True:
        frame = stack[-1]
        items, done = frame[1], frame[2]
        if len(done) == len(items):
            stack.pop()
            c = frame[0]
            built = (c[0], c[1], tuple(done))
            if not stack:
                return built, n_lit
            stack[-1][2].append(built)
            continue
        item = items[len(done)]
        if item is None:
            n_lit += 1
            done.append(None)
        else:
            tag = item[0]
            if tag == "L":
                c = local[item[1]]
                refs.append(c)
                done.append(("L", c))
            elif tag == "I":
                injected.append(item[1])
                done.append(item)
            else:  # a container: resolve its items first
                stack.append([item, item[2], []])


def _route_multi(order: list) -> set:
    """ids of route objects that more than one router of ``order`` names."""
    counts: dict = {}
    for lr in order:
        if lr.kind == ROUTE:
            for v in lr.args[1].values():
                if type(v) in _LAZY_TYPES:
                    counts[id(v)] = counts.get(id(v), 0) + 1
    return {r for r, count in counts.items() if count > 1}


_NO_ARGS = [(None,) * n for n in range(16)]  # literal-only positional specs by arity
# A chain link's specs, shared by every template for child indices below _SMALL:
# a cold 10,000-node chain allocates (and the cache keeps) no tuples per link.
_SMALL = 1 << 16
_ONE_DEP: list = []  # deps of a node whose one child is c
_LINK_ARGS: list = []  # its args


def _grow_link_specs(c: int) -> bool:
    """Extend the shared link specs to cover child index ``c``; False beyond _SMALL."""
    if c >= _SMALL:
        return False
    for k in range(len(_LINK_ARGS), min(max(c + 1, 2 * len(_LINK_ARGS), 64), _SMALL)):
        _ONE_DEP.append((k,))
        _LINK_ARGS.append((("L", k),))
    return True


def _fast_ok(task, nargs: int, fast: dict) -> bool:
    """May ``task`` called with ``nargs`` positional arguments take build_template's
    fast path? Raises the arity ``TypeError``; remembers a yes in ``fast``."""
    if task.internal or not direct(task):
        return False
    task.check_call(nargs, ())
    fast[id(task)] = nargs
    return True


def gather_node(i: int, batch: BatchTask, members: tuple, index: dict, first: int) -> Node:
    """The node of a batch whose items are nodes of a DAG (one is used elsewhere too):
    the batch's gather task over a container of the item nodes, built like the
    container the batch stands for."""
    items = tuple([("L", index[m]) for m in members])
    deps = tuple(dict.fromkeys(c for _, c in items))
    return Node(index=i, kind=CALL, task=batch.gather, args=(("C", batch.ctype, items),),
                kwnames=(), kwargs=(), deps=deps, data_deps=deps, conds=(), after=(),
                policy=None, first_input=first, n_inputs=1, injects=(), simple=False)


def _link_runs(order: list, fast: dict) -> dict | None:
    """Runs of two or more links of one plain sync task and one layout in a tree's
    canonical order, as {canonical index of the run's top link: number of links};
    None when there are none, or when the template has a router (route layouts name
    nodes by index, so its nodes stay one per call). A link's first argument is the
    node below it; its other arguments, if any, are literals (``step(x)``,
    ``step(x, 1)``, ``step(x, scale=2)``)."""
    one = _ONE_LAZY_SPEC
    literal = _LITERAL_LINK_SPEC_IDS
    runs = {}
    n = len(order)
    i = 0
    while i < n:
        lr = order[i]
        spec = lr.spec
        if spec is not one and id(spec) not in literal:
            if lr.kind == ROUTE:
                return None
            i += 1
            continue
        task = lr.task
        j = i + 1  # in pre-order a link's child comes right after it
        while j < n:
            c = order[j]
            if c.spec is not spec or c.task is not task:
                break
            j += 1
        if j - i >= 2 and not task.is_async and _run_ok(task, spec, fast):
            runs[i] = j - i
        i = j
    return runs or None


def _run_ok(task, spec, fast: dict) -> bool:
    """May links of ``task`` with ``spec`` fold into a run (``_fast_ok``, for the
    link's layout)? Raises the arity ``TypeError``."""
    if spec is _ONE_LAZY_SPEC:
        return fast.get(id(task)) == 1 or _fast_ok(task, 1, fast)
    if task.internal or not direct(task):
        return False
    task.check_call(len(spec[0]), spec[1])
    return True


def _tree_index(order: list, runs: dict | None) -> dict:
    """Template index by node for a tree's canonical ``order`` with ``runs`` folded
    (links inside a run are referenced only by the run itself, so get none)."""
    if runs is None:
        return {n: i for i, n in enumerate(order)}
    index = {}
    t = 0
    ci = 0
    n = len(order)
    while ci < n:
        index[order[ci]] = t
        ci += runs.get(ci, 1)
        t += 1
    return index


def build_template(root: LazyResult, key: int | None = None, order=None) -> Template:
    """Compute the template of the workflow under ``root`` (one walk; checks arity).

    Two kinds of node take a fast path, since a cold workflow is mostly made
    of them: a flat call of a plain task (literal arguments only) and a chain
    link (one lazy argument). Their checks are asked once per task and arity.
    """
    if order is None:
        order = canonical_nodes(root, root.tree)
    if key is None:
        key = key_and_order(root)[0]
    b = _Builder(order, root.tree)
    runs = b.runs
    dropped = 0  # links folded into runs so far: template index = canonical less these
    skip = 0
    for ci, lr in enumerate(order):
        if skip:  # inside a run, folded into its node
            skip -= 1
            continue
        i = ci - dropped
        if runs is not None:
            k = runs.get(ci)
            if k is not None:
                skip = k - 1
                dropped += k - 1
                b.add_run(i, lr, k)
                continue
        if not b.add_fast(i, lr):
            b.add_general(i, lr)
    return b.template(key)


class _Builder:
    """The state of one ``build_template`` walk and the node kinds it adds."""

    __slots__ = ("order", "tree", "index", "nodes", "first", "value_nodes", "route_params",
                 "route_ids", "multi", "resource_names", "fast", "runs")

    def __init__(self, order: list, tree: bool):
        self.order = order  # the canonical order of the user's nodes
        self.tree = tree  # no node referenced twice
        # canonical index by node; a tree's chain links need none (the one child of
        # node i is node i + 1 in pre-order), so it is made at the first other reference
        self.index = None if tree else {n: i for i, n in enumerate(order)}
        self.nodes: list = []  # the template's nodes so far
        self.first = 0  # the next input slot
        self.value_nodes: list = []  # Param/Env nodes
        self.route_params: list = []  # Params inside routes (checked when the run starts)
        self.route_ids: dict = {}
        self.multi = None  # route objects named by several routers (at the first router)
        self.resource_names: list = []  # (resource, task name) injected anywhere
        self.fast: dict = {}  # id(task) -> arity checked for the fast path (plain, internal no)
        # runs of chain links become one node each (repeat.py): template index i is then
        # the canonical index less the links folded into runs before it
        self.runs = _link_runs(order, self.fast) if tree and len(order) > 2 else None

    def add_run(self, i: int, lr, k: int) -> None:
        """Node ``i``: a run of ``k`` links like ``lr`` (its top link) on the node after
        it. Links with literals read them as inputs, the top link's first (its
        canonical order), so binding is the same as for the links unfolded."""
        task = RepeatTask.of(lr.task, k, lr.spec)
        c = i + 1  # the run's base, next in pre-order
        n_lits = k * task.width
        if n_lits:
            self.nodes.append(call_node(i, task, (("L", c),) + (None,) * n_lits, (c,),
                                        self.first, n_lits))
            self.first += n_lits
        elif c >= len(_LINK_ARGS) and not _grow_link_specs(c):
            self.nodes.append(call_node(i, task, (("L", c),), (c,), self.first, 0))
        else:
            self.nodes.append(call_node(i, task, _LINK_ARGS[c], _ONE_DEP[c], self.first, 0))

    def add_fast(self, i: int, lr) -> bool:
        """Add node ``i`` when it is a chain link, a flat call, an expanded batch or a
        plain call (literals and distinct lazies, positional or keyword); False when it
        is none of these."""
        spec = lr.spec
        task = lr.task
        if spec is _ONE_LAZY_SPEC or (spec is None and lr.kind == CALL and not lr.kwargs):
            # a chain link, or a flat call with positional literals only
            nargs = len(lr.args)
            if self.fast.get(id(task)) == nargs or _fast_ok(task, nargs, self.fast):
                self._add_link_or_flat(i, lr, nargs)
                return True
        if (spec is None and lr.kind == CALL and lr.kwargs and direct(task)
                and not task.is_async and not task.internal):
            self._add_flat_keywords(i, lr)
            return True
        if self.index is None:
            self.index = _tree_index(self.order, self.runs)
        if not self.tree and type(task) is BatchTask:
            members = expanded_members(lr)
            if members is not None:  # its items are nodes of this DAG
                task.check_call(1, ())
                self.nodes.append(gather_node(i, task, members, self.index, self.first))
                self.first += 1  # the items' tuple: an input this node does not read
                return True
        return lr.kind == CALL and lr.policy is None and self._add_by_spec(i, lr)

    def _add_by_spec(self, i: int, lr) -> bool:
        """Add call ``i``, which has no policy, when its spec is a plain call's or an
        interned one-level spec; False otherwise (or when its task needs the protocol)."""
        spec = lr.spec
        task = lr.task
        if id(spec) in _POS_SPEC_IDS:
            if not direct(task) or (lr.kwargs and (task.is_async or task.internal)):
                return False
            self._add_plain(i, lr)
            return True
        if id(spec) in _ONE_LEVEL_SPEC_IDS and direct(task) and not task.internal:
            self._add_containers(i, lr)
            return True
        return False

    def _add_link_or_flat(self, i: int, lr, nargs: int) -> None:
        """A chain link of a plain task, or its flat call with positional literals."""
        task = lr.task
        first = self.first
        if lr.spec is _ONE_LAZY_SPEC:
            c = i + 1 if self.tree else self.index[lr.children[0]]
            if c < len(_LINK_ARGS) or _grow_link_specs(c):
                self.nodes.append(call_node(i, task, _LINK_ARGS[c], _ONE_DEP[c], first, 0))
            else:
                self.nodes.append(call_node(i, task, (("L", c),), (c,), first, 0))
            return
        args = _NO_ARGS[nargs] if nargs < 16 else (None,) * nargs
        self.nodes.append(call_node(i, task, args, (), first, nargs))
        self.first += nargs

    def _add_flat_keywords(self, i: int, lr) -> None:
        """A flat call of a plain sync task with keyword literals: a ``KeywordNode``."""
        task = lr.task
        kwnames = tuple(lr.kwargs)
        nargs = len(lr.args)
        if (nargs, kwnames) not in task._checked:
            task.check_call(nargs, kwnames)
        n_inputs = nargs + len(kwnames)
        args = _NO_ARGS[nargs] if nargs < 16 else (None,) * nargs
        self.nodes.append(plain_node(KeywordNode, i, task, args, kwnames,
                                     (None,) * len(kwnames), (), self.first, n_inputs))
        self.first += n_inputs

    def _add_plain(self, i: int, lr) -> None:
        """Literals and distinct lazies, positional (or keyword, for a sync task)."""
        task = lr.task
        spec = lr.spec
        index = self.index
        nargs = len(lr.args)
        kwnames = spec[1]
        if (nargs, kwnames) not in task._checked:
            task.check_call(nargs, kwnames)
        if task.internal:
            _check_map(lr)
        ch = lr.children
        args = tuple([None if s is None else ("L", index[ch[s[1]]]) for s in spec[0]])
        deps = tuple([index[c] for c in ch])
        n_inputs = nargs + len(kwnames) - len(ch)
        if kwnames:
            kwargs = tuple([None if s is None else ("L", index[ch[s[1]]])
                            for s in spec[2]])
            self.nodes.append(plain_node(KeywordNode, i, task, args, kwnames, kwargs, deps,
                                         self.first, n_inputs))
        else:
            self.nodes.append(call_node(i, task, args, deps, self.first, n_inputs))
        self.first += n_inputs

    def _add_containers(self, i: int, lr) -> None:
        """Literals, distinct lazies and one-level containers of those (an interned
        spec: ``lazy._ONE_LEVEL_SPEC_IDS``), no policy: what ``add_general`` makes of
        it, without its general walk. Its children are numbered in order of first
        reference over its arguments, so they are its dependencies in that order, and
        its literal slots are its literals."""
        task = lr.task
        pos, kwnames, kws, _ = lr.spec
        if (len(pos), kwnames) not in task._checked:
            task.check_call(len(pos), kwnames)
        index = self.index
        local = [index[c] for c in lr.children]
        n_inputs = len(lr.lits)
        self.nodes.append(plain_node(ContainerNode, i, task, _localized(pos, local), kwnames,
                                     _localized(kws, local) if kws else (), tuple(local),
                                     self.first, n_inputs))
        self.first += n_inputs

    def add_general(self, i: int, lr) -> None:
        """Add node ``i`` of any kind: keywords, containers, policies, injections,
        Param/Env values, routers."""
        kind = lr.kind
        local = [self.index[c] for c in lr.children]
        if kind == PARAM or kind == ENV:
            self.value_nodes.append(i)
        args, kwnames, kwargs, conds, after, policy, data, n_inputs, named = _arguments(
            lr, local)
        deps = list(dict.fromkeys(data))
        data_deps = tuple(deps)
        deps.extend(dict.fromkeys(c[1] for c in conds if type(c) is tuple and c[1] not in deps))
        deps.extend(dict.fromkeys(a for a in after if a not in deps))
        routes = ()
        injects = ()
        if kind == ROUTE:
            routes = self._routes(lr, deps)
        elif kind == CALL:
            injects = self._call_checks(lr, args, kwnames, named)
        simple = (kind == CALL and not kwnames and policy is None and not conds and not after
                  and not injects and direct(lr.task)
                  and all(s is None or s[0] == "L" for s in args))
        self.nodes.append(Node(
            index=i, kind=kind, task=lr.task, args=args, kwnames=kwnames, kwargs=kwargs,
            deps=tuple(deps), data_deps=data_deps, conds=conds, after=after, policy=policy,
            first_input=self.first, n_inputs=n_inputs, injects=injects, simple=simple,
            routes=routes,
            multi_routes=frozenset(rid for key, idx, fr, rid in routes
                                   if rid is not None and _route_obj(lr, key) in self.multi),
        ))
        self.first += n_inputs

    def _routes(self, lr, deps: list) -> tuple:
        """A router's route layout; its dependencies join ``deps``."""
        if self.multi is None:
            self.multi = _route_multi(self.order)
        routes = _route_info(lr, self.index, self.route_ids)
        for _, idx, frontier, _ in routes:
            for d in ((idx,) if idx is not None else ()) + tuple(m for _, m in frontier):
                if d not in deps:
                    deps.append(d)
        _check_routes(lr, self.route_params)
        return routes

    def _call_checks(self, lr, args, kwnames, named) -> tuple:
        """Arity and map checks of a general call; its injections."""
        task = lr.task
        task.check_call(len(args), kwnames)
        if task.internal and lr.policy is None:
            _check_map(lr)
        injects = injection_order(task, len(args), kwnames, named)
        self.resource_names.extend((r, task.name) for _, r in injects)
        self.resource_names.extend((r, task.name) for r in task.folded_injects)
        return injects

    def template(self, key) -> Template:
        """The finished ``Template``."""
        nodes = self.nodes
        r = nodes[0]
        flat = (len(nodes) == 1 and r.kind == CALL and r.policy is None and not r.conds
                and not r.injects and direct(r.task) and not r.task.internal
                and all(s is None for s in r.args + r.kwargs))
        return Template(
            key=key,
            nodes=tuple(nodes),
            n_inputs=self.first,
            tree=self.tree,
            flat=flat,
            value_nodes=tuple(self.value_nodes),
            resource_names=tuple(dict.fromkeys(self.resource_names)),
            route_params=tuple(dict.fromkeys(self.route_params)),
        )


def _arguments(lr, local: list) -> tuple:
    """How a general node's arguments are built, from its spec: (args, kwnames, kwargs,
    conds, after, policy, data deps, inputs read, injected names)."""
    spec = lr.spec
    if spec is None:
        nargs = len(lr.args)
        kwnames = tuple(lr.kwargs)
        return ((None,) * nargs, kwnames, (None,) * len(kwnames), (), (), None, [],
                nargs + len(kwnames), [])
    pos, kwnames, kws, pkey = spec
    resolved, data, n_inputs, named = _resolve_specs(pos + kws, local)
    conds, after, policy = (), (), None
    if pkey is not None:
        lconds, lafter = pkey[0], pkey[1]
        conds = tuple(("L", local[c[1]]) if type(c) is tuple else c for c in lconds)
        after = tuple(local[a] for a in lafter)
        policy = lr.policy
    return (resolved[:len(pos)], kwnames, resolved[len(pos):], conds, after, policy, data,
            n_inputs, named)


# ---------------------------------------------------------------------------
# Argument programs: how to build one call's arguments, as a postfix list.
#
# Both engines build container arguments (and keyword calls) from the same
# program: ("V", i) pushes value slot i (a node's value, or an input at
# ``base + j``), ("I", name) pushes an injection marker, ("C", type, n) pops n
# items into a list/tuple/set, ("D", keys) pops len(keys) values into a dict.
# Literal slots are numbered in the order ``lazy._Scan`` collected them.


def arg_program(node: Node, base: int) -> list:
    """The postfix program that leaves the node's positional then keyword values."""
    prog = []
    lit = base + node.first_input
    stack = [(s, False) for s in reversed(node.args + node.kwargs)]
    while stack:
        s, expanded = stack.pop()
        if s is None:
            prog.append(("V", lit))
            lit += 1
        elif s[0] == "L":
            prog.append(("V", s[1]))
        elif s[0] == "I":
            prog.append(("I", s[1]))
        elif expanded:
            prog.append(("C", s[1], len(s[2])) if s[0] == "C" else ("D", s[1]))
        else:
            stack.append((s, True))
            stack.extend((x, False) for x in reversed(s[2]))
    return prog


# One-level argument layouts, written out as code.
#
# A call whose arguments are literals, lazies and lists, tuples or str-keyed dicts
# of those (one level deep) is the commonest call with containers. Its *layout* (per
# argument: one value, or a container's tag, type or keys and item count) is the
# same for every call of a spec, so both engines' slow paths for it (the argument
# program's interpreter, the first tier's ``_build`` walk) give way to a function
# written once per layout: ``[v0, v1]`` for a list, ``{k0: v2}`` for a dict.

_BY_LAYOUT: dict = {}  # layout -> its function from values in slot order
_BY_SPEC: dict = {}  # a lazy's spec -> its function from the lazy's literals and children
_BUILDER_LIMIT = 4096  # entries of each; then emptied (a function is written again)


_WRITTEN_SLOTS = 32  # values of a layout written out at most (a fan-in's list is not)


def layout_of(specs: tuple) -> tuple | None:
    """Per argument spec, None for one value, or (tag, type or keys, item count) for a
    container of values; None when a spec is nested or an injection, a dict has a
    key that is not a str (layouts are compared by equal keys: 1 and True would be
    one), or there are more than ``_WRITTEN_SLOTS`` values (writing the code out would
    cost more than it saves: the general paths build such a call)."""
    layout = []
    slots = 0
    for s in specs:
        if s is None or s[0] == "L":
            layout.append(None)
            slots += 1
            continue
        if s[0] not in ("C", "D"):
            return None
        slots += len(s[2])
        if slots > _WRITTEN_SLOTS or any(x is not None and x[0] != "L" for x in s[2]):
            return None
        elif s[0] == "D" and any(type(k) is not str for k in s[1]):
            return None
        else:
            layout.append((s[0], s[1], len(s[2])))
    return tuple(layout)


def written_arguments(layout: tuple, form):
    """The function, written once per (``layout``, ``form``), that builds the argument
    values of a call of ``layout``:

    - ``form`` None: ``build(v0, v1, ...)`` from every value in slot order, returning
      the positional then keyword values as one tuple (``one_level_getter``);
    - ``form`` a ``spec`` (a lazy's, of this layout): ``build(lits, children)`` from a
      lazy's literals and its children's values, returning ``(args, kwargs)`` (kwargs
      None without keywords: the first tier's call)."""
    written = _BY_LAYOUT if form is None else _BY_SPEC  # (a spec determines its layout)
    key = layout if form is None else form
    build = written.get(key)
    if build is None:
        if len(written) >= _BUILDER_LIMIT:
            written.clear()
        build = written[key] = _write_arguments(layout, form)
    return build


def _slots(specs: tuple) -> list:
    """The value slots of one-level argument ``specs``, in order: None (a literal) or
    ("L", k) (a child's or a node's value)."""
    out = []
    for s in specs:
        out.extend((s,) if s is None or s[0] == "L" else s[2])
    return out


def _write_arguments(layout: tuple, form):
    consts: dict = {}  # name -> a dict key or a container type, bound in the code

    def const(value) -> str:
        name = f"c{len(consts)}"
        consts[name] = value
        return name

    if form is None:
        n = sum(1 if one is None else one[2] for one in layout)
        slots = iter([f"v{k}" for k in range(n)])
        params = ", ".join(f"v{k}" for k in range(n))
    else:
        lit = itertools.count()
        slots = iter([f"c[{s[1]}]" if s is not None else f"l[{next(lit)}]"
                      for s in _slots(form[0] + form[2])])
        params = "l, c"
    parts = []
    for one in layout:
        if one is None:
            parts.append(next(slots))
            continue
        tag, kind, count = one
        items = [next(slots) for _ in range(count)]
        if tag == "D":
            parts.append("{" + ", ".join(f"{const(k)}: {v}" for k, v in zip(kind, items)) + "}")
        elif kind is list:
            parts.append("[" + ", ".join(items) + "]")
        else:  # a tuple or a set, from a tuple display
            parts.append(f"{const(kind)}(({', '.join(items)},))")
    if form is None:
        value = f"({', '.join(parts)},)"
    else:
        npos, kwnames = len(form[0]), form[1]
        args = f"({''.join(p + ', ' for p in parts[:npos])})"
        kwargs = ("{" + ", ".join(f"{const(k)}: {v}" for k, v in zip(kwnames, parts[npos:]))
                  + "}") if kwnames else "None"
        value = f"{args}, {kwargs}"
    source = f"def build({params}):\n    return {value}\n"
    exec(compile(source, "<cascade argument builder>", "exec"), consts)
    return consts["build"]


def one_level_getter(node: Node, base: int):
    """For a call whose arguments (positional then keyword) are literals, lazies and
    one-level containers of those: ``get(vals) -> argument values``, in order, as a
    simple call takes them (the graph executor calls the node as ``fn(*get(vals))``);
    None for any other layout. The values are fetched by one ``itemgetter`` and put
    into their containers by ``written_arguments``."""
    specs = node.args + node.kwargs
    layout = layout_of(specs)
    if layout is None:
        return None
    build = written_arguments(layout, None)
    slots = []
    lit = base + node.first_input
    for x in _slots(specs):
        if x is None:
            slots.append(lit)
            lit += 1
        else:
            slots.append(x[1])
    if len(slots) == 1:
        fetch1 = itemgetter(slots[0])
        return lambda vals: build(fetch1(vals))
    fetch = itemgetter(*slots)
    return lambda vals: build(*fetch(vals))


def gathered_program(prog: list) -> tuple:
    """``prog`` with each run of two or more ``("V", i)`` pushes merged into one
    ``("G", itemgetter, n)``: a fan-in's 2,000 values are fetched by one C call."""
    out: list = []
    run: list = []
    for op in prog + [None]:
        if op is not None and op[0] == "V":
            run.append(op[1])
            continue
        if len(run) == 1:
            out.append(("V", run[0]))
        elif run:
            out.append(("G", itemgetter(*run), len(run)))
        run = []
        if op is not None:
            out.append(op)
    return tuple(out)


def run_program(prog, vals, inject_type) -> list:
    """Execute an argument program over ``vals``; returns the values left on the stack."""
    stack: list = []
    push = stack.append
    for op in prog:
        tag = op[0]
        if tag == "V":
            push(vals[op[1]])
        elif tag == "G":
            stack += op[1](vals)
        elif tag == "C":
            n = op[2]
            if n:
                items = stack[-n:]
                del stack[-n:]
            else:
                items = []
            push(items if op[1] is list else op[1](items))
        elif tag == "D":
            keys = op[1]
            n = len(keys)
            if n:
                items = stack[-n:]
                del stack[-n:]
            else:
                items = []
            push(dict(zip(keys, items)))
        else:
            push(inject_type(op[1]))
    return stack
