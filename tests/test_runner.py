"""run()'s own event loop (cascade_vm.runner): what asyncio.Runner guarantees, kept."""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest

from cascade_graph import task
from cascade_vm import run

ENGINES = ["vm", "graph"]


@pytest.mark.parametrize("engine", ENGINES)
def test_tasks_left_running_by_user_code_are_cancelled(engine):
    """A task a workflow's code starts and forgets is cancelled before run() returns."""
    seen = {}

    async def forgotten():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    @task
    async def starts_and_forgets():
        seen["task"] = asyncio.get_running_loop().create_task(forgotten())
        await asyncio.sleep(0)
        return 1

    assert run(starts_and_forgets(), engine=engine) == 1
    assert seen["cancelled"] and seen["task"].done()


@pytest.mark.parametrize("engine", ENGINES)
def test_default_executor_is_shut_down(engine):
    """asyncio.to_thread in a task uses the loop's default executor; run() joins its threads."""
    before = {t.ident for t in threading.enumerate()}

    @task
    async def in_thread():
        return await asyncio.to_thread(lambda: 41) + 1

    assert run(in_thread(), engine=engine) == 42
    lingering = [t for t in threading.enumerate()
                 if t.ident not in before and t.name.startswith("asyncio")]
    assert lingering == []


@pytest.mark.parametrize("engine", ENGINES)
def test_async_generators_are_closed(engine):
    """An async generator left open by a task is finalised before run() returns."""
    closed = []

    async def numbers():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    @task
    async def first():
        gen = numbers()
        value = await gen.__anext__()
        first.keep = gen  # still referenced: only the loop's shutdown closes it
        return value

    assert run(first(), engine=engine) == 1
    assert closed == [True]


@pytest.mark.parametrize("engine", ENGINES)
def test_sigint_handler_is_restored(engine):
    """run() handles SIGINT only while it runs, and puts the previous handler back."""
    @task
    def one():
        return 1

    assert run(one(), engine=engine) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
