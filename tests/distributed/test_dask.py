"""Distributed execution on Dask (SPEC section 8), on a real cluster of worker processes.

Every workflow runs on both engines, on the session's ``LocalCluster``
(tests/distributed/conftest.py), and is compared with the same workflow run
in-process: the same value, the same events (kinds and counts per task).
After each test the scheduler holds no key of the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from cascade_graph import MemoryStore, TailCall, TaskFailed, TaskFinished, TaskStarted
from cascade_graph.executors import DaskExecutor
from cascade_vm import arun, run
from tests.flows import remote_flows as rf
from tests.helpers import Recorder, per_engine

from .conftest import assert_no_keys_left, distributed

DRIVER = os.getpid()


def _workflows(tmp):
    x = rf.add(1, 2)
    yield "chain", rf.add(rf.double(x), rf.double(rf.add(x, 4))), {}
    yield "tail-loop", rf.countdown(25), {}
    yield "mutual", rf.ping(7), {}
    yield "nested-fan", rf.fan(5), {}
    yield "map", rf.total(rf.double.map(rf.upto(5))), {}
    yield "map-policy-tail", rf.mapped(4), {}
    yield "router", [rf.routed(3), rf.routed(30)], {}
    yield "param", rf.climb(0), {"limit": "3"}
    yield "param-env", rf.param_call(2), {"needed": "9"}
    yield "after-if", [rf.after_and_if(20), rf.after_and_if(1)], {}
    yield "mixed-placement", rf.add(rf.async_double(rf.double(2)), rf.local_pid(3)), {}
    yield "container", {"a": [x, rf.double(x)], "b": (rf.countdown(3), {x})}, {}


WORKFLOWS = list(_workflows(None))


def _where(rec: Recorder) -> dict:
    """Task name -> set of TaskStarted.where kinds ("local" or "worker")."""
    out: dict = {}
    for e in rec.of(TaskStarted):
        kind = "local" if e.where == "local" else ("worker" if e.where.startswith("tcp://")
                                                   else e.where)
        out.setdefault(e.task, set()).add(kind)
    return out


@per_engine
@pytest.mark.parametrize("case", WORKFLOWS, ids=[w[0] for w in WORKFLOWS])
def test_results_and_events_equal_in_process(case, engine, executor):
    _, target, params = case
    here, there = Recorder(), Recorder()
    want = run(target, engine=engine, params=params, on_event=here)
    got = run(target, engine=engine, params=params, on_event=there, executor=executor)
    assert got == want
    assert there.kinds() == here.kinds()
    for name, kinds in _where(there).items():
        local = name in ("async_double", "local_pid")
        assert kinds == ({"local"} if local else {"worker"}), name


@per_engine
def test_placement(engine, executor):
    """Sync tasks on the cluster; async, local=True and resource-injecting tasks here."""
    target = [rf.pid_of(), rf.local_pid(), rf.uses_resource(1), rf.async_double(4)]
    remote_pid, local_pid, (one, res_pid), eight = run(target, engine=engine,
                                                       executor=executor)
    assert remote_pid != DRIVER
    assert local_pid == DRIVER and res_pid == DRIVER
    assert (one, eight) == (1, 8)


@per_engine
@pytest.mark.parametrize("switches", [{}, {"tail_cache": False, "hot_path": False}],
                         ids=["cache+hot", "nocache+nohot"])
def test_tail_calls_from_workers(engine, switches, executor):
    rec = Recorder()
    assert run(rf.countdown(40), engine=engine, on_event=rec, executor=executor,
               **switches) == sum(range(41))
    started = rec.of(TaskStarted, "countdown")
    assert len(started) == 41 and len(rec.of(TailCall, "countdown")) == 40
    assert all(e.where.startswith("tcp://") for e in started)
    calls = [e.call for e in started]
    assert [e.parent for e in started] == [None] + calls[:-1]  # each step's parent: the last


@per_engine
def test_a_remote_calls_events_carry_its_duration(engine, executor):
    rec = Recorder()
    run(rf.slow(0.5, 1), engine=engine, on_event=rec, executor=executor)
    (started,) = rec.of(TaskStarted, "slow")
    (finished,) = rec.of(TaskFinished, "slow")
    assert finished.duration >= 0.5  # from the submission, not from when it was reported
    assert finished.duration == finished.time - started.time


@per_engine
def test_values_stay_on_the_cluster(engine, executor):
    """50 MB made by one cluster task and measured by another never reach the driver."""
    size = 50_000_000
    peak = _RssWatch()
    with peak:
        got = run(rf.length(rf.make_bytes(size)), engine=engine, executor=executor)
    assert got == size
    assert executor.bytes_fetched < 10_000  # only the length came here
    assert peak.growth < 30_000_000, f"the driver grew by {peak.growth / 1e6:.0f} MB"


@per_engine
def test_a_driver_side_consumer_fetches(engine, executor):
    """A value consumed in the driver (a local task, a condition) is fetched, once."""
    target = rf.local_pid(rf.make_bytes(1_000_000)).run_if(rf.is_big(rf.length(b"x" * 20)))
    assert run(target, engine=engine, executor=executor) == DRIVER
    assert 1_000_000 <= executor.bytes_fetched < 1_100_000


@per_engine
def test_retry_is_one_submission_per_attempt(engine, executor, tmp_path):
    here, there = Recorder(), Recorder()
    local_file, remote_file = tmp_path / "local", tmp_path / "remote"
    want = run(rf.flaky_file(str(local_file), 2).with_retry(3), engine=engine, on_event=here)
    got = run(rf.flaky_file(str(remote_file), 2).with_retry(3), engine=engine, on_event=there,
              executor=executor)
    assert got == want == 2
    assert remote_file.read_text() == "xxx"  # three attempts, three submissions
    assert there.kinds() == here.kinds()
    assert len(there.of(TaskFailed, "flaky_file")) == 2
    started = there.of(TaskStarted, "flaky_file")
    assert len(started) == 3 and all(e.where.startswith("tcp://") for e in started)


@per_engine
def test_retry_gives_up_with_the_task_error(engine, executor, tmp_path):
    with pytest.raises(ConnectionError, match="flaky attempt 2") as err:
        run(rf.flaky_file(str(tmp_path / "f"), 5).with_retry(2), engine=engine,
            executor=executor)
    assert any("flaky_file" in note for note in err.value.__notes__)


@per_engine
def test_timeout_cancels_the_remote_call(engine, executor):
    rec = Recorder()
    with pytest.raises(TimeoutError, match="task 'slow' timed out after 0.5 s"):
        run(rf.slow(3).with_timeout(0.5), engine=engine, executor=executor, on_event=rec)
    (started,) = rec.of(TaskStarted, "slow")
    (failed,) = rec.of(TaskFailed, "slow")
    assert failed.duration < 2.5  # the run stopped waiting; the call did not finish
    time.sleep(3)  # its worker thread ends before the next test (Dask cannot stop it)


@per_engine
def test_cache_keeps_the_final_value_in_the_driver(engine, executor):
    store = MemoryStore()
    first, second = Recorder(), Recorder()
    assert run(rf.double(21).with_cache(store=store), engine=engine, on_event=first,
               executor=executor) == 42
    assert run(rf.double(21).with_cache(store=store), engine=engine, on_event=second,
               executor=executor) == 42
    assert len(store) == 1
    assert [e.reason for e in second.events if type(e).__name__ == "TaskSkipped"] == ["cached"]
    assert second.of(TaskStarted) == []


@per_engine
def test_concurrency_holds_across_workers(engine, executor):
    """concurrency=1: one call at a time, although two workers are free."""
    spans = sorted(run([rf.one_at_a_time(i) for i in range(3)], engine=engine,
                       executor=executor))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@per_engine
def test_env_is_read_in_the_driver(engine, executor, monkeypatch):
    monkeypatch.setenv("CASCADE_TEST_HOME", "driver-side")
    assert run(rf.param_call(1), engine=engine, params={"needed": "2"},
               executor=executor) == "1:2:driver-side"
    assert run(rf.env_here("CASCADE_TEST_HOME"), engine=engine, executor=executor) is None


@per_engine
def test_a_task_error_comes_back_with_type_message_note_and_worker(engine, executor):
    rec = Recorder()
    with pytest.raises(ValueError) as err:
        run(rf.add(rf.boom(3), 1), engine=engine, on_event=rec, executor=executor)
    assert str(err.value) == "boom 3"
    assert err.value.__notes__ == ["cascade: raised by task 'boom'"]
    (failed,) = rec.of(TaskFailed, "boom")
    (started,) = rec.of(TaskStarted, "boom")
    assert started.where.startswith("tcp://") and failed.call == started.call


@per_engine
def test_a_failing_sibling_cancels_the_rest(engine, executor, client, tmp_path):
    mark = tmp_path / "slow-finished"
    target = rf.total([rf.slow_mark(3, str(mark)), rf.add(rf.boom(1), 1)])
    with pytest.raises(ValueError, match="boom 1"):
        run(target, engine=engine, executor=executor)
    assert not mark.exists()  # the run did not wait for its slow sibling
    assert_no_keys_left(client)  # whose future was cancelled
    _wait_until(mark.exists, "the slow call's thread never ended")  # before the next test


@per_engine
def test_cancelling_the_run_cancels_its_futures(engine, executor, client):
    async def main():
        job = asyncio.ensure_future(arun(rf.total([rf.slow(2, 1), rf.slow(2, 2)]),
                                         engine=engine, executor=executor))
        deadline = time.monotonic() + 20
        while not client.processing() or not any(client.processing().values()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(main())
    assert executor.client is None  # closed
    assert_no_keys_left(client)
    time.sleep(2)  # the cancelled calls' threads end before the next test


@per_engine
def test_a_worker_killed_mid_task_is_retried_by_dask(engine, executor, client):
    rec = Recorder()
    killer = threading.Thread(target=_kill_the_busy_worker, args=(client, "slow"))
    killer.start()
    try:
        got = run(rf.slow(3, "finished"), engine=engine, on_event=rec, executor=executor)
    finally:
        killer.join()
    assert got == "finished"
    assert len(rec.of(TaskStarted, "slow")) == 1  # Dask's retry is not a Cascade attempt


@per_engine
def test_a_worker_lost_too_often_fails_the_task_naming_it_and_the_worker(engine, executor):
    rec = Recorder()
    with pytest.raises(distributed.KilledWorker) as err:
        run(rf.always_die(1), engine=engine, on_event=rec, executor=executor)
    message = str(err.value)
    assert "always_die" in message and "tcp://" in message
    assert any("always_die" in note for note in err.value.__notes__)
    (failed,) = rec.of(TaskFailed, "always_die")
    (started,) = rec.of(TaskStarted, "always_die")
    assert started.where == err.value.last_worker.address


@per_engine
def test_an_async_client_on_the_runs_loop_is_used_and_left_open(engine, cluster):
    async def main():
        async with distributed.Client(cluster.scheduler_address, asynchronous=True) as c:
            ex = DaskExecutor(client=c)
            got = await arun(rf.fan(4), engine=engine, executor=ex)
            assert c.status == "running"
            return got

    assert asyncio.run(main()) == 12


def test_a_synchronous_client_lends_its_scheduler(client):
    ex = DaskExecutor(client=client)
    assert run(rf.countdown(5), executor=ex) == 15
    assert client.status == "running"


@per_engine
def test_a_temporary_cluster_is_closed_after_the_run_even_on_failure(engine):
    ex = DaskExecutor(n_workers=1)
    children = _children()
    with pytest.raises(ValueError, match="boom"):
        run(rf.boom(0), engine=engine, executor=ex)
    assert ex.cluster is None and ex.client is None
    _wait_until(lambda: _children() <= children, "worker processes left running")
    assert run(rf.pid_of(), engine=engine, executor=ex) != DRIVER  # reusable: a new cluster
    assert ex.cluster is None


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="one of n_workers=, address= or client="):
        DaskExecutor(n_workers=2, address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="n_workers must be an int >= 1"):
        DaskExecutor(n_workers=0)
    with pytest.raises(TypeError, match="do not apply with address="):
        DaskExecutor(address="tcp://127.0.0.1:1", processes=False)


def test_an_unreachable_scheduler_is_a_clear_error():
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at tcp://"):
            run(rf.double(1), executor=DaskExecutor(address="tcp://127.0.0.1:9"))


def test_without_distributed_one_line_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ImportError) as err:
        run(rf.double(1), executor=DaskExecutor(n_workers=1))
    assert str(err.value) == (
        "running on Dask needs the 'dask' extra: pip install 'cascade[dask]'")


# --------------------------------------------------------------------------- helpers


class _RssWatch:
    """The growth of this process's resident memory while inside (sampled every 5 ms)."""

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _kill_the_busy_worker(client, prefix: str, timeout: float = 30) -> None:
    """SIGKILL the worker process running a call whose key starts with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith(prefix) for k in keys):
                time.sleep(0.3)  # let the call get going
                pid = client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.02)
    raise AssertionError(f"no worker ran a {prefix!r} call within {timeout} s")


def _children() -> set:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
