"""The decorator's checks and ``map`` over one-shot iterables (SPEC section 2)."""

from __future__ import annotations

import pytest

from cascade_graph import resource, task
from cascade_vm import run
from tests.helpers import per_engine, run_failing

# --------------------------------------------------------------------------- @task


def test_generator_function_is_a_type_error_at_decoration():
    with pytest.raises(TypeError) as info:
        @task
        def numbers():
            yield 1

    message = str(info.value)
    assert "numbers' is a generator function" in message
    assert "must return a value" in message and "@resource" in message


def test_async_generator_function_is_a_type_error_at_decoration():
    with pytest.raises(TypeError, match=r"'stream' is an async generator function.*"
                                        r"must return a value"):
        @task(name="stream")
        async def numbers():
            yield 1


def test_generator_is_still_a_resource():
    """The message's advice works: set-up and tear-down belong in a resource."""
    @resource
    def numbers():
        yield [1, 2, 3]

    assert callable(numbers.fn)


@pytest.mark.parametrize("value", [1, 2, 64, None])
def test_concurrency_accepts_a_positive_int_or_none(value):
    @task(concurrency=value)
    def work(x):
        return x

    assert work.concurrency == value
    assert run(work(5)) == 5 and run(work(5), engine="graph") == 5


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_concurrency_rejects_anything_else_naming_the_task(value):
    with pytest.raises(TypeError, match=r"task 'work': concurrency must be a positive int or None"):
        @task(name="work", concurrency=value)
        def work(x):
            return x


def test_local_is_a_bool():
    @task(local=True)
    def here():
        return 1

    @task
    def anywhere():
        return 1

    assert here.local is True and anywhere.local is False and anywhere.concurrency is None
    with pytest.raises(TypeError, match=r"task 'there': local must be True or False"):
        @task(name="there", local="yes")
        def there():
            return 1


# --------------------------------------------------------------------------- map


@task
def add(a, b):
    return a + b


@task
def double(x):
    return 2 * x


@task
def numbers(n):
    return list(range(n))


@per_engine
@pytest.mark.parametrize("make", [
    lambda: (i for i in range(4)),
    lambda: iter([0, 1, 2, 3]),
    lambda: map(int, "0123"),
    lambda: (x for x, _ in zip(range(4), "abcd")),
], ids=["generator", "iter", "map", "zip-generator"])
def test_map_over_an_iterator_gives_the_same_result_every_run(engine, make):
    flow = double.map(make())
    assert run(flow, engine=engine) == [0, 2, 4, 6]
    assert run(flow, engine=engine) == [0, 2, 4, 6]
    assert run(flow, engine="vm" if engine == "graph" else "graph") == [0, 2, 4, 6]


@per_engine
def test_map_materialises_keyword_and_zipped_iterators(engine):
    flow = add.map(iter([1, 2, 3]), b=(10 * i for i in range(1, 4)))
    assert run(flow, engine=engine) == [11, 22, 33]
    assert run(flow, engine=engine) == [11, 22, 33]


@per_engine
def test_map_over_a_generator_of_lazy_calls(engine):
    flow = double.map(add(i, 1) for i in range(3))
    assert run(flow, engine=engine) == [2, 4, 6]
    assert run(flow, engine=engine) == [2, 4, 6]


@per_engine
def test_map_over_iterators_of_different_lengths_fails_before_any_task_runs(engine):
    calls = []

    @task
    def first():
        calls.append("first")
        return 0

    flow = [first(), add.map((i for i in range(3)), iter([1, 2]))]
    exc, _ = run_failing(engine, flow)
    assert isinstance(exc, ValueError) and "one length" in str(exc)
    assert calls == []


@per_engine
def test_map_leaves_reiterable_and_lazy_iterables_alone(engine):
    """Ranges, dicts (their keys) and lazy lists are read when the map runs, as before."""
    flow = add.map(range(3), {10: "a", 20: "b", 30: "c"})
    assert run(flow, engine=engine) == [10, 21, 32]
    assert run(double.map(numbers(3)), engine=engine) == [0, 2, 4]
