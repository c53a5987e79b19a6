"""The harness catches bugs: inject known engine bugs, expect a disagreement.

Each test patches one engine piece (with pytest's ``MonkeyPatch``, undone
after every example, with the shared template cache cleared before and after
so no poisoned compiled form outlives the example) and runs the generator and
oracle for at most ``BUDGET`` examples, no shrinking. A disagreement counts
only if the same program agrees everywhere *without* the injected bug, so a
real engine bug cannot make these tests pass by accident.

These tests know engine internals (names in cascade_graph.cache,
cascade_vm.compiler, cascade_vm.vm, cascade_graph.executor). When one of
those moves, the test fails loudly at ``monkeypatch.setattr`` (raising=True):
update the injection, do not delete it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.strategies import programs

from . import features, oracle, reference

pytestmark = pytest.mark.skipif(
    not features.engines_present(),
    reason="the engines (cascade_graph/cascade_vm) are not importable",
)

BUDGET = 100
#: features with known open engine disagreements are left out unless a test needs them,
#: so a detection is the injected bug's (the control run double-checks anyway)
QUIET = {"router", "param"}


def clear_caches() -> None:
    from cascade_graph import cache

    cache.SHARED.clear()


def detects(inject, strategy, budget: int = BUDGET) -> oracle.Disagreement | None:
    """The first disagreement ``inject`` causes on programs from ``strategy``, or None."""
    found: list = []

    @settings(
        max_examples=budget,
        phases=[Phase.generate],
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def prop(program):
        if found:
            return
        bug = None
        with pytest.MonkeyPatch.context() as mp:
            clear_caches()
            try:
                inject(mp)
                oracle.check(program, fail_fast=True)
            except reference.Discard:
                return
            except oracle.Disagreement as e:
                bug = e
            finally:
                clear_caches()
        if bug is None:
            return
        try:  # control: the program must agree everywhere without the injection
            oracle.check(program, fail_fast=True)
        except (oracle.Disagreement, reference.Discard):
            return
        found.append(bug)

    prop()
    return found[0] if found else None


def strategy(force=(), allow=()):
    avail = features.available()
    feats = (avail - QUIET) | (avail & set(allow)) | (avail & set(force))
    return programs(features=feats, force=force)


def assert_detected(inject, strat) -> None:
    bug = detects(inject, strat)
    assert bug is not None, f"the harness missed the injected bug in {BUDGET} examples"


# ---------------------------------------------------------------------------
# The injected bugs


def swap_first_two_arguments(mp) -> None:
    """Templates list the first two positional arguments of every call swapped."""
    from cascade_graph import cache
    from cascade_graph.lazy import CALL

    original = cache.build_template

    def build_template(root, key=None, order=None):
        t = original(root, key, order)
        for nd in t.nodes:
            if nd.kind == CALL and not nd.task.internal and len(nd.args) >= 2:
                a = list(nd.args)
                a[0], a[1] = a[1], a[0]
                nd.args = tuple(a)
        return t

    mp.setattr(cache, "build_template", build_template)


def cache_key_without_task(mp) -> None:
    """The tail-call cache keys templates by their layout, dropping the task identity."""
    from cascade_graph import cache
    from cascade_graph.template import canonical_nodes

    def key_and_order(root):
        order = canonical_nodes(root, False)
        index = {id(n): i for i, n in enumerate(order)}
        layout = tuple(
            (
                n.kind,
                len(n.args),
                tuple(n.kwargs),
                len(n.lits),
                tuple(index[id(c)] for c in n.children),
                n.spec is None,
                n.policy is None,
            )
            for n in order
        )
        return ("layout", layout), order

    mp.setattr(cache, "key_and_order", key_and_order)


def register_reused_while_live(mp) -> None:
    """The VM's register allocation hands a live register to a new value.

    A post-pass on every compiled ``Code``: find the first plain call or
    container build at ``p`` and a register ``r`` that holds a value still
    to be read at some ``q > p``; make ``p`` write ``r`` instead (and later
    readers of ``p``'s value read ``r``). What a linear-scan allocator that
    frees a register before its last read does.
    """
    import attrs

    from cascade_vm import bytecode as bc
    from cascade_vm import vm

    writers = {
        bc.CALL0,
        bc.CALL1,
        bc.CALL2,
        bc.CALLN,
        bc.CALL_KW,
        bc.BUILD,
        bc.BUILD_DICT,
    }
    original = vm.compile_template

    def clobbered(code):
        ops = list(code.ops)
        written_at: dict = {r: -1 for r in range(code.n_inputs)}  # inputs: live from the start
        for p, op in enumerate(ops):
            if op[0] in writers:
                d = op[1]
                for q in range(p + 1, len(ops)):
                    victims = [r for r in ops[q][3] if r != d and r in written_at]
                    if victims:
                        r = victims[0]
                        if any(ops[x][1] == r for x in range(p + 1, q)):
                            continue
                        ops[p] = (op[0], r) + tuple(op[2:])
                        for x in range(p + 1, len(ops)):
                            o = ops[x]
                            if d in o[3]:
                                ops[x] = o[:3] + (tuple(r if y == d else y for y in o[3]),) + o[4:]
                            if o[1] == d:
                                break
                        return attrs.evolve(code, ops=tuple(ops))
            written_at[op[1]] = p
        return code

    mp.setattr(vm, "compile_template", lambda t: clobbered(original(t)))


def vm_ignores_false_conditions(mp) -> None:
    """The VM runs a node whose run_if condition is false (an upstream skip still skips)."""
    from cascade_vm import vm

    original = vm._guard

    def guard(R, regs, node, skipped):
        reason = original(R, regs, node, skipped)
        return None if reason == "condition" else reason

    mp.setattr(vm, "_guard", guard)


def graph_ignores_false_conditions(mp) -> None:
    """The graph executor runs a node whose run_if condition is false."""
    from cascade_graph.executor import GraphRun

    original = GraphRun._skip_reason

    def skip_reason(self, inst, op):
        reason = original(self, inst, op)
        return None if reason == "condition" else reason

    mp.setattr(GraphRun, "_skip_reason", skip_reason)


def vm_router_takes_next_route(mp) -> None:
    """The VM's router hands the consumer the route after the selected one."""
    from cascade_vm import vm

    original = vm.select

    def select(ctx, node, selector, routes, shared):
        keys = list(routes)
        if selector in keys and len(keys) > 1:
            selector = keys[(keys.index(selector) + 1) % len(keys)]
        return original(ctx, node, selector, routes, shared)

    mp.setattr(vm, "select", select)


def graph_leaves_failed_task_behind(mp) -> None:
    """When an async call fails, the graph executor leaves a task whose exception
    nobody retrieves (asyncio logs it when the task is collected)."""
    import asyncio

    from cascade_graph import executor

    original = executor.call_async

    async def call_async(ctx, task, args, kwargs, parent):
        try:
            return await original(ctx, task, args, kwargs, parent)
        except Exception as exc:
            message = f"left behind after {exc}"

            async def forgotten():
                raise RuntimeError(message)

            asyncio.get_running_loop().create_task(forgotten())
            await asyncio.sleep(0)
            raise

    mp.setattr(executor, "call_async", call_async)


def tail_calls_forget_their_parent(mp) -> None:
    """The hot path hands back the continuation's parent off by one (the number of a
    call that has not run yet)."""
    from cascade_graph import hotpath
    from cascade_vm import vm

    original = hotpath.hot_loop

    async def hot_loop(ctx, lazy, parent=None):
        value, call = await original(ctx, lazy, parent)
        return value, (call + 1 if call else call)

    mp.setattr(vm, "hot_loop", hot_loop)


def first_tier_swaps_arguments(mp) -> None:
    """The first tier (a workflow's first sight, no listener) passes the first two
    positional arguments of a call with a lazy argument swapped."""
    from cascade_graph import firsttier

    original = firsttier._arguments

    def _arguments(lr, values):
        args, kwargs = original(lr, values)
        if len(args) >= 2:
            args = [args[1], args[0], *args[2:]]
        return args, kwargs

    mp.setattr(firsttier, "_arguments", _arguments)


# ---------------------------------------------------------------------------
# The tests


def test_detects_swapped_arguments():
    """Arguments passed in the wrong order change values and call logs."""
    assert_detected(swap_first_two_arguments, strategy())


def test_detects_cache_key_without_task_identity():
    """A tail-call cache keyed without the task runs one task's function for another."""
    assert_detected(cache_key_without_task, strategy(force=("loops", "mutual")))


def test_detects_register_reused_too_early():
    """A register freed before its last read feeds a stale value to a later call."""
    assert_detected(register_reused_while_live, strategy(force=("sharing", "dup")))


@pytest.mark.skipif("run_if" not in features.available(), reason="run_if not implemented")
def test_detects_vm_running_a_skipped_node():
    """A node skipped by its condition that runs anyway (VM)."""
    assert_detected(vm_ignores_false_conditions, strategy(force=("run_if",)))


@pytest.mark.skipif("run_if" not in features.available(), reason="run_if not implemented")
def test_detects_graph_running_a_skipped_node():
    """A node skipped by its condition that runs anyway (graph executor)."""
    assert_detected(graph_ignores_false_conditions, strategy(force=("run_if",)))


@pytest.mark.skipif("router" not in features.available(), reason="Router not implemented")
def test_detects_router_handing_the_wrong_branch():
    """A router that hands its consumer another branch's value."""
    assert_detected(vm_router_takes_next_route, strategy(force=("router",), allow=("router",)))


def test_detects_a_task_left_behind():
    """A task left behind with an unretrieved exception (asyncio logs it)."""
    assert_detected(graph_leaves_failed_task_behind, strategy(force=("async", "raises")))


def test_detects_a_wrong_parent_call():
    """A continuation whose calls name a parent that has not ended breaks the call
    structure of the events."""
    assert_detected(tail_calls_forget_their_parent, strategy(force=("loops", "mutual")))


def test_detects_the_first_tier_swapping_arguments():
    """The quiet configurations run the first tier: a bug there is seen."""
    assert_detected(first_tier_swaps_arguments, strategy())


def test_injections_are_undone():
    """After the injections, a plain workflow runs right again (nothing leaked)."""
    from cascade_graph import cache
    from cascade_vm import compiler, vm

    assert cache.build_template.__module__ == "cascade_graph.template"
    assert cache.key_and_order.__module__ == "cascade_graph.template"
    assert vm.compile_template is compiler.compile_template
    assert vm._guard.__module__ == "cascade_vm.vm"
