"""Cache keys of ``.with_cache`` (SPEC section 2): one canonical, type-tagged,
length-prefixed encoding; the code fingerprint (constants, closures, defaults,
bound ``self``/``cls``); keys identical across processes and hash seeds.

Workflow tests run on both engines; the Hypothesis properties check the encoding
itself (distinct values never share a key; the same value always has the same key,
in another process with another ``PYTHONHASHSEED`` too).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_graph import MemoryStore, TaskSkipped, task
from cascade_graph.cachekey import cache_key, value_digest
from cascade_graph.errors import task_of
from cascade_graph.lazy import CacheSpec
from cascade_vm import run
from tests.helpers import per_engine, run_failing, run_on

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CALLS: list = []


@pytest.fixture(autouse=True)
def _fresh_calls():
    _CALLS.clear()
    yield


@task(name="echo")
def echo(x):
    _CALLS.append(x)
    return x


# ---------------------------------------------------------------------------
# class 2: values are tagged and length-prefixed


TRICKY = [1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}), {1: 1}, 1j, None, 0, False,
          "", b"", (), [], (1, 23), (12, 3), ("1", "23"), ("12", "3"), ["a;", "b"], ["a", ";b"],
          [[]], [[], []], [(), ()], {"a": 1, "b": 2}, {"b": 2, "a": 1}, -0.0, 0.0]


@per_engine
def test_tricky_arguments_never_share_an_entry(engine):
    """1, 1.0, True, '1', [1], (1,), (1, 23) vs (12, 3)...: each call is its own entry."""
    store = MemoryStore()
    out = run([echo(v).with_cache(store=store) for v in TRICKY], engine=engine)
    assert [(type(v), v) for v in out] == [(type(v), v) for v in TRICKY]
    assert len(store) == len(TRICKY)
    out = run([echo(v).with_cache(store=store) for v in TRICKY], engine=engine)
    assert [(type(v), v) for v in out] == [(type(v), v) for v in TRICKY]
    assert len(_CALLS) == len(TRICKY)


def _make_scaled(a, b):
    @task(name="scaled")
    def scaled(q):
        return q * a + b

    return scaled


@per_engine
def test_closure_values_are_separated(engine):
    """make(1, 23) and make(12, 3) are different tasks: their closure values are length-prefixed."""
    store = MemoryStore()
    assert run(_make_scaled(1, 23)(2).with_cache(store=store), engine=engine) == 25
    assert run(_make_scaled(12, 3)(2).with_cache(store=store), engine=engine) == 27
    assert run(_make_scaled(1, 23)(2).with_cache(store=store), engine=engine) == 25
    assert len(store) == 2


def _flow_task(source: str):
    ns: dict = {"__name__": "flow_under_edit"}
    exec(source, ns)
    return task(ns["f"])


@per_engine
def test_edited_constants_are_a_new_entry(engine):
    """Editing `q * 1 + 23` into `q * 12 + 3` gives another key, not the old result."""
    store = MemoryStore()
    before = _flow_task("def f(q):\n    return q * 1 + 23\n")
    after = _flow_task("def f(q):\n    return q * 12 + 3\n")
    assert run(before(2).with_cache(store=store), engine=engine) == 25
    assert run(after(2).with_cache(store=store), engine=engine) == 27


@per_engine
def test_nested_code_constants_count(engine):
    """A constant inside a nested function (a nested code object) is in the fingerprint."""
    store = MemoryStore()
    before = _flow_task("def f(q):\n    def g():\n        return 1\n    return q + g()\n")
    after = _flow_task("def f(q):\n    def g():\n        return 2\n    return q + g()\n")
    assert run(before(1).with_cache(store=store), engine=engine) == 2
    assert run(after(1).with_cache(store=store), engine=engine) == 3


def _make_helper_user(helper):
    @task(name="uses_helper")
    def uses_helper(q):
        return helper(q)

    return uses_helper


@per_engine
def test_closed_over_function_is_fingerprinted_by_code(engine):
    """A function in a closure counts by its code (not its address): same code shares, other
    code separates."""
    store = MemoryStore()
    double = _flow_task("def f(q):\n    return q * 2\n").fn
    same_double = _flow_task("def f(q):\n    return q * 2\n").fn
    triple = _flow_task("def f(q):\n    return q * 3\n").fn
    _, rec = run_on(engine, _make_helper_user(double)(5).with_cache(store=store))
    assert _ == 10
    value, rec = run_on(engine, _make_helper_user(same_double)(5).with_cache(store=store))
    assert value == 10 and [e.reason for e in rec.of(TaskSkipped)] == ["cached"]
    assert run(_make_helper_user(triple)(5).with_cache(store=store), engine=engine) == 15


class Base:
    factor = 1

    @classmethod
    def scale(cls, x):
        return x * cls.factor


class Derived(Base):
    factor = 10


@per_engine
def test_bound_class_is_in_the_key(engine):
    """A classmethod bound to another class is another entry (same code, other cls)."""
    store = MemoryStore()
    assert run(task(Base.scale)(3).with_cache(store=store), engine=engine) == 3
    assert run(task(Derived.scale)(3).with_cache(store=store), engine=engine) == 30


class Account:
    def __init__(self, balance):
        self.balance = balance

    def with_interest(self, rate):
        return self.balance * (1 + rate)


@per_engine
def test_bound_instance_needs_key(engine):
    """A method bound to an instance has no stable self: TypeError naming the task and saying
    to give key=; with key= entries are separated by it."""
    store = MemoryStore()
    rich, poor = Account(1000), Account(10)
    exc, _ = run_failing(engine, task(rich.with_interest, name="interest")(0.5)
                         .with_cache(store=store))
    assert type(exc) is TypeError and task_of(exc) == "interest"
    assert "interest" in str(exc) and "key=" in str(exc) and "Account" in str(exc)
    assert len(store) == 0
    assert run(task(rich.with_interest)(0.5).with_cache(store=store, key="rich"),
               engine=engine) == 1500
    assert run(task(poor.with_interest)(0.5).with_cache(store=store, key="poor"),
               engine=engine) == 15


@per_engine
def test_unstable_closure_value_needs_key(engine):
    """A closure over an object with no stable value: TypeError naming the task and the
    variable; key= makes it work."""

    class Client:
        pass

    client = Client()

    @task(name="fetch")
    def fetch(url):
        return f"{url} via {type(client).__name__}"

    exc, _ = run_failing(engine, fetch("a").with_cache(store=MemoryStore()))
    assert type(exc) is TypeError and task_of(exc) == "fetch"
    assert "'client'" in str(exc) and "key=" in str(exc)
    assert run(fetch("a").with_cache(store=MemoryStore(), key="v1"),
               engine=engine) == "a via Client"


@per_engine
def test_defaults_are_in_the_key(engine):
    """A default held only by a nested function (not an argument of the call) still counts."""
    store = MemoryStore()

    def make(k):
        def inner(x, k=k):
            return x * k

        @task(name="defaulted")
        def outer(x):
            return inner(x)

        return outer

    assert run(make(2)(5).with_cache(store=store), engine=engine) == 10
    assert run(make(3)(5).with_cache(store=store), engine=engine) == 15


@per_engine
def test_recursive_closure_task_has_a_key(engine):
    """A task that refers to itself through its closure (a local recursive task) is keyed."""
    store = MemoryStore()

    def make():
        @task(name="down")
        def down(n):
            return "done" if n <= 0 else down(n - 1)

        return down

    assert run(make()(5).with_cache(store=store), engine=engine) == "done"
    _, rec = run_on(engine, make()(5).with_cache(store=store))
    assert [e.reason for e in rec.of(TaskSkipped)] == ["cached"]


@per_engine
def test_huge_int_and_deep_nesting_are_stable(engine):
    """10**5000 and a 5,000-deep frozenset are stable values (no limit, no RecursionError)."""
    deep = frozenset()
    for i in range(5000):
        deep = frozenset({deep, i})
    store = MemoryStore()

    @task(name="size")
    def size(x):
        _CALLS.append(1)
        return x.bit_length() if type(x) is int else len(x)

    assert run([size(10**5000).with_cache(store=store), size(deep).with_cache(store=store)],
               engine=engine) == [16610, 2]
    assert run([size(10**5000).with_cache(store=store), size(deep).with_cache(store=store),
                size(10**5000 + 1).with_cache(store=store)], engine=engine) == [16610, 2, 16610]
    assert len(_CALLS) == 3


@pytest.mark.parametrize("shape", ["list", "dict", "nested"])
@per_engine
def test_cyclic_argument_is_a_type_error(engine, shape):
    """A value that contains itself is a TypeError naming the task and argument, never a hang."""
    value: object
    if shape == "list":
        value = [1]
        value.append(value)
    elif shape == "dict":
        value = {"a": 1}
        value["self"] = value
    else:
        inner: list = []
        value = (1, [2, {"k": inner}])
        inner.append(value)
    exc, _ = run_failing(engine, echo(value).with_cache(store=MemoryStore()))
    assert type(exc) is TypeError and task_of(exc) == "echo"
    assert "cyclic" in str(exc) and "'x'" in str(exc)
    assert _CALLS == []


@per_engine
def test_shared_but_acyclic_parts_are_fine(engine):
    """The same sublist twice is not a cycle."""
    part = [1, 2]
    assert run(echo([part, part, (part,)]).with_cache(store=MemoryStore()),
               engine=engine) == [[1, 2], [1, 2], ([1, 2],)]


def test_set_key_ignores_iteration_order():
    """Equal sets built in different orders have one key."""
    a = {"x", "y", "z", ("t", frozenset({"u", "v"}))}
    b = set()
    for item in reversed([("t", frozenset({"v", "u"})), "z", "y", "x"]):
        b.add(item)
    assert value_digest(a) == value_digest(b)
    assert value_digest(frozenset(a)) != value_digest(a)


# ---------------------------------------------------------------------------
# class 4: keys identical across processes (any PYTHONHASHSEED)

_KEY_MODULE = textwrap.dedent('''
    import functools
    from cascade_graph import task

    def helper(x):
        return x in {"alpha", "beta", "gamma", "delta"}  # a frozenset constant

    def make(limit):
        def check(x):
            return helper(x) and len(x) < limit

        @task
        def flagged(word, tags=frozenset({"p", "q", "r"})):
            return check(word), sorted(tags)

        return flagged

    flagged = make(6)

    @task
    def sets(x):
        return [s for s in ({"a", "b"}, frozenset({"c", "d", "e"})) if x in s]
''')

_KEY_SCRIPT = textwrap.dedent('''
    import json, pickle, sys
    sys.path[:0] = [{root!r}, {moddir!r}]
    from cascade_graph.cachekey import cache_key, value_digest
    from cascade_graph.lazy import CacheSpec
    import keymod
    values = pickle.loads(bytes.fromhex(sys.argv[1]))
    print(json.dumps({{
        "flagged": cache_key(keymod.flagged, CacheSpec(),
                             {{"word": "beta", "tags": frozenset({{"x", "y", "z"}})}}),
        "sets": cache_key(keymod.sets, CacheSpec(), {{"x": "a"}}),
        "values": [value_digest(v).hex() for v in values],
    }}))
''')


def _keys_in_subprocess(tmp_path, seed: int, values: list) -> dict:
    moddir = tmp_path / "mods"
    moddir.mkdir(exist_ok=True)
    (moddir / "keymod.py").write_text(_KEY_MODULE)
    script = tmp_path / "keys.py"
    script.write_text(_KEY_SCRIPT.format(root=ROOT, moddir=str(moddir)))
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    proc = subprocess.run([sys.executable, str(script), pickle.dumps(values).hex()],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_keys_identical_across_hash_seeds(tmp_path):
    """Task keys (frozenset constants, closures over functions, set arguments) and value keys
    are the same under different PYTHONHASHSEEDs."""
    values = [{"a", "b", "c", "d"}, frozenset({("x", 1), ("y", 2)}), {"k": {"s", "t"}}]
    runs = [_keys_in_subprocess(tmp_path, seed, values) for seed in (0, 1, 12345)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0]["values"] == [value_digest(v).hex() for v in values]


_SHARED_FLOW = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    from cascade_graph import task, SQLiteStore
    from cascade_vm import run

    def normalise(word):
        return word.strip().lower()

    def make(suffix):
        @task
        def tag(word):
            with open({marker!r}, "a") as fh:
                fh.write("called\\n")
            w = normalise(word)
            return w + suffix if w in {{"alpha", "beta", "gamma", "delta", "epsilon"}} else w

        return tag

    store = SQLiteStore({db!r})
    print(run(make("!")(" Beta ").with_cache(store=store), engine=sys.argv[1]))
''')


@per_engine
def test_sqlite_entries_hit_across_processes_with_other_hash_seeds(engine, tmp_path):
    """A flow whose key involves a frozenset constant and a closure over a function: the
    second process (another PYTHONHASHSEED) reads the first one's entry."""
    marker = tmp_path / "calls.txt"
    script = tmp_path / "shared_flow.py"
    script.write_text(_SHARED_FLOW.format(root=ROOT, marker=str(marker),
                                          db=str(tmp_path / "shared.sqlite")))
    outs = []
    for seed in (1, 2, 3):
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        proc = subprocess.run([sys.executable, str(script), engine], capture_output=True,
                              text=True, timeout=120, env=env, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout.strip())
    assert outs == ["beta!"] * 3
    assert marker.read_text().count("called") == 1


# ---------------------------------------------------------------------------
# properties: distinct stable values never share a key; equal ones always do

_hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2)
    | st.floats(allow_nan=False) | st.complex_numbers(allow_nan=False) | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple)
    | st.frozensets(inner, max_size=3),
    max_leaves=8,
)

stable_values = st.recursive(
    _hashable,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(_hashable, inner, max_size=3) | st.sets(_hashable, max_size=3)
    | st.frozensets(_hashable, max_size=3),
    max_leaves=10,
)


def _canonical(v):
    """A structure equal exactly when two values are the same stable value (types included,
    floats by their bits, sets without order, dicts with their order)."""
    t = type(v)
    if t is float:
        return ("float", math.copysign(1.0, v), v.hex())
    if t is complex:
        return ("complex", _canonical(v.real), _canonical(v.imag))
    if t in (list, tuple):
        return (t.__name__, tuple(_canonical(x) for x in v))
    if t is dict:
        return ("dict", tuple((_canonical(k), _canonical(x)) for k, x in v.items()))
    if t in (set, frozenset):
        return (t.__name__, tuple(sorted((_canonical(x) for x in v), key=repr)))
    return (t.__name__, v)


@given(stable_values, stable_values)
def test_distinct_values_never_share_a_key(a, b):
    """Two stable values have the same key exactly when they are the same value."""
    assert (value_digest(a) == value_digest(b)) == (_canonical(a) == _canonical(b))


@given(stable_values)
def test_a_value_and_its_near_misses_have_other_keys(a):
    """Wrapping, retyping or splitting a value always changes its key."""
    near = [[a], (a,), [a, a], {"k": a}]
    if type(a) in (list, tuple):
        near.append(tuple(a) if type(a) is list else list(a))
    if type(a) is str and len(a) > 1:
        near.append((a[:1], a[1:]))
    digests = {value_digest(x) for x in near}
    assert len(digests) == len(near) and value_digest(a) not in digests


@settings(max_examples=8)
@given(st.lists(stable_values, min_size=1, max_size=25))
def test_same_value_same_key_in_another_process(tmp_path_factory, values):
    """A value's key computed in processes with other PYTHONHASHSEEDs is the same as here."""
    tmp = tmp_path_factory.mktemp("keys")
    here = [value_digest(v).hex() for v in values]
    for seed in (7, 99):
        assert _keys_in_subprocess(tmp, seed, values)["values"] == here


def test_cache_key_includes_key_argument():
    """key= separates entries, and a key is not the same as no key."""
    t = echo
    none = cache_key(t, CacheSpec(), {"x": 1})
    a = cache_key(t, CacheSpec(key="a"), {"x": 1})
    b = cache_key(t, CacheSpec(key=lambda x: "b"), {"x": 1})
    empty = cache_key(t, CacheSpec(key=""), {"x": 1})
    assert len({none, a, b, empty}) == 4


# ---------------------------------------------------------------------------
# the fast paths of a key: binding and the remembered name and code parts


def _plain(a, b, c=3, d=None):
    return a


@pytest.mark.parametrize("args, kwargs", [
    ((1, 2), {}), ((1, 2, 4, 5), {}), ((1,), {"b": 2}), ((), {"d": 1, "b": 2, "a": 0}),
    ((1, 2), {"d": 7}), ((1,), {"c": 1, "b": 0}),
    # calls the signature refuses: the general binding raises for them
    ((1, 2, 3, 4, 5), {}), ((1,), {"a": 2}), ((1,), {}), ((1, 2), {"e": 1}),
])
def test_the_fast_binding_is_signature_binding(args, kwargs):
    """``calls._bind`` of a function of plain parameters gives what ``Signature.bind``
    and ``apply_defaults`` give, in parameter order (the key's order), or defers to
    them for a call they refuse."""
    import inspect

    from cascade_graph.calls import _bind

    t = task(_plain)
    try:
        ba = inspect.signature(_plain).bind(*args, **kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            _bind(t, args, kwargs, set())
        return
    ba.apply_defaults()
    got = _bind(t, args, kwargs, set())
    assert list(got.items()) == list(ba.arguments.items())
    assert list(_bind(t, args, kwargs, {"b"})) == [k for k in ba.arguments if k != "b"]


def test_a_remembered_key_head_follows_the_function():
    """The name and code parts of a key are remembered per function, and only while
    its code, defaults, module and name are the objects they were."""
    spec = CacheSpec()

    def f(x, k=2):
        return x * k

    t = task(f)
    first = cache_key(t, spec, {"x": 1, "k": 2})
    assert cache_key(t, spec, {"x": 1, "k": 2}) == first
    f.__defaults__ = (3,)
    second = cache_key(t, spec, {"x": 1, "k": 2})
    assert second != first
    f.__code__ = (lambda x, k=2: x + k).__code__
    third = cache_key(t, spec, {"x": 1, "k": 2})
    assert third not in (first, second)
    f.__qualname__ = "renamed"
    assert cache_key(t, spec, {"x": 1, "k": 2}) not in (first, second, third)
