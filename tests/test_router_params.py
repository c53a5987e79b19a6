"""A Router key chosen by a ``Param`` is checked when the run starts (SPEC sections 2, 6).

It is bad input: ``RouteKeyError`` (both a ``ParameterError`` and the
``KeyError`` an unknown key always is) before any task runs, on both
engines; the CLI exits 2 with one line naming the parameter, the key and
the known keys.
"""

from __future__ import annotations

import sys

import pytest

from cascade_graph import Param, ParameterError, RouteKeyError, Router, task
from cascade_graph import events as ev
from cascade_vm import run
from cascade_vm.cli import main as cli_main
from tests.helpers import per_engine, run_failing, run_on

CALLS: list = []


@task
def left():
    CALLS.append("left")
    return "L"


@task
def right():
    CALLS.append("right")
    return "R"


@task
def first():
    CALLS.append("first")
    return 0


@task
def pick(value, _=None):
    return value


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


def routed(param):
    return pick(Router(param, routes={"left": left(), "right": right()}), first())


@per_engine
def test_a_good_key_selects_its_route(engine):
    value, rec = run_on(engine, routed(Param("side")), params={"side": "right"})
    assert value == "R" and sorted(CALLS) == ["first", "right"]
    assert [e.task for e in rec.of(ev.TaskSkipped)] == ["left"]


@per_engine
def test_a_bad_key_fails_before_any_task_runs(engine):
    exc, rec = run_failing(engine, routed(Param("side")), params={"side": "up"})
    assert type(exc) is RouteKeyError
    assert isinstance(exc, ParameterError) and isinstance(exc, KeyError)
    assert str(exc) == ("parameter 'side' is 'up', which selects no route of its Router; "
                        "known routes: 'left', 'right'")
    assert CALLS == []
    assert rec.of(ev.TaskStarted) == []
    assert rec.names() == ["RunStarted", "RunFinished"]


@per_engine
def test_a_bad_default_fails_before_any_task_runs(engine):
    exc, _ = run_failing(engine, routed(Param("side", default="middle")))
    assert type(exc) is RouteKeyError and "'middle'" in str(exc)
    assert CALLS == []


@per_engine
def test_the_key_is_the_converted_value(engine):
    flow = pick(Router(Param("n", type=int), routes={1: left(), 2: right()}))
    assert run(flow, engine=engine, params={"n": "2"}) == "R"
    exc, _ = run_failing(engine, flow, params={"n": "3"})
    assert type(exc) is RouteKeyError and "is 3," in str(exc) and "known routes: 1, 2" in str(exc)


@per_engine
def test_a_missing_selector_param_is_still_a_missing_parameter(engine):
    exc, _ = run_failing(engine, routed(Param("side")))
    assert isinstance(exc, ParameterError) and "missing required parameter 'side'" in str(exc)
    assert CALLS == []


@per_engine
def test_a_router_first_met_in_a_tail_call_is_checked_when_met(engine):
    @task
    def then_route():
        CALLS.append("then_route")
        return routed(Param("side"))

    exc, _ = run_failing(engine, then_route(), params={"side": "up"})
    assert type(exc) is RouteKeyError
    assert CALLS == ["then_route"]  # the continuation's tasks never started


@per_engine
def test_a_key_from_a_task_is_still_found_at_run_time(engine):
    @task
    def choose():
        return "up"

    exc, _ = run_failing(engine, pick(Router(choose(), routes={"left": left()})))
    assert type(exc) is KeyError and "Router has no route 'up'" in str(exc)


# --------------------------------------------------------------------------- the CLI


@per_engine
def test_cli_exits_2_with_one_line_before_any_task_runs(capsys, engine):
    code = cli_main(["run", "tests/flows/route_param.py", "-p", "mode=sing",
                     "--engine", engine])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: parameter 'mode' is 'sing', which selects no route of its Router; "
        "known routes: 'shout', 'whisper'"]
    loaded = sys.modules["cascade_flow_route_param"]  # the flow as the CLI imported it
    assert loaded.STARTED == []  # not even prepare(), which no route holds


@per_engine
def test_cli_runs_a_good_key(capsys, engine):
    code = cli_main(["run", "tests/flows/route_param.py", "-p", "mode=whisper",
                     "--engine", engine])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == "Hello: hi\n"


def test_find_params_sees_a_router_in_a_container_target():
    from cascade_graph.params import find_params

    side, other = Param("side"), Param("other")
    target = {"x": Router(side, routes={"left": pick(other)})}
    assert {p.name for p in find_params(target)} == {"side", "other"}


@per_engine
def test_cli_runs_a_container_target_holding_a_router(capsys, tmp_path, engine):
    flow = tmp_path / "container_router.py"
    flow.write_text(
        "from cascade_graph import Param, Router, task\n"
        "@task\n"
        "def up(s):\n"
        "    return s.upper()\n"
        "main = {'said': Router(Param('how'), routes={'up': up('hi'), 'same': 'hi'})}\n"
    )
    code = cli_main(["run", str(flow), "-p", "how=up", "--engine", engine, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == '{"said": "HI"}\n'
    code = cli_main(["run", str(flow), "-p", "how=down", "--engine", engine])
    out, err = capsys.readouterr()
    assert code == 2 and "parameter 'how' is 'down'" in err
