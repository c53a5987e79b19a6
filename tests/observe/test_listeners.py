"""``on_event`` as a list of listeners, and the workflow handed to listeners that ask."""

from __future__ import annotations

import pytest

from cascade_graph import events as ev
from cascade_graph import task
from cascade_graph.context import RunContext
from cascade_vm import arun, run
from tests.helpers import Recorder, per_engine


@task
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


@per_engine
def test_every_listener_of_a_list_gets_every_event(engine):
    """Two recorders in a list see the same events, in the same order."""
    a, b = Recorder(), Recorder()
    assert run(countdown(5), engine=engine, on_event=[a, b]) == "done"
    assert a.events == b.events
    assert a.names()[0] == "RunStarted" and a.names()[-1] == "RunFinished"
    assert len(a.of(ev.TaskStarted)) == 6


@per_engine
def test_a_tuple_of_listeners_in_arun(engine):
    """``arun`` takes a tuple of listeners too."""
    import asyncio

    a, b = Recorder(), Recorder()
    assert asyncio.run(arun(countdown(2), engine=engine, on_event=(a, b))) == "done"
    assert a.names() == b.names() and a.names()


def test_an_empty_list_is_nobody_listening():
    """No listener in the list: the run is unobserved (``emit`` is None)."""
    assert RunContext(on_event=[]).emit is None
    assert RunContext(on_event=()).emit is None


def test_one_listener_in_a_list_is_called_directly():
    """A list of one listener costs what the listener alone costs."""
    rec = Recorder()
    assert RunContext(on_event=[rec]).emit is rec


@pytest.mark.parametrize("bad", [[print, 3], ("not callable",)])
def test_a_listener_that_is_not_callable_is_named(bad):
    """A list element that is not callable is a TypeError saying which one."""
    with pytest.raises(TypeError, match=r"on_event\[\d\] must be callable"):
        run(countdown(1), on_event=bad)


def test_on_event_that_is_neither_is_a_type_error():
    with pytest.raises(TypeError, match="on_event must be a callable or a list"):
        run(countdown(1), on_event=42)


class WantsWorkflow(Recorder):
    """A recorder that also asks for the run's workflow."""

    def __init__(self):
        super().__init__()
        self.workflows = []

    def observe_workflow(self, target):
        self.workflows.append((target, len(self.events)))


@per_engine
def test_listeners_asking_for_the_workflow_get_the_target_first(engine):
    """``observe_workflow(target)`` is called once, before RunStarted, with the run's target."""
    target = countdown(3)
    plain, asking = Recorder(), WantsWorkflow()
    run(target, engine=engine, on_event=[plain, asking])
    assert asking.workflows == [(target, 0)]
