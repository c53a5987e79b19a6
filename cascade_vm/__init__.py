"""Cascade's register VM and the ``run``/``arun`` facade.

``run(target, engine="vm")`` runs a workflow in a fresh uvloop event loop;
``await arun(target, ...)`` runs it in the loop that awaits it. ``engine`` is
"vm" (the register VM, default) or "graph" (the graph executor); both share
the template cache, the hot path, events, resources and parameters.
"""

from __future__ import annotations

import asyncio

from cascade_graph.context import RunContext, run_workflow
from cascade_graph.executor import execute as _graph_execute

from .runner import run_in_new_loop
from .vm import execute as _vm_execute

__version__ = "0.1.0"

ENGINES = {"vm": _vm_execute, "graph": _graph_execute}


def _engine(engine):
    try:
        return ENGINES[engine]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown engine {engine!r}: use engine='vm' or engine='graph'"
        ) from None


async def arun(target, *, engine="vm", params=None, resources=None, on_event=None,
               tail_cache=True, hot_path=True, yield_interval=0.005, executor=None):
    """Run ``target`` in the running event loop and return its value.

    ``executor`` decides where calls run (``cascade_graph.calls.Executor``; the
    default runs every call in this process)."""
    execute = _engine(engine)
    ctx = RunContext(params=params, resources=resources, on_event=on_event,
                     tail_cache=tail_cache, hot_path=hot_path, yield_interval=yield_interval,
                     executor=executor)
    return await run_workflow(execute, target, ctx)


def run(target, *, engine="vm", params=None, resources=None, on_event=None,
        tail_cache=True, hot_path=True, yield_interval=0.005, executor=None):
    """Run ``target`` to completion in a new uvloop event loop and return its value."""
    _engine(engine)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run() cannot be called from a running event loop; use 'await arun(...)' instead"
        )
    return run_in_new_loop(arun(target, engine=engine, params=params, resources=resources,
                                on_event=on_event, tail_cache=tail_cache, hot_path=hot_path,
                                yield_interval=yield_interval, executor=executor))


__all__ = ["run", "arun", "__version__"]
