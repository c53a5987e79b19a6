"""Importable tasks for the pickling and distributed tests (pickled by reference).

Every task is at module level, so a worker process imports this module to run
it and a lazy call made on a worker unpickles in the driver to these same
task objects.
"""

from __future__ import annotations

import os
import time

from cascade_graph import Env, Param, Router, inject, resource, task


@task
def add(a, b):
    return a + b


@task
def double(x):
    return 2 * x


@task
def total(xs):
    return sum(xs)


@task
def countdown(n, acc=0):
    """A tail loop: each step returns the next call."""
    if n <= 0:
        return acc
    return countdown(n - 1, acc + n)


@task
def ping(n):
    """Mutual recursion across two tasks of different shapes."""
    return "done" if n <= 0 else pong(n - 1, tag="p")


@task
def pong(n, tag):
    return ping(n) if tag == "p" else None


@task
def fan(n):
    """A tail call into a fan-out and a sum of it (nested lazies)."""
    return total([double(i) for i in range(n)])


@task
def mapped(n):
    """A tail call into a map whose items carry a policy, gated by a condition."""
    return total(double.map(range(n)).with_retry(2)).run_if(n > 0)


@task
def is_big(x):
    return x > 10


@task
def label(kind, x):
    return f"{kind}:{x}"


@task
def routed(x):
    """A tail call into a Router whose selector is itself a lazy call."""
    return label("r", Router(is_big(x), {True: double(x), False: add(x, 1)}))


LIMIT = Param("limit", default=3, type=int)
NEEDED = Param("needed", type=int, help="required")
HOME = Env("CASCADE_TEST_HOME", default="nowhere")


@task
def climb(i, limit=None):
    """A tail call whose argument is a Param met only in the continuation."""
    if limit is not None and i >= limit:
        return i
    return climb(i + 1, LIMIT)


@task
def with_env(i, needed, home):
    return f"{i}:{needed}:{home}"


@task
def param_call(i):
    return with_env(i, NEEDED, HOME)


@task
def after_and_if(x):
    """Policies holding lazies: .after, .run_if with a lazy condition, timeout, cache."""
    first = add(x, 1)
    return add(first, 2).after(double(x)).run_if(is_big(first)).with_timeout(30)


@task
def make_bytes(n):
    return b"x" * n


@task
def length(b):
    return len(b)


@task
def burn(seconds):
    """CPU-bound work for about ``seconds`` (holds the GIL: threads cannot overlap it)."""
    end = time.process_time() + seconds
    k = 0
    while time.process_time() < end:
        k += 1
    return k > 0


@task
def noop(x=None):
    return x


@task
def where_am_i(x=None):
    return os.getpid()


@task
def boom(x):
    raise ValueError(f"boom {x}")


@task
def slow(seconds, x=None):
    time.sleep(seconds)
    return x


@task
def die_if_first(marker_path):
    """Kill this worker process the first time (a marker file says it happened)."""
    if not os.path.exists(marker_path):
        with open(marker_path, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return "survived"


@task
def always_die(x):
    os._exit(1)


@task
async def async_double(x):
    return 2 * x


@task(local=True)
def local_pid(x=None):
    return os.getpid()


@resource
def counter_resource():
    return {"pid": os.getpid()}


@task
def uses_resource(x, res=inject("counter_resource")):  # noqa: B008 - the way to inject
    return (x, res["pid"])


@task
def flaky_file(path, fails):
    """Fails its first ``fails`` calls; the count lives in the file ``path``, so it
    holds across worker processes."""
    with open(path, "a+") as f:
        f.seek(0)
        seen = len(f.read())
        f.write("x")
    if seen < fails:
        raise ConnectionError(f"flaky attempt {seen + 1}")
    return seen


@task
def pid_of(x=None):
    return os.getpid()


@task
def env_here(name):
    """The environment variable ``name`` as this process sees it."""
    return os.environ.get(name)


@task
def upto(n):
    return list(range(n))


@task
def slow_mark(seconds, path):
    """Sleep, then leave a file: a call cancelled in time leaves none... until its thread
    ends (a worker cannot stop a running function; Dask drops its result)."""
    time.sleep(seconds)
    with open(path, "w") as f:
        f.write("finished")
    return seconds


@task(concurrency=1)
def one_at_a_time(i):
    """Its span of wall-clock time, on whichever worker ran it."""
    start = time.time()
    time.sleep(0.2)
    return (start, time.time())
