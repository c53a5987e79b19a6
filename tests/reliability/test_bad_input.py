"""Bad input: one clear error naming the culprit, before any task runs (issue 7, item 4).

Each test builds and runs the bad workflow inside ``pytest.raises`` (an error
at construction time is just as good as one at run time) and checks the
exception type, that the message names the culprit (and, where the engine
can know, how to fix it), and that no task ran when the error could be found
before running anything (a literal map length or router key is known
before the run). docs/errors.md lists the messages. Command-line bad
input (bad -p values, flows that do not import, missing targets, unknown
--engine) is tested in tests/test_cli.py.
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import asyncio

import pytest

from cascade_graph import (
    MemoryStore,
    Param,
    ParameterError,
    ResourceError,
    Router,
    inject,
    task,
)
from cascade_graph.errors import task_of
from cascade_vm import arun, run

CALLS: list = []


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    yield
    CALLS.clear()


@task(name="add")
def add(a, b):
    CALLS.append("add")
    return a + b


@task(name="first")
def first():
    CALLS.append("first")
    return 1


@task(name="afirst")
async def afirst():
    CALLS.append("afirst")
    await asyncio.sleep(0)
    return 1


@task(name="numbers")
def numbers(n):
    CALLS.append("numbers")
    return list(range(n))


@task(name="kw_only")
def kw_only(*, key, value=0):
    CALLS.append("kw_only")
    return key, value


def plain_function(x):
    """A function that was never decorated with @task."""
    CALLS.append("plain_function")
    return x


def _chain(n, inner):
    lr = inner
    for _ in range(n):
        lr = add(lr, 1)
    return lr


# ---------------------------------------------------------------------------
# Arity and keywords: TypeError naming the task and its signature, before any task runs


ARITY_CASES = {
    "too-many-at-root": lambda: add(first(), 1, 2),
    "missing-at-root": lambda: add(first()),
    "deep-in-a-chain": lambda: _chain(50, add(afirst())),
    "beside-async-siblings": lambda: [afirst(), afirst(), add(1, 2, 3)],
    "in-a-container-argument": lambda: add([first(), {"k": add(1)}], 1),
    "flat-call": lambda: add(1),
    "map-item": lambda: add.map([1, 2]),
}


@pytest.mark.parametrize("case", list(ARITY_CASES))
def test_wrong_arity_names_the_task_before_any_task_runs(engine, case):
    """Wrong arity anywhere in the workflow: TypeError naming 'add', and nothing ran."""
    with pytest.raises(TypeError) as info:
        run(ARITY_CASES[case](), engine=engine)
    msg = str(info.value)
    assert "'add'" in msg and "signature: add(a, b)" in msg, msg
    assert CALLS == []


def test_unknown_keyword_names_the_task_and_keyword(engine):
    """An unknown keyword: TypeError naming the task and the keyword, nothing ran."""
    with pytest.raises(TypeError) as info:
        run(add(first(), b=1, c=2), engine=engine)
    assert "'add'" in str(info.value) and "'c'" in str(info.value)
    assert CALLS == []


def test_unknown_keyword_of_a_keyword_only_task(engine):
    """Keyword-only signature, misspelt keyword: TypeError naming both, nothing ran."""
    with pytest.raises(TypeError) as info:
        run([first(), kw_only(key=1, valeu=2)], engine=engine)
    assert "'kw_only'" in str(info.value) and "'valeu'" in str(info.value)
    assert CALLS == []


def test_wrong_arity_in_a_tail_call_fails_before_the_continuation_runs(engine):
    """A continuation with a bad call: TypeError before any of its tasks runs."""

    @task(name="caller")
    def caller(n):
        CALLS.append("caller")
        return add(first(), _chain(3, add(n)))

    with pytest.raises(TypeError, match="'add'"):
        run(caller(1), engine=engine)
    assert CALLS == ["caller"]


# ---------------------------------------------------------------------------
# Parameters


def test_missing_required_param_names_it_before_any_task_runs(engine):
    """A required Param not given: ParameterError (a ValueError) naming it and the fix."""
    p = Param("reliability_bad_input_rows", type=int)
    with pytest.raises(ParameterError) as info:
        run(add(first(), p), engine=engine)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'reliability_bad_input_rows'" in msg
    assert "params=" in msg and "-p reliability_bad_input_rows=" in msg
    assert CALLS == []


def test_param_value_that_does_not_convert_names_param_value_and_type(engine):
    """params={'n': 'abc'} for an int Param: ParameterError naming the three."""
    p = Param("reliability_bad_input_n", type=int)
    with pytest.raises(ParameterError) as info:
        run(add(afirst(), p), engine=engine, params={"reliability_bad_input_n": "abc"})
    msg = str(info.value)
    assert "'reliability_bad_input_n'" in msg and "'abc'" in msg and "int" in msg
    assert CALLS == []


def test_bad_bool_param_lists_the_accepted_words(engine):
    """A bool Param given 'maybe': the message says what a bool accepts."""
    p = Param("reliability_bad_input_flag", type=bool)
    with pytest.raises(ParameterError, match="true/false"):
        run(add(first(), p), engine=engine, params={"reliability_bad_input_flag": "maybe"})
    assert CALLS == []


def test_missing_param_first_met_in_a_tail_call_fails_when_met(engine):
    """A Param first met in a continuation: ParameterError when the continuation starts."""
    p = Param("reliability_bad_input_late", type=int)

    @task(name="caller")
    def caller():
        CALLS.append("caller")
        return add(first(), p)

    with pytest.raises(ParameterError, match="reliability_bad_input_late"):
        run(caller(), engine=engine)
    assert CALLS == ["caller"]


# ---------------------------------------------------------------------------
# Resources


def test_resource_injected_but_not_defined_as_default(engine):
    """inject('x') as a default, x not registered: ResourceError naming x and the fix."""

    @task(name="needs_db")
    def needs_db(db=inject("reliability_no_such_resource_a")):
        CALLS.append("needs_db")

    with pytest.raises(ResourceError) as info:
        run([afirst(), needs_db()], engine=engine)
    msg = str(info.value)
    assert "'reliability_no_such_resource_a'" in msg
    assert "@resource" in msg and "resources=" in msg
    assert CALLS == []


def test_resource_injected_but_not_defined_as_argument(engine):
    """inject('x') passed as an argument, x not registered: ResourceError naming x."""
    with pytest.raises(ResourceError, match="'reliability_no_such_resource_b'"):
        run(add(first(), inject("reliability_no_such_resource_b")), engine=engine)
    assert CALLS == []


def test_resources_override_satisfies_an_undefined_name(engine):
    """The fix the message gives (resources={...}) works."""

    @task(name="needs_db")
    def needs_db(db=inject("reliability_no_such_resource_c")):
        return db

    assert (
        run(needs_db(), engine=engine, resources={"reliability_no_such_resource_c": "given"})
        == "given"
    )


# ---------------------------------------------------------------------------
# map


def test_mismatched_literal_map_lengths_fail_before_any_task_runs(engine):
    """Literal iterables of different lengths are known before the run: ValueError, nothing ran."""
    with pytest.raises(ValueError) as info:
        run([first(), afirst(), add.map([1, 2, 3], [10, 20])], engine=engine)
    msg = str(info.value)
    assert "add.map" in msg and "3" in msg and "2" in msg
    assert CALLS == []


def test_mismatched_lazy_map_lengths_name_the_map_and_lengths(engine):
    """Lazy iterables (decided at run time): ValueError naming the map and the lengths."""
    with pytest.raises(ValueError) as info:
        run(add.map(numbers(2), numbers(3)), engine=engine)
    msg = str(info.value)
    assert "add.map" in msg and "2" in msg and "3" in msg
    assert "add" not in CALLS  # no item ran


def test_mismatched_keyword_map_lengths_name_the_keyword(engine):
    """A keyword iterable of another length: the message names the keyword."""
    with pytest.raises(ValueError) as info:
        run(add.map([1, 2], b=[1, 2, 3]), engine=engine)
    assert "b: 3" in str(info.value)
    assert CALLS == []


def test_map_over_a_non_iterable_names_the_map(engine):
    """A non-iterable where map expects an iterable: TypeError, the note names the map."""
    with pytest.raises(TypeError) as info:
        run(add.map(5, [1]), engine=engine)
    assert "add.map" in str(info.value) or task_of(info.value) == "add.map"
    assert CALLS == []


# ---------------------------------------------------------------------------
# Router


@task(name="route_a")
def route_a():
    CALLS.append("route_a")
    return "a"


@task(name="route_b")
def route_b():
    CALLS.append("route_b")
    return "b"


@task(name="pick")
def pick(key):
    CALLS.append("pick")
    return key


@task(name="use")
def use(x):
    CALLS.append("use")
    return x


def test_router_key_that_does_not_exist_names_it_and_the_known_keys(engine):
    """The selector's value is no route: KeyError naming it and the known keys; no route ran."""
    with pytest.raises(KeyError) as info:
        run(use(Router(pick("c"), routes={"a": route_a(), "b": route_b()})), engine=engine)
    msg = str(info.value)
    assert "'c'" in msg and "'a'" in msg and "'b'" in msg, msg
    assert CALLS == ["pick"]


def test_literal_router_key_that_does_not_exist_fails_before_any_task_runs(engine):
    """A literal selector is known before the run: KeyError before any task runs."""
    with pytest.raises(KeyError, match="'x'"):
        run([first(), use(Router("x", routes={"a": route_a(), "b": route_b()}))], engine=engine)
    assert CALLS == []


# ---------------------------------------------------------------------------
# Cache keys


class Unstable:
    """A value with no stable hash."""


@task(name="cached")
def cached(x):
    CALLS.append("cached")
    return "computed"


def test_unhashable_cache_argument_names_task_and_argument(engine):
    """A literal argument with no stable hash: TypeError naming task and argument."""
    with pytest.raises(TypeError) as info:
        run(cached(Unstable()).with_cache(store=MemoryStore()), engine=engine)
    msg = str(info.value)
    assert "'cached'" in msg and "'x'" in msg and "Unstable" in msg
    assert CALLS == []


def test_unhashable_cache_argument_from_upstream_names_task_and_argument(engine):
    """The unstable value comes from another task: same error, the cached task never runs."""

    @task(name="make_unstable")
    def make_unstable():
        return Unstable()

    with pytest.raises(TypeError) as info:
        run(cached(make_unstable()).with_cache(store=MemoryStore()), engine=engine)
    assert "'cached'" in str(info.value) and "'x'" in str(info.value)
    assert "cached" not in CALLS


def test_unhashable_cache_argument_nested_in_a_container(engine):
    """The unstable value sits inside a dict argument: still named."""
    with pytest.raises(TypeError, match="'cached'.*'x'"):
        run(cached({"k": [1, Unstable()]}).with_cache(store=MemoryStore()), engine=engine)
    assert CALLS == []


def test_the_fix_the_cache_key_message_suggests_works(engine):
    """If the message says to give .with_cache(key=...) a function, doing so must work."""
    with pytest.raises(TypeError) as info:
        run(cached(Unstable()).with_cache(store=MemoryStore()), engine=engine)
    if "key=" in str(info.value):
        target = cached(Unstable()).with_cache(key=lambda x: "one key", store=MemoryStore())
        assert run(target, engine=engine) == "computed"


# ---------------------------------------------------------------------------
# A non-task callable (or an uncalled task) where a workflow or a lazy call is expected


def test_run_of_a_plain_function_returns_it_as_is(engine):
    """run(f) with an undecorated function: nothing lazy, so SPEC returns the same object.

    (The CLI rejects such a target with exit 2: see tests/test_cli.py.)
    """
    assert run(plain_function, engine=engine) is plain_function
    assert CALLS == []


def test_run_of_an_uncalled_task_returns_it_as_is(engine):
    """run(add) instead of run(add(1, 2)): nothing lazy, so SPEC returns the same object."""
    assert run(add, engine=engine) is add
    assert CALLS == []


def test_uncalled_task_as_a_condition_is_an_error(engine):
    """.run_if(task) (always truthy) instead of .run_if(task()): TypeError naming it."""
    with pytest.raises(TypeError) as info:
        run(add(1, 2).run_if(first), engine=engine)
    assert "first" in str(info.value)
    assert CALLS == []


def test_map_on_a_plain_function_is_an_attribute_error():
    """Only tasks have .map: Python's own AttributeError names 'map'."""
    with pytest.raises(AttributeError, match="map"):
        plain_function.map([1, 2])


def test_plain_function_as_an_argument_is_just_a_value(engine):
    """A function object passed to a task is a value like any other."""

    @task(name="apply")
    def apply(fn, x):
        return fn(x)

    assert run(apply(plain_function, first()), engine=engine) == 1


def test_task_decorator_on_a_non_callable():
    """@task on something that is not a function: TypeError saying what came."""
    with pytest.raises(TypeError, match="@task expects a function, got int 5"):
        task(5)


def test_offload_on_an_async_function_fails_at_decoration():
    """offload=True on async def: TypeError at decoration naming the task."""
    with pytest.raises(TypeError, match="'fetch'.*offload=True"):

        @task(name="fetch", offload=True)
        async def fetch():
            return 1


def test_after_with_a_non_lazy_names_what_came():
    """.after(f) with a plain function: TypeError saying it takes lazy calls."""
    with pytest.raises(TypeError, match=r"\.after\(\) takes lazy calls, got function"):
        add(1, 2).after(plain_function)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: add(1, 2).with_retry(max_attempts=0), "max_attempts must be >= 1"),
        (lambda: add(1, 2).with_timeout(0), "seconds must be > 0"),
        (lambda: add(1, 2).with_cache(key=5), "key must be a str or a callable"),
    ],
)
def test_bad_policy_arguments_fail_at_construction(make, match):
    """Nonsense policy arguments are rejected when the policy is set."""
    with pytest.raises((TypeError, ValueError), match=match):
        make()


# ---------------------------------------------------------------------------
# run() options


def test_unknown_engine_names_it_and_the_choices():
    """engine='gpu': ValueError naming it and the valid engines, nothing ran."""
    with pytest.raises(ValueError, match=r"unknown engine 'gpu'.*'vm'.*'graph'"):
        run(add(first(), 1), engine="gpu")
    assert CALLS == []


def test_run_inside_a_running_loop_points_to_arun(engine):
    """run() from a coroutine: RuntimeError saying to use await arun(...), nothing ran."""

    async def main():
        run(add(first(), 1), engine=engine)

    with pytest.raises(RuntimeError, match="arun"):
        asyncio.run(main())
    assert CALLS == []


def test_on_event_that_is_not_callable(engine):
    """on_event=42: TypeError before anything runs."""
    with pytest.raises(TypeError, match="on_event"):
        run(add(first(), 1), engine=engine, on_event=42)
    assert CALLS == []


def test_negative_yield_interval(engine):
    """yield_interval=-1: ValueError before anything runs."""
    with pytest.raises(ValueError, match="yield_interval"):
        asyncio.run(arun(add(first(), 1), engine=engine, yield_interval=-1))
    assert CALLS == []
