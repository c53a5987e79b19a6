"""Hypothesis strategies for Cascade's tests.

``programs()`` generates random workflows as data (``tests/differential/
workflow.py``), swarm-style: each example first draws which features are on
(one boolean per feature, so shrinking turns features off), then builds a
type-directed program over the task library (``library.SPECS``) using only
those features. Every program is valid and deterministic by construction:

* arguments are well typed (a tiny type system: int, str, ilist, iset,
  dict, any), so no task fails except on purpose (``must_pos``, ``div``,
  ``pick``, ``flaky``, a deliberately wrong arity);
* loop tasks clamp and decrement their counter, call only lower families
  outside tail position, and never return a container holding lazies;
* nothing depends on scheduling: ``flaky`` always gets enough retries,
  ``with_cache`` nodes each get their own store and appear only outside loop
  bodies and maps, dict literals never repeat a key, sets hold ints only.

The recursion is written with ``@st.composite`` and explicit budgets (depth
and number of call nodes) rather than ``st.recursive``, because generation
is contextual: which variables, shared nodes and loop families are in scope
depends on where the expression sits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import strategies as st

from tests.differential import features as features_mod
from tests.differential import library
from tests.differential.workflow import (
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
    Step,
    Timeout,
    Var,
    walk,
)

TYPES = ("int", "str", "ilist", "iset", "dict", "any")
CONCRETE = ("int", "str", "ilist", "iset", "dict")
STRS = ("", "a", "bc", "xyz")
#: dict keys: one pool per dict (no two keys of a pool are equal); across pools, keys
#: equal in value but not in type (0 and False, 1 and True) must stay apart
DICT_KEY_POOLS = (("k0", "k1", "k2", "z"), (0, 1, 2, "z"), (False, True, 2, "z"))
PARAM_DECLS = {"fz_n": "int", "fz_s": "str", "fz_b": "bool"}
ENV_NAMES = ("CASCADE_FZ_E0", "CASCADE_FZ_E1")


def fits(have: str, want: str) -> bool:
    return want == "any" or have == want


@dataclass
class Scope:
    """Where an expression is generated.

    ``vars``: loop task parameters in scope (name -> type). ``refs``: shared
    node ids usable here (id, type). ``max_family``: loop tasks of families
    below this may be called. ``top``: the program scope (params and env are
    allowed there). ``pool``: expressions generated so far, for duplicates.
    ``in_loop``: inside a loop body (no cache).
    """

    vars: dict = field(default_factory=dict)
    refs: list = field(default_factory=list)
    max_family: int = 0
    top: bool = True
    in_loop: bool = False
    pool: list = field(default_factory=list)  # (type, expr)


class Gen:
    def __init__(self, draw, on: frozenset[str], budget: int, fans: bool = False):
        self.draw = draw
        self.on = on
        self.fans = fans  # also draw fan-outs of flat calls directly (batches)
        self.fan_shared: list = []  # (sid, item): fan items made shared definitions
        self.budget = budget  # call nodes left
        self.loops: list[LoopTask] = []
        self.loop_headers: list[dict] = []  # label, params, ret, family, is_async, name
        self.skip_families: set[int] = set()
        self.tokens = itertools.count()
        self.ids = itertools.count()
        self.params: dict = {}  # name -> (type, has_default, default)
        self.param_values: list = []
        self.env_defaults: dict = {}
        self.env_values: list = []
        self.saw_run_if = False
        self.bad_left = 1 if "bad_arity" in on and self.flip(1, 3) else 0

    # -- small draws --

    def flip(self, num: int = 1, den: int = 2) -> bool:
        return self.draw(st.integers(0, den - 1)) < num

    def pick(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def n(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    # -- program --

    def program(self) -> Program:
        if "param" in self.on:
            for name, typ in PARAM_DECLS.items():
                has_default = self.flip(1, 2)
                default = self.param_literal(typ) if has_default else None
                self.params[name] = (typ, has_default, default)
                if not has_default and self.flip(1, 6):
                    continue  # missing and required: ParameterError
                if has_default and self.flip():
                    continue  # default applies
                self.param_values.append((name, self.param_literal(typ)))
        if "env" in self.on:
            for name in ENV_NAMES:
                self.env_defaults[name] = self.pick(STRS)
                if self.flip():
                    self.env_values.append((name, self.pick(("e1", "e22", ""))))
        total = self.budget
        if "loops" in self.on:
            self.gen_loops()
        top = Scope(max_family=1 << 30, top=True)
        shared = []
        if "sharing" in self.on:
            for _ in range(self.n(0, 3)):
                t = self.pick(TYPES)
                self.budget = self.n(1, 3)
                d = self.call_expr(t, top, depth=2)
                if d is None:
                    break
                sid = f"s{next(self.ids)}"
                shared.append((sid, d))
                top.refs.append((sid, t))
        self.budget = total
        target = self.target_expr(top)
        used = {x.id for x in walk(target) if isinstance(x, Ref)}
        for _, d in shared:
            used |= {x.id for x in walk(d) if isinstance(x, Ref)}
        unused = [Ref(sid) for sid, _ in shared if sid not in used]
        if unused and self.flip():
            target = Coll("tuple", (target, *unused))
        if self.fan_shared:
            shared += self.fan_shared
            if self.flip():
                target = Coll("tuple", (target, Ref(self.pick([s for s, _ in self.fan_shared]))))
        return Program(
            target=target,
            shared=tuple(shared),
            loops=tuple(self.loops),
            params=tuple(self.param_values),
            env=tuple(self.env_values),
            features=tuple(sorted(self.on)),
        )

    def param_literal(self, typ: str):
        if typ == "int":
            return self.pick(("0", "3", "7", "-2", 5))
        if typ == "bool":
            return self.pick(("true", "false", "yes", "no", "1", "0", True, False))
        return self.pick(("p", "qq", ""))

    def target_expr(self, sc: Scope):
        if self.loop_headers and self.flip(2, 3):
            top_fam = self.loop_headers[-1]["family"]
            cands = [h for h in self.loop_headers if h["family"] == top_fam or self.flip(1, 3)]
            self.budget = max(self.budget, 1)
            self.budget -= 1
            return self.loop_call(self.pick(cands), sc, 2, bad_ok=True)
        if self.flip(1, 3):
            kind = self.pick(("list", "tuple", "dict"))
            k = self.n(1, 3)
            items = [self.expr(self.pick(TYPES), sc, 3) for _ in range(k)]
            if kind == "dict":
                keys = self.dict_keys()[:k]
                return Coll("dict", tuple((Lit(kk), v) for kk, v in zip(keys, items)))
            return Coll(kind, tuple(items))
        t = self.pick(TYPES)
        return self.call_expr(t, sc, self.n(2, 4)) or self.expr(t, sc, self.n(2, 4))

    # -- loops --

    def gen_loops(self) -> None:
        nfam = self.n(1, 3)
        for fam in range(nfam):
            members = self.n(2, 3) if "mutual" in self.on else 1
            ret = self.pick(TYPES)
            headers = []
            for i in range(members):
                label = f"L{fam}{'abc'[i]}"
                nparams = self.n(0, 2)
                params = (("n", "int"),) + tuple(
                    (f"p{j}", self.pick(TYPES)) for j in range(1, nparams + 1)
                )
                name = ""
                if "same_names" in self.on:
                    name = "step" if self.flip() else f"loop{fam}"
                headers.append(
                    {
                        "label": label,
                        "params": params,
                        "ret": ret,
                        "family": fam,
                        "is_async": "async" in self.on and self.flip(),
                        "name": name,
                    }
                )
            # bodies see lower families only (headers of this family are for steps)
            saw_before = self.saw_run_if
            self.saw_run_if = False
            for i, h in enumerate(headers):
                sc = Scope(vars=dict(h["params"]), max_family=fam, top=False, in_loop=True)
                self.budget = self.n(1, 5)
                shared = []
                if "sharing" in self.on and self.flip(1, 3):
                    t = self.pick(TYPES)
                    d = self.call_expr(t, sc, depth=2)
                    if d is not None:
                        sid = f"t{next(self.ids)}"
                        shared.append((sid, d))
                        sc.refs.append((sid, t))
                base = self.tail_expr(h["ret"], sc)
                nsteps = self.n(1, 2)
                steps = []
                for s in range(nsteps):
                    if s == 0 and members > 1:
                        tgt = headers[(i + 1) % members]
                    else:
                        tgt = self.pick(headers)
                    simple = self.flip()
                    args = tuple(
                        self.arg(t, sc, 0 if simple else self.n(1, 2)) for _, t in tgt["params"][1:]
                    )
                    steps.append(Step(tgt["label"], args, self.step_policies(sc)))
                self.loops.append(
                    LoopTask(
                        label=h["label"],
                        params=h["params"],
                        ret=h["ret"],
                        base=base,
                        steps=tuple(steps),
                        name=h["name"],
                        is_async=h["is_async"],
                        shared=tuple(shared),
                        family=fam,
                    )
                )
            calls_skipper = any(
                isinstance(x, Call) and x.task in self.loop_labels_of(self.skip_families)
                for lt in self.loops
                if lt.family == fam
                for x in self.loop_exprs(lt)
            )
            if self.saw_run_if or calls_skipper:
                self.skip_families.add(fam)
            self.saw_run_if = saw_before or self.saw_run_if
            self.loop_headers.extend(headers)

    def loop_labels_of(self, fams: set[int]) -> set[str]:
        return {h["label"] for h in self.loop_headers if h["family"] in fams}

    @staticmethod
    def loop_exprs(lt: LoopTask):
        yield from walk(lt.base)
        for _, d in lt.shared:
            yield from walk(d)
        for s in lt.steps:
            for a in s.args:
                yield from walk(a)

    def step_policies(self, sc: Scope) -> tuple:
        pols = []
        if "run_if" in self.on and self.flip(1, 6):
            pols.append(RunIf(self.cond_expr(sc, 1)))
        if "after" in self.on and self.flip(1, 6):
            dep = self.lazy_expr(sc, 1)
            if dep is not None:
                pols.append(After((dep,)))
        if "timeout" in self.on and self.flip(1, 8):
            pols.append(Timeout(30.0))
        return tuple(pols)

    def tail_expr(self, ret: str, sc: Scope):
        """What a loop task returns at its base: a plain value or a call (never a
        container holding lazies)."""
        if self.budget > 0 and self.flip():
            e = self.call_expr(ret, sc, depth=2)
            if e is not None:
                return e
        return self.pure_expr(ret, sc)

    def pure_expr(self, t: str, sc: Scope, depth: int = 1):
        vs = [v for v, vt in sc.vars.items() if fits(vt, t)]
        if vs and self.flip(2, 3):
            return Var(self.pick(vs))
        if t in ("ilist", "iset") or (t == "any" and depth > 0 and self.flip(1, 3)):
            kind = (
                "list" if t == "ilist" else "set" if t == "iset" else self.pick(("list", "tuple"))
            )
            it = "int" if t != "any" else "any"
            return Coll(kind, tuple(self.pure_expr(it, sc, depth - 1) for _ in range(self.n(0, 2))))
        if t == "dict":
            keys = self.dict_keys()[: self.n(0, 2)]
            return Coll("dict", tuple((Lit(k), self.pure_expr("int", sc, 0)) for k in keys))
        return self.literal(t)

    # -- expressions --

    def dict_keys(self) -> list:
        """The keys of one dict, in a drawn order, from a drawn pool."""
        return self.draw(st.permutations(self.pick(DICT_KEY_POOLS)))

    def literal(self, t: str):
        if t == "int":
            return Lit(self.n(-3, 12))
        if t == "str":
            return Lit(self.pick(STRS))
        if t == "ilist":
            return Coll("list", tuple(Lit(self.n(-2, 9)) for _ in range(self.n(0, 3))))
        if t == "iset":
            return Coll("set", tuple(Lit(self.n(-2, 9)) for _ in range(self.n(0, 3))))
        if t == "dict":
            keys = self.dict_keys()[: self.n(0, 2)]
            return Coll("dict", tuple((Lit(k), Lit(self.n(-2, 9))) for k in keys))
        return self.literal(self.pick(("int", "str", "int", "ilist")))  # any

    def leaf(self, t: str, sc: Scope):
        opts = ["lit"]
        if any(fits(vt, t) for vt in sc.vars.values()):
            opts += ["var", "var"]
        if any(fits(rt, t) for _, rt in sc.refs):
            opts += ["ref", "ref"]
        if sc.top and self.params and t in ("int", "str", "any"):
            opts.append("param")
        if sc.top and self.env_defaults and t in ("str", "any"):
            opts.append("env")
        k = self.pick(opts)
        if k == "var":
            return Var(self.pick([v for v, vt in sc.vars.items() if fits(vt, t)]))
        if k == "ref":
            return Ref(self.pick([r for r, rt in sc.refs if fits(rt, t)]))
        if k == "param":
            want = self.pick(("int", "str")) if t == "any" else t
            return self.param_ref("fz_n" if want == "int" else "fz_s")
        if k == "env":
            name = self.pick(ENV_NAMES)
            return EnvRef(name, self.env_defaults[name])
        return self.literal(t)

    def param_ref(self, name: str) -> ParamRef:
        typ, has_default, default = self.params[name]
        return ParamRef(name, typ, default, has_default)

    def expr(self, t: str, sc: Scope, depth: int):
        if depth <= 0 or self.budget <= 0:
            return self.leaf(t, sc)
        opts = ["leaf", "call", "call", "call"]
        if "containers" in self.on and t in ("ilist", "iset", "dict", "any"):
            opts += ["coll", "coll"]
        if self.fans and t in ("ilist", "any"):
            opts += ["fan", "fan"]
        if self.fans:
            opts.append("chain")
        if "opaque" in self.on and t == "any":
            opts.append("opaque")
        if "map" in self.on and t in ("ilist", "any"):
            opts.append("map")
        if "dup" in self.on and any(fits(pt, t) for pt, _ in sc.pool):
            opts.append("dup")
        k = self.pick(opts)
        e = None
        if k == "call":
            e = self.call_expr(t, sc, depth)
        elif k == "coll":
            e = self.coll_expr(t, sc, depth)
        elif k == "chain":
            e = self.chain_expr(t, sc, depth)
        elif k == "fan":
            kind = "list" if t == "ilist" else self.pick(("list", "tuple"))
            fan = self.fan_items("int" if t == "ilist" else "any", sc, self.n(2, 5))
            e = None if fan is None else Coll(kind, fan)
        elif k == "opaque":
            e = self.opaque_expr(sc, depth)
        elif k == "map":
            e = self.map_expr(t, sc, depth)
        elif k == "dup":
            e = self.pick([pe for pt, pe in sc.pool if fits(pt, t)])
        if e is None:
            e = self.leaf(t, sc)
        elif k in ("call", "coll", "map", "fan", "chain") and not any(
            isinstance(p, Cache) for p in _policies_in(e)
        ):
            sc.pool.append((t, e))
        return e

    def coll_expr(self, t: str, sc: Scope, depth: int):
        if t == "any":
            kind = self.pick(("list", "tuple", "set", "dict"))
        else:
            kind = {"ilist": "list", "iset": "set", "dict": "dict"}[t]
        k = self.n(0, 3)
        if kind == "dict":
            keys = self.dict_keys()[:k]
            vt = "int" if t == "dict" else "any"
            return Coll("dict", tuple((Lit(kk), self.expr(vt, sc, depth - 1)) for kk in keys))
        it = "any" if (t == "any" and kind != "set") else "int"
        if kind in ("list", "tuple") and self.flip(1, 3):
            fan = self.fan_items(it, sc, k + 2)
            if fan is not None:
                return Coll(kind, fan)
        return Coll(kind, tuple(self.expr(it, sc, depth - 1) for _ in range(k)))

    def chain_expr(self, t: str, sc: Scope, depth: int):
        """A chain: one single-parameter library task applied 2 to 6 times to an
        expression (the engines fold such a run of links into one node, repeat.py)."""
        names = [n for n in self.library_candidates(t)
                 if len(library.SPECS[n].params) == 1 and not library.SPECS[n].resource_param
                 and fits(library.SPECS[n].ret, library.SPECS[n].params[0][1])]
        count = self.n(2, 6)
        if not names or self.budget < count:
            return None
        spec = library.SPECS[self.pick(names)]
        self.budget -= count
        e = self.expr(spec.params[0][1], sc, depth - 1)
        for _ in range(count):
            e = Call(spec.name, (e,), ())
        return e

    def fan_items(self, t: str, sc: Scope, count: int):
        """``count`` calls of one library task with literal arguments only: a fan-out,
        which the engines hold as one batch node (cascade_graph/batch.py). The
        items go to the shared pool, so a later ``dup`` may reuse one (a DAG)."""
        names = [n for n in self.library_candidates(t)
                 if not library.SPECS[n].resource_param and n not in ("flaky", "route_key")]
        if not names or self.budget < count:
            return None
        spec = library.SPECS[self.pick(names)]
        self.budget -= count
        items = [Call(spec.name, tuple(self.literal(pt) for _, pt in spec.params), ())
                 for _ in range(count)]
        for e in items:
            sc.pool.append((spec.ret, e))
        if self.fans and sc.top and self.flip(1, 2):
            # one item is a shared definition: a later reference makes the batch a DAG
            j = self.n(0, count - 1)
            sid = f"s{next(self.ids)}"
            self.fan_shared.append((sid, items[j]))
            sc.refs.append((sid, spec.ret))
            items[j] = Ref(sid)
        return tuple(items)

    def lazy_expr(self, sc: Scope, depth: int):
        """A lazy expression of any type (a call or a shared node)."""
        refs = [r for r, _ in sc.refs]
        if refs and self.flip(1, 3):
            return Ref(self.pick(refs))
        return self.call_expr(self.pick(TYPES), sc, max(depth, 1), bad_ok=False)

    def opaque_expr(self, sc: Scope, depth: int):
        kind = self.pick(("namedtuple", "frozenset", "ordereddict", "defaultdict", "lazykey"))

        def item():
            if self.flip():
                return Lit(self.n(0, 5))
            e = self.lazy_expr(sc, depth - 1)
            return e if e is not None else Lit(0)

        if kind == "namedtuple":
            return Opaque(kind, (item(), item()))
        if kind == "frozenset":
            return Opaque(kind, tuple(item() for _ in range(self.n(0, 2))))
        if kind == "lazykey":
            ks = []
            for _ in range(self.n(1, 2)):
                e = self.lazy_expr(sc, depth - 1)
                if e is not None:
                    ks.append((e, Lit(self.n(0, 5))))
            return Opaque(kind, tuple(ks)) if ks else None
        keys = self.dict_keys()[: self.n(0, 2)]
        return Opaque(kind, tuple((Lit(k), item()) for k in keys))

    # -- calls --

    def library_candidates(self, t: str):
        out = []
        for spec in library.SPECS.values():
            if not fits(spec.ret, t):
                continue
            if spec.feature not in ("core",) and spec.feature not in self.on:
                continue
            if spec.raises and "raises" not in self.on and spec.name not in ("flaky", "pick"):
                continue
            out.append(spec.name)
        return out

    def loop_candidates(self, t: str, sc: Scope):
        return [h for h in self.loop_headers[: self._fam_end(sc.max_family)] if fits(h["ret"], t)]

    def _fam_end(self, max_family: int) -> int:
        return sum(1 for h in self.loop_headers if h["family"] < max_family)

    def call_expr(self, t: str, sc: Scope, depth: int, bad_ok: bool = True):
        if self.budget <= 0:
            return None
        lib = self.library_candidates(t)
        loops = self.loop_candidates(t, sc)
        if not lib and not loops:
            return None
        self.budget -= 1
        if loops and (not lib or self.flip(1, 3)):
            return self.loop_call(self.pick(loops), sc, depth, bad_ok)
        spec = library.SPECS[self.pick(lib)]
        args, kwargs = [], []
        fails = 0
        for pname, ptype in spec.params:
            if pname == spec.resource_param:
                a = Inject(self.pick(sorted(library.RESOURCES)))
            elif spec.name == "flaky" and pname == "fails":
                fails = self.n(0, 2)
                a = Lit(fails)
            elif spec.name == "route_key" and pname == "n":
                a = Lit(self.n(1, 3))
            else:
                a = self.arg(ptype, sc, depth - 1)
            # once one parameter goes by keyword, the rest must too
            if kwargs or ("kwargs" in self.on and self.flip(1, 4)):
                kwargs.append((pname, a))
            else:
                args.append(a)
        for pname, ptype in spec.kwonly:
            if self.flip():
                kwargs.append((pname, self.arg(ptype, sc, depth - 1)))
        call = Call(spec.name, tuple(args), tuple(kwargs))
        if bad_ok:
            call = self.maybe_bad(call)
        return Call(call.task, call.args, call.kwargs, self.policies(spec, fails, sc, depth))

    def loop_call(self, h: dict, sc: Scope, depth: int, bad_ok: bool):
        hi = library.MAX_LOOP if sc.top else 4
        n = Lit(self.n(0, hi)) if self.flip(3, 4) else self.arg("int", sc, depth - 1)
        args = [n] + [self.arg(pt, sc, depth - 1) for _, pt in h["params"][1:]]
        kwargs = []
        if "kwargs" in self.on and len(args) > 1 and self.flip(1, 4):
            kwargs = [(h["params"][-1][0], args.pop())]
        call = Call(h["label"], tuple(args), tuple(kwargs))
        if bad_ok:
            call = self.maybe_bad(call)
        pols = []
        if "run_if" in self.on and self.flip(1, 6):
            pols.append(RunIf(self.cond_expr(sc, depth - 1)))
        if "timeout" in self.on and self.flip(1, 8):
            pols.append(Timeout(30.0))
        return Call(call.task, call.args, call.kwargs, tuple(pols))

    def maybe_bad(self, call: Call) -> Call:
        if "bad_arity" not in self.on or self.bad_left <= 0 or not self.flip(1, 4):
            return call
        self.bad_left -= 1
        how = self.pick(("extra", "drop", "kw"))
        if how == "extra":
            return Call(call.task, call.args + (Lit(1),), call.kwargs)
        if how == "drop" and (call.args or call.kwargs):
            if call.kwargs:
                return Call(call.task, call.args, call.kwargs[:-1])
            return Call(call.task, call.args[:-1], call.kwargs)
        return Call(call.task, call.args, call.kwargs + (("zz_unknown", Lit(0)),))

    def arg(self, t: str, sc: Scope, depth: int):
        if "router" in self.on and depth >= 1 and self.flip(1, 8):
            r = self.router(t, sc, depth)
            if r is not None:
                return r
        return self.expr(t, sc, depth)

    def router(self, t: str, sc: Scope, depth: int):
        keys = ("a", "b", "c")[: self.n(2, 3)]
        routes = []
        for k in keys:
            e = self.call_expr(t, sc, max(depth, 1), bad_ok=False)
            if e is None:
                refs = [r for r, rt in sc.refs if fits(rt, t)]
                if not refs:
                    return None
                e = Ref(self.pick(refs))
            routes.append((k, e))
        how = self.pick(("task", "task", "lit", "unknown"))
        if how == "task" and self.budget > 0:
            self.budget -= 1
            sel = Call("route_key", (self.expr("int", sc, max(depth - 1, 0)), Lit(len(keys))))
        elif how == "unknown" and sc.top and self.flip(1, 3):
            sel = Lit("zz")  # top level only: when it is raised is up to the engine
        else:
            sel = Lit(self.pick(keys))
        return RouterArg(sel, tuple(routes))

    def cond_expr(self, sc: Scope, depth: int):
        self.saw_run_if = True
        k = self.pick(("lit", "lit", "task", "param"))
        if k == "param" and sc.top and self.params:
            return self.param_ref("fz_b")
        if k == "task" and self.budget > 0:
            self.budget -= 1
            return Call("is_even", (self.expr("int", sc, max(depth - 1, 0)),))
        return Lit(self.flip(2, 3))

    def policies(self, spec, fails: int, sc: Scope, depth: int) -> tuple:
        pols = []
        if "run_if" in self.on and self.flip(1, 5):
            pols.append(RunIf(self.cond_expr(sc, depth - 1)))
        if "after" in self.on and self.flip(1, 6):
            deps = tuple(
                d
                for d in (self.lazy_expr(sc, depth - 1) for _ in range(self.n(1, 2)))
                if d is not None
            )
            if deps:
                pols.append(After(deps))
        if spec.name == "flaky":
            pols.append(Retry(fails + 1 + self.n(0, 1), self.pick(("Exception", "ValueError"))))
        elif "retry" in self.on and self.flip(1, 6):
            pols.append(Retry(self.n(1, 3), self.pick(sorted(library.RETRY_ON))))
        if "timeout" in self.on and self.flip(1, 8):
            pols.append(Timeout(30.0))
        cacheable = (
            "cache" in self.on
            and not sc.in_loop
            and not spec.stateful
            and spec.resource_param is None
            and all(pt != "any" for _, pt in spec.params)
            and self.flip(1, 6)
        )
        if cacheable:
            pols.append(Cache(f"c{next(self.tokens)}"))
        return tuple(pols)

    def map_expr(self, t: str, sc: Scope, depth: int):
        cands = [
            s.name
            for s in library.SPECS.values()
            if all(pt == "int" for _, pt in s.params)
            and s.params
            and not s.kwonly
            and s.name not in ("flaky", "use_res", "route_key")
            and (s.feature == "core" or s.feature in self.on)
            and (not s.raises or "raises" in self.on)
            and fits("ilist" if s.ret == "int" else "any", t)
        ]
        cands += [
            h["label"]
            for h in self.loop_headers[: self._fam_end(sc.max_family)]
            if all(pt == "int" for _, pt in h["params"])
            and h["family"] not in self.skip_families
            and fits("ilist" if h["ret"] == "int" else "any", t)
        ]
        if not cands or self.budget <= 0:
            return None
        self.budget -= 1
        name = self.pick(cands)
        h = next((h for h in self.loop_headers if h["label"] == name), None)
        pnames = [p for p, _ in (h["params"] if h else library.SPECS[name].params)]
        length = self.n(0, 3)
        its = []
        for _ in pnames:
            if self.flip(1, 4) and self.budget > 0:
                self.budget -= 1
                its.append(Call("rng", (Lit(length),)))
            else:
                hi = 4 if h else 12
                its.append(Coll("list", tuple(Lit(self.n(-2, hi)) for _ in range(length))))
        if self.flip(1, 10) and its:  # a length mismatch: ValueError
            its[-1] = Coll("list", tuple(Lit(1) for _ in range(length + 1)))
        kw = []
        if "kwargs" in self.on and self.flip(1, 4) and its:
            kw = [(pnames[len(its) - 1], its.pop())]
        pols = []
        if "run_if" in self.on and self.flip(1, 6):
            pols.append(RunIf(self.cond_expr(sc, depth - 1)))
        if "after" in self.on and self.flip(1, 6):
            d = self.lazy_expr(sc, depth - 1)
            if d is not None:
                pols.append(After((d,)))
        if "retry" in self.on and not h and self.flip(1, 6):
            pols.append(Retry(self.n(1, 3), self.pick(sorted(library.RETRY_ON))))
        if "timeout" in self.on and self.flip(1, 8):
            pols.append(Timeout(30.0))
        return MapCall(name, tuple(its), tuple(kw), tuple(pols))


def _policies_in(e):
    for x in walk(e):
        if isinstance(x, (Call, MapCall)):
            yield from x.policies


@st.composite
def programs(draw, features=None, force=(), max_calls=(4, 24), fans=False):
    """Random workflow programs.

    ``features``: the features that may be drawn (default: those available
    now, see ``features.py``); ``force``: features always on (when
    available); ``max_calls``: range of the call-node budget; ``fans``: draw
    fan-outs of flat calls (lists the engines batch) as often as calls.
    """
    avail = sorted(features_mod.available() if features is None else features)
    on = frozenset(f for f in avail if f in force or draw(st.booleans()))
    budget = draw(st.integers(*max_calls))
    return Gen(draw, on, budget, fans).program()
