"""Scale: big graphs, deep nesting, long loops, many shapes (issue 7, item 5).

100,000-node chains, 100,000-wide fan-outs and 1,000-deep nested containers
compile and run on both engines with no ``RecursionError`` (no recursive walk
over user graphs anywhere). A 1,000,000-iteration tail loop runs in constant
memory: its tracemalloc peak equals that of a 100,000-iteration loop up to a
small constant slack, on both engines, hot path on and off. Each measurement
runs in its own interpreter; the four start together at the beginning of the
session (conftest.py) so they overlap with the other tests. The shared
template cache stays within its bounds (entries, and template nodes in all)
when 100,000 distinct shapes and several 100,000-node templates pass through
it.
"""

from __future__ import annotations

import json

from cascade_graph import task
from cascade_graph.cache import SHARED
from cascade_vm import run

from ._support import LARGE, SMALL

N = 100_000
DEPTH = 1_000
SLACK = 64 * 1024  # bytes: the peaks may differ by this much, whatever the iteration count


@task(name="inc")
def inc(x):
    return x + 1


@task(name="total")
def total(xs):
    return sum(xs)


@task(name="ident")
def ident(x):
    return x


def _check_cache_bounds() -> None:
    """The shared cache is within its bounds: entries, and template nodes held in all."""
    assert len(SHARED) <= SHARED.maxsize
    if hasattr(SHARED, "maxnodes"):
        assert SHARED.nodes <= SHARED.maxnodes


def _depth(value) -> tuple:
    """(nesting depth, innermost value) of a nest of one-item lists/tuples/dicts."""
    d = 0
    while True:
        if type(value) in (list, tuple) and len(value) == 1:
            value = value[0]
        elif type(value) is dict and len(value) == 1:
            value = next(iter(value.values()))
        else:
            return d, value
        d += 1


def _nest(inner, depth: int):
    """``inner`` wrapped in ``depth`` containers cycling list, tuple, dict."""
    value = inner
    for i in range(depth):
        value = ([value], (value,), {"k": value})[i % 3]
    return value


# ---------------------------------------------------------------------------
# Big graphs


def test_hundred_thousand_node_chain(engine):
    """inc(inc(...inc(0))) 100,000 deep runs to 100,000."""
    lr = inc(0)
    for _ in range(N - 1):
        lr = inc(lr)
    assert run(lr, engine=engine) == N
    _check_cache_bounds()


def test_hundred_thousand_wide_fan_out(engine):
    """total([inc(0), ..., inc(N-1)]): one node with 100,000 dependencies."""
    assert run(total([inc(i) for i in range(N)]), engine=engine) == N * (N + 1) // 2
    _check_cache_bounds()


def test_hundred_thousand_wide_map(engine):
    """inc.map(range(100,000)) decided at run time."""
    out = run(inc.map(list(range(N))), engine=engine)
    assert len(out) == N and out[0] == 1 and out[-1] == N
    _check_cache_bounds()


# ---------------------------------------------------------------------------
# Deep nesting


def test_thousand_deep_nested_container_argument(engine):
    """A lazy at the bottom of 1,000 nested list/tuple/dict levels, as an argument."""
    assert _depth(run(ident(_nest(inc(1), DEPTH)), engine=engine)) == (DEPTH, 2)


def test_thousand_deep_nested_container_built_twice(engine):
    """The same nested structure built twice in one process: equal shapes must be found
    equal without recursion too, not only hashed."""
    first = ident(_nest(inc(1), DEPTH))
    second = ident(_nest(inc(1), DEPTH))
    assert _depth(run(first, engine=engine)) == (DEPTH, 2)
    assert _depth(run(second, engine=engine)) == (DEPTH, 2)


def test_thousand_deep_nested_container_target(engine):
    """A 1,000-deep nest of containers with a lazy at the bottom, as the run target."""
    assert _depth(run(_nest(inc(1), DEPTH), engine=engine)) == (DEPTH, 2)


def test_thousand_deep_nest_with_a_lazy_at_every_level(engine):
    """[inc(0), [inc(1), [inc(2), ...]]] 1,000 deep: every level has a lazy."""
    value = inc(-1)
    for i in range(DEPTH):
        value = [inc(i), value]
    out = run(ident(value), engine=engine)
    for i in reversed(range(DEPTH)):
        assert out[0] == i + 1
        out = out[1]
    assert out == 0


def test_thousand_deep_literal_container_is_passed_through(engine):
    """A 1,000-deep container with nothing lazy inside is one literal, passed as is."""
    lit = _nest(7, DEPTH)
    assert run(ident(lit), engine=engine) is lit


def test_thousand_deep_chain_of_nested_continuations(engine):
    """A task tail-calls a continuation whose argument is a 1,000-deep nest, 5 times."""

    @task(name="again")
    def again(n, nest):
        if n == 0:
            return _depth(nest)
        return again(n - 1, _nest(inc(n), DEPTH))

    assert run(again(5, None), engine=engine) == (DEPTH, 2)


# ---------------------------------------------------------------------------
# The template cache stays bounded


def test_template_cache_stays_within_its_bound(engine):
    """100,000 distinct shapes (a tail loop changing its keyword each step) pass through
    the shared cache; its size never exceeds maxsize."""
    names = [f"k{i}" for i in range(N + 1)]
    seen = {"max": 0, "steps": 0}

    @task(name="hop")
    def hop(i, **kw):
        seen["steps"] += 1
        if i % 500 == 0:
            seen["max"] = max(seen["max"], len(SHARED))
        return i if i + 1 >= N else hop(i + 1, **{names[i + 1]: 0})

    misses = SHARED.misses
    assert run(hop(0, k0=0), engine=engine) == N - 1
    assert seen["steps"] == N
    assert SHARED.misses - misses >= N  # every shape really went through the cache
    assert seen["max"] <= SHARED.maxsize
    _check_cache_bounds()


# ---------------------------------------------------------------------------
# Constant memory of a 1,000,000-iteration tail loop (measured in the interpreters
# conftest.memory_workers started at the beginning of the session; last in this module
# so that the other tests run while they measure)


def test_million_iteration_tail_loop_runs_in_constant_memory(engine, hot_path, memory_workers):
    """tracemalloc peak of 1,000,000 iterations <= peak of 100,000 + a small constant."""
    proc = memory_workers[engine, hot_path]
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    peaks = json.loads(out.strip().splitlines()[-1])
    assert peaks["large"] <= peaks["small"] + SLACK, (
        f"peak grew with the iteration count: {peaks['small']} bytes for {SMALL:,}, "
        f"{peaks['large']} bytes for {LARGE:,}"
    )
