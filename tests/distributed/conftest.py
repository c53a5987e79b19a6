"""Fixtures of the distributed tests: one real Dask cluster for this package.

``cluster`` is a ``distributed.LocalCluster`` of two worker *processes* (one
thread each), so every call crosses a process boundary and pickling is real.
It starts at the first test that needs it and is closed when this package's
tests are done (its threads must not run on under the rest of the suite: the
memory tests elsewhere trace every thread of the process). Its scheduler
retries a call whose worker died once (``allowed_failures=1``), so the
worker-loss tests stay short. ``client`` is a synchronous client of it, for
the tests' own looks at the cluster (which worker is busy, how many keys the
scheduler still holds).

Every test here is skipped, with the reason, only when ``distributed`` cannot
be imported; ``make test`` installs the ``dev`` extra, which includes the
``dask`` extra, so they run there and in CI.
"""

from __future__ import annotations

import logging
import time

import pytest

distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")

from cascade_graph.executors import DaskExecutor  # noqa: E402

WORKERS = 2


@pytest.fixture(scope="package")
def cluster():
    cluster = distributed.LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL, scheduler_kwargs={"allowed_failures": 1},
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="package")
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def executor(cluster, client):
    """A Dask executor on the session's cluster; afterwards the scheduler holds no key
    of the run (no future left behind) and every worker is back."""
    yield DaskExecutor(address=cluster.scheduler_address)
    assert_no_keys_left(client)
    client.wait_for_workers(WORKERS, timeout=60)


def scheduler_keys(client) -> list:
    return client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))


def assert_no_keys_left(client, timeout: float = 10.0) -> None:
    """The scheduler forgets a run's keys once its client let go of them (asynchronously:
    the release travels to the scheduler in a batch)."""
    deadline = time.monotonic() + timeout
    while True:
        left = scheduler_keys(client)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == [], f"keys of the run left on the scheduler: {left}"
