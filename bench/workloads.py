"""The workloads of SPEC section 7, each as data: sizes, units, three ways to run it.

A ``Workload`` (``bench.records``) names a problem size, the unit its figure
is reported in, a baseline (plain Python, see ``bench.baselines``), an engine
runner taking the engine's name and the extra ``run()`` options, and the
value every run must produce. This module holds SPEC 7's first list; the
realistic shapes' rows (cold, ``_warm``, ``_100k``, ``_memory``) come from
``bench.realistic`` and the distributed ones are defined at the end; ``WORKLOADS``
is all of them in table order, ``GROUPS`` names sets of them for ``--only``.
Runners time themselves, because what lies inside the timed region is part
of each workload's definition:

- Timed region: from building the workflow (creating the ``LazyResult``s) to
  holding its value, through the public ``run()`` (which creates its uvloop
  loop) or, for ``repeat_run``, ``await arun()`` inside one loop. Async
  baselines are likewise driven by ``uvloop.run`` (a fresh loop, as ``run()``
  makes one), except ``repeat_run``, which times the loop body for both.
- ``chain`` and ``fanout`` (built by ``bench.shapes``, like the realistic
  shapes) measure a cold run (build, compile, run): each
  sample wraps its functions in fresh task objects, and since a task is
  identified by its object, the template is new and must be compiled.
  ``repeat_run`` is the warm case: one shape, new literals, cache hits.
  Both engines hold this chain as one *run* node and this fan-out as one
  *batch* node (docs/design.md: Runs of links, Batches), so their templates
  are small; every link and item is still built, called and checked.
- Values are checked, so an engine that skips work cannot look fast: the
  chain links add one each, the heavy loop's result counts every link,
  ``observed_countdown`` checks the exact number of events of each kind
  (a mismatch is reported as that engine's error).
- ``memory`` runs a 1,000,000-step countdown under ``tracemalloc`` (after a
  tiny untraced warm-up, so one-time setup is not charged) and reports the
  peak of traced memory in MB (10**6 bytes).
"""

from __future__ import annotations

import time
from collections import defaultdict

import uvloop

from bench import baselines
from bench.measure import Sample
from bench.realistic import REALISTIC_WORKLOADS, SCALED, cold_engine, scaled_name
from bench.records import Kind, Workload, engine_run, timed, traced
from bench.shapes import BY_NAME as SHAPES
from cascade_graph import task
from cascade_vm import arun, run

# --- tasks -------------------------------------------------------------------------------


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@task
async def countdown_async(n):
    return "done" if n <= 0 else countdown_async(n - 1)


link = task(baselines.link)
HEAVY_WIDTH = 20  # links per heavy_loop iteration; with the step, 21 nodes


@task
def step(n, acc):
    if n <= 0:
        return acc
    value = acc
    for _ in range(HEAVY_WIDTH):
        value = link(value)
    return step(n - 1, value)


add = task(baselines.add)
mul = task(baselines.mul)
nap = task(baselines.nap)
total = task(baselines.total)


def five_node_flow(i):
    """The repeat_run workflow: five nodes, ``x`` shared by two consumers."""
    x = add(i, 1)
    y = mul(i, 2)
    z = add(x, y)
    w = mul(z, 3)
    return add(w, x)


# --- runners -----------------------------------------------------------------------------


def _countdown_engine(n, engine, options):
    return engine_run(lambda: countdown(n), engine, options)


def _countdown_async_engine(n, engine, options):
    return engine_run(lambda: countdown_async(n), engine, options)


def _countdown_async_baseline(n):
    return timed(lambda: uvloop.run(baselines.countdown_async(n)))


def _heavy_loop_engine(n, engine, options):
    return engine_run(lambda: step(n, 0), engine, options)


def _repeat_run_engine(runs, engine, options):
    async def main():
        start = time.perf_counter()
        checksum = 0
        for i in range(runs):
            checksum += await arun(five_node_flow(i), engine=engine, **options)
        return Sample(time.perf_counter() - start, checksum)

    return uvloop.run(main())


def _repeat_run_baseline(runs):
    async def main():
        start = time.perf_counter()
        checksum = 0
        for i in range(runs):
            checksum += baselines.five_node_flow(i)
        return Sample(time.perf_counter() - start, checksum)

    return uvloop.run(main())


def _observed_countdown_engine(n, engine, options):
    counts = defaultdict(int)

    def on_event(event):
        counts[type(event)] += 1

    start = time.perf_counter()
    value = run(countdown(n), engine=engine, on_event=on_event, **options)
    seconds = time.perf_counter() - start
    seen = {kind.__name__: count for kind, count in counts.items()}
    expected = _countdown_events(n)
    if seen != expected:
        raise ValueError(f"wrong events: got {_sorted(seen)}, expected {_sorted(expected)}")
    return Sample(seconds, value)


def _traced_countdown_engine(n, engine, options):
    """countdown(n) with ``Trace`` attached, writing to a temporary file; the file is
    checked to hold one complete event per invocation."""
    import json
    import os
    import tempfile

    from cascade_graph.observe import Trace

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        start = time.perf_counter()
        value = run(countdown(n), engine=engine, on_event=Trace(path), **options)
        seconds = time.perf_counter() - start
        with open(path, encoding="utf-8") as f:
            events = json.load(f)["traceEvents"]
    slices = sum(1 for e in events if e["ph"] == "X")
    if slices != n + 1:
        raise ValueError(f"wrong trace: {slices} complete events, expected {n + 1}")
    return Sample(seconds, value)


def _countdown_events(n):
    """The events of countdown(n): n + 1 invocations, each started and finished; n tail calls."""
    events = {"RunStarted": 1, "RunFinished": 1, "TaskStarted": n + 1, "TaskFinished": n + 1}
    if n > 0:
        events["TailCall"] = n
    return events


def _sorted(counts):
    return dict(sorted(counts.items()))


def _async_io_engine(n, engine, options):
    return engine_run(lambda: total([nap(i) for i in range(n)]), engine, options)


def _async_io_baseline(n):
    return timed(lambda: uvloop.run(baselines.async_io(n)))


def _memory_engine(n, engine, options):
    run(countdown(3), engine=engine, **options)  # warm-up, untraced
    return traced(lambda: run(countdown(n), engine=engine, **options))


def _memory_baseline(n):
    return traced(lambda: baselines.countdown(n))


def _identity(n):
    return n


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="countdown",
        summary="one-task tail-call loop; baseline: a trampoline making one object per step",
        kind=Kind.THROUGHPUT,
        unit="iterations/s",
        size=200_000,
        baseline=lambda n: timed(lambda: baselines.countdown(n)),
        engine=_countdown_engine,
        expected=lambda n: "done",
        work=_identity,
    ),
    Workload(
        name="countdown_async",
        summary="countdown with an async def task; baseline: an async trampoline",
        kind=Kind.THROUGHPUT,
        unit="iterations/s",
        size=200_000,
        baseline=_countdown_async_baseline,
        engine=_countdown_async_engine,
        expected=lambda n: "done",
        work=_identity,
    ),
    Workload(
        name="heavy_loop",
        summary="each iteration tail-calls a step fed by a chain of 20 links (21 nodes)",
        kind=Kind.THROUGHPUT,
        unit="nodes/s",
        size=5_000,
        baseline=lambda n: timed(lambda: baselines.heavy_loop(n, HEAVY_WIDTH)),
        engine=_heavy_loop_engine,
        expected=lambda n: HEAVY_WIDTH * n,
        work=lambda n: (HEAVY_WIDTH + 1) * n + 1,
    ),
    Workload(
        name="chain",
        summary="a linear DAG of links: build, compile and run in one timed run",
        kind=Kind.THROUGHPUT,
        unit="nodes/s",
        size=10_000,
        baseline=lambda n: timed(lambda: baselines.chain(n)),
        engine=cold_engine(SHAPES["chain"]),
        expected=_identity,
        work=_identity,
    ),
    Workload(
        name="fanout",
        summary="independent tasks feeding one sum (size + 1 nodes), compiled in the run",
        kind=Kind.THROUGHPUT,
        unit="nodes/s",
        size=2_000,
        baseline=lambda n: timed(lambda: baselines.fanout(n)),
        engine=cold_engine(SHAPES["fanout"]),
        expected=lambda n: n * (n - 1),
        work=lambda n: n + 1,
    ),
    Workload(
        name="repeat_run",
        summary="one 5-node workflow run again and again with new literals, in one loop",
        kind=Kind.THROUGHPUT,
        unit="runs/s",
        size=5_000,
        baseline=_repeat_run_baseline,
        engine=_repeat_run_engine,
        expected=lambda runs: 5 * runs * (runs - 1) + 4 * runs,  # sum of 10i + 4
        work=_identity,
    ),
    Workload(
        name="observed_countdown",
        summary="countdown with an on_event listener counting every event",
        kind=Kind.THROUGHPUT,
        unit="iterations/s",
        size=200_000,
        baseline=lambda n: timed(lambda: baselines.countdown(n)),
        engine=_observed_countdown_engine,  # checks the event counts itself
        expected=lambda n: "done",
        work=_identity,
    ),
    Workload(
        name="observed_countdown_trace",
        summary="countdown with Trace(path) attached; baseline: the same countdown on the VM "
        "with no listener",
        kind=Kind.THROUGHPUT,
        unit="iterations/s",
        size=100_000,
        baseline=lambda n: _countdown_engine(n, "vm", {}),
        engine=_traced_countdown_engine,  # checks the trace's slices itself
        expected=lambda n: "done",
        work=_identity,
    ),
    Workload(
        name="async_io",
        summary="async tasks each sleeping 10 ms, gathered by one sum (wall ms vs 10 ms)",
        kind=Kind.WALL_MS,
        unit="ms wall",
        size=200,
        baseline=_async_io_baseline,
        engine=_async_io_engine,
        expected=lambda n: n * (n - 1) // 2,
        work=_identity,
    ),
    Workload(
        name="memory",
        summary="countdown under tracemalloc: peak of traced memory",
        kind=Kind.PEAK_MB,
        unit="MB peak",
        size=1_000_000,
        baseline=lambda n: _memory_baseline(n),
        engine=_memory_engine,
        expected=lambda n: "done",
        work=_identity,
        repeats=1,
    ),
)

# --- distributed execution (SPEC sections 7 and 8; only with the dask extra) ------------
#
# One LocalCluster of two worker processes (one thread each) serves the three
# workloads; it starts at the first of them and ``close_clusters()`` (called at the
# end of ``python -m bench``) closes it. Timed regions:
# - distributed_fanout: one ``await arun()`` with ``DaskExecutor(client=...)``, a client
#   connected beforehand (as in the two below); baseline: the same workflow in-process.
# - distributed_noop: one ``await arun()`` likewise; baseline: ``client.submit`` of the
#   same function for each item, then ``client.gather``, on such a client.
# - distributed_tail: one ``await arun()`` of a tail loop whose step runs on the
#   cluster; baseline: the same number of raw submit-and-wait round trips.

BURN_SECONDS = 0.25  # CPU time of one distributed_fanout call
_CLUSTER: list = []  # the cluster, once started


def close_clusters() -> None:
    """Close the distributed workloads' cluster, if one was started."""
    while _CLUSTER:
        _CLUSTER.pop().close()


def _cluster_address() -> str:
    if not _CLUSTER:
        import logging

        from distributed import LocalCluster

        _CLUSTER.append(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", silence_logs=logging.ERROR))
    return _CLUSTER[0].scheduler_address


@task
def burn(seconds):
    """CPU-bound work for ``seconds`` of this process's CPU time (holds the GIL)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return 1


@task
def noop(i):  # baselines.echo as a task (defined here: tasks pickle by reference)
    return i


@task
def hop(n):
    return n if n <= 0 else hop(n - 1)


@task
def count(values):  # the fan-in of the burns, a task of this module (pickled by reference)
    return len(values)


def _burn_fanout(n):
    return count([burn(BURN_SECONDS) for _ in range(n)])


def _distributed_fanout_engine(n, engine, options):
    from cascade_graph.executors import DaskExecutor

    async def timed_on(client):
        start = time.perf_counter()
        value = await arun(_burn_fanout(n), engine=engine, executor=DaskExecutor(client=client),
                           **options)
        return Sample(time.perf_counter() - start, value)

    return _on_client(timed_on)


def _on_client(timed_on):
    """Run ``timed_on(client)`` (a coroutine returning a Sample) on a fresh event loop with an
    asynchronous client of the cluster, connected before and closed after the timing."""
    from distributed import Client

    address = _cluster_address()

    async def main():
        async with Client(address, asynchronous=True) as client:
            return await timed_on(client)

    return uvloop.run(main())


def _distributed_noop_engine(n, engine, options):
    from cascade_graph.executors import DaskExecutor

    async def timed_on(client):
        start = time.perf_counter()
        values = await arun([noop(i) for i in range(n)], engine=engine,
                            executor=DaskExecutor(client=client), **options)
        return Sample(time.perf_counter() - start, sum(values))

    return _on_client(timed_on)


def _distributed_noop_baseline(n):
    async def timed_on(client):
        start = time.perf_counter()
        futures = [client.submit(baselines.echo, i, pure=False) for i in range(n)]
        values = await client.gather(futures)
        return Sample(time.perf_counter() - start, sum(values))

    return _on_client(timed_on)


def _distributed_tail_engine(n, engine, options):
    from cascade_graph.executors import DaskExecutor

    async def timed_on(client):
        start = time.perf_counter()
        value = await arun(hop(n), engine=engine, executor=DaskExecutor(client=client),
                           **options)
        return Sample(time.perf_counter() - start, value)

    return _on_client(timed_on)


def _distributed_tail_baseline(n):
    async def timed_on(client):
        start = time.perf_counter()
        for i in range(n, -1, -1):
            value = await client.submit(baselines.echo, i, pure=False)
        return Sample(time.perf_counter() - start, value)

    return _on_client(timed_on)


def _has_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


DISTRIBUTED_WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="distributed_fanout",
        summary=f"CPU-bound calls of {BURN_SECONDS} s on a 2-worker Dask cluster; "
                "baseline: the same workflow in-process",
        kind=Kind.THROUGHPUT,
        unit="calls/s",
        size=8,
        baseline=lambda n: engine_run(lambda: _burn_fanout(n), "vm", {}),
        engine=_distributed_fanout_engine,
        expected=_identity,
        work=_identity,
    ),
    Workload(
        name="distributed_noop",
        summary="no-op calls on the cluster; baseline: raw client.submit + client.gather",
        kind=Kind.THROUGHPUT,
        unit="calls/s",
        size=2_000,
        baseline=_distributed_noop_baseline,
        engine=_distributed_noop_engine,
        expected=lambda n: n * (n - 1) // 2,
        work=_identity,
    ),
    Workload(
        name="distributed_tail",
        summary="a tail loop whose step runs on the cluster; baseline: raw submit round trips",
        kind=Kind.THROUGHPUT,
        unit="steps/s",
        size=200,
        baseline=_distributed_tail_baseline,
        engine=_distributed_tail_engine,
        expected=lambda n: 0,
        work=lambda n: n + 1,
    ),
)

WORKLOADS += REALISTIC_WORKLOADS  # SPEC 7's realistic shapes (bench.realistic)
if _has_distributed():
    WORKLOADS += DISTRIBUTED_WORKLOADS

BY_NAME: dict[str, Workload] = {workload.name: workload for workload in WORKLOADS}

#: names ``--only`` accepts for several workloads at once
GROUPS: dict[str, tuple[str, ...]] = {
    # issue 13's table: the realistic shapes, cold and warm, with chain's two rows they
    # are held to, and the policy map's memory
    "realistic": ("chain", *(w.name for w in REALISTIC_WORKLOADS if not w.name.endswith("_100k"))),
    # the 100k rows and the 10k rows they are compared with
    "scaling": tuple(name for scaled in SCALED for name in (scaled, scaled_name(scaled))),
}
