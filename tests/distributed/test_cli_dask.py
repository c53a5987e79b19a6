"""The command line on Dask: ``--workers N`` and ``--scheduler ADDRESS`` (SPEC sections 6, 8).

The end-to-end test starts a Dask scheduler and two workers as a user would
(``dask scheduler``, ``dask worker``: separate processes, each in its own
temporary directory, on 127.0.0.1 and a free port), runs a flow file that
lives in yet another directory through the CLI with ``--scheduler``, and
shuts them down. The workers never saw the flow: the CLI sends it to them,
with the module it imports from its folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cascade_vm.cli import main

from .conftest import distributed

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")

FLOW = '''
"""A flow its workers never saw: they get it from the CLI."""
import os
from cascade_graph import Param, task
from flow_neighbour import square

N = Param("n", default=6, type=int)


@task
def sq(i):
    return (square(i), os.getpid())


@task
def walk(i, acc):
    """A tail loop whose steps run on the workers."""
    return acc if i <= 0 else walk(i - 1, acc + i)


@task(local=True)
def report(pairs, walked):
    """In the driver: the squares were computed elsewhere."""
    return {"sum": sum(v for v, _ in pairs), "pids": len({p for _, p in pairs}) > 0,
            "walked": walked, "driver": os.getpid() != pairs[0][1]}


@task
def fan(n):
    return report([sq(i) for i in range(n)], walk(n, 0))


main = fan(N)
'''

NEIGHBOUR = '''
def square(i):
    return i * i
'''

SLEEPY = '''
import time
from cascade_graph import task


@task
def nap(i):
    time.sleep(4)
    return i


@task
def total(xs):
    return sum(xs)


main = total([nap(i) for i in range(2)] + [nap(9)])
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def hand_started(tmp_path_factory):
    """A scheduler and two workers started by hand; yields the scheduler's address."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        home = tmp_path_factory.mktemp("scheduler")
        procs.append(_start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--dashboard-address", ":0", "--no-show"], home,
                            home / "log.txt"))
        for i in range(2):
            home = tmp_path_factory.mktemp(f"worker{i}")
            procs.append(_start([str(DASK), "worker", address, "--nthreads", "1",
                                 "--nworkers", "1", "--local-directory", str(home),
                                 "--dashboard-address", ":0"], home, home / "log.txt"))
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            _stop(p)


def _cli(*args, cwd=ROOT, timeout=180):
    return subprocess.run([sys.executable, "-m", "cascade_vm", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _flow_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "far_flow.py").write_text(textwrap.dedent(FLOW))
    (folder / "flow_neighbour.py").write_text(textwrap.dedent(NEIGHBOUR))
    return folder


@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_a_flow_runs_on_workers_started_by_hand(hand_started, tmp_path, engine):
    folder = _flow_dir(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = _cli("run", str(folder / "far_flow.py"), "--scheduler", hand_started, "-p", "n=5",
                "--engine", engine, "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        '{"sum": 30, "pids": true, "walked": 15, "driver": true}')
    with distributed.Client(hand_started) as c:  # nothing of the run left on the cluster
        assert c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0


def test_ctrl_c_cancels_the_runs_futures(hand_started, tmp_path):
    flow = tmp_path / "sleepy_flow.py"
    flow.write_text(textwrap.dedent(SLEEPY))
    proc = subprocess.Popen([sys.executable, "-m", "cascade_vm", "run", str(flow),
                             "--scheduler", hand_started], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with distributed.Client(hand_started) as c:
            deadline = time.monotonic() + 60
            while not any(c.processing().values()):
                assert time.monotonic() < deadline, "no call reached the workers"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            assert err.strip().splitlines()[-1] == "interrupted"
            deadline = time.monotonic() + 10
            while c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
                assert time.monotonic() < deadline, "the run's keys stayed on the scheduler"
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    time.sleep(4)  # the cancelled calls' threads end (a worker cannot stop them)


def test_workers_n_starts_and_closes_a_local_cluster(tmp_path):
    folder = _flow_dir(tmp_path)
    proc = _cli("run", str(folder / "far_flow.py"), "--workers", "2", "-p", "n=3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '{"sum": 5, "pids": true, "walked": 6, "driver": true}'


def test_a_task_failure_on_the_cluster_exits_1_naming_the_task(hand_started, tmp_path):
    flow = tmp_path / "bad_flow.py"
    flow.write_text("from cascade_graph import task\n\n\n@task\ndef bad(x):\n"
                    "    raise KeyError(x)\n\n\nmain = bad('gone')\n")
    proc = _cli("run", str(flow), "--scheduler", hand_started)
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first == "error: task 'bad' failed: KeyError: 'gone'"
    assert "raise KeyError(x)" in proc.stderr  # the user's traceback, from the worker


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers needs a number of worker processes >= 1, got 0"),
    (["--workers", "2", "--scheduler", "tcp://x:1"], "not allowed with argument"),
])
def test_bad_cluster_options_exit_2(argv, message, capsys):
    flow = str(ROOT / "tests" / "flows" / "remote_flows.py")
    assert main(["run", flow, "--target", "LIMIT", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_without_distributed_the_cli_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    flow = str(ROOT / "examples" / "distributed_primes.py")
    assert main(["run", flow, "--workers", "2"]) == 2
    assert capsys.readouterr().err == (
        "error: running on Dask needs the 'dask' extra: pip install 'cascade[dask]'\n")
