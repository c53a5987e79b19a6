"""A run long enough (about a second) for a live display to redraw several times:
an async tail-call loop, a few concurrent naps, one retried call."""

import asyncio

from cascade_graph import Param, task

_attempts = []


@task
async def tick(n: int) -> int:
    await asyncio.sleep(0.02)
    return 0 if n <= 0 else tick(n - 1)


@task
async def nap(i: int) -> int:
    await asyncio.sleep(0.3)
    return i


@task
def flaky(x: int) -> int:
    _attempts.append(x)
    if len(_attempts) == 1:
        raise ConnectionError("first attempt fails")
    return x


@task
def total(parts: list) -> int:
    return sum(parts)


main = total([tick(Param("steps", default=40, type=int)), flaky(2).with_retry(2)]
             + [nap(i) for i in range(3)])
