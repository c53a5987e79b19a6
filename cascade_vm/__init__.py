"""Cascade's register VM, the ``run``/``arun`` facade, and the whole language.

``from cascade_vm import task, run, Param`` is all a flow needs: this package
re-exports every public name of ``cascade_graph`` (the language, events,
stores and exceptions) next to its own ``run`` and ``arun``.

``run(target, engine="vm")`` runs a workflow in a fresh event loop (uvloop's
where it is installed, else asyncio's own); ``await arun(target, ...)`` runs
it in the loop that awaits it. ``engine`` is "vm" (the register VM, default)
or "graph" (the graph executor); both share the template cache, the hot path,
events, resources and parameters.

For type checkers, ``run(LazyResult[R])`` is an ``R`` (and ``await
arun(...)`` too); any other target (a container of lazies) is ``Any``. The
overloads below repeat the options: a new option goes into them as well
(tests/test_typing.py checks that they match).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from cascade_graph import (
    CascadeError,
    Env,
    Event,
    InternalError,
    LazyResult,
    MemoryStore,
    Param,
    ParameterError,
    ResourceError,
    ResourceSetUp,
    ResourceTornDown,
    RouteKeyError,
    Router,
    RunFinished,
    RunStarted,
    SQLiteStore,
    TailCall,
    Task,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    inject,
    resource,
    task,
)
from cascade_graph.calls import Executor
from cascade_graph.context import RunContext, run_workflow
from cascade_graph.executor import execute as _graph_execute

from .runner import run_in_new_loop
from .vm import execute as _vm_execute

__version__ = "0.1.0"

ENGINES = {"vm": _vm_execute, "graph": _graph_execute}

R = TypeVar("R")
#: an ``on_event`` listener: called with every event of the run
Listener = Callable[[Any], object]


def _engine(engine):
    try:
        return ENGINES[engine]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown engine {engine!r}: use engine='vm' or engine='graph'"
        ) from None


@overload
async def arun(target: LazyResult[R], *, engine: str = "vm",
               params: Mapping[str, Any] | None = None,
               resources: Mapping[str, Any] | None = None,
               on_event: Listener | Iterable[Listener] | None = None, tail_cache: bool = True,
               hot_path: bool = True, yield_interval: float = 0.005,
        executor: Executor | None = None) -> R: ...
@overload
async def arun(target: object, *, engine: str = "vm",
               params: Mapping[str, Any] | None = None,
               resources: Mapping[str, Any] | None = None,
               on_event: Listener | Iterable[Listener] | None = None, tail_cache: bool = True,
               hot_path: bool = True, yield_interval: float = 0.005,
        executor: Executor | None = None) -> Any: ...


async def arun(target, *, engine="vm", params=None, resources=None, on_event=None,
               tail_cache=True, hot_path=True, yield_interval=0.005, executor=None):
    """Run ``target`` in the running event loop and return its value.

    ``executor`` decides where calls run (``cascade_graph.calls.Executor``; the
    default runs every call in this process)."""
    execute = _engine(engine)
    ctx = RunContext(params=params, resources=resources, on_event=on_event,
                     tail_cache=tail_cache, hot_path=hot_path, yield_interval=yield_interval,
                     executor=executor)
    return await run_workflow(execute, target, ctx)


@overload
def run(target: LazyResult[R], *, engine: str = "vm", params: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        on_event: Listener | Iterable[Listener] | None = None, tail_cache: bool = True,
        hot_path: bool = True, yield_interval: float = 0.005,
        executor: Executor | None = None) -> R: ...
@overload
def run(target: object, *, engine: str = "vm", params: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        on_event: Listener | Iterable[Listener] | None = None, tail_cache: bool = True,
        hot_path: bool = True, yield_interval: float = 0.005,
        executor: Executor | None = None) -> Any: ...


def run(target, *, engine="vm", params=None, resources=None, on_event=None,
        tail_cache=True, hot_path=True, yield_interval=0.005, executor=None):
    """Run ``target`` to completion in a new event loop and return its value."""
    _engine(engine)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run() cannot be called from a running event loop; use 'await arun(...)' instead"
        )
    return run_in_new_loop(arun(target, engine=engine, params=params, resources=resources,
                                on_event=on_event, tail_cache=tail_cache, hot_path=hot_path,
                                yield_interval=yield_interval, executor=executor))


# every public name of cascade_graph, re-exported (tests/test_exports.py checks the list)
__all__ = [
    "run",
    "arun",
    "__version__",
    "task",
    "Task",
    "LazyResult",
    "Router",
    "Param",
    "Env",
    "resource",
    "inject",
    "MemoryStore",
    "SQLiteStore",
    "Event",
    "RunStarted",
    "RunFinished",
    "TaskEvent",
    "TaskStarted",
    "TaskFinished",
    "TaskFailed",
    "TaskSkipped",
    "TaskRetrying",
    "TailCall",
    "ResourceSetUp",
    "ResourceTornDown",
    "CascadeError",
    "ParameterError",
    "RouteKeyError",
    "ResourceError",
    "InternalError",
]
