"""The hot path: a single-call tail loop, shared by both engines.

When a template is *flat* (one plain call whose arguments are all inputs:
``countdown(n - 1)``) the engines do not interpret it at all: ``hot_loop``
calls the task's function directly, and while the result is a lazy call of
the same shape (the same template: same task, same argument layout) it just
takes the new arguments and calls again. No template lookup, no binding, no
frame: one shape comparison per iteration.

It hands back to the engine with a value, or with a lazy call of another
shape (the engine looks that template up and goes on). With a listener each
iteration is one ``calls.call_sync``/``call_async`` (events, ``TailCall``
included), so the engine emits nothing for what ran here.

Fairness: the loop yields to the event loop once ``yield_interval`` seconds
of work have passed (``Pacer``). The clock is read every ``batch``
iterations, where ``batch`` adapts so a read happens several times per
interval whatever one iteration costs: no clock call per iteration, no
starvation.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from .calls import call_async, call_sync, failed
from .lazy import LazyResult

_MAX_BATCH = 1 << 14


async def yield_to_loop() -> None:
    """Let every other ready coroutine run once, timer-woken ones included.

    A coroutine woken by a timer needs two turns of the event loop (the timer
    resolves its future, then its step runs), so one ``sleep(0)`` would leave
    it waiting for the next yield.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class Pacer:
    """When a loop should read the clock and when it should yield: the one pacing
    mechanism of every loop (the engines', the hot path's, folded nodes').

    The loop counts ``batch`` iterations down itself (no call per iteration),
    then asks: an async loop awaits ``batch_done``, which yields once
    ``interval`` seconds of work have passed; a sync loop (a folded node, which
    cannot await) asks ``due`` and, when it is, returns a pause for the event
    loop. Each clock read adapts ``batch`` so the clock is read several times
    per interval, whatever one iteration costs.
    """

    __slots__ = ("interval", "last", "next_yield", "batch")

    def __init__(self, interval: float):
        self.interval = interval  # seconds of work between yields
        self.last = perf_counter()  # when the clock was last read
        self.next_yield = self.last + interval  # yield once the clock passes this
        self.batch = 8  # iterations between clock reads

    def due(self) -> bool:
        """Read the clock (adapting ``batch``): has ``interval`` passed since the last
        yield?"""
        now = perf_counter()
        spent = now - self.last
        self.last = now
        interval = self.interval
        if spent < interval * 0.125 and self.batch < _MAX_BATCH:
            self.batch <<= 1
        elif spent > interval * 0.5 and self.batch > 1:
            self.batch >>= 1
        return now >= self.next_yield

    async def batch_done(self) -> int:
        """A batch of iterations is done: yield when due; the next batch size."""
        if self.due():
            await yield_to_loop()
            self.last = perf_counter()
            self.next_yield = self.last + self.interval
        return self.batch


async def hot_loop(ctx, lazy: LazyResult, parent=None):
    """Run flat call ``lazy`` and its same-shape tail calls: ``(value or another lazy,
    call)``, where ``call`` made the last tail call (the continuation's ``parent``;
    0 when unobserved). ``parent`` made ``lazy``."""
    task = lazy.task
    fn = task.fn
    shape = lazy.shape
    args = lazy.args
    kwargs = lazy.kwargs
    is_async = task.is_async
    LR = LazyResult
    pacer = Pacer(ctx.yield_interval)
    countdown = pacer.batch
    if ctx.emit is None:
        # The tightest form: no listener (equal shapes mean equal argument layouts,
        # so every later call is positional too, or has keywords too).
        while True:
            try:
                if kwargs:
                    result = (await fn(*args, **kwargs)) if is_async else fn(*args, **kwargs)
                else:
                    result = (await fn(*args)) if is_async else fn(*args)
            except BaseException as exc:
                failed(ctx, task, exc)
                raise
            if type(result) is not LR or result.shape != shape:
                return result, 0
            args = result.args
            kwargs = result.kwargs
            countdown -= 1
            if not countdown:
                countdown = await pacer.batch_done()
    while True:
        if is_async:
            result, parent = await call_async(ctx, task, args, kwargs, parent)
        else:
            result, parent = call_sync(ctx, task, fn, args, kwargs, parent)
        if type(result) is not LR or result.shape != shape:
            return result, parent
        args = result.args
        kwargs = result.kwargs
        countdown -= 1
        if not countdown:
            countdown = await pacer.batch_done()
