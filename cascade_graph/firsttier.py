"""The first tier: a workflow seen for the first time runs straight from its lazies.

A template and its compiled forms pay for themselves when a structure comes
back (a tail loop's body, a run repeated with new values): then binding new
literals is all a run costs. A structure seen once (most cold workflows: a
script's one run, a pipeline built in a loop) would pay for building and
compiling them and never get it back. So, as the VM's second tier waits for
``HOT_AFTER`` entries before it compiles a block (jit.py), this tier waits
for the second sight of a structure before the engines build its template:
the first time, ``run_first`` evaluates the lazies themselves.

It takes a workflow when every node is a plain sync call that the engines
would call inline anyway (``calls.direct``, no policy, no async function, no
Param/Env/Router, no batch) and the run is quiet (nobody listens, so there
are no events or call numbers to produce) and in-process. Anything else, or
``tail_cache=False`` / ``hot_path=False`` (the switches that make the
engines do all the work themselves), leaves the workflow to the engine, and
nothing has run by then: the walk that orders the nodes also checks them and
every call's arity, before any task runs, as template building would.

Evaluation is one iterative post-order walk (children in order of first
reference) followed by one loop over that order. Sharing is kept: each node
runs once, whatever reads it. A node whose function returns a lazy (a tail
call) has it evaluated by the engine (``follow``) in a task of its own, read
at its first use, so sibling continuations overlap as on the engines; the
workflow's root's tail call goes back to the engine as the run's next target. A
tail call's value may be ``SKIPPED`` (its continuation was skipped): its
consumers are then skipped too, except the run's container target, which
takes None for it, as on the engines. The loop yields to the event loop like
every other loop (``Pacer``).

"Seen" is by the root's shape (the structure unfolded as a tree, free on
every lazy): a second workflow of that shape builds the template, even when
its sharing differs (then only a faster first run is lost).
"""

from __future__ import annotations

from .calls import DISTRIBUTED, LOCAL, SKIPPED, direct, failed, skipped
from .hotpath import Pacer
from .lazy import _LAZY_TYPES, _ONE_LAZY_SPEC, _POS_SPEC_IDS, CALL
from .template import canonical_nodes

_SEEN: set = set()  # root shapes run by this tier (or by the engines) once already
_SEEN_LIMIT = 1 << 16
NOT_TAKEN = object()  # run_first's answer when the engine must run the workflow


def forget() -> None:
    """Forget every shape seen (the next run of each is a first sight again)."""
    _SEEN.clear()


def wants(ctx, root) -> bool:
    """Should ``root``, the run's target, be run by this tier? (Remembers its shape.)"""
    if not (ctx.tail_cache and ctx.hot_path) or ctx.emit is not None:
        return False
    if ctx.executor is not LOCAL or DISTRIBUTED.get() or not root.children:
        return False  # a flat target: the hot path's
    shape = root.shape
    if shape in _SEEN:
        return False
    if len(_SEEN) >= _SEEN_LIMIT:
        _SEEN.clear()  # forgetting only gives a shape one more first-tier run
    _SEEN.add(shape)
    return True


def _task_ok(task) -> bool:
    """Can this tier call ``task``'s function itself (see module docstring)?"""
    return not (task.is_async or (task.internal and not task.gathers) or task.folded
                or not direct(task))


def _all_taken(order) -> bool:
    """Is every node of ``order`` for this tier? Checks each call's arity on the way."""
    tasks: dict = {}  # id(task) -> _task_ok(task), asked once per task
    ids = _POS_SPEC_IDS
    link = _ONE_LAZY_SPEC
    previous = None  # the task of the last chain link checked
    for lr in order:
        task = lr.task
        spec = lr.spec
        if spec is link and task is previous and lr.policy is None:
            continue  # one more link of the task just checked (kind CALL: a task's)
        if lr.kind != CALL or lr.policy is not None:
            return False
        ok = tasks.get(id(task))
        if ok is None:
            ok = tasks[id(task)] = _task_ok(task)
        if not ok:
            return False
        if spec is None:
            layout = (len(lr.args), tuple(lr.kwargs)) if lr.kwargs else (len(lr.args), ())
        elif id(spec) in ids or _plain_containers(spec):
            layout = (len(lr.args), spec[1])
        else:
            return False
        if layout not in task._checked:
            task.check_call(*layout)
        previous = task if spec is link else None
    return True


def _plain_containers(spec) -> bool:
    """Are a call's specs literals, lazies and containers of those (no injection)?"""
    stack = list(spec[0]) + list(spec[2])
    while stack:
        s = stack.pop()
        if s is None or s[0] == "L":
            continue
        if s[0] == "I":
            return False
        stack.extend(s[2])
    return True


def _evaluation_order(root) -> list:
    """The distinct nodes under ``root``, each after its children: a tree's canonical
    order reversed, or a DAG's post-order (children in order of first reference)."""
    if root.tree:
        order = canonical_nodes(root, True)
        order.reverse()
        return order
    order = []
    seen: set = set()
    stack = [(root, False)]
    pop, push = stack.pop, stack.append
    while stack:
        n, expanded = pop()
        if expanded:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        push((n, True))
        ch = n.children
        for i in range(len(ch) - 1, -1, -1):
            if id(ch[i]) not in seen:
                push((ch[i], False))
    return order


def _arguments(lr, values: dict) -> tuple:
    """(args, kwargs) of call ``lr`` with each lazy replaced by its value."""
    spec = lr.spec
    if spec is None:
        return lr.args, lr.kwargs
    lazy = _LAZY_TYPES
    if id(spec) in _POS_SPEC_IDS:
        args = [values[id(a)] if type(a) in lazy else a for a in lr.args]
        if not lr.kwargs:
            return args, None
        return args, {k: values[id(a)] if type(a) in lazy else a for k, a in lr.kwargs.items()}
    children = [values[id(c)] for c in lr.children]
    lits = iter(lr.lits)
    pos, kwnames, kws, _ = spec
    built = [_build(s, lits, children) for s in pos + kws]
    return built[:len(pos)], dict(zip(kwnames, built[len(pos):]))


def _build(spec, lits, children):
    """The value of one argument spec: literals from ``lits`` in slot order, children's
    values by index, containers rebuilt with their type (iterative, any depth)."""
    if spec is None:
        return next(lits)
    if spec[0] == "L":
        return children[spec[1]]
    stack = [(spec, [])]  # frames: (container spec, its values so far)
    while True:
        s, done = stack[-1]
        items = s[2]
        if len(done) == len(items):
            stack.pop()
            value = dict(zip(s[1], done)) if s[0] == "D" else (
                done if s[1] is list else s[1](done))
            if not stack:
                return value
            stack[-1][1].append(value)
            continue
        item = items[len(done)]
        if item is None:
            done.append(next(lits))
        elif item[0] == "L":
            done.append(children[item[1]])
        else:
            stack.append((item, []))


async def _read_started(lr, values: dict, started: set) -> bool:
    """Await the started tail calls among ``lr``'s children; True when one was skipped."""
    skips = False
    for c in lr.children:
        if id(c) in started:
            started.discard(id(c))
            t = values[id(c)]
            v = values[id(c)] = t.result() if t.done() else await t
            skips = skips or v is SKIPPED
    return skips


def _skipped_input(lr, values: dict) -> bool:
    for c in lr.children:
        if values[id(c)] is SKIPPED:
            return True
    return False


async def run_first(ctx, root, follow):
    """Evaluate ``root`` from its lazies: its value, a lazy (the root's own tail call,
    for the engine to go on with), or ``NOT_TAKEN`` when nothing ran and the engine
    must run the workflow. ``follow(lazy)`` evaluates an inner node's tail call."""
    order = _evaluation_order(root)
    if not _all_taken(order):
        return NOT_TAKEN
    values: dict = {}
    lazy = _LAZY_TYPES
    link = _ONE_LAZY_SPEC
    pacer = Pacer(ctx.yield_interval)
    budget = pacer.batch
    skips = False  # a tail call's value was SKIPPED: consumers check their inputs
    started: set = set()  # ids of nodes whose tail call runs as a task of its own
    for lr in order:
        spec = lr.spec
        if started:
            skips = await _read_started(lr, values, started) or skips
        if skips and _skipped_input(lr, values):
            if not lr.task.container_target:  # (the run's target takes None for it)
                values[id(lr)] = skipped(ctx, lr.task, "upstream")
                continue
            values = {k: (None if v is SKIPPED else v) for k, v in values.items()}
        try:  # (free in Python 3.11 until something raises)
            if spec is link:  # a chain link: its one child ran just before, or earlier
                v = lr.task.fn(values[id(lr.args[0])])
            elif spec is None:  # literals only
                v = lr.task.fn(*lr.args, **lr.kwargs) if lr.kwargs else lr.task.fn(*lr.args)
            else:
                args, kwargs = _arguments(lr, values)
                v = lr.task.fn(*args, **kwargs) if kwargs else lr.task.fn(*args)
        except BaseException as exc:
            failed(ctx, lr.task, exc)
            raise
        if type(v) in lazy:
            if lr is root:
                return v  # the root's tail call: the engine goes on with it
            v = ctx.spawn(follow(v))  # overlaps the rest; read at first use
            started.add(id(lr))
        values[id(lr)] = v
        budget -= 1
        if not budget:
            budget = await pacer.batch_done()
    return values[id(root)]
