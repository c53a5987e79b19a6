"""Shared pieces of the reliability tests (tests/reliability/).

Every reliability test runs on both engines (the ``engine`` fixture in
conftest.py). Assertions are on counts and events, never on elapsed time,
except where a generous bound is the point of the test.

``run_tracked`` runs a target with ``arun`` in a fresh uvloop loop whose task
factory records every asyncio task created while the run was going, so a
test can check that nothing of the run is left behind: every task the run
created is done, and ``asyncio.all_tasks()`` holds only the test's own task.

``Events`` is an ``on_event`` listener that keeps every event and counts them
per (event type, task or resource name).

``ResourceLog`` makes uniquely named resources (the resource registry is
process-wide, so names are prefixed per test module) that log their set-up
and teardown, so a test can check "torn down exactly once, in reverse order".
"""

from __future__ import annotations

import asyncio
import collections
import itertools

import uvloop

from cascade_graph import RunFinished, RunStarted, resource
from cascade_vm import arun

ENGINES = ("vm", "graph")

#: iteration counts of the constant-memory measurement (test_scale, conftest.memory_workers)
SMALL, LARGE = 100_000, 1_000_000


class Events:
    """An ``on_event`` listener keeping every event in order."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, cls, name: str | None = None) -> list:
        """Events of exactly type ``cls`` (for task/resource ``name`` when given)."""
        return [e for e in self.events if type(e) is cls and (name is None or _name(e) == name)]

    def count(self, cls, name: str | None = None) -> int:
        return len(self.of(cls, name))

    def counts(self) -> collections.Counter:
        """Counter of (event type name, task or resource name) over the run."""
        return collections.Counter((type(e).__name__, _name(e)) for e in self.events)

    def check_framing(self) -> RunFinished:
        """``RunStarted`` first, ``RunFinished`` last and only once; returns the latter."""
        assert self.events, "no event at all"
        assert type(self.events[0]) is RunStarted, self.events[0]
        assert type(self.events[-1]) is RunFinished, self.events[-1]
        assert self.count(RunStarted) == 1 and self.count(RunFinished) == 1
        return self.events[-1]


def _name(event):
    return getattr(event, "task", None) or getattr(event, "resource", None)


def unretrieved(tasks) -> list:
    """Tasks that ended with an exception nobody retrieved (asyncio logs
    "Task exception was never retrieved" for each when it is collected)."""
    return [
        t for t in tasks if t.done() and not t.cancelled() and getattr(t, "_log_traceback", False)
    ]


class Outcome:
    """What ``run_tracked`` saw: value or error, and what the run left behind."""

    def __init__(self, value, error, pending, others, created, lost):
        self.value = value  # the run's value (None when it raised)
        self.error = error  # the exception arun raised, or None
        self.pending = pending  # tasks the run created that are not done afterwards
        self.others = others  # asyncio.all_tasks() minus the test's task, afterwards
        self.created = created  # how many asyncio tasks the run created
        self.lost = lost  # tasks of the run whose exception nobody retrieved

    def check_nothing_left(self) -> None:
        assert self.pending == [], f"tasks of the run still pending: {self.pending}"
        assert self.others == set(), f"asyncio tasks left behind: {self.others}"
        assert self.lost == [], f"tasks whose exception nobody retrieved: {self.lost}"


def install_task_recorder() -> list:
    """Record every task created from now on in the running loop; returns the list."""
    loop = asyncio.get_running_loop()
    created: list = []

    def factory(loop, coro, **kwargs):
        t = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(t)
        return t

    loop.set_task_factory(factory)
    return created


async def arun_tracked(target, **options) -> Outcome:
    """``arun(target, **options)`` in the running loop, recording what it leaves behind."""
    created = install_task_recorder()
    me = asyncio.current_task()
    value = error = None
    try:
        value = await arun(target, **options)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    pending = [t for t in created if not t.done()]
    others = {t for t in asyncio.all_tasks() if t is not me}
    lost = unretrieved(created)
    for t in lost:  # retrieve it here, so asyncio does not log it at a random later time
        t.exception()
    return Outcome(value, error, pending, others, len(created), lost)


def run_tracked(target, **options) -> Outcome:
    """``arun_tracked`` in a fresh uvloop event loop (as ``run()`` would use)."""
    return uvloop.run(arun_tracked(target, **options))


_unique = itertools.count(1)


class ResourceLog:
    """Uniquely named, logging resources: ``log`` holds ("up"|"down", name) in order."""

    def __init__(self, prefix: str):
        self.prefix = f"reliability.{prefix}.{next(_unique)}"
        self.log: list = []

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"

    def gen(self, short: str, scope: str = "run", *, fail_setup=None, fail_teardown=None):
        """Register a generator resource ``short``; returns its full name."""
        full = self.name(short)
        log = self.log

        def factory():
            log.append(("up", full))
            if fail_setup is not None:
                raise fail_setup
            yield f"value of {short}"
            log.append(("down", full))
            if fail_teardown is not None:
                raise fail_teardown

        factory.__name__ = short
        resource(factory, name=full, scope=scope)
        return full

    def agen(
        self,
        short: str,
        scope: str = "run",
        *,
        fail_setup=None,
        fail_teardown=None,
        setup_gate: asyncio.Event | None = None,
    ):
        """Register an async generator resource ``short``; returns its full name."""
        full = self.name(short)
        log = self.log

        async def factory():
            log.append(("up", full))
            await asyncio.sleep(0)
            if setup_gate is not None:
                await setup_gate.wait()
            if fail_setup is not None:
                raise fail_setup
            yield f"value of {short}"
            await asyncio.sleep(0)
            log.append(("down", full))
            if fail_teardown is not None:
                raise fail_teardown

        factory.__name__ = short
        resource(factory, name=full, scope=scope)
        return full

    def ups(self, name: str | None = None) -> list:
        return [n for k, n in self.log if k == "up" and (name is None or n == name)]

    def downs(self, name: str | None = None) -> list:
        return [n for k, n in self.log if k == "down" and (name is None or n == name)]

    def check_balanced(self, names) -> None:
        """Every resource in ``names`` set up is torn down exactly as often as set up."""
        for n in names:
            assert len(self.downs(n)) == len(self.ups(n)), (n, self.log)

    def check_run_scope_reverse(self, names) -> None:
        """Run-scoped ``names`` set up once each and torn down once each, in reverse order."""
        names = set(names)
        ups = [n for n in self.ups() if n in names]
        downs = [n for n in self.downs() if n in names]
        assert len(ups) == len(set(ups)), f"a run-scoped resource set up twice: {self.log}"
        assert downs == ups[::-1], f"teardown not once each in reverse order: {self.log}"


def cascade_notes(exc: BaseException) -> list:
    return [n for n in getattr(exc, "__notes__", None) or () if n.startswith("cascade:")]
