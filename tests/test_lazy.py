"""The workflow language (SPEC section 2): tasks, lazy calls, arguments, identity, tail calls."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import threading

import pytest

from cascade_graph import LazyResult, Task, inject, task
from cascade_vm import run
from tests.helpers import Calls, per_engine, per_switches, run_failing, run_on

# ---------------------------------------------------------------------------
# @task


def test_task_returns_task_object():
    """@task turns a function into a Task."""

    @task
    def f(x):
        return x

    assert isinstance(f, Task)


def test_calling_a_task_runs_nothing():
    """Calling a task builds a LazyResult and does not call the function."""
    calls = Calls()

    @task
    def f(x):
        calls.hit("f")
        return x

    lr = f(1)
    assert isinstance(lr, LazyResult)
    assert calls.total() == 0


@per_engine
def test_sync_task_runs(engine):
    """A sync task's value is the run's value."""

    @task
    def add(a, b):
        return a + b

    assert run(add(1, add(2, 3)), engine=engine) == 6


@per_engine
def test_async_task_runs(engine):
    """An async task is awaited and its value used."""

    @task
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    @task
    def inc(x):
        return x + 1

    assert run(inc(double(double(5))), engine=engine) == 21


def test_task_name_defaults_to_qualname():
    """A task's name is the function's qualified name by default."""

    @task
    def plain():
        return 1

    assert plain.name.endswith("plain")


@per_engine
def test_task_name_option(engine):
    """@task(name=...) names the task in events."""

    @task(name="custom")
    def f():
        return 1

    _, rec = run_on(engine, f())
    assert [e.task for e in rec.of(__import__("cascade_graph").TaskStarted)] == ["custom"]


@per_engine
def test_sync_task_runs_on_loop_thread(engine):
    """Without offload a sync task runs inline on the event loop thread."""
    seen = []

    @task
    def where():
        seen.append(threading.get_ident())
        asyncio.get_running_loop()  # raises when not on the loop thread
        return 1

    @task
    async def loop_thread():
        return threading.get_ident()

    @task
    def pair(a, b):
        return (a, b)

    _, loop_id = run(pair(where(), loop_thread()), engine=engine)
    assert seen == [loop_id]


@per_engine
def test_offload_runs_in_worker_thread(engine):
    """offload=True runs a sync function in a thread other than the loop's."""

    @task(offload=True)
    def where():
        return threading.get_ident()

    @task
    async def loop_thread():
        return threading.get_ident()

    @task
    def pair(a, b):
        return (a, b)

    worker, loop_id = run(pair(where(), loop_thread()), engine=engine)
    assert worker != loop_id


@per_engine
def test_offload_copies_context_variables(engine):
    """An offloaded function sees the caller's context variables."""
    var = contextvars.ContextVar("var", default="unset")

    @task
    async def setter():
        var.set("set")
        return 0

    @task(offload=True)
    def reader(_):
        return var.get()

    # The run's context is the one the run starts in: set it outside the run.
    var.set("outer")
    try:
        assert run(reader(0), engine=engine) == "outer"
    finally:
        var.set("unset")


def test_offload_on_async_def_is_type_error():
    """offload=True on an async def fails at decoration with TypeError."""
    with pytest.raises(TypeError):

        @task(offload=True)
        async def f():
            return 1


def test_offload_async_error_names_function():
    """The offload TypeError names the task."""
    with pytest.raises(TypeError, match="nameme"):

        @task(offload=True, name="nameme")
        async def f():
            return 1


# ---------------------------------------------------------------------------
# Arguments


@task
def ident(x):
    return x


@task
def echo(*args, **kwargs):
    return args, kwargs


@per_engine
def test_keyword_arguments_bound(engine):
    """Keyword arguments are bound as Python binds them."""

    @task
    def sub(a, b=10, *, c=0):
        return a - b + c

    assert run(sub(b=ident(1), a=ident(5), c=ident(100)), engine=engine) == 104


@per_engine
def test_lazy_in_list(engine):
    """A lazy value inside a list argument is replaced by its result."""
    out = run(ident([1, ident(2), 3]), engine=engine)
    assert out == [1, 2, 3] and type(out) is list


@per_engine
def test_lazy_in_tuple(engine):
    """A lazy value inside a tuple argument is replaced, the tuple stays a tuple."""
    out = run(ident((ident(1), 2)), engine=engine)
    assert out == (1, 2) and type(out) is tuple


@per_engine
def test_lazy_in_set(engine):
    """A lazy value inside a set argument is replaced, the set stays a set."""
    out = run(ident({ident(1), 2}), engine=engine)
    assert out == {1, 2} and type(out) is set


@per_engine
def test_lazy_in_dict_value_keeps_key_order(engine):
    """A lazy dict value is replaced and the dict keeps its key order."""
    out = run(ident({"z": ident(1), "a": 2, "m": ident(3)}), engine=engine)
    assert out == {"z": 1, "a": 2, "m": 3}
    assert list(out) == ["z", "a", "m"]


@per_engine
def test_lazy_nested_at_depth(engine):
    """Lazies nested several containers deep are found, exact types kept."""
    arg = [({"k": [ident(1), (ident(2),)]}, {ident(3)}), 4]
    out = run(ident(arg), engine=engine)
    assert out == [({"k": [1, (2,)]}, {3}), 4]
    assert type(out[0]) is tuple and type(out[0][0]["k"][1]) is tuple
    assert type(out[0][1]) is set


@per_engine
def test_deep_nesting_no_recursion(engine):
    """Lazies nested 1,500 lists deep (past the recursion limit) are found without
    RecursionError (twice: same shape)."""
    for value in (7, 8):
        arg = ident(value)
        for _ in range(1500):
            arg = [arg]
        out = run(ident(arg), engine=engine)
        for _ in range(1500):
            assert type(out) is list and len(out) == 1
            out = out[0]
        assert out == value


@per_engine
def test_lazy_in_keyword_container(engine):
    """Containers holding lazies may be keyword arguments."""
    assert run(echo(k=[ident(1)]), engine=engine) == ((), {"k": [1]})


@per_engine
def test_namedtuple_passes_through(engine):
    """A namedtuple argument is not searched: it arrives as the same object."""
    P = collections.namedtuple("P", "a b")
    inner = ident(1)
    p = P(inner, 2)
    out = run(ident(p), engine=engine)
    assert out is p and out.a is inner


@per_engine
def test_ordereddict_passes_through(engine):
    """An OrderedDict argument is not searched."""
    inner = ident(1)
    d = collections.OrderedDict(a=inner)
    out = run(ident(d), engine=engine)
    assert out is d and out["a"] is inner


@per_engine
def test_defaultdict_passes_through(engine):
    """A defaultdict argument is not searched."""
    inner = ident(1)
    d = collections.defaultdict(list, a=inner)
    out = run(ident(d), engine=engine)
    assert out is d and out["a"] is inner


@per_engine
def test_frozenset_passes_through(engine):
    """A frozenset argument is not searched."""
    inner = ident(1)
    fs = frozenset([inner])
    out = run(ident(fs), engine=engine)
    assert out is fs and inner in out


@per_engine
def test_list_subclass_passes_through(engine):
    """A list subclass is not searched."""

    class L(list):
        pass

    inner = ident(1)
    val = L([inner])
    out = run(ident(val), engine=engine)
    assert out is val and out[0] is inner


@per_engine
def test_dict_keys_pass_through(engine):
    """A lazy used as a dict key is not evaluated."""
    key = ident(1)
    out = run(ident({key: ident(2)}), engine=engine)
    assert list(out) == [key] and out[key] == 2


@per_engine
def test_literal_container_identity_kept(engine):
    """A container with nothing lazy inside is passed as the same object."""
    data = [1, [2, 3], {"a": (4,)}]
    got = []

    @task
    def keep(x):
        got.append(x)
        return 0

    run(keep(data), engine=engine)
    assert got[0] is data


# ---------------------------------------------------------------------------
# Immutability and identity


def test_lazy_result_cannot_be_constructed_directly():
    """LazyResult() is made only by calling a task."""
    with pytest.raises(TypeError):
        LazyResult()


def test_policy_methods_return_new_object():
    """Policy methods return a new LazyResult, leaving the original alone."""
    a = ident(1)
    b = a.run_if(True)
    c = a.with_retry()
    assert b is not a and c is not a and b is not c


@per_engine
def test_original_unchanged_by_policy(engine):
    """Applying .run_if(False) to a copy does not skip the original."""
    a = ident(1)
    a.run_if(False)
    assert run(a, engine=engine) == 1


@per_engine
def test_shared_lazy_runs_once(engine):
    """One LazyResult used by several consumers runs once."""
    calls = Calls()

    @task
    def source():
        calls.hit("source")
        return 2

    @task
    def add(a, b):
        return a + b

    s = source()
    assert run(add(add(s, s), s), engine=engine) == 6
    assert calls["source"] == 1


@per_engine
def test_equal_distinct_calls_run_twice(engine):
    """Two equal but distinct calls run twice."""
    calls = Calls()

    @task
    def source(x):
        calls.hit("source")
        return x

    @task
    def add(a, b):
        return a + b

    assert run(add(source(1), source(1)), engine=engine) == 2
    assert calls["source"] == 2


@per_engine
def test_shared_lazy_across_container_target_runs_once(engine):
    """A lazy appearing twice in a container target runs once."""
    calls = Calls()

    @task
    def source():
        calls.hit("s")
        return object()

    s = source()
    a, b = run([s, s], engine=engine)
    assert a is b and calls["s"] == 1


def test_lazy_hashes_by_identity():
    """LazyResults with equal arguments are distinct set members."""
    a, b = ident(1), ident(1)
    assert a != b
    assert [a].count(a) == 1 and [b].count(a) == 0
    assert len({a, b, a}) == 2


def test_lazy_with_unhashable_args_is_hashable():
    """A LazyResult whose arguments are unhashable can be a set member and dict key."""
    a = ident([1, 2])
    assert {a: 1}[a] == 1 and a in {a}


@per_engine
def test_lazy_as_dict_value(engine):
    """LazyResults as dict values in a target are evaluated."""
    assert run({"x": ident(1), "y": ident([1])}, engine=engine) == {"x": 1, "y": [1]}


def test_lazy_truth_is_an_error():
    """bool() of a LazyResult is a TypeError (its value is not known yet)."""
    with pytest.raises(TypeError):
        bool(ident(1))


@per_engine
def test_two_tasks_same_name_are_distinct(engine):
    """Two tasks with the same name are different tasks."""

    def make(v):
        @task(name="same")
        def f(x):
            return (v, x)

        return f

    f1, f2 = make("one"), make("two")
    assert run([f1(1), f2(1)], engine=engine) == [("one", 1), ("two", 1)]
    # and in a tail loop of equal shape
    assert run(f2(2), engine=engine) == ("two", 2)
    assert run(f1(2), engine=engine) == ("one", 2)


# ---------------------------------------------------------------------------
# Arity errors


@per_engine
def test_too_many_arguments_type_error_names_task(engine):
    """A call with too many arguments is a TypeError naming the task."""

    @task
    def one(x):
        return x

    exc, _ = run_failing(engine, one(1, 2))
    assert type(exc) is TypeError and "one" in str(exc)


@per_engine
def test_unknown_keyword_type_error_names_task(engine):
    """An unknown keyword argument is a TypeError naming the task."""

    @task
    def kwless(x):
        return x

    exc, _ = run_failing(engine, kwless(1, nope=2))
    assert type(exc) is TypeError and "kwless" in str(exc)


@per_engine
def test_missing_argument_type_error(engine):
    """A call missing a required argument is a TypeError naming the task."""

    @task
    def two(x, y):
        return x

    exc, _ = run_failing(engine, two(1))
    assert type(exc) is TypeError and "two" in str(exc)


@per_engine
def test_arity_error_before_any_task_runs(engine):
    """A bad call deep in the graph fails before any task of the workflow runs."""
    calls = Calls()

    @task
    def first():
        calls.hit("first")
        return 1

    @task
    def one(x):
        calls.hit("one")
        return x

    @task
    def add(a, b):
        return a + b

    exc, rec = run_failing(engine, add(first(), one(first(), 2)))
    assert type(exc) is TypeError
    assert calls.total() == 0
    assert not rec.of(__import__("cascade_graph").TaskStarted)


@per_engine
def test_arity_error_in_continuation_before_continuation_runs(engine):
    """A bad call in a tail-call continuation fails before any task of it runs."""
    calls = Calls()

    @task
    def inner():
        calls.hit("inner")
        return 1

    @task
    def bad(x):
        calls.hit("bad")
        return x

    @task
    def starter():
        calls.hit("starter")
        return bad(inner(), 2)

    exc, _ = run_failing(engine, starter())
    assert type(exc) is TypeError and "bad" in str(exc)
    assert calls.counts == {"starter": 1}


# ---------------------------------------------------------------------------
# Tail calls


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@per_engine
@per_switches
def test_tail_call_at_root(engine, switches):
    """A task returning a lazy call takes that call's value."""
    assert run(countdown(50), engine=engine, **switches) == "done"


@per_engine
@per_switches
def test_tail_call_at_non_root_node(engine, switches):
    """A tail call inside the graph (not the root) delivers to its consumer."""

    @task
    def wrap(x):
        return ("w", x)

    assert run(wrap(countdown(20)), engine=engine, **switches) == ("w", "done")


@per_engine
@per_switches
def test_tail_call_evaluates_dependencies(engine, switches):
    """A returned lazy call's own dependencies are evaluated."""

    @task
    def add(a, b):
        return a + b

    @task
    def plan(x):
        return add(ident(x), add(x, 1))

    assert run(add(plan(3), 100), engine=engine, **switches) == 107


@per_engine
@per_switches
def test_container_returned_is_not_evaluated(engine, switches):
    """A task returning a container holding lazies returns it as is."""
    inner = ident(1)

    @task
    def make():
        return [inner, {"k": inner}]

    out = run(make(), engine=engine, **switches)
    assert type(out) is list and out[0] is inner and out[1]["k"] is inner


@per_engine
@per_switches
def test_mutual_recursion_two_tasks(engine, switches):
    """a -> b -> a with their own arguments returns each task's own results."""

    @task
    def ping(n, log):
        return ("ping-end", log) if n == 0 else pong(n - 1, log + ("ping",))

    @task
    def pong(n, log):
        return ("pong-end", log) if n == 0 else ping(n - 1, log + ("pong",))

    assert run(ping(3, ()), engine=engine, **switches) == (
        "pong-end", ("ping", "pong", "ping"))
    assert run(ping(4, ()), engine=engine, **switches) == (
        "ping-end", ("ping", "pong", "ping", "pong"))


@per_engine
@per_switches
def test_mutual_recursion_different_shapes(engine, switches):
    """a(x) -> b(lazy, lit) -> a: loops whose steps differ in shape run each own function."""

    @task
    def a(n):
        return ("a", n) if n <= 0 else b(ident(n - 1), "from-a")

    @task
    def b(n, tag):
        return ("b", n, tag) if n <= 0 else a(n - 1)

    assert run(a(4), engine=engine, **switches) == ("a", 0)
    assert run(a(5), engine=engine, **switches) == ("b", 0, "from-a")


@per_engine
@per_switches
def test_three_task_cycle_same_arity(engine, switches):
    """Three tasks with the same argument layout cycling keep each own function."""

    @task
    def x(n, acc):
        return acc if n == 0 else y(n - 1, acc + "x")

    @task
    def y(n, acc):
        return acc if n == 0 else z(n - 1, acc + "y")

    @task
    def z(n, acc):
        return acc if n == 0 else x(n - 1, acc + "z")

    assert run(x(7, ""), engine=engine, **switches) == "xyzxyzx"


@per_engine
@per_switches
def test_tail_call_nodes_are_fresh(engine, switches):
    """Nodes of a continuation are fresh: memoisation is per evaluation."""
    calls = Calls()

    @task
    def tick(n):
        calls.hit(n)
        return n

    @task
    def loop(n, acc):
        return acc if n == 0 else loop(n - 1, acc + tick(1))

    # tick(1) is built anew in every iteration: it must run each time
    @task
    def add(a, b):
        return a + b

    @task
    def loop2(n, acc):
        return acc if n == 0 else loop2(n - 1, add(acc, tick(1)))

    assert run(loop2(5, 0), engine=engine, **switches) == 5
    assert calls[1] == 5


@per_engine
@per_switches
def test_tail_call_in_both_branches_of_a_graph(engine, switches):
    """Two sibling nodes that both tail-call get their own values."""

    @task
    def pair(a, b):
        return (a, b)

    @task
    def down(n, tag):
        return tag if n == 0 else down(n - 1, tag)

    assert run(pair(down(30, "L"), down(7, "R")), engine=engine, **switches) == ("L", "R")


@per_engine
@per_switches
def test_tail_call_to_lazy_with_shared_node(engine, switches):
    """A continuation with a shared node evaluates it once."""
    calls = Calls()

    @task
    def src():
        calls.hit("src")
        return 3

    @task
    def add(a, b):
        return a + b

    @task
    def go():
        s = src()
        return add(s, s)

    assert run(go(), engine=engine, **switches) == 6
    assert calls["src"] == 1


@per_engine
@per_switches
def test_async_tail_call_loop(engine, switches):
    """An async task tail-calling itself loops to its result."""

    @task
    async def adown(n):
        return n if n <= 0 else adown(n - 1)

    assert run(adown(500), engine=engine, **switches) == 0


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "nohot"])
@per_engine
def test_million_iteration_countdown(engine, hot_path):
    """1,000,000 tail-call iterations run without RecursionError."""
    n = 1_000_000 if hot_path else 200_000  # the slow path keeps the suite fast
    assert run(countdown(n), engine=engine, hot_path=hot_path) == "done"


@per_engine
def test_million_iteration_non_flat_loop(engine):
    """A non-flat tail loop (a lazy argument per step) keeps a constant Python stack."""

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    assert run(step(100_000, 0), engine=engine) == 100_000


@per_engine
def test_tail_loop_memory_bounded(engine):
    """A long tail loop does not grow memory with the iteration count."""
    import tracemalloc

    @task
    def step(n):
        return n if n <= 0 else step(n - 1)

    run(step(1000), engine=engine)
    tracemalloc.start()
    try:
        run(step(5_000), engine=engine, hot_path=False)
        _, peak_small = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run(step(50_000), engine=engine, hot_path=False)
        _, peak_big = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ten times the iterations must not take anywhere near ten times the memory
    assert peak_big < peak_small * 1.5 + 100_000


@per_engine
@per_switches
def test_continuation_reevaluates_outer_lazy(engine, switches):
    """A lazy from the outer workflow reused in a continuation runs again there (fresh nodes)."""
    calls = Calls()

    @task
    def src():
        calls.hit("src")
        return 1

    x = src()

    @task
    def hop(_):
        return ident(x)

    @task
    def pair(a, b):
        return (a, b)

    assert run(pair(x, hop(0)), engine=engine, **switches) == (1, 1)
    assert calls["src"] == 2


@per_engine
def test_task_object_target_returned_as_is(engine):
    """A Task (not a call) as target has nothing lazy: it is returned as it is."""
    assert run(ident, engine=engine) is ident


@per_engine
def test_deep_nested_tail_calls_below_root(engine):
    """A task whose continuation nests another tail-calling call, 3,000 deep, runs."""

    @task
    def inc(x):
        return x + 1

    @task
    def depth(n):
        return 0 if n == 0 else inc(depth(n - 1))

    assert run(depth(3000), engine=engine) == 3000


@per_engine
@per_switches
def test_container_returned_below_root_is_not_evaluated(engine, switches):
    """A container of lazies returned by a non-root task reaches its consumer unevaluated."""
    inner = ident(1)

    @task
    def make():
        return (inner,)

    @task
    def inspect_it(c):
        return type(c[0]).__name__

    assert run(inspect_it(make()), engine=engine, **switches) == "LazyResult"


@per_engine
def test_results_not_memoised_across_runs(engine):
    """Running the same LazyResult twice calls its task twice."""
    calls = Calls()

    @task
    def src():
        calls.hit("src")
        return 1

    x = src()
    assert run(x, engine=engine) == 1
    assert run(ident(x), engine=engine) == 1
    assert calls["src"] == 2


@per_engine
def test_calls_without_keywords_share_one_empty_kwargs_that_stays_empty(engine):
    """A call with no keyword arguments holds the one shared empty ``kwargs`` (no dict
    per lazy call); running workflows of every kind of call never fills it."""
    from cascade_graph.lazy import _NO_KWARGS

    @task
    def add(a, b=0):
        return a + b

    @task
    async def lift(x):
        return x + 1

    @task
    def first(xs):
        return xs[0]

    calls = [add(1), add(add(1)), add(add(1), add(2)), first([add(1), 2]), lift(add(3))]
    assert all(c.kwargs is _NO_KWARGS for c in calls)
    assert run(add(add(add(1), b=2), add(lift(4), b=calls[2])), engine=engine) == 3 + 5 + 3
    for c in calls[1:]:
        run(c, engine=engine)
    assert _NO_KWARGS == {}


def test_a_policy_copy_is_what_the_general_path_builds(monkeypatch):
    """``f(x).with_timeout(5)``, ``f(1).with_retry(3)``, ``f(x).run_if(c)`` are built
    from the original's fields (no argument walk): spec, literals, children, tree and
    uses must equal what the general path builds. The shape is interned from the bare
    call's: equal structures share it whatever order the policies were given in, a
    pickle's rebuild finds it, and no two structures share one."""
    import pickle

    from cascade_graph.lazy import _make

    f = add3
    makes = [
        lambda x: f(1),  # flat
        lambda x: f(1, b=2),  # flat, keywords
        lambda x: f(b=2, a=1),
        lambda x: f(x),  # a chain link
        lambda x: f(x, c=2),  # a link with a keyword literal
        lambda x: f(1, b=x),  # one lazy by keyword
        lambda x: f(x, f(2)),  # two lazies
        lambda x: f(sum_of([x, 1])),  # a container below
        lambda x: f(f(x)),  # a run of links
    ]
    changes = [  # (the node, a lazy condition of its own)
        lambda y, c: y.with_retry(3),
        lambda y, c: y.with_timeout(5),
        lambda y, c: y.with_cache(),
        lambda y, c: y.with_retry(2).with_timeout(1),
        lambda y, c: y.run_if(True),
        lambda y, c: y.run_if(c).with_retry(2),
        lambda y, c: y.after(c, c).run_if(c),
        lambda y, c: y.with_timeout(2).after(f(3)),
        lambda y, c: y.run_if(y.children[0] if y.children else c),
    ]

    def general_path(self, policy):
        return _make(self.task, self.args, self.kwargs, policy, original=self)

    def built(change, make):
        node = change(make(f(0)), f(9))
        return node, [c.uses for c in node.children], [c.shape for c in node.children]

    shapes = set()
    flag = f(9)
    for make in makes:
        for change in changes:
            copy, uses, child_shapes = built(change, make)
            with monkeypatch.context() as patch:
                patch.setattr(LazyResult, "_with_policy", general_path)
                general, general_uses, general_child_shapes = built(change, make)
            assert (copy.spec, list(copy.lits), copy.tree, copy.policy is not None) == (
                general.spec, list(general.lits), general.tree, True)
            assert (uses, child_shapes) == (general_uses, general_child_shapes)
            assert built(change, make)[0].shape == copy.shape
            assert pickle.loads(pickle.dumps(copy)).shape == copy.shape
            shapes.add(copy.shape)
        assert (make(f(0)).with_retry(2).with_timeout(1).shape
                == make(f(0)).with_timeout(1).with_retry(2).shape)
        assert (make(f(0)).run_if(flag).with_retry(2).shape
                == make(f(0)).with_retry(2).run_if(flag).shape)
    assert len(shapes) == len(makes) * len(changes)  # no two structures share one
    assert f(1).with_retry(3).spec is f(2).with_retry(3).spec
    assert f(f(0)).with_retry(3).shape != f(f(0)).with_retry(4).shape
    assert f(1).with_retry(3).shape != f(1, b=1).with_retry(3).shape
    assert f(1).run_if(f(2)).shape != f(1).run_if(f(f(2))).shape
    for engine in ("vm", "graph"):
        node = 0
        for i in range(300):
            node = f(node, c=1) if i % 3 else f(node, c=1).with_timeout(5).with_retry(2)
        assert run(node, engine=engine) == 300
        assert run(f(f(0)).with_retry(2), engine=engine) == 0
        assert run(f(1).run_if(f(0)), engine=engine) is None
        assert run([f(1).run_if(f(1)).after(f(2)), f(2).run_if(False)],
                   engine=engine) == [1, None]


@task
def sum_of(xs):
    return sum(xs)


@task
def add3(a, b=0, c=0):
    return a + b + c


def test_a_policy_given_again_is_checked_alike_and_shared():
    """``.with_retry``/``.with_timeout`` keep each checked setting: equal settings give
    one policy object (frozen, so shared safely) and one shape; a bad value is still
    refused after an equal-looking good one (``True`` after ``1``); a store need not
    be hashable."""

    @task
    def f(x):
        return x

    a, b = f(1).with_retry(3), f(2).with_retry(3)
    assert a.policy is b.policy and a.shape == b.shape
    assert f(1).with_retry(1).policy.retry.max_attempts == 1
    with pytest.raises(TypeError, match="a bool"):
        f(1).with_retry(True)
    assert f(1).with_timeout(2).policy is f(3).with_timeout(2).policy
    assert f(1).with_timeout(2).shape != f(1).with_timeout(3).shape
    class Store:  # a store that defines == without a hash
        def __eq__(self, other):
            return self is other

        def get(self, key, default=None):
            return default

        def set(self, key, value, ttl=None):
            pass

    store = Store()
    kept = f(1).with_cache(store=store)
    assert kept.policy.cache.store is store
    assert kept.shape == f(2).with_cache(store=store).shape
    assert kept.shape != f(1).with_cache(store=Store()).shape  # another store
    assert run(kept) == 1
    chained = f(1).with_retry(2).with_timeout(1)
    assert chained.policy.retry.max_attempts == 2 and chained.policy.timeout == 1
    assert a.policy.timeout is None  # the shared policy was not changed by the chain


_A_MARKER = inject("db")  # (markers compare by identity: one object for both paths)
#: argument layouts with containers, as (args, kwargs) (x, y: fresh lazies; f: a fresh
#: flat call)
_LIST_LAYOUTS = {
    "lazy and literal": lambda x, y, f: (([x, 1],), {}),
    "tuple": lambda x, y, f: (((1, x), 2), {}),
    "two lists": lambda x, y, f: (([x], [2, y]), {}),
    "one lazy twice": lambda x, y, f: (([x, x, 3],), {}),
    "literals only": lambda x, y, f: (([1, 2], x), {}),
    "empty list": lambda x, y, f: (([], x), {}),
    "flat calls (a batch)": lambda x, y, f: (([f, echo(2)],), {}),
    "dict": lambda x, y, f: (({"k": x, "n": 1},), {}),
    "dict of literals": lambda x, y, f: (({"k": 1}, x), {}),
    "list by keyword": lambda x, y, f: ((), {"a": [x, 1]}),
    "dict and list by keyword": lambda x, y, f: ((x,), {"a": {"k": y}, "b": [1, x]}),
    "fan-in of lazies": lambda x, y, f: (([x, y] + [ident(ident(i)) for i in range(9)],), {}),
    "fan-in tuple after a lazy": lambda x, y, f: (
        (y, tuple([x] + [ident(ident(i)) for i in range(9)])), {}),
    "fan-in holding an earlier child": lambda x, y, f: (
        (x, [ident(ident(i)) for i in range(9)] + [x]), {}),
    "fan-in with a lazy twice": lambda x, y, f: (([x, y] * 5,), {}),
    "nested": lambda x, y, f: (([[x], 1],), {}),
    "nested literal beside a lazy": lambda x, y, f: (({"a": [1, 2], "b": (3,)}, x), {}),
    "nested dicts and lists": lambda x, y, f: (({"a": [x, {"b": (y, 2)}], "c": [1]},), {}),
    "nested by keyword, one lazy twice": lambda x, y, f: ((), {"a": [[x], {"k": [x, f]}]}),
    "nested, literal inside": lambda x, y, f: (([x, [1, [2]], {"z": (3,)}],), {}),
    "nested with a marker (general)": lambda x, y, f: (([[x, _A_MARKER]],), {}),
    "nested with an int key (general)": lambda x, y, f: (([{1: x}],), {}),
    "nested set (general)": lambda x, y, f: (([x, {1, 2}, [frozenset()]],), {}),
    "deeper than the walk (general)": lambda x, y, f: (
        (functools.reduce(lambda inner, _: [inner], range(20), [x]),), {}),
    "dict with an int key (general)": lambda x, y, f: (({1: x},), {}),
}


@pytest.mark.parametrize("layout", _LIST_LAYOUTS.values(), ids=_LIST_LAYOUTS.keys())
def test_calls_with_containers_make_the_general_paths_node(layout):
    """A call whose arguments hold lists, tuples or dicts is made by its own lane
    (``lazy._make_lists``): the same spec (one object per one-level layout), shape,
    literals, children and tree flag as the general path (``lazy._make``) gives it."""
    from cascade_graph import lazy as lazy_mod

    def made(by_lane: bool):
        args, kwargs = layout(ident(1), ident(2), echo(1))
        if by_lane:
            return echo(*args, **kwargs)
        return lazy_mod._make(echo, args, kwargs, lazy_mod.EMPTY_POLICY)

    lane, general, again = made(True), made(False), made(True)
    assert lane.shape == general.shape == again.shape
    assert lane.spec == general.spec
    assert lane.lits == general.lits
    assert [c.shape for c in lane.children] == [c.shape for c in general.children]
    assert lane.tree == general.tree

    def one_level(s):
        return s is None or s[0] == "L" or (
            (s[0] == "C" or (s[0] == "D" and all(type(k) is str for k in s[1])))
            and all(i is None or i[0] == "L" for i in s[2]))

    flat = lane.spec is not None and all(map(one_level, lane.spec[0] + lane.spec[2]))
    interned = lane.spec is not None and lazy_mod._shallow(lane.spec[0] + lane.spec[2])
    assert (lane.spec is again.spec) == interned  # one spec object per layout walked
    assert (id(lane.spec) in lazy_mod._ONE_LEVEL_SPEC_IDS) == flat


@per_engine
def test_dict_keys_equal_across_types_are_kept(engine):
    """``{1: x}``, ``{True: x}`` and ``{1.0: x}`` are equal keys of different types:
    each call gets its own keys back, however often each layout runs."""

    @task
    def key_types(d):
        return [type(k).__name__ for k in d]

    for _ in range(3):
        for key in (1, True, 1.0, "1"):
            assert run(key_types({key: ident(5)}), engine=engine) == [type(key).__name__]


@per_engine
def test_a_chain_of_links_through_lists_runs_on_every_tier(engine):
    """``pair([x, 1])`` links: first sight, template, and warm runs each give their
    own value."""

    @task
    def pair(xs):
        return xs[0] + xs[1]

    def chain(off, n=300):
        x = ident(off)
        for _ in range(n):
            x = pair([x, 1])
        return x

    for off in range(4):
        assert run(chain(off), engine=engine) == off + 300


@per_engine
def test_nested_containers_run_on_every_tier(engine):
    """Calls whose arguments nest lists, tuples and str-keyed dicts of lazies (one
    interned spec per layout): a chain of them, a fan-in of them and a literal inside,
    on the first sight, the template and warm runs, each with its own values."""

    @task
    def nest(d, extra=None):
        return d["a"][0] + d["b"]["c"] + sum(d["t"][1]) + (extra or [0])[0]

    def chain(off, n=200):
        x = ident(off)
        for i in range(n):
            x = nest({"a": [x], "b": {"c": 1}, "t": ("lit", (i % 2, 0))},
                     extra=[ident(1)] if i % 50 == 0 else None)
        return x

    def fan_in(off, n=100):
        return sum_of([nest({"a": (ident(i + off),), "b": {"c": [ident(1)][0]},
                             "t": [None, [1, 1]]}) for i in range(n)])

    for off in range(4):
        assert run(chain(off), engine=engine) == off + 200 + 100 + 4
        assert run(fan_in(off), engine=engine) == sum(range(off, off + 100)) + 300


def test_interned_specs_are_bounded_in_items(monkeypatch):
    """Fan-ins of many sizes cannot pile their specs up: the table of interned specs is
    emptied when its argument and item specs would pass ``_SPEC_ITEMS_LIMIT``; a layout
    interned again then gets a new number (new shapes: a cache miss), and runs alike."""
    from cascade_graph import lazy as lazy_mod

    monkeypatch.setattr(lazy_mod, "_SPEC_ITEMS_LIMIT", 100)
    x = ident(1)
    first = echo([x] + list(range(59)))
    assert lazy_mod._spec_items[0] <= 100
    again = echo([x] + list(range(59)))
    assert again.spec is first.spec and again.shape == first.shape  # still interned
    echo([x] + list(range(69)))  # 71 more: the table is emptied first
    assert lazy_mod._spec_items[0] <= 100
    later = echo([x] + list(range(59)))
    assert later.spec == first.spec and later.spec is not first.spec
    assert later.shape != first.shape
    assert run(later) == run(first) == (([1, *range(59)],), {})
