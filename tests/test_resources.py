"""Resources (SPEC section 2): registration, injection, scopes, teardown, overrides, events."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from cascade_graph import (
    ResourceSetUp,
    ResourceTornDown,
    RunFinished,
    TaskStarted,
    inject,
    resource,
    task,
)
from cascade_vm import arun, run
from tests.helpers import per_engine, per_switches, run_failing, run_on, until

_ids = itertools.count()


def uniq(prefix="res"):
    """A resource name no other test uses (the registry is process-wide)."""
    return f"{prefix}_{next(_ids)}"


class Log(list):
    """Records set-up and teardown steps."""


def gen_resource(name, log, value=None, scope="run", teardown_error=None):
    """Register a generator resource that logs 'up:name' / 'down:name'."""

    @resource(name=name, scope=scope)
    def factory():
        log.append(f"up:{name}")
        try:
            yield value if value is not None else f"value-of-{name}"
        except BaseException as exc:  # the run's error must not be thrown in
            log.append(f"thrown:{type(exc).__name__}")
            raise
        log.append(f"down:{name}")
        if teardown_error is not None:
            raise teardown_error

    return factory


def user(name):
    """A task that returns the injected resource's value."""

    @task(name=f"uses_{name}")
    def use(x, r=inject(name)):
        return (x, r)

    return use


@task
def ident(x):
    return x


# ---------------------------------------------------------------------------
# Kinds of resources


@per_engine
def test_function_resource(engine):
    """A plain function resource injects its return value."""
    name = uniq()

    @resource(name=name)
    def make():
        return {"conn": 1}

    assert run(user(name)(1), engine=engine) == (1, {"conn": 1})


@per_engine
def test_generator_resource_setup_and_teardown(engine):
    """A generator resource yields its value and its teardown runs after the run."""
    name, log = uniq(), Log()
    gen_resource(name, log, value="v")
    assert run(user(name)(1), engine=engine) == (1, "v")
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_async_generator_resource(engine):
    """An async generator resource is set up and torn down."""
    name, log = uniq(), Log()

    @resource(name=name)
    async def make():
        await asyncio.sleep(0)
        log.append("up")
        yield "async-value"
        await asyncio.sleep(0)
        log.append("down")

    assert run(user(name)(1), engine=engine) == (1, "async-value")
    assert log == ["up", "down"]


@per_engine
def test_resource_name_defaults_to_function_name(engine):
    """@resource without name= registers under the function's name."""

    @resource
    def cascade_test_default_named():
        return 5

    @task
    def use(r=inject("cascade_test_default_named")):
        return r

    assert run(use(), engine=engine) == 5


@per_engine
def test_inject_resource_object(engine):
    """inject() accepts the object @resource returned."""
    name = uniq()

    @resource(name=name)
    def make():
        return "obj"

    @task
    def use(r=inject(make)):
        return r

    assert run(use(), engine=engine) == "obj"


@per_engine
def test_inject_as_argument(engine):
    """inject(...) may be passed as an argument instead of a default."""
    name = uniq()

    @resource(name=name)
    def make():
        return "arg"

    @task
    def use(x, r):
        return (x, r)

    assert run(use(1, inject(name)), engine=engine) == (1, "arg")


@per_engine
def test_inject_as_keyword_argument(engine):
    """inject(...) may be passed by keyword."""
    name = uniq()

    @resource(name=name)
    def make():
        return "kw"

    @task
    def use(x, r=None):
        return (x, r)

    assert run(use(1, r=inject(name)), engine=engine) == (1, "kw")


@per_engine
def test_later_registration_replaces(engine):
    """A later @resource of the same name replaces the earlier one."""
    name = uniq()

    @resource(name=name)
    def first():
        return "first"

    @resource(name=name)
    def second():
        return "second"

    assert run(user(name)(0), engine=engine) == (0, "second")


@per_engine
def test_async_task_gets_resource(engine):
    """Async tasks receive injected resources too."""
    name = uniq()

    @resource(name=name)
    def make():
        return "v"

    @task
    async def use(r=inject(name)):
        await asyncio.sleep(0)
        return r

    assert run(use(), engine=engine) == "v"


@per_engine
def test_offloaded_task_gets_resource(engine):
    """Offloaded tasks receive injected resources too."""
    name = uniq()

    @resource(name=name)
    def make():
        return "v"

    @task(offload=True)
    def use(r=inject(name)):
        return r

    assert run(use(), engine=engine) == "v"


def test_bad_scope_rejected():
    """A scope other than run/task is a ValueError."""
    with pytest.raises(ValueError):
        resource(scope="process")


def test_inject_bad_argument():
    """inject() needs a name or a resource."""
    with pytest.raises(TypeError):
        inject(5)


# ---------------------------------------------------------------------------
# Run scope


@per_engine
def test_run_scope_set_up_once_per_run(engine):
    """A run-scoped resource used by many tasks is set up once and torn down once."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    use = user(name)
    assert len(run([use(i) for i in range(5)], engine=engine)) == 5
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_run_scope_shared_value(engine):
    """All tasks of a run get the same run-scoped object."""
    name = uniq()

    @resource(name=name)
    def make():
        return object()

    use = user(name)
    out = run([use(1), use(2)], engine=engine)
    assert out[0][1] is out[1][1]


@per_engine
def test_run_scope_fresh_per_run(engine):
    """Each run sets up its own run-scoped resource."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    run(user(name)(1), engine=engine)
    run(user(name)(1), engine=engine)
    assert log == [f"up:{name}", f"down:{name}"] * 2


@per_engine
@per_switches
def test_run_scope_once_in_tail_loop(engine, switches):
    """A run-scoped resource used in every iteration of a 1,000-step tail loop is set up once."""
    name, log = uniq(), Log()
    gen_resource(name, log, value=1)

    @task
    def loop(n, acc, r=inject(name)):
        return acc if n == 0 else loop(n - 1, acc + r)

    assert run(loop(1000, 0), engine=engine, **switches) == 1000
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_run_scope_concurrent_first_use_once(engine):
    """Concurrent async tasks needing one run resource set it up once."""
    name, log = uniq(), Log()

    @resource(name=name)
    async def make():
        log.append("up")
        await asyncio.sleep(0.01)
        yield "v"
        log.append("down")

    @task
    async def use(i, r=inject(name)):
        await asyncio.sleep(0)
        return r

    assert run([use(i) for i in range(10)], engine=engine) == ["v"] * 10
    assert log == ["up", "down"]


@per_engine
def test_run_scope_set_up_on_first_need(engine):
    """A resource is not set up when the only task needing it is skipped."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    assert run([user(name)(1).run_if(False), ident(2)], engine=engine) == [None, 2]
    assert log == []


@per_engine
def test_run_scope_teardown_reverse_order(engine):
    """Run-scoped resources are torn down in reverse order of set-up."""
    a, b, c, log = uniq("a"), uniq("b"), uniq("c"), Log()
    for n in (a, b, c):
        gen_resource(n, log)

    @task
    def use_a(r=inject(a)):
        return 1

    @task
    def use_b(x, r=inject(b)):
        return x + 1

    @task
    def use_c(x, r=inject(c)):
        return x + 1

    assert run(use_c(use_b(use_a())), engine=engine) == 3
    assert log == [f"up:{a}", f"up:{b}", f"up:{c}", f"down:{c}", f"down:{b}", f"down:{a}"]


@per_engine
def test_teardown_on_failure_without_throwing_in(engine):
    """On failure the code after yield runs normally (the error is not thrown in)."""
    name, log = uniq(), Log()
    gen_resource(name, log)

    @task
    def bad(x):
        raise KeyError("bad")

    exc, _ = run_failing(engine, bad(user(name)(1)))
    assert type(exc) is KeyError
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_teardown_on_cancellation(engine):
    """Cancelling the run tears resources down (code after yield runs)."""
    name, log = uniq(), Log()
    gen_resource(name, log)

    started = []

    @task
    async def slow(x, r=inject(name)):
        started.append(x)
        await asyncio.sleep(5)

    async def main():
        t = asyncio.ensure_future(arun(slow(1), engine=engine))
        await until(lambda: started)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_teardown_error_raised_after_all_teardowns(engine):
    """A teardown error is raised after every teardown ran."""
    a, b, log = uniq("a"), uniq("b"), Log()
    gen_resource(a, log)
    gen_resource(b, log, teardown_error=RuntimeError("teardown failed"))

    @task
    def use(r1=inject(a), r2=inject(b)):
        return 1

    exc, rec = run_failing(engine, use())
    assert type(exc) is RuntimeError and str(exc) == "teardown failed"
    assert f"down:{a}" in log and f"down:{b}" in log
    assert rec.events[-1].ok is False


@per_engine
def test_teardown_error_not_raised_when_run_failed(engine):
    """When the run already failed, its own error wins over a teardown error."""
    name, log = uniq(), Log()
    gen_resource(name, log, teardown_error=RuntimeError("teardown failed"))

    @task
    def bad(x):
        raise KeyError("original")

    exc, _ = run_failing(engine, bad(user(name)(1)))
    assert type(exc) is KeyError
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_setup_error_fails_run(engine):
    """An error in a resource's set-up fails the run with that error."""
    name = uniq()

    @resource(name=name)
    def broken():
        raise ConnectionError("cannot connect")

    exc, _ = run_failing(engine, user(name)(1))
    assert type(exc) is ConnectionError and str(exc) == "cannot connect"


# ---------------------------------------------------------------------------
# Task scope


@per_engine
def test_task_scope_per_call(engine):
    """A task-scoped resource is set up and torn down for each call."""
    name, log = uniq(), Log()
    gen_resource(name, log, scope="task")
    use = user(name)
    run([use(1), use(2), use(3)], engine=engine)
    assert log.count(f"up:{name}") == 3 and log.count(f"down:{name}") == 3


@per_engine
def test_task_scope_torn_down_after_each_call(engine):
    """Each task-scoped instance is torn down before the next sequential call sets up."""
    name, log = uniq(), Log()
    gen_resource(name, log, scope="task")
    use = user(name)

    @task
    def after(x, r=inject(name)):
        return x

    run(after(use(1)), engine=engine)
    assert log == [f"up:{name}", f"down:{name}"] * 2


@per_engine
def test_task_scope_per_attempt(engine):
    """A task-scoped resource is set up for each retry attempt."""
    name, log = uniq(), Log()
    gen_resource(name, log, scope="task")
    attempts = []

    @task
    def flaky(r=inject(name)):
        attempts.append(r)
        if len(attempts) < 3:
            raise OSError("again")
        return "ok"

    assert run(flaky().with_retry(3), engine=engine) == "ok"
    assert log == [f"up:{name}", f"down:{name}"] * 3


@per_engine
def test_task_scope_teardown_on_task_failure(engine):
    """A task-scoped resource is torn down when its task fails."""
    name, log = uniq(), Log()
    gen_resource(name, log, scope="task")

    @task
    def bad(r=inject(name)):
        raise KeyError("x")

    run_failing(engine, bad())
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_task_scope_in_tail_loop(engine):
    """A task-scoped resource in a tail loop is set up once per call."""
    name, log = uniq(), Log()
    gen_resource(name, log, value=1, scope="task")

    @task
    def loop(n, acc, r=inject(name)):
        return acc if n == 0 else loop(n - 1, acc + r)

    assert run(loop(10, 0), engine=engine) == 10
    assert log.count(f"up:{name}") == 11 and log.count(f"down:{name}") == 11


# ---------------------------------------------------------------------------
# Overrides and errors


@per_engine
def test_override_replaces_registered(engine):
    """run(resources=...) overrides a registered resource; its factory is not called."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    assert run(user(name)(1), engine=engine, resources={name: "fake"}) == (1, "fake")
    assert log == []


@per_engine
def test_override_unregistered_name(engine):
    """An override may supply a resource that is not registered at all."""
    name = uniq("never_registered")
    assert run(user(name)(1), engine=engine, resources={name: 42}) == (1, 42)


@per_engine
def test_unknown_resource_error_names_it(engine):
    """An injected name neither registered nor overridden is an error naming it."""
    name = uniq("missing_resource")
    exc, _ = run_failing(engine, user(name)(1))
    assert name in str(exc)


@per_engine
@per_switches
def test_unknown_resource_before_any_task_runs(engine, switches):
    """An unknown resource is reported before any task of the workflow runs."""
    name = uniq("missing_resource")
    ran = []

    @task
    def first():
        ran.append(1)
        return 1

    @task
    async def afirst():
        ran.append(2)
        return 2

    exc, rec = run_failing(engine, [first(), afirst(), user(name)(ident(3))], switches)
    assert name in str(exc)
    assert ran == [] and not rec.of(TaskStarted)


@per_engine
def test_unknown_resource_in_continuation(engine):
    """An unknown resource first met in a tail call fails when met, naming it."""
    name = uniq("missing_resource")

    @task
    def hop():
        return user(name)(1)

    exc, _ = run_failing(engine, hop())
    assert name in str(exc)


# ---------------------------------------------------------------------------
# Events


@per_engine
def test_resource_events(engine):
    """ResourceSetUp and ResourceTornDown name the resource and its scope."""
    run_name, task_name, log = uniq("r"), uniq("t"), Log()
    gen_resource(run_name, log)
    gen_resource(task_name, log, scope="task")

    @task
    def use(a=inject(run_name), b=inject(task_name)):
        return 1

    _, rec = run_on(engine, [use(), use()])
    ups = [(e.resource, e.scope) for e in rec.of(ResourceSetUp)]
    downs = [(e.resource, e.scope) for e in rec.of(ResourceTornDown)]
    assert sorted(ups) == sorted([(run_name, "run"), (task_name, "task"), (task_name, "task")])
    assert sorted(downs) == sorted(ups)
    run_id = rec.events[0].run_id
    assert all(e.run_id == run_id for e in rec.of(ResourceSetUp) + rec.of(ResourceTornDown))


@per_engine
def test_resource_teardown_before_run_finished(engine):
    """Run-scope teardown events come before RunFinished."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    _, rec = run_on(engine, user(name)(1))
    assert rec.index(ResourceTornDown) < rec.index(RunFinished)
    assert type(rec.events[-1]) is RunFinished


@per_engine
def test_resource_events_on_failure(engine):
    """Teardown events are emitted on failure too."""
    name, log = uniq(), Log()
    gen_resource(name, log)

    @task
    def bad(x):
        raise KeyError("x")

    _, rec = run_failing(engine, bad(user(name)(1)))
    assert len(rec.of(ResourceSetUp)) == len(rec.of(ResourceTornDown)) == 1


@per_engine
def test_run_scope_once_across_retries(engine):
    """A run-scoped resource is set up once however many attempts its task makes."""
    name, log = uniq(), Log()
    gen_resource(name, log)
    attempts = []

    @task
    def flaky(r=inject(name)):
        attempts.append(r)
        if len(attempts) < 3:
            raise OSError("again")
        return "ok"

    assert run(flaky().with_retry(3), engine=engine) == "ok"
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_run_scope_separate_for_concurrent_runs(engine):
    """Two runs at once in one loop each set up their own run-scoped resource."""
    name, log = uniq(), Log()

    @resource(name=name)
    async def make():
        log.append("up")
        yield object()
        log.append("down")

    @task
    async def use(r=inject(name)):
        await asyncio.sleep(0.01)
        return r

    async def main():
        return await asyncio.gather(arun(use(), engine=engine), arun(use(), engine=engine))

    a, b = asyncio.run(main())
    assert a is not b
    assert log.count("up") == 2 and log.count("down") == 2


@per_engine
def test_task_scope_teardown_on_cancellation(engine):
    """A task-scoped resource of a task cancelled by a sibling's failure is torn down."""
    name, log = uniq(), Log()
    gen_resource(name, log, scope="task")

    @task
    async def slow(r=inject(name)):
        await asyncio.sleep(5)

    @task
    async def bad():
        await asyncio.sleep(0.02)
        raise KeyError("x")

    @task
    def pair(a, b):
        return (a, b)

    exc, _ = run_failing(engine, pair(slow(), bad()))
    assert type(exc) is KeyError
    assert log == [f"up:{name}", f"down:{name}"]


@per_engine
def test_setup_failure_tears_down_earlier_resources(engine):
    """When a resource fails to set up, those already set up are torn down."""
    good, log = uniq("good"), Log()
    gen_resource(good, log)
    broken = uniq("broken")

    @resource(name=broken)
    def fails():
        raise ConnectionError("down")

    @task
    def first(r=inject(good)):
        return 1

    @task
    def second(x, r=inject(broken)):
        return x

    exc, _ = run_failing(engine, second(first()))
    assert type(exc) is ConnectionError
    assert log == [f"up:{good}", f"down:{good}"]


@per_engine
def test_a_call_whose_resources_are_there_is_made_in_line(engine, monkeypatch):
    """Once a run-scoped resource is set up (or given in ``resources=``), a sync call
    injecting it needs nothing that waits: it is made in line (``invoke_now``), each
    turn of a tail loop with no task of its own, with the value, events, retries and
    task note that ``invoke`` would give. A task-scoped resource still goes through
    ``invoke``."""
    from cascade_graph import TaskFailed, TaskFinished, TaskRetrying, TaskStarted

    name, per_call, log = uniq(), uniq("t"), Log()
    gen_resource(name, log, value=10)
    gen_resource(per_call, log, value=1, scope="task")
    made = _made_in_line(monkeypatch)
    flaky_at = []

    @task
    def loop(n, acc, db=inject(name)):
        if n == 5 and not flaky_at:  # (the root: the retry covers its own call)
            flaky_at.append(n)
            raise ConnectionError("once")
        return acc if n <= 0 else loop(n - 1, acc + db)

    assert run(loop(5, 0).with_retry(2), engine=engine) == 50
    assert made.count(True) >= 4 and log == [f"up:{name}", f"down:{name}"]
    flaky_at.clear()
    value, rec = run_on(engine, loop(5, 0).with_retry(2))
    assert value == 50
    assert len(rec.of(TaskStarted)) == len(rec.of(TaskFinished)) + 1 == 7
    assert len(rec.of(TaskFailed)) == len(rec.of(TaskRetrying)) == 1
    made.clear()
    assert run(loop(4, 1), engine=engine, resources={name: 2}) == 9
    assert all(made)  # given: every call made in line, the first one too

    @task(name="uses_per_call")
    def per(n, acc, r=inject(per_call)):
        return acc if n <= 0 else per(n - 1, acc + r)

    made.clear()
    assert run(per(3, 0), engine=engine) == 3
    assert not any(made) and log.count(f"up:{per_call}") == 4

    @task(name="boom_with_db")
    def boom(n, db=inject(name)):
        if n == 0:
            raise KeyError("k")
        return boom(n - 1)

    with pytest.raises(KeyError) as caught:
        run(boom(3), engine=engine)
    assert caught.value.__notes__ == ["cascade: raised by task 'boom_with_db'"]


@per_engine
def test_a_sync_generator_resource_is_set_up_by_the_first_call_in_line(engine, monkeypatch,
                                                                       caplog):
    """In a run nobody listens to, a run-scoped resource whose factory is a sync
    generator is set up by the first call that needs it, in line
    (``RunResources.values_now``): a fan-out on it makes every call in line, the first
    too, and sets it up and tears it down once. Its set-up failing fails the run as
    before (noted on the resource and the task, warned once). With a listener the
    order of events is kept: the call's TaskStarted, then ResourceSetUp."""

    name, log = uniq(), Log()
    gen_resource(name, log, value=3)
    made = _made_in_line(monkeypatch)

    @task
    def scaled(x, db=inject(name)):
        return x * db

    @task
    def total(xs):
        return sum(xs)

    for _ in range(2):  # first sight, then the template's run
        made.clear()  # calls on lazies: each a node, all made in line
        assert run(total([scaled(scaled(i)) for i in range(50)]), engine=engine) == 9 * 1225
        assert len(made) == 100 and all(made)
        made.clear()  # flat calls: a batch, which takes the resource in line itself
        assert run(total([scaled(i) for i in range(50)]), engine=engine) == 3 * 1225
        assert made == []
    assert log == [f"up:{name}", f"down:{name}"] * 4
    value, rec = run_on(engine, total([scaled(i) for i in range(3)]))
    assert value == 9
    first = rec.events.index(rec.of(TaskStarted, scaled.name)[0])
    assert rec.events.index(rec.of(ResourceSetUp)[0]) > first

    bad = uniq("bad")

    @resource(name=bad)
    def refuses():
        raise ConnectionError("no database")
        yield  # (unreachable: it makes a generator factory)

    @task(name="uses_bad")
    def uses_bad(x, db=inject(bad)):
        return x

    caplog.set_level("WARNING", logger="cascade")
    with pytest.raises(ConnectionError) as caught:
        run(total([uses_bad(i) for i in range(5)]), engine=engine)
    assert f"cascade: raised while setting up resource {bad!r}" in caught.value.__notes__
    assert "cascade: raised by task 'uses_bad'" in caught.value.__notes__
    assert sum("set up" in r.getMessage() for r in caplog.records) == 1


def _made_in_line(monkeypatch) -> list:
    """Count the engines' ``calls.invoke_now`` asks: the list gets True for each call made
    in line, False for each left to ``invoke``."""
    import cascade_graph.executor as ex
    import cascade_graph.firsttier as ft
    from cascade_graph import calls
    from cascade_vm import vm

    made: list = []
    real = calls.invoke_now

    def counted(ctx, node, args, kwargs, parent):
        got = real(ctx, node, args, kwargs, parent)
        made.append(got is not None)
        return got

    for module in (ex, ft, vm):
        monkeypatch.setattr(module, "invoke_now", counted)
    return made
