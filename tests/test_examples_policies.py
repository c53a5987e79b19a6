"""The policy examples (policies, router, map_reduce, resources, cached) run as users run them.

Each example goes through the real command line in a subprocess
(``python -m cascade_vm run examples/X.py``) on both engines: exit 0, nothing
on stderr, the same stdout on the VM and the graph executor, and the output
the example's docstring promises. The ``__main__`` blocks (``python
examples/X.py``), which show ``on_event`` from Python, run too. Parameter
variants and failures go through ``cascade_vm.cli.main`` in-process, which is
faster and behaves the same.

The subprocesses are started together from a thread pool (each one mostly
waits on interpreter start-up), so the whole file takes a few seconds.
"""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cascade_vm.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("policies", "router", "map_reduce", "resources", "cached")
ENGINES = ("vm", "graph")
#: The engine each ``__main__`` block runs on (one run each keeps the file fast;
#: the command-line runs cover both engines for every example).
SCRIPT_ENGINE = {"policies": "vm", "router": "graph", "map_reduce": "vm",
                 "resources": "graph", "cached": "vm"}


def _env(cache_file: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CASCADE_EXAMPLE_REGION"}
    env["CASCADE_EXAMPLE_CACHE"] = str(cache_file)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _proc(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _cache_rows(path: Path) -> list:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT key, expires FROM cascade_entries").fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every subprocess of this file, run concurrently: name -> result.

    ``("cli", example, engine)`` is the command line; ``("script", example)``
    the example's ``__main__`` block, on ``SCRIPT_ENGINE[example]``. The cached example's two CLI
    runs share one cache file and run one after the other (the VM first), so
    the graph run must find every entry the VM run wrote.
    """
    tmp = tmp_path_factory.mktemp("examples")
    jobs = {}

    def cli_job(example, engine, cache_file):
        return lambda: _proc(["-m", "cascade_vm", "run", f"examples/{example}.py",
                              "--engine", engine], _env(cache_file))

    def script_job(example):
        cache_file = tmp / f"script-{example}.sqlite"
        return lambda: _proc([f"examples/{example}.py", SCRIPT_ENGINE[example]],
                             _env(cache_file))

    def cached_pair():
        shared = tmp / "cli-cached.sqlite"
        first = cli_job("cached", "vm", shared)()
        after_first = _cache_rows(shared)
        second = cli_job("cached", "graph", shared)()
        return {"vm": first, "graph": second, "rows_after_vm": after_first,
                "rows_after_graph": _cache_rows(shared)}

    for example in EXAMPLES:
        jobs[("script", example)] = script_job(example)
        for engine in ENGINES:
            if example != "cached":
                jobs[("cli", example, engine)] = cli_job(
                    example, engine, tmp / f"cli-{example}-{engine}.sqlite")
    jobs["cached_pair"] = cached_pair
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: f.result() for name, f in futures.items()}
    pair = results.pop("cached_pair")
    for engine in ENGINES:
        results[("cli", "cached", engine)] = pair[engine]
    results["cached_rows"] = (pair["rows_after_vm"], pair["rows_after_graph"])
    return results


def cli_output(runs, example) -> str:
    """The example's stdout, after checking both engines exit 0 with the same output."""
    out = {}
    for engine in ENGINES:
        proc = runs[("cli", example, engine)]
        assert proc.returncode == 0, f"{example} on {engine}: {proc.stderr}"
        assert proc.stderr == "", f"{example} on {engine}: {proc.stderr}"
        out[engine] = proc.stdout
    assert out["vm"].strip()
    assert out["vm"] == out["graph"], example
    return out["vm"]


def in_process(capsys, example: str, *args: str) -> tuple[int, str, str]:
    code = cli_main(["run", str(ROOT / "examples" / f"{example}.py"), *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- every example, both engines ------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_cli_same_output_on_both_engines(runs, example):
    cli_output(runs, example)


@pytest.mark.parametrize("example", EXAMPLES)
def test_main_block_runs(runs, example):
    """``python examples/X.py ENGINE`` (the on_event demo) exits 0 and prints something."""
    proc = runs[("script", example)]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip()


@pytest.mark.parametrize("example", EXAMPLES)
def test_docstring_says_how_to_run(example):
    text = (ROOT / "examples" / f"{example}.py").read_text()
    doc = ast.get_docstring(ast.parse(text))
    assert doc and f"python -m cascade_vm run examples/{example}.py" in doc
    assert "--engine graph" in doc
    assert "\nmain = " in text
    assert 'if __name__ == "__main__":' in text


# -- policies -----------------------------------------------------------------


def test_policies_output(runs):
    result = ast.literal_eval(cli_output(runs, "policies"))
    assert result["changelog"]["attempts"] == 3  # two dropped requests, then an answer
    assert result["health"] == {"status": "healthy", "region": "eu-west", "pings": 2}
    assert result["tagged_latest"] == "docker tag service:1.4.0 service:latest"
    assert result["rollback"] is None  # lazy condition false
    assert result["oncall"] is None  # skipped upstream
    assert result["newsletter"] is None  # value condition false
    assert result["timeline"] == ["backup", "migrate", "deploy", "health check"]


def test_policies_events_from_python(runs):
    out = runs[("script", "policies")].stdout
    assert out.count("fetch_changelog: attempt") == 2
    assert "check_health failed: TimeoutError" in out
    assert "page_oncall skipped (upstream)" in out
    assert "send_newsletter skipped (condition)" in out
    assert "rollback skipped (condition)" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_policies_params(capsys, monkeypatch, engine):
    monkeypatch.setenv("CASCADE_EXAMPLE_REGION", "us-east")
    code, out, err = in_process(capsys, "policies", "--engine", engine, "--json",
                                "-p", "live=no", "-p", "version=2.0.0-rc1")
    assert code == 0, err
    result = json.loads(out)
    assert result["deployed"] is None and result["health"] is None
    assert result["timeline"] is None and result["tagged_latest"] is None
    assert result["changelog"]["version"] == "2.0.0-rc1"
    code, out, err = in_process(capsys, "policies", "--engine", engine, "--json")
    assert code == 0, err
    assert json.loads(out)["deployed"]["region"] == "us-east"  # Env


@pytest.mark.parametrize("engine", ENGINES)
def test_policies_retries_exhausted(capsys, engine):
    code, out, err = in_process(capsys, "policies", "--engine", engine, "-p", "flaky=4")
    assert code == 1
    assert out == ""
    assert err.splitlines()[0] == ("error: task 'fetch_changelog' failed: ConnectionError: "
                                   "changelog server dropped request 4")


# -- router -------------------------------------------------------------------


def test_router_output(runs):
    lines = cli_output(runs, "router").splitlines()
    assert lines == [
        ("#101: Hi there! Done: refunded 12.00 EUR on the pro plan. "
         "See also KB-3: Understanding your invoice."),
        "#102: Hi there! Done: filed BUG-102 for engineering. See also KB-12: Exporting your data.",
        "#103: Hi there! This should help: KB-7: Changing your password.",
        "#104: no reply (spam)",
    ]


def test_router_pruned_routes_do_not_run(runs):
    out = runs[("script", "router")].stdout
    assert ("ran:    classify x4, compose x4, discard x1, file_issue x1, lookup_account x1, "
            "refund x1, report x1, suggest_article x4") in out
    assert "pruned: discard x3, file_issue x3, refund x3" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_router_param_selector(capsys, engine):
    code, out, err = in_process(capsys, "router", "--engine", engine, "-p", "tone=formal")
    assert code == 0, err
    assert out.count("Dear customer!") == 3
    code, out, err = in_process(capsys, "router", "--engine", engine, "-p", "tone=rude")
    assert code == 2  # a key chosen by a parameter is bad input, found when the run starts
    assert err.splitlines() == [
        "error: parameter 'tone' is 'rude', which selects no route of its Router; "
        "known routes: 'friendly', 'formal'"]


# -- map_reduce ---------------------------------------------------------------


def test_map_reduce_output(runs):
    result = ast.literal_eval(cli_output(runs, "map_reduce"))
    index = result["index"]
    assert index["pages"] == 5
    assert index["requests"] == 7  # two flaky pages fetched twice: retry is per item
    assert [url for url, _ in index["contents"]] == [
        "docs/", "docs/install", "docs/tutorial", "docs/faq", "docs/api"]  # order kept
    assert result["typos"] is None  # the gated map did not run


@pytest.mark.parametrize("engine", ENGINES)
def test_map_reduce_params(capsys, engine):
    code, out, err = in_process(capsys, "map_reduce", "--engine", engine, "--json",
                                "-p", "site=blog", "-p", "top=2", "-p", "spellcheck=yes")
    assert code == 0, err
    result = json.loads(out)
    assert result["typos"] == [[], [], ["tankyou -> thank you"]]
    assert len(result["index"]["top_words"]) == 2
    assert result["index"]["requests"] == 4


# -- resources ----------------------------------------------------------------


def test_resources_output(runs):
    result = ast.literal_eval(cli_output(runs, "resources"))
    assert result == {
        "schema_version": 4,
        "tables": {"orders": 1, "users": 2},
        "spans": [1, 2, 1, 3, 0],  # task scope: one per call of the tail-call loop
        "lifecycle": ["database: connected", "lock: acquired"],  # run scope: set up once
    }


def test_resources_teardown_order_and_override(runs):
    out = runs[("script", "resources")].stdout
    assert out.count("set up span (task scope)") == 5
    assert out.count("tore down span (task scope)") == 5
    assert ("  tore down migration_lock (run scope)\n  tore down database (run scope)\n") in out
    assert ("lifecycle after the run: ['database: connected', 'lock: acquired', "
            "'lock: released', 'database: closed']") in out
    assert "with an override, lifecycle: ['lock: acquired', 'lock: released']" in out
    assert "my connection is still open: 1" in out


# -- cached -------------------------------------------------------------------


def test_cached_output_and_hits_across_processes(runs):
    out = cli_output(runs, "cached")
    assert out.splitlines()[-1] == "total: 336.10 EUR"
    after_vm, after_graph = runs["cached_rows"]
    assert len(after_vm) == 3  # one entry per distinct (currency, day)
    # a hit does not write: the graph run (another process) found every entry
    assert after_graph == after_vm


def test_cached_second_run_hits(runs):
    out = runs[("script", "cached")].stdout
    assert "run 1: fetch_rate ran 3x, 0 cache hits; convert ran 4x, 0 cache hits" in out
    assert "run 2: fetch_rate ran 0x, 3 cache hits; convert ran 0x, 4 cache hits" in out
