"""One fuzzing session: find a failing workflow, shrink it, save it.

``hunt(strategy)`` runs a Hypothesis property over the oracle. Hypothesis's
shrinking is bounded in time (``shrink_seconds``): after that the property
raises ``StopShrinking`` and the smallest failing example seen so far (the
last one: the shrinker only tries smaller ones) is kept. The result is then shrunk on its AST
(``minimize.py``, ``minimize_seconds``) and saved to the corpus.
``test_differential.py`` and ``long.py`` both use it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from hypothesis import given, reject

from . import corpus, minimize, oracle, reference, workflow


class StopShrinking(BaseException):
    """Raised inside the property to end Hypothesis's shrinking (a BaseException
    propagates at once; an Exception would count as one more failure)."""


@dataclasses.dataclass
class Found:
    program: Any  # the minimal failing Program
    problems: list  # its problems (fail-fast: the first configuration's)
    path: Any  # the corpus file, or None when not saved
    report: str  # the full report (every configuration)


@dataclasses.dataclass
class Counts:
    examples: int = 0  # examples checked before the first failure
    discarded: int = 0
    shrink_steps: int = 0


def hunt(
    strategy,
    *,
    decorate=lambda f: f,
    counts: Counts | None = None,
    deadline: float | None = None,
    shrink_seconds: float | None = None,
    minimize_seconds: float | None = None,
    save: bool | None = None,
) -> Found | None:
    """Run the property; the minimal failing example (saved), or None if all passed.

    ``decorate`` applies Hypothesis ``settings``/``seed`` to the property.
    ``deadline`` (a ``time.monotonic()`` value): after it, examples pass unchecked.
    """
    counts = counts if counts is not None else Counts()
    if shrink_seconds is None:
        shrink_seconds = float(os.environ.get("FUZZ_SHRINK_SECONDS", "60"))
    if minimize_seconds is None:
        minimize_seconds = float(os.environ.get("FUZZ_MINIMIZE_SECONDS", "60"))
    save = os.environ.get("FUZZ_SAVE", "1") != "0" if save is None else save
    seen: dict[str, oracle.Disagreement] = {}  # digest -> its failure
    state: dict = {"first": None, "last": None}

    @decorate
    @given(strategy)
    def prop(program):
        first = state["first"]
        if first is not None:
            key = workflow.digest(program)
            if key in seen:
                state["last"] = (program, seen[key].problems)
                raise seen[key]
            if time.monotonic() - first > shrink_seconds:
                raise StopShrinking  # the budget is spent: keep the best so far
            counts.shrink_steps += 1
        elif deadline is not None and time.monotonic() > deadline:
            return
        else:
            counts.examples += 1
        try:
            oracle.check(program, fail_fast=True)
        except reference.Discard:
            if first is None:
                counts.discarded += 1
            reject()
        except oracle.Disagreement as e:
            if state["first"] is None:
                state["first"] = time.monotonic()
            seen[workflow.digest(program)] = e
            state["last"] = (program, e.problems)
            raise

    try:
        prop()
    except (Exception, StopShrinking):
        if state["last"] is None:
            raise
    else:
        return None
    program, problems = state["last"]
    program, problems = minimize.minimize(program, problems, seconds=minimize_seconds)
    try:
        oracle.check(program)
        report = "(the minimal example passed when re-run on every configuration: flaky?)"
    except oracle.Disagreement as e:
        report = str(e)
        problems = e.problems
    path = corpus.save(program, problems) if save else None
    return Found(program, problems, path, report)
