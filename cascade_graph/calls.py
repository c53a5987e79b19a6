"""The call protocol: what one invocation of a user function means, written once.

The engines decide *when* a call happens and where its value goes; this
module decides *how* a call happens; the run's executor decides *where* the
function runs. One invocation (one attempt) is:

1. ``begin``: a fresh call number (unique within the run) and, when someone
   listens, ``TaskStarted(call, parent, where)``. ``parent`` is the call whose
   tail call created the node (``None`` for the run's own workflow).
2. the function runs: inline (a plain sync task, called by the engine
   itself), awaited (``async def``), in a worker thread (``offload=True``),
   or on the executor (``Executor.call``) when the executor places it there;
   within the task's ``concurrency`` limit when it has one;
3. ``end``: ``TaskFinished(duration)``, then ``TailCall`` when the function
   returned a lazy call; or ``failed``: ``TaskFailed(duration)`` and the task
   note on the exception (``add_task_note``), unless it is a cancellation.

Internal tasks (a map's expansion, a batch, a run of links, the container
target, a pause) are not user calls: they emit nothing, and a failure inside
them is noted with their name only when no user call noted it first.

Engines keep specialised *no listener* loops (the hot path, the VM's
commonest call, the graph executor's simple node); their failure path is
``failed`` here, like everyone's. With a listener every engine, the hot path
and folded nodes call ``call_sync``/``call_async``/``invoke``, so the events
of a call are built in this module only. A call's value and its call number
travel together (``(value, call)``): the call number is the ``parent`` of the
continuation's calls when the value is a lazy call.

The executor seam (``Executor``): ``run(..., executor=...)`` hands the calls
it places remotely to ``Executor.call`` and gets back a value or a remote
handle; values stay remote until a driver-side consumer needs them
(``Executor.fetch``). The default, ``LOCAL``, places nothing remotely: every
call runs in this process, as above. This is the one place a distributed
executor plugs in, the way one scheduling core with an injected ``submit``
serves several executors.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import linecache
import os
import random
import types
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from itertools import starmap
from keyword import iskeyword
from time import perf_counter

from .errors import Interruption, add_task_note, task_of, worse_error
from .events import (
    TaskRetrying,
    TaskSkipped,
    make_failed,
    make_finished,
    make_started,
    make_tail_call,
)
from .lazy import _LAZY_TYPES, Inject
from .logs import warn_failed, warn_retry
from .store import DEFAULT_STORE, MISSING, CachedCall, cache_key

# ---------------------------------------------------------------------------
# Executors: where a call runs


class Executor:
    """Where task calls run. The base class runs nothing remotely.

    One executor serves one run at a time: ``start`` when the run begins,
    ``close`` when it ends (also on failure or cancellation). See
    docs/design.md, "The call protocol and the executor seam".
    """

    where = "local"  # TaskStarted.where for calls run in this process

    async def start(self) -> None:
        """The run begins: open what the executor needs (a cluster, a client)."""

    async def close(self) -> None:
        """The run ended: close what ``start`` opened, cancel what is still out."""

    def runs_remotely(self, task) -> bool:
        """Does ``task`` run on the executor (True) or in this process (False)?"""
        return False

    async def call(self, task, args: tuple, kwargs: dict) -> tuple[object, str]:
        """Run one invocation of ``task`` remotely: ``(value or remote handle, where)``.
        A lazy call returned by the function comes back as itself (a tail call)."""
        raise NotImplementedError(f"{type(self).__name__} places no task remotely")

    def is_remote(self, value) -> bool:
        """Is ``value`` a handle to a value held remotely?"""
        return False

    async def fetch(self, value):
        """``value`` with every remote handle in it (at any depth of builtin
        containers) replaced by the value it stands for."""
        return value

    def cancel_all(self) -> None:
        """Cancel every outstanding remote call of the run."""

    def where_failed(self, exc: BaseException) -> str:
        """``TaskStarted.where`` of a remote call that raised ``exc`` (its worker when
        the executor knows it)."""
        return self.where


class InProcess(Executor):
    """The default executor: every call in this process (inline, awaited, or in a thread)."""

    def __repr__(self) -> str:
        return "InProcess()"


LOCAL = InProcess()


class _Skipped:
    __slots__ = ()

    def __repr__(self):
        return "SKIPPED"

    def __bool__(self):
        return False


#: the value of a node that did not run (a false ``run_if``, a skipped upstream)
SKIPPED = _Skipped()

_KEYWORD_CALLERS: dict = {}


def keyword_caller(fn, npos: int, kwnames: tuple):
    """``fn`` taking its ``npos`` positional then its ``kwnames`` keyword values as
    positional arguments: one small function per (fn, layout), so an engine's
    positional call instructions serve keyword calls too."""
    key = (fn, npos, kwnames)
    caller = _KEYWORD_CALLERS.get(key)
    if caller is None:
        if len(_KEYWORD_CALLERS) >= 4096:
            _KEYWORD_CALLERS.clear()  # bounded: a caller is cheap to make again
        caller = _KEYWORD_CALLERS[key] = _make_keyword_caller(fn, npos, kwnames)
        caller.kwnames = kwnames  # shown by the VM's disassembly
    return caller


def positional_form(fn, npos: int, kwnames: tuple):
    """``fn`` itself when passing its ``kwnames`` keyword values by position after
    ``npos`` positional ones means the same call (they are its positional-or-keyword
    parameters ``npos, npos + 1, ...``, in that order), else None. Read from ``fn``'s
    own signature, not a wrapped function's (a wrapper may treat keywords its way)."""
    try:
        params = list(inspect.signature(fn, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    wanted = params[npos:npos + len(kwnames)]
    if len(wanted) != len(kwnames) or any(
            p.kind is not p.POSITIONAL_OR_KEYWORD for p in params[:npos + len(kwnames)]):
        return None
    return fn if all(p.name == k for p, k in zip(wanted, kwnames)) else None


def _make_keyword_caller(fn, npos: int, kwnames: tuple):
    """The caller of ``keyword_caller``. When every keyword is an identifier, its source
    names them (``def caller(p0, k0): return fn(p0, scale=k0)``): Python then passes
    them without a dict, which makes such a call about 3x cheaper than ``**``."""
    if all(name.isascii() and name.isidentifier() and not iskeyword(name) for name in kwnames):
        params = [f"p{i}" for i in range(npos)] + [f"k{i}" for i in range(len(kwnames))]
        passed = params[:npos] + [f"{name}=k{i}" for i, name in enumerate(kwnames)]
        source = f"def caller({', '.join(params)}):\n    return fn({', '.join(passed)})\n"
        # named inside this package, so tracebacks show its line and reports count its
        # frame as the engine's, like any frame of this module
        layout = f"{npos} positional, then {', '.join(kwnames)}"
        filename = os.path.join(os.path.dirname(__file__), f"<keyword caller: {layout}>")
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = {"fn": fn}
        exec(compile(source, filename, "exec"), namespace)
        return namespace["caller"]

    def caller(*values):  # a keyword only ** can pass (``f(**{"a-b": 1})``)
        return fn(*values[:npos], **dict(zip(kwnames, values[npos:])))

    return caller


_POOL = None


def _offload_pool() -> ThreadPoolExecutor:
    # Our own pool, not the loop's default executor: ``asyncio.run`` waits for
    # the default executor's threads, and a timed-out thread must not hold up
    # the end of the run.
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(thread_name_prefix="cascade-offload")
    return _POOL


# ---------------------------------------------------------------------------
# What an engine may do itself


#: True while templates are built and run for an executor that may place calls
#: remotely (set by the run lifecycle; such runs keep their own template cache)
DISTRIBUTED: ContextVar = ContextVar("cascade_distributed", default=False)


def direct(task) -> bool:
    """May an engine call ``task``'s function itself (inline, or awaited when it is
    ``async def``) with no protocol step but ``begin``/``end``? Not when it is
    offloaded, injects a resource or is ``async def`` with a concurrency limit, nor
    in a distributed run (the executor may place the call remotely, and a call made
    here gets its arguments fetched first): those calls (and calls with retry,
    timeout or cache) go through ``invoke``. (A sync call made on the event loop's
    thread runs alone: at most one invocation of its task runs at once, whatever
    its ``concurrency``; a limit has nothing to hold back there.)"""
    if task.offload or task.injects or (task.concurrency and task.is_async):
        return False
    return not DISTRIBUTED.get()


def needs_invoke(node) -> bool:
    """Must the call of template ``node`` take the general path, ``invoke``? Not for
    a policy ``call_inline`` makes in line."""
    p = node.policy
    if node.injects or not direct(node.task):
        return True
    return bool(p is not None and (p.retry or p.timeout or p.cache)
                and not inline_policy(p, node.task))


def inline_policy(policy, task) -> bool:
    """May a call of ``task`` under ``policy`` be made in line (``call_inline``): a sync
    task, no cache, a retry with no pause between attempts (no delay, no jitter),
    any timeout (an inline sync call is checked when it returns, as ``invoke`` does)."""
    if task.is_async or policy.cache is not None:
        return False
    r = policy.retry
    return r is None or not (r.delay or r.jitter)


# ---------------------------------------------------------------------------
# The steps of one call


def begin(ctx, task, parent, where: str = "local", since: float | None = None):
    """Start one invocation of ``task``: its ``TaskStarted`` (the token ``end`` and
    ``failed`` take), or None when nobody listens or the task is internal.
    ``since``: when the invocation began, for one reported once it ran (a remote
    call's place is known only then); its ``time``, hence the call's duration."""
    emit = ctx.emit
    if emit is None or task.internal:
        return None
    started = make_started(ctx.run_id, perf_counter() if since is None else since,
                           task.name, ctx.next_call(), parent, where)
    emit(started)
    return started


def end(ctx, started, value) -> int:
    """The invocation ``started`` returned ``value``: ``TaskFinished``, and ``TailCall``
    when ``value`` is a lazy call. Returns the call number (0 when unobserved)."""
    if started is None:
        return 0
    emit = ctx.emit
    call = started.call
    now = perf_counter()
    emit(make_finished(ctx.run_id, now, started.task, call, now - started.time))
    if type(value) in _LAZY_TYPES:
        emit(make_tail_call(ctx.run_id, now, started.task, call, value.task.name))
    return call


def failed(ctx, task, exc: BaseException, started=None) -> None:
    """The invocation of ``task`` (``started``, when it was observed) raised ``exc``:
    ``TaskFailed``, then the task note and the warning (a cancellation is not the
    task's error). An internal task (a map, a batch, a pause) never owns an error
    that a call made inside it raised and reported already (``task_of``)."""
    if started is not None:
        now = perf_counter()
        ctx.emit(make_failed(ctx.run_id, now, started.task, started.call, exc,
                             now - started.time))
    if not isinstance(exc, asyncio.CancelledError):
        if task.internal and task_of(exc) is not None:
            return
        add_task_note(exc, task.name)
        warn_failed(task.name, 0 if started is None else started.call, exc)


def noted(exc: BaseException, name: str) -> None:
    """Name ``name`` on ``exc``, an error of a node that is not a call (a router's
    selection, a map's lengths): the one task note, as ``failed`` adds it."""
    if not isinstance(exc, asyncio.CancelledError):
        add_task_note(exc, name)


def skipped(ctx, task, reason: str):
    """``task``'s node did not run: one ``TaskSkipped`` per call it stands for.
    Returns ``SKIPPED``, the node's value. (``task`` may be a Param or Env too:
    a route's root can be one.)"""
    emit = ctx.emit
    if emit is None or (getattr(task, "internal", False)
                        and not getattr(task, "reports_skips", False)):
        return SKIPPED
    name = getattr(task, "name", "?")
    for _ in range(getattr(task, "counts_as", 1)):
        emit(TaskSkipped(ctx.run_id, name, reason, call=ctx.next_call()))
    return SKIPPED


# ---------------------------------------------------------------------------
# Whole calls


def call_sync(ctx, task, fn, args, kwargs, parent):
    """One inline call ``fn(*args, **kwargs)`` of sync ``task`` with its events:
    ``(value, call)``. (``fn`` is the task's function, or an item's for a batch.)"""
    if task.folded:  # a batch or a run of links: its calls' parent (folded.py)
        ctx.folded_parent = parent
    started = begin(ctx, task, parent)
    try:
        value = fn(*args, **kwargs) if kwargs else fn(*args)
    except BaseException as exc:
        failed(ctx, task, exc, started)
        raise
    return value, end(ctx, started, value)


def call_inline(ctx, task, fn, args, kwargs, policy, parent, error=None):
    """``call_sync`` under an inline policy (``inline_policy``): each attempt with its
    events, ``TaskRetrying`` between them, as ``invoke`` would make them. ``(value, call)``.
    ``error``: the first attempt, made as a plain call in a run nobody listens to
    (``first_tries``), raised it; the attempts go on from there."""
    retry, timeout = policy.retry, policy.timeout
    number = 1
    quiet = ctx.emit is None  # (a map's items under a policy: no begin or end to call)
    if error is not None:
        if not _attempt_failed(ctx, task, retry, error, number, None):
            raise error
        number = 2
    while True:
        started = None if quiet else begin(ctx, task, parent)
        try:
            if timeout is None:
                value = fn(*args, **kwargs) if kwargs else fn(*args)
            else:
                value = _timed_inline(task, fn, args, kwargs or {}, timeout)
        except BaseException as exc:
            if _attempt_failed(ctx, task, retry, exc, number, started):
                number += 1
                continue
            raise
        return value, (0 if started is None else end(ctx, started, value))


def _attempt_failed(ctx, task, retry, exc, number: int, started) -> bool:
    """Attempt ``number`` of an inline call raised ``exc``: reported, and True when
    ``retry`` makes another attempt (``TaskRetrying`` emitted)."""
    failed(ctx, task, exc, started)
    if (retry is not None and number < retry.max_attempts
            and isinstance(exc, retry.retry_on) and isinstance(exc, Exception)):
        _retrying(ctx, task, retry, exc, number, started)
        return True
    return False


def first_tries(ctx, task, policy, keywords: bool, fn, rows) -> list:
    """The values of ``task``'s calls with the argument ``rows`` (as a batch holds
    them) under inline retry ``policy`` (no timeout) in a run nobody listens to: a
    first attempt is a plain call, made by a C-level ``starmap``, and an item whose
    call raises goes on with its next attempts (``call_inline``)."""
    out: list = []
    rest = iter(rows)
    while True:
        try:
            if keywords:
                out.extend(fn(*args, **kwargs) for args, kwargs in rest)
            else:
                out.extend(starmap(fn, rest))
            return out
        except BaseException as exc:  # item len(out) raised: its next attempts
            args = rows[len(out)]
            args, kwargs = args if keywords else (args, None)
            out.append(call_inline(ctx, task, fn, args, kwargs, policy, None, exc)[0])


async def call_async(ctx, task, args, kwargs, parent):
    """One call of ``async def`` ``task`` with no policy: ``(value, call)``."""
    started = begin(ctx, task, parent)
    try:
        value = await (task.fn(*args, **kwargs) if kwargs else task.fn(*args))
    except BaseException as exc:
        failed(ctx, task, exc, started)
        raise
    return value, end(ctx, started, value)


def start_async_quiet(ctx, task, args, kwargs, follow):
    """A call of ``async def`` ``task`` for a run nobody listens to, started eagerly
    (``start_eagerly``): its value now when it finished in its first step (a lazy
    value is its tail call, for the caller to go on with), else the
    ``asyncio.Task`` running the rest and then its tail call (by ``follow``), for
    the caller to read at first use. Its error is reported on ``task``."""
    coro = task.fn(*args, **kwargs) if kwargs else task.fn(*args)
    return start_eagerly(ctx, coro, task, follow)


def eager(task) -> bool:
    """May a quiet run start a call of ``task`` through ``invoke`` eagerly
    (``start_eagerly``)? Not an offloaded one: its thread cannot be stopped, so it
    starts when its task first runs, as it always did, never ahead of a failure the
    run meets in between."""
    return not task.offload


def start_eagerly(ctx, coro, task=None, follow=None):
    """Start ``coro`` as a task of the run, eagerly, as Python 3.12's eager tasks start:
    its first step runs now, in a copy of the context, with its task already
    ``asyncio.current_task()`` (so an ``asyncio.timeout``, a ``TaskGroup`` or a
    library's cancel scope entered in that step belongs to the task that runs the
    rest). A coroutine that finishes in that step (it awaits nothing, or only what
    is ready) gives its value now, with no trip through the event loop; otherwise
    that ``asyncio.Task`` is returned, running the rest. (A value that is itself an
    ``asyncio.Task`` comes back inside a finished task, so the two never mix.)

    ``task``: ``coro`` is a call of that task, whose error is reported on it
    (``failed``) and whose lazy value, once it ran as a task, is its tail call,
    evaluated there by ``follow``. A loop with a task factory (``set_task_factory``)
    makes every task of the run: then ``coro`` is started as such a task, as it is."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    if loop.get_task_factory() is not None:  # the loop's own tasks: made by its factory
        return ctx.spawn(_rest(ctx, coro, _UNSTEPPED, task, follow), context, coro)
    # Its task, not started yet (Python 3.11 has no eager tasks: a task made the
    # usual way is queued at once, and most calls never need theirs). It stands as
    # the current task through the first step, and it is started (Task.__init__)
    # only when the coroutine stopped there; a finished call's is simply dropped.
    t = _Task.__new__(_Task)
    outer = _CURRENT_TASKS.get(loop)
    _CURRENT_TASKS[loop] = t  # (asyncio's _enter_task, without its checks: one store)
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        value = stop.value
        if type(value) is asyncio.Task:
            return ctx.spawn(_given(value))
        return value
    except BaseException as exc:
        if task is not None:
            failed(ctx, task, exc)
        raise
    finally:
        if outer is None:
            del _CURRENT_TASKS[loop]
        else:
            _CURRENT_TASKS[loop] = outer
    _Task.__init__(t, _rest(ctx, coro, yielded, task, follow), loop=loop, context=context)
    return ctx.track(t, coro)


_Task = asyncio.Task
#: loop -> its current task: the table asyncio.current_task reads (and its C tasks
#: write as they step); asyncio keeps it as ``asyncio.tasks._current_tasks``
_CURRENT_TASKS: dict = asyncio.tasks._current_tasks


_UNSTEPPED = object()  # _rest's ``yielded`` for a coroutine whose first step is to come


async def _given(value):
    return value


@types.coroutine
def _rest(ctx, coro, yielded, task, follow):
    """The rest of an eagerly started coroutine (``start_eagerly``), in its task:
    ``coro`` driven from where its first step stopped, having yielded ``yielded``
    (what ``yield from coro`` would do had it made that step itself; ``_UNSTEPPED``:
    from its first step), then, for a call of ``task``, its tail call. One frame
    between the task and ``coro``; a ``KeyboardInterrupt`` or ``SystemExit`` leaves
    as an ``Interruption`` (see ``context._guarded``)."""
    try:
        try:
            if yielded is _UNSTEPPED:  # (a task of the loop's factory: from the start)
                yielded = coro.send(None)
            while True:
                try:
                    sent = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(sent)
        except StopIteration as stop:
            value = stop.value
        except GeneratorExit:
            raise
        except BaseException as exc:
            if task is not None:
                failed(ctx, task, exc)
            raise
        if task is not None and type(value) in _LAZY_TYPES:
            value = yield from follow(value)
        return value
    except (KeyboardInterrupt, SystemExit) as exc:
        raise Interruption(exc) from None


async def invoke(ctx, node, args: tuple, kwargs: dict, follow, parent):
    """The general path: the call of template ``node`` under its policies (cache,
    retry, timeout, injected resources, concurrency, executor): ``(value, call)``.

    With ``.with_cache`` the cached value is the node's *final* value, so the
    tail call is followed here, through the engine's ``follow(lazy, parent)``.
    """
    task = node.task
    policy = node.policy
    cache = policy.cache if policy is not None else None
    executor = ctx.executor
    if executor is not LOCAL and not executor.runs_remotely(task):
        args, kwargs = await _fetched(ctx, task, args, kwargs)  # a call made here
    if cache is None:
        return await _attempts(ctx, node, args, kwargs, parent)
    injected = {p for p, _ in node.injects if p}
    try:
        bound = _bind(task, args, kwargs, injected)
        if executor is not LOCAL:  # the key is made of the values
            bound = await executor.fetch(bound)
        key = cache_key(task, cache, bound)
        cached = CachedCall(cache.store if cache.store is not None else DEFAULT_STORE,
                            task.name, key, cache.ttl)
        hit = await cached.lookup()  # a SQLiteStore reads in a worker thread
    except Exception as exc:
        failed(ctx, task, exc)
        raise
    if hit is not MISSING:
        skipped(ctx, task, "cached")
        return hit, 0
    value, call = await _attempts(ctx, node, args, kwargs, parent, cached.check)
    if type(value) in _LAZY_TYPES:
        value = await follow(value, call)
    if value is not SKIPPED:
        try:
            await cached.save(await executor.fetch(value) if executor is not LOCAL else value)
        except Exception as exc:  # a tail call's value that cannot be stored, a locked file
            failed(ctx, task, exc)
            raise
    return value, call


async def _fetched(ctx, task, args, kwargs):
    """The arguments of a call made in this process in a distributed run, with every
    remote value in them fetched (a gathering internal task, one whose value is
    its arguments, takes them as they are: they stay remote)."""
    if task.internal and task.gathers:
        return args, kwargs
    executor = ctx.executor
    try:
        return await executor.fetch(args), await executor.fetch(kwargs)
    except Exception as exc:
        failed(ctx, task, exc)
        raise


async def _attempts(ctx, node, args, kwargs, parent, check=None):
    """Attempts of ``node``'s call until one returns or the retry policy gives up.
    ``check(value)`` (a cached call's) runs on each attempt's value before it counts
    as returned: a value the store cannot take fails that attempt (a remote value
    is fetched for it)."""
    task = node.task
    policy = node.policy
    retry = policy.retry if policy is not None else None
    timeout = policy.timeout if policy is not None else None
    executor = ctx.executor
    remote = executor is not LOCAL and executor.runs_remotely(task)
    number = 1
    while True:
        started = None if remote else begin(ctx, task, parent)
        since = perf_counter() if remote else None
        task_live: list = []
        try:
            a, kw = args, kwargs
            if node.injects:
                a, kw = await _inject(ctx, node, args, kwargs, task_live)
            limit = ctx.limit(task) if task.concurrency else None
            if limit is None:
                value, where = await _run(ctx, task, a, kw, timeout, remote)
            else:
                async with limit:
                    value, where = await _run(ctx, task, a, kw, timeout, remote)
            if remote:  # started where the executor says, known once it ran
                started = begin(ctx, task, parent, where, since)
            if check is not None:
                check(await executor.fetch(value) if remote else value)
        except BaseException as exc:
            if remote and started is None:
                started = begin(ctx, task, parent, executor.where_failed(exc), since)
            if task_live:
                err = await ctx.resources.release(task_live)
                if err is not None:
                    exc = worse_error(exc, err)
            if (retry is not None and number < retry.max_attempts
                    and isinstance(exc, retry.retry_on) and isinstance(exc, Exception)):
                failed(ctx, task, exc, started)
                await _pause_before_retry(ctx, task, retry, exc, number, started)
                number += 1
                continue
            failed(ctx, task, exc, started)
            raise exc
        if task_live:
            err = await ctx.resources.release(task_live)
            if err is not None:
                failed(ctx, task, err, started)
                raise err
        return value, end(ctx, started, value)


async def _pause_before_retry(ctx, task, retry, exc, number: int, started) -> None:
    """``TaskRetrying`` for failed attempt ``number``, then its pause."""
    delay = _retrying(ctx, task, retry, exc, number, started)
    if delay > 0:
        await asyncio.sleep(delay)


def _retrying(ctx, task, retry, exc, number: int, started) -> float:
    """``TaskRetrying`` (and the warning) for failed attempt ``number``: the pause due."""
    delay = retry.pause(number)
    if retry.jitter:
        delay += random.uniform(0, retry.jitter)
    if ctx.emit is not None and started is not None:
        ctx.emit(TaskRetrying(ctx.run_id, task.name, exc, number, delay, call=started.call))
    warn_retry(task.name, 0 if started is None else started.call, number, retry.max_attempts,
               delay)
    return delay


async def _inject(ctx, node, args, kwargs, task_live: list):
    """``args``/``kwargs`` with the node's injected resources set up and filled in."""
    values = await ctx.resources.acquire([r for _, r in node.injects], task_live)
    return _filled(node, args, kwargs, values)


def _filled(node, args, kwargs, values: dict) -> tuple:
    """``args``/``kwargs`` of ``node``'s call with its injected resources' ``values``."""
    a = tuple(_resolve_injects(x, values) for x in args)
    kw = {k: _resolve_injects(v, values) for k, v in kwargs.items()} if kwargs else {}
    for p, r in node.injects:
        if p is not None:
            kw[p] = values[r]
    return a, kw


def invoke_now(ctx, node, args, kwargs, parent):
    """``(value, call)`` of template ``node``'s call made here and now, or None when
    ``invoke`` must make it. Here and now: a sync task, in process, not offloaded (its
    concurrency limit, if any, holds nothing back: ``direct``), under no policy but one
    ``call_inline`` makes, whose injected resources are all there already
    (``RunResources.ready_values``: a run-scoped one set up by an earlier call, say
    the first turn of a tail loop; ``values_now`` in a quiet run). Nothing of such a
    call waits, so it is what ``_attempts`` would do, with the same events, without a
    coroutine or a task per call."""
    task = node.task
    if task.is_async or task.offload or ctx.executor is not LOCAL:
        return None
    policy = node.policy
    if policy is not None and not inline_policy(policy, task):
        return None
    names = [r for _, r in node.injects]
    # (with a listener, a resource is set up after the call's TaskStarted: by invoke)
    resources = ctx.resources
    values = resources.ready_values(names) if ctx.emit is not None else resources.values_now(names)
    if values is None:
        return None
    args, kwargs = _filled(node, args, kwargs, values)
    if policy is not None and (policy.retry or policy.timeout):
        return call_inline(ctx, task, task.fn, args, kwargs, policy, parent)
    return call_sync(ctx, task, task.fn, args, kwargs, parent)


def _resolve_injects(value, values: dict):
    """``value``, or the resource it asks for when it is an ``inject()`` marker (only
    top-level arguments are injected: a marker inside a container is passed as it is)."""
    return values[value.name] if type(value) is Inject else value


def _bind(task, args, kwargs, injected: set) -> dict:
    """The call's arguments by parameter name, in parameter order, defaults applied (for
    the cache key), resources left out."""
    binder = task.__dict__.get("_binder")
    if binder is None:
        binder = task.__dict__["_binder"] = _binder_of(task.signature)
    bound = binder(args, kwargs) if binder else None
    if bound is None:
        sig = task.signature
        if sig is None:
            bound = {str(i): a for i, a in enumerate(args)}
            bound.update(kwargs)
            return bound
        ba = sig.bind(*args, **kwargs)
        ba.apply_defaults()
        bound = ba.arguments
    return {k: v for k, v in bound.items() if k not in injected and type(v) is not Inject}


def _binder_of(sig):
    """For a signature of positional-or-keyword parameters only (the common one), a
    function binding ``(args, kwargs)`` as ``Signature.bind`` and ``apply_defaults``
    would (parameter order), or returning None when they would raise; else False."""
    if sig is None:
        return False
    names = []
    defaults = {}
    for p in sig.parameters.values():
        if p.kind is not p.POSITIONAL_OR_KEYWORD:
            return False
        names.append(p.name)
        if p.default is not p.empty:
            defaults[p.name] = p.default
    names = tuple(names)
    known = frozenset(names)

    def bind(args, kwargs):
        if len(args) > len(names):
            return None
        given = dict(zip(names, args))
        if not kwargs and len(args) == len(names):
            return given
        for k, v in kwargs.items():
            if k in given or k not in known:
                return None
            given[k] = v
        return picked(names, given, defaults)

    return bind


def picked(names, first: dict, second: dict) -> dict | None:
    """``{name: value}`` for each of ``names``, in order, from ``first`` or else from
    ``second``; None when one is in neither (a call's arguments over its parameters'
    defaults; a run's given resources over the live ones)."""
    out = {}
    for name in names:
        if name in first:
            out[name] = first[name]
        elif name in second:
            out[name] = second[name]
        else:
            return None
    return out


async def _run(ctx, task, args, kwargs, timeout, remote):
    """The function's run itself, on the executor or here: ``(value, where)``."""
    if remote:
        work = ctx.executor.call(task, args, kwargs)
        if timeout is None:
            return await work
        return await _within(work, timeout, task, "")
    fn = task.fn
    if task.is_async:
        work = fn(*args, **kwargs)
    elif task.offload:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        work = asyncio.get_running_loop().run_in_executor(_offload_pool(), call)
        if timeout is not None:
            return await _within(work, timeout, task, " (its thread keeps running)"), "local"
    elif timeout is None:
        return fn(*args, **kwargs), "local"
    else:
        return _timed_inline(task, fn, args, kwargs, timeout), "local"
    if timeout is None:
        return await work, "local"
    return await _within(work, timeout, task, ""), "local"


def _timed_inline(task, fn, args, kwargs, timeout: float):
    """An inline sync call cannot be interrupted: it runs to its end, then a call that
    overran its timeout fails with TimeoutError (its result is dropped)."""
    start = perf_counter()
    value = fn(*args, **kwargs)
    if perf_counter() - start > timeout:
        raise TimeoutError(
            f"task {task.name!r} timed out after {timeout:g} s (ran to completion "
            "inline; use offload=True or async def to stop waiting for it)")
    return value


async def _within(work, timeout, task, why: str):
    """``await work``, cancelled after ``timeout`` seconds (in the calling task: no task
    of its own, as ``asyncio.wait_for`` would make)."""
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise TimeoutError(f"task {task.name!r} timed out after {timeout:g} s{why}") from None


__all__ = [
    "DISTRIBUTED", "Executor", "InProcess", "LOCAL", "SKIPPED", "begin", "call_async",
    "eager", "invoke_now", "start_async_quiet", "start_eagerly",
    "call_inline", "call_sync", "end", "direct", "failed", "inline_policy", "invoke",
    "keyword_caller", "needs_invoke", "noted", "positional_form", "skipped",
]
