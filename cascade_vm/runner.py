"""``run()``'s event loop: a fresh loop per call, set up and closed cheaply.

The loop is uvloop's where uvloop is installed (it is a dependency on every
platform it supports, so not on Windows) and asyncio's own otherwise; both
run every workflow the same way, uvloop only faster.

What ``asyncio.Runner`` (and ``uvloop.run``) does is kept, in one pass of the
loop instead of three: the workflow's coroutine, then, in the same task, the
cancellation of any task user code left running, the shutdown of async
generators and of the loop's default executor. ``Runner`` runs each of these
in its own ``run_until_complete``; measured on the 2-core dev machine,
``uvloop.run`` of an empty coroutine took about 380-430 us and this about
170-240 us, which is most of the fixed cost of ``run()`` on a small workflow.

Ctrl-C: while the loop runs in the main thread (and nobody installed their
own SIGINT handler), the first SIGINT interrupts the workflow and ``run()``
raises ``KeyboardInterrupt`` once the run's lifecycle has cleaned up
(stragglers cancelled, resources torn down, ``RunFinished``). Where the
signal lands decides how:

- in user code (an inline sync task, a sync resource's set-up or teardown,
  a listener: the interrupted frame is none of the engine's nor the event
  loop's), ``KeyboardInterrupt`` is raised right there, as plain Python
  would, so a long sync task stops at once instead of running to its end;
  it then leaves the task like any exception the task raises;
- anywhere else (the loop waiting, the engine's own code), the workflow's
  task is cancelled, as ``asyncio.Runner`` does, and the loop is woken.

A second SIGINT raises ``KeyboardInterrupt`` at once, wherever it lands.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import selectors
import signal
import threading

import cascade_graph

try:
    import uvloop
except ImportError:  # not installed (Windows): asyncio's own loop
    uvloop = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, else asyncio's."""
    if uvloop is None:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_in_new_loop(coro):
    """Run coroutine ``coro`` to completion in a new event loop; return its value."""
    loop = new_event_loop()
    try:
        main = loop.create_task(_then_shut_down(coro))
        interrupted = _Interrupt(main, loop)
        previous = interrupted.install()
        try:
            return loop.run_until_complete(main)
        except asyncio.CancelledError:
            if interrupted.count:
                raise KeyboardInterrupt() from None
            raise
        finally:
            interrupted.uninstall(previous)
    finally:
        loop.close()


async def _then_shut_down(coro):
    try:
        return await coro
    finally:
        await _shut_down(asyncio.get_running_loop())


async def _shut_down(loop) -> None:
    """Cancel tasks user code left running, then close async generators and the
    default executor (what ``asyncio.Runner.close`` does)."""
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks(loop) if t is not current]
    if left:
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _package_dir(module) -> str:
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


#: Frames in these places are the engine's or the event loop's, never a task's code.
_NOT_USER_CODE = (
    *(_package_dir(m) for m in (asyncio, uvloop, concurrent.futures, cascade_graph)
      if m is not None),
    os.path.dirname(os.path.abspath(__file__)) + os.sep,  # cascade_vm
    os.path.abspath(selectors.__file__),
    "uvloop/",  # compiled frames name their file relative to the package
    "<cascade ",  # code the VM generates (jit.py: "<cascade block 0x...>")
)


def in_user_code(frame) -> bool:
    """Whether the interrupted ``frame`` runs user code (not the engine's nor the loop's)."""
    return frame is not None and not frame.f_code.co_filename.startswith(_NOT_USER_CODE)


class _Interrupt:
    """The SIGINT handler of one run: interrupt the workflow, then give up."""

    def __init__(self, main: asyncio.Task, loop):
        self.main = main
        self.loop = loop
        self.count = 0

    def install(self):
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            return None
        signal.signal(signal.SIGINT, self._on_sigint)
        return signal.default_int_handler

    def uninstall(self, previous) -> None:
        if previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1 and not self.main.done() and not in_user_code(frame):
            self.main.cancel()
            self.loop.call_soon_threadsafe(lambda: None)  # wake the loop
            return
        raise KeyboardInterrupt()
