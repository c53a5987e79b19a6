"""The cyclic garbage collector around workflows: fewer young collections while a
program builds a large workflow or runs a fan-out.

A workflow is many small objects that live until its run ends: every lazy
call, its argument tuple, and during a fan-out each started task and its
coroutine. At Python's default of 700 allocations per young collection,
with an older generation collected every ten younger ones and the whole
heap whenever the survivors grew by a quarter, the collector traverses
those objects again and again while they are made. Measured on the
development machine (bench process, after a ``gc.collect()``): a cold
100,000-link chain ran at 0.43x the speed per link of a 10,000-link one;
with a young threshold of 20,000 at 1.1x; a 10,000-task async fan-out took
40 us per task at 700, 31 at 5,000 and 27 at 20,000.

So the first threshold is raised to ``RAISED_YOUNG`` while either holds:

- **a fan-out is running**: a run enters when its live tasks reach
  ``MANY_TASKS`` (``RunContext.spawn``) and leaves when it ends; a small
  run never enters (entering and leaving cost about 1.8 us, which a
  five-node run repeated in a loop paid as 7% of its time);
- **a workflow is being built**: at the start of each collection of the
  middle or oldest generation (one per ten young collections), the newest
  ``SAMPLE`` young objects are looked at; when at least a quarter are
  lazy calls, a workflow is being built and the threshold is raised, and
  when fewer are, it goes back. Looking costs about 10 us per look, about
  1.4 ns per allocation either way.

The threshold is changed only from Python's own (a threshold of 0, the
collector switched off, and any threshold above ``RAISED_YOUNG`` are left
alone) and restored only if nobody changed it meanwhile. Garbage is still
collected, in fewer, larger young collections. Runs in several threads
share one ``COLLECTOR``; the collection hook never waits for its lock (a
collection may start while the lock is held, in the same thread).
"""

from __future__ import annotations

import gc
import threading

from .lazy import _LAZY_TYPES

#: the collector's first threshold while a fan-out runs or a workflow is built
RAISED_YOUNG = 20_000
#: the number of a run's live tasks at which it raises the threshold
MANY_TASKS = 256
#: how many of the newest young objects the hook looks at
SAMPLE = 256


def _building() -> bool:
    """Are lazy calls a quarter or more of the newest young objects?"""
    newest = gc.get_objects(0)[-SAMPLE:]
    lazy = _LAZY_TYPES
    made = 0
    for o in newest:
        if type(o) in lazy:
            made += 1
    return made * 4 >= len(newest) > 0


class Collector:
    """The raised threshold and the reasons for it (see module docstring)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs = 0  # runs with many tasks going
        self.building = False  # the hook saw a workflow being built
        self.saved = None  # the thresholds before raising, while raised
        self.raised = None  # the thresholds set

    def enter(self) -> None:
        """A run with many tasks starts."""
        with self.lock:
            self.runs += 1
            if self.runs == 1:
                self._apply()

    def exit(self) -> None:
        """A run that entered ends."""
        with self.lock:
            self.runs -= 1
            if self.runs == 0:
                self._apply()

    def on_collection(self, phase: str, info: dict) -> None:
        """``gc.callbacks`` hook: is a workflow being built (middle and oldest
        generations' collections only)?"""
        if phase != "start" or info["generation"] == 0:
            return
        if not self.lock.acquire(blocking=False):
            return  # enter/exit is changing the thresholds: look next time
        try:
            building = _building()
            if building != self.building:
                self.building = building
                self._apply()
        finally:
            self.lock.release()

    def _apply(self) -> None:
        """Raise or restore the threshold to match the reasons (lock held)."""
        wanted = self.runs > 0 or self.building
        if wanted and self.saved is None:
            now = gc.get_threshold()
            if 0 < now[0] < RAISED_YOUNG:
                self.saved = now
                self.raised = (RAISED_YOUNG, *now[1:])
                gc.set_threshold(*self.raised)
        elif not wanted and self.saved is not None:
            if gc.get_threshold() == self.raised:
                gc.set_threshold(*self.saved)
            self.saved = self.raised = None


COLLECTOR = Collector()
gc.callbacks.append(COLLECTOR.on_collection)
