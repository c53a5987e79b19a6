"""The workflow language: ``Task``, ``LazyResult`` and the policies on a call.

Calling a task builds a ``LazyResult``: the call's task, its arguments as
given, and the *structure* of the call, computed once, here, when the object
is created, so that nothing ever walks the tree again just to learn its shape:

``spec``
    How each argument is built: ``None`` for a literal (an input slot), or a
    small tuple for a lazy child, a container holding lazies, an injected
    resource (see ``ArgSpec`` below). ``None`` for a *flat* call, one whose
    arguments are all literals and which has no policy: the common case.
``lits``
    The literal values, in the order their slots appear in ``spec``.
``children``
    The distinct lazy children (arguments, conditions, ``after``), in order of
    first reference; ``spec`` refers to them by index.
``shape``
    An int naming the structure of the whole subtree: task identity, spec,
    policies and the children's shapes. Equal shapes mean equal structure;
    structures that differ never share a shape (ids are never reused).
``tree``
    True when no node is referenced twice inside the subtree. Then ``shape``
    alone is the template key (a tail call costs one dict lookup). Sharing
    (``add(x, x)``) makes it False and the template key is computed by one
    walk instead (see ``template.py``).

``uses`` counts the parents created so far that reference the node. A node
shared inside a subtree was referenced by two parents, and the later of the
two saw ``uses >= 2`` when it was created, so ``tree`` is False from it up to
the root. Policy copies (``.run_if`` and friends) share their original's
children without counting a use; they set ``copied`` on the original, and a
parent of a copied node (or a copy of a used one) is conservatively not a tree.

A ``LazyResult`` is immutable to users; ``uses`` and ``copied`` are the
only fields that change after creation, and only by this module.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import operator
import pickle
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import attrs

from . import policy_checks as checks
from .store import check_cache_policy

# ---------------------------------------------------------------------------
# Types for type checkers (nothing here runs per call: annotations are strings)

P = ParamSpec("P")  #: a task's parameters, kept from its function
R = TypeVar("R")  #: a task's value
R_co = TypeVar("R_co", covariant=True)  #: a lazy call's value

if TYPE_CHECKING:
    # A lazy value stands in for the value it becomes: type checkers accept a
    # LazyResult (a task call, a Param) or a Router wherever a task's parameter
    # takes a plain value. Python's types cannot say "T or a lazy T" for each
    # parameter of a signature, so a lazy argument is not checked against its
    # parameter's type; literal arguments, arity and keywords are.
    StandIn = Any
else:
    class StandIn:
        """At run time, an empty base with no fields and no methods."""

        __slots__ = ()

# ---------------------------------------------------------------------------
# Shape interning: structure -> small int, ids never reused.

_SHAPES: dict[tuple, int] = {}  # the young generation of the intern table
_OLD_SHAPES: dict[tuple, int] = {}  # the generation before it
_SHAPE_LIMIT = 1 << 18  # entries of one generation
_ONE_LIMIT = 1 << 16  # entries of a task's chain-link shape table (Task._one)
_next_shape = itertools.count(1).__next__
_next_run_block = itertools.count(1).__next__
_RUN_SPAN = 1 << 32  # links one run shape block can number


def _link_shape(one: dict, key, run: bool) -> int:
    """The shape of a chain link missing from its task's table ``one`` (stored there
    under ``key``). When the link below is the same task's (``run``), a run of links
    starts here: it gets a block of shapes, and link ``d`` of the same task above it
    has this shape less ``d`` (``Task.__call__``), so a chain of any length needs two
    table entries and rebuilding it gives the same shapes (the blocks are negative,
    ``_RUN_SPAN`` apart, never reused). Otherwise (a link over another task's node,
    as in ``a(b(a(x)))``) it gets a plain shape id: a small int, cheaper to make,
    hash and store than a block."""
    if len(one) >= _ONE_LIMIT:
        one.clear()  # bounded; ids are never reused, so no wrong hit
    shape = one[key] = -_next_run_block() * _RUN_SPAN if run else _next_shape()
    return shape
# Keys of the common shapes hold only ints and strings (a task by its ``uid``,
# never reused), so the garbage collector stops tracking them.
_next_task_uid = itertools.count(1).__next__


def intern_shape(key: tuple) -> int:
    """The id of structure ``key``. The table keeps two generations of at most
    ``_SHAPE_LIMIT`` entries: a key met again in the older one moves to the young one
    with its id, and when the young one fills, it becomes the old one (the oldest
    entries go). So a structure in use keeps its id, hence its cached template;
    only one unused for a whole generation is forgotten (then it gets a new id: a
    cache miss, never a wrong hit)."""
    sid = _SHAPES.get(key)
    if sid is None:
        sid = _OLD_SHAPES.pop(key, None)
        if sid is None:
            sid = _next_shape()
        if len(_SHAPES) >= _SHAPE_LIMIT:
            _OLD_SHAPES.clear()
            _OLD_SHAPES.update(_SHAPES)
            _SHAPES.clear()
        _SHAPES[key] = sid
    return sid


# ---------------------------------------------------------------------------
# Node kinds. Engines dispatch on these; user calls are CALL.

CALL = 0  #: a task invocation
PARAM = 1  #: a ``Param`` value, resolved from the run's parameters
ENV = 2  #: an ``Env`` value, read from the environment when the run starts
ROUTE = 3  #: a ``Router`` argument: picks a route when its selector is known


# ---------------------------------------------------------------------------
# Policies (structure: part of the shape and of the compiled form)


@attrs.frozen(slots=True)
class Retry:
    """``.with_retry`` settings. ``max_attempts`` counts every attempt."""

    max_attempts: int = 3
    delay: float = 0.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: tuple = (Exception,)

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), before jitter."""
        if not self.delay:
            return 0.0
        try:
            wait = self.delay * self.backoff ** (attempt - 1)
        except OverflowError:  # a long retry with a large backoff: capped below, if at all
            wait = float("inf")
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return wait


@attrs.frozen(slots=True)
class CacheSpec:
    """``.with_cache`` settings: ``key`` (None, a str, or a callable), ``store``, ``ttl``."""

    key: Any = None
    store: Any = attrs.field(default=None, hash=False)  # (a store need not be hashable)
    ttl: float | None = None


@attrs.frozen(slots=True)
class Policy:
    """Every policy of one call. ``conds`` and ``after`` hold values or lazies."""

    conds: tuple = ()  # run_if conditions; all must hold
    after: tuple = ()  # lazies that must finish first (ordering only)
    retry: Retry | None = None
    timeout: float | None = None
    cache: CacheSpec | None = None


EMPTY_POLICY = Policy()


# ---------------------------------------------------------------------------
# Argument markers


@attrs.frozen(slots=True, eq=False)
class Inject:
    """A resource to inject by name: made by ``inject()`` (see resources.py)."""

    name: str


# ---------------------------------------------------------------------------
# Tasks


def _is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn)


def _check_returns(fn: Callable, name: str) -> None:
    """``TypeError`` for a generator function: a task's call has one value."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        raise TypeError(
            f"task {name!r} is {kind} function (it yields): tasks must return a value. "
            f"Return a list instead, or, for set-up and tear-down around tasks, make it "
            f"a @resource and inject it."
        )


def _check_concurrency(concurrency: object, name: str) -> int:
    """``concurrency=`` is a positive int (not a bool): else ``TypeError`` naming the task."""
    if type(concurrency) is not int or concurrency < 1:
        raise TypeError(f"task {name!r}: concurrency must be a positive int or None, "
                        f"got {type(concurrency).__name__} {concurrency!r}")
    return concurrency


class Task(Generic[P, R]):
    """A function usable in workflows. Calling it builds a ``LazyResult``.

    A task is identified by the object, never by its name. For type checkers
    it is a ``Task[P, R]``: the function's parameters ``P`` and its value
    ``R`` (a coroutine function's awaited value; for a function annotated
    ``-> R | LazyResult[R]``, ``R``), and a call gives ``LazyResult[R]``.
    """

    internal = False  # internal tasks (map expansion) emit no events
    reports_skips = False  # ...except TaskSkipped when this is True
    container_target = False  # the run's container target: skipped lazies in it become None
    gathers = False  # internal: its value is its arguments (remote values pass through it)
    counts_as = 1  # user calls a node of this task stands for (a run of links: repeat.py)
    folded = False  # a node of this task stands for other calls (batch.py, repeat.py)
    concurrency = None  # at most this many invocations at once within a run (None: no limit)
    local = False  # always runs in the driver's process, whatever the executor
    folded_injects = ()  # resources the calls a folded node stands for inject (batch.py)

    def __init__(self, fn: Callable[P, Any], name: str | None = None, offload: bool = False,
                 concurrency: int | None = None, local: bool = False):
        if not callable(fn):
            raise TypeError(f"@task expects a function, got {type(fn).__name__} {fn!r}")
        self.fn = fn
        self.uid = _next_task_uid()  # unique per process, never reused
        self.name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
        _check_returns(fn, self.name)
        self.is_async = _is_async(fn)
        if offload and self.is_async:
            raise TypeError(
                f"task {self.name!r}: offload=True runs a sync function in a thread; "
                f"{self.name!r} is 'async def' already. Remove offload=True."
            )
        self.offload = bool(offload)
        if concurrency is not None:
            self.concurrency = _check_concurrency(concurrency, self.name)
        if type(local) is not bool:
            raise TypeError(f"task {self.name!r}: local must be True or False, got {local!r}")
        if local:
            self.local = True
        self._flat: dict = {}  # (nargs) or (nargs, kwnames) -> shape of a flat call
        self._flat1 = None  # the shape of a flat call with one argument (the commonest)
        self._signature = None
        self._injects = None
        self._checked: set = set()  # (nargs, kwnames) layouts that bind
        # child shape -> shape of a call with that one lazy argument: the intern table
        # of that structure (its ids come straight from the shape counter)
        self._one: dict = {}
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            try:
                setattr(self, attr, getattr(fn, attr))
            except AttributeError:
                pass
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # -- calling ---------------------------------------------------------
    # `self, /`: positional-only, so a keyword argument may be named 'self'
    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> LazyResult[R]:
        # The two hottest ways to build a graph are inlined here: a flat call
        # (every argument a plain literal, positional or keyword: each iteration of
        # a tail loop) and a chain link (one lazy argument). Everything else goes to
        # _make* (or _literal_link).
        if kwargs:
            if args and type(args[0]) in _LAZY_TYPES:
                return self._literal_link(args[0], args, kwargs)
            lits = args + tuple(kwargs.values())
            kinds = _ARG_KIND
            for a in lits:
                if type(a) in kinds:  # a lazy, a container or a marker somewhere
                    return _make_plain(self, args, kwargs, lits)
            # a flat call with keywords (``fetch(url, timeout=5)``, a keyword tail call)
            shape = self._flat.get((len(args), tuple(kwargs)))
            if shape is None:
                shape = self._flat_shape((len(args), tuple(kwargs)))
        elif len(args) == 1:
            a = args[0]
            t = type(a)
            if t in _LAZY_TYPES:
                # a chain link: its shape is interned per task by the child's shape
                a.uses += 1
                shape = a.shape
                if shape < 0 and a.task is self and a.spec is _ONE_LAZY_SPEC:
                    shape -= 1  # one more link of a run (_link_shape)
                else:
                    one = self._one
                    shape = one.get(shape)
                    if shape is None:  # the first link of this task on this base
                        shape = _link_shape(one, a.shape, a.task is self
                                            and a.spec is _ONE_LAZY_SPEC)
                lr = _new_lazy(LazyResult)
                lr.task = self
                lr.args = args
                lr.kwargs = _NO_KWARGS
                lr.lits = ()
                lr.shape = shape
                lr.spec = _ONE_LAZY_SPEC
                lr.children = args
                lr.tree = a.uses == 1 and a.tree and not a.copied
                lr.uses = 0
                lr.copied = False
                lr.policy = None
                return lr
            if t in _ARG_KIND:  # a container or a marker
                return _make_lists(self, args)
            shape = self._flat1
            if shape is None:
                shape = self._flat1 = self._flat_shape(1)
            lits = args
        else:
            kinds = _ARG_KIND
            for a in args:
                if type(a) in kinds:
                    if len(args) == 2:
                        return _make_pair(self, args)
                    if type(args[0]) in _LAZY_TYPES:  # maybe ``step(x, 1, 2)``
                        return self._literal_link(args[0], args, _NO_KWARGS)
                    return _make_plain(self, args, _NO_KWARGS)
            shape = self._flat.get(len(args))
            if shape is None:
                shape = self._flat_shape(len(args))
            lits = args
        lr = _new_lazy(LazyResult)  # _node(), inlined: this is the hot path's allocation
        lr.task = self
        lr.args = args
        lr.kwargs = kwargs or _NO_KWARGS
        lr.lits = lits
        lr.shape = shape
        lr.spec = None
        lr.children = ()
        lr.tree = True
        lr.uses = 0
        lr.copied = False
        lr.policy = None
        return lr

    def _literal_link(self, a, args: tuple, kwargs: dict) -> LazyResult:
        """A link with literals: ``step(x, scale=2)``, ``step(x, 1)``: the first argument
        lazy ``a``, every other one (positional or keyword) a plain literal. Its shape is
        interned per task by (layout, the child's shape), as for a chain link, and a
        run of such links of one task and layout numbers its shapes the same way
        (``_link_shape``): no global table entry per link."""
        kinds = _ARG_KIND
        if len(args) == 1:
            lits = kwargs.values()  # a view of the call's own dict (never changed): no copy
            for v in lits:
                if type(v) in kinds:
                    return _make_plain(self, args, kwargs)
            layout = kwnames = tuple(kwargs)
        else:
            lits = args[1:]
            for v in lits:
                if type(v) in kinds:
                    return _make_plain(self, args, kwargs)
            if kwargs:
                for v in kwargs.values():
                    if type(v) in kinds:
                        return _make_plain(self, args, kwargs)
                lits += tuple(kwargs.values())
            kwnames = tuple(kwargs) if kwargs else ()
            layout = (len(args), kwnames)
        spec = _LINK_LAYOUTS.get(layout)
        if spec is None:
            spec = _LINK_LAYOUTS[layout] = _literal_link_spec(len(args), kwnames)
        a.uses += 1
        shape = a.shape
        same = a.spec is spec and a.task is self
        if shape < 0 and same:
            shape -= 1  # one more link of a run (_link_shape)
        else:
            one = self._one
            key = (len(args), kwnames, shape)
            shape = one.get(key)
            if shape is None:  # the first link of this task and layout on this base
                shape = _link_shape(one, key, same)
        lr = _new_lazy(LazyResult)  # _node(), inlined: a link chain's allocation
        lr.task = self
        lr.args = args
        lr.kwargs = kwargs
        lr.lits = lits
        lr.shape = shape
        lr.spec = spec
        lr.children = args if len(args) == 1 else (a,)
        lr.tree = a.uses == 1 and a.tree and not a.copied
        lr.uses = 0
        lr.copied = False
        lr.policy = None
        return lr

    def _flat_shape(self, key) -> int:
        """The shape of a flat call with argument layout ``key`` (nargs, or (nargs, kwnames))."""
        shape = self._flat[key] = intern_shape((self.uid, key))
        return shape

    def map(self, /, *iterables: Iterable[Any],
            **kw_iterables: Iterable[Any]) -> LazyResult[list[R]]:
        """One call per element, zipped; the value is the list of results in order.

        An iterator (a generator, ``iter(...)``, ``zip(...)``) can be read only
        once: it is read into a list here, so every run of the map sees it whole.
        """
        iterables = tuple([_readable_again(it) for it in iterables])
        kw_iterables = {k: _readable_again(it) for k, it in kw_iterables.items()}
        return MapTask.of(self, None)(*iterables, **kw_iterables)

    # -- signature facts, computed once ---------------------------------
    @property
    def signature(self) -> inspect.Signature | None:
        """The function's signature, or None when Python cannot tell it."""
        if self._signature is None:
            try:
                self._signature = inspect.signature(self.fn)
            except (TypeError, ValueError):
                self._signature = False
        return self._signature or None

    @property
    def injects(self) -> tuple[tuple[str, str], ...]:
        """(parameter, resource name) for each parameter whose default is ``inject(...)``."""
        if self._injects is None:
            sig = self.signature
            found = []
            if sig is not None:
                for p in sig.parameters.values():
                    if type(p.default) is Inject:
                        found.append((p.name, p.default.name))
            self._injects = tuple(found)
        return self._injects

    def check_call(self, nargs: int, kwnames: tuple) -> None:
        """Raise ``TypeError`` naming the task when the call cannot bind (cached per layout)."""
        checked = self._checked
        if (nargs, kwnames) in checked:
            return
        sig = self.signature
        if sig is None:
            return
        try:
            sig.bind(*range(nargs), **dict.fromkeys(kwnames))
        except TypeError as exc:
            raise TypeError(
                f"task {self.name!r} cannot take this call: {exc} "
                f"(signature: {self.name}{sig})"
            ) from None
        checked.add((nargs, kwnames))


def _readable_again(iterable):
    """``iterable``, or a list of its items when it is a one-shot iterator."""
    if type(iterable) in _ARG_KIND or not isinstance(iterable, Iterator):
        return iterable
    return list(iterable)


def derived_task(task: Task, table: str, key, make: Callable[[], Task], keep: int = 0) -> Task:
    """The internal task ``make()`` builds from ``task`` for ``key``, made once and kept
    in ``task``'s attribute ``table`` (equal keys: one object, hence one shape and one
    template). ``keep`` bounds the table (cleared when full; 0: unbounded)."""
    made = task.__dict__.setdefault(table, {})
    t = made.get(key)
    if t is None:
        if keep and len(made) >= keep:
            made.clear()  # a new object only costs a new template
        t = made[key] = make()
    return t


class MapTask(Task):
    """The internal task behind ``task.map``: it expands into one call per element.

    Its value is a tail call to a gather of the item calls, so both engines
    run map natively with the machinery they already have for tail calls; in a
    run nobody listens to, a map of plain literals makes its items' calls here
    instead, as their batch would (``batch.items_here``).
    ``item_policy`` (retry, timeout, cache) is applied to each item.
    """

    internal = True
    reports_skips = True  # a skipped map is reported (its items never exist)

    @classmethod
    def of(cls, task: Task, item_policy: Policy | None) -> MapTask:
        """The map task of ``task`` with ``item_policy`` (one per pair, kept on the task)."""
        return derived_task(task, "_maps", item_policy, lambda: cls(task, item_policy))

    def __init__(self, task: Task, item_policy: Policy | None):
        self.task = task
        self.item_policy = item_policy
        super().__init__(self._expand, name=f"{task.name}.map")

    def check_literal_lengths(self, args: tuple, kwargs: dict) -> None:
        """``ValueError`` when literal sized iterables differ in length (before any task runs)."""
        sized = [(f"argument {i}", it) for i, it in enumerate(args)] + list(kwargs.items())
        lengths = [(k, len(it)) for k, it in sized
                   if type(it) in (list, tuple, dict, set, range, str, bytes)
                   and not _contains_special(it)]
        if len({n for _, n in lengths}) > 1:
            raise ValueError(f"{self.task.name}.map needs iterables of one length, got "
                             + ", ".join(f"{k}: {n}" for k, n in lengths))

    def _expand(self, /, *iterables, **kw_iterables):
        cols = [list(it) for it in iterables]
        kw_cols = {k: list(v) for k, v in kw_iterables.items()}
        lengths = {len(c) for c in cols} | {len(c) for c in kw_cols.values()}
        if len(lengths) > 1:
            named = [f"argument {i}: {len(c)}" for i, c in enumerate(cols)]
            named += [f"{k}: {len(c)}" for k, c in kw_cols.items()]
            raise ValueError(
                f"{self.task.name}.map needs iterables of one length, got " + ", ".join(named)
            )
        n = lengths.pop() if lengths else 0
        batch = items_here(self, cols, kw_cols)
        if batch is not None:  # nothing for the items to be nodes for: run here
            return batch.run_rows(rows_of(cols, kw_cols))
        if kw_cols:
            calls = (_flat_keyword_calls(self.task, cols, kw_cols)
                     or [self.task(*(c[i] for c in cols), **{k: c[i] for k, c in kw_cols.items()})
                         for i in range(n)])
        elif cols:
            calls = list(map(self.task, *cols))
        else:
            calls = [self.task() for _ in range(n)]
        policy = self.item_policy
        if policy is None:
            return _collect(calls)
        if self.inline_items and len(calls) >= BATCH_MIN:
            # plain items under a retry or timeout made in line: one batch node
            batch = batch_of(calls, _collect, policy)
            if batch is not None:
                return _collect(batch)
        return _collect([call._with_policy(policy) for call in calls])

    @property
    def inline_items(self) -> bool:
        """Can this map's items run in a batch, each under ``item_policy`` in line?"""
        from .calls import direct, inline_policy

        p = self.item_policy
        return (not p.conds and not p.after and inline_policy(p, self.task)
                and direct(self.task) and not self.task.internal)

    def check_call(self, nargs: int, kwnames: tuple) -> None:
        self.task.check_call(nargs, kwnames)


def _flat_keyword_calls(task_obj: Task, cols: list, kw_cols: dict) -> list | None:
    """The item calls of a map with keyword iterables when every element is a plain
    literal (no lazy, container or marker; checked column by column at C speed): what
    calling ``task_obj`` for each item builds (``Task.__call__``'s flat call), without a
    keyword call and its checks per item. None when some element is not plain."""
    kinds = _ARG_KIND
    columns = [*cols, *kw_cols.values()]
    for column in columns:
        if not kinds.isdisjoint(map(type, column)):
            return None
    nargs = len(cols)
    kwnames = tuple(kw_cols)
    key = (nargs, kwnames)
    shape = task_obj._flat.get(key) or task_obj._flat_shape(key)
    # (a row holds the positional literals, then the keyword ones: the call's lits)
    return [_node(task_obj, row[:nargs], dict(zip(kwnames, row[nargs:])), row, shape, None,
                  (), True) for row in zip(*columns)]


def _collect_fn(items):
    return items


_collect = Task(_collect_fn, name="map.collect")
_collect.internal = True
_collect.gathers = True


class TaskDecorator(Protocol):
    """What ``task(name=...)`` returns, for type checkers: it makes a typed ``Task``."""

    @overload
    def __call__(self, fn: Callable[P, LazyResult[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R | LazyResult[R]]], /
                 ) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R | LazyResult[R]], /) -> Task[P, R]: ...


# The overloads give a task's value type R: a tail call's LazyResult[R] and a
# coroutine's awaited value are unwrapped (the order matters: the first that
# matches wins).
@overload
def task(fn: Callable[P, LazyResult[R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, Coroutine[Any, Any, R | LazyResult[R]]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R | LazyResult[R]], /) -> Task[P, R]: ...
@overload
def task(*, name: str | None = None, offload: bool = False, concurrency: int | None = None,
         local: bool = False) -> TaskDecorator: ...


def task(fn=None, /, *, name=None, offload=False, concurrency=None, local=False):
    """Make ``fn`` a task: ``@task`` or ``@task(name=..., offload=False, concurrency=None,
    local=False)``.

    ``offload=True`` runs a sync function in a worker thread; ``concurrency=n``
    (a positive int) lets at most n invocations of the task run at once within
    a run; ``local=True`` keeps its calls in this process whatever the executor.
    """
    if fn is None:
        return lambda f: Task(f, name=name, offload=offload, concurrency=concurrency,
                              local=local)
    return Task(fn, name=name, offload=offload, concurrency=concurrency, local=local)


# ---------------------------------------------------------------------------
# LazyResult


class LazyResult(StandIn, Generic[R_co]):
    """A call not yet run. Immutable; hashes and compares by identity.

    ``LazyResult[R]`` for type checkers: running it gives an ``R``.
    """

    __slots__ = (
        "task",  # the Task (for PARAM/ENV nodes: the Param/Env itself)
        "args",  # positional arguments as given
        "kwargs",  # keyword arguments as given (a dict)
        "lits",  # literal values, in slot order (a keyword link: a view of its kwargs)
        "shape",  # int: structure of the subtree (see module docstring)
        "spec",  # None for a flat call, else (pos specs, kwnames, kw specs, policy key)
        "children",  # distinct lazy children, in order of first reference
        "tree",  # no node referenced twice in the subtree
        "uses",  # parents created so far that reference this node
        "copied",  # a policy copy of this node exists
        "policy",  # Policy or None
        "__weakref__",
    )
    kind = CALL

    def __init__(self, *a, **k):
        raise TypeError("LazyResult is made by calling a task, e.g. add(1, 2)")

    def __repr__(self) -> str:
        name = getattr(self.task, "name", "?")
        return f"<LazyResult {name}(...) at {id(self):#x}>"

    def __bool__(self):
        raise TypeError(
            f"the truth of a lazy call ({self!r}) is not known until it runs; "
            "use .run_if(cond) or a Router to branch in a workflow"
        )

    # -- policies: each returns a new LazyResult --------------------------
    def _with_policy(self, policy: Policy) -> LazyResult:
        if self.kind == CALL:
            if self.policy is None:  # a call's first policy
                return _policy_copy(self, self.shape, self.spec or _flat_spec(self),
                                    len(self.children), policy)
            bare = _BARE.get(self.shape)
            if bare is not None:  # a copy's copy: from the call without a policy
                return _policy_copy(self, *bare, policy)
        return _make(self.task, self.args, self.kwargs, policy, original=self)

    def _policy(self) -> Policy:
        return self.policy or EMPTY_POLICY

    def run_if(self, cond: object) -> LazyResult[R_co]:
        """Skip this call unless ``cond`` (a value or a lazy) is truthy."""
        p = self._policy()
        if type(cond) in _LAZY_TYPES:
            return self._with_policy(Policy(p.conds + (cond,), p.after, p.retry, p.timeout,
                                            p.cache))
        if isinstance(cond, Task) or inspect.isfunction(cond) or inspect.ismethod(cond):
            name = getattr(cond, "name", None) or getattr(cond, "__qualname__", repr(cond))
            raise TypeError(
                f".run_if() got {name!r} itself, which is always true: pass a value or a lazy "
                f"call, e.g. .run_if({name}(...))"
            )
        # a literal condition: one policy object per (policy, conditions), as _evolved makes
        return self._with_policy(_evolved(p, "conds", p.conds + (bool(cond),)))

    def after(self, *lazies: LazyResult[Any]) -> LazyResult[R_co]:
        """Run only after ``lazies`` finished (ordering only; their values are not passed)."""
        for x in lazies:
            if type(x) not in _LAZY_TYPES:
                raise TypeError(f".after() takes lazy calls, got {type(x).__name__} {x!r}")
        p = self._policy()
        return self._with_policy(Policy(p.conds, p.after + lazies, p.retry, p.timeout, p.cache))

    def with_retry(
        self,
        max_attempts: int = 3,
        delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
        jitter: float = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    ) -> LazyResult[R_co]:
        """Retry the task's own invocation on ``retry_on`` errors."""
        given = (max_attempts, delay, backoff, max_delay, jitter, retry_on)
        retry = _memo_get(_RETRIES, given)
        if retry is None:
            w = "with_retry"
            retry = Retry(checks.whole(max_attempts, w, "max_attempts", 1),
                          checks.seconds(delay, w, "delay"),
                          checks.seconds(backoff, w, "backoff"),
                          None if max_delay is None else checks.seconds(max_delay, w, "max_delay"),
                          checks.seconds(jitter, w, "jitter"),
                          checks.exception_classes(retry_on, w, "retry_on"))
            _memo_put(_RETRIES, given, retry)
        return self._with_item_or_own("retry", retry)

    def with_timeout(self, seconds: float) -> LazyResult[R_co]:
        """Fail the invocation with ``TimeoutError`` after ``seconds``."""
        seconds = checks.seconds(seconds, "with_timeout", "seconds", positive=True)
        return self._with_item_or_own("timeout", seconds)

    def with_cache(self, key: str | Callable[..., str] | None = None, store: Any = None,
                   ttl: float | None = None) -> LazyResult[R_co]:
        """Keep the result across runs (docs/language.md, with_cache: stable keys, stores)."""
        if key is not None and not isinstance(key, str) and not callable(key):
            raise TypeError(f"with_cache: key must be a str or a callable, got {key!r}")
        ttl = check_cache_policy(store, ttl)
        return self._with_item_or_own("cache", CacheSpec(key, store, ttl))

    def _with_item_or_own(self, name: str, value) -> LazyResult:
        """This call with policy field ``name`` set to ``value`` (a map's: each item's)."""
        t = self.task
        if isinstance(t, MapTask):  # policies of a map apply to each item
            item = _evolved(t.item_policy or EMPTY_POLICY, name, value)
            return _make(MapTask.of(t.task, item), self.args, self.kwargs,
                         self.policy or EMPTY_POLICY, original=self)
        return self._with_policy(_evolved(self.policy or EMPTY_POLICY, name, value))


def _evolved(policy: Policy, name: str, value) -> Policy:
    """``policy`` with field ``name`` set to ``value``: one object per (policy, setting)
    met, shared by every call given it (policies are frozen), so the copies' specs and
    shapes are found by identity. A setting that does not hash (a store) gets a policy
    of its own."""
    key = (id(policy), name, value, type(value))
    try:
        known = _EVOLVED.get(key)
    except TypeError:
        return attrs.evolve(policy, **{name: value})
    if known is None or known[0] is not policy:
        known = _remember(_EVOLVED, key, (policy, attrs.evolve(policy, **{name: value})))
    return known[1]


_RETRIES: dict = {}  # .with_retry arguments (and their types) -> the checked Retry
#: (id(policy), field, value, its type) -> (policy, the policy with that field set)
_EVOLVED: dict = {}


def _memo_get(memo: dict, given: tuple):
    """The value kept for ``given`` (compared with its types: ``1`` is not ``True``,
    ``0`` not ``0.0``), or None, also when ``given`` is not hashable."""
    try:
        return memo.get((given, tuple(map(type, given))))
    except TypeError:  # (a list of exception classes, a store that is not hashable)
        return None


def _memo_put(memo: dict, given: tuple, value):
    """Keep ``value`` for ``given`` when it is hashable; returns ``value``."""
    try:
        key = (given, tuple(map(type, given)))
        hash(key)
    except TypeError:
        return value
    return _remember(memo, key, value)


def _remember(memo: dict, key, value):
    """``memo[key] = value``, the memo started again once it holds ``_MEMO_LIMIT``
    entries (forgetting costs the work the memo saves, once per entry)."""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


_MEMO_LIMIT = 4096  # entries in each memo of this module


_new_lazy = object.__new__
_NO_KWARGS: dict = {}  # the kwargs of every call without keywords (shared: never mutated)
_LITERAL = object()  # _Scan._one_level: the container is one literal slot
_LAZY_TYPES: set[type] = {LazyResult}
#: argument types that are not plain literals: lazies, containers to search, markers
_ARG_KIND: set[type] = {LazyResult, list, tuple, dict, set, Inject}
_CONTAINERS = (list, tuple, dict, set)
#: argument types replaced by a lazy node when scanned (type -> function returning the node)
_ARG_HOOKS: dict = {}


def register_lazy_type(cls: type) -> None:
    """Make instances of ``cls`` (a LazyResult subclass) count as lazies in arguments."""
    _LAZY_TYPES.add(cls)
    _ARG_KIND.add(cls)


def register_arg_hook(cls: type, to_node) -> None:
    """Arguments of type ``cls`` stand for the lazy node ``to_node(argument)``."""
    _ARG_HOOKS[cls] = to_node
    _ARG_KIND.add(cls)


# ---------------------------------------------------------------------------
# The one-time walk of arguments


def _contains_special(value) -> bool:
    """True when a container holds a lazy at any depth (iterative). An ``inject()``
    marker inside a container is a plain value: only top-level ones are injected."""
    stack = [value]
    seen = set()
    kinds = _ARG_KIND
    while stack:
        v = stack.pop()
        t = type(v)
        if t not in kinds or t is Inject:
            continue
        if t in _LAZY_TYPES or t in _ARG_HOOKS:
            return True
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.extend(v.values() if t is dict else v)
    return False


def _lane_spec(value, lits: list, index: dict, children: list, deepest: int = 1,
               depth: int = 1):
    """The spec of ``value``, a list, a tuple or a dict with str keys, of lazies, plain
    literals and (up to ``deepest`` levels in all) such containers: what
    ``_Scan._container_spec`` writes for it. Its literals are added to ``lits`` and its
    new lazies to ``children`` (``index``: lazy -> child index); ``_LITERAL`` when it
    holds no lazy (then it is one literal, added whole); None when something in it
    needs the general walk: a container past ``deepest`` levels (one level by default:
    a fan-in's list), a marker or a set, a dict key that is not a str (the children
    found stay valid). An ``inject()`` marker in it is a plain value."""
    mark = len(lits)
    built = []
    lazy, kinds = _LAZY_TYPES, _ARG_KIND
    found = False
    if type(value) is dict:
        for k in value:
            if type(k) is not str:
                return None
        items = value.values()
    else:
        items = value
    for v in items:
        t = type(v)
        if t in lazy:
            i = index.get(v)
            if i is None:
                i = index[v] = len(children)
                children.append(v)
            built.append(("L", i))
            found = True
        elif t in kinds and t is not Inject:
            spec = (_lane_spec(v, lits, index, children, deepest, depth + 1)
                    if depth < deepest and (t is list or t is tuple or t is dict) else None)
            if spec is None:
                del lits[mark:]
                return None
            if spec is _LITERAL:
                built.append(None)
            else:
                built.append(spec)
                found = True
        else:
            lits.append(v)
            built.append(None)
    if not found:  # nothing lazy: the container is one literal
        del lits[mark:]
        lits.append(value)
        return _LITERAL
    if type(value) is dict:
        return ("D", tuple(value), tuple(built))
    return ("C", type(value), tuple(built))


_NEST_DEPTH = 16  # containers within containers that the container lane follows


def _shallow(specs: tuple) -> bool:
    """Are argument ``specs`` what ``_lane_spec`` writes: literals, lazies, and
    lists, tuples and str-keyed dicts of those at most ``_NEST_DEPTH`` deep, no
    marker?"""
    stack = [(specs, 0)]
    while stack:
        items, depth = stack.pop()
        for s in items:
            if s is None or s[0] == "L":
                continue
            if s[0] == "C":
                if s[1] is not list and s[1] is not tuple:
                    return False
            elif s[0] != "D" or any(type(k) is not str for k in s[1]):
                return False  # (a marker: "I")
            if depth + 1 > _NEST_DEPTH:
                return False
            stack.append((s[2], depth + 1))
    return True


def _child_index(index: dict, children: list, lazy) -> int:
    """The index of child ``lazy`` among ``children`` (added at its first reference)."""
    i = index.get(lazy)
    if i is None:
        i = index[lazy] = len(children)
        children.append(lazy)
    return i


class _Scan:
    """Collects literals and children while argument specs are built."""

    __slots__ = ("lits", "children", "index", "nested", "gather", "original")

    def __init__(self, task_obj, original=None):
        self.lits: list = []
        self.children: list = []
        self.index: dict = {}  # lazy -> its child index
        self.nested = False  # some spec is more than a literal, a lazy or a one-level list
        # what a batch in these arguments tail-calls to gather its items' values (batch.py)
        self.gather = task_obj if task_obj.container_target else _collect
        # a policy copy's original: its batches are the copy's too (same items, same node)
        self.original = original

    def child(self, lazy) -> int:
        return _child_index(self.index, self.children, lazy)

    def spec(self, value):
        """The spec of one argument; literal values go to ``lits`` in slot order."""
        t = type(value)
        if t not in _ARG_KIND:
            self.lits.append(value)
            return None
        if t in _LAZY_TYPES:
            return ("L", self.child(value))
        if t is Inject:
            self.nested = True
            return ("I", value.name)
        hook = _ARG_HOOKS.get(t)
        if hook is not None:
            return ("L", self.child(hook(value)))
        if t is list or t is tuple or t is dict:
            spec = self._one_level(value)
            if spec is _LITERAL:
                return None
            if spec is not None:
                return spec
        if not _contains_special(value):  # a plain value, however deep
            self.lits.append(value)
            return None
        self.nested = True
        return self._container_spec(value)

    def _one_level(self, value):
        """The spec of a list, tuple or str-keyed dict of lazies and plain literals (a
        fan-in's list): ``_LITERAL`` when it holds no lazy (it is one literal), None
        when it holds another container or a marker (the general walk). A list or
        tuple of like flat calls becomes one batch child (see batch.py)."""
        if len(value) >= BATCH_MIN and type(value) is not dict:
            batch = None
            if self.original is not None:
                batch = batch_in(self.original.children, value)
            if batch is None:
                batch = batch_of(value, self.gather)
            if batch is not None:
                return ("L", self.child(batch))
        return _lane_spec(value, self.lits, self.index, self.children)

    def _container_spec(self, root):
        """Iterative post-order over nested containers, items in order, each visited once.

        A container with nothing lazy inside collapses into one literal slot:
        the literals its items left are replaced by the container itself.
        """
        lits = self.lits

        def items_of(c):
            return list(c.values()) if type(c) is dict else list(c)

        on_path = {id(root)}
        stack = [(root, items_of(root), [], len(lits))]
        while True:
            c, items, built, mark = stack[-1]
            if len(built) == len(items):
                stack.pop()
                on_path.discard(id(c))
                if all(b is None for b in built):
                    del lits[mark:]
                    lits.append(c)
                    spec = None
                elif type(c) is dict:
                    spec = ("D", tuple(c.keys()), tuple(built))
                else:
                    spec = ("C", type(c), tuple(built))
                if not stack:
                    return spec
                stack[-1][2].append(spec)
                continue
            v = items[len(built)]
            if type(v) in _CONTAINERS:
                if id(v) in on_path:  # a container holding itself: a plain value
                    lits.append(v)
                    built.append(None)
                else:
                    on_path.add(id(v))
                    stack.append((v, items_of(v), [], len(lits)))
            elif type(v) is Inject:  # nested: a plain value, passed through untouched
                lits.append(v)
                built.append(None)
            else:
                built.append(self.spec(v))


def _flat(task_obj: Task, args, kwargs, lits) -> LazyResult:
    """A flat call whose literal arguments include containers (no lazy inside)."""
    key = (len(args), tuple(kwargs)) if kwargs else len(args)
    shape = task_obj._flat.get(key) or task_obj._flat_shape(key)
    return _node(task_obj, args, kwargs, lits, shape, None, (), True)


def _node(task_obj, args, kwargs, lits, shape, spec, children, tree, policy=None) -> LazyResult:
    """A new LazyResult with every field set (Task.__call__ inlines this for speed)."""
    lr = _new_lazy(LazyResult)
    lr.task = task_obj
    lr.args = args
    lr.kwargs = kwargs
    lr.lits = lits
    lr.shape = shape
    lr.spec = spec
    lr.children = children
    lr.tree = tree
    lr.uses = 0
    lr.copied = False
    lr.policy = policy
    return lr


_POS_SPECS: dict = {}  # (nargs, lazy-position mask[, kwnames]) -> the spec of such a call
#: ids of the specs of *plain* calls: literals and distinct lazies, positional or keyword,
#: nothing else (kept alive by _POS_SPECS); templates take their fast path (template.py)
_POS_SPEC_IDS: set = set()
#: ids of the specs of links with literals: the first argument lazy, every other one
#: (positional or keyword, at least one) a literal (``Task._literal_link``)
_LITERAL_LINK_SPEC_IDS: set = set()
#: ids of the specs of chain links: one argument, a lazy, with or without keyword literals
_LINK_SPEC_IDS: set = set()


def _positional_spec(nargs: int, mask: int, kwnames: tuple = ()) -> tuple:
    """The spec of a plain call: ``nargs`` positional then ``kwnames`` keyword
    arguments, bit i of ``mask`` set where argument i (keywords counted after the
    positional ones) is a lazy; children numbered in argument order."""
    key = (nargs, mask, kwnames) if kwnames else (nargs, mask)
    spec = _POS_SPECS.get(key)
    if spec is None:
        specs = []
        ci = 0
        for i in range(nargs + len(kwnames)):
            if mask >> i & 1:
                specs.append(("L", ci))
                ci += 1
            else:
                specs.append(None)
        spec = _POS_SPECS[key] = (tuple(specs[:nargs]), kwnames, tuple(specs[nargs:]), None)
        _POS_SPEC_IDS.add(id(spec))
        if mask == 1 and nargs:  # argument 0, a positional one, is the lazy
            if nargs == 1:
                _LINK_SPEC_IDS.add(id(spec))
            if nargs > 1 or kwnames:
                _LITERAL_LINK_SPEC_IDS.add(id(spec))
    return spec


#: a link's layout (its keyword names; with more positional arguments, (nargs, names))
#: -> its spec (interned: a link of the same layout has the same spec object)
_LINK_LAYOUTS: dict = {}


def _literal_link_spec(nargs: int, kwnames: tuple) -> tuple:
    """The spec of a link with literals: argument 0 lazy, the other ones literals."""
    return (_POS_SPECS.get((nargs, 1, kwnames) if kwnames else (nargs, 1))
            or _positional_spec(nargs, 1, kwnames))


def _make_plain(task_obj, args, kwargs: dict, every: tuple | None = None) -> LazyResult:
    """The common general case: each argument, positional or keyword, a literal or a
    distinct lazy (``add(x, 1)``, ``scale(x=y, k=2)``, ``meet(a=x, b=y)``); ``every``:
    the positional then keyword values, when the caller has them already.

    A call without lazies is flat (``_flat``), one with a single lazy is interned per
    task (``_lone_lazy``, or a link's own lane when the lazy comes first); with more
    lazies, the shape key is a flat tuple (task, nargs, lazy-position mask, the keyword
    names when there are any, child shapes), cheap to hash. Containers, markers and a
    lazy passed twice go to ``_make``.
    """
    lazy_types = _LAZY_TYPES
    kinds = _ARG_KIND
    if every is None:
        every = args + tuple(kwargs.values()) if kwargs else args
    lits = []
    children = []
    mask = 0
    bit = 1
    for a in every:
        t = type(a)
        if t in lazy_types:
            children.append(a)
            mask |= bit
        elif t in kinds:
            return _make_lists(task_obj, args, kwargs)
        else:
            lits.append(a)
        bit <<= 1
    nargs = len(args)
    if not children:  # a flat call: every argument is a literal
        return _flat(task_obj, args, kwargs, every)
    if mask == 1 and nargs and len(children) == 1:  # the lazy first: a link (with
        return task_obj(*args, **kwargs)  # literals, if any)
    if kwargs:
        kwnames = tuple(kwargs)
        layout = (nargs, mask, kwnames)
    else:
        kwnames = ()
        layout = (nargs, mask)
    spec = _POS_SPECS.get(layout) or _positional_spec(nargs, mask, kwnames)
    if len(children) == 1:
        return _lone_lazy(task_obj, children[0], args, kwargs, tuple(lits), layout, spec)
    if len(children) > 2:
        return _many_lazies(task_obj, args, kwargs, tuple(lits), children, mask, spec)
    a, b = children  # (``step(n - 1, state, memory)``: a loop's commonest call)
    if a is b:
        return _make(task_obj, args, kwargs, EMPTY_POLICY)  # a lazy passed twice
    a.uses += 1
    b.uses += 1
    key = ((task_obj.uid, _POSITIONAL, nargs, mask, kwnames, a.shape, b.shape)
           if kwnames else (task_obj.uid, _POSITIONAL, nargs, mask, a.shape, b.shape))
    lr = _new_lazy(LazyResult)  # _node(), inlined: a DAG's node
    lr.task = task_obj
    lr.args = args
    lr.kwargs = kwargs
    lr.lits = tuple(lits)
    lr.shape = _SHAPES.get(key) or intern_shape(key)
    lr.spec = spec
    lr.children = (a, b)
    lr.tree = a.uses == 1 and b.uses == 1 and a.tree and b.tree and not (a.copied or b.copied)
    lr.uses = 0
    lr.copied = False
    lr.policy = None
    return lr


def _many_lazies(task_obj, args, kwargs, lits: tuple, children: list, mask: int,
                 spec: tuple) -> LazyResult:
    """``_make_plain``'s call with three or more lazies (``mask``: their positions)."""
    if len(set(children)) < len(children):
        return _make(task_obj, args, kwargs, EMPTY_POLICY)  # a lazy passed twice
    tree = True
    key = [task_obj.uid, _POSITIONAL, len(args), mask]
    if kwargs:
        key.append(spec[1])  # the keyword names: a tuple where a positional key has an int
    for c in children:
        c.uses += 1
        if c.uses > 1 or not c.tree or c.copied:
            tree = False
        key.append(c.shape)
    key = tuple(key)
    shape = _SHAPES.get(key) or intern_shape(key)
    return _node(task_obj, args, kwargs, lits, shape, spec, tuple(children), tree)


def _make_lists(task_obj, args, kwargs: dict = _NO_KWARGS) -> LazyResult:
    """``_make`` for arguments, positional or keyword, that are literals, lazies, and
    lists, tuples or str-keyed dicts of those (``pair([x, 1])``, ``report({"a": x})``,
    a fan-in; a list of like flat calls becomes a batch, as ``_Scan._one_level`` makes
    it): the same spec, shape and literals, without the scan object; anything else (a
    nested container, a marker) goes to ``_make``."""
    lazy_types = _LAZY_TYPES
    kinds = _ARG_KIND
    lits: list = []
    children: list = []
    index: dict = {}  # lazy -> its child index (one child however often it is passed)
    specs = []
    for a in args + tuple(kwargs.values()) if kwargs else args:
        t = type(a)
        if t in lazy_types:
            specs.append(("L", _child_index(index, children, a)))
        elif t not in kinds:
            lits.append(a)
            specs.append(None)
        elif t is list or t is tuple or t is dict:
            spec = _container_arg(task_obj, a, t, lits, index, children)
            if spec is None:  # a marker, a set, a key that is not a str, too deep
                return _make(task_obj, args, kwargs, EMPTY_POLICY)
            specs.append(None if spec is _LITERAL else spec)
        else:
            return _make(task_obj, args, kwargs, EMPTY_POLICY)
    if not children:
        return _flat(task_obj, args, kwargs, tuple(lits))
    tree = True
    for c in children:
        c.uses += 1
        if c.uses > 1 or not c.tree or c.copied:
            tree = False
    n = len(args)
    spec, sid = _intern_spec((tuple(specs[:n]), tuple(kwargs), tuple(specs[n:]), None)
                             if kwargs else (tuple(specs), (), (), None))
    shape = _one_level_shape(task_obj, spec, sid, children)
    return _node(task_obj, args, kwargs, tuple(lits), shape, spec, tuple(children), tree)


def _container_arg(task_obj, a, t: type, lits: list, index: dict, children: list):
    """The spec of ``_make_lists``' container argument ``a`` (of type ``t``): a batch
    (a list of like flat calls) or a fan-in of distinct lazies as children, else the
    container lane's spec, one level deep or nested (``_LITERAL`` for a container with
    no lazy inside), or None when it needs the general walk."""
    if t is not dict and len(a) >= BATCH_MIN and type(a[0]) is LazyResult:
        if a[0].spec is None and type(a[-1]) is LazyResult:  # maybe a batch
            batch = batch_of(a, task_obj if task_obj.container_target else _collect)
            if batch is not None:
                return ("L", _child_index(index, children, batch))
        if len(a) >= _FAN_IN_MIN and _LAZY_TYPES.issuperset(map(type, a)):
            spec = _fan_in(a, t, index, children)  # a fan-in of distinct lazies
            if spec is not None:
                return spec
    spec = _lane_spec(a, lits, index, children)
    if spec is not None:
        return spec
    return _lane_spec(a, lits, index, children, _NEST_DEPTH)  # containers in it


def _fan_in(items, ctype: type, index: dict, children: list) -> tuple | None:
    """The spec ``_lane_spec`` writes for ``items`` (a list or tuple of lazies) when
    they are distinct and new among ``children``: its children added, its spec (one
    object per container type, first child and length) found, at C speed. None
    otherwise (the lane's walk then numbers them)."""
    n = len(items)
    if len(set(items)) != n or not index.keys().isdisjoint(items):
        return None
    start = len(children)
    children.extend(items)
    index.update(zip(items, range(start, start + n)))
    key = (ctype, start, n)
    spec = _FAN_IN_SPECS.get(key)
    if spec is None:
        if len(_FAN_IN_SPECS) >= _MEMO_LIMIT:
            _FAN_IN_SPECS.clear()
        spec = _FAN_IN_SPECS[key] = ("C", ctype, tuple([("L", i) for i in
                                                       range(start, start + n)]))
    return spec


_FAN_IN_MIN = 8  # items of a list before _make_lists tries it as a fan-in of lazies
_FAN_IN_SPECS: dict = {}  # (container type, first child, length) -> a fan-in's spec


def _one_level_shape(task_obj, spec: tuple, sid: int, children) -> int:
    """The shape of a call of ``task_obj`` whose arguments are literals, lazies and
    one-level containers of those: interned ``spec`` (numbered ``sid``) over
    ``children``. With one child, it is interned per task by (spec, the child's
    shape), and such calls stacked on each other number their shapes as a run of
    links does (``_link_shape``; ``pair([x, 1])``); else in the global table, by the
    spec's number (an int: cheap to hash) and the children's shapes."""
    if len(children) == 1:
        a = children[0]
        shape = a.shape
        same = a.spec is spec and a.task is task_obj
        if shape < 0 and same:
            return shape - 1  # one more call of a run (_link_shape)
        one = task_obj._one
        key = (sid, shape)  # two ints (a _lone_lazy key holds a tuple first)
        return one.get(key) or _link_shape(one, key, same)
    key = (task_obj.uid, _POSITIONAL_LISTS, sid, *map(_SHAPE, children))
    return _SHAPES.get(key) or intern_shape(key)


def _make_pair(task_obj, args) -> LazyResult:
    """``_make_plain`` for two arguments, at least one lazy (``add(x, y)``,
    ``step(n - 1, acc)``): the same shape keys, without the general loop."""
    a, b = args
    lazy_types = _LAZY_TYPES
    if type(a) in lazy_types:
        if type(b) in lazy_types:  # a DAG's commonest node: every field set here
            if a is b:
                return _make(task_obj, args, {}, EMPTY_POLICY)  # a lazy passed twice
            a.uses += 1
            b.uses += 1
            key = (task_obj.uid, _POSITIONAL, 2, 3, a.shape, b.shape)
            lr = _new_lazy(LazyResult)
            lr.task = task_obj
            lr.args = lr.children = args
            lr.kwargs = _NO_KWARGS
            lr.lits = ()
            lr.shape = _SHAPES.get(key) or intern_shape(key)
            lr.spec = _BOTH_LAZY_SPEC
            lr.tree = (a.uses == 1 and b.uses == 1 and a.tree and b.tree
                       and not (a.copied or b.copied))
            lr.uses = 0
            lr.copied = False
            lr.policy = None
            return lr
        elif type(b) in _ARG_KIND:  # a container or a marker
            return _make_lists(task_obj, args)
        else:  # ``step(x, 1)``: a link with a literal
            return task_obj._literal_link(a, args, _NO_KWARGS)
    elif type(a) in _ARG_KIND or type(b) not in lazy_types:
        return _make_lists(task_obj, args)  # a container or a marker among them
    return _lone_lazy(task_obj, b, args, _NO_KWARGS, (a,), (2, 2), _LAZY_SECOND_SPEC)  # put(1, x)


def _lone_lazy(task_obj, a, args: tuple, kwargs: dict, lits: tuple, layout: tuple,
               spec: tuple) -> LazyResult:
    """A call whose one lazy argument ``a`` is not the first positional one and whose
    other arguments are plain literals ``lits``: ``scale(x=y, k=2)``, ``put(1, y)``.
    ``layout`` is (nargs, the lazy's bit among the arguments, keywords counted after
    the positional ones[, kwnames]), ``spec`` its spec. As for a link
    (``Task._literal_link``), its shape is interned per task by (layout, the child's
    shape), and such calls of one task and layout stacked on each other number their
    shapes as a run of links does (``_link_shape``): no global table entry, and no key
    of every argument, per call."""
    a.uses += 1
    shape = a.shape
    same = a.spec is spec and a.task is task_obj
    if shape < 0 and same:
        shape -= 1  # one more call of a run (_link_shape)
    else:
        one = task_obj._one
        key = (layout, shape)  # (a chain link's key is an int, a literal link's a 3-tuple)
        shape = one.get(key) or _link_shape(one, key, same)
    return _node(task_obj, args, kwargs, lits, shape, spec, (a,),
                 a.uses == 1 and a.tree and not a.copied)


_POSITIONAL = "positional"
_POSITIONAL_LISTS = "positional-lists"
_ONE_LAZY_SPEC = _positional_spec(1, 1)
_BOTH_LAZY_SPEC = _positional_spec(2, 3)
_LAZY_SECOND_SPEC = _positional_spec(2, 2)


_SHAPE = operator.attrgetter("shape")


def _policy_copy(original: LazyResult, bare_shape: int, bare_spec: tuple, n_bare: int,
                 policy: Policy) -> LazyResult:
    """``original`` under ``policy``: what ``_make`` builds for it, from the original's
    own fields (its arguments, literals and children; no argument walk, no token walk).

    ``bare_shape``, ``bare_spec`` and ``n_bare`` (its children) are those of the same
    call without a policy: the original's own, or, for a copy's copy, those ``_BARE``
    kept. The spec is the bare spec with the policy's key, as ``_make`` writes it
    (conditions and ``.after`` lazies are children after the call's own, in order of
    first reference). The shape is interned from the bare shape, which stands for the
    whole structure below, the key and the shapes of the policy's own children: so one
    structure has one shape whatever order its policies were given in, and a pickle's
    rebuild (``lazy_from_call``) finds it. A policy without lazies is looked up by
    identity: ``fetch(u).with_retry(3)``, ``f(x).with_timeout(5)``, ``g(y).run_if(True)``
    share one spec object and one shape per bare shape."""
    original.copied = True
    conds = policy.conds
    if not policy.after and (not conds or _LAZY_TYPES.isdisjoint(map(type, conds))):
        key = (bare_shape, id(policy))
        known = _POLICY_COPIES.get(key)
        if known is None or known[0] is not policy or known[1] is not bare_spec:
            pkey = (conds, (), policy.retry, policy.timeout, policy.cache)
            known = _remember(_POLICY_COPIES, key, (policy, bare_spec,
                                                    _policy_copy_spec(bare_spec, policy, pkey),
                                                    _copy_shape(bare_shape, bare_spec, n_bare,
                                                                pkey, ())))
        spec, shape = known[2], known[3]
        children = original.children
    else:
        children = list(original.children[:n_bare])
        conds = tuple([("L", _child_at(children, c)) if type(c) in _LAZY_TYPES else c
                       for c in policy.conds])
        after = tuple([_child_at(children, a) for a in policy.after])
        pkey = (conds, after, policy.retry, policy.timeout, policy.cache)
        had = original.children
        for c in children[n_bare:]:
            if c not in had:  # (by identity: a lazy compares so)
                c.uses += 1
        spec = bare_spec[:3] + (pkey,)
        shape = _copy_shape(bare_shape, bare_spec, n_bare, pkey,
                            tuple(map(_SHAPE, children[n_bare:])))
        children = tuple(children)
    tree = original.tree and not original.uses
    if tree:
        for c in children:
            if c.uses > 1 or not c.tree or c.copied:
                tree = False
                break
    return _node(original.task, original.args, original.kwargs, original.lits, shape, spec,
                 children, tree, policy)


def _child_at(children: list, lazy) -> int:
    """The index of ``lazy`` among ``children`` (appended at its first reference): a
    scan by identity, as a call has few children."""
    for i, c in enumerate(children):
        if c is lazy:
            return i
    children.append(lazy)
    return len(children) - 1


def _copy_shape(bare_shape: int, bare_spec: tuple, n_bare: int, pkey: tuple,
                policy_children: tuple) -> int:
    """The shape of a policy copy (``_policy_copy``), remembered with its bare call."""
    shape = intern_shape((_POLICY_COPY, bare_shape, pkey, policy_children))
    if len(_BARE) >= _BARE_LIMIT:
        _BARE.clear()  # a copy's copy then takes _make's path: a new shape, never a wrong one
    _BARE[shape] = (bare_shape, bare_spec, n_bare)
    return shape


def _flat_spec(lr: LazyResult) -> tuple:
    """The spec ``_make`` writes for flat call ``lr`` (every argument a literal): one
    object per layout."""
    kwnames = tuple(lr.kwargs) if lr.kwargs else ()
    key = (len(lr.args), kwnames)
    spec = _FLAT_SPECS.get(key)
    if spec is None:
        spec = _FLAT_SPECS[key] = ((None,) * len(lr.args), kwnames, (None,) * len(kwnames),
                                   None)
    return spec


def _policy_copy_spec(spec: tuple, policy: Policy, pkey: tuple) -> tuple:
    """``spec`` with policy key ``pkey`` (of ``policy``, which has no lazies): one object
    per (spec, policy) pair met, so the copies of one layout share it as their
    originals share theirs."""
    key = (id(spec), id(policy))
    known = _POLICY_COPY_SPECS.get(key)
    if known is None or known[0] is not spec or known[1] is not policy:
        known = _remember(_POLICY_COPY_SPECS, key, (spec, policy, spec[:3] + (pkey,)))
    return known[2]


_POLICY_COPY = "policy-copy"
_FLAT_SPECS: dict = {}  # (nargs, kwnames) -> the spec of a flat call of that layout
#: (id(spec), id(policy)) -> (spec, policy, the copy's spec)
_POLICY_COPY_SPECS: dict = {}
#: (the bare shape, id(policy)) -> (policy, the bare spec, the copy's spec, its shape)
_POLICY_COPIES: dict = {}
#: a copy's shape -> (its bare shape, its bare spec, the bare call's children)
_BARE: dict = {}
_BARE_LIMIT = 1 << 16


def spec_key(spec) -> tuple:
    """A flat, hashable token tuple equal for equal specs (no recursion however deep)."""
    out = []
    stack = [spec]
    while stack:
        s = stack.pop()
        if type(s) is not tuple or (len(s) == 2 and s[0] in ("L", "I")):
            out.append(s)  # a leaf: a literal slot, a child, an injection, a value
        elif len(s) == 3 and type(s[2]) is tuple and (
            (s[0] == "C" and isinstance(s[1], type)) or (s[0] == "D" and type(s[1]) is tuple)
        ):
            out.append(s[0])  # a container spec: tag, type or keys, item count, items
            out.append(s[1])
            if s[0] == "D":  # keys equal across types (1, 1.0, True) are not one layout
                out.append(tuple(map(type, s[1])))
            out.append(len(s[2]))
            stack.extend(reversed(s[2]))
        else:
            out.append("(")  # any other tuple: its length, then its items
            out.append(len(s))
            stack.extend(reversed(s))
    return tuple(out)


_SPECS: dict = {}  # one-level spec -> (the spec, its number): specs of general calls
#: ids of the specs in _SPECS (kept alive by it, emptied with it): calls of literals,
#: lazies and one-level containers of those, no policy (template.py's fast path)
_ONE_LEVEL_SPEC_IDS: set = set()
_SPEC_LIMIT = 1 << 14  # entries; then emptied (an equal spec made later is a new object)
#: argument and item specs held by _SPECS at most (a fan-in's list holds one per item):
#: about 40 MB; then emptied too, so specs of many sizes cannot pile up
_SPEC_ITEMS_LIMIT = 1 << 19
_spec_items = [0]  # argument and item specs held by _SPECS now
_next_spec = itertools.count(1).__next__


def _intern_spec(spec: tuple) -> tuple:
    """(one object per spec value, its number): calls of one layout share their spec,
    so what is worked out once per spec (the first tier's check of a layout, keyed by
    the spec's id) serves every call of it. The number, never reused, names the spec
    in shape keys (``_one_level_shape``): an equal spec interned after the table was
    emptied (at ``_SPEC_LIMIT`` specs, or ``_SPEC_ITEMS_LIMIT`` argument and item specs
    in all) gets a new one, so its calls get new shapes (a cache miss, never a wrong
    hit)."""
    found = _SPECS.get(spec)
    if found is None:
        items, nested = _spec_size(spec)
        if len(_SPECS) >= _SPEC_LIMIT or _spec_items[0] + items > _SPEC_ITEMS_LIMIT:
            _SPECS.clear()
            _ONE_LEVEL_SPEC_IDS.clear()
            _spec_items[0] = 0
        _spec_items[0] += items
        found = _SPECS[spec] = (spec, _next_spec())
        if not nested:  # (a nested one takes the general template walk)
            _ONE_LEVEL_SPEC_IDS.add(id(spec))
    return found


def _spec_size(spec: tuple) -> tuple:
    """(the argument and item specs of ``spec``, at every level; does a container in
    it hold another one?)"""
    items = 0
    nested = False
    level = spec[0] + spec[2]  # the arguments, then each level of items below them
    top = True
    while level:
        items += len(level)
        inner: list = []
        for s in level:
            if s is not None and (s[0] == "C" or s[0] == "D"):
                inner += s[2]
                nested = nested or not top
        level = inner
        top = False
    return items, nested


def _make(task_obj, args, kwargs, policy: Policy, original: LazyResult | None = None):
    """Build a LazyResult whose arguments or policy hold lazies (the general path)."""
    scan = _Scan(task_obj, original)
    pos = tuple(scan.spec(a) for a in args)
    kwnames = tuple(kwargs)
    kws = tuple(scan.spec(kwargs[k]) for k in kwnames)
    pkey = None
    if policy is not EMPTY_POLICY:
        conds = tuple(("L", scan.child(c)) if type(c) in _LAZY_TYPES else c for c in policy.conds)
        after = tuple(scan.child(a) for a in policy.after)
        pkey = (conds, after, policy.retry, policy.timeout, policy.cache)
    children = tuple(scan.children)
    tree = True
    if original is None:
        for c in children:
            c.uses += 1
            if c.uses > 1 or not c.tree or c.copied:
                tree = False
    else:
        original.copied = True
        new = set(map(id, children)) - set(map(id, original.children))
        for c in children:
            if id(c) in new:
                c.uses += 1
            if c.uses > 1 or not c.tree or c.copied:
                tree = False
        if original.uses or not original.tree:
            tree = False
    if not children and pkey is None and all(x is None for x in pos + kws):
        return _flat(task_obj, args, kwargs, tuple(scan.lits))
    spec = (pos, kwnames, kws, pkey)
    if pkey is None and (not scan.nested or _shallow(pos + kws)):
        # literals, lazies and lists, tuples and str-keyed dicts of those, no marker:
        # the spec is interned and numbered, its calls shaped as _make_lists shapes
        # them (a policy's key may hold values that do not hash; a spec deeper than
        # _NEST_DEPTH could be deeper than C recursion)
        spec, sid = _intern_spec(spec)
        shape = _one_level_shape(task_obj, spec, sid, children)
    else:
        shape = intern_shape((task_obj.uid, spec_key(spec), tuple(map(_SHAPE, children))))
    return _node(task_obj, args, kwargs, tuple(scan.lits), shape, spec, children, tree,
                 None if policy is EMPTY_POLICY else policy)


# ---------------------------------------------------------------------------
# Pickling (SPEC section 8): a task by reference, a lazy by its call.
#
# A task pickles as (module, qualified name) and unpickles to the object found
# there, so the receiving process holds the same task. A LazyResult pickles as
# its task, arguments and policy and is rebuilt by calling the task again: its
# structure (shape, spec, tree) is recomputed where it lands, never sent. The
# lazies below it (in arguments, containers, Routers, conditions, ``after``)
# are pickled first, deepest first, as a list before the node's own call, so
# each node's call finds its children already in pickle's memo: the pickler
# never nests deeper than one node whatever the depth of the graph, and a
# node shared by several parents is rebuilt once.

_PICKLE_FIRST: weakref.WeakSet = weakref.WeakSet()  # nodes a parent pickles before itself


def task_ref(t: Task) -> tuple[str, str]:
    """Where ``t`` lives: (module, qualified name), checked to lead back to ``t``."""
    module = getattr(t, "__module__", None)
    qualname = getattr(t, "__qualname__", None)
    found = None
    if module and qualname and "<locals>" not in qualname:
        try:
            found = _lookup(module, qualname)
        except (ImportError, AttributeError):
            found = None
    if found is not t:
        raise pickle.PicklingError(
            f"task {t.name!r} cannot be pickled: it is not the object named "
            f"{module}.{qualname}. Tasks pickle by reference (to run on another process "
            f"or machine): define {t.name!r} with @task at the top level of an importable "
            f"module, not inside a function or under another name."
        )
    return module, qualname


def _lookup(module: str, qualname: str):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def task_from_ref(module: str, qualname: str) -> Task:
    """The task named ``module.qualname`` in this process (a pickled task's way back)."""
    try:
        found = _lookup(module, qualname)
    except (ImportError, AttributeError) as exc:
        raise pickle.UnpicklingError(
            f"task {module}.{qualname} is not importable in this process ({exc}): the "
            f"module defining it must be importable where the task runs (install it there, "
            f"or run the flow file with the CLI, which uploads it)"
        ) from None
    if not isinstance(found, Task):
        raise pickle.UnpicklingError(
            f"{module}.{qualname} is a {type(found).__name__}, not the task that was "
            f"pickled: the module differs between the processes"
        )
    return found


def _reduce_task(self: Task):
    return task_from_ref, task_ref(self)


def _reduce_map_task(self: MapTask):
    return MapTask.of, (self.task, self.item_policy)


def _lazies_below(root) -> list:
    """The distinct lazies the arguments and policies of ``root`` reach (through
    exact builtin containers and Routers), deepest first: an iterative post-order."""
    order: list = []
    seen = {id(root)}
    stack = [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        parts = []
        if type(v) in _LAZY_TYPES:
            if v is not root:
                if id(v) in seen:
                    continue
                seen.add(id(v))
                stack.append((v, True))
            parts = _pickled_parts(v)
        elif type(v) in _CONTAINERS:
            if id(v) in seen:
                continue
            seen.add(id(v))
            parts = list(v.values()) if type(v) is dict else list(v)
        elif type(v) in _ARG_HOOKS:  # a Router: its selector and routes
            parts = [v.selector, v.routes]
        stack.extend((p, False) for p in reversed(parts))
    return order


def _pickled_parts(lr) -> list:
    """What a lazy's pickle holds that may hold lazies: arguments and policy."""
    if lr.kind != CALL:
        return list(lr.args)  # a route node's selector and routes; Param/Env: nothing
    parts = list(lr.args)
    parts.extend(lr.kwargs.values())
    if lr.policy is not None:
        parts.extend(lr.policy.conds)
        parts.extend(lr.policy.after)
    return parts


def pickled_first(lr) -> list:
    """The lazies to pickle before ``lr`` (see above): none when a parent listed ``lr``,
    since its children come before it in that list."""
    if lr in _PICKLE_FIRST:
        _PICKLE_FIRST.discard(lr)
        return []
    first = _lazies_below(lr)
    _PICKLE_FIRST.update(first)
    return first


def _reduce_lazy(self: LazyResult):
    return lazy_from_call, (pickled_first(self), self.task, self.args, self.kwargs, self.policy)


def lazy_from_call(first, task_obj: Task, args: tuple, kwargs: dict, policy) -> LazyResult:
    """A pickled lazy rebuilt: its task called again, its policy applied again
    (``first``: the lazies below it, already rebuilt by the unpickler)."""
    node = task_obj(*args, **kwargs)
    return node if policy is None else node._with_policy(policy)  # as the user made it


Task.__reduce__ = _reduce_task
MapTask.__reduce__ = _reduce_map_task
LazyResult.__reduce__ = _reduce_lazy
_collect.__qualname__ = "_collect"  # pickled by reference, like any task


from .batch import BATCH_MIN, batch_in, batch_of, items_here, rows_of  # noqa: E402  (batch.py builds on this module)
