"""Resources: things tasks need (a client, a connection), set up and torn down by the run.

``@resource`` registers a function, generator or async generator by name
(a later registration of the same name replaces the earlier one). A task
asks for one with ``inject(name_or_resource)`` as a parameter default or as
an argument. ``run`` scope: set up once per run on first need, torn down at
the end of the run in reverse order of set-up, on success, failure and
cancellation. ``task`` scope: set up per call (per attempt) and torn down
right after it. Teardown resumes the generator normally (the code after
``yield`` runs; the run's error is not thrown in); a teardown error is raised
after every teardown ran, unless the run already failed.

``RunResources`` holds one run's state; both engines reach it through the
run context, only from calls that declare injections (compiled into the
template), so plain calls never touch it.

A set-up or teardown that raises is logged at WARNING on the logger
``cascade.resource`` (logs.py; the error still fails the task or the run as above).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, overload

import attrs

from .calls import noted, picked
from .errors import ResourceError, describe
from .events import ResourceSetUp, ResourceTornDown
from .lazy import Inject
from .logs import warn_resource

_REGISTRY: dict[str, Resource] = {}


@attrs.frozen(slots=True, eq=False)
class Resource:
    """A registered resource: its name, scope and factory function."""

    name: str
    scope: str
    fn: Callable


@overload
def resource(fn: Callable[..., Any], /) -> Resource: ...
@overload
def resource(*, name: str | None = None,
             scope: str = "run") -> Callable[[Callable[..., Any]], Resource]: ...


def resource(fn=None, /, *, name=None, scope="run"):
    """Register a resource: ``@resource`` or ``@resource(name=..., scope="run"|"task")``."""
    if scope not in ("run", "task"):
        raise ValueError(f"@resource scope must be 'run' or 'task', got {scope!r}")

    def register(f: Callable) -> Resource:
        if not callable(f):
            raise TypeError(f"@resource expects a function, got {f!r}")
        res = Resource(name or f.__name__, scope, f)
        _REGISTRY[res.name] = res
        return res

    return register if fn is None else register(fn)


def inject(what: Resource | str) -> Any:
    """Ask for a resource by name or by the object ``@resource`` returned.

    The marker it returns stands for the resource's value: typed ``Any``, so
    ``def f(db: Connection = inject("db"))`` type-checks.
    """
    if isinstance(what, Resource):
        return Inject(what.name)
    if isinstance(what, str) and what:
        return Inject(what)
    raise TypeError(f"inject() takes a resource or its name, got {what!r}")


def injection_order(task, nargs: int, kwnames: tuple, named) -> tuple:
    """``(parameter or None, resource)`` for every injection of a call of ``task`` with
    ``nargs`` positional arguments and keywords ``kwnames``, in set-up order.

    ``named`` lists ``(argument index, resource)`` for the ``inject()`` arguments
    (indexes count positional arguments, then keywords); ``task.injects`` gives
    the ``inject()`` parameter defaults the call leaves to their default. The
    order is the order of the parameters they fill, as Python binds the call:
    the first parameter's resource is set up first (and torn down last); several
    filling ``*args`` or ``**kwargs`` go in argument order.
    """
    if not named and not task.injects:
        return ()  # (the commonest call: nothing to inject)
    orders = task.__dict__.setdefault("_injection_orders", {})  # a pure function of these
    key = (nargs, kwnames, tuple(named))
    order = orders.get(key)
    if order is None:
        order = orders[key] = _injection_order(task, nargs, kwnames, named)
    return order


def _injection_order(task, nargs: int, kwnames: tuple, named) -> tuple:
    given = set(kwnames)  # parameters the call fills: a default is not used there
    sig = task.signature
    rank: dict = {}
    var_pos = var_kw = None
    if sig is not None:
        for i, p in enumerate(sig.parameters.values()):
            rank[p.name] = i
            if p.kind is p.VAR_POSITIONAL:
                var_pos = i
            elif p.kind is p.VAR_KEYWORD:
                var_kw = i
            elif i < nargs and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                given.add(p.name)
    unknown = len(rank)  # no signature, or a name it does not have: after the rest
    keyed = []
    for at, r in named:
        if at < nargs:
            place = at if var_pos is None or at < var_pos else var_pos
        else:
            place = rank.get(kwnames[at - nargs], unknown if var_kw is None else var_kw)
        keyed.append(((place if sig is not None else -1, at), (None, r)))
    for p, r in task.injects:
        if p not in given:
            keyed.append(((rank.get(p, unknown), -1), (p, r)))
    keyed.sort(key=lambda item: item[0])
    return tuple(item for _, item in keyed)


def registered(name: str) -> Resource | None:
    return _REGISTRY.get(name)


class _Live:
    """One set-up resource instance and how to tear it down."""

    __slots__ = ("name", "scope", "value", "gen", "is_async")

    def __init__(self, name, scope, value, gen, is_async):
        self.name, self.scope, self.value, self.gen, self.is_async = (
            name, scope, value, gen, is_async)


def _setup_failed(res: Resource, exc: Exception) -> Exception:
    """``exc``, raised while setting ``res`` up: noted and warned."""
    exc.add_note(f"cascade: raised while setting up resource {res.name!r}")
    warn_resource(res.name, res.scope, "set up", exc)
    return exc


def _setup_now(res: Resource) -> _Live:
    """Set up ``res``, whose factory is a sync generator function."""
    gen = res.fn()
    value = next(gen)
    return _Live(res.name, res.scope, value, gen, False)


async def _setup(res: Resource) -> _Live:
    fn = res.fn
    if inspect.isasyncgenfunction(fn):
        gen = fn()
        value = await gen.__anext__()
        return _Live(res.name, res.scope, value, gen, True)
    if inspect.isgeneratorfunction(fn):
        return _setup_now(res)
    value = fn()
    if inspect.isawaitable(value):
        value = await value
    return _Live(res.name, res.scope, value, None, False)


async def _teardown(live: _Live) -> None:
    gen = live.gen
    if gen is None:
        return
    if live.is_async:
        try:
            await gen.__anext__()
        except StopAsyncIteration:
            return
        raise ResourceError(f"resource {live.name!r} yielded more than once; yield exactly once")
    try:
        next(gen)
    except StopIteration:
        return
    raise ResourceError(f"resource {live.name!r} yielded more than once; yield exactly once")


class RunResources:
    """The resources of one run: overrides, live run-scoped instances, teardown order."""

    def __init__(self, overrides: dict | None, emit, run_id: int):
        self.overrides = dict(overrides or {})
        self.live: list[_Live] = []  # run scope, in set-up order
        self.values: dict[str, Any] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.broken: dict[str, BaseException] = {}  # run-scoped set-ups that failed
        self.emit = emit
        self.run_id = run_id

    def check(self, needs) -> None:
        """Raise ``ResourceError`` for a (resource, task name) whose resource is not defined."""
        for n, task_name in needs:
            if n not in self.overrides and n not in _REGISTRY:
                known = sorted(set(_REGISTRY) | set(self.overrides))
                exc = ResourceError(
                    f"resource {n!r} injected into task {task_name!r} is not defined: decorate "
                    f"a function with @resource(name={n!r}) or pass "
                    f"run(..., resources={{{n!r}: value}})"
                    + (f" (known: {', '.join(known)})" if known else "")
                )
                noted(exc, task_name)
                raise exc

    def ready_values(self, names) -> dict | None:
        """Values for ``names`` when each is there already (given in ``resources=``, or
        run-scoped and set up by an earlier call of this run), else None: nothing to
        set up or tear down, so a call can take them with no await (``calls.invoke_now``)."""
        return picked(names, self.overrides, self.values)

    def values_now(self, names) -> dict | None:
        """``ready_values``, after setting up here and now each missing run-scoped
        resource whose factory is a sync generator function (nothing of its set-up
        waits: the first call of a fan-out on a database connection need not be a
        task). None when one is missing still: task-scoped, async, being set up by
        another call, or its set-up failed (recorded, as ``acquire`` records it, which
        then raises it for the call)."""
        values = self.ready_values(names)
        if values is not None:
            return values
        for name in names:
            if name in self.overrides or name in self.values:
                continue
            res = _REGISTRY.get(name)
            lock = self.locks.get(name)
            if (res is None or res.scope != "run" or name in self.broken
                    or not inspect.isgeneratorfunction(res.fn)
                    or (lock is not None and lock.locked())):
                return None
            try:
                live = _setup_now(res)
            except Exception as exc:
                self.broken[name] = _setup_failed(res, exc)
                return None
            self.live.append(live)
            self.values[name] = live.value
            self._announce(live)
        return self.ready_values(names)

    async def acquire(self, names, task_live: list) -> dict:
        """Values for ``names``, set up in that order; task-scoped ones are appended to
        ``task_live`` (the caller tears them down, also when this raises)."""
        out = {}
        for name in names:
            if name in self.overrides:
                out[name] = self.overrides[name]
                continue
            if name in self.values:
                out[name] = self.values[name]
                continue
            res = _REGISTRY.get(name)
            if res is None:
                self.check([(name, "?")])
            if res.scope == "task":
                live = await self._make(res)
                task_live.append(live)  # registered for teardown before anyone hears of it
                self._announce(live)
                out[name] = live.value
                continue
            lock = self.locks.get(name)
            if lock is None:
                lock = self.locks[name] = asyncio.Lock()
            async with lock:
                if name in self.broken:  # set up once per run, even when that failed
                    raise self.broken[name]
                if name not in self.values:
                    try:
                        live = await self._make(res)
                    except Exception as exc:
                        self.broken[name] = exc
                        raise
                    self.live.append(live)
                    self.values[name] = live.value
                    self._announce(live)
            out[name] = self.values[name]
        return out

    async def _make(self, res: Resource) -> _Live:
        try:
            return await _setup(res)
        except Exception as exc:
            _setup_failed(res, exc)
            raise

    def _announce(self, live: _Live) -> None:
        """Emit ``ResourceSetUp`` (after ``live`` is registered for teardown: a listener
        that raises fails the call, and the resource is still torn down)."""
        if self.emit is not None:
            self.emit(ResourceSetUp(self.run_id, live.name, live.scope))

    async def release(self, lives: list) -> BaseException | None:
        """Tear ``lives`` down in reverse order and return the error to raise, or None.

        Never raises, and never skips a teardown: a teardown that raises anything
        (a ``BaseException`` too), a cancellation while one awaits (it interrupts
        that teardown only), a listener that raises on ``ResourceTornDown``: the
        others still run. The error returned is the first ``KeyboardInterrupt``/
        ``SystemExit``/``CancelledError`` if any, else the first failure; every
        other failure is noted on it.
        """
        errors: list = []
        while lives:
            live = lives.pop()
            try:
                await _teardown(live)
            except BaseException as exc:  # noqa: BLE001 - collected, raised after the rest
                if isinstance(exc, Exception):
                    exc.add_note(f"cascade: raised while tearing down resource {live.name!r}")
                    warn_resource(live.name, live.scope, "tear down", exc)
                errors.append((f"tearing down resource {live.name!r}", exc))
            if self.emit is not None:
                try:
                    self.emit(ResourceTornDown(self.run_id, live.name, live.scope))
                except BaseException as exc:  # noqa: BLE001 - the listener's: same as above
                    errors.append((f"the on_event listener (ResourceTornDown of {live.name!r})",
                                   exc))
        return _first_error(errors)

    async def close(self) -> BaseException | None:
        """Tear down every run-scoped resource (reverse set-up order); never raises."""
        self.values.clear()
        return await self.release(self.live)


def _first_error(errors: list) -> BaseException | None:
    """The error a list of (what failed, exception) amounts to (see ``release``)."""
    if not errors:
        return None
    first = next((e for _, e in errors if not isinstance(e, Exception)), errors[0][1])
    for what, exc in errors:
        if exc is not first:  # every failure is reported, on the one raised
            first.add_note(f"cascade: {what} also failed: {describe(exc)}")
    return first
