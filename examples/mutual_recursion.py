"""Mutual recursion: tasks that tail-call each other, in calls of different shapes.

Two small puzzles, answered by one workflow:

- Parity by ping-pong: ``is_even(n)`` asks ``is_odd(n - 1)``, which asks
  ``is_even(pred(n - 1))``: the argument of that tail call is itself a task
  call, so the two directions of the loop have different shapes.
- The Collatz sequence: ``collatz`` looks at ``n`` and hands over to
  ``halve`` (even) or ``grow`` (odd), each of which calls ``collatz`` back;
  ``grow`` passes a task call (``triple_plus_one(n)``) and a keyword
  argument. The result is the number of steps to reach 1 and the highest
  value on the way.

Each hop is a tail call, so the Python stack stays flat however long the
chain: try ``-p n=200001`` (200,000 hops of parity ping-pong).

Run it:

    python -m cascade_vm run examples/mutual_recursion.py
    python -m cascade_vm run examples/mutual_recursion.py -p n=97 --engine graph --json
"""

from cascade_graph import Param, task


@task
def is_even(n: int) -> bool:
    """Zero is even; otherwise n is even when n - 1 is odd."""
    return True if n == 0 else is_odd(n - 1)


@task
def is_odd(n: int) -> bool:
    """Zero is not odd; otherwise n is odd when its predecessor is even."""
    return False if n == 0 else is_even(pred(n))


@task
def pred(n: int) -> int:
    """The number before n."""
    return n - 1


@task
def collatz(n: int, steps: int, peak: int):
    """One Collatz step: stop at 1, else hand over by parity."""
    if n == 1:
        return {"steps": steps, "peak": peak}
    if n % 2 == 0:
        return halve(n, steps, peak)
    return grow(n, steps, peak)


@task
def halve(n: int, steps: int, peak: int):
    """Even n: continue from n / 2."""
    return collatz(n // 2, steps + 1, peak)


@task
def grow(n: int, steps: int, peak: int):
    """Odd n: continue from 3n + 1 (computed by a task of its own), maybe a new peak."""
    return collatz(triple_plus_one(n), steps + 1, peak=max(peak, 3 * n + 1))


@task
def triple_plus_one(n: int) -> int:
    """3n + 1."""
    return 3 * n + 1


@task
def report(n: int, even: bool, odd: bool, trip: dict) -> dict:
    """Put the answers together."""
    assert even != odd, "a number is either even or odd"
    return {"n": n, "parity": "even" if even else "odd", "collatz": trip}


n = Param("n", default=27, type=int, help="a positive whole number")

main = report(n, is_even(n), is_odd(n), collatz(n, 0, n))
