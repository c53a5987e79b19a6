"""Param and Env (SPEC section 2): run parameters and environment variables."""

from __future__ import annotations

import pytest

from cascade_graph import Env, Param, ParameterError, TaskStarted, task
from cascade_graph.params import find_params
from cascade_vm import run
from tests.helpers import Calls, per_engine, per_switches, run_failing


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


@per_engine
def test_param_value_from_run(engine):
    """A Param takes its value from run(params=...)."""
    assert run(ident(Param("who")), engine=engine, params={"who": "me"}) == "me"


@per_engine
def test_param_default_used(engine):
    """A Param with a default uses it when not given."""
    assert run(ident(Param("n", default=4, type=int)), engine=engine) == 4


@per_engine
def test_param_given_overrides_default(engine):
    """A given value wins over the default."""
    assert run(ident(Param("n", default=4, type=int)), engine=engine, params={"n": 9}) == 9


@per_engine
def test_param_as_target(engine):
    """A Param may itself be the run's target."""
    assert run(Param("p", default="d"), engine=engine) == "d"


@per_engine
def test_param_in_container_target(engine):
    """A Param inside a container target is resolved."""
    assert run([Param("p", default=1), ident(2)], engine=engine) == [1, 2]


@per_engine
def test_param_string_converted_with_type(engine):
    """A string value is converted with the Param's type."""
    assert run(ident(Param("n", type=int)), engine=engine, params={"n": "42"}) == 42
    assert run(ident(Param("f", type=float)), engine=engine, params={"f": "2.5"}) == 2.5


@per_engine
def test_param_string_default_converted(engine):
    """A string default is converted with the Param's type."""
    assert run(ident(Param("n", default="7", type=int)), engine=engine) == 7


@per_engine
def test_param_non_string_not_converted(engine):
    """A non-string value is passed as given."""
    val = [1, 2]
    assert run(ident(Param("l", type=int)), engine=engine, params={"l": val}) is val


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("True", True), ("FALSE", False), ("Yes", True), ("NO", False),
])
@per_engine
def test_param_bool_strings(engine, text, expected):
    """A bool Param accepts true/false/1/0/yes/no in any case."""
    assert run(ident(Param("b", type=bool)), engine=engine, params={"b": text}) is expected


@per_engine
def test_param_bool_bad_string(engine):
    """A bool Param refuses other strings with ParameterError naming it."""
    exc, _ = run_failing(engine, ident(Param("flag", type=bool)), params={"flag": "maybe"})
    assert isinstance(exc, ParameterError) and "flag" in str(exc)


@per_engine
def test_param_bad_conversion(engine):
    """A value that cannot be converted is a ParameterError naming the parameter."""
    exc, _ = run_failing(engine, ident(Param("count", type=int)), params={"count": "many"})
    assert isinstance(exc, ParameterError) and "count" in str(exc)


@per_engine
@per_switches
def test_param_missing_required(engine, switches):
    """A missing required Param is a ParameterError (a ValueError) naming it."""
    exc, _ = run_failing(engine, ident(Param("needed")), switches)
    assert isinstance(exc, ParameterError) and isinstance(exc, ValueError)
    assert "needed" in str(exc)


@per_engine
@per_switches
def test_param_error_before_any_task_runs(engine, switches):
    """A missing parameter fails before any task of the workflow runs."""
    calls = Calls()

    @task
    def early():
        calls.hit("early")
        return 1

    @task
    async def aearly():
        calls.hit("aearly")
        return 1

    target = add(add(early(), aearly()), add(early(), ident(Param("late"))))
    exc, rec = run_failing(engine, target, switches)
    assert isinstance(exc, ParameterError)
    assert calls.total() == 0 and not rec.of(TaskStarted)


@per_engine
@per_switches
def test_param_in_tail_call_checked_when_met(engine, switches):
    """A Param first met in a tail call is checked when the continuation starts."""
    calls = Calls()

    @task
    def first():
        calls.hit("first")
        return ident(Param("later_param"))

    exc, _ = run_failing(engine, first(), switches)
    assert isinstance(exc, ParameterError) and calls["first"] == 1
    assert run(first(), engine=engine, params={"later_param": 3}, **switches) == 3


@per_engine
def test_param_in_tail_call_before_continuation_tasks(engine):
    """A missing Param in a continuation fails before the continuation's tasks run."""
    calls = Calls()

    @task
    def cont_task(x):
        calls.hit("cont")
        return x

    @task
    def first():
        return add(cont_task(1), ident(Param("tail_p")))

    run_failing(engine, first())
    assert calls["cont"] == 0


@per_engine
def test_same_param_object_resolved_once_per_run(engine):
    """One Param used in several places has one value."""
    p = Param("v", type=int)
    assert run(add(p, ident(p)), engine=engine, params={"v": "5"}) == 10


@per_engine
def test_two_params_same_name_get_same_value(engine):
    """Two Param objects with the same name both read that name."""
    assert run(add(Param("same", type=int), Param("same", type=int)),
               engine=engine, params={"same": "2"}) == 4


@per_engine
def test_params_are_per_run(engine):
    """Parameters of one run do not leak into the next."""
    p = Param("leak")
    assert run(ident(p), engine=engine, params={"leak": "a"}) == "a"
    exc, _ = run_failing(engine, ident(p))
    assert isinstance(exc, ParameterError)


@per_engine
def test_unrelated_required_param_not_needed(engine):
    """A required Param not reachable from the target is not required (no global registry)."""
    Param("unreachable_required")
    assert run(ident(1), engine=engine) == 1


def test_find_params_reachable_only():
    """find_params lists the distinct Params reachable from the target."""
    a, b = Param("a"), Param("b")
    Param("c")
    found = find_params([add(a, ident(b)), {"k": a}])
    assert set(map(id, found)) == {id(a), id(b)}


def test_find_params_through_policies():
    """Params used in conditions and .after() are found."""
    a, b = Param("a", default=1), Param("b", default=1)
    found = find_params(ident(1).run_if(a).after(ident(b)))
    assert set(map(id, found)) == {id(a), id(b)}


@per_engine
def test_param_in_run_if(engine):
    """A Param can be a run_if condition."""
    flag = Param("go", type=bool)
    assert run([ident(1).run_if(flag)], engine=engine, params={"go": "no"}) == [None]
    assert run([ident(1).run_if(flag)], engine=engine, params={"go": "yes"}) == [1]


def test_param_name_must_be_string():
    """Param needs a non-empty string name."""
    with pytest.raises(TypeError):
        Param("")


def test_param_required_property():
    """required is True exactly when no default is given."""
    assert Param("x").required
    assert not Param("x", default=None).required


def test_param_hashable_by_identity():
    """Params hash and compare by identity."""
    a, b = Param("x"), Param("x")
    assert a != b and len({a, b}) == 2


@per_engine
@per_switches
def test_param_tail_loop(engine, switches):
    """A Param passed down a tail loop keeps its value."""

    @task
    def loop(n, step):
        return n if n <= 0 else loop(n - step, step)

    assert run(loop(10, Param("step", type=int)), engine=engine, params={"step": "3"},
               **switches) == -2


# ---------------------------------------------------------------------------
# Env


@per_engine
def test_env_reads_variable(engine, monkeypatch):
    """Env takes its value from the environment."""
    monkeypatch.setenv("CASCADE_TEST_ENV", "value")
    assert run(ident(Env("CASCADE_TEST_ENV")), engine=engine) == "value"


@per_engine
def test_env_default(engine, monkeypatch):
    """An unset Env gives its default."""
    monkeypatch.delenv("CASCADE_TEST_UNSET", raising=False)
    assert run(ident(Env("CASCADE_TEST_UNSET", default="dflt")), engine=engine) == "dflt"


@per_engine
def test_env_default_none(engine, monkeypatch):
    """An unset Env without default gives None."""
    monkeypatch.delenv("CASCADE_TEST_UNSET", raising=False)
    assert run(ident(Env("CASCADE_TEST_UNSET")), engine=engine) is None


@per_engine
def test_env_read_at_run_time(engine, monkeypatch):
    """Env is read when the run starts, not when the workflow is built."""
    e = ident(Env("CASCADE_TEST_LATE"))
    monkeypatch.setenv("CASCADE_TEST_LATE", "later")
    assert run(e, engine=engine) == "later"


def test_env_not_a_param():
    """find_params does not list Env values."""
    assert find_params(ident(Env("X"))) == []


@per_engine
@per_switches
def test_param_returned_as_tail_call(engine, switches):
    """A task returning a Param tail-calls into it: its value is the node's value."""

    @task
    def give():
        return Param("given", default="7", type=int)

    @task
    def pair(a, b):
        return (a, b)

    assert run(give(), engine=engine, **switches) == 7
    assert run(pair(give(), 1), engine=engine, params={"given": "8"}, **switches) == (8, 1)


@per_engine
def test_param_conversion_error_before_any_task_runs(engine):
    """A parameter that cannot be converted fails before any task runs."""
    calls = Calls()

    @task
    def early():
        calls.hit("early")
        return 1

    exc, _ = run_failing(engine, add(early(), ident(Param("num", type=int))),
                         params={"num": "x"})
    assert isinstance(exc, ParameterError) and calls.total() == 0
