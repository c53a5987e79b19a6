"""Plain-Python equivalents of the workloads: the yardsticks the engines are measured against.

Each baseline computes the same value as its workload with no engine in
between: direct calls, a trampoline where the workload is a tail-call loop,
``asyncio.gather`` where it is concurrent I/O. The small functions here are
also the bodies the workload tasks wrap (``task(baselines.link)``), so engine
and baseline run exactly the same user code and differ only in how it is
driven.

Every baseline is written the way a reasonable person would write it by
hand: no tricks that make it artificially slow (which would flatter the
engines) or unrealistically fast.
"""

from __future__ import annotations

import asyncio

# --- user code shared with the workload tasks --------------------------------------------


def link(x):
    """One link of a chain: a near no-op whose +1 proves the link really ran."""
    return x + 1


def echo(x):
    """A no-op call (the distributed workloads' raw baseline)."""
    return x


def double(i):
    """One fan-out item."""
    return i * 2


def total(values):
    """The fan-in: the sum of every item."""
    return sum(values)


def add(a, b):
    return a + b


def mul(a, b):
    return a * b


async def nap(i):
    """One unit of simulated I/O: sleep 10 ms, then hand back ``i``."""
    await asyncio.sleep(0.01)
    return i


# --- trampolines (countdown, countdown_async, observed_countdown, memory) -----------------


class Bounce:
    """The one small object a trampoline step returns instead of recursing: "call me with n"."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


def countdown_step(n):
    return "done" if n <= 0 else Bounce(n - 1)


def countdown(n):
    """A plain trampoline: loop while the step hands back a ``Bounce``."""
    result = countdown_step(n)
    while isinstance(result, Bounce):
        result = countdown_step(result.n)
    return result


async def countdown_step_async(n):
    return "done" if n <= 0 else Bounce(n - 1)


async def countdown_async(n):
    """An async trampoline: await one ``async def`` step per iteration."""
    result = await countdown_step_async(n)
    while isinstance(result, Bounce):
        result = await countdown_step_async(result.n)
    return result


# --- direct calls ------------------------------------------------------------------------


def heavy_loop(n, width=20):
    """``n`` iterations, each pushing the accumulator through ``width`` links."""
    acc = 0
    while n > 0:
        value = acc
        for _ in range(width):
            value = link(value)
        n, acc = n - 1, value
    return acc


def chain(n, off=0):
    """``n`` links one after the other, starting from ``off``."""
    value = off
    for _ in range(n):
        value = link(value)
    return value


def fanout(n, off=0):
    """``n`` independent items summed by one call."""
    return total([double(i + off) for i in range(n)])


def five_node_flow(i):
    """The repeat_run workflow as direct calls: x is shared by two consumers."""
    x = add(i, 1)
    y = mul(i, 2)
    z = add(x, y)
    w = mul(z, 3)
    return add(w, x)


async def async_io(n):
    """``n`` naps run concurrently with ``asyncio.gather``, then summed."""
    return total(await asyncio.gather(*(nap(i) for i in range(n))))


# --- the realistic shapes (bench.shapes): user code, then the same calls by hand -------------
#
# Each function below taking ``off`` is the raw-Python run of one shape: the same
# calls the workflow makes, in plain loops. ``off`` is added to every literal the
# shape's leaves take, so a warm run can use new values (bench.shapes has the
# expected value of each as a formula).


def bump(x):
    """The second task of the alternating chain (and the loop's ``aux`` step)."""
    return x + 2


def nudge(x, scale=1):
    """A chain link taking a keyword argument: ``step(x, scale=2)``."""
    return x + scale


def fetch(i):
    """The first stage of a pipeline."""
    return i * 2


def parse(x):
    """The second stage of a pipeline; also the mapped function of the map shapes."""
    return x + 1


def seed(i):
    """A source node of the layered DAG."""
    return i


def meet(a, b):
    """A node of the layered DAG joining two nodes of the layer before."""
    return max(a, b) + 1


async def tick(i):
    """One async task of the async fan-out: yield to the event loop once."""
    await asyncio.sleep(0)
    return i


async def lift(a):
    """The async node of the loop's DAG body (it awaits nothing: an async call, no I/O)."""
    return a + 1


def alternating(n, off=0):
    """``a(b(a(...)))``: ``n`` links alternating ``link`` and ``bump``, innermost ``link``."""
    value = off
    for k in range(n):
        value = link(value) if k % 2 == 0 else bump(value)
    return value


def kw_chain(n, off=0):
    """``n`` links ``nudge(x, scale=2)``."""
    value = off
    for _ in range(n):
        value = nudge(value, scale=2)
    return value


def pipelines(n, off=0):
    """``n`` pipelines ``parse(fetch(i))`` summed by one call."""
    return total([parse(fetch(i + off)) for i in range(n)])


def dag(layers, width, off=0):
    """The layered DAG: ``width`` seeds, then ``layers - 1`` layers of ``meet``, summed."""
    layer = [seed(j + off) for j in range(width)]
    for _ in range(layers - 1):
        layer = [meet(layer[j], layer[(j + 1) % width]) for j in range(width)]
    return total(layer)


async def async_fanout(n, off=0):
    """``n`` ticks run concurrently with ``asyncio.gather``, then summed."""
    return total(await asyncio.gather(*(tick(i + off) for i in range(n))))


async def dag_loop(n, off=0):
    """The tail loop with a DAG body, by hand: each round makes the body's four calls
    (``lift`` awaited) and carries the loop's arguments to the next round."""
    acc, aux = off, 0
    while n > 0:
        a = link(acc)
        n, acc, aux = n - 1, await lift(a), add(a, bump(aux))
    return acc + aux


def map_items(n, off=0):
    """``parse`` over ``range(off, off + n)``: the list of results."""
    return [parse(i) for i in range(off, off + n)]


def retried(fn, x, attempts):
    """``fn(x)``, called again on an exception, at most ``attempts`` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return fn(x)
        except Exception:
            if attempt == attempts:
                raise
    raise ValueError(f"attempts must be >= 1, got {attempts}")


def retried_map_items(n, off=0, attempts=3):
    """``map_items`` with each call under a retry loop (what ``.with_retry(3)`` asks)."""
    return [retried(parse, i, attempts) for i in range(off, off + n)]
