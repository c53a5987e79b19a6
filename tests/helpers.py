"""Shared pieces of the behaviour tests: engine parametrisation and an event recorder.

``@per_engine`` runs a test once per engine (argument ``engine``: "vm" or
"graph"); ``@per_switches`` once per ``tail_cache``/``hot_path`` combination
(argument ``switches``, a dict of keyword arguments for ``run``). ``run_on``
runs a target and records every event.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import weakref

import pytest

from cascade_graph import events as ev
from cascade_vm import arun, run

ENGINES = ("vm", "graph")

#: (tail_cache, hot_path) combinations; results and events must not depend on them
SWITCHES = (
    pytest.param({"tail_cache": True, "hot_path": True}, id="cache+hot"),
    pytest.param({"tail_cache": False, "hot_path": True}, id="nocache+hot"),
    pytest.param({"tail_cache": True, "hot_path": False}, id="cache+nohot"),
    pytest.param({"tail_cache": False, "hot_path": False}, id="nocache+nohot"),
)

#: run the test on both engines (argument ``engine``)
per_engine = pytest.mark.parametrize("engine", ENGINES)

#: run the test with every tail_cache/hot_path combination (argument ``switches``)
per_switches = pytest.mark.parametrize("switches", SWITCHES)


class Recorder:
    """An ``on_event`` listener keeping every event in order."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, cls, task: str | None = None) -> list:
        """The events of type ``cls`` (exact type), optionally for one task name."""
        return [e for e in self.events
                if type(e) is cls and (task is None or getattr(e, "task", None) == task)]

    def kinds(self) -> collections.Counter:
        """Counts of (event type name, task name or resource name)."""
        out = collections.Counter()
        for e in self.events:
            who = getattr(e, "task", None) or getattr(e, "resource", None)
            out[(type(e).__name__, who)] += 1
        return out

    def names(self) -> list:
        """The event type names in order."""
        return [type(e).__name__ for e in self.events]

    def index(self, cls, task: str | None = None, nth: int = 0) -> int:
        """The position of the ``nth`` event of type ``cls`` (for ``task``)."""
        seen = 0
        for i, e in enumerate(self.events):
            if type(e) is cls and (task is None or getattr(e, "task", None) == task):
                if seen == nth:
                    return i
                seen += 1
        raise AssertionError(f"no {cls.__name__} #{nth} for {task!r} in {self.names()}")


def run_on(engine, target, switches=None, **kw):
    """``run(target)`` on ``engine``; returns ``(value, Recorder)``."""
    rec = Recorder()
    value = run(target, engine=engine, on_event=rec, **(switches or {}), **kw)
    return value, rec


def run_failing(engine, target, switches=None, **kw):
    """Run a target expected to fail; returns ``(exception, Recorder)``."""
    rec = Recorder()
    try:
        run(target, engine=engine, on_event=rec, **(switches or {}), **kw)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc, rec
    raise AssertionError("the run was expected to fail but returned")


class Calls:
    """Counts calls by key (thread-safe enough for tests: the GIL holds).

    ``ref`` is a plain int naming this counter: a cached task closes over
    ``ref`` and calls ``Calls.of(ref).hit(...)``, since a closure over the
    counter object itself has no stable cache key (SPEC: ``.with_cache``).
    """

    _live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    _refs = itertools.count()

    def __init__(self):
        self.counts = collections.Counter()
        self.order: list = []
        self.ref = next(Calls._refs)
        Calls._live[self.ref] = self

    @staticmethod
    def of(ref: int) -> Calls:
        """The counter named ``ref``."""
        return Calls._live[ref]

    def hit(self, key):
        self.counts[key] += 1
        self.order.append(key)

    def __getitem__(self, key):
        return self.counts[key]

    def total(self) -> int:
        return sum(self.counts.values())


EVENT_CLASSES = (
    ev.RunStarted, ev.RunFinished, ev.TaskStarted, ev.TaskFinished, ev.TaskFailed,
    ev.TaskSkipped, ev.TaskRetrying, ev.TailCall, ev.ResourceSetUp, ev.ResourceTornDown,
)


async def until(predicate, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` on the running loop until it is true (fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class FakeClock:
    """A settable stand-in for the ``time`` module's ``time()`` (for ttl tests)."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def time(self) -> float:
        return self.now


def ticks_during(target, **options) -> int:
    """How often a ``sleep(0)`` ticker ran while ``arun(target, **options)`` ran."""

    async def main():
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        before = ticks
        await arun(target, **options)
        during = ticks - before
        stop = True
        await t
        return during

    return asyncio.run(main())
