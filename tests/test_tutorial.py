"""The documents' code runs as shown: docs/tutorial.md (every block) and README.md.

Blocks are taken in document order, in one namespace per document, on each
engine in turn (``run``/``arun`` default to that engine while the document
runs; a console command ``... cascade_vm run FLOW ...`` gets ``--engine``):

- a ``python`` block whose first line is ``# file: NAME`` is written to NAME
  in the working directory (a fresh temporary directory, also the current
  directory and on ``sys.path`` while the document runs);
- any other ``python`` block is executed; when the next block is a ``text``
  block, that is exactly what the python block must print;
- a ``console`` block holds ``$ COMMAND`` lines, each followed by what it
  prints (stdout and stderr together); ``python`` is this environment's
  Python, ``.venv/bin/python`` too, and a line ``...`` stands for any lines.

Any other block fails the tutorial's test (every block of it runs); the
README may hold others (the make commands, the layout), which are skipped.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import cascade_vm

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
README = ROOT / "README.md"
ENGINES = ("vm", "graph")
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where the block starts in the document (1-based)


def blocks_of(path: Path) -> list[Block]:
    source = path.read_text()
    return [Block(m.group(1), m.group(2), source.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(source)]


def matches(expected: list[str], got: list[str]) -> bool:
    """Whether ``got`` is ``expected``, a ``...`` line standing for any lines."""
    if not expected:
        return not got
    if expected[0] == "...":
        return any(matches(expected[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and got[0] == expected[0] and matches(expected[1:], got[1:])


class Document:
    """Runs one document's blocks in order, on one engine, in ``workdir``."""

    def __init__(self, path: Path, engine: str, workdir: Path, strict: bool):
        self.path, self.engine, self.workdir, self.strict = path, engine, workdir, strict
        self.namespace: dict = {"__name__": path.stem}

    def where(self, block: Block) -> str:
        return f"{self.path.name}, block at line {block.line}"

    def run(self) -> None:
        blocks = blocks_of(self.path)
        assert blocks, self.path
        i = 0
        while i < len(blocks):
            block = blocks[i]
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            if block.lang == "python":
                shown = following.text if following and following.lang == "text" else None
                self.python(block, shown)
                i += 2 if shown is not None else 1
                continue
            if block.lang == "console":
                self.console(block)
            else:
                assert not self.strict, f"{self.where(block)}: a {block.lang or 'plain'} block " \
                    "that no test runs (use python, text after python, or console)"
            i += 1

    def python(self, block: Block, shown: str | None) -> None:
        first = block.text.splitlines()[0] if block.text else ""
        if first.startswith("# file: "):
            (self.workdir / first.removeprefix("# file: ").strip()).write_text(block.text)
            return
        out = io.StringIO()
        code = compile(block.text, f"{self.path.name}:{block.line}", "exec")
        with contextlib.redirect_stdout(out):
            exec(code, self.namespace)
        if shown is not None:
            assert out.getvalue() == shown, f"{self.where(block)} printed:\n{out.getvalue()}"

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                assert commands, f"{self.where(block)}: output before any '$ ' command"
                commands[-1][1].append(line)
        for command, expected in commands:
            got = self.shell(command)
            assert matches(expected, got), (
                f"{self.where(block)}: $ {command}\nprinted:\n" + "\n".join(got))

    def shell(self, command: str) -> list[str]:
        if self.engine != "vm" and "--engine" not in command:
            command = re.sub(r"(cascade_vm run [^\s;|&]+)", rf"\1 --engine {self.engine}", command)
        env = {**os.environ, "COLUMNS": "80",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(["bash", "-c", command], cwd=self.workdir, env=env, timeout=300,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return proc.stdout.splitlines()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh directory, current and importable, with ``.venv`` standing for this venv."""
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # modules the document imported from tmp_path
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def on_engine(monkeypatch):
    """Make ``run``/``arun`` default to one engine while a document runs."""
    real_run, real_arun = cascade_vm.run, cascade_vm.arun

    def use(engine: str) -> None:
        def run(target, **options):
            options.setdefault("engine", engine)
            return real_run(target, **options)

        async def arun(target, **options):
            options.setdefault("engine", engine)
            return await real_arun(target, **options)

        monkeypatch.setattr(cascade_vm, "run", run)
        monkeypatch.setattr(cascade_vm, "arun", arun)

    return use


@pytest.mark.parametrize("engine", ENGINES)
def test_tutorial(engine, workdir, on_engine):
    on_engine(engine)
    Document(TUTORIAL, engine, workdir, strict=True).run()


@pytest.mark.parametrize("engine", ENGINES)
def test_readme(engine, workdir, on_engine):
    on_engine(engine)
    Document(README, engine, workdir, strict=False).run()


def test_readme_quick_start_is_make_run_and_make_test():
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [b.text for b in blocks_of(README) if b.text.strip() and b.text in section]
    assert len(commands) == 1
    lines = [line.split("#")[0].strip() for line in commands[0].splitlines()]
    assert lines == ["make run", "make test"]


def test_matches_handles_ellipsis():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert not matches(["a"], ["a", "b"])
