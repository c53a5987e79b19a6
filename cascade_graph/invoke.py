"""Invoking one task call with its policies: the piece both engines share.

Engines run plain calls themselves (sync inline, async awaited or started as
a task). A call with anything more (retry, timeout, cache, injected
resources, ``offload=True``) goes through ``invoke``, so each policy is
written once. How the function is finally called (``_call``) is the one
place a distributed executor would replace.

``invoke`` returns the call's raw result; a ``LazyResult`` means a tail call,
which the engine follows as usual. With ``.with_cache`` the cached value is
the node's *final* value, so ``invoke`` follows the tail call itself through
the engine's ``follow`` callback before storing it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
import time
from concurrent.futures import ThreadPoolExecutor

from .context import SKIPPED, report_also
from .errors import add_task_note
from .events import TailCall, TaskFailed, TaskFinished, TaskRetrying, TaskSkipped, TaskStarted
from .lazy import _LAZY_TYPES, Inject
from .store import DEFAULT_STORE, MISSING, cache_key

_POOL = None


def _offload_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(thread_name_prefix="cascade-offload")
    return _POOL


def _resolve_injects(value, values: dict):
    """``value`` with every ``inject()`` marker, at any depth of builtin containers, resolved."""
    t = type(value)
    if t is Inject:
        return values[value.name]
    if t is list or t is tuple or t is set:
        items = [_resolve_injects(v, values) for v in value]
        return items if t is list else t(items)
    if t is dict:
        return {k: _resolve_injects(v, values) for k, v in value.items()}
    return value


async def _call(task, args, kwargs, timeout):
    fn = task.fn
    if task.is_async:
        if timeout is None:
            return await fn(*args, **kwargs)
        try:
            return await asyncio.wait_for(fn(*args, **kwargs), timeout)
        except TimeoutError:
            raise TimeoutError(f"task {task.name!r} timed out after {timeout:g} s") from None
    if task.offload:
        # Our own pool, not the loop's default executor: ``asyncio.run`` waits for
        # the default executor's threads, and a timed-out thread must not hold
        # up the end of the run.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        work = asyncio.get_running_loop().run_in_executor(_offload_pool(), call)
        if timeout is None:
            return await work
        try:
            return await asyncio.wait_for(work, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"task {task.name!r} timed out after {timeout:g} s (its thread keeps running)"
            ) from None
    if timeout is None:
        return fn(*args, **kwargs)
    # An inline sync call cannot be interrupted: it runs to its end, then a
    # call that overran its timeout fails with TimeoutError (its result is dropped).
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if time.perf_counter() - start > timeout:
        raise TimeoutError(f"task {task.name!r} timed out after {timeout:g} s (ran to completion "
                           "inline; use offload=True or async def to stop waiting for it)")
    return result


def _bind(task, args, kwargs, injected: set) -> dict:
    sig = task.signature
    if sig is None:
        bound = {str(i): a for i, a in enumerate(args)}
        bound.update(kwargs)
        return bound
    ba = sig.bind(*args, **kwargs)
    ba.apply_defaults()
    return {k: v for k, v in ba.arguments.items()
            if k not in injected and type(v) is not Inject}


async def invoke(ctx, node, args: tuple, kwargs: dict, follow):
    """Run the call of template ``node`` with ``args``/``kwargs`` under its policies."""
    task = node.task
    policy = node.policy
    cache = policy.cache if policy is not None else None
    if cache is None:
        return await _attempts(ctx, node, args, kwargs)
    injected = {p for p, _ in node.injects if p}
    try:
        key = cache_key(task, cache, _bind(task, args, kwargs, injected))
    except Exception as exc:
        add_task_note(exc, task.name)
        raise
    store = cache.store if cache.store is not None else DEFAULT_STORE
    hit = store.get(key, MISSING)
    if hit is not MISSING:
        if ctx.emit is not None:
            ctx.emit(TaskSkipped(ctx.run_id, task.name, "cached"))
        return hit
    result = await _attempts(ctx, node, args, kwargs)
    if type(result) in _LAZY_TYPES:
        if ctx.emit is not None:
            ctx.emit(TailCall(ctx.run_id, task.name, getattr(result.task, "name", "?")))
        result = await follow(result)
    if result is not SKIPPED:
        store.set(key, result, cache.ttl)
    return result


async def _attempts(ctx, node, args, kwargs):
    task = node.task
    policy = node.policy
    retry = policy.retry if policy is not None else None
    timeout = policy.timeout if policy is not None else None
    emit = ctx.emit
    name = task.name
    quiet = task.internal
    attempt = 1
    while True:
        if emit is not None and not quiet:
            emit(TaskStarted(ctx.run_id, name))
        task_live: list = []
        try:
            a, kw = args, kwargs
            if node.injects:
                values = await ctx.resources.acquire([r for _, r in node.injects], task_live)
                a = tuple(_resolve_injects(x, values) for x in args)
                kw = {k: _resolve_injects(v, values) for k, v in kwargs.items()}
                for p, r in node.injects:
                    if p is not None:
                        kw[p] = values[r]
            result = await _call(task, a, kw, timeout)
        except BaseException as exc:
            if task_live:
                err = await ctx.resources.release(task_live)
                if err is not None:
                    report_also(exc, err)
            if emit is not None and not quiet:
                emit(TaskFailed(ctx.run_id, name, exc))
            if (retry is not None and attempt < retry.max_attempts
                    and isinstance(exc, retry.retry_on) and isinstance(exc, Exception)):
                delay = retry.pause(attempt)
                if retry.jitter:
                    delay += random.uniform(0, retry.jitter)
                if emit is not None:
                    emit(TaskRetrying(ctx.run_id, name, exc, attempt, delay))
                if delay > 0:
                    await asyncio.sleep(delay)
                attempt += 1
                continue
            if not isinstance(exc, asyncio.CancelledError):
                add_task_note(exc, name)
            raise
        if task_live:
            err = await ctx.resources.release(task_live)
            if err is not None:
                if emit is not None and not quiet:
                    emit(TaskFailed(ctx.run_id, name, err))
                add_task_note(err, name)
                raise err
        if emit is not None and not quiet:
            emit(TaskFinished(ctx.run_id, name))
        return result
