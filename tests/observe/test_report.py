"""``Report(path)``: the HTML page's content on both engines, for runs that succeed and fail."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from cascade_graph import Router, task
from cascade_graph.observe import Report
from cascade_vm import run
from tests.helpers import per_engine


@task
def countdown(n):
    return 0 if n <= 0 else countdown(n - 1)


@task
async def fetch(i):
    await asyncio.sleep(0.01)
    return i


@task
def total(xs):
    return sum(xs)


@task
def pick(x):
    return "even" if x % 2 == 0 else "odd"


@task
def explode(x):
    raise KeyError(f"no entry {x}")


def page_data(html: str) -> dict:
    """The run data the page embeds for its script."""
    match = re.search(r'<script id="cascade-data" type="application/json">(.*?)</script>', html,
                      re.S)
    assert match, "no data element"
    return json.loads(match.group(1).replace("<\\/", "</"))


def assert_self_contained(html: str) -> None:
    """No URL the browser would fetch: no http(s) or protocol-relative address, no src."""
    assert not re.search(r"""(?<![\w-])(?:src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # a name, not fetched
    assert "https://" not in html
    assert "@import" not in html and "url(" not in html.replace("url(#arrow)", "")
    assert "default-src 'none'" in html  # the page's own policy forbids any request


def report_of(tmp_path, engine, target, **kw) -> tuple[str, dict]:
    path = tmp_path / "report.html"
    run(target, engine=engine, on_event=Report(path), **kw)
    html = path.read_text(encoding="utf-8")
    return html, page_data(html)


@per_engine
def test_report_of_a_successful_run(tmp_path, engine):
    """The table counts calls and tail calls per task; the timeline has one bar per call."""
    target = total([fetch(i) for i in range(5)])
    html, data = report_of(tmp_path, engine, [target, countdown(12)])
    assert_self_contained(html)
    rows = {row["task"]: row for row in data["tasks"]}
    assert rows["fetch"]["calls"] == 5 and rows["countdown"]["calls"] == 13
    assert rows["countdown"]["tail_calls"] == 12
    assert rows["fetch"]["failures"] == 0
    assert 0.009 <= rows["fetch"]["mean"] <= rows["fetch"]["p95"] <= rows["fetch"]["total"]
    assert rows["fetch"]["total"] == pytest.approx(5 * rows["fetch"]["mean"])
    assert len(data["bars"]) == data["calls"] == 19 and not data["sampled"]
    assert data["ok"] is True and data["failure"] is None
    assert 'class="status status-succeeded"' in html
    assert 'id="failure"' not in html


@per_engine
def test_report_draws_the_workflow_graph(tmp_path, engine):
    """The graph has a box per call, routes dashed with their key, and the tail-call loop."""
    target = total([fetch(1), Router(pick(fetch(2)), {"even": countdown(3), "odd": fetch(3)})])
    html, _ = report_of(tmp_path, engine, target)
    svg = html[html.index('<svg class="graph"'):]
    svg = svg[: svg.index("</svg>")]
    assert svg.count('class="node n-call"') >= 5
    assert 'class="node n-router"' in svg
    routes = re.findall(r'<g class="edge e-route"[^>]*>.*?</g>', svg)
    assert len(routes) == 2
    assert any("&#x27;even&#x27;" in r or "'even'" in r for r in routes)
    assert 'class="edge e-tail"' in svg  # countdown tail-calls countdown
    assert "3 calls" in svg or "4 calls" in svg  # a badge with countdown's call count


@per_engine
def test_report_of_a_failed_run_has_the_traceback(tmp_path, engine):
    """A failed run's page names the task and the error and shows the user's frame."""
    path = tmp_path / "report.html"
    with pytest.raises(KeyError):
        run(total([fetch(1), explode(7)]), engine=engine, on_event=Report(path))
    html = path.read_text(encoding="utf-8")
    assert_self_contained(html)
    data = page_data(html)
    assert data["ok"] is False
    failure = data["failure"]
    assert failure["task"] == "explode" and failure["type"] == "KeyError"
    user = [f for f in failure["frames"] if not f["engine"]]
    assert user and user[-1]["name"] == "explode" and "raise KeyError" in user[-1]["code"]
    assert 'class="status status-failed"' in html
    assert "task <code>explode</code> failed" in html
    assert "no entry 7" in html and "test_report.py" in html
    rows = {row["task"]: row for row in data["tasks"]}
    assert rows["explode"]["failures"] == 1


@per_engine
def test_report_of_a_100000_call_run_stays_small(tmp_path, engine):
    """100,000 calls: the bars are sampled (the longest kept), every call is counted, < 5 MB."""
    path = tmp_path / "report.html"
    run(countdown(99_999), engine=engine, on_event=Report(path))
    size = path.stat().st_size
    assert size < 5_000_000
    data = page_data(path.read_text(encoding="utf-8"))
    assert data["tasks"][0]["calls"] == 100_000
    assert data["sampled"] and len(data["bars"]) == data["bar_limit"]
    assert sum(sum(row) for row in data["activity"]["rows"].values()) > 0


def test_report_without_the_workflow_still_renders(tmp_path):
    """Fed events by hand (no run handed it the workflow), the page says there is no graph."""
    from cascade_graph import events as ev

    path = tmp_path / "r.html"
    report = Report(path, title="by hand")
    report(ev.RunStarted(1, time=10.0, wall=0.0))
    report(ev.TaskStarted(1, "a", call=1, time=10.5))
    report(ev.TaskFinished(1, "a", call=1, time=11.0, duration=0.5))
    report(ev.RunFinished(1, True, None, time=12.0))
    html = path.read_text(encoding="utf-8")
    data = page_data(html)
    assert data["title"] == "by hand" and data["elapsed"] == 2.0
    assert data["bars"] == [[0, 0, 0.5, 0.5, 0, 1, 0]]
    assert "no graph" in html
