"""Distributed executors: task calls on a Dask cluster (SPEC section 8).

The orchestration of a run (templates, tail calls, policies, events) stays in
the driver, in either engine; the executor seam (``calls.Executor``) only
decides where one invocation of a task's function runs. ``DaskExecutor``
hands the calls of plain sync tasks to a Dask ``distributed`` cluster:

- **Placement** (``runs_remotely``): sync tasks run on the cluster; async
  tasks, ``local=True`` tasks, tasks injecting a resource and the engine's
  internal tasks run in the driver.
- **Values stay where they are made.** ``call`` submits the function and
  returns the Dask ``Future`` of its value, not the value: a later cluster
  task receives the future as an argument (Dask resolves futures nested in
  builtin containers on the worker), so the value moves from worker to
  worker, never through the driver. ``fetch`` brings values to the driver,
  only when a driver-side consumer needs them (the protocol decides when).
  ``bytes_fetched`` counts what came to the driver, as Dask sizes it.
- **Tail calls from workers.** Whether a call's value is a lazy call is read
  from the future's type, which the scheduler reports with the completion,
  so nothing is transferred to find out; a lazy call is fetched (it is small:
  tasks pickle by reference, lazies by their calls, see lazy.py) and handed
  back to the engine like any tail call.
- **Where.** The worker that ran a call is asked of the scheduler only when
  the run has a listener (``TaskStarted.where``), one request for all the
  calls that completed in the same turn of the event loop. A failed call
  names the worker it failed on (the worker-side wrapper records it on the
  exception; a lost worker is named by Dask's ``KilledWorker``).
- **Failures.** A task's exception comes back as itself (type, message,
  traceback); the protocol adds the task note. Dask retries a call whose
  worker died, up to ``distributed.scheduler.allowed-failures``, then the
  call fails with ``KilledWorker`` naming the call's key (the task's name
  and a unique suffix) and the last worker. Retries of ``.with_retry`` are
  Cascade's: one submission per attempt.
- **Lifecycle.** ``start`` opens the client (and, with ``n_workers``, a
  temporary ``LocalCluster`` of worker processes) on the run's own event
  loop, with Dask's asynchronous API; ``close`` cancels what is still out
  and closes what ``start`` opened, also when the run failed or was
  cancelled. A client the user gave is used, never closed.

``distributed`` is an optional dependency (the ``dask`` extra); without it,
``start`` raises one ``ImportError`` line saying what to install.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
import weakref

from .calls import Executor
from .folded import CURRENT_RUN
from .lazy import _LAZY_TYPES, Task, task_from_ref, task_ref

_CONTAINERS = (list, tuple, dict, set)
_WHERE_ATTR = "_cascade_worker"  # set on a task's exception by the worker-side wrapper


def require_distributed():
    """The ``distributed`` module, or one clear ``ImportError`` line."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "running on Dask needs the 'dask' extra: pip install 'cascade[dask]'"
        ) from None
    return distributed


# ---------------------------------------------------------------------------
# What runs on a worker (pickled by reference: importable where cascade is)


def remote_call(task, args: tuple, kwargs: dict):
    """One invocation of ``task`` on a worker. The task travels as its name, a
    ``(module, qualified name)`` pair (what it pickles to anyway), so the scheduler,
    which unpickles the call but never runs it, needs no import of the task's module;
    a task pickling its own way (its class defines ``__reduce__``) travels as itself.
    A failure records the worker's address on the exception (read by
    ``DaskExecutor.where_failed``)."""
    if type(task) is tuple:
        task = task_from_ref(*task)
    try:
        return task.fn(*args, **kwargs)
    except Exception as exc:
        try:
            from distributed import get_worker

            setattr(exc, _WHERE_ATTR, get_worker().address)
        except Exception:  # not on a worker, or an exception refusing attributes
            pass
        raise


def is_lazy(value) -> bool:
    """Is ``value`` a lazy call? (Asked on a worker when a future's type is unknown.)"""
    return type(value) in _LAZY_TYPES


# ---------------------------------------------------------------------------
# The executor


class DaskExecutor(Executor):
    """Task calls on a Dask cluster: a temporary local one, or one reached by address
    or through a client.

    ``DaskExecutor(n_workers=4)``: a ``LocalCluster`` of 4 worker processes (one
    thread each unless ``threads_per_worker=`` says otherwise), started when the
    run begins and closed when it ends; further keywords go to ``LocalCluster``.
    ``DaskExecutor(address="tcp://host:8786")``: a client of that scheduler, for
    the run. ``DaskExecutor(client=client)``: that client (an asynchronous
    client on the run's event loop is used as it is; another one lends its
    scheduler's address to a client of the run's own). With no argument, a
    temporary ``LocalCluster`` with Dask's default size.
    """

    def __init__(self, n_workers: int | None = None, address: str | None = None,
                 client=None, **cluster_kwargs):
        given = [name for name, v in (("n_workers", n_workers), ("address", address),
                                      ("client", client)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"DaskExecutor takes one of n_workers=, address= or client=, "
                             f"got {' and '.join(given)}")
        if cluster_kwargs and given and given[0] != "n_workers":
            raise TypeError(f"DaskExecutor: {', '.join(sorted(cluster_kwargs))} configure a "
                            f"temporary LocalCluster; they do not apply with {given[0]}=")
        if n_workers is not None and (type(n_workers) is not int or n_workers < 1):
            raise ValueError(f"DaskExecutor: n_workers must be an int >= 1, got {n_workers!r}")
        if address is not None and not isinstance(address, str):
            raise TypeError(f"DaskExecutor: address must be a str such as "
                            f"'tcp://host:8786', got {address!r}")
        self.n_workers = n_workers
        self.address = address
        self.given_client = client
        self.cluster_kwargs = cluster_kwargs
        self.uploads: list[tuple[str, str]] = []  # (file, module name) sent to workers
        self.bytes_fetched = 0  # bytes of values brought to the driver in the run
        self.where = "dask"  # a call's place before its worker is known
        self.client = None  # the run's client (between start and close)
        self.cluster = None  # the temporary cluster, when this executor started one
        self._own_client = False
        self._pending: set = set()  # futures of calls not finished yet
        self._made: weakref.WeakSet = weakref.WeakSet()  # every future of the run
        self._cancelling: list = []  # cancellation requests to see through at close
        self._locator = None
        self._refs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # task -> name

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskExecutor(address={self.address!r})"
        if self.given_client is not None:
            return f"DaskExecutor(client={self.given_client!r})"
        return f"DaskExecutor(n_workers={self.n_workers!r})"

    def upload(self, path: str, module: str | None = None) -> None:
        """Send the Python file ``path`` to every worker when the run starts, importable
        there as ``module`` (default: the file's name without ``.py``)."""
        name = module or os.path.splitext(os.path.basename(path))[0]
        self.uploads.append((os.path.abspath(path), name))

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        distributed = require_distributed()
        if self.client is not None:
            raise RuntimeError(f"{self!r} is already running a run; one run at a time")
        self.bytes_fetched = 0
        try:
            await self._open(distributed)
            for path, module in self.uploads:
                await _upload(self.client, path, module, _scheduler_here(self.client))
        except BaseException:
            await self.close()
            raise
        self.where = f"dask:{self.client.scheduler.address}"
        self._locator = _Locator(self.client)

    async def _open(self, distributed) -> None:
        loop = asyncio.get_running_loop()
        given = self.given_client
        if given is not None:
            if given.asynchronous and getattr(given.loop, "asyncio_loop", None) is loop:
                self.client = given
                return
            address = given.scheduler.address
        elif self.address is not None:
            address = self.address
        else:
            options = {"processes": True, "threads_per_worker": 1, "dashboard_address": ":0",
                       "silence_logs": logging.CRITICAL}  # the run reports failures itself
            options.update(self.cluster_kwargs)
            if self.n_workers is not None:
                options["n_workers"] = self.n_workers
            self.cluster = await distributed.LocalCluster(asynchronous=True, **options)
            address = self.cluster
        try:
            self.client = await distributed.Client(address, asynchronous=True)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self._own_client = True

    async def close(self) -> None:
        client, cluster = self.client, self.cluster
        try:
            if self._pending:
                self.cancel_all()
            for request in self._cancelling:
                try:
                    await request
                except Exception:  # the client may be gone already: nothing left to cancel
                    pass
            if client is not None and not self._own_client:
                for fut in list(self._made):  # the user's client stays: let go of ours
                    fut.release()
        finally:
            self.client = self.cluster = self._locator = None
            self._pending = set()
            self._made = weakref.WeakSet()
            self._cancelling = []
            self.where = "dask"
            try:
                if client is not None and self._own_client:
                    await client.close()
            finally:
                self._own_client = False
                if cluster is not None:
                    await cluster.close()

    # -- placement -------------------------------------------------------
    def runs_remotely(self, task) -> bool:
        return not (getattr(task, "internal", False) or task.is_async
                    or getattr(task, "local", False) or task.injects)

    # -- calls -----------------------------------------------------------
    async def call(self, task, args: tuple, kwargs: dict) -> tuple[object, str]:
        client = self.client
        if client is None:
            raise RuntimeError(f"{self!r} is not started: run(..., executor=...) starts it")
        ref = self._refs.get(task)
        if ref is None:  # a task that cannot be found by its name: a clear error now
            ref = self._refs[task] = _sent_as(task)
        fut = client.submit(remote_call, ref, args, kwargs, pure=False,
                            key=f"{task.name}-{uuid.uuid4().hex}")
        self._made.add(fut)
        self._pending.add(fut)
        try:
            await fut.exception()  # waits for the call to end; transfers nothing
        except asyncio.CancelledError:
            self._cancel([fut])
            raise
        finally:
            self._pending.discard(fut)
        if fut.status != "finished":
            return await self._failure(task, fut)
        where = await self._where(fut)
        if await self._is_lazy(fut):  # a tail call: the lazy call comes to the driver
            return await self._gather_one(fut), where
        return fut, where

    async def _failure(self, task, fut):
        if fut.status == "cancelled":
            raise asyncio.CancelledError(f"the Dask call of task {task.name!r} was cancelled")
        exc = await fut.exception()
        if getattr(exc, _WHERE_ATTR, None) is None and hasattr(exc, "last_worker"):
            try:  # KilledWorker: the last worker that died running the call
                setattr(exc, _WHERE_ATTR, exc.last_worker.address)
            except AttributeError:
                pass
        tb = await fut.traceback()
        raise exc.with_traceback(tb)

    async def _where(self, fut) -> str:
        ctx = CURRENT_RUN.get()
        if ctx is None or ctx.emit is None or self._locator is None:
            return self.where  # nobody listens: not worth a request
        return await self._locator.where(fut.key, self.where)

    async def _is_lazy(self, fut) -> bool:
        kind = fut.type
        if isinstance(kind, type):
            return kind in _LAZY_TYPES
        # the type did not reach us (it could not be pickled, or was not reported): ask
        # the worker holding the value, which answers with one bool
        probe = self.client.submit(is_lazy, fut, pure=False)
        return bool(await probe.result())

    async def _gather_one(self, fut):
        value = await fut.result()
        self._count([value])
        return value

    def where_failed(self, exc: BaseException) -> str:
        """Where the call that raised ``exc`` ran: its worker when known."""
        return getattr(exc, _WHERE_ATTR, None) or self.where

    def is_remote(self, value) -> bool:
        return _is_future(value)

    async def fetch(self, value):
        handles = _handles_in(value)
        if not handles:
            return value
        if self.client is None:
            raise RuntimeError(f"{self!r}: a value of a finished run is needed; "
                               f"its cluster values were released when the run ended")
        unique = list({f.key: f for f in handles}.values())
        got = await self.client.gather(unique)
        self._count(got)
        by_key = dict(zip([f.key for f in unique], got))
        return _swap_in(value, by_key)

    def _count(self, values: list) -> None:
        from dask.sizeof import sizeof

        self.bytes_fetched += sum(sizeof(v) for v in values)

    # -- cancellation ----------------------------------------------------
    def cancel_all(self) -> None:
        pending = list(self._pending)
        self._pending.clear()
        if pending:
            self._cancel(pending)

    def _cancel(self, futures: list) -> None:
        client = self.client
        if client is None or not futures:
            return
        request = client.cancel(futures, force=True)
        if asyncio.iscoroutine(request):
            self._cancelling.append(asyncio.ensure_future(request))


# ---------------------------------------------------------------------------
# Pieces


def _sent_as(task):
    """What ``remote_call`` gets for ``task``: its name, or itself when its class
    pickles it its own way."""
    if type(task).__reduce__ is not Task.__reduce__:
        return task
    return task_ref(task)


def _is_future(value) -> bool:
    t = type(value)
    return t.__name__ == "Future" and t.__module__.startswith("distributed")


def _handles_in(value) -> list:
    """The Dask futures in ``value``, searched through exact builtin containers."""
    t = type(value)
    if t not in _CONTAINERS:
        return [value] if _is_future(value) else []
    found = []
    seen = set()
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _CONTAINERS:
            if id(v) not in seen:
                seen.add(id(v))
                stack.extend(v.values() if t is dict else v)
        elif _is_future(v):
            found.append(v)
    return found


def _swap_in(root, by_key: dict):
    """``root`` with each future replaced by its value (``by_key``), containers rebuilt
    with their exact type and order; containers holding no future are kept as they are.
    An iterative post-order walk (no recursion, whatever the nesting)."""
    if type(root) not in _CONTAINERS:
        return by_key[root.key] if _is_future(root) else root

    def items(c):
        return list(c.values()) if type(c) is dict else list(c)

    on_path = {id(root)}
    stack = [(root, items(root), [])]
    while True:
        c, its, done = stack[-1]
        if len(done) < len(its):
            v = its[len(done)]
            if type(v) in _CONTAINERS and id(v) not in on_path:
                on_path.add(id(v))
                stack.append((v, items(v), []))
            else:
                done.append(by_key[v.key] if _is_future(v) else v)
            continue
        stack.pop()
        on_path.discard(id(c))
        new = _rebuilt(c, its, done)
        if not stack:
            return new
        stack[-1][2].append(new)


def _rebuilt(c, old: list, new: list):
    if all(a is b for a, b in zip(old, new)):
        return c
    t = type(c)
    if t is dict:
        return dict(zip(c.keys(), new))
    return new if t is list else t(new)


class _Locator:
    """Which worker holds each finished call's value: the scheduler is asked once for
    every key asked about in the same turn of the event loop."""

    def __init__(self, client):
        self.client = client
        self.waiting: dict = {}  # key -> asyncio futures of the callers asking
        self.flush = None

    async def where(self, key, unknown: str) -> str:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.waiting.setdefault(key, []).append(answer)
        if self.flush is None:
            self.flush = loop.create_task(self._ask(unknown))
        return await answer

    async def _ask(self, unknown: str) -> None:
        await asyncio.sleep(0)  # let the calls ending in this turn join the request
        waiting, self.waiting, self.flush = self.waiting, {}, None
        try:
            holders = await self.client.scheduler.who_has(keys=list(waiting))
        except Exception:  # the scheduler went away: the run fails elsewhere
            holders = {}
        for key, answers in waiting.items():
            workers = holders.get(key) or ()
            where = next(iter(workers), unknown)
            for a in answers:
                if not a.done():
                    a.set_result(where)


async def _upload(client, path: str, module: str, scheduler_here: bool) -> None:
    """Send ``path`` to the workers and the scheduler, importable there as module
    ``module`` (a copy of that name, imported on arrival; workers that join later get
    it too). The scheduler unpickles the arguments of calls, which may be instances of
    the module's classes. A scheduler living in this process (a local cluster) is
    skipped: importing the copy there would replace the driver's module, and its tasks,
    in ``sys.modules``."""
    from distributed.diagnostics.plugin import SchedulerUploadFile, UploadFile

    folder = tempfile.mkdtemp(prefix="cascade-upload-")
    try:
        copy = os.path.join(folder, module + ".py")
        shutil.copyfile(path, copy)
        plugins = [UploadFile(copy)]
        if not scheduler_here:
            plugins.append(SchedulerUploadFile(copy))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for plugin in plugins:
        await client.register_plugin(plugin, name=f"cascade-upload-{module}")


def _scheduler_here(client) -> bool:
    """Does the client's scheduler run in this process?"""
    from distributed.scheduler import Scheduler

    address = client.scheduler.address
    return any(s.address == address for s in list(Scheduler._instances))


__all__ = ["DaskExecutor", "require_distributed"]
