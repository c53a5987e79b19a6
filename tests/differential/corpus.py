"""The corpus: failing (and hand-written) workflows kept as JSON.

Every file ``corpus/<name>.json`` holds ``{"program": <workflow JSON>, ...}``.
Saved failures are named by a short content hash; hand-written cases are
``seed_*`` (bug classes the harness must cover) and ``found_*`` (curated
minimal forms of disagreements the fuzzer found). Optional fields:

- ``"title"``, ``"why"``: what the case is about, what bug it guards against;
- ``"expect"``: the value's canonical form (``library.canon``), checked
  against the reference, so a hand-written case cannot silently change
  meaning;
- ``"problems"``: the first lines of the disagreement that saved it;
- ``"found_with"``, ``"fixed_in"``: engine commits;
- ``"xfail"``: a reason; the replay is then expected to fail for now (a
  known open bug the lead chose not to block on).

``test_differential.py`` replays every file as an ordinary test.
"""

from __future__ import annotations

import json
import pathlib

from . import workflow
from .workflow import Program

CORPUS = pathlib.Path(__file__).with_name("corpus")


def save(
    program: Program, problems: list[str] | None = None, title: str | None = None
) -> pathlib.Path:
    """Write ``program`` to the corpus (file name: a short content hash); return the path."""
    CORPUS.mkdir(exist_ok=True)
    path = CORPUS / f"{workflow.digest(program)}.json"
    doc: dict = {}
    if title:
        doc["title"] = title
    if problems:
        doc["problems"] = [p.splitlines()[0][:300] for p in problems[:6]]
    doc["program"] = workflow.to_json(program)
    path.write_text(dumps(doc))
    return path


def dumps(doc: dict) -> str:
    """One key per line at the top, the program's parts compact (easy to read and diff)."""
    lines = []
    for k, v in doc.items():
        if k == "program":
            inner = ",\n".join(f"  {json.dumps(pk)}: {json.dumps(pv)}" for pk, pv in v.items())
            lines.append(f' "program": {{\n{inner}\n }}')
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load(path: pathlib.Path) -> tuple[Program, dict]:
    doc = json.loads(path.read_text())
    return workflow.from_json(doc["program"]), doc


def files() -> list[pathlib.Path]:
    return sorted(CORPUS.glob("*.json"))
