"""The compiler (SPEC section 5): template -> flat instruction list over registers."""

from __future__ import annotations

import io

import pytest

from cascade_graph import Param, inject, task
from cascade_graph.template import build_template
from cascade_vm import bytecode as bc
from cascade_vm import run
from cascade_vm.compiler import compile_template
from cascade_vm.vm import compile_target, disassemble


@task
def inc(x):
    return x + 1


@task
def pair(a, b):
    return (a, b)


@task
def add(a, b):
    return a + b


@task
def total(*xs):
    return sum(xs)


@task
async def ainc(x):
    return x + 1


def _code(target):
    return compile_target(target)


def _opnames(code):
    return [i.opname for i in code.instructions]


def _chain(n, start=0):
    node = inc(start)
    for _ in range(n - 1):
        node = inc(node)
    return node


def test_chain_reuses_registers():
    """A 1,000-node chain compiles to a handful of registers."""
    code = _code(_chain(1000))
    assert code.n_inputs == 1
    assert code.n_regs <= 4


def test_fanout_registers_bounded_by_width():
    """Independent calls feeding one sum need one register per live value, no more."""
    code = _code(total(*[inc(i) for i in range(50)]))
    assert code.n_inputs == 50
    assert code.n_regs <= 50 + 51


def test_constant_pool_dedups_tasks():
    """A task used a thousand times is one constant."""
    code = _code(_chain(1000))
    tasks = [c for c in code.consts if c is inc]
    assert len(tasks) == 1
    assert len(code.consts) <= 3


def test_constant_pool_keeps_distinct_tasks():
    """Different tasks are different constants."""
    code = _code(add(inc(1), ainc(2)))
    assert inc in code.consts and add in code.consts


def test_input_registers_are_template_inputs():
    """Registers 0..n_inputs-1 are the template's inputs."""
    root = add(add(1, 2), inc(3))
    t = build_template(root)
    code = compile_template(t)
    assert code.n_inputs == t.n_inputs == 3
    reads = {r for ins in code.instructions for r in ins.regs}
    assert set(range(code.n_inputs)) <= reads


def test_inputs_never_overwritten():
    """No instruction writes an input register (a frame can be rebound)."""
    code = _code(add(add(1, inc(2)), total(3, inc(4), [5, inc(6)])))
    assert all(ins.a >= code.n_inputs for ins in code.instructions
               if ins.opcode != bc.RET)


def test_ends_with_ret():
    """The program's last instruction is RET."""
    assert _code(add(1, inc(2))).instructions[-1].opname == "RET"


def test_root_call_flagged_tail():
    """The root call is flagged tail (a tail call there reuses the frame)."""
    code = _code(add(inc(1), 2))
    calls = [i for i in code.instructions if i.opname == "CALL"]
    assert [i.tail for i in calls] == [False, True]


def test_plain_keyword_call_is_a_positional_call_of_its_keyword_caller():
    """A keyword call of literals and lazies compiles to CALL (the task's keyword caller
    takes its values in order), and so does one with containers (built first, one level
    deep or nested); one with an inline policy to CALL_KW."""
    code = _code(add(a=inc(1), b=2))
    assert "CALL_KW" not in _opnames(code)
    assert any(i.opname == "CALL" and "kw=['a', 'b']" in i.argrepr for i in code.instructions)
    assert _opnames(_code(add(a=inc(1), b=[inc(2)]))) == ["CALL", "CALL", "BUILD", "CALL", "RET"]
    nested = add(a=inc(1), b={"k": [inc(2), 1]})
    assert _opnames(_code(nested)) == ["CALL", "CALL", "BUILD", "BUILD_DICT", "CALL", "RET"]
    assert run(pair(1, b=[inc(2), 5])) == (1, [3, 5])
    assert run(pair(b={"k": [inc(2), 1]}, a=inc(0))) == (1, {"k": [3, 1]})
    assert "CALL_KW" in _opnames(_code(add(a=inc(1), b=[inc(2)]).with_timeout(5)))
    assert run(add(a=inc(1), b=2)) == 4


def test_container_argument_builds():
    """Container arguments holding lazies compile to BUILD / BUILD_DICT."""
    names = _opnames(_code(len_of([inc(1), {"k": inc(2)}])))
    assert "BUILD" in names and "BUILD_DICT" in names


@task
def len_of(x):
    return len(x)


def test_independent_async_calls_started_together():
    """Two independent async calls are both STARTed before the first AWAIT."""
    names = _opnames(_code(add(ainc(1), ainc(2))))
    assert names.count("START") == 2
    assert names.index("AWAIT") > max(i for i, n in enumerate(names) if n == "START")


def test_lone_async_call_is_fused():
    """An async call with nothing to overlap compiles to CALL_AWAIT (no task)."""
    names = _opnames(_code(inc(ainc(1))))
    assert "CALL_AWAIT" in names and "START" not in names


def test_policy_call_uses_invoke():
    """A call whose retry pauses between attempts, or that is cached, goes through
    INVOKE; a sync call with an inline policy (retry with no pause, timeout) is a
    general sync call (CALL_KW, calls.call_inline), in the one-pass compiler too."""
    for lazy in (inc(1).with_retry(2, delay=0.5), inc(1).with_cache()):
        names = _opnames(_code(inc(lazy)))
        assert "INVOKE" in names or "INVOKE_START" in names
    for lazy in (inc(1).with_retry(2), inc(1).with_timeout(5)):
        names = _opnames(_code(inc(lazy)))
        assert "INVOKE" not in names and "INVOKE_START" not in names and "CALL_KW" in names
        assert run(inc(lazy)) == 3


def test_injection_loads_marker():
    """An injected resource argument is a constant marker and the call goes through invoke."""

    @task
    def use(x, db=inject("db")):
        return x

    names = _opnames(_code(inc(use(1))))
    assert "INVOKE" in names


def test_gated_node_has_guard():
    """A run_if call is preceded by a GUARD that jumps past it."""
    code = _code(inc(inc(1).run_if(inc(0))))
    guards = [i for i in code.instructions if i.opname == "GUARD"]
    assert len(guards) == 1
    assert guards[0].n > guards[0].offset


def test_param_loaded_first():
    """Params are loaded before any call, so a missing one fails before calls."""
    code = _code(add(inc(1), Param("p", default=1)))
    assert code.instructions[0].opname == "LOADV"


@task
def inc_too(x):
    return x + 1


def test_chain_10k_compiles_flat():
    """A 10,000-node chain of two alternating tasks (no run of one task's links)
    compiles to one instruction per node plus RET, in few registers."""
    node = inc(0)
    for k in range(9_999):
        node = inc_too(node) if k % 2 == 0 else inc(node)
    code = _code(node)
    assert len(code.instructions) == 10_001
    assert code.n_regs <= 4
    assert run(node) == 10_000


def test_chain_of_one_task_is_one_run_node():
    """A chain of one task's links is one run node (repeat.py): the base call, the
    run's call and RET, whatever the length; the value counts every link."""
    for n in (3, 10_000):
        code = _code(_chain(n))
        assert [i.opname for i in code.instructions] == ["CALL", "CALL", "RET"]
        assert "links of inc" in repr(code.consts)
        assert run(_chain(n)) == n


def test_fanout_10k_compiles_flat():
    """A 10,000-wide fan-out compiles to one instruction per node plus RET."""
    code = _code(total(*[inc(i) for i in range(10_000)]))
    assert len(code.instructions) == 10_002


def test_dis_lists_opcodes():
    """dis output lists each instruction's opcode name, registers and constants."""
    out = io.StringIO()
    bc.dis(_code(add(ainc(1), ainc(2))), file=out)
    text = out.getvalue()
    for name in ("START", "AWAIT", "CALL", "RET"):
        assert name in text
    assert "r0" in text and "k0" in text
    assert "constants" in text


def test_disassemble_target_to_file():
    """disassemble() writes the listing of a target to the given file."""
    out = io.StringIO()
    disassemble(add(inc(1), 2), file=out)
    text = out.getvalue()
    assert "CALL" in text and "RET" in text and "inc" in text


def test_disassemble_flat_target_notes_hot_path():
    """A flat target's listing says it runs on the hot path."""
    out = io.StringIO()
    disassemble(inc(1), file=out)
    assert "hot path" in out.getvalue()


def test_compile_target_without_lazy_is_type_error():
    """Compiling a value with nothing lazy is a TypeError."""
    with pytest.raises(TypeError):
        compile_target([1, 2])


def test_compiled_chain_runs():
    """The compiled 1,000-node chain computes the right value on the VM."""
    assert run(_chain(1000), engine="vm") == 1000


def test_shared_node_read_twice_compiles():
    """A node read twice by one instruction (add(x, x)) compiles."""
    x = inc(1)
    code = _code(add(x, x))
    call = [i for i in code.instructions if i.opname == "CALL"][-1]
    assert call.regs[0] == call.regs[1]


def test_shared_node_read_by_several_instructions_stays_live():
    """A shared node's register is not reused while a later reader needs it."""
    x = inc(1)
    assert run(add(add(x, inc(10)), add(inc(20), x)), engine="vm") == 2 + 11 + 21 + 2


@task
def pack(*parts):
    return parts


def _fused_cases():
    a = inc(1)
    nested = pack([inc(2), (inc(3), [4, inc(5)])], {"k": inc(6), "lit": 7}, 8)
    shared_in_args = pack([a], a)  # one node read by a container and by the call
    return [
        (nested, ([3, (4, [4, 6])], {"k": 7, "lit": 7}, 8)),
        (shared_in_args, ([2], 2)),
        ([inc(1), {"x": inc(2)}, (3, inc(3))], [2, {"x": 3}, (3, 4)]),
    ]


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_container_trees_run_fused(case, engine):
    """Trees whose calls take containers of lazies compile in the fused pass
    (containers built into temporaries) and give the same values on both engines."""
    target, expected = _fused_cases()[case]
    code = _code(target)
    assert callable(code.raw)  # the fused compiler made it
    assert "BUILD" in _opnames(code)
    assert run(target, engine=engine) == expected


def test_fused_fanout_of_list_registers():
    """A 2,000-wide fan-out of two-link chains into one list argument (not a batch:
    its items are not flat calls) needs one register per item, a temporary for
    the list and the call: temporaries are reused, not piled up."""
    code = _code(pack([inc(inc(i)) for i in range(2000)]))
    assert callable(code.raw)
    assert _opnames(code).count("BUILD") == 1
    assert code.n_regs <= 2000 + 2000 + 2
    assert run(pack([inc(inc(i)) for i in range(2000)])) == (list(range(2, 2002)),)


def test_fanout_of_flat_calls_compiles_to_two_calls():
    """A list of flat calls of one task is one batch node (batch.py): the code is
    the batch's call and the consumer's, however long the list."""
    for n in (2, 2000):
        code = _code(pack([inc(i) for i in range(n)]))
        assert _opnames(code) == ["CALL", "CALL", "RET"]
        assert code.n_inputs == 1
