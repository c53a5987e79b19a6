"""Worker for test_scale's constant-memory test: run in a fresh interpreter.

    python _memory_worker.py ENGINE HOT SMALL LARGE

prints one JSON line: the tracemalloc peak (bytes) of a ``countdown`` tail loop
of SMALL and of LARGE iterations, both measured after a warm-up run, so that
imports, caches and the event loop's own allocations are not counted.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

from cascade_graph import task
from cascade_vm import run


@task(name="countdown")
def countdown(n):
    return "done" if n <= 0 else countdown(n - 1)


def peak_of(n: int, engine: str, hot: bool) -> int:
    target = countdown(n)
    gc.collect()
    tracemalloc.start()
    try:
        result = run(target, engine=engine, hot_path=hot)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == "done", result
    return peak


def main(argv) -> None:
    engine, hot, small, large = argv[0], argv[1] == "1", int(argv[2]), int(argv[3])
    run(countdown(1000), engine=engine, hot_path=hot)
    peak_of(1000, engine, hot)
    out = {"small": peak_of(small, engine, hot), "large": peak_of(large, engine, hot)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
