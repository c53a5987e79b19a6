"""The long fuzzing run: ``python -m tests.differential.long`` (``make fuzz``).

Runs the generator and the oracle in a time-boxed loop (``FUZZ_MINUTES``,
default 10) of Hypothesis batches, each with a fresh random seed. A failing
example is shrunk, saved under ``corpus/`` (replayed by ``make test`` from
then on) and reported in full; the loop then goes on with a new batch.

Prints, every minute and at the end, how many examples ran, how many were
discarded (the reference found them too big), how many failed. Exits 1 if
any example failed.

Environment: ``FUZZ_MINUTES`` (float), ``FUZZ_BATCH`` (examples per batch,
default 100), ``FUZZ_SEED`` (first seed, for a reproducible session),
``CASCADE_FUZZ_DISABLE`` / ``CASCADE_FUZZ_ONLY`` (see features.py),
``FUZZ_RUN_TIMEOUT`` (seconds per engine run before it counts as a hang),
``FUZZ_DASK`` (``1``, the default when the ``dask`` extra is installed: every
example also runs on a Dask cluster, both engines; ``0``: not).
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback

from hypothesis import HealthCheck, Phase, seed, settings

from tests.strategies import programs

from . import features, session


class Stats:
    def __init__(self) -> None:
        self.counts = session.Counts()
        self.failures: list[tuple[str, str]] = []  # (path, first problem)
        self.batches = 0
        self.start = time.monotonic()

    def line(self) -> str:
        c = self.counts
        secs = time.monotonic() - self.start
        rate = c.examples / secs if secs else 0.0
        return (
            f"{secs / 60:5.1f} min: {c.examples} examples ({rate:.1f}/s), "
            f"{c.discarded} discarded, {len(self.failures)} failures, "
            f"{c.shrink_steps} shrink steps, {self.batches} batches"
        )


def run_batch(stats: Stats, seed_value: int, batch: int, deadline: float) -> None:
    def decorate(f):
        return settings(
            max_examples=batch,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.generate, Phase.shrink],
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )(seed(seed_value)(f))

    try:
        # every other batch draws fan-outs and chains on purpose (batches, runs of links)
        strategy = programs(fans=True, force=("dup",)) if stats.batches % 2 else programs()
        found = session.hunt(strategy, decorate=decorate, counts=stats.counts, deadline=deadline)
    except Exception:  # noqa: BLE001 - a crash outside the oracle: report, go on
        print(f"batch with seed {seed_value} crashed outside the oracle:", file=sys.stderr)
        traceback.print_exc()
        stats.failures.append(("<crash>", f"seed {seed_value}"))
        return
    if found is not None:
        stats.failures.append((str(found.path), found.problems[0].splitlines()[0]))
        print(f"\nFAILURE (seed {seed_value}), saved to {found.path}", flush=True)
        print(found.report, flush=True)
        print(flush=True)


def main() -> int:
    if not features.engines_present():
        print("the engines (cascade_graph, cascade_vm) are not importable", file=sys.stderr)
        return 2
    from . import on_dask

    os.environ.setdefault("FUZZ_DASK", "1" if on_dask.available() else "0")
    minutes = float(os.environ.get("FUZZ_MINUTES", "10"))
    batch = int(os.environ.get("FUZZ_BATCH", "100"))
    session_seed = int(os.environ.get("FUZZ_SEED", random.SystemRandom().getrandbits(32)))
    rng = random.Random(session_seed)
    stats = Stats()
    deadline = stats.start + minutes * 60
    print(
        f"fuzzing for {minutes:g} min (FUZZ_SEED={session_seed} repeats this session); "
        f"features: {', '.join(sorted(features.available()))}; "
        f"on Dask too: {'yes' if os.environ['FUZZ_DASK'] == '1' else 'no'}",
        flush=True,
    )
    last = time.monotonic()
    while time.monotonic() < deadline:
        stats.batches += 1
        run_batch(stats, rng.getrandbits(64), batch, deadline)
        if time.monotonic() - last >= 60:
            last = time.monotonic()
            print(stats.line(), flush=True)
    print(stats.line())
    print(
        f"done: {stats.counts.examples} examples ran, {stats.counts.discarded} discarded, "
        f"{len(stats.failures)} failures"
    )
    for path, first in stats.failures:
        print(f"  {path}: {first}")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
