"""Which language features the generator may use right now.

The harness is written for the whole language (docs/language.md), but the engines land
feature by feature. Every optional feature is *gated*: it switches on by
itself as soon as the engines provide it, with no edit to the harness.

A feature is available when

1. its API exists (``cascade_graph.Router``, ``LazyResult.run_if``,
   ``Task.map``, ...), and
2. a tiny probe workflow using it runs on both engines without
   ``NotImplementedError``, ``AttributeError``, ``ImportError`` or a
   ``TypeError`` about an unexpected keyword (an engine that rejects the
   feature outright). A probe that runs but gives a *wrong* answer still
   counts as available: finding that is the harness's job.

``CASCADE_FUZZ_DISABLE=router,cache`` turns features off by hand;
``CASCADE_FUZZ_ONLY=loops,async`` keeps only the always-on core plus those.

Always on (no gate): plain calls, containers, opaque containers, sharing,
duplicates, async and kwargs tasks, raising tasks, tail-call loops, mutual
recursion, same-named loop tasks, wrong arity.
"""

from __future__ import annotations

import functools
import os

#: Features the generator knows. The first group needs no engine support
#: beyond plain calls and tail calls.
CORE = (
    "containers",
    "opaque",
    "sharing",
    "dup",
    "async",
    "kwargs",
    "raises",
    "loops",
    "mutual",
    "same_names",
    "bad_arity",
)
GATED = (
    "offload",
    "run_if",
    "after",
    "router",
    "map",
    "retry",
    "timeout",
    "cache",
    "param",
    "env",
    "resources",
    "arun",
)
ALL = CORE + GATED


def engines_present() -> bool:
    try:
        from cascade_graph import LazyResult, task  # noqa: F401
        from cascade_vm import run  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


_REJECTED = (NotImplementedError, AttributeError, ImportError)


def _probe(make) -> bool:
    """Run ``make()`` (a fresh target) on both engines; False if the feature is rejected."""
    from cascade_vm import run

    for engine in ("vm", "graph"):
        try:
            run(make(), engine=engine)
        except _REJECTED:
            return False
        except TypeError as e:
            if "unexpected keyword" in str(e):
                return False
        except Exception:  # noqa: BLE001, S110 - a wrong behaviour is the fuzzer's business
            pass
    return True


def _detect() -> set[str]:
    import cascade_graph
    from cascade_graph import LazyResult

    from . import build

    avail: set[str] = set()
    add = build.LIB_TASKS["add"]

    def has(obj, *names):
        return all(hasattr(obj, n) for n in names)

    cg = cascade_graph
    lib = build.LIB_TASKS
    probes = {
        # feature: (API present?, a fresh target using it)
        "offload": ("tadd" in lib, lambda: lib["tadd"](1, 2)),
        "run_if": (has(LazyResult, "run_if"), lambda: add(1, 2).run_if(True)),
        "after": (has(LazyResult, "after"), lambda: add(1, 2).after(add(0, 0))),
        "router": (has(cg, "Router"), lambda: add(cg.Router("a", routes={"a": add(1, 1)}), 1)),
        "map": (has(add, "map"), lambda: add.map([1], [2])),
        "retry": (has(LazyResult, "with_retry"), lambda: add(1, 2).with_retry(max_attempts=2)),
        "timeout": (has(LazyResult, "with_timeout"), lambda: add(1, 2).with_timeout(10.0)),
        "cache": (
            has(LazyResult, "with_cache") and has(cg, "MemoryStore"),
            lambda: add(1, 2).with_cache(store=cg.MemoryStore()),
        ),
        "param": (has(cg, "Param"), lambda: add(cg.Param("fz_probe", default="1", type=int), 2)),
        "env": (has(cg, "Env"), lambda: add(cg.Env("FZ_PROBE", default="1"), "2")),
        "resources": (
            build.RESOURCES_REGISTERED,
            lambda: lib["use_res"](1, cg.inject("fz_run_gen")),
        ),
    }
    for feature, (present, make) in probes.items():
        if present and _probe(make):
            avail.add(feature)
    try:
        import asyncio

        from cascade_vm import arun

        asyncio.run(arun(add(1, 2), engine="vm"))
        avail.add("arun")
    except Exception:  # noqa: BLE001, S110 - no arun: the runs through arun are left out
        pass
    return avail


@functools.cache
def available() -> frozenset[str]:
    """The features the generator may use (CORE + the gated ones that work)."""
    feats = set(CORE)
    if engines_present():
        feats |= _detect()
    else:  # reference-only mode (tests of the harness itself): everything
        feats |= set(GATED)
    only = os.environ.get("CASCADE_FUZZ_ONLY")
    if only:
        feats &= set(CORE) | {f.strip() for f in only.split(",")}
    for f in os.environ.get("CASCADE_FUZZ_DISABLE", "").split(","):
        feats.discard(f.strip())
    return frozenset(feats)


def missing(required: set[str]) -> set[str]:
    """The features of ``required`` not available now."""
    return set(required) - set(available())
