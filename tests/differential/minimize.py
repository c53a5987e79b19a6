"""Shrinking a failing workflow on its AST (after Hypothesis's own shrinking).

Hypothesis shrinks the *choices* that generated a program; this module then
shrinks the *program*: it tries edits on the JSON form (drop a policy, a
container item, a shared node, a loop task, a step, a parameter; replace an
expression by one of its sub-expressions or by a small literal; make an int
smaller) and keeps an edit when the oracle still reports a disagreement of
the same kind. Greedy, to a fixed point or until the time budget is spent.

An edit may make a program ill-typed; the oracle then usually reports a
different problem (or none) and the edit is rejected. Edits never copy a
subtree (copies could duplicate a ``with_cache`` node), so every candidate
stays deterministic.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import oracle, reference, workflow
from .workflow import Program

_KINDS = (
    "value",
    "calls differ",
    "calls the reference never makes",
    "must fail before any task runs",
    "expected a failure",
    "expected",
    "events",
    "resource",
    "the exception",
    "a target",
    "asyncio logged",
)

_EXPR_KEYS = ("call", "map", "coll", "opaque", "router", "param", "env", "inject", "var", "ref")


def problem_kinds(problems: list[str]) -> set[str]:
    """The kinds of problems ('value', 'calls differ', 'expected a failure', ...)."""
    kinds = set()
    for p in problems:
        line = p.splitlines()[0].split("] ", 1)[-1]
        kinds.add(next((k for k in _KINDS if line.startswith(k)), line[:30]))
    return kinds


def still_fails(program: Program, kinds: set[str], check: Callable) -> list[str] | None:
    try:
        check(program)
    except oracle.Disagreement as e:
        if problem_kinds(e.problems) & kinds:
            return e.problems
        return None
    except (reference.Discard, Exception):  # noqa: BLE001 - an invalid candidate
        return None
    return None


def ill_typed(program: Program) -> bool:
    """True when the reference sees a task fail with a TypeError of its own (a call
    with arguments of the wrong type: generated programs never make one)."""
    try:
        r = reference.evaluate(program)
    except Exception:  # noqa: BLE001 - Discard, or a reference crash on a broken program
        return True
    return any(f.type == "TypeError" and f.message is not None for f in r.outcome.failures)


def _is_expr(j: Any) -> bool:
    return isinstance(j, dict) and any(k in j for k in _EXPR_KEYS)


def _sub_exprs(j: dict) -> Iterator[Any]:
    for key in ("args", "items", "iterables"):
        for x in j.get(key, ()):
            if isinstance(x, list) and len(x) == 2:  # dict items, kwargs pairs
                yield x[1]
            else:
                yield x
    for key in ("kwargs", "kwiterables", "routes"):
        for _, v in j.get(key, ()):
            yield v
    if "router" in j:
        yield j["router"]


def _paths(j: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path in the JSON tree, parents before children."""
    yield path
    if isinstance(j, dict):
        for k, v in j.items():
            yield from _paths(v, path + (k,))
    elif isinstance(j, list):
        for i, v in enumerate(j):
            yield from _paths(v, path + (i,))


def _get(j: Any, path: tuple) -> Any:
    for p in path:
        j = j[p]
    return j


def _replaced(j: Any, path: tuple, value: Any) -> Any:
    out = copy.deepcopy(j)
    if not path:
        return value
    parent = _get(out, path[:-1])
    parent[path[-1]] = value
    return out


def _deleted(j: Any, path: tuple) -> Any:
    out = copy.deepcopy(j)
    parent = _get(out, path[:-1])
    del parent[path[-1]]
    return out


def candidates(doc: dict) -> Iterator[dict]:
    """Smaller variants of a program's JSON, roughly biggest cut first."""
    # whole loop families, then single entries of every table
    fams = sorted({lt.get("family", 0) for lt in doc.get("loops", ())}, reverse=True)
    for fam in fams:
        out = copy.deepcopy(doc)
        out["loops"] = [lt for lt in out["loops"] if lt.get("family", 0) != fam]
        yield out
    for table in ("shared", "loops", "params", "env"):
        for i in range(len(doc.get(table, ())) - 1, -1, -1):
            yield _deleted(doc, (table, i))
    if "loops" in doc:
        for li, lt in enumerate(doc["loops"]):
            if len(lt["steps"]) > 1:
                for si in range(len(lt["steps"])):
                    yield _deleted(doc, ("loops", li, "steps", si))
            for si in range(len(lt.get("shared", ())) - 1, -1, -1):
                yield _deleted(doc, ("loops", li, "shared", si))
    for path in list(_paths(doc)):
        if not path or path[0] == "features":
            continue
        node = _get(doc, path)
        if path[-1] == "policies" and isinstance(node, list):
            for i in range(len(node)):
                yield _deleted(doc, path + (i,))
            continue
        if isinstance(node, list) and len(path) >= 2 and path[-1] == "items":
            for i in range(len(node)):
                yield _deleted(doc, path + (i,))
        if _is_expr(node):
            for sub in _sub_exprs(node):
                yield _replaced(doc, path, sub)
            if "call" in node or "map" in node or "router" in node or "coll" in node:
                for lit in (0, "", {"coll": "list", "items": []}):
                    yield _replaced(doc, path, lit)
        elif type(node) is int and node not in (0, 1) and path[-1] != "retry":
            for smaller in (0, 1, node // 2):
                yield _replaced(doc, path, smaller)


def minimize(
    program: Program,
    problems: list[str],
    seconds: float = 60.0,
    check: Callable | None = None,
) -> tuple[Program, list[str]]:
    """The smallest variant of ``program`` found that still fails the same way."""
    check = check or (lambda p: oracle.check(p, fail_fast=True))
    kinds = problem_kinds(problems)
    best, best_problems = program, problems
    doc = workflow.to_json(program)
    doc.pop("features", None)
    deadline = time.monotonic() + seconds
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for cand in candidates(doc):
            if time.monotonic() >= deadline:
                break
            try:
                prog = workflow.from_json(cand)
            except Exception:  # noqa: BLE001, S112 - not a program any more
                continue
            if workflow.validate(prog) or ill_typed(prog):
                continue
            if workflow.size(prog) >= workflow.size(best) and len(workflow.dumps(prog)) >= len(
                workflow.dumps(best)
            ):
                continue
            got = still_fails(prog, kinds, check)
            if got is not None:
                best, best_problems, doc = prog, got, cand
                improved = True
                break
    return best, best_problems
