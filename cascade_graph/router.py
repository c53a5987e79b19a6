"""``Router``: an argument that becomes the value of one of several routes.

``Router(selector, routes={key: lazy_or_value, ...})`` passed as an argument
is replaced, when the consumer is created, by one internal *route node*
(kind ``ROUTE``). Its scheduled inputs are only the selector and the routes
that are nodes of the workflow anyway (a route root another consumer needs):
the other routes travel as a literal input (the routes dict) and do not run
unless selected. Selecting one of those makes a tail call into it, which
both engines already know how to run; selecting a shared one just takes its
value. Each unselected route root that nothing else needs gets one
``TaskSkipped(reason="pruned")``.

Route lazies count as uses of the route node (see lazy.py), so a route root
shared with the rest of the workflow makes the template a DAG, and the
template records, per key, whether the route is such a shared node.
"""

from __future__ import annotations

from .events import TaskSkipped
from .lazy import (
    _LAZY_TYPES,
    ROUTE,
    LazyResult,
    _new_lazy,
    intern_shape,
    register_arg_hook,
    register_lazy_type,
)


class _RouteTask:
    """The pseudo-task of route nodes (internal: no task events)."""

    name = "Router"
    internal = True
    offload = False
    is_async = False
    injects = ()
    fn = None

    def check_call(self, nargs, kwnames):
        return None

    def __repr__(self):
        return "<router>"


ROUTE_TASK = _RouteTask()


class Router:
    """``Router(selector, routes={key: lazy, ...})``: becomes the selected route's value."""

    __slots__ = ("selector", "routes", "_node")

    def __init__(self, selector, routes):
        if not isinstance(routes, dict) or not routes:
            raise TypeError(
                f"Router routes must be a non-empty dict {{key: lazy call}}, got {routes!r}"
            )
        self.selector = selector
        self.routes = dict(routes)
        self._node = None

    def __repr__(self):
        return f"Router({self.selector!r}, routes={list(self.routes)!r})"

    def node(self) -> LazyResult:
        """The route node standing for this router in a consumer's arguments (made once)."""
        if self._node is None:
            self._node = _route_node(self)
        return self._node


class RouteNode(LazyResult):
    """The node a ``Router`` argument becomes (kind ``ROUTE``)."""

    __slots__ = ()
    kind = ROUTE


register_lazy_type(RouteNode)
register_arg_hook(Router, Router.node)


def _route_node(router: Router) -> LazyResult:
    sel = router.selector
    keys = tuple(router.routes)
    lr = _new_lazy(RouteNode)
    lr.task = ROUTE_TASK
    lr.kwargs = {}
    lr.policy = None
    lr.uses = 0
    lr.copied = False
    tree = True
    refs = [v for v in router.routes.values() if type(v) in _LAZY_TYPES]
    if type(sel) in _LAZY_TYPES:
        lr.args = (sel, router.routes)
        lr.children = (sel,)
        lr.lits = (router.routes,)
        pos = (("L", 0), None)
        sel.uses += 1
        if sel.uses > 1 or not sel.tree or sel.copied:
            tree = False
    else:
        lr.args = (sel, router.routes)
        lr.children = ()
        lr.lits = (sel, router.routes)
        pos = (None, None)
    for r in refs:
        r.uses += 1
        if r.uses > 1 or not r.tree or r.copied:
            tree = False
    lr.spec = (pos, (), (), None)
    lr.tree = tree
    lr.shape = intern_shape((ROUTE_TASK, lr.spec, tuple(c.shape for c in lr.children),
                             ("route", keys, tuple(r.shape for r in refs))))
    return lr


def select(ctx, node, selector, routes: dict, shared: dict):
    """The selected route: its value if it is a shared node, else its lazy (a tail call)."""
    if selector not in routes:
        known = ", ".join(repr(k) for k in routes)
        raise KeyError(f"Router has no route {selector!r}; known routes: {known}")
    emit = ctx.emit
    if emit is not None:
        for key, idx in node.routes:
            if key != selector and idx is None:
                other = routes[key]
                if type(other) in _LAZY_TYPES:
                    emit(TaskSkipped(ctx.run_id, getattr(other.task, "name", "?"), "pruned"))
    if selector in shared:
        return shared[selector]
    return routes[selector]


__all__ = ["Router", "ROUTE", "select"]
