"""The HTML report's page: one file, with its CSS, script, data and SVG inline.

``render(record, target, title)`` returns the page. What is static is
written here, in Python, and shows without the script: the header, the
failure with its traceback (user frames shown, the engine's folded away)
and the workflow graph (graph.py). The timeline, the cards and the
per-task table are drawn by the page's script (assets/report.js) from the
run's data, embedded as JSON in a ``<script type="application/json">``
element; the script marks ``<body data-rendered="true">`` when done.

No request leaves the page: no external font, script, style or image, a
``data:`` favicon, and a Content-Security-Policy allowing nothing but the
inline style and script (``default-src 'none'``), so a browser would
refuse any such request anyway.
"""

from __future__ import annotations

import json
import time
from html import escape
from importlib import resources

from .graph import PALETTE, graph_svg
from .record import BAR_LIMIT, RunRecord

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(data) -> str:
    """``data`` as JSON safe inside a ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _graph(record_summary: dict, target, no_target) -> str:
    from ..drawing import shape_of

    shape = None
    if target is not no_target:
        try:
            shape = shape_of(target)
        except Exception as exc:  # noqa: BLE001 - the report must still be written
            return f'<p class="note">The graph could not be drawn: {escape(repr(exc))}</p>'
    colours = {row["task"]: row["color"] for row in record_summary["tasks"]}
    calls = {row["task"]: row["calls"] for row in record_summary["tasks"]}
    return graph_svg(shape, record_summary["tail_edges"], colours, calls)


def _failure(failure: dict | None) -> str:
    if failure is None:
        return ""
    who = f"task <code>{escape(failure['task'])}</code> failed" if failure["task"] else \
        "the run failed"
    frames = []
    for f in failure["frames"]:
        cls = "frame engine" if f["engine"] else "frame user"
        frames.append(f'<li class="{cls}"><span class="where">{escape(f["file"])}:{f["line"]}'
                      f' in <b>{escape(f["name"])}</b></span>'
                      f'<code>{escape(f["code"])}</code></li>')
    engine = sum(1 for f in failure["frames"] if f["engine"])
    notes = "".join(f"<li>{escape(n)}</li>" for n in failure["notes"])
    return (
        '<section class="panel failure" id="failure"><h2>Failure</h2>'
        f'<p class="headline">{who}: <b>{escape(failure["message"])}</b></p>'
        f'<ol class="frames{" hide-engine" if engine else ""}" id="frames">{"".join(frames)}</ol>'
        + (f'<label class="toggle"><input type="checkbox" id="show-engine"> show the '
           f'{engine} frame{"s" if engine != 1 else ""} of Cascade and asyncio</label>'
           if engine else "")
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + '<details><summary>Full traceback</summary>'
        f'<pre class="traceback">{escape(failure["text"])}</pre></details></section>'
    )


def render(record: RunRecord, target, title: str | None) -> str:
    """The report page for the finished run ``record`` (``target``: its workflow)."""
    from .report import _NO_TARGET

    summary = record.summary()
    title = title or f"cascade run {summary['run_id']}"
    summary["title"] = title
    summary["palette"] = list(PALETTE)
    summary["bar_limit"] = BAR_LIMIT
    status = "succeeded" if summary["ok"] else "failed"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["wall"]))
    return _PAGE.format(
        title=escape(title),
        csp=_CSP,
        css=_asset("report.css"),
        js=_asset("report.js"),
        data=_script_json(summary),
        status=status,
        started=escape(started),
        failure=_failure(summary["failure"]),
        graph=_graph(summary, target, _NO_TARGET),
        version=escape(_version()),
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return "cascade " + version("cascade")
    except Exception:  # noqa: BLE001 - not installed: no version to show
        return "cascade"


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body class="run-{status}">
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true"></span>cascade</div>
  <h1>{title}</h1>
  <span class="status status-{status}">{status}</span>
  <div class="meta">started {started} &middot; <span id="elapsed"></span></div>
</header>
<main>
<section class="cards" id="cards" aria-label="summary"></section>
{failure}
<section class="panel" id="timeline-panel">
  <div class="panel-head"><h2>Timeline</h2><p class="hint" id="timeline-note"></p></div>
  <div id="timeline" class="timeline"></div>
  <div id="tooltip" class="tooltip" hidden></div>
</section>
<section class="panel" id="tasks-panel">
  <div class="panel-head"><h2>Tasks</h2><p class="hint">click a column to sort</p></div>
  <div class="table-wrap"><table id="tasks"><thead><tr>
    <th data-key="task" class="text">task</th><th data-key="calls">calls</th>
    <th data-key="failures">failed</th><th data-key="retries">retries</th>
    <th data-key="cache_hits">cache hits</th><th data-key="skipped">skipped</th>
    <th data-key="tail_calls">tail calls</th><th data-key="total">total</th>
    <th data-key="mean">mean</th><th data-key="p95">p95</th>
    <th data-key="total" class="share">share of time</th>
  </tr></thead><tbody></tbody></table></div>
</section>
<section class="panel" id="graph-panel">
  <div class="panel-head"><h2>Workflow</h2><p class="hint">hover a box to follow its edges</p></div>
  <div class="graph-wrap">{graph}</div>
  <ul class="legend">
    <li><i class="l-data"></i>argument</li><li><i class="l-cond"></i>run_if</li>
    <li><i class="l-after"></i>after</li><li><i class="l-route"></i>route (key)</li>
    <li><i class="l-tail"></i>tail call</li>
  </ul>
</section>
<noscript><p class="note">The timeline and the table need JavaScript.</p></noscript>
</main>
<footer>{version} &middot; a self-contained page: it loads nothing from the network</footer>
<script id="cascade-data" type="application/json">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""
