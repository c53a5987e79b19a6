"""The workflow's drawable shape (drawing.py): DOT for ``graph``, layers for the report."""

from __future__ import annotations

import re

from cascade_graph import Param, Router, task
from cascade_graph.drawing import by_task, layers, shape_of, to_dot
from cascade_vm.cli import main


@task
def load(x):
    return x


@task
def pick(x):
    return "a"


@task
def join(*xs):
    return xs


def test_routes_are_dashed_and_labelled_with_their_key():
    """Each route is an edge into the router, dashed, labelled with its key."""
    dot = to_dot(join(Router(pick(load(1)), {"a": load(2), "b": load(3), "none": 0})))
    routes = [line for line in dot.splitlines() if "style=dashed" in line and "label=" in line]
    labels = sorted(re.search(r'label="([^"]*)"', line).group(1) for line in routes)
    assert labels == ["'a'", "'b'", "'none'"]
    assert "shape=diamond" in dot  # the router
    assert 'label="0", shape=ellipse' in dot  # a literal route is a value node
    assert 'label="selector"' in dot


def test_a_map_is_one_stacked_box():
    """``task.map`` is drawn as one node (box3d) saying it stands for each item."""
    dot = to_dot(join(load.map([1, 2, 3]).with_retry(2)))
    (line,) = [line for line in dot.splitlines() if "load.map" in line]
    assert "shape=box3d" in line and "for each item" in line and "retry x2" in line


def test_conditions_after_and_params():
    """run_if and after edges are dashed and labelled; a Param is a value node."""
    dot = to_dot(join(load(Param("n", default=1))).run_if(load(2)).after(load(3)))
    assert 'label="run_if"' in dot and 'label="after"' in dot
    assert "Param('n'" in dot


def test_shared_nodes_are_drawn_once():
    """One lazy used twice is one node with two edges out."""
    x = load(1)
    shape = shape_of(join(x, x, load(1)))
    assert len(shape.nodes) == 3
    assert len([e for e in shape.edges if e.src == 1]) == 1  # (x -> join) once, deduplicated


def test_layers_put_producers_before_consumers():
    """Every edge goes from an earlier layer to a later one."""
    a = load(1)
    shape = shape_of(join(join(a, load(2)), a))
    rows = layers(shape)
    depth = {n: k for k, row in enumerate(rows) for n in row}
    assert all(depth[e.src] < depth[e.dst] for e in shape.edges)


def test_by_task_collapses_a_large_workflow():
    """A 500-node fan-in collapses to one box per task."""
    shape = shape_of(join(*[load(i) for i in range(500)]))
    small, counts = by_task(shape)
    assert len(small.nodes) == 2 and sorted(counts.values()) == [1, 500]
    assert len(small.edges) == 1


def test_graph_command_draws_routes(capsys, tmp_path):
    """``python -m cascade_vm graph`` prints the routes of a Router."""
    flow = tmp_path / "routed.py"
    flow.write_text(
        "from cascade_graph import Router, task\n"
        "@task\ndef pick(): return 'x'\n"
        "@task\ndef a(): return 1\n"
        "@task\ndef use(v): return v\n"
        "main = use(Router(pick(), {'x': a(), 'y': a()}))\n"
    )
    assert main(["graph", str(flow)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph cascade {")
    assert out.count("style=dashed") == 2 and "label=\"'x'\"" in out
