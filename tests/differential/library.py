"""The fixed task library of the differential harness.

Every task here is a plain Python function (sync or ``async``), pure and
deterministic given its arguments, except for one thing: on entry it appends
``(label, canon(arguments))`` to the per-run call log ``RUN.calls``. The
harness compares the *multiset* of those entries between the reference
evaluator and every engine configuration, so the log order (which depends on
scheduling) never matters.

This module must not import ``cascade_graph`` or ``cascade_vm``: the reference
evaluator (``reference.py``) uses it too, and the reference shares no code
with the engines. ``build.py`` wraps these functions with ``@task``.

Design rules for a library task:

* Its result depends only on its arguments (``flaky`` also depends on a
  per-run attempt counter keyed by its arguments, which makes the total
  number of attempts independent of scheduling; see its docstring).
* It logs its parameters in signature order (keyword-only ones included), so
  the log does not depend on how an engine passes them (positionally or by
  keyword).
* An exception it raises has a deterministic type and message.
* Values stay small: ``mul`` works modulo a prime, ``concat`` truncates.

``SPECS`` describes every task for the generator (parameter and result
types) and for the reference (the pure function to call, the label to log).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

# ---------------------------------------------------------------------------
# Canonical form of values (used in the call log and to compare results)
# ---------------------------------------------------------------------------

#: A namedtuple used by the "opaque container" feature: the engines must pass
#: it through untouched (never look inside it for lazy values).
Pt = collections.namedtuple("Pt", "a b")


class LazyMarker:
    """What the reference evaluator puts where an engine passes a ``LazyResult``
    through untouched (inside a namedtuple, frozenset, dict key, ...).

    ``canon`` renders it and any object whose type is named ``LazyResult`` the
    same way, so the reference never needs to import the engines.
    """

    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<lazy>"


LAZY = LazyMarker()

_LAZY_TYPE_NAMES = frozenset({"LazyResult", "LazyMarker"})


def canon(value: Any) -> str:
    """A canonical, type-exact string for ``value``.

    Distinguishes ``list``/``tuple``/``set``/``frozenset``/``dict`` and their
    subclasses, keeps dict key order (the spec promises it), sorts sets (whose
    iteration order is not a language property), and renders any unresolved
    lazy value as ``<lazy>``. Unknown objects render as ``<TypeName>``.
    """
    t = type(value)
    if value is None or t is bool or t is int:
        return repr(value)
    if t is str:
        return repr(value)
    if t is list:
        return "[" + ", ".join(canon(v) for v in value) + "]"
    if t is tuple:
        if len(value) == 1:
            return "(" + canon(value[0]) + ",)"
        return "(" + ", ".join(canon(v) for v in value) + ")"
    if t is dict:
        return "{" + ", ".join(canon(k) + ": " + canon(v) for k, v in value.items()) + "}"
    if t is set:
        return "set{" + ", ".join(sorted(canon(v) for v in value)) + "}"
    if t is frozenset:
        return "frozenset{" + ", ".join(sorted(canon(v) for v in value)) + "}"
    if t is Pt:
        return "Pt(" + canon(value.a) + ", " + canon(value.b) + ")"
    if t is collections.OrderedDict:
        return (
            "OrderedDict{" + ", ".join(canon(k) + ": " + canon(v) for k, v in value.items()) + "}"
        )
    if t is collections.defaultdict:
        return (
            "defaultdict{" + ", ".join(canon(k) + ": " + canon(v) for k, v in value.items()) + "}"
        )
    if t.__name__ in _LAZY_TYPE_NAMES:
        return "<lazy>"
    return "<" + t.__name__ + ">"


def too_big(value: Any, limit: int = 4000) -> bool:
    """True when ``value`` has more than ``limit`` leaves (or is a huge int/str).

    Iterative with an early exit, so an exponentially shared structure (a loop
    doing ``pair(x, x)``) is detected cheaply. The reference uses it to discard
    examples whose values would blow up.
    """
    budget = limit
    stack = [value]
    while stack:
        v = stack.pop()
        budget -= 1
        if budget < 0:
            return True
        t = type(v)
        if t is int:
            if v.bit_length() > 4096:
                return True
        elif t is str:
            if len(v) > 1000:
                return True
        elif t in (list, tuple, set, frozenset, Pt):
            stack.extend(v)
        elif t in (dict, collections.OrderedDict, collections.defaultdict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return False


# ---------------------------------------------------------------------------
# Per-run state: the call log, flaky counters, resource counters
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunState:
    """State of one run. Reset with ``reset()`` before every run.

    ``calls``: the log, one ``(label, canon(args))`` per invocation (attempt).
    ``flaky``: attempts seen so far per ``flaky`` argument tuple.
    ``resources``: Counter of ``("setup"|"teardown", resource name)``.
    """

    calls: list = dataclasses.field(default_factory=list)
    flaky: dict = dataclasses.field(default_factory=dict)
    resources: collections.Counter = dataclasses.field(default_factory=collections.Counter)


RUN = RunState()


def reset() -> RunState:
    """Start a fresh run: clear the log and every counter; return the state."""
    RUN.calls = []
    RUN.flaky = {}
    RUN.resources = collections.Counter()
    return RUN


#: An engine run making more calls than this has run away (the reference discards
#: examples above 3,000 calls, so a valid example never gets near it).
CALL_LIMIT = 10_000


class Runaway(Exception):
    """Raised by a task when its run has run away: too many calls, or arguments
    bigger than the reference ever allows. Only a broken engine gets here; it
    turns an endless or exploding run into a quick, reportable failure."""


def log(label: str, *args: Any) -> None:
    """Record one invocation of task ``label`` with its parameter values."""
    calls = RUN.calls
    if len(calls) >= CALL_LIMIT:
        raise Runaway(f"{label}: more than {CALL_LIMIT} task calls in one run")
    if too_big(args):
        raise Runaway(f"{label}: arguments bigger than the reference ever allows")
    calls.append((label, canon(args)))


# ---------------------------------------------------------------------------
# Pure functions (the meaning of each task)
# ---------------------------------------------------------------------------

MOD = 10007
STR_CAP = 40


def _add(a, b):
    return a + b


def _mul(a, b):
    return (a * b) % MOD


def _neg(a):
    return -a


def _div(a, b):
    return a // b  # ZeroDivisionError('integer division or modulo by zero')


def _must_pos(a):
    if a < 0:
        raise ValueError(f"must_pos: {a} is negative")
    return a


def _scale(a, *, by=2, plus=0):
    return (a * by + plus) % MOD


def _to_str(a):
    return "n" + str(a)


def _concat(a, b):
    return (a + b)[:STR_CAP]


def _length(s):
    return len(s)


def _sum_list(xs):
    return sum(xs)


def _rng(n):
    return list(range(n % 6))


def _to_set(xs):
    return set(xs)


def _set_sum(s):
    return sum(s)


def _mk_dict(a, b):
    return {"k" + str(a % 3): a, "z": b}


def _pick(d, i):
    if not d:
        raise ValueError("pick: empty dict")
    keys = list(d)
    return d[keys[i % len(keys)]]


def _keys(d):
    return "|".join(str(k) for k in d)


def _pair(a, b):
    return (a, b)


def _describe(x):
    return canon(x)


def _size(x):
    try:
        return len(x)
    except TypeError:
        return -1


def _ident(x):
    return x


def _is_even(a):
    # an int, not a bool: {is_even(x), 1} would hold True or 1 depending on the
    # order the engine rebuilds the set in (True == 1), which is not a language fact
    return int(a % 2 == 0)


def _route_key(a, n):
    return "abc"[a % n]


def _flaky(x, fails, *, state):
    key = canon((x, fails))
    seen = state.get(key, 0)
    state[key] = seen + 1
    if seen < fails:
        raise ValueError(f"flaky: {x}")
    return x * 3


def _use_res(x, r):
    return x + r


# ---------------------------------------------------------------------------
# The task functions (what build.py wraps with @task)
# ---------------------------------------------------------------------------
# Each one logs its parameters in signature order, then computes. Async ones
# yield to the loop (sleep 0 or a tiny real sleep) between the two.

SHORT = 0.0005


def add(a, b):
    log("add", a, b)
    return _add(a, b)


def mul(a, b):
    log("mul", a, b)
    return _mul(a, b)


def neg(a):
    log("neg", a)
    return _neg(a)


def div(a, b):
    log("div", a, b)
    return _div(a, b)


def must_pos(a):
    log("must_pos", a)
    return _must_pos(a)


def scale(a, *, by=2, plus=0):
    log("scale", a, by, plus)
    return _scale(a, by=by, plus=plus)


def to_str(a):
    log("to_str", a)
    return _to_str(a)


def concat(a, b):
    log("concat", a, b)
    return _concat(a, b)


def length(s):
    log("length", s)
    return _length(s)


def sum_list(xs):
    log("sum_list", xs)
    return _sum_list(xs)


def rng(n):
    log("rng", n)
    return _rng(n)


def to_set(xs):
    log("to_set", xs)
    return _to_set(xs)


def set_sum(s):
    log("set_sum", s)
    return _set_sum(s)


def mk_dict(a, b):
    log("mk_dict", a, b)
    return _mk_dict(a, b)


def pick(d, i):
    log("pick", d, i)
    return _pick(d, i)


def keys(d):
    log("keys", d)
    return _keys(d)


def pair(a, b):
    log("pair", a, b)
    return _pair(a, b)


def describe(x):
    log("describe", x)
    return _describe(x)


def size(x):
    log("size", x)
    return _size(x)


def ident(x):
    log("ident", x)
    return _ident(x)


def is_even(a):
    log("is_even", a)
    return _is_even(a)


def route_key(a, n):
    log("route_key", a, n)
    return _route_key(a, n)


def flaky(x, fails):
    """Fails the first ``fails`` attempts made *with these arguments* in a run.

    The counter is keyed by the arguments, so however attempts interleave the
    total number of attempts with given arguments is ``calls + fails`` (when
    the retry policy allows more than ``fails`` attempts per call).
    """
    log("flaky", x, fails)
    return _flaky(x, fails, state=RUN.flaky)


def use_res(x, r):
    log("use_res", x, r)
    return _use_res(x, r)


async def aadd(a, b):
    log("aadd", a, b)
    await asyncio.sleep(0)
    return _add(a, b)


async def aconcat(a, b):
    log("aconcat", a, b)
    await asyncio.sleep(SHORT)
    return _concat(a, b)


async def asum_list(xs):
    log("asum_list", xs)
    await asyncio.sleep(0)
    return _sum_list(xs)


async def adescribe(x):
    log("adescribe", x)
    await asyncio.sleep(SHORT)
    return _describe(x)


async def amust_pos(a):
    log("amust_pos", a)
    await asyncio.sleep(0)
    return _must_pos(a)


async def apair(a, b):
    log("apair", a, b)
    await asyncio.sleep(0)
    return _pair(a, b)


async def adiv(a, b):
    log("adiv", a, b)
    await asyncio.sleep(SHORT)
    return _div(a, b)


def tadd(a, b):
    log("tadd", a, b)
    return _add(a, b)


def tdescribe(x):
    log("tdescribe", x)
    return _describe(x)


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

#: Types of the little type system the generator uses.
#: int, str, ilist (list of int), iset (set of int), dict (str -> int), any.
TYPES = ("int", "str", "ilist", "iset", "dict", "any")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One library task.

    ``params``: positional-or-keyword parameters, ``(name, type)``.
    ``kwonly``: keyword-only parameters with defaults, ``(name, type)``.
    ``ret``: result type. ``raises``: can raise on some inputs.
    ``feature``: the generator feature that enables this task.
    ``resource_param``: for ``use_res``, the parameter taking an injected resource.
    ``stateful``: ``pure`` takes ``state=`` (the run's flaky counters).
    """

    name: str
    fn: Callable
    pure: Callable
    params: tuple
    ret: str
    kwonly: tuple = ()
    is_async: bool = False
    offload: bool = False
    raises: bool = False
    feature: str = "core"
    resource_param: str | None = None
    stateful: bool = False

    @property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)


def _spec(fn, params, ret, pure, **kw):
    return TaskSpec(name=fn.__name__, fn=fn, pure=pure, params=params, ret=ret, **kw)


INT, STR, ILIST, ISET, DICT, ANY = "int", "str", "ilist", "iset", "dict", "any"

SPECS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        _spec(add, (("a", INT), ("b", INT)), INT, _add),
        _spec(mul, (("a", INT), ("b", INT)), INT, _mul),
        _spec(neg, (("a", INT),), INT, _neg),
        _spec(div, (("a", INT), ("b", INT)), INT, _div, raises=True, feature="raises"),
        _spec(must_pos, (("a", INT),), INT, _must_pos, raises=True, feature="raises"),
        _spec(
            scale, (("a", INT),), INT, _scale, kwonly=(("by", INT), ("plus", INT)), feature="kwargs"
        ),
        _spec(to_str, (("a", INT),), STR, _to_str),
        _spec(concat, (("a", STR), ("b", STR)), STR, _concat),
        _spec(length, (("s", STR),), INT, _length),
        _spec(sum_list, (("xs", ILIST),), INT, _sum_list),
        _spec(rng, (("n", INT),), ILIST, _rng),
        _spec(to_set, (("xs", ILIST),), ISET, _to_set),
        _spec(set_sum, (("s", ISET),), INT, _set_sum),
        _spec(mk_dict, (("a", INT), ("b", INT)), DICT, _mk_dict),
        _spec(pick, (("d", DICT), ("i", INT)), INT, _pick, raises=True),
        _spec(keys, (("d", DICT),), STR, _keys),
        _spec(pair, (("a", ANY), ("b", ANY)), ANY, _pair),
        _spec(describe, (("x", ANY),), STR, _describe),
        _spec(size, (("x", ANY),), INT, _size),
        _spec(ident, (("x", ANY),), ANY, _ident),
        _spec(is_even, (("a", INT),), INT, _is_even),
        _spec(route_key, (("a", INT), ("n", INT)), STR, _route_key, feature="router"),
        _spec(
            flaky,
            (("x", INT), ("fails", INT)),
            INT,
            _flaky,
            raises=True,
            feature="retry",
            stateful=True,
        ),
        _spec(
            use_res,
            (("x", INT), ("r", INT)),
            INT,
            _use_res,
            feature="resources",
            resource_param="r",
        ),
        _spec(aadd, (("a", INT), ("b", INT)), INT, _add, is_async=True, feature="async"),
        _spec(aconcat, (("a", STR), ("b", STR)), STR, _concat, is_async=True, feature="async"),
        _spec(asum_list, (("xs", ILIST),), INT, _sum_list, is_async=True, feature="async"),
        _spec(adescribe, (("x", ANY),), STR, _describe, is_async=True, feature="async"),
        _spec(
            amust_pos, (("a", INT),), INT, _must_pos, is_async=True, raises=True, feature="async"
        ),
        _spec(apair, (("a", ANY), ("b", ANY)), ANY, _pair, is_async=True, feature="async"),
        _spec(
            adiv, (("a", INT), ("b", INT)), INT, _div, is_async=True, raises=True, feature="async"
        ),
        _spec(tadd, (("a", INT), ("b", INT)), INT, _add, offload=True, feature="offload"),
        _spec(tdescribe, (("x", ANY),), STR, _describe, offload=True, feature="offload"),
    ]
}

#: Resources the harness registers (when the engines support them):
#: name -> (scope, kind, value). kind: "function" (no teardown), "generator",
#: "agenerator" (async generator).
RESOURCES: dict[str, tuple[str, str, int]] = {
    "fz_run_gen": ("run", "generator", 100),
    "fz_run_agen": ("run", "agenerator", 200),
    "fz_run_fn": ("run", "function", 300),
    "fz_task_gen": ("task", "generator", 400),
}

#: Retry-on choices (a name in the AST, a tuple of exception types here).
RETRY_ON: dict[str, tuple] = {
    "Exception": (Exception,),
    "ValueError": (ValueError,),
    "KeyError": (KeyError,),
}

#: Loop counters are clamped to this on entry to every loop task.
MAX_LOOP = 12


def clamp_counter(n: int) -> int:
    """What every generated loop task does to its counter on entry."""
    return min(MAX_LOOP, n)
