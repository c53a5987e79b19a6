"""Tests of the harness's own pieces, without the engines.

The reference evaluator, the task library, the generator and the JSON and
Python renderings must be right for the differential tests to mean anything.
None of these tests imports ``cascade_graph`` or ``cascade_vm``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect

import pytest
from hypothesis import given, settings

from tests.strategies import programs

from . import corpus, features, library, reference, workflow
from .workflow import Call, Coll, Lit, LoopTask, Program, Ref, RunIf, Step, Var

ALL = frozenset(features.ALL)


def ev(target, **kw) -> reference.Result:
    return reference.evaluate(Program(target=target, **kw))


def call(task, *args, **kw):
    return Call(task, tuple(a if not isinstance(a, (int, str)) else Lit(a) for a in args), **kw)


# -- the library ---------------------------------------------------------------


SAMPLES = {
    "int": 3,
    "str": "ab",
    "ilist": [1, 2],
    "iset": {4, 5},
    "dict": {"k0": 1, "z": 2},
    "any": (1, [2]),
}


@pytest.mark.parametrize("name", sorted(library.SPECS))
def test_task_logs_what_the_reference_logs(name):
    """Calling a library task logs exactly the entry the reference predicts."""
    spec = library.SPECS[name]
    args = [SAMPLES[t] for _, t in spec.params]
    library.reset()
    try:
        got = asyncio.run(spec.fn(*args)) if spec.is_async else spec.fn(*args)
        expected = reference.value(got)
    except Exception as exc:  # noqa: BLE001 - flaky fails its first attempts
        expected = reference.failed(reference.Failure(type(exc).__name__, str(exc), name))
    logged = library.RUN.calls
    ref = reference.Reference(Program(target=Lit(0)))
    out = ref.invoke(name, tuple(args), {}, None, [])
    assert logged == ref.calls
    assert out == expected


def test_every_task_signature_matches_its_spec():
    """The spec's parameter list is the function's real signature."""
    for spec in library.SPECS.values():
        params = list(inspect.signature(spec.fn).parameters)
        assert params == [n for n, _ in spec.params] + [n for n, _ in spec.kwonly], spec.name


def test_canon_is_type_exact():
    """canon tells list/tuple/set/dict and their subclasses apart, keeps dict order, sorts sets."""
    assert library.canon([1]) != library.canon((1,))
    assert library.canon({"a": 1, "b": 2}) != library.canon({"b": 2, "a": 1})
    assert library.canon({3, 1, 2}) == "set{1, 2, 3}"
    assert library.canon(collections.OrderedDict(a=1)) != library.canon({"a": 1})
    assert library.canon(library.Pt(1, 2)) != library.canon((1, 2))
    assert library.canon(True) != library.canon(1)
    assert library.canon(library.LAZY) == "<lazy>"


# -- the reference ---------------------------------------------------------------


def test_shared_node_runs_once_equal_calls_twice():
    """add(x, x) runs x once; add(x1, x2) with equal calls runs it twice."""
    shared = ev(Call("add", (Ref("s0"), Ref("s0"))), shared=(("s0", call("neg", 5)),))
    distinct = ev(call("add", call("neg", 5), call("neg", 5)))
    assert shared.calls[("neg", "(5,)")] == 1
    assert distinct.calls[("neg", "(5,)")] == 2
    assert shared.outcome == distinct.outcome == reference.value(-10)


def test_skipped_target_item_becomes_none():
    """Inside a container target a skipped call becomes None; its dependencies still ran."""
    skipped = Call("neg", (call("add", 1, 1),), policies=(RunIf(Lit(False)),))
    r = ev(Coll("list", (skipped, Lit(7))))
    assert r.outcome == reference.value([None, 7])
    assert r.calls == collections.Counter({("add", "(1, 1)"): 1})


def test_independent_failures_are_all_possible():
    """Two independent failing calls: either may be the one an engine observes first."""
    r = ev(call("pair", call("must_pos", -1), call("div", 1, 0)))
    assert r.outcome.kind == "failed"
    assert {f.type for f in r.outcome.failures} == {"ValueError", "ZeroDivisionError"}
    assert ("pair", "") not in {(lab, "") for lab, _ in r.calls}  # the consumer never ran


def test_wrong_arity_fails_before_any_task():
    """A wrong arity anywhere in the workflow: TypeError and no call at all."""
    r = ev(call("pair", call("neg", 1), Call("add", (Lit(1),))))
    assert r.outcome.kind == "failed"
    assert [f.type for f in r.outcome.failures] == ["TypeError"]
    assert not r.calls


def test_loop_trampoline_mutual_recursion():
    """a(n, x) -> b(n-1, [x], 's') -> a(n-2, sum([x])) ... ends in a's base value."""
    loops = (
        LoopTask(
            "L0a",
            (("n", "int"), ("p1", "int")),
            "any",
            Var("p1"),
            (Step("L0b", (Coll("list", (Var("p1"), Lit(1))), Lit("s"))),),
        ),
        LoopTask(
            "L0b",
            (("n", "int"), ("p1", "ilist"), ("p2", "str")),
            "any",
            Var("p2"),
            (Step("L0a", (Call("sum_list", (Var("p1"),)),)),),
        ),
    )
    r = reference.evaluate(Program(target=call("L0a", 6, 1), loops=loops))
    assert r.outcome == reference.value(4)
    assert r.calls[("L0a", "(0, 4)")] == 1


def test_flaky_with_enough_retries_succeeds():
    """flaky(x, 2) with 3 attempts: two failed attempts, then the value."""
    from .workflow import Retry

    r = ev(Call("flaky", (Lit(4), Lit(2)), policies=(Retry(3, "ValueError"),)))
    assert r.outcome == reference.value(12)
    assert r.calls[("flaky", "(4, 2)")] == 3


# -- the generator and the renderings ------------------------------------------------


@settings(max_examples=150)
@given(programs(features=ALL))
def test_generated_programs_are_valid(program):
    """Every generated program round-trips through JSON, renders as Python, and the
    reference evaluates it deterministically without an internal error."""
    assert workflow.from_json(workflow.to_json(program)) == program
    assert workflow.validate(program) == []
    compile(workflow.to_python(program), "<repro>", "exec")
    try:
        first = reference.evaluate(program)
    except reference.Discard:
        return
    again = reference.evaluate(program)
    assert first.outcome == again.outcome or library.canon(first.outcome.value) == library.canon(
        again.outcome.value
    )
    assert first.calls == again.calls
    for f in first.outcome.failures:
        # only intended failures: a raising task, wrong arity, params, routers, map lengths
        assert f.type in {
            "ValueError",
            "ZeroDivisionError",
            "TypeError",
            "KeyError",
            "ParameterError",
        }
        if f.type == "TypeError":
            assert f.message is None, f  # wrong arity, never an ill-typed call


@pytest.mark.parametrize("path", corpus.files(), ids=lambda p: p.stem)
def test_corpus_case_parses_and_means_what_it_says(path):
    """Every corpus file loads, and a hand-written case's expectation holds on the reference."""
    program, doc = corpus.load(path)
    assert workflow.from_json(workflow.to_json(program)) == program
    assert workflow.validate(program) == []
    if "expect" in doc:
        r = reference.evaluate(program)
        got = library.canon(r.outcome.value) if r.outcome.kind == "value" else str(r.outcome)
        assert got == doc["expect"]
