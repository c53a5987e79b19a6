/* Cascade run report: draws the cards, the timeline and the task table from the
   run's data (the JSON in #cascade-data), and makes the graph and the failure
   interactive. Marks <body data-rendered="true"> when everything is drawn. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("cascade-data").textContent);
  var palette = data.palette;
  var byIndex = {};
  data.tasks.forEach(function (t) { byIndex[t.color] = t; });

  function colour(i) { return palette[i % palette.length]; }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, cls, text, parent) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function num(n) { return Number(n).toLocaleString("en-US"); }
  function dur(s) {
    if (!isFinite(s)) return "-";
    var a = Math.abs(s);
    if (a === 0) return "0";
    if (a < 1e-3) return (s * 1e6).toPrecision(3).replace(/\.?0+$/, "") + " \u00b5s";
    if (a < 1) return (s * 1e3).toPrecision(3).replace(/\.?0+$/, "") + " ms";
    if (a < 60) return s.toPrecision(3).replace(/\.?0+$/, "") + " s";
    var m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }
  function taskName(i) { return byIndex[i] ? byIndex[i].task : "?"; }

  /* ------------------------------------------------------------------ cards */
  function renderCards() {
    var box = document.getElementById("cards");
    var sum = function (key) { return data.tasks.reduce(function (a, t) { return a + t[key]; }, 0); };
    var lanes = data.lanes.reduce(function (a, g) { return a + g[1]; }, 0);
    var cards = [
      ["elapsed", dur(data.elapsed), ""],
      ["calls", num(data.calls), ""],
      ["tasks", num(data.tasks.length), ""],
      ["failed", num(sum("failures")), sum("failures") ? "bad" : ""],
      ["retries", num(sum("retries")), sum("retries") ? "warn" : ""],
      ["cache hits", num(sum("cache_hits")), sum("cache_hits") ? "good" : ""],
      ["tail calls", num(sum("tail_calls")), ""],
      ["peak concurrency", num(lanes), ""]
    ];
    cards.forEach(function (c) {
      var card = html("div", "card " + c[2], null, box);
      html("div", "value", c[1], card);
      html("div", "label", c[0], card);
    });
    document.getElementById("elapsed").textContent = dur(data.elapsed) + " \u00b7 run " + data.run_id;
  }

  /* ------------------------------------------------------------------ table */
  var sortKey = "total", sortAsc = false;
  function renderTable() {
    var body = document.querySelector("#tasks tbody");
    body.textContent = "";
    var total = data.tasks.reduce(function (a, t) { return a + t.total; }, 0) || 1;
    var rows = data.tasks.slice().sort(function (a, b) {
      var x = a[sortKey], y = b[sortKey];
      var c = typeof x === "string" ? x.localeCompare(y) : x - y;
      return sortAsc ? c : -c;
    });
    rows.forEach(function (t) {
      var tr = html("tr", "task-row", null, body);
      tr.setAttribute("data-task", t.task);
      var name = html("td", "text", null, tr);
      var sw = html("span", "swatch", null, name);
      sw.style.background = colour(t.color);
      name.appendChild(document.createTextNode(t.task));
      [["calls", ""], ["failures", "bad"], ["retries", "warn"], ["cache_hits", "good"],
       ["skipped", ""], ["tail_calls", ""]].forEach(function (c) {
        var v = t[c[0]];
        html("td", v ? c[1] : "zero", num(v), tr);
      });
      ["total", "mean", "p95"].forEach(function (key) {  /* no call: no time to show */
        html("td", t.calls ? "" : "zero", t.calls ? dur(t[key]) : "\u2013", tr);
      });
      var share = html("td", "share", null, tr);
      var bar = html("span", "sharebar", null, share);
      var fill = html("i", null, null, bar);
      fill.style.width = (100 * t.total / total).toFixed(1) + "%";
      fill.style.background = colour(t.color);
      share.appendChild(document.createTextNode((100 * t.total / total).toFixed(1) + "%"));
    });
    document.querySelectorAll("#tasks th").forEach(function (th) {
      th.classList.toggle("sorted", th.getAttribute("data-key") === sortKey && !th.classList.contains("share"));
      th.classList.toggle("asc", sortAsc);
    });
  }
  document.querySelectorAll("#tasks th").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      if (key === sortKey) sortAsc = !sortAsc; else { sortKey = key; sortAsc = key === "task"; }
      renderTable();
    });
  });

  /* ------------------------------------------------------------------ timeline */
  var domain = [0, Math.max(data.elapsed, 1e-6)];
  var full = domain.slice();

  function niceStep(span, count) {
    var raw = span / count, p = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
  }

  function topSeries() {
    var rows = data.activity.rows, keys = Object.keys(rows);
    keys.sort(function (a, b) { return (byIndex[b] ? byIndex[b].total : 0) - (byIndex[a] ? byIndex[a].total : 0); });
    var top = keys.slice(0, 7).map(function (k) { return { key: +k, values: rows[k] }; });
    if (keys.length > 7) {
      var rest = [];
      keys.slice(7).forEach(function (k) {
        rows[k].forEach(function (v, i) { rest[i] = (rest[i] || 0) + v; });
      });
      top.push({ key: -1, values: rest });
    }
    return top;
  }

  function renderTimeline() {
    var box = document.getElementById("timeline");
    box.textContent = "";
    var W = Math.max(box.clientWidth || 900, 600), gutter = 128, right = 14;
    var plotW = W - gutter - right;
    var X = function (t) { return gutter + (t - domain[0]) / (domain[1] - domain[0]) * plotW; };
    var groups = data.lanes.slice();
    if (data.resources.length) groups.push(["resources", resourceLanes()]);
    var totalLanes = groups.reduce(function (a, g) { return a + g[1]; }, 0) || 1;
    var laneH = Math.max(4, Math.min(22, Math.floor(420 / totalLanes)));
    var stripH = 58, markH = 16, groupH = 18, axisH = 26;
    var H = stripH + 12 + markH + groups.length * groupH + totalLanes * laneH + axisH + 6;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, "class": "timeline-svg" }, box);
    var plot = el("g", {}, svg);
    /* grid and axis */
    var step = niceStep(domain[1] - domain[0], Math.max(3, Math.floor(plotW / 110)));
    var axis = el("g", { "class": "axis" }, svg);
    el("line", { x1: gutter, x2: gutter + plotW, y1: H - axisH, y2: H - axisH }, axis);
    for (var t = Math.ceil(domain[0] / step) * step; t <= domain[1] + step * 1e-9; t += step) {
      var x = X(t);
      el("line", { x1: x, x2: x, y1: 0, y2: H - axisH, "class": "grid" }, plot);
      el("line", { x1: x, x2: x, y1: H - axisH, y2: H - axisH + 5 }, axis);
      var label = el("text", { x: x, y: H - 8, "text-anchor": "middle" }, axis);
      label.textContent = dur(t);
    }
    var y = 0;
    /* activity strip: mean running calls per task, stacked */
    drawStrip(plot, X, y, stripH);
    var sl = el("text", { x: 8, y: y + 14, "class": "strip-label" }, svg);
    sl.textContent = "activity";
    var sl2 = el("text", { x: 8, y: y + 28, "class": "strip-label" }, svg);
    sl2.textContent = "(every call)";
    y += stripH + 12;
    /* markers */
    var ml = el("text", { x: 8, y: y + 12, "class": "strip-label" }, svg);
    ml.textContent = "events";
    drawMarkers(plot, X, y + markH / 2);
    y += markH;
    /* lanes */
    var laneTop = {};
    groups.forEach(function (g, gi) {
      var gl = el("text", { x: 8, y: y + 13, "class": "group-label" }, svg);
      gl.textContent = g[0];
      y += groupH;
      laneTop[gi] = y;
      for (var k = 0; k < g[1]; k++) {
        el("rect", { x: gutter, y: y + k * laneH, width: plotW, height: laneH, "class": "lane-bg" + (k % 2 ? " odd" : "") }, plot);
        if (laneH >= 12) {
          var ll = el("text", { x: gutter - 8, y: y + k * laneH + laneH / 2 + 4, "text-anchor": "end", "class": "lane-label" }, svg);
          ll.textContent = (gi === data.lanes.length ? "resource " : "slot ") + (k + 1);
        }
      }
      y += g[1] * laneH;
    });
    var bars = el("g", { "class": "bars" }, plot);
    var pad = laneH > 8 ? 2 : 0.5;
    data.bars.forEach(function (b, i) {
      var start = b[2], end = b[2] + b[3];
      if (end < domain[0] || start > domain[1]) return;
      var x0 = Math.max(X(start), gutter), x1 = Math.min(X(end), gutter + plotW);
      el("rect", {
        x: x0, y: laneTop[b[0]] + b[1] * laneH + pad, width: Math.max(x1 - x0, 1.2),
        height: Math.max(laneH - 2 * pad, 1), fill: colour(b[4]),
        "class": "bar" + (b[6] ? " failed" : ""), "data-i": i
      }, bars);
    });
    if (data.resources.length) drawResources(plot, X, laneTop[data.lanes.length], laneH);
    enableZoom(svg, X, gutter, plotW, H - axisH);
    note();
    legend(box);
  }

  function drawStrip(parent, X, top, height) {
    var series = topSeries();
    if (!series.length) return;
    var width = data.activity.width, n = 0;
    series.forEach(function (s) { n = Math.max(n, s.values.length); });
    var stack = new Array(n).fill(0), peak = 0;
    series.forEach(function (s) { s.values.forEach(function (v, i) { stack[i] += v; }); });
    stack.forEach(function (v) { peak = Math.max(peak, v); });
    peak = Math.max(peak, 1e-9);
    var base = new Array(n).fill(0);
    var Y = function (v) { return top + height - v / peak * (height - 4); };
    el("rect", { x: X(domain[0]), y: top, width: X(domain[1]) - X(domain[0]), height: height, "class": "lane-bg" }, parent);
    series.forEach(function (s) {
      var upper = [], lower = [];
      for (var i = 0; i < n; i++) {
        var t0 = i * width, t1 = (i + 1) * width;
        if (t1 < domain[0] || t0 > domain[1]) continue;
        var a = X(Math.max(t0, domain[0])), b = X(Math.min(t1, domain[1]));
        var hi = base[i] + (s.values[i] || 0);
        upper.push([a, Y(hi)], [b, Y(hi)]);
        lower.unshift([b, Y(base[i])], [a, Y(base[i])]);
        base[i] = hi;
      }
      if (!upper.length) return;
      var d = "M" + upper.concat(lower).map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join("L") + "Z";
      var area = el("path", { d: d, fill: s.key < 0 ? "#94a3b8" : colour(s.key), "class": "area" }, parent);
      var t = el("title", {}, area);
      t.textContent = (s.key < 0 ? "other tasks" : taskName(s.key)) + ": running calls over time";
    });
    var cap = el("text", { x: X(domain[1]) - 4, y: top + 11, "text-anchor": "end", "class": "strip-label" }, parent);
    cap.textContent = "peak " + (peak >= 10 ? Math.round(peak) : peak.toPrecision(2)) + " running";
  }

  function drawMarkers(parent, X, mid) {
    var kinds = ["failed", "retry", "cached", "skipped"];
    kinds.forEach(function (kind) {
      (data.markers[kind] || []).forEach(function (m, i) {
        if (m[0] < domain[0] || m[0] > domain[1]) return;
        var x = X(m[0]), shape;
        if (kind === "retry") {
          shape = el("path", { d: "M" + x + "," + (mid - 5) + "l5,9h-10z", "class": "marker marker-retry" }, parent);
        } else if (kind === "failed") {
          shape = el("rect", { x: x - 4, y: mid - 4, width: 8, height: 8, transform: "rotate(45 " + x + " " + mid + ")", "class": "marker marker-failed" }, parent);
        } else {
          shape = el("circle", { cx: x, cy: mid, r: kind === "cached" ? 4 : 3, "class": "marker marker-" + kind }, parent);
        }
        shape.setAttribute("data-kind", kind);
        shape.setAttribute("data-i", i);
      });
    });
  }

  var resourceLaneOf = null;
  function resourceLanes() {
    if (resourceLaneOf) return resourceLaneOf.count;
    var ends = [], lanes = [];
    data.resources.forEach(function (r) {
      var lane = 0;
      while (lane < ends.length && ends[lane] > r[2]) lane++;
      ends[lane] = r[3];
      lanes.push(lane);
    });
    resourceLaneOf = { lanes: lanes, count: ends.length };
    return ends.length;
  }

  function drawResources(parent, X, top, laneH) {
    data.resources.forEach(function (r, i) {
      if (r[3] < domain[0] || r[2] > domain[1]) return;
      var x0 = Math.max(X(r[2]), X(domain[0])), x1 = Math.min(X(r[3]), X(domain[1]));
      var rect = el("rect", { x: x0, y: top + resourceLaneOf.lanes[i] * laneH + 2, width: Math.max(x1 - x0, 1.2), height: Math.max(laneH - 4, 1), "class": "resource" }, parent);
      rect.setAttribute("data-kind", "resource");
      rect.setAttribute("data-i", i);
    });
  }

  function describe(target) {
    var i = +target.getAttribute("data-i");
    var kind = target.getAttribute("data-kind");
    var t = function (s) { return "<b>" + escapeHtml(s) + "</b>"; };
    if (target.classList.contains("bar")) {
      var b = data.bars[i];
      return t(taskName(b[4])) + "<br>call " + b[5] + (b[6] ? ' <span class="err">failed</span>' : "") +
        "<br>start " + dur(b[2]) + " \u00b7 took " + dur(b[3]);
    }
    if (kind === "resource") {
      var r = data.resources[i];
      return t("resource " + r[0]) + " (" + escapeHtml(r[1]) + " scope)<br>set up at " + dur(r[2]) + ", torn down at " + dur(r[3]);
    }
    if (kind) {
      var m = data.markers[kind][i];
      var head = { retry: "retry", cached: "cache hit", skipped: "skipped", failed: "failure" }[kind];
      var extra = kind === "retry" ? "<br>attempt " + m[2] + " failed; next in " + dur(m[3]) + '<br><span class="err">' + escapeHtml(m[4]) + "</span>"
        : kind === "failed" ? '<br><span class="err">' + escapeHtml(m[2]) + "</span>"
        : kind === "skipped" ? "<br>reason: " + escapeHtml(m[2]) : "";
      return t(head + " \u00b7 " + taskName(m[1])) + "<br>at " + dur(m[0]) + extra;
    }
    return null;
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }

  var tooltip = document.getElementById("tooltip");
  var panel = document.getElementById("timeline-panel");
  function showTip(ev) {
    var text = ev.target.getAttribute && ev.target.getAttribute("data-i") !== null ? describe(ev.target) : null;
    if (!text) { tooltip.hidden = true; return; }
    tooltip.innerHTML = text;
    tooltip.hidden = false;
    var r = panel.getBoundingClientRect();
    var x = ev.clientX - r.left + 14, y = ev.clientY - r.top + 14;
    if (x + tooltip.offsetWidth > r.width - 8) x = ev.clientX - r.left - tooltip.offsetWidth - 14;
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }

  function enableZoom(svg, X, gutter, plotW, bottom) {
    var start = null, sel = null;
    var toTime = function (px) { return domain[0] + (px - gutter) / plotW * (domain[1] - domain[0]); };
    var local = function (ev) {
      var r = svg.getBoundingClientRect();
      return (ev.clientX - r.left) * (svg.viewBox.baseVal.width / r.width);
    };
    svg.addEventListener("mousemove", function (ev) {
      if (start !== null) {
        var x = Math.max(gutter, Math.min(gutter + plotW, local(ev)));
        sel.setAttribute("x", Math.min(start, x));
        sel.setAttribute("width", Math.abs(x - start));
        return;
      }
      showTip(ev);
    });
    svg.addEventListener("mouseleave", function () { tooltip.hidden = true; });
    svg.addEventListener("mousedown", function (ev) {
      var x = local(ev);
      if (x < gutter) return;
      start = x;
      sel = el("rect", { x: x, y: 0, width: 0, height: bottom, "class": "selection" }, svg);
      tooltip.hidden = true;
    });
    window.addEventListener("mouseup", function (ev) {
      if (start === null) return;
      var x = Math.max(gutter, Math.min(gutter + plotW, local(ev)));
      var a = Math.min(start, x), b = Math.max(start, x);
      start = null;
      if (sel && sel.parentNode) sel.parentNode.removeChild(sel);
      if (b - a > 4) { domain = [toTime(a), toTime(b)]; renderTimeline(); }
    });
    svg.addEventListener("dblclick", function () { domain = full.slice(); renderTimeline(); });
  }

  function note() {
    var n = document.getElementById("timeline-note");
    n.textContent = "";
    var parts = [];
    if (data.sampled) {
      parts.push("showing the " + num(data.bars.length) + " longest of " + num(data.ended_calls) +
        " calls as bars; the activity strip counts every call");
    } else {
      parts.push(num(data.bars.length) + " calls, one bar each");
    }
    parts.push("drag to zoom, double-click to reset");
    n.appendChild(document.createTextNode(parts.join(" \u00b7 ")));
    if (domain[0] !== full[0] || domain[1] !== full[1]) {
      var b = html("button", "reset", "reset zoom", n);
      b.style.marginLeft = "10px";
      b.addEventListener("click", function () { domain = full.slice(); renderTimeline(); });
    }
  }

  function legend(box) {
    var row = html("div", "legend-row", null, box);
    data.tasks.slice().sort(function (a, b) { return b.total - a.total; }).slice(0, 12).forEach(function (t) {
      var s = html("span", null, null, row);
      var i = html("i", null, null, s);
      i.style.background = colour(t.color);
      s.appendChild(document.createTextNode(t.task));
    });
    [["marker-failed", "failure", "#dc2626"], ["marker-retry", "retry", "#d97706"],
     ["marker-cached", "cache hit", "#16a34a"], ["marker-skipped", "skipped", "#94a3b8"]].forEach(function (m) {
      var s = html("span", null, null, row);
      var i = html("i", null, null, s);
      i.style.background = m[2];
      i.style.borderRadius = "50%";
      s.appendChild(document.createTextNode(m[1]));
    });
  }

  /* ------------------------------------------------------------------ graph */
  function wireGraph() {
    var svg = document.querySelector("svg.graph");
    if (!svg) return;
    var edges = svg.querySelectorAll(".edge");
    svg.querySelectorAll(".node").forEach(function (node) {
      var id = node.getAttribute("data-id");
      node.addEventListener("mouseenter", function () {
        svg.classList.add("focus");
        node.classList.add("lit");
        edges.forEach(function (e) {
          var src = e.getAttribute("data-src"), dst = e.getAttribute("data-dst");
          if (src === id || dst === id) {
            e.classList.add("lit");
            var other = svg.querySelector('.node[data-id="' + (src === id ? dst : src) + '"]');
            if (other) other.classList.add("lit");
          }
        });
      });
      node.addEventListener("mouseleave", function () {
        svg.classList.remove("focus");
        svg.querySelectorAll(".lit").forEach(function (e) { e.classList.remove("lit"); });
      });
    });
  }

  function wireFailure() {
    var box = document.getElementById("show-engine");
    if (!box) return;
    box.addEventListener("change", function () {
      document.getElementById("frames").classList.toggle("hide-engine", !box.checked);
    });
  }

  renderCards();
  renderTable();
  renderTimeline();
  wireGraph();
  wireFailure();
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(renderTimeline, 120);
  });
  document.body.setAttribute("data-rendered", "true");
})();
