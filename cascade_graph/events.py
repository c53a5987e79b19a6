"""Events: what a run reports to an ``on_event`` listener.

Every event is a small frozen record. Engines build an event only when a
listener is attached: they hold ``emit`` (the listener, or ``None``) and test
``if emit is not None`` before constructing anything, so an unobserved run
pays one comparison per would-be event and allocates nothing.

Ordering guarantees (both engines): ``RunStarted`` first, ``RunFinished``
last (also on failure); per invocation one ``TaskStarted`` then one
``TaskFinished`` or ``TaskFailed``; a ``TaskRetrying`` sits between a failed
attempt's ``TaskFailed`` and the next ``TaskStarted``; a tail call emits
``TailCall`` after the calling invocation's ``TaskFinished``.
"""

from __future__ import annotations

from time import perf_counter
from time import time as wall_clock

import attrs


@attrs.frozen(slots=True)
class Event:
    """Base of every event.

    ``run_id`` identifies the run (unique per process); ``time`` is
    ``time.perf_counter()`` when the event happened (keyword-only, filled in
    when the event is built).
    """

    run_id: int
    time: float = attrs.field(kw_only=True, factory=perf_counter)


@attrs.frozen(slots=True)
class RunStarted(Event):
    """The run began; nothing has executed yet. ``wall`` is ``time.time()`` then."""

    wall: float = attrs.field(kw_only=True, factory=wall_clock)


@attrs.frozen(slots=True)
class RunFinished(Event):
    """The run ended. ``ok`` is False when it failed; ``error`` is the exception or None."""

    ok: bool
    error: BaseException | None = None


@attrs.frozen(slots=True)
class TaskEvent(Event):
    """Base of the per-task events. ``task`` is the task's name.

    ``call`` is an int unique within the run for one invocation (one attempt)
    of a function: its ``TaskStarted``, ``TaskFinished``/``TaskFailed``,
    ``TaskRetrying`` and ``TailCall`` share it. A ``TaskSkipped`` has a call
    number of its own (nothing was invoked).
    """

    task: str
    call: int = attrs.field(kw_only=True, default=0)


@attrs.frozen(slots=True)
class TaskStarted(TaskEvent):
    """One invocation of the task's function (one attempt) begins.

    ``parent`` is the ``call`` whose tail call created this node (``None`` for
    a node of the run's own workflow); ``where`` is ``"local"`` or the
    address of the worker the call runs on.
    """

    parent: int | None = attrs.field(kw_only=True, default=None)
    where: str = attrs.field(kw_only=True, default="local")


@attrs.frozen(slots=True)
class TaskFinished(TaskEvent):
    """The invocation returned (a value, or a lazy call: then a ``TailCall`` follows).

    ``duration`` is the invocation's time in seconds.
    """

    duration: float = attrs.field(kw_only=True, default=0.0)


@attrs.frozen(slots=True)
class TaskFailed(TaskEvent):
    """The invocation raised ``error`` (or was cancelled because another task failed).

    ``duration`` is the invocation's time in seconds.
    """

    error: BaseException
    duration: float = attrs.field(kw_only=True, default=0.0)


@attrs.frozen(slots=True)
class TaskSkipped(TaskEvent):
    """The node did not run. ``reason``: condition, upstream, pruned or cached."""

    reason: str


@attrs.frozen(slots=True)
class TaskRetrying(TaskEvent):
    """Attempt ``attempt`` failed with ``error``; the next starts after ``delay`` seconds."""

    error: BaseException
    attempt: int
    delay: float


@attrs.frozen(slots=True)
class TailCall(TaskEvent):
    """The invocation returned a lazy call; ``target`` names the continuation's root task."""

    target: str


@attrs.frozen(slots=True)
class ResourceSetUp(Event):
    """Resource ``resource`` was set up for ``scope`` ('run' or 'task')."""

    resource: str
    scope: str


@attrs.frozen(slots=True)
class ResourceTornDown(Event):
    """Resource ``resource`` was torn down (its teardown code ran)."""

    resource: str
    scope: str


def _positional_maker(cls):
    """A constructor of ``cls`` taking every field positionally, in ``attrs.fields``
    order, that fills the slots directly: the same record as ``cls(...)`` at a
    fraction of the cost of attrs' keyword ``__init__`` (the call protocol builds
    two or three events per call of a listened run)."""
    names = [f.name for f in attrs.fields(cls)]
    setters = {}
    for name in names:
        owner = next(k for k in cls.__mro__ if name in k.__dict__)
        setters[f"set_{name}"] = owner.__dict__[name].__set__
    body = "".join(f"    set_{n}(e, {n})\n" for n in names)
    params = ", ".join(names) + "".join(f", set_{n}=set_{n}" for n in names)
    src = f"def make({params}, new=new, cls=cls):\n    e = new(cls)\n{body}    return e\n"
    namespace = {"new": object.__new__, "cls": cls, **setters}
    exec(src, namespace)
    make = namespace["make"]
    make.__doc__ = f"{cls.__name__}({', '.join(names)}), positionally"
    return make


#: positional constructors for the call protocol (cascade_graph/calls.py)
make_started = _positional_maker(TaskStarted)  # run_id, time, task, call, parent, where
make_finished = _positional_maker(TaskFinished)  # run_id, time, task, call, duration
make_failed = _positional_maker(TaskFailed)  # run_id, time, task, call, error, duration
make_tail_call = _positional_maker(TailCall)  # run_id, time, task, call, target

__all__ = [
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
]
