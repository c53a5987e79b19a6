"""A flow defining a dataclass (needs the module in sys.modules while it runs)."""

from __future__ import annotations

import dataclasses

from cascade_graph import task


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@task
def make(x: int, y: int) -> Point:
    return Point(x, y)


main = make(1, 2)
