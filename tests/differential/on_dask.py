"""The differential harness on Dask: configurations whose sync calls run on a cluster.

``DASK_CONFIGS`` run each program with ``run(..., executor=DaskExecutor(...))``
on both engines, against the same reference as every other configuration:
same value or error, same multiset of calls, same events.

The cluster is a ``LocalCluster`` of ONE worker process (one thread),
started at the first Dask run and closed when the process exits. One worker
process, because the library's per-run state lives in the process that runs
the call: the call log and ``flaky``'s attempt counters (keyed by the
arguments, so their totals do not depend on scheduling, but only within one
process). Every call still crosses a process boundary (pickled by
reference, values kept on the worker between calls); the distributed tests
(tests/distributed/) cover several workers.

Around each Dask run, ``begin`` resets the worker's state as
``library.reset`` does the driver's, and ``end`` adds the worker's call log
to the driver's, so the oracle sees every call wherever it ran.
"""

from __future__ import annotations

import atexit
import functools
import logging

from . import library
from .oracle import Config

DASK_CONFIGS = (Config("vm", via="dask"), Config("graph", via="dask"))


@functools.cache
def available() -> bool:
    try:
        import distributed  # noqa: F401

        from cascade_graph.executors import DaskExecutor  # noqa: F401
    except ImportError:
        return False
    return True


_CLUSTER: list = []  # (cluster, client), once started


def _cluster():
    if not _CLUSTER:
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)
        _CLUSTER.append((cluster, client))
        atexit.register(close)
    return _CLUSTER[0]


def close() -> None:
    while _CLUSTER:
        cluster, client = _CLUSTER.pop()
        client.close()
        cluster.close()


def executor():
    """A Dask executor for one run on the harness's cluster."""
    from cascade_graph.executors import DaskExecutor

    cluster, _ = _cluster()
    return DaskExecutor(address=cluster.scheduler_address)


def begin() -> None:
    """Reset the worker's per-run state (its call log, flaky counters)."""
    _, client = _cluster()
    client.run(_reset_here)


def end(state: library.RunState) -> None:
    """Add the calls made on the worker to the driver's call log ``state``."""
    _, client = _cluster()
    for calls in client.run(_calls_here).values():
        state.calls.extend(calls)


def _reset_here() -> None:
    library.reset()


def _calls_here() -> list:
    return list(library.RUN.calls)
