"""The reference evaluator: what a workflow means, in plain recursive Python.

It shares no code with the engines (it never imports ``cascade_graph`` or
``cascade_vm``); it reads the AST of ``workflow.py`` and calls the pure
functions of ``library.py``. It is meant to be obviously correct, not fast.

Semantics, straight from the language as docs/language.md states it:

* A shared node (``Ref``) is evaluated once per scope (the program, or one
  continuation of a loop task): its outcome is memoised. Every ``Call``
  elsewhere is a distinct node and runs on its own, even if equal to another.
* Arguments, then the node's ``run_if`` conditions and ``after``
  dependencies, are evaluated first; then a node is *skipped* if one of them
  was skipped or a condition is falsy; otherwise the task is invoked (with
  retries). Routers evaluate the selector, then only the selected route.
* A loop task is run by a trampoline: log the call, compute the
  continuation expression from the AST, and when it is a call of a loop
  task, evaluate its arguments and iterate instead of recursing.
* A skipped run target gives ``None``; inside a container target a skipped
  item becomes ``None``.

**Failures.** An engine reports the *first failure it observes*, and which
one that is depends on scheduling. So the reference does a *complete*
evaluation: after a failure it keeps evaluating every node that does not
depend on a failed one, and the outcome lists every failure that could be
observed first (a failed node's dependents are not run). The call log of a
failed run is then the most an engine may have run: an engine's log must be
a sub-multiset of it. Errors raised before any task runs (wrong arity,
missing required parameter) fail the whole scope with no call at all.

A ``Failure`` whose ``message`` is ``None`` accepts any message (the spec
fixes the type but not the text, e.g. ``TypeError`` for a wrong arity).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
from typing import Any

from . import library
from .workflow import (
    After,
    Cache,
    Call,
    Coll,
    EnvRef,
    Inject,
    Lit,
    MapCall,
    Opaque,
    ParamRef,
    Program,
    Ref,
    Retry,
    RouterArg,
    RunIf,
    Var,
    children,
    walk,
)


class Discard(Exception):
    """The example is not worth running (too many calls, values too big)."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """One possible failure: exception type name, message (None: any), task name."""

    type: str
    message: str | None
    task: str | None = None

    def matches(self, exc: BaseException) -> bool:
        return type(exc).__name__ == self.type and (
            self.message is None or str(exc) == self.message
        )

    def __str__(self) -> str:
        msg = "<any message>" if self.message is None else repr(self.message)
        return f"{self.type}({msg}) from {self.task or '<engine>'}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``kind``: 'value', 'skipped' or 'failed'."""

    kind: str
    value: Any = None
    failures: frozenset = frozenset()

    def __str__(self) -> str:
        if self.kind == "value":
            return "value " + library.canon(self.value)
        if self.kind == "skipped":
            return "skipped"
        return "failed with one of: " + "; ".join(sorted(map(str, self.failures)))


SKIPPED = Outcome("skipped")


def value(v: Any) -> Outcome:
    return Outcome("value", v)


def failed(*fs: Failure) -> Outcome:
    return Outcome("failed", failures=frozenset(fs))


def combine(outs: list[Outcome]) -> Outcome | None:
    """The joint outcome of several dependencies: failed (union) > skipped > None (all values)."""
    fails = [o for o in outs if o.kind == "failed"]
    if fails:
        return Outcome("failed", failures=frozenset().union(*(o.failures for o in fails)))
    if any(o.kind == "skipped" for o in outs):
        return SKIPPED
    return None


@dataclasses.dataclass
class Result:
    """What the reference predicts for one run.

    ``outcome`` of the target; ``calls``: multiset of ``(label, canon(args))``
    (for a failed run: the most an engine may run); ``resources``: Counter of
    ``("setup"|"teardown", name)``; ``cache``: token -> {key: value} after the
    run (feed it to a warm evaluation); ``alternative``: a second acceptable
    prediction, when an engine may legitimately report an error up front.
    """

    outcome: Outcome
    calls: collections.Counter
    resources: collections.Counter
    cache: dict
    alternative: Result | None = None  # another acceptable prediction (see precheck)


@dataclasses.dataclass
class Scope:
    env: dict  # loop task parameters (Var)
    memo: dict  # shared id -> Outcome
    defs: dict  # shared id -> expression
    markers: dict = dataclasses.field(default_factory=dict)  # shared id -> LazyMarker


def convert_param(raw: Any, typ: str) -> Any:
    if not isinstance(raw, str):
        return raw
    if typ == "int":
        return int(raw)
    if typ == "bool":
        low = raw.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(raw)
    return raw


class Reference:
    """Evaluates one program once. ``cache``: a store from a previous (cold) run."""

    def __init__(self, program: Program, cache: dict | None = None, max_calls: int = 3000):
        self.program = program
        self.loops = {lt.label: lt for lt in program.loops}
        self.sigs = {
            lt.label: inspect.Signature(
                [
                    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                    for n, _ in lt.params
                ]
            )
            for lt in program.loops
        }
        self.params = dict(program.params)
        self.env = dict(program.env)
        self.cache = {k: dict(v) for k, v in (cache or {}).items()}
        self.max_calls = max_calls
        self.calls: list = []
        self.flaky: dict = {}
        self.res_used: list[str] = []
        self.resources: collections.Counter = collections.Counter()

    # -- entry point ---------------------------------------------------------

    def run(self) -> Result:
        p = self.program
        strict, optional = self.precheck([p.target], dict(p.shared), params=True)
        alternative = None
        if strict:
            outcome = Outcome("failed", failures=frozenset(strict | optional))
        else:
            outcome = self.eval_target(p.target, Scope({}, {}, dict(p.shared)))
            if optional:  # an engine may also find these up front
                alternative = Result(
                    Outcome("failed", failures=frozenset(optional)),
                    collections.Counter(),
                    collections.Counter(),
                    {},
                )
        for name in reversed(self.res_used):  # run-scope teardown at the end
            if library.RESOURCES[name][1] != "function":
                self.resources["teardown", name] += 1
        return Result(
            outcome, collections.Counter(self.calls), self.resources, self.cache, alternative
        )

    # -- checks made before any task of a scope runs -------------------------

    def signature(self, task: str) -> inspect.Signature:
        if task in self.sigs:
            return self.sigs[task]
        return library.SPECS[task].signature

    def registered_name(self, task: str) -> str:
        lt = self.loops.get(task)
        return lt.task_name if lt is not None else task

    def precheck(self, roots: list, defs: dict, params: bool = False) -> tuple[set, set]:
        """Errors found before any task of a scope runs: ``(strict, optional)``.

        Strict ones fail the scope before any task runs: wrong arity or an
        unknown keyword (TypeError), a missing required parameter
        (ParameterError, program scope only). Optional ones an engine *may*
        find up front, since no task needs to run to see them, or meet at run
        time like any other error (the spec does not say when): a router
        whose selector is a literal that is not one of its keys (KeyError),
        a ``map`` over literal lists of different lengths (ValueError).
        """
        errors: set[Failure] = set()
        maps: set[Failure] = set()
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            for e in walk_resolved(stack.pop()):
                if isinstance(e, Ref) and e.id not in seen and e.id in defs:
                    seen.add(e.id)
                    stack.append(defs[e.id])
                elif isinstance(e, (Call, MapCall)):
                    args = e.args if isinstance(e, Call) else e.iterables
                    kws = e.kwargs if isinstance(e, Call) else e.kwiterables
                    try:
                        self.signature(e.task).bind(*args, **dict(kws))
                    except TypeError:
                        errors.add(Failure("TypeError", None, self.registered_name(e.task)))
                    if isinstance(e, MapCall):
                        its = list(e.iterables) + [v for _, v in e.kwiterables]
                        lengths = {len(v) for v in map(_literal_value, its)
                                   if type(v) in (list, tuple, dict, set, str)}
                        if len(lengths) > 1:  # literal iterables (lazy ones aside) differ
                            maps.add(Failure("ValueError", None, None))
                elif isinstance(e, RouterArg):
                    sel = e.selector
                    if isinstance(sel, Lit) and sel.value not in dict(e.routes):
                        maps.add(Failure("KeyError", None, None))
                elif (
                    params
                    and isinstance(e, ParamRef)
                    and not e.has_default
                    and e.name not in self.params
                ):
                    errors.add(Failure("ParameterError", None, None))
        return errors, maps

    # -- expressions -----------------------------------------------------------

    def eval_target(self, e: Any, sc: Scope) -> Outcome:
        """The run target: inside containers, skipped items become None."""
        if isinstance(e, Coll):
            if e.kind == "dict":
                outs = [self.eval_target(v, sc) for _, v in e.items]
            else:
                outs = [self.eval_target(x, sc) for x in e.items]
            fails = [o for o in outs if o.kind == "failed"]
            if fails:
                return Outcome("failed", failures=frozenset().union(*(o.failures for o in fails)))
            vals = [o.value if o.kind == "value" else None for o in outs]
            return value(self.build(e, vals))
        return self.ev(e, sc)

    @staticmethod
    def build(e: Coll, vals: list) -> Any:
        if e.kind == "list":
            return vals
        if e.kind == "tuple":
            return tuple(vals)
        if e.kind == "set":
            return set(vals)
        return {k.value: v for (k, _), v in zip(e.items, vals)}

    def ev(self, e: Any, sc: Scope) -> Outcome:
        if isinstance(e, Lit):
            return value(e.value)
        if isinstance(e, Var):
            return value(sc.env[e.name])
        if isinstance(e, Ref):
            if e.id not in sc.memo:
                sc.memo[e.id] = self.ev(sc.defs[e.id], sc)
            return sc.memo[e.id]
        if isinstance(e, Coll):
            items = [v for _, v in e.items] if e.kind == "dict" else list(e.items)
            outs = [self.ev(x, sc) for x in items]
            bad = combine(outs)
            return bad if bad is not None else value(self.build(e, [o.value for o in outs]))
        if isinstance(e, Opaque):
            return value(self.opaque(e, sc))
        if isinstance(e, Call):
            deps = self.call_deps(e, sc)
            if isinstance(deps, Outcome):
                return deps
            return self.cached_invoke(e, *deps)
        if isinstance(e, MapCall):
            return self.map_call(e, sc)
        if isinstance(e, ParamRef):
            raw = self.params.get(e.name, e.default)
            return value(convert_param(raw, e.type))
        if isinstance(e, EnvRef):
            return value(self.env.get(e.name, e.default))
        raise TypeError(f"reference: unexpected expression {e!r}")

    def opaque(self, e: Opaque, sc: Scope) -> Any:
        """Engines pass these through untouched: a lazy inside stays lazy.

        Each lazy becomes a marker object; a ``Ref`` gets the same marker every
        time in a scope (it is the same object for the engines, which matters
        in a frozenset or as a dict key), a ``Call`` a new one.
        """

        def item(x: Any) -> Any:
            if isinstance(x, Lit):
                return x.value
            if isinstance(x, Ref):
                return sc.markers.setdefault(x.id, library.LazyMarker())
            return library.LazyMarker()

        if e.kind == "namedtuple":
            return library.Pt(*map(item, e.items))
        if e.kind == "frozenset":
            return frozenset(map(item, e.items))
        pairs = [(item(k), item(v)) for k, v in e.items]
        if e.kind == "ordereddict":
            return collections.OrderedDict(pairs)
        if e.kind == "defaultdict":
            return collections.defaultdict(int, pairs)
        return dict(pairs)  # lazykey

    def arg(self, e: Any, sc: Scope, injected: list) -> Outcome:
        if isinstance(e, RouterArg):
            sel = self.ev(e.selector, sc)
            if sel.kind != "value":
                return sel
            routes = dict(e.routes)
            if sel.value not in routes:
                return failed(Failure("KeyError", None, None))
            return self.ev(routes[sel.value], sc)
        if isinstance(e, Inject):
            injected.append(e.name)
            return value(library.RESOURCES[e.name][2])
        return self.ev(e, sc)

    def gate(self, policies: tuple, sc: Scope) -> list[Outcome]:
        """Outcomes of a node's conditions and ``after`` dependencies (conditions as values)."""
        outs = []
        for p in policies:
            if isinstance(p, RunIf):
                outs.append(self.ev(p.cond, sc))
            elif isinstance(p, After):
                outs.extend(self.ev(d, sc) for d in p.deps)
        return outs

    @staticmethod
    def conditions_hold(policies: tuple, gate_outs: list[Outcome]) -> bool:
        it = iter(gate_outs)
        ok = True
        for p in policies:
            if isinstance(p, RunIf):
                ok = ok and bool(next(it).value)
            elif isinstance(p, After):
                for _ in p.deps:
                    next(it)
        return ok

    def call_deps(self, e: Call, sc: Scope):
        """A call's dependencies: an Outcome (failed/skipped) or (args, kwargs, injected)."""
        injected: list[str] = []
        arg_outs = [self.arg(a, sc, injected) for a in e.args]
        kw_outs = [self.arg(v, sc, injected) for _, v in e.kwargs]
        gate_outs = self.gate(e.policies, sc)
        bad = combine(arg_outs + kw_outs + gate_outs)
        if bad is not None:
            return bad
        if not self.conditions_hold(e.policies, gate_outs):
            return SKIPPED
        args = tuple(o.value for o in arg_outs)
        kwargs = {k: o.value for (k, _), o in zip(e.kwargs, kw_outs)}
        return args, kwargs, injected

    def cached_invoke(self, e: Call, args: tuple, kwargs: dict, injected: list) -> Outcome:
        cache = next((p for p in e.policies if isinstance(p, Cache)), None)
        retry = next((p for p in e.policies if isinstance(p, Retry)), None)
        if cache is None:
            return self.invoke(e.task, args, kwargs, retry, injected)
        key = library.canon((args, kwargs))
        store = self.cache.setdefault(cache.token, {})
        if key in store:
            return value(store[key])
        out = self.invoke(e.task, args, kwargs, retry, injected)
        if out.kind == "value":
            store[key] = out.value
        return out

    def map_call(self, e: MapCall, sc: Scope) -> Outcome:
        it_outs = [self.ev(x, sc) for x in e.iterables]
        kw_outs = [self.ev(v, sc) for _, v in e.kwiterables]
        gate_outs = self.gate(e.policies, sc)
        bad = combine(it_outs + kw_outs + gate_outs)
        if bad is not None:
            return bad
        if not self.conditions_hold(e.policies, gate_outs):
            return SKIPPED
        seqs = [o.value for o in it_outs]
        kwseqs = {k: o.value for (k, _), o in zip(e.kwiterables, kw_outs)}
        lengths = {len(s) for s in seqs} | {len(s) for s in kwseqs.values()}
        if len(lengths) > 1:
            return failed(Failure("ValueError", None, None))
        n = lengths.pop() if lengths else 0
        retry = next((p for p in e.policies if isinstance(p, Retry)), None)
        outs = [
            self.invoke(
                e.task, tuple(s[i] for s in seqs), {k: s[i] for k, s in kwseqs.items()}, retry, []
            )
            for i in range(n)
        ]
        bad = combine(outs)
        return bad if bad is not None else value([o.value for o in outs])

    # -- invocations -----------------------------------------------------------

    def log(self, label: str, values: tuple) -> None:
        if library.too_big(values):
            raise Discard("arguments too big")
        self.calls.append((label, library.canon(values)))
        if len(self.calls) > self.max_calls:
            raise Discard(f"more than {self.max_calls} calls")

    def use_resources(self, injected: list) -> None:
        for name in injected:
            scope, kind, _ = library.RESOURCES[name]
            if scope == "task":
                self.resources["setup", name] += 1
                if kind != "function":
                    self.resources["teardown", name] += 1
            elif name not in self.res_used:
                self.res_used.append(name)
                self.resources["setup", name] += 1

    def invoke(
        self, task: str, args: tuple, kwargs: dict, retry: Retry | None, injected: list
    ) -> Outcome:
        if task in self.loops:
            return self.run_loop(task, args, kwargs)
        spec = library.SPECS[task]
        bound = spec.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = tuple(bound.arguments.values())
        pos = [bound.arguments[n] for n, _ in spec.params]
        kwonly = {n: bound.arguments[n] for n, _ in spec.kwonly}
        if spec.stateful:
            kwonly["state"] = self.flaky
        attempts = retry.max_attempts if retry is not None else 1
        retry_on = library.RETRY_ON[retry.retry_on] if retry is not None else ()
        attempt = 0
        while True:
            attempt += 1
            self.log(task, values)
            self.use_resources(injected)
            try:
                v = spec.pure(*pos, **kwonly)
            except Exception as exc:  # noqa: BLE001 - a task's failure is an outcome
                if attempt < attempts and isinstance(exc, retry_on):
                    continue
                return failed(Failure(type(exc).__name__, str(exc), task))
            if library.too_big(v):
                raise Discard("value too big")
            return value(v)

    def continuation(self, label: str, values: tuple) -> tuple[Any, Scope]:
        """The expression a loop task returns for these arguments, and its scope."""
        lt = self.loops[label]
        env = dict(zip((n for n, _ in lt.params), values))
        n = library.clamp_counter(env["n"])
        env["n"] = n
        if n <= 0:
            expr = lt.base
        else:
            st = lt.steps[n % len(lt.steps)]
            expr = Call(st.target, (Lit(n - 1),) + st.args, (), st.policies)
        return expr, Scope(env, {}, dict(lt.shared))

    def run_loop(self, label: str, args: tuple, kwargs: dict) -> Outcome:
        """The trampoline: iterate over tail calls between loop tasks."""
        while True:
            bound = self.sigs[label].bind(*args, **kwargs)
            values = tuple(bound.arguments.values())
            self.log(label, values)
            expr, sc = self.continuation(label, values)
            pre, optional = self.precheck([expr], sc.defs)
            if pre:  # (an engine may find an optional one first: both are up front)
                return Outcome("failed", failures=frozenset(pre | optional))
            if not any(isinstance(x, (Call, MapCall)) for x in walk(expr)) and not isinstance(
                expr, (Ref,)
            ):
                return self.ev(expr, sc)  # a plain value: the loop ends
            if (
                isinstance(expr, Call)
                and expr.task in self.loops
                and not any(isinstance(p, Cache) for p in expr.policies)
            ):
                deps = self.call_deps(expr, sc)
                if isinstance(deps, Outcome):
                    return deps  # failed, or skipped: the calling node is skipped
                args, kwargs, _ = deps
                label = expr.task
                continue
            return self.ev(expr, sc)


def walk_resolved(e: Any):
    """Like ``walk``, but not into opaque containers (engines never look inside)."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        if not isinstance(x, Opaque):
            stack.extend(children(x))


def evaluate(program: Program, cache: dict | None = None, max_calls: int = 3000) -> Result:
    """Evaluate ``program`` once (``cache``: the store left by a previous run)."""
    return Reference(program, cache=cache, max_calls=max_calls).run()


_NOT_LITERAL = object()


def _literal_value(e: Any) -> Any:
    """The value of an expression made of literals only (a ``Lit``, or a ``Coll`` of
    them at any depth), else ``_NOT_LITERAL``: what a ``map`` checks up front for
    its iterables' lengths (``MapTask.check_literal_lengths``)."""
    if isinstance(e, Lit):
        return e.value
    if not isinstance(e, Coll):
        return _NOT_LITERAL
    if e.kind == "dict":
        vals = [_literal_value(v) for _, v in e.items]
    else:
        vals = [_literal_value(x) for x in e.items]
    if any(v is _NOT_LITERAL for v in vals):
        return _NOT_LITERAL
    return Reference.build(e, vals)
