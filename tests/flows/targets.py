"""Targets of every kind, for tests/test_cli.py (string annotations on purpose)."""

from __future__ import annotations

from cascade_graph import Param, inject, resource, task


@task
def add(a, b):
    return a + b


@task
def greet(name: str, times: int, excited: bool = False, scale: float = 1.0) -> list:
    """Echo the converted arguments, so the test sees their types."""
    return [name, times, excited, scale]


@task
def only_positional(x: int, /, y: int = 2) -> int:
    return x * 10 + y


@task
def collect(first: int, **rest) -> dict:
    """Leftover -p names land in **rest, as strings."""
    return {"first": first, **rest}


@resource
def greeting_word():
    return "hello"


@task
def say(name: str, word=inject("greeting_word")) -> str:  # noqa: B008 - the way to inject
    """A task target with an injected resource: -p fills only ``name``."""
    return f"{word} {name}"


@task
def to_set(a, b):
    return {a, b}


def plain_function():
    return 1


main = add(1, 2)
pair = [add(1, 2), {"x": add(3, 4)}]
unencodable = to_set(1, 2)
number = 42
no_lazy_list = [1, 2]

a = Param("a", type=int, help="required")
b = Param("b", default=10, type=int)
with_params = add(a, b)
