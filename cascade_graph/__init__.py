"""Cascade's workflow language, templates, graph executor and shared runtime.

Public API: ``task``, ``Task``, ``LazyResult``, ``Router``, ``Param``, ``Env``,
``resource``, ``inject``, ``MemoryStore``, ``SQLiteStore``, the events, and the
project's exceptions. Run workflows with ``cascade_vm.run`` / ``arun``.
"""

from . import logs as _logs  # noqa: F401 - the "cascade" logger gets its NullHandler
from .errors import CascadeError, InternalError, ParameterError, ResourceError, RouteKeyError
from .events import (
    Event,
    ResourceSetUp,
    ResourceTornDown,
    RunFinished,
    RunStarted,
    TailCall,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
)
from .lazy import LazyResult, Task, task
from .params import Env, Param
from .resources import inject, resource
from .router import Router
from .store import MemoryStore, SQLiteStore

__all__ = [
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
