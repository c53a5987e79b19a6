"""Lanes: rows of a timeline, so that calls overlapping in time never share one.

A call takes the lowest free lane when it starts and gives it back when it
ends; a sequential loop therefore stays on lane 0 and ``n`` concurrent calls
use lanes 0 to n-1. The trace and the report use one ``Lanes`` per lane
group (the driver, each worker, the resources).
"""

from __future__ import annotations

import heapq


class Lanes:
    """Lowest-free-first lane numbers."""

    __slots__ = ("free", "used")

    def __init__(self):
        self.free: list[int] = []  # a heap of lanes given back, reused lowest first
        self.used = 0  # lanes handed out so far: 0 .. used-1

    def take(self) -> int:
        """A lane no running call holds."""
        if self.free:
            return heapq.heappop(self.free)
        lane = self.used
        self.used += 1
        return lane

    def give_back(self, lane: int) -> None:
        """``lane``'s call ended; the lane may be taken again."""
        heapq.heappush(self.free, lane)
