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


def chain(n):
    """``n`` links one after the other, starting from 0."""
    value = 0
    for _ in range(n):
        value = link(value)
    return value


def fanout(n):
    """``n`` independent items summed by one call."""
    return total([double(i) for i in range(n)])


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
