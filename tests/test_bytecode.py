"""The instruction set, ``Code`` records and the disassembler (SPEC section 5)."""

from __future__ import annotations

import io

import attrs
import pytest

from cascade_graph import task
from cascade_vm import bytecode as bc
from cascade_vm.vm import compile_target


@task
def inc(x):
    return x + 1


@task
async def ainc(x):
    return x + 1


OPCODES = [v for k, v in vars(bc).items() if k.isupper() and isinstance(v, int)
           and k in bc.OPNAMES.values()]


def test_every_opcode_has_a_name():
    """OPNAMES names every opcode constant, and names are unique."""
    assert sorted(bc.OPNAMES) == sorted(OPCODES)
    assert len(set(bc.OPNAMES.values())) == len(bc.OPNAMES)
    for code, name in bc.OPNAMES.items():
        assert getattr(bc, name) == code


def test_opcode_table_documents_every_opcode():
    """The module's opcode table has a row for each opcode."""
    doc = bc.__doc__
    table = doc[doc.index("opcode"):]
    rows = {line.split()[0] for line in table.splitlines() if line.strip()
            and line.split()[0].isupper()}
    assert set(bc.OPNAMES.values()) <= rows


def test_instruction_is_immutable():
    """Instruction records cannot be changed."""
    ins = compile_target(inc(inc(1))).instructions[0]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ins.a = 5


def test_instruction_offsets_are_indices():
    """Each instruction's offset is its index in the list."""
    code = compile_target(inc(inc(inc(1))))
    assert [i.offset for i in code.instructions] == list(range(len(code.instructions)))


def test_instruction_opname_matches_opcode():
    """opname is OPNAMES[opcode]."""
    code = compile_target(inc(ainc(inc(1))))
    assert all(bc.OPNAMES[i.opcode] == i.opname for i in code.instructions)


def test_get_instructions_iterates_records():
    """get_instructions yields the Instruction records in order."""
    code = compile_target(inc(inc(1)))
    assert list(bc.get_instructions(code)) == list(code.instructions)


def test_lowered_ops_parallel_instructions():
    """Code.ops has one lowered tuple per instruction."""
    code = compile_target(inc(ainc(inc(1))))
    assert len(code.ops) == len(code.instructions)
    assert all(type(op) is tuple for op in code.ops)


def test_fill_pads_registers():
    """Binding inputs plus fill gives a full register file."""
    code = compile_target(inc(inc(1)))
    assert code.n_inputs + len(code.fill) == code.n_regs


def test_format_instruction_shows_operands():
    """A formatted instruction shows offset, name and registers."""
    code = compile_target(inc(inc(1)))
    line = bc.format_instruction(code.instructions[0])
    assert "CALL" in line and "r" in line and line.lstrip().startswith("0")


def test_format_guard_shows_jump():
    """A GUARD line shows its jump target."""
    code = compile_target(inc(inc(1).run_if(inc(0))))
    guard = next(i for i in code.instructions if i.opname == "GUARD")
    assert f"->{guard.n}" in bc.format_instruction(guard)


def test_dis_header_counts():
    """The dis header states nodes, inputs, registers and constants."""
    code = compile_target(inc(inc(1)))
    out = io.StringIO()
    bc.dis(code, file=out)
    header = out.getvalue().splitlines()[0]
    assert f"{len(code.template.nodes)} node" in header
    assert f"{code.n_regs} register" in header
    assert f"{len(code.consts)} constant" in header


def test_dis_one_line_per_instruction():
    """dis prints one line per instruction after the header."""
    code = compile_target(inc(ainc(inc(1))))
    out = io.StringIO()
    bc.dis(code, file=out)
    lines = [ln for ln in out.getvalue().splitlines() if not ln.startswith(";")]
    assert len(lines) == len(code.instructions)


def test_dis_defaults_to_stdout(capsys):
    """dis without file= prints to stdout."""
    bc.dis(compile_target(inc(inc(1))))
    assert "RET" in capsys.readouterr().out


def test_dis_names_task_constants():
    """Task constants are shown by name."""
    out = io.StringIO()
    bc.dis(compile_target(inc(inc(1))), file=out)
    assert "task" in out.getvalue() and "inc" in out.getvalue()
