"""Count primes on a Dask cluster: CPU-bound tasks, values kept on the workers.

    split -> primes_in.map(ranges) -> total --> summary    (cluster ... ; summary: driver)
    refine([0, limit]) tail-calls itself on the denser half  -'   (cluster)

What it shows:

- The same flow runs in-process or on a cluster: ``--workers N`` starts a
  temporary local Dask cluster of N worker processes for the run (closed
  after it), ``--scheduler ADDRESS`` uses a running one. Sync tasks run on
  the workers; the CPU-bound ``primes_in`` calls run in parallel there
  (in-process they run one after the other: the GIL).
- Values stay where they are made: each chunk's list of primes stays on the
  worker that found it; ``total`` (on the cluster too) receives them there,
  and only the final numbers come to the driver for ``summary``, which is
  ``local=True`` (it runs in the driver, as async tasks and tasks injecting
  a resource always do).
- Tail calls from workers: ``refine`` returns the next call of itself; the
  lazy call comes back to the driver, which sends the next step out.
- The workers need Cascade installed, not this file: the CLI sends it to them.

Run it:

    python -m cascade_vm run examples/distributed_primes.py
    python -m cascade_vm run examples/distributed_primes.py --workers 2 -p limit=400000
    python -m cascade_vm run examples/distributed_primes.py --scheduler tcp://127.0.0.1:8786
"""

from cascade_graph import Param, task

limit = Param("limit", default=60_000, type=int, help="count the primes below this")
chunks = Param("chunks", default=4, type=int, help="how many tasks share the work")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


@task
def split(limit: int, chunks: int) -> list[list[int]]:
    """[lo, hi) ranges covering [0, limit)."""
    step = -(-limit // chunks)
    return [[lo, min(lo + step, limit)] for lo in range(0, limit, step)]


@task
def primes_in(bounds: list[int]) -> list[int]:
    """The primes in one range: CPU-bound, and a value that stays on its worker."""
    lo, hi = bounds
    return [n for n in range(lo, hi) if _is_prime(n)]


@task
def total(found: list[list[int]]) -> dict:
    counts = [len(p) for p in found]
    return {"primes": sum(counts), "per_chunk": counts, "largest": found[-1][-1]}


@task
def refine(bounds: list[int], steps: int = 0) -> dict:
    """Halve the range while it holds more than 100 primes, keeping the denser half:
    each step is a tail call, made on a worker and followed by the driver."""
    lo, hi = bounds
    found = [n for n in range(lo, hi) if _is_prime(n)]
    if len(found) <= 100:
        return {"densest_range": [lo, hi], "primes_there": len(found), "halvings": steps}
    mid = (lo + hi) // 2
    low = sum(1 for n in found if n < mid)
    half = [lo, mid] if low >= len(found) - low else [mid, hi]
    return refine(half, steps + 1)


@task(local=True)
def summary(counted: dict, refined: dict) -> dict:
    """Runs in the driver: only the small results come here."""
    return {**counted, **refined}


counted = total(primes_in.map(split(limit, chunks)))
main = summary(counted, refine([0, limit]))
