"""Turning a workflow AST into ``LazyResult`` objects for the engines.

``Built(program)`` makes the program's tasks once (library tasks are made
once per process; loop tasks once per program, so the engines' template
cache sees the same task objects across the runs of one example), and
``Built.target()`` builds a FRESH tree of ``LazyResult``s on every call: one
object per ``Ref`` id per scope (so a shared node is one node), a new object
for every other ``Call`` (so equal calls are distinct nodes).

Loop tasks are real functions with real signatures (made with ``exec``, so
the engines' arity checks and signature binding see ``def L0a(n, p1)``). On
entry they log their arguments, clamp the counter and return the
continuation built from the AST with the current argument values as
literals: the same meaning the reference gives them.

Optional language features are imported defensively: ``features.py`` decides
what the generator may use, this module only needs the names that exist.
"""

from __future__ import annotations

import asyncio
import collections
import json
import types
from typing import Any

import cascade_graph
from cascade_graph import task

from . import library, workflow
from .workflow import (
    After,
    Cache,
    Call,
    Coll,
    EnvRef,
    Inject,
    Lit,
    LoopTask,
    MapCall,
    Opaque,
    ParamRef,
    Program,
    Ref,
    Retry,
    RouterArg,
    RunIf,
    Timeout,
    Var,
)

Router = getattr(cascade_graph, "Router", None)
Param = getattr(cascade_graph, "Param", None)
Env = getattr(cascade_graph, "Env", None)
inject = getattr(cascade_graph, "inject", None)
resource = getattr(cascade_graph, "resource", None)
MemoryStore = getattr(cascade_graph, "MemoryStore", None)

PARAM_TYPES = {"int": int, "str": str, "bool": bool}


def _make_library_tasks() -> dict[str, Any]:
    out = {}
    for name, spec in library.SPECS.items():
        if spec.offload:
            try:
                out[name] = task(offload=True)(spec.fn)
            except TypeError:  # offload not supported yet
                continue
        else:
            out[name] = task(spec.fn)
        # tasks pickle by reference (to run on a Dask worker): this one lives at LIB.<name>
        out[name].__module__ = __name__
        out[name].__qualname__ = f"LIB.{name}"
    return out


#: name -> Task, made once per process.
LIB_TASKS: dict[str, Any] = _make_library_tasks()
LIB = types.SimpleNamespace(**LIB_TASKS)


# -- pickling, for the Dask configurations (on_dask.py) -------------------------
# A loop task is made per program, so it cannot be found by name in another
# process: it pickles as (program, label), and each process makes the program's
# tasks once (``_BUILT``), so the driver gets back its own task objects. A cache
# store pickles as its token: the store of that token in the driver's run.

_BUILT: dict[str, Built] = {}  # program JSON -> the Built whose tasks this process uses
_STORES: dict = {}  # the stores of the run in progress (token -> store)


class _LoopTaskObj(cascade_graph.Task):
    """A loop task that pickles as (program, label)."""

    def __reduce__(self):
        return _loop_task, (self.program_json, self.label)


def _loop_task(program_json: str, label: str):
    built = _BUILT.get(program_json)
    if built is None:
        built = Built(workflow.from_json(json.loads(program_json)))
    return built.tasks[label]


class _TokenStore(MemoryStore or object):
    """A MemoryStore that pickles as its token (the driver's store of that token)."""

    def __init__(self, token):
        super().__init__()
        self.token = token

    def __reduce__(self):
        return _store_of, (self.token,)


def _store_of(token):
    store = _STORES.get(token)
    if store is None:
        store = _STORES[token] = _TokenStore(token)
    return store


# -- resources ---------------------------------------------------------------


def _register_resources() -> bool:
    """Register the harness's resources (``library.RESOURCES``); False if unsupported."""
    if resource is None or inject is None:
        return False
    counts = library.RUN  # read at call time through library.RUN.resources

    def make(name: str, scope: str, kind: str, val: int):
        if kind == "function":

            def fn():
                counts.resources["setup", name] += 1
                return val

        elif kind == "generator":

            def fn():
                counts.resources["setup", name] += 1
                yield val
                counts.resources["teardown", name] += 1

        else:

            async def fn():
                # counted once set up (at the yield): a set-up cancelled at the await
                # before it never happened, and has no tear-down (docs/guarantees.md)
                await asyncio.sleep(0)
                counts.resources["setup", name] += 1
                yield val
                await asyncio.sleep(0)
                counts.resources["teardown", name] += 1

        fn.__name__ = fn.__qualname__ = name
        return resource(name=name, scope=scope)(fn)

    try:
        for name, (scope, kind, val) in library.RESOURCES.items():
            make(name, scope, kind, val)
    except Exception:  # noqa: BLE001 - an incomplete implementation: feature off
        return False
    return True


RESOURCES_REGISTERED = _register_resources()


# -- loop tasks ----------------------------------------------------------------

_LOOP_SRC = """
def {label}({params}):
    return _body(({params}{comma}))
"""

_ALOOP_SRC = """
async def {label}({params}):
    values = ({params}{comma})
    library.log(_label, *values)
    await asyncio.sleep(0)
    return _cont(values)
"""


class Built:
    """A program's tasks, and a factory of fresh ``LazyResult`` trees."""

    def __init__(self, program: Program):
        self.program = program
        self.tasks: dict[str, Any] = dict(LIB_TASKS)
        self.loops = {lt.label: lt for lt in program.loops}
        self.stores: dict[str, Any] = {}
        self.json = workflow.dumps(program)
        for lt in program.loops:
            self.tasks[lt.label] = self._make_loop_task(lt)
        _BUILT[self.json] = self
        while len(_BUILT) > 64:  # bounded: the runs of one program come one after another
            del _BUILT[next(iter(_BUILT))]

    # -- loop tasks --

    def _make_loop_task(self, lt: LoopTask):
        names = [n for n, _ in lt.params]
        label = lt.label

        def cont(values: tuple) -> Any:
            env = dict(zip(names, values))
            n = library.clamp_counter(env["n"])
            env["n"] = n
            if n <= 0:
                expr = lt.base
            else:
                st = lt.steps[n % len(lt.steps)]
                expr = Call(st.target, (Lit(n - 1),) + st.args, (), st.policies)
            return self.build(expr, env, {}, dict(lt.shared))

        def body(values: tuple) -> Any:
            library.log(label, *values)
            return cont(values)

        ns = {"_body": body, "_cont": cont, "_label": label, "library": library, "asyncio": asyncio}
        src = (_ALOOP_SRC if lt.is_async else _LOOP_SRC).format(
            label=label, params=", ".join(names), comma="," if len(names) == 1 else ""
        )
        exec(compile(src, f"<loop task {label}>", "exec"), ns)  # noqa: S102
        fn = ns[label]
        fn.__module__ = __name__
        fn.__qualname__ = f"loop.{label}"
        t = _LoopTaskObj(fn, name=lt.task_name)
        t.program_json, t.label = self.json, label
        return t

    # -- expressions --

    def target(self, stores: dict | None = None) -> Any:
        """A fresh LazyResult tree for the program's target.

        ``stores``: token -> store for ``with_cache`` nodes (a fresh
        ``MemoryStore`` per token when missing; pass the same dict again for
        a warm run).
        """
        global _STORES
        self.stores = _STORES = stores if stores is not None else {}
        return self.build(self.program.target, {}, {}, dict(self.program.shared))

    def build(self, e: Any, env: dict, memo: dict, defs: dict) -> Any:
        if isinstance(e, Lit):
            return e.value
        if isinstance(e, Var):
            return env[e.name]
        if isinstance(e, Ref):
            if e.id not in memo:
                memo[e.id] = self.build(defs[e.id], env, memo, defs)
            return memo[e.id]
        if isinstance(e, Coll):
            if e.kind == "dict":
                return {k.value: self.build(v, env, memo, defs) for k, v in e.items}
            items = [self.build(x, env, memo, defs) for x in e.items]
            if e.kind == "list":
                return items
            if e.kind == "tuple":
                return tuple(items)
            return set(items)
        if isinstance(e, Opaque):
            if e.kind == "namedtuple":
                return library.Pt(*(self.build(x, env, memo, defs) for x in e.items))
            if e.kind == "frozenset":
                return frozenset(self.build(x, env, memo, defs) for x in e.items)
            pairs = [
                (self.build(k, env, memo, defs), self.build(v, env, memo, defs)) for k, v in e.items
            ]
            if e.kind == "ordereddict":
                return collections.OrderedDict(pairs)
            if e.kind == "defaultdict":
                return collections.defaultdict(int, pairs)
            return dict(pairs)  # lazykey
        if isinstance(e, Call):
            t = self.tasks[e.task]
            args = [self.build(a, env, memo, defs) for a in e.args]
            kwargs = {k: self.build(v, env, memo, defs) for k, v in e.kwargs}
            return self.policies(t(*args, **kwargs), e.policies, env, memo, defs)
        if isinstance(e, MapCall):
            t = self.tasks[e.task]
            its = [self.build(a, env, memo, defs) for a in e.iterables]
            kws = {k: self.build(v, env, memo, defs) for k, v in e.kwiterables}
            return self.policies(t.map(*its, **kws), e.policies, env, memo, defs)
        if isinstance(e, RouterArg):
            routes = {k: self.build(v, env, memo, defs) for k, v in e.routes}
            return Router(self.build(e.selector, env, memo, defs), routes=routes)
        if isinstance(e, ParamRef):
            if e.has_default:
                return Param(e.name, default=e.default, type=PARAM_TYPES[e.type])
            return Param(e.name, type=PARAM_TYPES[e.type])
        if isinstance(e, EnvRef):
            return Env(e.name, default=e.default)
        if isinstance(e, Inject):
            return inject(e.name)
        raise TypeError(f"build: unexpected expression {e!r}")

    def policies(self, lazy: Any, policies: tuple, env: dict, memo: dict, defs: dict) -> Any:
        for p in policies:
            if isinstance(p, RunIf):
                lazy = lazy.run_if(self.build(p.cond, env, memo, defs))
            elif isinstance(p, After):
                lazy = lazy.after(*(self.build(d, env, memo, defs) for d in p.deps))
            elif isinstance(p, Retry):
                lazy = lazy.with_retry(
                    max_attempts=p.max_attempts, delay=0.0, retry_on=library.RETRY_ON[p.retry_on]
                )
            elif isinstance(p, Timeout):
                lazy = lazy.with_timeout(p.seconds)
            elif isinstance(p, Cache):
                store = self.stores.get(p.token)
                if store is None:
                    store = self.stores[p.token] = _TokenStore(p.token)
                lazy = lazy.with_cache(store=store)
        return lazy
