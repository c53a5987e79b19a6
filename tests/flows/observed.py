"""A workflow with something of everything the observability tools show.

Concurrent async calls, a task retried once, a cache hit, a skipped call, a
run-scoped resource, a tail-call loop and a Router; ``-p fail=true`` makes
the last step fail (for the failure report)."""

import asyncio

from cascade_graph import MemoryStore, Param, Router, inject, resource, task

STORE = MemoryStore()
_attempts = {"flaky": 0}


@resource
def ledger():
    yield []


@task
async def fetch(i: int) -> int:
    await asyncio.sleep(0.02)
    return i


@task
def flaky(x: int) -> int:
    _attempts["flaky"] += 1
    if _attempts["flaky"] == 1:
        raise ConnectionError("first attempt fails")
    return x


@task
def square(x: int, book=inject("ledger")) -> int:  # noqa: B008
    book.append(x)
    return x * x


@task
def countdown(n: int) -> int:
    return 0 if n <= 0 else countdown(n - 1)


@task
def pick(total: int) -> str:
    return "big" if total > 10 else "small"


@task
def never(x: int) -> int:
    return x


@task
def finish(parts: list, fail: bool = False) -> int:
    if fail:
        raise ValueError(f"finish refused {len(parts)} parts")
    return sum(p for p in parts if p is not None)


fetched = [fetch(i) for i in range(6)]
first = square(3).with_cache(store=STORE)
again = square(3).with_cache(store=STORE).after(first)
route = Router(pick(fetch(7)), {"big": fetch(8), "small": fetch(9)})
main = [
    finish(fetched + [flaky(5).with_retry(2), first, again, countdown(20), route],
           fail=Param("fail", default=False, type=bool)),
    never(1).run_if(False),
]
