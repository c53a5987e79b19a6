"""A checker of Chrome trace-event files, as Perfetto and chrome://tracing read them.

``check_trace(document)`` asserts the format (required keys per phase,
numbers where numbers go, microsecond timestamps from 0), the layout rules
``Trace`` promises (calls on one lane never overlap; every flow arrow has
exactly one start and one end, each inside a complete event on its lane;
every lane and process used is named) and returns the events sorted by
phase for further checks.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

#: keys every event of a phase must carry
REQUIRED = {
    "X": {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"},
    "i": {"name", "cat", "ph", "ts", "pid", "tid", "s"},
    "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "cat", "ph", "ts", "pid", "tid", "id", "bp"},
    "M": {"name", "ph", "pid", "tid", "args"},
}
EPSILON = 0.002  # microseconds: the file rounds to 1 ns


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_trace(document: dict) -> dict:
    """Assert ``document`` is a valid trace as ``Trace`` writes it; return events by phase."""
    assert isinstance(document, dict) and isinstance(document.get("traceEvents"), list)
    assert document.get("displayTimeUnit") in ("ms", "ns")
    by_phase: dict = defaultdict(list)
    for event in document["traceEvents"]:
        ph = event.get("ph")
        assert ph in REQUIRED, f"unknown phase in {event}"
        missing = REQUIRED[ph] - set(event)
        assert not missing, f"{event} lacks {missing}"
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        if ph != "M":
            assert _number(event["ts"]) and event["ts"] >= 0, event
        if ph == "X":
            assert _number(event["dur"]) and event["dur"] >= 0, event
        if ph == "i":
            assert event["s"] in ("g", "p", "t"), event
        if ph == "f":
            assert event["bp"] == "e", event
        by_phase[ph].append(event)
    _check_lanes(by_phase["X"])
    _check_flows(by_phase)
    _check_names(by_phase)
    return by_phase


def _check_lanes(slices: list) -> None:
    lanes = defaultdict(list)
    for s in slices:
        lanes[(s["pid"], s["tid"])].append(s)
    for lane, items in lanes.items():
        items.sort(key=lambda s: s["ts"])
        for a, b in zip(items, items[1:]):
            assert b["ts"] >= a["ts"] + a["dur"] - EPSILON, f"overlap on lane {lane}: {a} {b}"


def _inside(point: dict, slices_by_lane: dict) -> bool:
    """Whether ``point`` lies within a slice of its lane (slices sorted by start, disjoint)."""
    starts, slices = slices_by_lane.get((point["pid"], point["tid"]), ([], []))
    k = bisect.bisect_right(starts, point["ts"] + EPSILON) - 1
    return k >= 0 and point["ts"] <= slices[k]["ts"] + slices[k]["dur"] + EPSILON


def _check_flows(by_phase: dict) -> None:
    lanes = defaultdict(list)
    for s in by_phase["X"]:
        lanes[(s["pid"], s["tid"])].append(s)
    slices_by_lane = {}
    for lane, items in lanes.items():
        items.sort(key=lambda s: s["ts"])
        slices_by_lane[lane] = ([s["ts"] for s in items], items)
    starts = defaultdict(list)
    ends = defaultdict(list)
    for e in by_phase["s"]:
        starts[e["id"]].append(e)
    for e in by_phase["f"]:
        ends[e["id"]].append(e)
    assert set(starts) == set(ends), "a flow arrow misses one of its ends"
    for flow_id, found in starts.items():
        assert len(found) == 1 and len(ends[flow_id]) == 1, f"flow {flow_id} is not one arrow"
        for point in (found[0], ends[flow_id][0]):
            assert _inside(point, slices_by_lane), f"flow end outside any slice: {point}"


def _check_names(by_phase: dict) -> None:
    named_lanes = {(m["pid"], m["tid"]) for m in by_phase["M"] if m["name"] == "thread_name"}
    named_groups = {m["pid"] for m in by_phase["M"] if m["name"] == "process_name"}
    for ph in ("X", "i", "s", "f"):
        for e in by_phase[ph]:
            if ph == "i" and e["s"] == "g":
                continue  # a global instant belongs to no lane
            assert (e["pid"], e["tid"]) in named_lanes, f"lane of {e} has no name"
            assert e["pid"] in named_groups, f"process of {e} has no name"
