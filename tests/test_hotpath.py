"""The hot path (SPEC sections 2 and 4): the single-call tail loop both engines share."""

from __future__ import annotations

from cascade_graph import TailCall, TaskFinished, TaskStarted, hotpath, task
from cascade_graph.template import build_template
from cascade_vm import run
from tests.helpers import Calls, per_engine, run_on, ticks_during


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@task
def ident(x):
    return x


def _counting_hot_loop(monkeypatch):
    """Patch both engines' hot loop with a counting wrapper; returns the counter."""
    calls = Calls()
    real = hotpath.hot_loop

    async def counted(ctx, lazy, parent=None):
        calls.hit(lazy.task.name)
        return await real(ctx, lazy, parent)

    import cascade_graph.executor as ex
    from cascade_vm import vm

    monkeypatch.setattr(ex, "hot_loop", counted)
    monkeypatch.setattr(vm, "hot_loop", counted)
    return calls


@per_engine
def test_flat_loop_takes_hot_path(engine, monkeypatch):
    """A flat countdown runs in one hot loop."""
    calls = _counting_hot_loop(monkeypatch)
    assert run(countdown(1000), engine=engine) == "done"
    assert calls.total() == 1


@per_engine
def test_hot_path_off_never_used(engine, monkeypatch):
    """hot_path=False never enters the hot loop."""
    calls = _counting_hot_loop(monkeypatch)
    assert run(countdown(100), engine=engine, hot_path=False) == "done"
    assert calls.total() == 0


@per_engine
def test_non_flat_template_skips_hot_path(engine, monkeypatch):
    """A call with a lazy argument is not run by the hot loop."""
    calls = _counting_hot_loop(monkeypatch)
    assert run(ident(ident(3)), engine=engine) == 3
    assert calls.total() == 0


@per_engine
def test_hot_loop_hands_back_other_shape(engine):
    """The hot loop returns a lazy of another shape to the engine, which goes on."""

    @task
    def add(a, b):
        return a + b

    @task
    def loop(n):
        return add(ident(n), 1) if n <= 0 else loop(n - 1)

    assert run(loop(100), engine=engine) == 1


@per_engine
def test_hot_loop_reenters_after_other_shape(engine):
    """A loop alternating flat and non-flat steps keeps going to the right value."""

    @task
    def flat(n, acc):
        if n <= 0:
            return acc
        if n % 10 == 0:
            return deep(n - 1, ident(acc + 1))
        return flat(n - 1, acc + 1)

    @task
    def deep(n, acc):
        return flat(n, acc)

    assert run(flat(100, 0), engine=engine) == 100


@per_engine
def test_hot_path_events_same_as_slow_path(engine):
    """The hot loop emits the same events as the slow path."""
    _, hot = run_on(engine, countdown(100))
    _, slow = run_on(engine, countdown(100), hot_path=False)
    assert hot.names() == slow.names()
    assert hot.kinds() == slow.kinds()


@per_engine
def test_hot_path_events_counts(engine):
    """A 101-step countdown on the hot path emits 101 starts, finishes and 100 tail calls."""
    _, rec = run_on(engine, countdown(100))
    assert len(rec.of(TaskStarted)) == 101
    assert len(rec.of(TaskFinished)) == 101
    assert len(rec.of(TailCall)) == 100


@per_engine
def test_hot_path_keyword_arguments(engine):
    """Flat calls with keyword arguments keep their keywords in the hot loop."""

    @task
    def kw(n, *, tag):
        return tag if n <= 0 else kw(n - 1, tag=tag + "x")

    assert run(kw(5, tag=""), engine=engine) == "xxxxx"


@per_engine
def test_hot_path_keyword_layout_change(engine):
    """Switching between positional and keyword layouts keeps the values right."""

    @task
    def sw(n, acc=0):
        if n <= 0:
            return acc
        return sw(n - 1, acc=acc + 1) if n % 2 else sw(n - 1, acc + 1)

    assert run(sw(11), engine=engine) == 11


@per_engine
def test_hot_path_async_task(engine):
    """An async flat loop runs on the hot path to its value."""

    @task
    async def adown(n):
        return n if n <= 0 else adown(n - 1)

    assert run(adown(10_000), engine=engine) == 0


@per_engine
def test_hot_loop_error_has_task_note(engine):
    """An error inside the hot loop carries the task note."""
    from cascade_graph.errors import task_of

    @task(name="boom_loop")
    def boom(n):
        if n == 0:
            raise KeyError("k")
        return boom(n - 1)

    try:
        run(boom(50), engine=engine)
    except KeyError as exc:
        assert task_of(exc) == "boom_loop"
    else:
        raise AssertionError("expected KeyError")


@per_engine
def test_hot_loop_yields_to_other_coroutines(engine):
    """A long flat loop in arun() lets another coroutine tick while it runs."""
    during = ticks_during(countdown(300_000), engine=engine)
    assert during >= 2


@task
def kw_countdown(n, *, step=1):
    return "done" if n <= 0 else kw_countdown(n=n - step, step=step)


@task(name="kw_boom")
def kw_boom(n, *, at):
    if n == at:
        raise KeyError("k")
    return kw_boom(n - 1, at=at)


@per_engine
def test_keyword_hot_loop_yields_and_notes_errors(engine):
    """A keyword tail loop with no listener takes the tight loop too: it yields at a
    bounded interval and its error carries the task note."""
    from cascade_graph.errors import task_of

    during = ticks_during(kw_countdown(n=300_000), engine=engine)
    assert 2 <= during < 300_000 // 10
    assert run(kw_countdown(n=10, step=2), engine=engine) == "done"
    try:
        run(kw_boom(50, at=7), engine=engine)
    except KeyError as exc:
        assert task_of(exc) == "kw_boom"
    else:
        raise AssertionError("expected KeyError")


@per_engine
def test_hot_loop_does_not_yield_every_iteration(engine):
    """The hot loop yields at a bounded interval, not once per iteration."""

    during = ticks_during(countdown(100_000), engine=engine)
    assert during < 100_000 // 10


def test_flat_template_definition():
    """Flat means one plain call, literal arguments only, no policy, offload or injection."""
    from cascade_graph import inject

    @task(offload=True)
    def off(x):
        return x

    @task
    def needs(x, db=inject("db")):
        return x

    assert build_template(countdown(3)).flat
    assert not build_template(off(3)).flat
    assert not build_template(needs(3)).flat
    assert not build_template(countdown(3).with_timeout(1)).flat
