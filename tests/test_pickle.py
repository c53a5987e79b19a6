"""Pickling (SPEC section 8): tasks by reference, lazies by their calls.

A pickled ``LazyResult`` is rebuilt by calling its task again, so its
structure is recomputed where it lands; it runs to the same value and emits
the same events as the original, on both engines, with and without the
tail-call cache and the hot path.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from cascade_graph import Param, Router, task
from cascade_graph.lazy import LazyResult
from cascade_graph.params import Env
from cascade_vm import run
from tests.flows import remote_flows as rf
from tests.helpers import ENGINES, SWITCHES, Recorder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def roundtrip(value):
    return pickle.loads(pickle.dumps(value))


def _workflows():
    """(id, lazy, params) of every kind of workflow a pickle must carry."""
    x = rf.add(1, 2)
    yield "tail-loop", rf.countdown(50), {}
    yield "mutual", rf.ping(9), {}
    yield "nested-fan", rf.fan(6), {}
    yield "map-policy", rf.mapped(5), {}
    yield "router-tail", [rf.routed(3), rf.routed(30)], {}
    yield "param-tail", rf.climb(0), {"limit": "4"}
    yield "param-env", rf.param_call(7), {"needed": "5"}
    yield "after-if", rf.after_and_if(20), {}
    yield "shared", rf.add(x, rf.double(x)).run_if(x), {}
    yield "map", rf.total(rf.double.map([1, 2, 3]).with_timeout(10)), {}
    yield "router-arg", rf.label("k", Router(rf.is_big(x), {True: rf.add(x, 9),
                                                             False: rf.double(x)})), {}
    yield "container", {"a": [x, rf.double(x)], "b": (rf.countdown(3),)}, {}


WORKFLOWS = list(_workflows())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("switches", SWITCHES)
@pytest.mark.parametrize("case", WORKFLOWS, ids=[w[0] for w in WORKFLOWS])
def test_roundtrip_runs_to_the_same_value_and_events(case, engine, switches):
    _, target, params = case
    before, after = Recorder(), Recorder()
    want = run(target, engine=engine, params=params, on_event=before, **switches)
    got = run(roundtrip(target), engine=engine, params=params, on_event=after, **switches)
    assert got == want
    assert after.kinds() == before.kinds()


def test_roundtrip_keeps_tasks_and_sharing():
    x = rf.add(1, 2)
    y = rf.add(x, x).after(x).run_if(x)
    z = roundtrip(y)
    assert z is not y and type(z) is LazyResult
    assert z.task is rf.add  # the same task object: pickled by reference
    a, b = z.args
    assert a is b and z.policy.after[0] is a and z.policy.conds[0] is a
    assert z.policy == y.policy or z.policy.conds[0] is not y.policy.conds[0]
    assert pickle.loads(pickle.dumps(rf.countdown)) is rf.countdown


def test_structure_is_recomputed_not_sent():
    from cascade_graph.lazy import lazy_from_call

    lazy = rf.add(rf.countdown(3), 4).with_retry(2)
    rebuild, (first, task_obj, args, kwargs, policy) = lazy.__reduce__()
    assert rebuild is lazy_from_call  # what a pickle holds: the call, nothing structural
    assert first == [lazy.args[0]] and task_obj is rf.add
    assert args is lazy.args and kwargs is lazy.kwargs and policy is lazy.policy
    back = roundtrip(lazy)
    assert back.shape == lazy.shape  # equal structure in one process: one shape
    assert back.spec == lazy.spec and back.tree == lazy.tree


def test_deep_chain_pickles_without_recursion():
    chain = 0
    for _ in range(20_000):
        chain = rf.add(chain, 1)
    back = roundtrip(chain)
    assert run(back) == 20_000
    assert run(back, engine="graph") == 20_000


def test_params_keep_required_default_type_and_help():
    p = roundtrip(rf.NEEDED)
    assert isinstance(p, Param) and p is not rf.NEEDED
    assert p.required and p.type is int and p.help == "required"
    q = roundtrip(rf.LIMIT)
    assert not q.required and q.default == 3 and q.type is int
    e = roundtrip(rf.HOME)
    assert isinstance(e, Env) and e.name == "CASCADE_TEST_HOME" and e.default == "nowhere"


def test_a_task_that_is_not_importable_fails_with_a_clear_error():
    @task
    def inner(x):
        return x

    with pytest.raises(pickle.PicklingError) as err:
        pickle.dumps(inner(1))
    msg = str(err.value)
    assert "'test_a_task_that_is_not_importable_fails_with_a_clear_error.<locals>.inner'" in msg
    assert "top level of an importable module" in msg


def test_a_task_under_another_name_fails_with_a_clear_error():
    renamed = task(rf.add.fn, name="renamed")  # a second task of the same function
    with pytest.raises(pickle.PicklingError, match="'renamed'"):
        pickle.dumps(renamed)


def test_a_task_missing_where_it_lands_fails_with_a_clear_error():
    from cascade_graph.lazy import task_from_ref

    with pytest.raises(pickle.UnpicklingError, match="not importable in this process"):
        task_from_ref("tests.flows.remote_flows", "no_such_task")
    with pytest.raises(pickle.UnpicklingError, match="not the task that was pickled"):
        task_from_ref("tests.flows.remote_flows", "LIMIT")


_OTHER_PROCESS = """
import pickle, sys
from tests.flows import remote_flows as rf
sys.stdout.buffer.write(pickle.dumps([rf.countdown(10), rf.mapped(4), rf.routed(50)]))
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lazy_pickled_in_another_process_runs_here(engine):
    blob = subprocess.run([sys.executable, "-c", _OTHER_PROCESS], cwd=ROOT, check=True,
                          capture_output=True, timeout=60).stdout
    back = pickle.loads(blob)
    assert [x.task for x in back] == [rf.countdown, rf.mapped, rf.routed]
    assert run(back, engine=engine) == [55, 12, "r:100"]
