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

from typing import Any

import attrs

from .batch import members_of
from .calls import skipped
from .errors import InternalError, RouteKeyError
from .lazy import (
    _LAZY_TYPES,
    ROUTE,
    LazyResult,
    StandIn,
    Task,
    _new_lazy,
    intern_shape,
    pickled_first,
    register_arg_hook,
    register_lazy_type,
)
from .template import route_refs


def _not_called(*args):  # pragma: no cover - engines select routes, never call this
    raise InternalError("a Router node is selected by the engine, never called")


class _RouteTask(Task):
    """The pseudo-task of route nodes (internal: no task events). A ``Task``, so it
    has every task fact the engines read; only its arity check differs."""

    internal = True

    def __init__(self):
        super().__init__(_not_called, name="Router")

    def check_call(self, nargs, kwnames):
        return None

    def __repr__(self):
        return "<router>"


ROUTE_TASK = _RouteTask()


class Router(StandIn):
    """``Router(selector, routes={key: lazy, ...})``: becomes the selected route's value.

    Type checkers accept it wherever a task's parameter takes a value (see
    ``lazy.StandIn``).
    """

    __slots__ = ("selector", "routes", "_node")

    def __init__(self, selector: Any, routes: dict[Any, Any]) -> None:
        if not isinstance(routes, dict) or not routes:
            raise TypeError(
                f"Router routes must be a non-empty dict {{key: lazy call}}, got {routes!r}"
            )
        self.selector = selector
        self.routes = dict(routes)
        self._node = None


    def __repr__(self):
        return f"Router({self.selector!r}, routes={list(self.routes)!r})"

    def __reduce__(self):  # its route node is made again where it lands
        return Router, (self.selector, self.routes)

    def node(self) -> LazyResult:
        """The route node standing for this router in a consumer's arguments (made once)."""
        if self._node is None:
            self._node = _route_node(self)
        return self._node


class RouteNode(LazyResult):
    """The node a ``Router`` argument becomes (kind ``ROUTE``)."""

    __slots__ = ()
    kind = ROUTE

    def __reduce__(self):
        sel, routes = self.args
        return _route_node_from, (pickled_first(self), sel, routes)


register_lazy_type(RouteNode)
register_arg_hook(Router, Router.node)


def _route_node_from(first, selector, routes) -> LazyResult:
    """A pickled route node rebuilt (``first``: the lazies below it, rebuilt already)."""
    return Router(selector, routes).node()


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


def check_key(selector, routes: dict) -> None:
    """``KeyError`` naming ``selector`` and the known keys when no route has that key."""
    try:
        hit = selector in routes
    except TypeError:
        hit = False
    if not hit:
        known = ", ".join(repr(k) for k in routes)
        raise KeyError(f"Router has no route {selector!r}; known routes: {known}")


class SelectorCheck:
    """A router whose selector is a ``Param``: its key is checked when the run starts.

    The template lists it with the run's other start-time parameters
    (``route_params``), so both engines resolve it, through ``ctx.value_of``,
    before any task of the template runs. The keys are structure (part of the
    route node's shape), so one check serves every run of the template.
    """

    __slots__ = ("param", "keys")

    def __init__(self, param, keys: tuple):
        self.param = param
        self.keys = keys

    def resolve(self, params: dict):
        """The parameter's value; ``RouteKeyError`` when no route has it as key."""
        value = self.param.resolve(params)
        try:
            hit = value in self.keys
        except TypeError:
            hit = False
        if not hit:
            known = ", ".join(repr(k) for k in self.keys)
            raise RouteKeyError(
                f"parameter {self.param.name!r} is {value!r}, which selects no route of "
                f"its Router; known routes: {known}"
            )
        return value


def select(ctx, node, selector, routes: dict, values: dict):
    """The selected route's value (a shared node), or its lazy call (a tail call).

    ``values`` maps the canonical index of each dependency of the route node
    to its value (shared route roots and frontier nodes, see template.py).
    """
    check_key(selector, routes)
    emit = ctx.emit
    chosen = None
    for key, idx, frontier, rid in node.routes:
        if key == selector:
            chosen = (idx, frontier, rid)
        elif idx is None and emit is not None:
            other = routes[key]
            if type(other) in _LAZY_TYPES:
                skipped(ctx, other.task, "pruned")
    idx, frontier, rid = chosen
    if idx is not None:
        return values[idx]
    route = routes[selector]
    if frontier:
        route = _with_values(route, frontier, values)
    if rid in node.multi_routes:  # other routers may pick the same route: evaluate it once
        return SharedRoute(routes[selector], route)
    return route


class SharedRoute:
    """A selected route that other routers of the run may select too (see ``evaluate_once``)."""

    __slots__ = ("key", "route", "lazy")

    def __init__(self, route, lazy):
        self.key = id(route)  # identity of the route object in this run
        self.route = route  # the route object (kept alive while its id is a key)
        self.lazy = lazy  # what to evaluate (the route, with frontier values in)


def evaluate_once(ctx, shared: SharedRoute, follow):
    """The run's one task evaluating ``shared`` (started by the first router to select it)."""
    memo = ctx.route_runs
    hit = memo.get(shared.key)
    if hit is None:
        # the entry holds the route object: its id cannot be reused while it is here
        hit = memo[shared.key] = (shared.route, ctx.spawn(follow(shared.lazy)))
    return hit[1]


def _with_values(route, frontier, values: dict):
    """``route`` rebuilt with its frontier nodes replaced by their values."""
    want = dict(frontier)  # walk position -> canonical index
    mapping = {}
    stack = [route]
    seen = set()
    pos = 0
    while stack:  # the same walk as template.route_frontier
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if pos in want:
            mapping[id(n)] = values[want[pos]]
        else:
            refs = route_refs(n)
            if refs:
                stack.extend(refs[::-1])
        pos += 1
    return substitute(route, mapping)


def substitute(root, mapping: dict):
    """Rebuild the sub-workflow under ``root`` with nodes ``mapping`` names replaced by values.

    Iterative post-order; nodes that reference nothing replaced stay as they are.
    """
    new: dict = {}
    order = []
    stack = [(root, False)]
    seen = set()
    while stack:
        n, expanded = stack.pop()
        if expanded:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        if id(n) in mapping:
            new[id(n)] = mapping[id(n)]
            continue
        stack.append((n, True))
        stack.extend((c, False) for c in reversed(route_refs(n)))
    for n in order:
        if not any(id(c) in new for c in route_refs(n)):
            continue
        new[id(n)] = _rebuild(n, new)
    return new.get(id(root), root)


def _swap(value, new: dict):
    """``value`` with replaced lazies swapped in, through exact builtin containers."""
    t = type(value)
    if t in _LAZY_TYPES:
        return new.get(id(value), value)
    if t is Router:
        routes = {k: _swap(v, new) for k, v in value.routes.items()}
        return Router(_swap(value.selector, new), routes)
    if t is list or t is tuple or t is set:
        return t(_swap(v, new) for v in value) if t is not list else [_swap(v, new) for v in value]
    if t is dict:
        return {k: _swap(v, new) for k, v in value.items()}
    return value


def _rebuild(n, new: dict):
    from .lazy import EMPTY_POLICY, _make

    if members_of(n):  # a batch: its consumer is rebuilt from its own arguments
        return n
    if type(n) is RouteNode:
        sel, routes = n.args
        return Router(_swap(sel, new), {k: _swap(v, new) for k, v in routes.items()}).node()
    args = tuple(_swap(a, new) for a in n.args)
    kwargs = {k: _swap(v, new) for k, v in n.kwargs.items()}
    policy = n.policy or EMPTY_POLICY
    if n.policy is not None:
        conds = tuple(_swap(c, new) for c in policy.conds)
        conds = tuple(c if type(c) in _LAZY_TYPES else bool(c) for c in conds)
        after = tuple(a for a in (_swap(a, new) for a in policy.after) if type(a) in _LAZY_TYPES)
        policy = attrs.evolve(policy, conds=conds, after=after)
    return _make(n.task, args, kwargs, policy)


__all__ = ["Router", "ROUTE", "select"]
