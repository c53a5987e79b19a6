"""The first tier: a workflow seen for the first time runs straight from its lazies.

A template and its compiled forms pay for themselves when a structure comes
back (a tail loop's body, a run repeated with new values): then binding new
literals is all a run costs. A structure seen once (most cold workflows: a
script's one run, a pipeline built in a loop) would pay for building and
compiling them and never get it back. So, as the VM's second tier waits for
``HOT_AFTER`` entries before it compiles a block (jit.py), this tier waits
for the second sight of a structure before the engines build its template:
the first time, ``run_first`` evaluates the lazies themselves.

It takes a workflow when every node is a call (no Router, no folded node;
sync or async) or a ``Param`` or ``Env`` (each resolved before any task runs,
as the engines resolve them; a resource a task injects is checked to exist
before any task runs, as the engines check it), with any policy:
conditions, ordering, a retry or timeout of a sync task made in line
(``calls.call_inline``, as the engines make it: one ``.with_retry()`` or
``.run_if()`` item no longer sends a whole fan-out to the template path), and
any other (a cache, an async call's retry or timeout, a retry that pauses), an
async task with a concurrency limit or one that injects resources, through
the protocol (an offloaded task leaves the workflow to the engine): in line
when nothing of it waits (``calls.invoke_now``), else ``calls.invoke``
started eagerly (``calls.start_eagerly``) and read at first use when it
waits, as the engines start it (such tasks never take this tier's own inner
loops: ``indirect``); and the run is quiet (nobody
listens, so there are no events or call numbers to produce) and in-process.
Anything else, or ``tail_cache=False`` / ``hot_path=False`` (the switches that make
the engines do all the work themselves), leaves the workflow to the engine,
and nothing has run by then: the walk that orders the nodes also checks them
and every call's arity, before any task runs, as template building would.

Evaluation is one iterative walk that orders the nodes, each after its
children (a tree of sync calls in the VM's order, reverse canonical; else a
post-order, children in order of first reference), then one loop over that
order. Sharing is kept: each node runs once, whatever reads it. An async call
is started when the loop reaches it (eagerly, ``calls.start_async_quiet``)
and, unless it finished in its first step, read at its first use, and a
node's tail call runs in a task of its own the same way, so independent
async work overlaps as on the engines; the root's tail call goes back to the
engine as the run's next target. Once a node needs a task's value that is not
there yet, the rest of the order runs by readiness (``by_readiness``: nodes
run as their inputs arrive, and when none can, the oldest task is awaited),
so a slow task never holds up work that does not need it; when that node is
the last one (a fan-in of async calls), it reads its started children in
turn and runs (``_last_when_ready``): with nothing else left, readiness has
no order to choose. A task's value may
be ``SKIPPED`` (a continuation was skipped): its consumers are then skipped
too, except the run's container target, which takes None for it, as on the
engines. The loop yields to the event loop like every other loop (``Pacer``).

"Seen" is by the root's shape (the structure unfolded as a tree, free on
every lazy): a second workflow of that shape builds the template, even when
its sharing differs (then only a faster first run is lost). A continuation
(a tail call's lazy, a map's items) is asked about in the same way when the
engine is about to evaluate it (``wants``; the VM's ``_load``/``_enter``, the
graph executor's ``start``), so a sub-workflow made at run time is a first
sight too, and only its second sight builds a template.
"""

from __future__ import annotations

from asyncio import Task
from collections import deque

from .calls import (
    DISTRIBUTED,
    LOCAL,
    SKIPPED,
    call_inline,
    direct,
    failed,
    inline_policy,
    invoke,
    invoke_now,
    skipped,
    start_async_quiet,
    start_eagerly,
)
from .hotpath import Pacer
from .lazy import (
    _BARE,
    _LAZY_TYPES,
    _LINK_SPEC_IDS,
    _LITERAL_LINK_SPEC_IDS,
    _POS_SPEC_IDS,
    CALL,
    ENV,
    PARAM,
)
from .resources import injection_order
from .template import canonical_nodes, layout_of, written_arguments

_SEEN: set = set()  # root shapes run by this tier (or by the engines) once already
_SEEN_LIMIT = 1 << 16
NOT_TAKEN = object()  # run_first's answer when the engine must run the workflow
FIRST_SIGHT = object()  # an engine's mark of a continuation this tier takes (``wants``)


def forget() -> None:
    """Forget every shape seen (the next run of each is a first sight again)."""
    _SEEN.clear()


def first_sight(ctx, root) -> bool:
    """Would ``wants`` give ``root`` to this tier? (Asks only: remembers nothing.)"""
    if root.shape in _SEEN or not root.children:  # seen (a loop's body from its second
        return False  # turn), or flat: the hot path's
    if not (ctx.tail_cache and ctx.hot_path) or ctx.emit is not None:
        return False
    return ctx.executor is LOCAL and not DISTRIBUTED.get()


def wants(ctx, root) -> bool:
    """Should ``root``, the run's target or a continuation (a tail call's lazy, a map's
    items) the engine is about to evaluate, be run by this tier? (Remembers its
    shape.)"""
    if not first_sight(ctx, root):
        return False
    if len(_SEEN) >= _SEEN_LIMIT:
        _SEEN.clear()  # forgetting only gives a shape one more first-tier run
    _SEEN.add(root.shape)
    return True


class _Invocation:
    """What ``calls.invoke`` reads of a call: its task, its policy, its injections
    ((parameter, resource) for the parameters whose default is ``inject(...)`` the
    call leaves to it: ``resources.injection_order``)."""

    __slots__ = ("task", "policy", "injects")

    def __init__(self, task, policy, args: tuple, kwargs: dict):
        self.task = task
        self.policy = policy
        self.injects = (injection_order(task, len(args), tuple(kwargs), ()) if task.injects
                        else ())


def _task_ok(task) -> bool:
    """Can this tier call ``task`` (see module docstring): its function itself, or through
    the protocol when it is ``async def`` with a concurrency limit or injects resources?
    Not an internal task (but a gathering one), a folded one, nor an offloaded one: its
    thread cannot be stopped, so the engines start it only when its turn comes in their
    schedule, never ahead of a failure that ends the run."""
    return not ((task.internal and not task.gathers) or task.folded or task.offload)


def _through_invoke(lr) -> bool:
    """Does call ``lr`` take the protocol's general path (``calls.invoke``): a policy
    not made in line (a cache, an async call's retry or timeout, a retry that
    pauses), an async task with a concurrency limit, a task that injects resources?"""
    task = lr.task
    return ((lr.policy is not None and not inline_policy(lr.policy, task))
            or not direct(task))


_ASYNC = "async"  # _all_taken's yes when some task is async
_VALUES = "values"  # _all_taken's yes when some node is a Param or Env (no task async)
_ASYNC_VALUES = "async and values"  # both


def _all_taken(order, needs: list, indirect: set):
    """Is every node of ``order`` for this tier (False, True, or ``_ASYNC`` when some
    task is async, ``_VALUES`` when some node is a Param or Env, ``_ASYNC_VALUES`` for
    both)? Checks each call's arity on the way, once per task and layout; lists in
    ``needs`` (resource, task name) for every resource a task injects, and in
    ``indirect`` the ids of the tasks whose calls go through ``calls.invoke``."""
    has_async = has_values = False
    # id(task) -> the layouts checked for it: id(spec) of a call with lazies (the spec
    # fixes the layout), the argument count of a flat call without keywords
    known: dict = {}
    ids = _POS_SPEC_IDS
    last = last_spec = last_shape = None  # the task, spec and shape of the last call
    for lr in order:
        task = lr.task
        spec = lr.spec
        if task is last and lr.policy is None and (
                spec is last_spec if spec is not None else lr.shape == last_shape):
            continue  # (a chain's links: one spec; a fan-out's flat calls: one shape)
        layouts = known.get(id(task))
        if layouts is not None and lr.policy is None:
            if spec is None:
                if not lr.kwargs and len(lr.args) in layouts:
                    continue
            elif id(spec) in layouts:
                continue
        if lr.kind != CALL:
            if lr.kind != PARAM and lr.kind != ENV:
                return False
            has_values = True  # (resolved before any task runs: run_first)
            continue
        # a policy is kept here as the engines keep it: conditions, ordering (``.after``
        # lazies are children, so they run first), a retry or timeout made in line, and
        # any other (a cache, an async call's retry) through the protocol, as a task
        if lr.policy is not None and not inline_policy(lr.policy, task):
            has_async = True  # (started in the engines' order, as an async call is)
        if layouts is None:
            kind = _task_kind(task, needs, indirect)
            if kind is None:
                return False
            layouts = known[id(task)] = set()
            has_async = has_async or kind
        if spec is None:
            last_shape = lr.shape
            layout = (len(lr.args), tuple(lr.kwargs)) if lr.kwargs else (len(lr.args), ())
            if not lr.kwargs:
                layouts.add(len(lr.args))
        elif id(spec) in ids or _plain_containers(spec):
            layout = (len(spec[0]), spec[1])
            layouts.add(id(spec))
        else:
            return False
        if layout not in task._checked:
            task.check_call(*layout)
        last, last_spec = task, spec
    if has_values:
        return _ASYNC_VALUES if has_async else _VALUES
    return _ASYNC if has_async else True


def _task_kind(task, needs: list, indirect: set) -> bool | None:
    """None when this tier cannot take calls of ``task`` (``_task_ok``), else whether
    they may wait (async, or through ``calls.invoke``: then ``task`` joins
    ``indirect`` and the resources it injects ``needs``)."""
    if not _task_ok(task):
        return None
    if not direct(task):  # (injecting, or async with a limit)
        indirect.add(id(task))
        needs.extend((r, task.name) for _, r in task.injects)
        return True
    return task.is_async


def _plain_containers(spec) -> bool:
    """Are a call's specs literals, lazies and containers of those (no injection)?"""
    stack = [spec[0], spec[2]]  # sequences of specs still to look at
    while stack:
        for s in stack.pop():
            if s is None:
                continue
            kind = s[0]
            if kind == "I":
                return False
            if kind != "L":
                stack.append(s[2])
    return True


def _evaluation_order(root) -> list:
    """The distinct nodes under ``root``, each after its children: a tree's canonical
    order reversed (the VM's order of a tree of sync calls), or ``_post_order``."""
    if root.tree:
        order = canonical_nodes(root, True)
        order.reverse()
        return order
    return _post_order(root)


def _post_order(root) -> list:
    """The distinct nodes under ``root``, each after its children, children in order
    of first reference (iterative: the stack holds each open node with an iterator
    over its children still to look at)."""
    order = []
    seen = {root}
    see = seen.add
    stack = [(root, iter(root.children))]
    push, pop, append = stack.append, stack.pop, order.append
    while stack:
        n, children = stack[-1]
        for c in children:
            if c not in seen:
                see(c)
                push((c, iter(c.children)))
                break
        else:
            pop()
            append(n)
    return order


def _arguments(lr, values: dict) -> tuple:
    """(args, kwargs) of call ``lr`` with each lazy replaced by its value."""
    spec = lr.spec
    if spec is None or not lr.children:  # (a flat call, or one under a policy)
        return lr.args, lr.kwargs
    lazy = _LAZY_TYPES
    if id(spec) in _POS_SPEC_IDS or (lr.policy is not None and _plain_bare(lr)):
        args = [values[a] if type(a) in lazy else a for a in lr.args]
        if not lr.kwargs:
            return args, None
        return args, {k: values[a] if type(a) in lazy else a for k, a in lr.kwargs.items()}
    children = [values[c] for c in lr.children]
    entry = _WRITTEN.get(id(spec))
    if entry is None or entry[0] is not spec:
        entry = _written(spec)
    if entry[1] is not None:  # one level of lists, tuples and dicts: written out
        return entry[1](lr.lits, children)
    lits = iter(lr.lits)
    pos, kwnames, kws, _ = spec
    built = [_build(s, lits, children) for s in pos + kws]
    return built[:len(pos)], dict(zip(kwnames, built[len(pos):]))


def _plain_bare(lr) -> bool:
    """Is policy copy ``lr`` a copy of a plain call (literals and distinct lazies), so
    that its arguments are its own with each lazy replaced?"""
    bare = _BARE.get(lr.shape)
    return bare is not None and id(bare[1]) in _POS_SPEC_IDS


_WRITTEN: dict = {}  # id(spec) -> (the spec, its written arguments or None)
_WRITTEN_LIMIT = 4096  # entries; then emptied


def _written(spec) -> tuple:
    """(``spec``, the function building a call's arguments from its literals and its
    children's values, or None): written for a spec without a policy whose containers
    are one level deep (``template.written_arguments``), remembered by the spec's id
    for an interned one (the entry keeps the spec, so its id is not reused)."""
    layout = None if spec[3] is not None else layout_of(spec[0] + spec[2])
    if layout is None:
        return spec, None
    entry = (spec, written_arguments(layout, spec))
    if len(_WRITTEN) >= _WRITTEN_LIMIT:
        _WRITTEN.clear()
    _WRITTEN[id(spec)] = entry
    return entry


def _build(spec, lits, children):
    """The value of one argument spec: literals from ``lits`` in slot order, children's
    values by index, containers rebuilt with their type (iterative, any depth)."""
    if spec is None:
        return next(lits)
    if spec[0] == "L":
        return children[spec[1]]
    stack = []  # the enclosing containers: (spec, values so far, items left)
    s, done, items = spec, [], iter(spec[2])
    while True:
        for item in items:
            if item is None:
                done.append(next(lits))
            elif item[0] == "L":
                done.append(children[item[1]])
            else:  # a nested container: build it, then go on with this one
                stack.append((s, done, items))
                s, done, items = item, [], iter(item[2])
                break
        else:
            value = dict(zip(s[1], done)) if s[0] == "D" else (
                done if s[1] is list else s[1](done))
            if not stack:
                return value
            s, done, items = stack.pop()
            done.append(value)


def _skipped_input(lr, values: dict) -> bool:
    for c in lr.children:
        if values[c] is SKIPPED:
            return True
    return False


class _FirstRun:
    """The state of one first-tier evaluation (see module docstring)."""

    __slots__ = ("ctx", "root", "follow", "indirect", "values", "started", "skips", "pacer",
                 "budget")

    def __init__(self, ctx, root, follow, indirect: set):
        self.ctx = ctx
        self.root = root
        self.follow = follow
        self.indirect = indirect  # ids of the tasks whose calls go through calls.invoke
        self.values: dict = {}  # node -> value, or the task computing it
        self.started: set = set()  # ids of nodes whose value is a task still to read
        self.skips = False  # a task's value was SKIPPED: consumers check their inputs
        self.pacer = Pacer(ctx.yield_interval)
        self.budget = self.pacer.batch

    async def go(self, order: list):
        """Run ``order`` (each node after its children) in turn, until a node needs a
        task's value that is not there yet: the rest then runs by readiness."""
        values, started, indirect = self.values, self.started, self.indirect
        links, literal = _LINK_SPEC_IDS, _LITERAL_LINK_SPEC_IDS
        plain = _POS_SPEC_IDS
        lazy = _LAZY_TYPES
        k = -1
        last = len(order) - 1
        while k < last:
            k += 1
            lr = order[k]
            if started and lr.children and not self._read_finished(lr):
                if k == last:  # the last node alone: readiness has nothing to order
                    return await self._last_when_ready(lr)
                return await self.by_readiness(order[k:])
            spec = lr.spec
            if ((spec is None or id(spec) in plain) and not self.skips
                    and not lr.task.is_async and id(lr.task) not in indirect):
                # the commonest nodes, sync calls whose arguments are literals and lazies:
                # flat calls (every argument a literal), chain links (``step(x)``,
                # ``step(x, scale=2)``: the one lazy is the first argument) and the rest
                task = lr.task
                fn = task.fn
                kw = lr.kwargs  # (often empty)
                try:
                    if spec is None:
                        v = fn(*lr.args, **kw) if kw else fn(*lr.args)
                    elif id(spec) in links:
                        v = fn(values[lr.args[0]], **kw) if kw else fn(values[lr.args[0]])
                    elif kw:
                        args, kw = _arguments(lr, values)
                        v = fn(*args, **kw)
                    elif len(lr.args) == 2:  # (a DAG's commonest node)
                        a, b = lr.args
                        v = fn(values[a] if type(a) in lazy else a,
                               values[b] if type(b) in lazy else b)
                    else:
                        v = fn(*[values[a] if type(a) in lazy else a for a in lr.args])
                except BaseException as exc:
                    failed(self.ctx, task, exc)
                    raise
                if k < last:  # flat calls and links after this one: one inner loop
                    above = order[k + 1].spec
                    if above is None or id(above) in links or id(above) in literal:
                        k, lr, v = self._sync_run(order, k, lr, v)
                if type(v) in lazy:
                    v = self._continue(lr, v)
                    if lr is self.root:
                        return v
            else:
                v = self.call(lr)
                if v is _ROOT_TAIL_CALL:
                    return values.pop(lr)
            values[lr] = v
            self.budget -= 1
            if not self.budget:
                self.budget = await self.pacer.batch_done()
        return await self._value_of(self.root)

    def _sync_run(self, order: list, k: int, lr, v) -> tuple:
        """Go on after ``lr`` (at ``k``, value ``v``) with the nodes after it in ``order``
        while each is a sync flat call (a fan-out's items, a pipeline's first stage) or
        a chain link on the node just run (``step(x)``, ``step(x, scale=2)``): (k, lr,
        v) of the last one run. A value another node reads later is kept; a link's
        child read by that link alone is not. Paced by the budget; a call returning a
        lazy ends the loop (the caller goes on)."""
        budget = self.budget
        last = len(order) - 1
        values = self.values
        links, literal, lazy = _LINK_SPEC_IDS, _LITERAL_LINK_SPEC_IDS, _LAZY_TYPES
        task = fn = None  # the last task met (a fan-out or a run repeats it)
        while budget > 1 and k < last and type(v) not in lazy:
            above = order[k + 1]
            spec = above.spec
            if spec is None:
                link = False
            elif (id(spec) in links or id(spec) in literal) and above.args[0] is lr:
                link = True
            else:
                break
            if above.task is not task:
                task = above.task
                if task.is_async or id(task) in self.indirect:
                    break
                fn = task.fn
            if not link or lr.uses != 1:  # read later (a shared node, a fan-in's item)
                values[lr] = v
            k += 1
            lr = above
            kw = lr.kwargs
            try:
                if not link:
                    v = fn(*lr.args, **kw) if kw else fn(*lr.args)
                elif len(lr.args) == 1:
                    v = fn(v, **kw) if kw else fn(v)
                else:  # a link with positional literals (``step(x, 1)``)
                    v = fn(v, *lr.args[1:], **kw)
            except BaseException as exc:
                failed(self.ctx, task, exc)
                raise
            budget -= 1
        self.budget = budget
        return k, lr, v

    def call(self, lr):
        """Node ``lr``'s value, or the task computing it (in ``started``), or
        ``_ROOT_TAIL_CALL`` (the root's tail call is then in ``values``)."""
        ctx, values, task = self.ctx, self.values, lr.task
        if self.skips and _skipped_input(lr, values):
            if not task.container_target:  # (the run's target takes None for it)
                return skipped(ctx, task, "upstream")
            for key, v in values.items():  # (no key added or removed: safe)
                if v is SKIPPED:
                    values[key] = None
        if lr.policy is not None and lr.policy.conds and not self._conditions_hold(lr):
            self.skips = True  # (its consumers check their inputs from now on)
            return skipped(ctx, task, "condition")
        args, kwargs = (lr.args, lr.kwargs) if lr.spec is None else _arguments(lr, values)
        if _through_invoke(lr):
            # the protocol's general path, as the engines start it: in line when nothing
            # of it waits (calls.invoke_now), else its first step now, and a task read
            # at first use when it waits
            kwargs = kwargs or {}
            call = _Invocation(task, lr.policy, args, kwargs)
            made = invoke_now(ctx, call, args, kwargs, None)
            if made is None:
                v = start_eagerly(ctx, self._invoked(call, args, kwargs))
                if type(v) is Task:
                    self.started.add(lr)
                return v
            v = made[0]
        elif task.is_async:  # started now: finished, or read at first use (as the engines do)
            v = start_async_quiet(ctx, task, args, kwargs or {}, self.follow)
            if type(v) is Task:
                self.started.add(lr)
                return v
        elif lr.policy is not None:  # attempts and timeout in line (it notes a failure)
            v = call_inline(ctx, task, task.fn, args, kwargs, lr.policy, None)[0]
        else:
            try:  # (free in Python 3.11 until something raises)
                v = task.fn(*args, **kwargs) if kwargs else task.fn(*args)
            except BaseException as exc:
                failed(ctx, task, exc)
                raise
        if type(v) in _LAZY_TYPES:
            v = self._continue(lr, v)
            if lr is self.root:
                values[lr] = v
                return _ROOT_TAIL_CALL
        return v

    async def _invoked(self, call: _Invocation, args: tuple, kwargs: dict):
        """The final value of ``call`` made through ``calls.invoke`` (its tail call
        followed by the engine)."""
        follow = self.follow
        value, _ = await invoke(self.ctx, call, args, kwargs,
                                lambda lazy, parent=None: follow(lazy), None)
        if type(value) in _LAZY_TYPES:
            value = await follow(value)
        return value

    def _conditions_hold(self, lr) -> bool:
        """Are the ``.run_if`` conditions of ``lr`` all true (lazies by their values)?"""
        values = self.values
        for c in lr.policy.conds:
            if not (values[c] if type(c) in _LAZY_TYPES else c):
                return False
        return True

    def _continue(self, lr, v):
        """A node's tail call: the root's goes back to the engine; an inner one runs in
        a task of its own (overlapping the rest), read at first use."""
        if lr is self.root:
            return v
        self.started.add(lr)
        return self.ctx.spawn(self.follow(v))

    def _read_finished(self, lr) -> bool:
        """Take the values of ``lr``'s started children if all have finished; False when
        one is still running."""
        started, values = self.started, self.values
        for c in lr.children:
            if c in started and not values[c].done():
                return False
        for c in lr.children:
            if c in started:
                self._take(c, values[c].result())
        return True

    def _take(self, key: int, v) -> None:
        self.started.discard(key)
        self.values[key] = v
        self.skips = self.skips or v is SKIPPED

    async def _value_of(self, lr):
        key = lr
        v = self.values[key]
        if key in self.started:
            v = v.result() if v.done() else await v
            self._take(key, v)
        return v

    async def _last_when_ready(self, lr):
        """The value of ``lr``, the last node of the order (the root), run once its
        started children have finished: each is read in turn (the others go on
        meanwhile), as ``by_readiness`` would with nothing else left to run."""
        values, started = self.values, self.started
        for c in lr.children:
            key = c
            if key in started:
                t = values[key]
                self._take(key, t.result() if t.done() else await t)
        v = self.call(lr)
        if v is _ROOT_TAIL_CALL:
            return values.pop(lr)
        values[lr] = v
        return await self._value_of(lr)

    async def by_readiness(self, rest: list):
        """Run ``rest`` as its inputs become ready: a node waiting on a task waits while
        the others run; when none can, the oldest started task is awaited."""
        values, started = self.values, self.started
        position = {n: k for k, n in enumerate(rest)}
        waiting = [0] * len(rest)
        dependents: list = [[] for _ in rest]
        on_task: dict = {}  # started node -> positions waiting on it
        for k, lr in enumerate(rest):
            for c in lr.children:
                j = position.get(c)
                if j is not None:
                    dependents[j].append(k)
                elif c in started:
                    on_task.setdefault(c, []).append(k)
                else:
                    continue
                waiting[k] += 1
        pending = deque(key for key in values if key in started)  # oldest first
        ready = deque(k for k in range(len(rest)) if not waiting[k])

        def release(ks):
            for d in ks:
                waiting[d] -= 1
                if not waiting[d]:
                    ready.append(d)

        while ready or pending:
            if not ready:
                key = pending.popleft()
                if key in started:
                    t = values[key]
                    self._take(key, t.result() if t.done() else await t)
                    release(on_task.pop(key, ()))
                continue
            k = ready.popleft()
            lr = rest[k]
            v = self.call(lr)
            if v is _ROOT_TAIL_CALL:
                return values.pop(lr)
            values[lr] = v
            if lr in started:
                pending.append(lr)
                on_task[lr] = dependents[k]
            else:
                release(dependents[k])
            self.budget -= 1
            if not self.budget:
                self.budget = await self.pacer.batch_done()
        return await self._value_of(self.root)


_ROOT_TAIL_CALL = object()


async def run_first(ctx, root, follow):
    """Evaluate ``root`` from its lazies: its value, a lazy (the root's own tail call,
    for the engine to go on with), or ``NOT_TAKEN`` when nothing ran and the engine
    must run the workflow. ``follow(lazy)`` evaluates an inner node's tail call."""
    order = _evaluation_order(root)
    needs: list = []
    indirect: set = set()
    taken = _all_taken(order, needs, indirect)
    if not taken:
        return NOT_TAKEN
    if needs:  # an unknown resource fails the run before any task runs, as on the engines
        ctx.resources.check(needs)
    if (taken is _ASYNC or taken is _ASYNC_VALUES) and root.tree:
        order = _post_order(root)  # async calls start in the engines' order (first first)
    first = _FirstRun(ctx, root, follow, indirect)
    if taken is _VALUES or taken is _ASYNC_VALUES:
        # Params and Envs: every one resolved before any task runs (a missing or bad
        # parameter fails the run first, as on the engines); the calls read them
        calls = []
        values = first.values
        for lr in order:
            if lr.kind == CALL:
                calls.append(lr)
            else:
                values[lr] = ctx.value_of(lr.task)
        order = calls
    return await first.go(order)


def tiered(ctx, root, evaluate):
    """The awaitable value of the run of ``root``: on this tier when it ``wants`` it,
    else (or when it hands the workflow back) ``evaluate(root)``, the engine's own
    evaluation, which also evaluates inner tail calls here. A known structure goes
    straight to the engine: no coroutine frame between (every run pays for one)."""
    if wants(ctx, root):
        return _first_then_engine(ctx, root, evaluate)
    return evaluate(root)


async def _first_then_engine(ctx, root, evaluate):
    value = await run_first(ctx, root, evaluate)
    if value is not NOT_TAKEN:
        if type(value) not in _LAZY_TYPES:
            return value
        root = value  # the root's tail call
    return await evaluate(root)
