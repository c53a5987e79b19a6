"""``Param`` and ``Env``: lazy values filled when a run starts.

Both are ``LazyResult`` nodes with no arguments (kinds ``PARAM`` and
``ENV``). Their name, default and type are structure (the node object is
part of the template), their value is resolved per run: when an engine
instantiates a template it resolves every value node first, so a missing
required parameter is reported before any task of that template runs.
There is no global registry: the parameters of a run are the ``Param`` nodes
reachable from its target (``find_params``).

Each value node's shape is a fresh id (one object is one structure), not an
entry of the shape table: interning ``("value", node)`` would keep every
``Param`` and its default alive in that table long after its last run.
A value is never lazy: a ``type`` converter that returns a lazy call (or a
lazy value given for a parameter) is a ``ParameterError``, on both engines.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Callable
from typing import Any

from .errors import ParameterError, describe
from .lazy import _LAZY_TYPES, ENV, PARAM, ROUTE, LazyResult, _next_shape, register_lazy_type
from .policy_checks import shown

_REQUIRED = object()
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def convert(value, to_type, what: str):
    """Convert a string ``value`` with ``to_type``; ``bool`` accepts true/false/1/0/yes/no."""
    if not isinstance(value, str) or to_type is str or to_type is None:
        return value
    if to_type is bool:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ParameterError(f"{what}: expected a bool (true/false/1/0/yes/no), got {value!r}")
    try:
        return to_type(value)
    except Exception as exc:  # noqa: BLE001 - whatever the converter raises: a bad value
        tname = getattr(to_type, "__name__", None) or shown(to_type)
        # a ValueError (int("abc")) speaks for itself; anything else is named
        why = describe(exc)
        if type(exc) in (ValueError, TypeError):
            why = why.partition(": ")[2] or why
        raise ParameterError(f"{what}: cannot convert {shown(value)} to {tname}: {why}") from exc


def _not_lazy(value, what: str):
    """``value``, checked not to be a lazy call (a parameter's value is data)."""
    if type(value) in _LAZY_TYPES:
        raise ParameterError(
            f"{what}: a type converter must return a value, not a lazy call (got {value!r}); "
            "give type= a plain function, not a task, and params= plain values"
        )
    return value


class _ValueNode(LazyResult):
    __slots__ = ()

    def _init_value_node(self):
        self.task = self
        self.args = ()
        self.kwargs = {}
        self.lits = ()
        self.spec = None
        self.children = ()
        self.tree = True
        self.uses = 0
        self.copied = False
        self.policy = None
        self.shape = _next_shape()  # never reused; not interned (see module docstring)

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    offload = False
    internal = True
    reports_skips = False


class Param(_ValueNode):
    """A run parameter: ``Param(name, default=<none>, type=str, help="")``."""

    __slots__ = ("name", "default", "type", "help")
    kind = PARAM

    def __init__(self, name: str, default: Any = _REQUIRED, type: Callable[[str], Any] = str,
                 help: str = "") -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Param name must be a non-empty str, got {shown(name)}")
        if type is not None and not callable(type):
            raise TypeError(f"Param {name!r}: type must be callable (int, float, bool, a "
                            f"function of one str...), got {shown(type)}")
        self.name = name
        self.default = default
        self.type = type
        self.help = help
        self._init_value_node()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def __repr__(self):  # short whatever the default (it shows in listings and messages)
        d = "" if self.required else f", default={_SHORT.repr(self.default)}"
        return f"Param({self.name!r}{d})"

    def __reduce__(self):  # pickled by its declaration (a new node where it lands)
        return _param_from, (self.name, self.required, self.default, self.type, self.help)

    def resolve(self, params: dict):
        """This parameter's value for a run given ``params`` (name -> value)."""
        if self.name in params:
            what = f"parameter {self.name!r}"
            return _not_lazy(convert(params[self.name], self.type, what), what)
        if self.required:
            raise ParameterError(
                f"missing required parameter {self.name!r}: pass it with "
                f"run(..., params={{{self.name!r}: ...}}) or -p {self.name}=VALUE"
            )
        what = f"parameter {self.name!r} (default)"
        return _not_lazy(convert(self.default, self.type, what), what)


class Env(_ValueNode):
    """An environment variable's value when the run starts: ``Env(name, default=None)``."""

    __slots__ = ("name", "default")
    kind = ENV

    def __init__(self, name: str, default: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Env name must be a non-empty str, got {name!r}")
        self.name = name
        self.default = default
        self._init_value_node()

    def __repr__(self):
        return f"Env({self.name!r})"

    def __reduce__(self):
        return Env, (self.name, self.default)

    def resolve(self, params: dict):
        return _not_lazy(os.environ.get(self.name, self.default), f"Env {self.name!r}")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def _param_from(name, required, default, to_type, help_text) -> Param:
    """A pickled ``Param`` rebuilt (``required``: it had no default)."""
    if required:
        return Param(name, type=to_type, help=help_text)
    return Param(name, default, type=to_type, help=help_text)


register_lazy_type(Param)
register_lazy_type(Env)


def find_params(target) -> list:
    """The distinct ``Param`` nodes reachable from ``target`` (a lazy or a container,
    ``Router`` arguments in it included)."""
    from .lazy import _LAZY_TYPES
    from .router import Router

    found: list = []
    seen: set = set()
    stack = [target]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _LAZY_TYPES:
            if id(v) in seen:
                continue
            seen.add(id(v))
            if t is Param:
                found.append(v)
            stack.extend(v.children)
            if v.kind == ROUTE:  # a router's routes: parameters too, selected or not
                stack.extend(v.args[1].values())
        elif t in (list, tuple, set):
            stack.extend(v)
        elif t is dict:
            stack.extend(v.values())
        elif t is Router:  # not yet a route node (a container target's router)
            stack.append(v.selector)
            stack.extend(v.routes.values())
    return found
