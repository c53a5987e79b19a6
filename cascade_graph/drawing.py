"""The drawable shape of a workflow, and its two renderings: Graphviz DOT and layers.

``shape_of(target)`` walks the user's ``LazyResult``s as written (not the
compiled template: no batches, no folded runs of links) with an explicit
stack, and returns a ``Shape``: plain records of nodes and edges.

- A node is one distinct ``LazyResult`` (identity, as in a run): a call, a
  ``task.map`` (one node standing for every item), a ``Router`` (its route
  node), a ``Param``/``Env``, or the root of a container target.
- An edge runs from a producer to its consumer. Its ``kind`` says why:
  ``data`` (an argument), ``condition`` (``run_if``), ``after`` (ordering
  only), ``selector`` (a router's selector) or ``route`` (a router's route,
  labelled with its key; drawn dashed: it runs only when selected).

``to_dot`` renders a ``Shape`` as DOT (``python -m cascade_vm graph``);
``layers`` assigns each node a layer (longest path from the sources) and an
order within it (a few barycentre sweeps), all iteratively, for the SVG of
the HTML report (``observe/report.py``), which also collapses a large
workflow to one node per task (``by_task``).
"""

from __future__ import annotations

import attrs

from .lazy import _LAZY_TYPES, CALL, ROUTE, MapTask
from .router import Router

_SEARCHED = (list, tuple, dict, set, Router)  # argument types searched for lazies

#: edge kinds, and how DOT draws them
EDGE_STYLES = {
    "data": "",
    "condition": 'style=dashed, color="#b45309", label="run_if"',
    "after": 'style=dashed, color="#6b7280", label="after"',
    "selector": 'color="#7c3aed", label="selector"',
    "route": 'style=dashed, color="#7c3aed"',
}


@attrs.frozen(slots=True)
class DrawNode:
    """One node: ``kind`` is call, map, router, value (Param/Env) or target."""

    id: int  # index in Shape.nodes
    kind: str
    label: str  # the task's name (or what the node is)
    task: str | None  # the name events carry for it (None: it emits no task events)
    details: tuple = ()  # short notes: policies, injections, "each item"


@attrs.frozen(slots=True)
class DrawEdge:
    """From ``src`` (producer) to ``dst`` (consumer); ``label`` is a route's key."""

    src: int
    dst: int
    kind: str
    label: str = ""


@attrs.frozen(slots=True)
class Shape:
    """A workflow as nodes and edges (ids index ``nodes``)."""

    nodes: tuple
    edges: tuple


def _lazies_in(value) -> list:
    """The lazies inside an argument, searched as the engines search (exact containers)."""
    found = []
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind in _LAZY_TYPES:
            found.append(v)
        elif kind is Router:
            found.append(v.node())
        elif kind is dict:
            stack.extend(reversed(list(v.values())))
        elif kind in (list, tuple, set):
            stack.extend(reversed(list(v)))
    return found


def _details(lr) -> tuple:
    out = []
    task = lr.task
    if isinstance(task, MapTask):
        out.append("for each item")
        policy = task.item_policy
    else:
        policy = None
    for p in (policy, lr.policy):
        if p is None:
            continue
        if p.retry:
            out.append(f"retry x{p.retry.max_attempts}")
        if p.timeout:
            out.append(f"timeout {p.timeout:g}s")
        if p.cache:
            out.append("cached")
    injects = getattr(task, "injects", ()) or ()
    if injects:
        out.append("inject " + ", ".join(name for _, name in injects))
    return tuple(out)


class _Literal:
    """A route that is a plain value (``routes={"none": 0}``): a node of its own."""

    __slots__ = ("value",)
    kind = None

    def __init__(self, value):
        self.value = value


def _describe(lr) -> tuple:
    """(kind, label, task name or None, details) of one lazy (or literal route)."""
    from .context import TARGET

    if type(lr) is _Literal:
        return "value", _short(repr(lr.value)), None, ()
    task = lr.task
    if lr.kind == ROUTE:
        return "router", "Router", None, ()
    if lr.kind != CALL:
        return "value", repr(task), None, ()
    if task is TARGET:
        return "target", "result", None, ()
    if isinstance(task, MapTask):
        return "map", task.name, task.name, _details(lr)
    return "call", task.name, task.name, _details(lr)


def _inputs(lr) -> list:
    """(producer lazy, edge kind, label) of every edge into ``lr``."""
    out = []
    if type(lr) is _Literal:
        return out
    if lr.kind == ROUTE:
        selector, routes = lr.args
        out += [(x, "selector", "") for x in _lazies_in(selector)]
        for key, route in routes.items():
            found = _lazies_in(route)
            if not found:  # a plain value: drawn as a value node
                found = [_Literal(route)]
            out += [(x, "route", repr(key)) for x in found]
        return out
    if lr.kind != CALL:
        return out
    for arg in (*lr.args, *lr.kwargs.values()) if lr.kwargs else lr.args:
        kind = type(arg)
        if kind in _LAZY_TYPES:
            out.append((arg, "data", ""))
        elif kind in _SEARCHED:
            out += [(x, "data", "") for x in _lazies_in(arg)]
    policy = lr.policy
    if policy is not None:
        for cond in policy.conds:
            out += [(x, "condition", "") for x in _lazies_in(cond)]
        for dep in policy.after:
            out += [(x, "after", "") for x in _lazies_in(dep)]
    return out


def shape_of(target) -> Shape:
    """The shape of the workflow under ``target`` (a lazy, or a container holding lazies)."""
    from .context import as_root

    root = as_root(target)
    if root is None:
        return Shape((DrawNode(0, "value", _short(repr(target)), None),), ())
    ids: dict = {id(root): 0}
    order = [root]
    edges = []
    seen_edges = set()
    i = 0
    while i < len(order):  # breadth first from the root, each lazy once
        lr = order[i]
        for producer, kind, label in _inputs(lr):
            j = ids.get(id(producer))
            if j is None:
                j = ids[id(producer)] = len(order)
                order.append(producer)
            key = (j, i, kind, label)
            if key not in seen_edges:
                seen_edges.add(key)
                edges.append(DrawEdge(j, i, kind, label))
        i += 1
    described: dict = {}  # id(task) -> what a plain call of it looks like (most nodes)
    nodes = []
    for k, lr in enumerate(order):
        plain = type(lr) is not _Literal and lr.kind == CALL and lr.policy is None
        about = described.get(id(lr.task)) if plain else None
        if about is None:
            about = _describe(lr)
            if plain:
                described[id(lr.task)] = about
        nodes.append(DrawNode(k, *about))
    nodes = tuple(nodes)
    return Shape(nodes, tuple(edges))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- DOT

_DOT_SHAPES = {"call": "box", "map": "box3d", "router": "diamond", "value": "ellipse",
               "target": "doubleoctagon"}


def to_dot(target) -> str:
    """The workflow under ``target`` as Graphviz DOT: one node per distinct call,
    routes dashed and labelled with their key, maps as stacked boxes."""
    shape = shape_of(target)
    lines = ["digraph cascade {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for node in shape.nodes:
        text = node.label + ("\\n" + ", ".join(node.details) if node.details else "")
        lines.append(f'  n{node.id} [label="{_esc(text)}", shape={_DOT_SHAPES[node.kind]}];')
    for edge in shape.edges:
        attrs_ = EDGE_STYLES[edge.kind]
        if edge.kind == "route":
            attrs_ += f', label="{_esc(edge.label)}"'
        lines.append(f"  n{edge.src} -> n{edge.dst}" + (f" [{attrs_}]" if attrs_ else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


# --------------------------------------------------------------------------- layers


def by_task(shape: Shape) -> tuple[Shape, dict]:
    """``shape`` with one node per (kind, label): a large workflow drawn task by task.

    Returns the smaller shape and, per new node id, how many nodes it stands for.
    """
    group: dict = {}
    nodes = []
    counts: dict = {}
    remap = {}
    for node in shape.nodes:
        key = (node.kind, node.label)
        k = group.get(key)
        if k is None:
            k = group[key] = len(nodes)
            nodes.append(attrs.evolve(node, id=k))
            counts[k] = 0
        counts[k] += 1
        remap[node.id] = k
    edges = {}
    for e in shape.edges:
        key = (remap[e.src], remap[e.dst], e.kind, e.label)
        if key[0] != key[1] and key not in edges:
            edges[key] = DrawEdge(*key)
    return Shape(tuple(nodes), tuple(edges.values())), counts


def layers(shape: Shape, sweeps: int = 4) -> list[list[int]]:
    """Node ids by layer, producers first: each node sits as close to its consumers
    as it can (one layer before its earliest consumer; the results in the last layer).

    Cycles cannot occur in a workflow, but a task-level shape (``by_task``)
    may have them; edges closing a cycle are ignored. Within a layer, nodes
    are ordered by the mean position of their neighbours in the layer after,
    then before (``sweeps`` passes).
    """
    n = len(shape.nodes)
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    for e in shape.edges:
        if e.src != e.dst:
            succ[e.src].append(e.dst)
            pred[e.dst].append(e.src)
    order = _topological(n, succ, pred)
    rank = {node: k for k, node in enumerate(order)}
    height = [0] * n  # longest path to a result, along edges that go forwards in ``order``
    for node in reversed(order):
        later = [height[s] + 1 for s in succ[node] if rank[s] > rank[node]]
        height[node] = max(later, default=0)
    top = max(height, default=0)
    rows: list[list[int]] = [[] for _ in range(top + 1)]
    for node in order:
        rows[top - height[node]].append(node)
    _order_rows(rows, pred, succ, sweeps)
    return rows


def _topological(n: int, succ, pred) -> list[int]:
    """Nodes with producers before consumers (Kahn); a cycle is broken at the waiting
    node with the fewest unplaced producers."""
    waiting = [len(p) for p in pred]  # producers not placed yet (an edge each)
    ready = [i for i in range(n) if waiting[i] == 0]
    ready.reverse()
    placed = [False] * n
    order: list[int] = []
    while len(order) < n:
        if not ready:
            ready = [min((i for i in range(n) if not placed[i]), key=lambda i: waiting[i])]
        node = ready.pop()
        if placed[node]:
            continue
        placed[node] = True
        order.append(node)
        for s in succ[node]:
            waiting[s] -= 1
            if waiting[s] == 0 and not placed[s]:
                ready.append(s)
    return order


def _order_rows(rows, pred, succ, sweeps: int) -> None:
    """Barycentre ordering, in place: down using producers, up using consumers."""
    position = {}
    for row in rows:
        for k, node in enumerate(row):
            position[node] = k
    for sweep in range(sweeps):
        down = sweep % 2 == 1
        sequence = rows[1:] if down else rows[-2::-1]
        for row in sequence:
            def centre(node, down=down):
                near = pred[node] if down else succ[node]
                if not near:
                    return position[node]
                return sum(position[m] for m in near) / len(near)
            row.sort(key=centre)
            for k, node in enumerate(row):
                position[node] = k
