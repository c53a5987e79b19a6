"""One run's context and lifecycle, shared by both engines.

``RunContext`` is plain state an engine reads while it runs: the event
listener (``emit``, None when nobody listens), the parameters, the run's
resources, the switches (``tail_cache``, ``hot_path``, ``yield_interval``) and
the set of asyncio tasks the engines started (so the lifecycle can cancel
and await every one of them: no task outlives its run).

``run_workflow`` is the lifecycle around an engine's ``execute(ctx, root)``:
normalise the target, emit ``RunStarted``, execute, cancel stragglers,
tear resources down, emit ``RunFinished``. ``SKIPPED`` is the value of a node
that did not run (a false ``run_if``, a skipped upstream).

Clean-up survives everything. asyncio re-raises a ``KeyboardInterrupt`` or
``SystemExit`` that leaves a task's coroutine straight out of the event loop,
past every ``finally`` of the run; so every task the run starts is wrapped
(``_guarded``) and such an exception ends its task as an ``Interruption``
carrying it, an ordinary failure of the run. The lifecycle unwraps it and
raises the original exception, after the clean-up. A cancellation that
arrives while the run is cleaning up (``wait_for`` expiring during a slow
teardown) interrupts only what was being awaited: the stragglers are still
awaited, every teardown still runs, then ``CancelledError`` leaves the run.
"""

from __future__ import annotations

import asyncio
import itertools

from .calls import DISTRIBUTED, LOCAL, SKIPPED
from .collector import COLLECTOR, MANY_TASKS
from .errors import Interruption, worse_error
from .events import RunFinished, RunStarted
from .folded import CURRENT_RUN
from .lazy import _LAZY_TYPES, Task, _contains_special
from .resources import RunResources

_run_ids = itertools.count(1)


class RunContext:
    """The state of one run, read by the engines."""

    __slots__ = (
        "run_id",  # int, unique per process
        "emit",  # the on_event listener, or None: test it before building an event
        "params",  # dict name -> value given to run()
        "_resources",  # RunResources, made at first use (most runs inject nothing)
        "tail_cache",  # use the shared template cache
        "hot_path",  # use the single-call tail loop
        "yield_interval",  # seconds of work before a loop yields to the event loop
        "tasks",  # asyncio tasks started for this run -> their coroutines (removed when done)
        "param_values",  # cache: Param/Env node -> resolved value, per run
        "route_runs",  # route object id -> the task evaluating it (routes of several routers)
        "failed",  # the first exception a task of the run raised, or None
        "main",  # the asyncio task running the engine (interrupted on a failure)
        "finishing",  # the engine returned or raised: failures no longer interrupt it
        "next_call",  # () -> the next call number of the run (events' ``call``)
        "executor",  # where calls run (calls.Executor); calls.LOCAL: in this process
        "limits",  # task -> asyncio.Semaphore of its ``concurrency`` (made at first need)
        "folded_parent",  # the parent call of the folded node being run (folded.py)
        "collecting",  # this run entered the collector's raised threshold (collector.py)
    )

    def __init__(self, *, on_event=None, params=None, resources=None, tail_cache=True,
                 hot_path=True, yield_interval=0.005, executor=None):
        on_event = listeners(on_event)
        if yield_interval is None or yield_interval < 0:
            raise ValueError(f"yield_interval must be >= 0 seconds, got {yield_interval!r}")
        self.run_id = next(_run_ids)
        self.emit = on_event
        self.params = dict(params or {})
        self._resources = (None if resources is None
                           else RunResources(resources, on_event, self.run_id))
        self.tail_cache = bool(tail_cache)
        self.hot_path = bool(hot_path)
        self.yield_interval = float(yield_interval)
        self.tasks: dict = {}  # asyncio task -> the coroutine it runs (see _guarded)
        self.param_values: dict = {}
        self.route_runs: dict = {}
        self.failed = None
        self.main = None
        self.finishing = False
        self.next_call = itertools.count(1).__next__
        self.executor = LOCAL if executor is None else executor
        self.limits = None
        self.folded_parent = None
        self.collecting = False

    def limit(self, task) -> asyncio.Semaphore:
        """The run's semaphore for ``task``'s ``concurrency`` (FIFO: waiters in call order)."""
        limits = self.limits
        if limits is None:
            limits = self.limits = {}
        sem = limits.get(task)
        if sem is None:
            sem = limits[task] = asyncio.Semaphore(task.concurrency)
        return sem

    @property
    def resources(self) -> RunResources:
        """The run's resources (overrides, live instances, teardown order)."""
        r = self._resources
        if r is None:
            r = self._resources = RunResources(None, self.emit, self.run_id)
        return r

    def value_of(self, node_obj):
        """The run's value of a Param/Env node (resolved once per run)."""
        pv = self.param_values
        key = id(node_obj)
        if key in pv:
            return pv[key][1]
        value = node_obj.resolve(self.params)
        pv[key] = (node_obj, value)
        return value

    def spawn(self, coro, context=None, guarded=None) -> asyncio.Task:
        """Start ``coro`` as a task of this run (tracked until done), in ``context``
        (default: a copy of the current one). ``guarded``: ``coro`` turns a
        ``KeyboardInterrupt``/``SystemExit`` into an ``Interruption`` itself, and
        this coroutine is the one to close if the task never starts."""
        if guarded is None:
            t = asyncio.get_running_loop().create_task(_guarded(coro), context=context)
        else:
            t = asyncio.get_running_loop().create_task(coro, context=context)
            coro = guarded
        return self.track(t, coro)

    def track(self, t: asyncio.Task, coro) -> asyncio.Task:
        """Track task ``t`` as one of this run's until it is done (``coro``: the coroutine
        to close if it never starts)."""
        tasks = self.tasks
        tasks[t] = coro
        t.add_done_callback(self._task_done)
        if len(tasks) == MANY_TASKS and not self.collecting:
            self.collecting = True  # a fan-out: many young objects live at once
            COLLECTOR.enter()
        return t

    def _task_done(self, t: asyncio.Task) -> None:
        # The first failure of any task interrupts the engine wherever it is
        # (a long sync loop, a direct await): it is cancelled, and the
        # lifecycle turns that cancellation back into the failure.
        coro = self.tasks.pop(t, None)
        if t.cancelled():
            if coro is not None:  # cancelled before its first step: never started
                coro.close()
            return
        exc = t.exception()  # retrieved here, so a later failure never goes unreported
        if exc is None or self.failed is not None:
            return
        self.failed = exc
        main = self.main
        if main is not None and not self.finishing and not main.done():
            main.cancel()

    async def cancel_all(self) -> asyncio.CancelledError | None:
        """Cancel every task of the run still going and wait for each to end.

        Never raises: a cancellation of the caller while it waits is returned
        (after the waiting: each one only cancels the stragglers again)."""
        cancelled = None
        while self.tasks:
            # finished ones (their done callbacks may not have run yet) need no waiting;
            # their exceptions are retrieved here (the loop may close before the callbacks)
            for t in [t for t in self.tasks if t.done()]:
                self._task_done(t)
            if not self.tasks:
                break
            pending = list(self.tasks)
            for t in pending:
                t.cancel()
            try:
                await asyncio.gather(*pending, return_exceptions=True)
            except asyncio.CancelledError as exc:
                cancelled = exc
                continue
            for t in pending:
                self.tasks.pop(t, None)
        return cancelled


async def _guarded(coro):
    """Await ``coro``; a ``KeyboardInterrupt``/``SystemExit`` from it ends the task as an
    ``Interruption`` (asyncio would re-raise it out of the event loop, skipping every
    clean-up of the run). A task cancelled before its first step never started
    ``coro``: ``RunContext._task_done`` closes it (no "never awaited" warning)."""
    try:
        return await coro
    except (KeyboardInterrupt, SystemExit) as exc:
        raise Interruption(exc) from None


def _carried(error):
    """The exception an ``Interruption`` carries; any other error unchanged."""
    return error.exc if type(error) is Interruption else error


def listeners(on_event):
    """The one callable delivering every event to ``on_event``, or None when nobody listens.

    ``on_event`` is None, a callable, or a list/tuple of callables (the
    listeners ``cascade_graph.observe`` offers, combinable): each listener gets
    every event, in list order. An empty list is nobody listening, so the run
    stays unobserved (``emit is None``) and pays nothing.
    """
    if on_event is None:
        return None
    if type(on_event) not in (list, tuple):
        if not callable(on_event):
            raise TypeError(f"on_event must be a callable or a list of callables, "
                            f"got {on_event!r}")
        return on_event
    for i, listener in enumerate(on_event):
        if not callable(listener):
            raise TypeError(f"on_event[{i}] must be callable (a function taking each event), "
                            f"got {listener!r}")
    chosen = tuple(on_event)
    if not chosen:
        return None
    if len(chosen) == 1:
        return chosen[0]
    return _Listeners(chosen)


class _Listeners:
    """Several listeners as one: each event goes to each, in order."""

    __slots__ = ("members",)

    def __init__(self, members: tuple):
        self.members = members  # the listeners, in the order given

    def __call__(self, event) -> None:
        for listener in self.members:
            listener(event)

    def __iter__(self):
        return iter(self.members)


def show_workflow(emit, target) -> None:
    """Hand the run's target to each listener defining ``observe_workflow(target)``.

    Called once per observed run, before ``RunStarted`` (the HTML report draws
    the workflow's graph from it); a listener without the method is untouched.
    """
    for listener in emit if type(emit) is _Listeners else (emit,):
        hook = getattr(listener, "observe_workflow", None)
        if hook is not None:
            hook(target)


def _identity(value):
    return value


#: the internal root of a container target: skipped lazies inside become None
TARGET = Task(_identity, name="<target>")
TARGET.internal = True
TARGET.container_target = True
TARGET.gathers = True
TARGET.__qualname__ = "TARGET"  # pickled by reference, like any task


def as_root(target):
    """The root lazy for ``target``, or None when nothing in it is lazy."""
    if type(target) in _LAZY_TYPES:
        return target
    if type(target) in (list, tuple, dict, set) and _contains_special(target):
        return TARGET(target)
    return None


async def run_workflow(execute, target, ctx: RunContext):
    """Run ``target`` with an engine's ``execute(ctx, root)`` in the new run ``ctx``:
    the shared lifecycle (the collector's threshold raised meanwhile when the run
    starts many tasks: collector.py).

    One coroutine for the whole lifecycle: every run pays for each frame here."""
    try:
        emit = ctx.emit
        if emit is not None:
            show_workflow(emit, target)
            emit(RunStarted(ctx.run_id))
        root = as_root(target)
        error = None
        value = target
        ctx.main = asyncio.current_task()
        current = CURRENT_RUN.set(ctx)  # for nodes that stand for several calls (folded.py)
        executor = ctx.executor
        distributed = None if executor is LOCAL else DISTRIBUTED.set(True)
        try:
            if distributed is not None:
                await executor.start()
            if root is not None:
                value = await execute(ctx, root)
                if distributed is not None:  # the result comes to the driver
                    value = await executor.fetch(value)
                if value is SKIPPED:
                    value = None
        except asyncio.CancelledError as exc:
            error = exc
            if ctx.failed is not None:  # interrupted by a task's failure: that is the error
                error = ctx.failed
                ctx.main.uncancel()
        except BaseException as exc:
            error = exc
        finally:
            CURRENT_RUN.reset(current)
        error = _carried(error)
        if ctx.tasks or distributed is not None or ctx._resources is not None:
            error = await _clean_up(ctx, error, distributed)
        else:
            ctx.finishing = True  # (nothing to clean up: most runs)
        if emit is not None:
            try:
                emit(RunFinished(ctx.run_id, error is None, error))
            except Exception as exc:  # the listener's own failure: it fails a good run
                error = worse_error(error, exc)
        if error is not None:
            raise error
        return value
    finally:
        if ctx.collecting:
            COLLECTOR.exit()


async def _clean_up(ctx: RunContext, error, distributed):
    """Cancel and await the run's stragglers, close a distributed executor, tear the
    resources down; never raises.

    Returns the error the run ends with: ``error``, or what the clean-up raised
    (a teardown's failure, a cancellation that arrived meanwhile) with the rest
    reported on it (``worse_error``)."""
    ctx.finishing = True
    executor = ctx.executor
    if distributed is not None:
        executor.cancel_all()
    if ctx.tasks:
        cancelled = await ctx.cancel_all()
        if cancelled is not None:
            error = worse_error(error, cancelled)
    if distributed is not None:
        DISTRIBUTED.reset(distributed)
        try:
            await executor.close()
        except BaseException as exc:  # noqa: BLE001 - reported like a teardown error
            error = worse_error(error, exc)
    res = ctx._resources
    if res is not None and res.live:
        teardown_error = await res.close()
        if teardown_error is not None:
            error = worse_error(error, teardown_error)
    return error
