"""``Trace(path)``: the Chrome trace-event file, checked against the format on both engines."""

from __future__ import annotations

import asyncio
import json

import pytest

from cascade_graph import MemoryStore, inject, resource, task
from cascade_graph import events as ev
from cascade_graph.observe import Trace
from cascade_vm import run
from tests.helpers import Recorder, per_engine

from .trace_format import check_trace


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@task
async def nap(i, seconds=0.05):
    await asyncio.sleep(seconds)
    return i


@task
def total(xs):
    return sum(xs)


def traced(tmp_path, engine, target, **kw):
    """Run ``target`` with a Trace and a Recorder; return (value, trace by phase, recorder)."""
    path = tmp_path / "trace.json"
    rec = Recorder()
    value = run(target, engine=engine, on_event=[Trace(path), rec], **kw)
    return value, check_trace(json.loads(path.read_text())), rec


@per_engine
def test_one_complete_event_per_invocation(tmp_path, engine):
    """Every invocation is one "X" event carrying its call id; the file is valid JSON."""
    value, trace, rec = traced(tmp_path, engine, countdown(30))
    assert value == "done"
    tasks = [s for s in trace["X"] if s["cat"] == "task"]
    assert len(tasks) == 31 == len(rec.of(ev.TaskStarted))
    assert sorted(s["args"]["call"] for s in tasks) == sorted(
        e.call for e in rec.of(ev.TaskStarted))
    assert {s["name"] for s in tasks} == {"countdown"}


@per_engine
def test_timestamps_are_microseconds_from_the_run_start(tmp_path, engine):
    """A call sleeping 50 ms lasts about 50,000 units; starts count from RunStarted."""
    _, trace, rec = traced(tmp_path, engine, nap(1))
    (sliced,) = [s for s in trace["X"] if s["name"] == "nap"]
    assert 45_000 <= sliced["dur"] < 5_000_000
    start = rec.of(ev.RunStarted)[0].time
    started = rec.of(ev.TaskStarted)[0].time
    assert sliced["ts"] == pytest.approx((started - start) * 1e6, abs=0.01)
    (finished,) = rec.of(ev.TaskFinished)
    assert sliced["dur"] == pytest.approx(finished.duration * 1e6, abs=0.01)


@per_engine
def test_concurrent_calls_get_lanes_of_their_own(tmp_path, engine):
    """Eight overlapping naps take eight lanes; later sequential calls reuse the lowest."""
    _, trace, _ = traced(tmp_path, engine, total([nap(i) for i in range(8)]))
    naps = [s for s in trace["X"] if s["name"] == "nap"]
    assert len({(s["pid"], s["tid"]) for s in naps}) == 8
    (summed,) = [s for s in trace["X"] if s["name"] == "total"]
    assert summed["tid"] == min(s["tid"] for s in naps)
    lanes = {m["tid"]: m["args"]["name"] for m in trace["M"] if m["name"] == "thread_name"}
    assert all(s["tid"] in lanes for s in naps)


def _call_at(trace, point) -> int:
    """The call id of the slice holding flow end ``point`` (a small trace: a linear scan)."""
    for s in trace["X"]:
        if (s["pid"], s["tid"]) == (point["pid"], point["tid"]) and \
                s["ts"] - 0.002 <= point["ts"] <= s["ts"] + s["dur"] + 0.002:
            return s["args"]["call"]
    raise AssertionError(f"no slice holds {point}")


@per_engine
def test_tail_calls_are_flow_arrows(tmp_path, engine):
    """Each continuation call whose parent tail-called gets one arrow from that parent."""
    _, trace, rec = traced(tmp_path, engine, countdown(10))
    tail_callers = {e.call for e in rec.of(ev.TailCall)}
    expected = {(e.parent, e.call) for e in rec.of(ev.TaskStarted) if e.parent in tail_callers}
    assert len(expected) == 10
    ends = {f["id"]: f for f in trace["f"]}
    arrows = {(_call_at(trace, s), _call_at(trace, ends[s["id"]])) for s in trace["s"]}
    assert arrows == expected


@per_engine
def test_retries_skips_and_cache_hits_are_instants(tmp_path, engine):
    """A retry sits on the failed attempt's lane; skips and cache hits on the markers lane."""
    attempts = []

    @task(name="flaky")
    def flaky(x):
        attempts.append(x)
        if len(attempts) == 1:
            raise ConnectionError("once")
        return x

    @task(name="square")
    def square(x):
        return x * x

    store = MemoryStore()
    first = square(4).with_cache(store=store)
    target = [flaky(1).with_retry(2), first, square(4).with_cache(store=store).after(first),
              square(5).run_if(False)]
    value, trace, rec = traced(tmp_path, engine, target)
    assert value == [1, 16, 16, None]
    kinds = {e["cat"] for e in trace["i"]}
    assert {"retry", "cache hit", "skipped"} <= kinds
    (retry,) = [e for e in trace["i"] if e["cat"] == "retry"]
    failed = [s for s in trace["X"] if s["name"] == "flaky" and "error" in s["args"]]
    assert len(failed) == 1 and failed[0]["args"]["error"] == "ConnectionError: once"
    assert (retry["pid"], retry["tid"]) == (failed[0]["pid"], failed[0]["tid"])
    assert retry["args"]["attempt"] == 1
    assert len([e for e in trace["i"] if e["cat"] == "cache hit"]) == len(
        [e for e in rec.of(ev.TaskSkipped) if e.reason == "cached"])


@per_engine
def test_resources_are_spans(tmp_path, engine):
    """A run-scoped resource is one span from set-up to tear-down, on the resources lanes."""

    @resource(name="observed_pool")
    def pool():
        yield "pool"

    @task(name="use")
    async def use(x, p=inject("observed_pool")):  # noqa: B008
        await asyncio.sleep(0.01)
        return f"{p}{x}"

    value, trace, _ = traced(tmp_path, engine, [use(1), use(2)])
    assert value == ["pool1", "pool2"]
    (span,) = [s for s in trace["X"] if s["cat"] == "resource"]
    assert span["name"] == "observed_pool" and span["args"]["scope"] == "run"
    uses = [s for s in trace["X"] if s["name"] == "use"]
    assert span["pid"] != uses[0]["pid"]
    # from its set-up (inside the first call that needs it) to its tear-down (after the run)
    assert span["ts"] <= min(s["ts"] + s["dur"] for s in uses)
    assert span["ts"] + span["dur"] >= max(s["ts"] + s["dur"] for s in uses)
    groups = {m["pid"]: m["args"]["name"] for m in trace["M"] if m["name"] == "process_name"}
    assert groups[span["pid"]] == "resources"


@per_engine
def test_a_failed_run_still_writes_a_valid_file(tmp_path, engine):
    """The failing call is a slice with its error; the file closes with ok false."""

    @task(name="boom")
    def boom(x):
        raise ValueError(f"no {x}")

    path = tmp_path / "t.json"
    with pytest.raises(ValueError):
        run(total([nap(1, 0.01), boom(2)]), engine=engine, on_event=Trace(path))
    document = json.loads(path.read_text())
    trace = check_trace(document)
    assert document["otherData"]["ok"] is False
    assert document["otherData"]["error"] == "ValueError: no 2"
    (failed,) = [s for s in trace["X"] if s["name"] == "boom"]
    assert failed["args"]["error"] == "ValueError: no 2"


def test_a_trace_can_be_reused_for_another_run(tmp_path):
    """Running again with the same Trace rewrites the file for the new run."""
    path = tmp_path / "t.json"
    tracer = Trace(path)
    run(countdown(3), on_event=tracer)
    run(countdown(1), on_event=tracer)
    trace = check_trace(json.loads(path.read_text()))
    assert len([s for s in trace["X"] if s["cat"] == "task"]) == 2


@per_engine
def test_a_long_loop_streams_a_valid_trace(tmp_path, engine):
    """20,000 steps (past the write buffer) give a valid file with every step in it."""
    _, trace, _ = traced(tmp_path, engine, countdown(20_000))
    assert len([s for s in trace["X"] if s["cat"] == "task"]) == 20_001
    assert len(trace["s"]) == 20_000


def test_each_worker_is_a_lane_group(tmp_path):
    """Calls whose TaskStarted names a worker go to that worker's process, lanes per worker."""
    path = tmp_path / "t.json"
    tracer = Trace(path)
    tracer(ev.RunStarted(1, time=100.0, wall=0.0))
    for call, where in ((1, "tcp://worker-a:1"), (2, "tcp://worker-b:1"), (3, "tcp://worker-a:1")):
        tracer(ev.TaskStarted(1, "work", call=call, where=where, time=100.0 + call / 1000))
    for call in (1, 2, 3):
        tracer(ev.TaskFinished(1, "work", call=call, time=100.01, duration=0.01))
    tracer(ev.RunFinished(1, True, None, time=100.02))
    trace = check_trace(json.loads(path.read_text()))
    groups = {m["pid"]: m["args"]["name"] for m in trace["M"] if m["name"] == "process_name"}
    lanes = {s["args"]["call"]: (groups[s["pid"]], s["tid"]) for s in trace["X"]}
    assert lanes[1] == ("worker tcp://worker-a:1", 1)
    assert lanes[3] == ("worker tcp://worker-a:1", 2)  # overlaps call 1 on the same worker
    assert lanes[2] == ("worker tcp://worker-b:1", 1)
    assert all(s["args"]["where"].startswith("tcp://") for s in trace["X"])
