"""The workflow's graph as inline SVG, laid out here (no Graphviz).

Input: the workflow's ``Shape`` (``drawing.shape_of``), the tail-call edges
the run made (caller task, continuation task, count) and the per-task call
counts. A workflow of more than ``COLLAPSE_AT`` nodes is drawn task by task
(``drawing.by_task``: one box per task, "x N nodes"); past ``DRAW_LIMIT``
boxes it is not drawn at all (the page says so).

Layout, left to right like ``python -m cascade_vm graph``: ``drawing.layers``
puts each node one column after its latest producer and orders each column
by its neighbours; columns are as wide as their widest label, rows evenly
spaced and centred. Edges are cubic curves from a producer's right side to
a consumer's left side; an edge going backwards (a tail call to an earlier
task) or to itself loops over the top. Styles by edge kind: data plain,
``run_if`` dashed amber, ``after`` dashed grey, selector purple, a route
dashed purple labelled with its key, a tail call dotted blue labelled with
how often it happened.
"""

from __future__ import annotations

from html import escape

from ..drawing import DrawEdge, DrawNode, Shape, by_task, layers

COLLAPSE_AT = 60  # more nodes than this: one box per task
DRAW_LIMIT = 250  # more boxes than this: no drawing

PALETTE = ("#4f7cff", "#14b8a6", "#f59e0b", "#ec4899", "#8b5cf6", "#22c55e", "#ef6c3e",
           "#06b6d4", "#a3a635", "#e11d48", "#6366f1", "#0ea5e9")

_CHAR = 7.2  # px per character of a label at 12px
_ROW = 56  # px between rows
_GAP = 84  # px between columns
_PAD = 24

_EDGE_CLASS = {"data": "e-data", "condition": "e-cond", "after": "e-after",
               "selector": "e-sel", "route": "e-route", "tail": "e-tail"}


def colour(index: int) -> str:
    """The colour of the task first seen ``index``-th (the same in every part of the page)."""
    return PALETTE[index % len(PALETTE)]


def with_tail_calls(shape: Shape, tail_edges: list) -> Shape:
    """``shape`` plus the run's tail calls between tasks (a box per task not drawn yet)."""
    nodes = list(shape.nodes)
    edges = list(shape.edges)
    by_name: dict = {}
    for node in nodes:
        if node.task is not None:
            by_name.setdefault(node.task, []).append(node.id)
    for caller, target, n in tail_edges:
        for name in (caller, target):
            if name not in by_name:
                by_name[name] = [len(nodes)]
                nodes.append(DrawNode(len(nodes), "call", name, name, ("via tail call",)))
        label = "tail call" + (f" x{n:,}" if n > 1 else "")
        for src in by_name[caller][:1]:
            for dst in by_name[target][:1]:
                edges.append(DrawEdge(src, dst, "tail", label))
    return Shape(tuple(nodes), tuple(edges))


def graph_svg(shape: Shape | None, tail_edges: list, task_colours: dict, calls: dict) -> str:
    """The ``<svg>`` of the graph (or a short note when there is nothing to draw)."""
    if shape is None:
        return '<p class="note">The workflow was not given to the report, so no graph.</p>'
    counts = None
    if len(shape.nodes) > COLLAPSE_AT:
        shape, counts = by_task(shape)
    shape = with_tail_calls(shape, tail_edges)
    if len(shape.nodes) > DRAW_LIMIT:
        return (f'<p class="note">The workflow has {len(shape.nodes):,} distinct tasks, too many '
                "to draw; use <code>python -m cascade_vm graph</code> for its DOT.</p>")
    forward = Shape(shape.nodes, tuple(e for e in shape.edges if e.kind != "tail"))
    rows = layers(forward)
    place = _place(shape, rows)
    width = max((x + w for x, _, w in place.values()), default=0) + _PAD
    height = max((y for _, y, _ in place.values()), default=0) + _ROW / 2 + _PAD + 40
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 -28 {width:.0f} '
             f'{height:.0f}" width="{width:.0f}" height="{height:.0f}" role="img" '
             'aria-label="workflow graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
             'fill="context-stroke"/></marker></defs>']
    parts += [_edge(e, place) for e in shape.edges]
    boxes: dict = {}  # task name -> how many boxes show it: a call count badge only on a lone one
    for n in shape.nodes:
        boxes[n.task] = boxes.get(n.task, 0) + 1
    lone = {name: c for name, c in calls.items() if boxes.get(name) == 1}
    parts += [_node(n, place[n.id], task_colours, lone, counts) for n in shape.nodes]
    parts.append("</svg>")
    return "".join(parts)


def _label_width(node: DrawNode) -> float:
    text = max([node.label, ", ".join(node.details)], key=len)
    return max(64.0, len(text) * _CHAR + 28)


def _place(shape: Shape, rows: list) -> dict:
    """node id -> (x, y centre, width)."""
    tallest = max((len(r) for r in rows), default=1)
    place = {}
    x = float(_PAD)
    for row in rows:
        w = max((_label_width(shape.nodes[i]) for i in row), default=64.0)
        offset = (tallest - len(row)) * _ROW / 2
        for k, i in enumerate(row):
            place[i] = (x, _PAD + offset + k * _ROW + _ROW / 2, w)
        x += w + _GAP
    return place


def _edge(e: DrawEdge, place: dict) -> str:
    sx, sy, sw = place[e.src]
    dx, dy, dw = place[e.dst]
    cls = _EDGE_CLASS[e.kind]
    if e.src == e.dst:  # a task tail-calling itself: a loop over the top
        x0, x1, top = sx + sw * 0.35, sx + sw * 0.65, sy - 42
        path = f"M{x0:.1f},{sy - 17:.1f} C{x0 - 10:.1f},{top:.1f} {x1 + 10:.1f},{top:.1f} " \
               f"{x1:.1f},{sy - 17:.1f}"
        lx, ly = sx + sw / 2, top + 2
    elif dx > sx:  # forwards: right side to left side
        x0, x1 = sx + sw, dx - 2
        mid = (x0 + x1) / 2
        path = f"M{x0:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},{dy:.1f} {x1:.1f},{dy:.1f}"
        lx, ly = mid, (sy + dy) / 2 - 5
    else:  # backwards (a tail call to an earlier task): over the top
        x0, x1 = sx + sw / 2, dx + dw / 2
        top = min(sy, dy) - 46
        path = f"M{x0:.1f},{sy - 17:.1f} C{x0:.1f},{top:.1f} {x1:.1f},{top:.1f} " \
               f"{x1:.1f},{dy - 17:.1f}"
        lx, ly = (x0 + x1) / 2, top + 10
    label = e.label or {"condition": "run_if", "after": "after", "selector": "selector"}.get(
        e.kind, "")
    text = (f'<text class="elabel" x="{lx:.1f}" y="{ly:.1f}">{escape(label)}</text>'
            if label else "")
    return (f'<g class="edge {cls}" data-src="{e.src}" data-dst="{e.dst}"><path d="{path}" '
            f'marker-end="url(#arrow)"/>{text}</g>')


def _node(n: DrawNode, at: tuple, task_colours: dict, calls: dict, counts) -> str:
    x, y, w = at
    h = 34
    top = y - h / 2
    index = task_colours.get(n.task)
    fill = colour(index) if index is not None else "#94a3b8"
    details = list(n.details)
    if counts is not None and counts.get(n.id, 1) > 1:
        details.insert(0, f"x{counts[n.id]:,} nodes")
    shape = _outline(n.kind, x, top, w, h, fill)
    title = n.label + (f" ({', '.join(details)})" if details else "")
    badge = ""
    if n.task is not None and calls.get(n.task):
        c = calls[n.task]
        text = f"{c:,} call" + ("s" if c != 1 else "")
        bw = len(text) * 6.2 + 12
        badge = (f'<g class="badge"><rect x="{x + w - bw + 6:.1f}" y="{top - 9:.1f}" '
                 f'width="{bw:.1f}" height="16" rx="8"/><text x="{x + w - bw / 2 + 6:.1f}" '
                 f'y="{top + 2.5:.1f}">{text}</text></g>')
    sub = (f'<text class="ndetail" x="{x + w / 2:.1f}" y="{y + 11:.1f}">'
           f'{escape(", ".join(details))}</text>') if details else ""
    ly = y - 2 if details else y + 4
    return (f'<g class="node n-{n.kind}" data-id="{n.id}" data-task="{escape(n.task or "")}">'
            f'<title>{escape(title)}</title>{shape}'
            f'<text class="nlabel" x="{x + w / 2:.1f}" y="{ly:.1f}">{escape(n.label)}</text>'
            f'{sub}{badge}</g>')


def _outline(kind: str, x: float, top: float, w: float, h: float, fill: str) -> str:
    style = f'style="--c:{fill}"'
    if kind == "router":
        cy = top + h / 2
        points = f"{x},{cy} {x + 14},{top} {x + w - 14},{top} {x + w},{cy} " \
                 f"{x + w - 14},{top + h} {x + 14},{top + h}"
        return f'<polygon class="shape" {style} points="{points}"/>'
    if kind in ("value", "target"):
        return f'<rect class="shape" {style} x="{x}" y="{top}" width="{w}" height="{h}" ' \
               f'rx="{h / 2}"/>'
    back = ""
    if kind == "map":  # a stack of calls
        back = "".join(f'<rect class="shape stack" {style} x="{x + d}" y="{top - d}" '
                       f'width="{w}" height="{h}" rx="7"/>' for d in (8, 4))
    return back + f'<rect class="shape" {style} x="{x}" y="{top}" width="{w}" height="{h}" rx="7"/>'
