"""Workflows as data: the AST the differential harness generates.

A ``Program`` is a target expression plus three tables: shared nodes
(``Ref(id)`` to one of them means *the same* ``LazyResult`` object wherever it
appears), loop tasks (tasks whose body returns a tail call, generated per
program) and run inputs (params, environment).

Expressions (all frozen dataclasses, all JSON-serialisable):

=============  =============================================================
``Lit``        a scalar: ``None``, ``bool``, ``int``, ``str``
``Var``        a parameter of the enclosing loop task (a plain value)
``Ref``        a shared node of the enclosing scope (program or loop body)
``Coll``       an exact ``list``/``tuple``/``set``/``dict`` of expressions;
               engines search it for lazy values
``Opaque``     a container the engines must NOT search: ``namedtuple``,
               ``frozenset``, ``OrderedDict``, ``defaultdict``, or a dict whose
               *keys* are lazy (``lazykey``); lazies inside stay lazies
``Call``       a call of a library task or loop task, with policies
``MapCall``    ``task.map(*iterables, **kwiterables)`` with policies
``RouterArg``  ``Router(selector, routes)``, only as a direct call argument
``ParamRef``   ``Param(name, default, type)``
``EnvRef``     ``Env(name, default)``
``Inject``     ``inject(name)`` (a resource), only as a direct call argument
=============  =============================================================

Policies (``Call.policies``, applied in order): ``RunIf``, ``After``,
``Retry``, ``Timeout``, ``Cache``.

A ``LoopTask`` has parameters ``n, p1, p2, ...`` (``n`` an int counter). Its
body clamps ``n`` to ``library.MAX_LOOP``; if ``n <= 0`` it returns ``base``
(a pure expression, or a call: a tail call out of the loop), else it returns
``steps[n % len(steps)]`` called with ``n - 1`` prepended to the step's
arguments: a tail call to another task of the same family (mutual recursion
across tasks of different shapes). Step and base expressions may call loop
tasks of *lower* families only outside tail position, so every program
terminates.

JSON form (compact enough to write by hand, see ``corpus/*.json``): a bare
scalar is a ``Lit``; otherwise an object whose first key names the kind, e.g.
``{"call": "add", "args": [1, {"ref": "s0"}]}``. ``to_json``/``from_json``
convert; ``to_python`` renders a program as a runnable Python reproduction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    value: Any  # None, bool, int or str


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Ref:
    id: str


@dataclass(frozen=True)
class Coll:
    kind: str  # list, tuple, set, dict
    items: tuple  # exprs; for dict: (Lit(str) key, expr) pairs


@dataclass(frozen=True)
class Opaque:
    kind: str  # namedtuple, frozenset, ordereddict, defaultdict, lazykey
    items: tuple  # namedtuple: 2 exprs; frozenset: exprs; dicts: (key, value) pairs


@dataclass(frozen=True)
class RunIf:
    cond: Any  # Expr


@dataclass(frozen=True)
class After:
    deps: tuple  # exprs (lazy)


@dataclass(frozen=True)
class Retry:
    max_attempts: int
    retry_on: str = "Exception"  # a key of library.RETRY_ON


@dataclass(frozen=True)
class Timeout:
    seconds: float


@dataclass(frozen=True)
class Cache:
    token: str  # unique per node: the node gets its own store


Policy = RunIf | After | Retry | Timeout | Cache


@dataclass(frozen=True)
class Call:
    task: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, expr) pairs
    policies: tuple = ()


@dataclass(frozen=True)
class MapCall:
    task: str
    iterables: tuple = ()
    kwiterables: tuple = ()  # (name, expr) pairs
    policies: tuple = ()


@dataclass(frozen=True)
class RouterArg:
    selector: Any  # Expr
    routes: tuple  # (key str, expr) pairs


@dataclass(frozen=True)
class ParamRef:
    name: str
    type: str = "str"  # int, str, bool
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class EnvRef:
    name: str
    default: Any = None


@dataclass(frozen=True)
class Inject:
    name: str


Expr = Lit | Var | Ref | Coll | Opaque | Call | MapCall | RouterArg | ParamRef | EnvRef | Inject

# ---------------------------------------------------------------------------
# Loops and programs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    target: str  # label of a loop task of the same family
    args: tuple  # exprs for the target's parameters after n
    policies: tuple = ()


@dataclass(frozen=True)
class LoopTask:
    label: str  # unique label (the call log uses it)
    params: tuple  # (name, type) pairs; the first is ("n", "int")
    ret: str
    base: Any  # Expr
    steps: tuple  # Step
    name: str = ""  # the registered task name ("" = label); may repeat!
    is_async: bool = False
    shared: tuple = ()  # (id, expr) pairs, local to one invocation's continuation
    family: int = 0

    @property
    def task_name(self) -> str:
        return self.name or self.label


@dataclass(frozen=True)
class Program:
    target: Any  # Expr
    shared: tuple = ()  # (id, expr) pairs, in dependency order
    loops: tuple = ()  # LoopTask
    params: tuple = ()  # (name, value) pairs given to run(params=...)
    env: tuple = ()  # (name, value) pairs set in os.environ during the run
    features: tuple = ()  # the swarm features drawn (informational)

    def loop(self, label: str) -> LoopTask | None:
        for lt in self.loops:
            if lt.label == label:
                return lt
        return None


# ---------------------------------------------------------------------------
# Walking
# ---------------------------------------------------------------------------


def children(e: Any) -> Iterator[Any]:
    """Direct sub-expressions of ``e`` (policies' expressions included)."""
    if isinstance(e, (Coll, Opaque)):
        if e.kind in ("dict", "ordereddict", "defaultdict", "lazykey"):
            for k, v in e.items:
                yield k
                yield v
        else:
            yield from e.items
    elif isinstance(e, Call):
        yield from e.args
        for _, v in e.kwargs:
            yield v
        yield from policy_exprs(e.policies)
    elif isinstance(e, MapCall):
        yield from e.iterables
        for _, v in e.kwiterables:
            yield v
        yield from policy_exprs(e.policies)
    elif isinstance(e, RouterArg):
        yield e.selector
        for _, v in e.routes:
            yield v


def policy_exprs(policies: tuple) -> Iterator[Any]:
    for p in policies:
        if isinstance(p, RunIf):
            yield p.cond
        elif isinstance(p, After):
            yield from p.deps


def walk(e: Any) -> Iterator[Any]:
    """Every expression under ``e`` (``e`` included), pre-order, iterative."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(list(children(x))))


def program_exprs(p: Program) -> Iterator[Any]:
    """Every expression of the program: target, shared defs, loop bodies."""
    yield from walk(p.target)
    for _, d in p.shared:
        yield from walk(d)
    for lt in p.loops:
        yield from walk(lt.base)
        for _, d in lt.shared:
            yield from walk(d)
        for st in lt.steps:
            for a in st.args:
                yield from walk(a)
            yield from (x for pe in policy_exprs(st.policies) for x in walk(pe))


def all_policies(p: Program) -> Iterator[Any]:
    for e in program_exprs(p):
        if isinstance(e, (Call, MapCall)):
            yield from e.policies
    for lt in p.loops:
        for st in lt.steps:
            yield from st.policies


def api_features(p: Program) -> set[str]:
    """The engine features (beyond plain calls and tail calls) a program uses.

    Used to skip corpus cases whose features the engines do not implement yet.
    """
    from . import library

    used: set[str] = set()
    for e in program_exprs(p):
        if isinstance(e, Call):
            spec = library.SPECS.get(e.task)
            if spec is not None and spec.feature in ("offload",):
                used.add(spec.feature)
        elif isinstance(e, MapCall):
            used.add("map")
        elif isinstance(e, RouterArg):
            used.add("router")
        elif isinstance(e, ParamRef):
            used.add("param")
        elif isinstance(e, EnvRef):
            used.add("env")
        elif isinstance(e, Inject):
            used.add("resources")
    kinds = {RunIf: "run_if", After: "after", Retry: "retry", Timeout: "timeout", Cache: "cache"}
    for pol in all_policies(p):
        used.add(kinds[type(pol)])
    return used


def validate(p: Program) -> list[str]:
    """Why ``p`` is not a well-formed program (empty: it is).

    The generator only makes well-formed programs; the AST minimizer uses this
    to reject edits that would make one ill-formed (a router moved out of an
    argument position, a dangling reference, ...). Well-formed is structural;
    the oracle still checks the meaning.
    """
    from . import library

    errors: list[str] = []
    labels = {lt.label: lt for lt in p.loops}
    caches: list[str] = []

    def check(e: Any, scope: str, refs: set, vars_: set, arg_position: bool = False) -> None:
        stack = [(e, arg_position)]
        while stack:
            x, argpos = stack.pop()
            if isinstance(x, (RouterArg, Inject)) and not argpos:
                errors.append(f"{type(x).__name__} outside a call argument in {scope}")
            if isinstance(x, Lit) and not (x.value is None or type(x.value) in (bool, int, str)):
                errors.append(f"non-scalar literal {x.value!r} in {scope}")
            elif isinstance(x, Var) and x.name not in vars_:
                errors.append(f"unknown variable {x.name} in {scope}")
            elif isinstance(x, Ref) and x.id not in refs:
                errors.append(f"undefined reference {x.id} in {scope}")
            elif isinstance(x, (ParamRef, EnvRef)) and vars_:
                errors.append(f"Param/Env inside loop task {scope}")
            elif isinstance(x, (Call, MapCall)):
                if x.task not in library.SPECS and x.task not in labels:
                    errors.append(f"unknown task {x.task} in {scope}")
                for pol in x.policies:
                    if isinstance(pol, After) and not all(
                        isinstance(d, (Call, MapCall, Ref)) for d in pol.deps
                    ):
                        errors.append(f".after() of a value that is not lazy in {scope}")
                    if isinstance(pol, Cache):
                        caches.append(pol.token)
                        if vars_:
                            errors.append(f"with_cache inside loop task {scope}")
                if isinstance(x, Call):
                    stack.extend((a, True) for a in x.args)
                    stack.extend((v, True) for _, v in x.kwargs)
                else:
                    stack.extend((a, False) for a in x.iterables)
                    stack.extend((v, False) for _, v in x.kwiterables)
                stack.extend((c, False) for c in policy_exprs(x.policies))
                continue
            elif isinstance(x, Opaque):
                for item in children(x):
                    if not isinstance(item, (Lit, Call, Ref)):
                        errors.append(f"opaque container item {type(item).__name__} in {scope}")
            elif isinstance(x, Coll) and x.kind == "dict":
                keys = [k for k, _ in x.items]
                if not all(isinstance(k, Lit) and type(k.value) in (str, int, bool) for k in keys):
                    errors.append(f"dict literal with a key not a str, int or bool in {scope}")
                elif len({k.value for k in keys}) != len(keys):
                    errors.append(f"dict literal with a repeated key in {scope}")
            elif isinstance(x, RouterArg):
                if len({k for k, _ in x.routes}) != len(x.routes):
                    errors.append(f"router with a repeated key in {scope}")
                for _, r in x.routes:
                    if not isinstance(r, (Call, MapCall, Ref)):
                        errors.append(f"router route that is not lazy in {scope}")
            stack.extend((c, False) for c in children(x))

    refs: set = set()
    for sid, d in p.shared:
        if not isinstance(d, (Call, MapCall)):
            errors.append(f"shared node {sid} is not a call")
        check(d, f"shared {sid}", refs, set())
        refs.add(sid)
    check(p.target, "target", refs, set())
    for lt in p.loops:
        names = {n for n, _ in lt.params}
        if not lt.params or lt.params[0] != ("n", "int"):
            errors.append(f"loop task {lt.label}: the first parameter must be n:int")
        if not lt.steps:
            errors.append(f"loop task {lt.label} has no step")
        local: set = set()
        for sid, d in lt.shared:
            if not isinstance(d, (Call, MapCall)):
                errors.append(f"{lt.label}: shared node {sid} is not a call")
            check(d, f"{lt.label} shared {sid}", local, names)
            local.add(sid)
        check(lt.base, f"{lt.label} base", local, names)
        if not isinstance(lt.base, (Call, MapCall, Ref)) and any(
            isinstance(x, (Call, MapCall, Ref)) for x in walk(lt.base)
        ):
            errors.append(f"{lt.label} base returns a container holding lazies")
        for st in lt.steps:
            tgt = labels.get(st.target)
            if tgt is None or tgt.family != lt.family:
                errors.append(f"{lt.label} steps to {st.target}, not a task of its family")
            for a in st.args:
                check(a, f"{lt.label} step", local, names, arg_position=True)
            for c in policy_exprs(st.policies):
                check(c, f"{lt.label} step policy", local, names)
        for e in program_exprs(Program(target=lt.base, shared=lt.shared)):
            if isinstance(e, Call) and e.task in labels and labels[e.task].family >= lt.family:
                errors.append(f"{lt.label} calls {e.task} outside tail position (family order)")
        for st in lt.steps:
            for a in st.args:
                for e in walk(a):
                    if (
                        isinstance(e, Call)
                        and e.task in labels
                        and labels[e.task].family >= lt.family
                    ):
                        errors.append(
                            f"{lt.label} calls {e.task} in a step argument (family order)"
                        )
    if len(set(caches)) != len(caches):
        errors.append("two with_cache nodes share a store token")
    return errors


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def _pairs(ps, f) -> list:
    return [[k, f(v)] for k, v in ps]


def expr_to_json(e: Any) -> Any:
    if isinstance(e, Lit):
        return e.value
    if isinstance(e, Var):
        return {"var": e.name}
    if isinstance(e, Ref):
        return {"ref": e.id}
    if isinstance(e, (Coll, Opaque)):
        tag = "coll" if isinstance(e, Coll) else "opaque"
        if e.kind in ("dict", "ordereddict", "defaultdict", "lazykey"):
            items = [[expr_to_json(k), expr_to_json(v)] for k, v in e.items]
        else:
            items = [expr_to_json(x) for x in e.items]
        return {tag: e.kind, "items": items}
    if isinstance(e, Call):
        d: dict = {"call": e.task, "args": [expr_to_json(a) for a in e.args]}
        if e.kwargs:
            d["kwargs"] = _pairs(e.kwargs, expr_to_json)
        if e.policies:
            d["policies"] = [policy_to_json(p) for p in e.policies]
        return d
    if isinstance(e, MapCall):
        d = {"map": e.task, "iterables": [expr_to_json(a) for a in e.iterables]}
        if e.kwiterables:
            d["kwiterables"] = _pairs(e.kwiterables, expr_to_json)
        if e.policies:
            d["policies"] = [policy_to_json(p) for p in e.policies]
        return d
    if isinstance(e, RouterArg):
        return {"router": expr_to_json(e.selector), "routes": _pairs(e.routes, expr_to_json)}
    if isinstance(e, ParamRef):
        d = {"param": e.name, "type": e.type}
        if e.has_default:
            d["default"] = e.default
        return d
    if isinstance(e, EnvRef):
        return {"env": e.name, "default": e.default}
    if isinstance(e, Inject):
        return {"inject": e.name}
    raise TypeError(f"not an expression: {e!r}")


def policy_to_json(p: Any) -> dict:
    if isinstance(p, RunIf):
        return {"run_if": expr_to_json(p.cond)}
    if isinstance(p, After):
        return {"after": [expr_to_json(x) for x in p.deps]}
    if isinstance(p, Retry):
        return {"retry": p.max_attempts, "retry_on": p.retry_on}
    if isinstance(p, Timeout):
        return {"timeout": p.seconds}
    if isinstance(p, Cache):
        return {"cache": p.token}
    raise TypeError(f"not a policy: {p!r}")


def expr_from_json(j: Any) -> Any:
    if j is None or isinstance(j, (bool, int, str)):
        return Lit(j)
    if not isinstance(j, dict):
        raise TypeError(f"bad expression JSON: {j!r}")
    if "var" in j:
        return Var(j["var"])
    if "ref" in j:
        return Ref(j["ref"])
    if "coll" in j or "opaque" in j:
        cls, kind = (Coll, j["coll"]) if "coll" in j else (Opaque, j["opaque"])
        if kind in ("dict", "ordereddict", "defaultdict", "lazykey"):
            items = tuple((expr_from_json(k), expr_from_json(v)) for k, v in j["items"])
        else:
            items = tuple(expr_from_json(x) for x in j["items"])
        return cls(kind, items)
    if "call" in j:
        return Call(
            j["call"],
            tuple(expr_from_json(a) for a in j.get("args", ())),
            tuple((k, expr_from_json(v)) for k, v in j.get("kwargs", ())),
            tuple(policy_from_json(p) for p in j.get("policies", ())),
        )
    if "map" in j:
        return MapCall(
            j["map"],
            tuple(expr_from_json(a) for a in j.get("iterables", ())),
            tuple((k, expr_from_json(v)) for k, v in j.get("kwiterables", ())),
            tuple(policy_from_json(p) for p in j.get("policies", ())),
        )
    if "router" in j:
        return RouterArg(
            expr_from_json(j["router"]), tuple((k, expr_from_json(v)) for k, v in j["routes"])
        )
    if "param" in j:
        return ParamRef(j["param"], j.get("type", "str"), j.get("default"), "default" in j)
    if "env" in j:
        return EnvRef(j["env"], j.get("default"))
    if "inject" in j:
        return Inject(j["inject"])
    raise ValueError(f"bad expression JSON: {j!r}")


def policy_from_json(j: dict) -> Any:
    if "run_if" in j:
        return RunIf(expr_from_json(j["run_if"]))
    if "after" in j:
        return After(tuple(expr_from_json(x) for x in j["after"]))
    if "retry" in j:
        return Retry(j["retry"], j.get("retry_on", "Exception"))
    if "timeout" in j:
        return Timeout(j["timeout"])
    if "cache" in j:
        return Cache(j["cache"])
    raise ValueError(f"bad policy JSON: {j!r}")


def to_json(p: Program) -> dict:
    d: dict = {"target": expr_to_json(p.target)}
    if p.shared:
        d["shared"] = _pairs(p.shared, expr_to_json)
    if p.loops:
        d["loops"] = [loop_to_json(lt) for lt in p.loops]
    if p.params:
        d["params"] = [[k, v] for k, v in p.params]
    if p.env:
        d["env"] = [[k, v] for k, v in p.env]
    if p.features:
        d["features"] = list(p.features)
    return d


def loop_to_json(lt: LoopTask) -> dict:
    d: dict = {
        "label": lt.label,
        "params": [[n, t] for n, t in lt.params],
        "ret": lt.ret,
        "base": expr_to_json(lt.base),
        "steps": [
            {
                "target": s.target,
                "args": [expr_to_json(a) for a in s.args],
                **({"policies": [policy_to_json(x) for x in s.policies]} if s.policies else {}),
            }
            for s in lt.steps
        ],
    }
    if lt.name:
        d["name"] = lt.name
    if lt.is_async:
        d["async"] = True
    if lt.shared:
        d["shared"] = _pairs(lt.shared, expr_to_json)
    if lt.family:
        d["family"] = lt.family
    return d


def loop_from_json(j: dict) -> LoopTask:
    return LoopTask(
        label=j["label"],
        params=tuple((n, t) for n, t in j["params"]),
        ret=j.get("ret", "any"),
        base=expr_from_json(j["base"]),
        steps=tuple(
            Step(
                s["target"],
                tuple(expr_from_json(a) for a in s.get("args", ())),
                tuple(policy_from_json(x) for x in s.get("policies", ())),
            )
            for s in j.get("steps", ())
        ),
        name=j.get("name", ""),
        is_async=j.get("async", False),
        shared=tuple((k, expr_from_json(v)) for k, v in j.get("shared", ())),
        family=j.get("family", 0),
    )


def from_json(d: dict) -> Program:
    return Program(
        target=expr_from_json(d["target"]),
        shared=tuple((k, expr_from_json(v)) for k, v in d.get("shared", ())),
        loops=tuple(loop_from_json(x) for x in d.get("loops", ())),
        params=tuple((k, v) for k, v in d.get("params", ())),
        env=tuple((k, v) for k, v in d.get("env", ())),
        features=tuple(d.get("features", ())),
    )


def dumps(p: Program) -> str:
    return json.dumps(to_json(p), sort_keys=False)


def digest(p: Program) -> str:
    """A short content hash (corpus file names)."""
    core = to_json(dataclasses.replace(p, features=()))
    return hashlib.sha1(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def size(p: Program) -> int:
    """Number of expression nodes (a rough measure of an example's size)."""
    return sum(1 for _ in program_exprs(p))


# ---------------------------------------------------------------------------
# Python rendering (the failure report's reproduction)
# ---------------------------------------------------------------------------

_PY_TYPES = {"int": "int", "str": "str", "bool": "bool"}


def expr_to_python(e: Any) -> str:
    if isinstance(e, Lit):
        return repr(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Ref):
        return e.id
    if isinstance(e, Coll):
        if e.kind == "list":
            return "[" + ", ".join(map(expr_to_python, e.items)) + "]"
        if e.kind == "tuple":
            inner = ", ".join(map(expr_to_python, e.items))
            return "(" + inner + ("," if len(e.items) == 1 else "") + ")"
        if e.kind == "set":
            if not e.items:
                return "set()"
            return "{" + ", ".join(map(expr_to_python, e.items)) + "}"
        return (
            "{" + ", ".join(f"{expr_to_python(k)}: {expr_to_python(v)}" for k, v in e.items) + "}"
        )
    if isinstance(e, Opaque):
        if e.kind == "namedtuple":
            return "L.Pt(" + ", ".join(map(expr_to_python, e.items)) + ")"
        if e.kind == "frozenset":
            return "frozenset([" + ", ".join(map(expr_to_python, e.items)) + "])"
        pairs = ", ".join(f"{expr_to_python(k)}: {expr_to_python(v)}" for k, v in e.items)
        if e.kind == "ordereddict":
            return "collections.OrderedDict({" + pairs + "})"
        if e.kind == "defaultdict":
            return "collections.defaultdict(int, {" + pairs + "})"
        return "{" + pairs + "}"  # lazykey
    if isinstance(e, Call):
        args = [expr_to_python(a) for a in e.args]
        args += [f"{k}={expr_to_python(v)}" for k, v in e.kwargs]
        return f"{e.task}({', '.join(args)})" + policies_to_python(e.policies)
    if isinstance(e, MapCall):
        args = [expr_to_python(a) for a in e.iterables]
        args += [f"{k}={expr_to_python(v)}" for k, v in e.kwiterables]
        return f"{e.task}.map({', '.join(args)})" + policies_to_python(e.policies)
    if isinstance(e, RouterArg):
        routes = ", ".join(f"{k!r}: {expr_to_python(v)}" for k, v in e.routes)
        return f"Router({expr_to_python(e.selector)}, routes={{{routes}}})"
    if isinstance(e, ParamRef):
        d = f", default={e.default!r}" if e.has_default else ""
        return f"Param({e.name!r}{d}, type={_PY_TYPES[e.type]})"
    if isinstance(e, EnvRef):
        return f"Env({e.name!r}, default={e.default!r})"
    if isinstance(e, Inject):
        return f"inject({e.name!r})"
    raise TypeError(f"not an expression: {e!r}")


def policies_to_python(policies: tuple) -> str:
    out = []
    for p in policies:
        if isinstance(p, RunIf):
            out.append(f".run_if({expr_to_python(p.cond)})")
        elif isinstance(p, After):
            out.append(f".after({', '.join(map(expr_to_python, p.deps))})")
        elif isinstance(p, Retry):
            out.append(f".with_retry(max_attempts={p.max_attempts}, retry_on=({p.retry_on},))")
        elif isinstance(p, Timeout):
            out.append(f".with_timeout({p.seconds!r})")
        elif isinstance(p, Cache):
            out.append(f".with_cache(store=STORES[{p.token!r}])")
    return "".join(out)


def _refs_needed(exprs: list, defs: tuple) -> list[tuple[str, Any]]:
    """The shared defs (in definition order) that ``exprs`` need, transitively."""
    table = dict(defs)
    need: set[str] = set()
    stack = list(exprs)
    while stack:
        for x in walk(stack.pop()):
            if isinstance(x, Ref) and x.id in table and x.id not in need:
                need.add(x.id)
                stack.append(table[x.id])
    return [(k, v) for k, v in defs if k in need]


def _loop_to_python(lt: LoopTask) -> list[str]:
    names = [n for n, _ in lt.params]
    deco = f"@task(name={lt.task_name!r})"
    head = f"{'async ' if lt.is_async else ''}def {lt.label}({', '.join(names)}):"
    body = [f"    L.log({lt.label!r}, {', '.join(names)})"]
    if lt.is_async:
        body.append("    await asyncio.sleep(0)")
    body.append("    n = L.clamp_counter(n)")

    def branch(expr: Any, indent: str) -> list[str]:
        lines = [f"{indent}{k} = {expr_to_python(v)}" for k, v in _refs_needed([expr], lt.shared)]
        return lines + [f"{indent}return {expr_to_python(expr)}"]

    body.append("    if n <= 0:")
    body += branch(lt.base, "        ")
    k = len(lt.steps)
    for i, st in enumerate(lt.steps):
        call = Call(st.target, (Lit("<n-1>"),) + st.args, (), st.policies)
        text = branch(call, "        " if k > 1 else "    ")
        text = [t.replace("'<n-1>'", "n - 1") for t in text]
        if k > 1:
            body.append(f"    if n % {k} == {i}:")
        body += text
    return [deco, head] + body


def to_python(p: Program) -> str:
    """A runnable Python reproduction of ``p`` (run from the repository root)."""
    from . import library

    used = sorted(
        {
            e.task
            for e in program_exprs(p)
            if isinstance(e, (Call, MapCall)) and e.task in library.SPECS
        }
    )
    lines = [
        "import asyncio, collections, os",
        "from cascade_graph import task",
        "from cascade_vm import run",
        "from tests.differential import library as L",
    ]
    feats = api_features(p)
    extra = [
        n
        for n, f in (
            ("Router", "router"),
            ("Param", "param"),
            ("Env", "env"),
            ("inject", "resources"),
        )
        if f in feats
    ]
    if "cache" in feats:
        extra.append("MemoryStore")
    if extra:
        lines.append(f"from cascade_graph import {', '.join(extra)}")
    if "resources" in feats:
        lines.append("import tests.differential.build  # registers the fz_* resources")
    for k, v in p.env:
        lines.append(f"os.environ[{k!r}] = {v!r}")
    for name in used:
        spec = library.SPECS[name]
        deco = "task(offload=True)" if spec.offload else "task"
        lines.append(f"{name} = {deco}(L.{name})")
    lines.append("")
    for lt in p.loops:
        lines += _loop_to_python(lt) + [""]
    lines.append("def build():")
    if "cache" in feats:
        lines.append("    global STORES")
        lines.append("    STORES = collections.defaultdict(MemoryStore)")
    for k, v in p.shared:
        lines.append(f"    {k} = {expr_to_python(v)}")
    lines.append(f"    return {expr_to_python(p.target)}")
    lines.append("")
    params = f", params={dict(p.params)!r}" if p.params else ""
    lines += [
        "for engine in ('vm', 'graph'):",
        "    for tail_cache in (True, False):",
        "        for hot_path in (True, False):",
        "            L.reset()",
        "            try:",
        "                value = run(build(), engine=engine, tail_cache=tail_cache,",
        f"                            hot_path=hot_path{params})",
        "                out = L.canon(value)",
        "            except Exception as e:",
        "                out = f'{type(e).__name__}: {e}'",
        "            print(engine, tail_cache, hot_path, out, sorted(L.RUN.calls))",
    ]
    return "\n".join(lines) + "\n"
