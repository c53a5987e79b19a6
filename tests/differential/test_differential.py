"""The differential properties: random workflows agree everywhere.

Each property draws programs (``tests/strategies.py``) and hands them to the
oracle (``oracle.check``): reference evaluator vs. both engines with the
tail cache and hot path on and off (and ``arun``). A failing example is
shrunk by Hypothesis, then saved under ``corpus/`` and replayed by
``test_corpus_case`` from then on. Set ``FUZZ_SAVE=0`` to not save.

Optional language features (Router, run_if, map, retry, params, resources,
...) switch on by themselves as the engines implement them: see
``features.py``.
"""

from __future__ import annotations

import os

import pytest

from tests.strategies import programs

from . import corpus, features, library, oracle, reference, session

pytestmark = pytest.mark.skipif(
    not features.engines_present(),
    reason="the engines (cascade_graph/cascade_vm) are not importable",
)

LOOP_FEATURES = {"loops", "mutual", "same_names"}


def run_property(strategy) -> None:
    """Check every drawn program; save the minimal failing one to the corpus and fail."""
    found = session.hunt(strategy)
    if found is not None:
        where = f"saved to {found.path}" if found.path else "not saved (FUZZ_SAVE=0)"
        pytest.fail(f"minimal failing workflow {where}\n\n{found.report}", pytrace=False)


def test_plain_workflows():
    """Workflows without loop tasks: calls, containers, sharing, policies."""
    run_property(programs(features=features.available() - LOOP_FEATURES))


def test_tail_call_loops():
    """Workflows built around tail-call loops and mutual recursion."""
    run_property(programs(force=("loops", "mutual")))


def test_fan_outs():
    """Fan-outs of flat calls (the engines hold such a list as one batch node),
    with items shared by later calls (a DAG), and chains of one task's calls
    (one run node), with loops and failures about."""
    run_property(programs(force=("dup",), fans=True))


def test_swarm():
    """Everything available, swarm-style."""
    run_property(programs())


@pytest.mark.parametrize("path", corpus.files(), ids=lambda p: p.stem)
def test_corpus_case(path, request):
    """A saved or hand-written workflow still agrees everywhere."""
    program, doc = corpus.load(path)
    if doc.get("xfail"):  # a known open disagreement, by the lead's decision
        request.applymarker(pytest.mark.xfail(reason=doc["xfail"], strict=False))
    missing = features.missing(oracle_features(program))
    if missing:
        pytest.skip(f"needs features not implemented yet: {sorted(missing)}")
    if "expect" in doc:
        ref = reference.evaluate(program)
        got = str(ref.outcome) if ref.outcome.kind != "value" else library.canon(ref.outcome.value)
        assert got == doc["expect"], f"the reference no longer means what the case says: {got}"
    oracle.check(program, configs=oracle.default_configs() + dask_configs())


def dask_configs() -> tuple:
    """The corpus is replayed on Dask too (both engines), unless FUZZ_DASK already adds
    those configurations to every check (or the ``dask`` extra is missing)."""
    return () if os.environ.get("FUZZ_DASK") == "1" else oracle.dask_configs()


def oracle_features(program) -> set[str]:
    from .workflow import api_features

    return api_features(program)
