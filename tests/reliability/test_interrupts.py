"""KeyboardInterrupt and SystemExit inside a run, and clean-up that nothing skips (issue 16,
classes 6, 7 and 8).

- A task raising ``KeyboardInterrupt`` or ``SystemExit`` (inline, async,
  offloaded, under a policy, in a map, in a tail loop, in a started task's continuation): every
  resource is torn down, ``RunFinished(ok=False)`` is the last event, no asyncio
  task is left pending (nothing logs "Task was destroyed but it is pending!"),
  then the exception leaves ``run()``/``arun()`` as itself, also under
  ``asyncio.run`` with a ``try`` around ``await arun(...)``.
- Teardowns are never skipped: a teardown raising a ``BaseException``, a
  cancellation of the run during a slow async teardown, a listener raising on
  ``ResourceSetUp``/``ResourceTornDown``; an error whose ``__str__`` raises never
  replaces the error being reported.
- The first Ctrl-C during a long inline sync task stops it promptly (a
  subprocess running the CLI; the bound is generous), tears down, prints one
  line and exits 130.
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop

from cascade_graph import (
    ResourceSetUp,
    ResourceTornDown,
    RunFinished,
    TaskFailed,
    TaskStarted,
    inject,
    resource,
    task,
)
from cascade_vm import arun, run

from ._support import Events, ResourceLog, install_task_recorder

ROOT = Path(__file__).resolve().parents[2]

INTERRUPTS = [KeyboardInterrupt, SystemExit]


@contextlib.contextmanager
def no_leftovers():
    """Fail if asyncio reports a task destroyed while pending, or a coroutine that was
    never finished, during the block (or when its garbage is collected)."""
    records: list = []
    unraisable: list = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        yield
        gc.collect()
    finally:
        sys.unraisablehook = previous_hook
        logger.removeHandler(handler)
    assert records == [], records
    assert unraisable == [], unraisable


@task(name="pair")
def pair(a, b):
    return a, b


@task(name="sleeper")
async def sleeper():
    await asyncio.sleep(30)
    return "slept"


def _workflow(shape: str, exc_type, res: ResourceLog):
    """A workflow raising ``exc_type`` in a task placed as ``shape`` says, beside a
    sleeping async task, with a run-scoped and a task-scoped resource set up."""
    conn = res.gen("conn")
    pool = res.agen("pool")
    per_call = res.gen("per_call", scope="task")

    @task(name="opener")
    def opener(c=inject(conn), p=inject(pool)):
        return 1

    def boom():
        raise exc_type(3) if exc_type is SystemExit else exc_type()

    @task(name="raiser")
    def raiser(x):
        boom()

    @task(name="araiser")
    async def araiser(x):
        await asyncio.sleep(0)
        boom()

    @task(name="oraiser", offload=True)
    def oraiser(x):
        boom()

    @task(name="scoped")
    def scoped(x, t=inject(per_call)):
        boom()

    @task(name="loop")
    def loop(n):
        if n == 5:
            boom()
        return loop(n + 1)

    @task(name="then")
    async def then(x):
        await asyncio.sleep(0)
        return raiser(x)

    failing = {
        "inline": lambda: raiser(opener()),
        "async": lambda: araiser(opener()),
        "offload": lambda: oraiser(opener()),
        "policy": lambda: raiser(opener()).with_retry(3),
        "task-resource": lambda: scoped(opener()),
        "map": lambda: raiser.map([opener(), 2, 3]),
        "tail-loop": lambda: loop(opener()),
        "continuation": lambda: then(opener()),
    }[shape]()
    return pair(sleeper(), failing), [conn, pool], [per_call]


SHAPES = ["inline", "async", "offload", "policy", "task-resource", "map", "tail-loop",
          "continuation"]


def _check_cleaned_up(res, events, error, run_scoped, task_scoped):
    res.check_run_scope_reverse(run_scoped)
    res.check_balanced(task_scoped)
    finished = events.check_framing()
    assert finished.ok is False and finished.error is error
    for name in run_scoped:
        assert events.count(ResourceTornDown, name) == 1
    assert events.count(TaskFailed, "sleeper") == 1  # the sibling was cancelled


@pytest.mark.parametrize("exc_type", INTERRUPTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_interrupt_from_a_task_cleans_up_then_leaves_run(engine, shape, exc_type):
    """run(): resources torn down, RunFinished(ok=False), then the exception itself."""
    res = ResourceLog("interrupt-run")
    target, run_scoped, task_scoped = _workflow(shape, exc_type, res)
    events = Events()
    with no_leftovers():
        with pytest.raises(exc_type) as raised:
            run(target, engine=engine, on_event=events)
    _check_cleaned_up(res, events, raised.value, run_scoped, task_scoped)


@pytest.mark.parametrize("exc_type", INTERRUPTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_interrupt_from_a_task_is_caught_around_await_arun(engine, shape, exc_type):
    """asyncio.run with a try around ``await arun``: the try sees it; nothing is left."""
    res = ResourceLog("interrupt-arun")
    target, run_scoped, task_scoped = _workflow(shape, exc_type, res)
    events = Events()

    async def main():
        created = install_task_recorder()
        try:
            await arun(target, engine=engine, on_event=events)
        except exc_type as exc:
            caught = exc
        else:
            caught = None
        await asyncio.sleep(0)
        me = asyncio.current_task()
        return caught, [t for t in created if not t.done()], asyncio.all_tasks() - {me}

    with no_leftovers():
        caught, pending, others = asyncio.run(main())
    assert isinstance(caught, exc_type)
    assert pending == [] and others == set()
    _check_cleaned_up(res, events, caught, run_scoped, task_scoped)


def test_system_exit_keeps_its_code(engine):
    @task(name="quit")
    def quit_(x):
        raise SystemExit(7)

    with pytest.raises(SystemExit) as raised:
        run(pair(sleeper(), quit_(1)), engine=engine)
    assert raised.value.code == 7


@pytest.mark.parametrize("exc_type", INTERRUPTS)
@pytest.mark.parametrize("when", ["first step", "after an await", "in its tail call"])
def test_interrupt_from_an_async_task_in_a_quiet_run(engine, exc_type, when):
    """Nobody listens (async calls start eagerly, calls.start_async_quiet): the
    exception leaves run() after the clean-up, wherever in the call it was raised."""
    ran = []

    @task(name="stop")
    def stop(x):
        raise exc_type()

    @task(name="late")
    async def late(x):
        if when != "first step":
            await asyncio.sleep(0)
        if when == "in its tail call":
            return stop(x)
        raise exc_type()

    @task(name="other")
    async def other(x):
        try:
            await asyncio.sleep(5)
        finally:
            ran.append("other ended")
        return x

    with no_leftovers():
        with pytest.raises(exc_type):
            run(pair(other(1), late(2)), engine=engine)
    assert ran == ["other ended"]


def test_interrupt_is_never_retried(engine):
    calls = []

    @task(name="once")
    def once():
        calls.append(1)
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run(once().with_retry(5), engine=engine)
    assert calls == [1]


# ---------------------------------------------------------------------------
# Teardowns are never skipped


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_teardown_raising_a_base_exception_runs_every_other_teardown(engine, exc_type):
    """A BaseException from one teardown: every other one still runs, then it is raised."""
    res = ResourceLog("base-teardown")
    first = res.gen("first")
    bad = res.gen("bad", fail_teardown=exc_type())
    last = res.agen("last")
    events = Events()

    @task(name="use")
    def use(a=inject(first), b=inject(bad), c=inject(last)):
        return "ok"

    with no_leftovers():
        with pytest.raises(exc_type) as raised:
            run(use(), engine=engine, on_event=events)
    res.check_run_scope_reverse([first, bad, last])
    finished = events.check_framing()
    assert finished.ok is False and finished.error is raised.value
    for name in (first, bad, last):
        assert events.count(ResourceTornDown, name) == 1


def test_interrupt_in_teardown_wins_over_the_run_error(engine):
    """The run failed with ValueError and a teardown raised KeyboardInterrupt: the
    interrupt leaves the run (as from a ``finally``), the ValueError noted on it."""
    res = ResourceLog("base-teardown-err")
    bad = res.gen("bad", fail_teardown=KeyboardInterrupt())
    other = res.gen("other")

    @task(name="fails")
    def fails(b=inject(bad), o=inject(other)):
        raise ValueError("the task's error")

    with pytest.raises(KeyboardInterrupt) as raised:
        run(fails(), engine=engine)
    assert raised.value.__context__ is not None
    assert any("the task's error" in n for n in raised.value.__notes__)
    res.check_run_scope_reverse([bad, other])


def test_task_scoped_teardown_raising_base_exception(engine):
    res = ResourceLog("base-teardown-task")
    outer = res.gen("outer", scope="task")
    bad = res.gen("bad", scope="task", fail_teardown=SystemExit(4))

    @task(name="use")
    def use(a=inject(outer), b=inject(bad)):
        return "ok"

    with pytest.raises(SystemExit) as raised:
        run(use(), engine=engine)
    assert raised.value.code == 4
    res.check_balanced([outer, bad])
    assert res.downs() == [bad, outer]


def _slow_teardown(res: ResourceLog, short: str, scope: str = "run") -> str:
    """Register an async resource whose teardown awaits 30 s (logged when it ends)."""
    full = res.name(short)
    log = res.log

    async def factory():
        log.append(("up", full))
        yield "slow"
        try:
            await asyncio.sleep(30)
        finally:
            log.append(("down", full))

    resource(factory, name=full, scope=scope)
    return full


@pytest.mark.parametrize("slow", ["first", "middle", "last"])
def test_cancelled_during_a_slow_async_teardown(engine, slow):
    """wait_for(arun(...)) expiring while an async teardown awaits: that teardown is
    cancelled cleanly (its finally runs), every other teardown runs, RunFinished is
    last, nothing is left pending and the caller sees TimeoutError."""
    res = ResourceLog("slow-teardown")
    names = {short: _slow_teardown(res, short) if short == slow else res.agen(short)
             for short in ("first", "middle", "last")}
    events = Events()

    @task(name="use")
    def use(a=inject(names["first"]), b=inject(names["middle"]), c=inject(names["last"])):
        return "ok"

    async def main():
        created = install_task_recorder()
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(arun(use(), engine=engine, on_event=events), 0.2)
        elapsed = time.perf_counter() - started
        return elapsed, [t for t in created if not t.done()]

    with no_leftovers():
        elapsed, pending = uvloop.run(main())
    assert elapsed < 10  # the 30 s teardown was cancelled, not awaited
    assert pending == []
    res.check_run_scope_reverse(list(names.values()))
    finished = events.check_framing()
    assert finished.ok is False and isinstance(finished.error, asyncio.CancelledError)
    for name in names.values():
        assert events.count(ResourceTornDown, name) == 1


def test_cancelled_during_teardown_of_a_failed_run(engine):
    """The run failed, then the caller's timeout expires during a slow teardown: the
    cancellation leaves (the caller sees TimeoutError), the failure noted on it."""
    res = ResourceLog("slow-teardown-failed")
    slow = _slow_teardown(res, "slow")
    other = res.agen("other")
    events = Events()

    @task(name="fails")
    def fails(a=inject(other), b=inject(slow)):
        raise ValueError("the run's failure")

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(arun(fails(), engine=engine, on_event=events), 0.2)

    with no_leftovers():
        uvloop.run(main())
    res.check_run_scope_reverse([other, slow])
    finished = events.check_framing()
    assert isinstance(finished.error, asyncio.CancelledError)
    assert isinstance(finished.error.__context__, ValueError)
    assert any("the run's failure" in n for n in finished.error.__notes__)


def test_cancelled_during_a_task_scoped_teardown_is_not_retried(engine):
    res = ResourceLog("slow-teardown-retry")
    slow = _slow_teardown(res, "slow", scope="task")
    attempts = []

    @task(name="flaky")
    def flaky(s=inject(slow)):
        attempts.append(1)
        raise ConnectionError("down")

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(arun(flaky().with_retry(5), engine=engine), 0.2)

    with no_leftovers():
        uvloop.run(main())
    assert attempts == [1]
    res.check_balanced([slow])


def test_cancelled_while_stragglers_finish_still_tears_down(engine):
    """Cancelled again while the run waits for a cancelled task's slow clean-up: the
    run still waits for it and still tears every resource down."""
    res = ResourceLog("slow-straggler")
    conn = res.agen("conn")
    state = {"started": False, "cleaned": False}

    @task(name="stubborn")
    async def stubborn(c=inject(conn)):
        state["started"] = True
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # a slow clean-up, interrupted by the second cancel
            state["cleaned"] = True

    @task(name="fails")
    async def fails(x):
        while not state["started"]:
            await asyncio.sleep(0.001)
        raise ValueError("boom")

    events = Events()

    async def main():
        t = asyncio.ensure_future(arun(pair(stubborn(), fails(1)), engine=engine,
                                       on_event=events))
        while not events.count(TaskFailed, "fails"):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
        return t

    with no_leftovers():
        uvloop.run(main())
    res.check_run_scope_reverse([conn])
    events.check_framing()
    assert events.count(ResourceTornDown, conn) == 1


@pytest.mark.parametrize("event_type", [ResourceSetUp, ResourceTornDown])
@pytest.mark.parametrize("scope", ["run", "task"])
def test_listener_raising_on_resource_events_skips_no_teardown(engine, event_type, scope):
    """A listener raising on ResourceSetUp or ResourceTornDown fails the run, but every
    resource that was set up is torn down (the first one included)."""
    res = ResourceLog("listener")
    a = res.gen("a", scope=scope)
    b = res.agen("b", scope=scope)
    c = res.gen("c", scope=scope)
    seen = Events()

    def listener(event):
        seen(event)
        if type(event) is event_type:
            raise RuntimeError(f"listener failed on {type(event).__name__}")

    @task(name="use")
    def use(x=inject(a), y=inject(b), z=inject(c)):
        return "ok"

    with no_leftovers():
        with pytest.raises(RuntimeError, match="listener failed"):
            run(use(), engine=engine, on_event=listener)
    res.check_balanced([a, b, c])
    assert res.downs() == res.ups()[::-1]
    assert seen.count(ResourceTornDown) == len(res.downs())
    assert type(seen.events[-1]) is RunFinished


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


def test_teardown_error_whose_str_raises_does_not_replace_the_task_error(engine):
    res = ResourceLog("unprintable")
    bad = res.gen("bad", fail_teardown=Unprintable())
    also_bad = res.gen("also_bad", fail_teardown=Unprintable())

    @task(name="fails")
    def fails(b=inject(bad), c=inject(also_bad)):
        raise ValueError("the task's own error")

    with pytest.raises(ValueError, match="the task's own error") as raised:
        run(fails(), engine=engine)
    notes = raised.value.__notes__
    assert any("<unprintable Unprintable>" in n for n in notes), notes
    res.check_run_scope_reverse([bad, also_bad])


def test_task_scoped_teardown_error_whose_str_raises(engine):
    res = ResourceLog("unprintable-task")
    bad = res.gen("bad", scope="task", fail_teardown=Unprintable())

    @task(name="fails")
    def fails(b=inject(bad)):
        raise ValueError("the task's own error")

    with pytest.raises(ValueError, match="the task's own error") as raised:
        run(fails(), engine=engine)
    assert any("<unprintable Unprintable>" in n for n in raised.value.__notes__)


def test_two_unprintable_teardown_errors_in_a_good_run(engine):
    res = ResourceLog("unprintable-two")
    one = res.gen("one", fail_teardown=Unprintable())
    two = res.gen("two", fail_teardown=Unprintable())

    @task(name="ok")
    def ok(a=inject(one), b=inject(two)):
        return 1

    with pytest.raises(Unprintable) as raised:
        run(ok(), engine=engine)
    assert any("<unprintable Unprintable>" in n for n in raised.value.__notes__)
    res.check_run_scope_reverse([one, two])


# ---------------------------------------------------------------------------
# Ctrl-C during an inline sync task (the CLI, in a subprocess)

SPIN_FLOW = '''
import sys, time
from cascade_graph import task, resource, inject

@resource(name="spin_log")
def spin_log():
    yield None
    print("teardown ran", file=sys.stderr, flush=True)

@task
def opener(log=inject("spin_log")):
    return 60.0

@task
def spin(seconds: float):
    print("spinning", file=sys.stderr, flush=True)
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

@task
def spin_scoped(seconds: float, log=inject("spin_log")):
    return spin.fn(seconds)

main = spin(opener())
scoped = spin_scoped(60.0)
'''


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery is POSIX")
@pytest.mark.parametrize("target", ["main", "scoped"])
def test_first_ctrl_c_stops_an_inline_sync_task_promptly(engine, tmp_path, target):
    """SIGINT while a 60 s CPU-bound inline task runs: it stops within a generous bound,
    the resource is torn down, one line is printed and the exit status is 130."""
    flow = tmp_path / "spin.py"
    flow.write_text(SPIN_FLOW)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade_vm", "run", str(flow), "--engine", engine,
         "--target", target],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        # a shell may start background jobs with SIGINT ignored, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        assert proc.stderr.readline().strip() == "spinning"
        time.sleep(0.1)  # well inside the loop
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        stopped_after = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert stopped_after < 5, f"took {stopped_after:.1f} s to stop a 60 s task"
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.splitlines() == ["teardown ran", "interrupted"], err
    assert out == ""


def test_ctrl_c_in_user_code_is_raised_there():
    """The SIGINT handler's rule: user frames get the KeyboardInterrupt at once, the
    engine's and the event loop's frames get a cancellation instead."""
    from cascade_vm import runner

    def user_frame():
        return sys._getframe()

    assert runner.in_user_code(user_frame())
    assert not runner.in_user_code(None)
    inner = asyncio.sleep(0)
    engine_coro = runner._then_shut_down(inner)
    try:
        assert not runner.in_user_code(engine_coro.cr_frame)
    finally:
        engine_coro.close()
        inner.close()


def test_started_events_balance_when_interrupted(engine):
    """Every TaskStarted still gets its TaskFinished or TaskFailed."""
    events = Events()

    @task(name="bang")
    def bang(x):
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run(pair(sleeper(), bang(1)), engine=engine, on_event=events)
    assert events.count(TaskStarted, "bang") == 1
    assert events.count(TaskFailed, "bang") == 1
    for name in ("sleeper", "bang"):
        assert events.count(TaskStarted, name) == events.count(TaskFailed, name)
