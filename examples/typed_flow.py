"""A flow with type annotations, checked by ``mypy --strict``.

``@task`` keeps the function's signature for type checkers: ``score`` is a
``Task[[str, int], float]``, calling it gives a ``LazyResult[float]``, and
``run()`` of that is a ``float``. A wrong literal argument, a missing one or
an unknown keyword is a type error. A lazy argument (a task call, a
``Param``, a ``Router``) is accepted wherever its value is expected: it
stands for the value it will become. A task that ends in a tail call is
annotated with the type of its final value (``-> str`` on ``countdown``).

Run it, and check it:

    python -m cascade_vm run examples/typed_flow.py -p rounds=3
    mypy --strict examples/typed_flow.py     # from the repository root
"""

from __future__ import annotations

import asyncio

from cascade_vm import LazyResult, Param, Router, run, task


@task
async def fetch(word: str) -> str:
    await asyncio.sleep(0)  # an async task: its value is the awaited str
    return word.strip().lower()


@task
def score(word: str, weight: int = 1) -> float:
    return len(word) * weight / 2


@task
def total(scores: list[float]) -> float:
    return sum(scores)


@task
def countdown(n: int, log: str) -> str:
    # a tail call: the LazyResult[str] it returns stands for the final str
    return log if n <= 0 else countdown(n - 1, f"{log}{n}.")


@task
def loud(text: str) -> str:
    return text.upper()


@task
def quiet(text: str) -> str:
    return text.lower()


@task
def report(total_score: float, trail: str, voice: str) -> dict[str, object]:
    return {"total": total_score, "trail": trail, "voice": voice}


WORDS = [" Alpha", "beta ", "Gamma"]

rounds = Param("rounds", default=3, type=int, help="how many steps the countdown takes")
tone = Param("tone", default="loud", help="loud or quiet")

scores: LazyResult[list[float]] = score.map([fetch(w) for w in WORDS])
voice = Router(tone, routes={"loud": loud("Done"), "quiet": quiet("Done")})
main = report(
    total(scores).with_retry(max_attempts=2), countdown(rounds, ""), voice
)


if __name__ == "__main__":
    result: dict[str, object] = run(main, params={"rounds": 2})
    print(result)
    first: float = run(score("abcd", weight=2))
    print(first)
