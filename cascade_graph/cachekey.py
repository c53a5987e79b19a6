"""Cache keys of ``.with_cache``: one canonical byte encoding, hashed with SHA-256.

A key must be the same in every process (any ``PYTHONHASHSEED``, any
address) and must differ whenever the call could give another value. So
nothing here goes through ``repr`` or ``hash``. Every value is written as a
type tag followed by a length-prefixed payload:

========  =====================================================
``N``     ``None``
``T F``   ``True`` / ``False`` (never equal to ``1`` / ``0``)
``j``     ``int`` in [-2**63, 2**63): 8 bytes, two's complement
``i``     any other ``int``: byte count, then the two's complement bytes
``f c``   ``float`` / ``complex``: IEEE 754 doubles, big-endian
``s b``   ``str`` (UTF-8) / ``bytes``: byte count, then the bytes
``l t``   ``list`` / ``tuple``: item count, then each item
``d``     ``dict``: item count, then each key and value, in insertion order
``S Z``   ``set`` / ``frozenset``: item count, then the SHA-256 digests of
          the items' encodings, sorted (so iteration order never matters)
========  =====================================================

Counts and lengths are 8-byte big-endian, so every encoding is
self-delimiting: ``(1, 23)`` and ``(12, 3)``, ``[1]`` and ``(1,)``, ``1``,
``1.0``, ``True`` and ``"1"`` all differ. Dicts keep their insertion order
(a function may iterate them, so two orders may give two results); sets
have no order, so theirs is the order of their items' digests. A set item
is written as its digest so a set nested in sets stays linear to encode.

The walk uses an explicit stack (no recursion: a 5,000-deep frozenset is
fine) and keeps the containers it is inside of, so a value that contains
itself is a ``TypeError``, never a hang.

The code fingerprint uses the same encoding with a few more tags for what
code refers to: code objects (bytecode, names, argument counts, flags and
constants, nested code included), functions (module, qualname, code,
defaults, keyword defaults, closure values; a function met again inside
itself is a back reference by depth), tasks (their function), bound methods
(the function and the object it is bound to), ``functools.partial``,
classes and modules (by name), builtins (by name), ``inject()`` markers (by
resource name) and ``Ellipsis``. Any other object in a fingerprint (say a
client object in a closure, or the ``self`` of a bound method) has no
stable value: a ``TypeError`` tells the user to give ``key=``; with ``key=``
given such an object counts by its type's name only, and ``key=`` is what
separates the entries.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import struct
import types
import weakref

_LEN = struct.Struct(">Q").pack
_DOUBLE = struct.Struct(">d").pack
_DOUBLE2 = struct.Struct(">dd").pack
_SMALL_INT = struct.Struct(">cq").pack
_INT64 = 1 << 63

# the key's parts, each tagged so no part can pass for another
_PART_NAME = b"name"
_PART_CODE = b"code"
_PART_ARGS = b"args"
_PART_KEY = b"key="
_PART_NO_KEY = b"nokey"


class Unstable(TypeError):
    """A value with no stable encoding: ``args[0]`` says what it is."""


class _Cyclic(Unstable):
    pass


# ---------------------------------------------------------------------------
# atoms


def _none(out: bytearray, v) -> None:
    out += b"N"


def _bool(out: bytearray, v) -> None:
    out += b"T" if v else b"F"


def _int(out: bytearray, v) -> None:
    if -_INT64 <= v < _INT64:  # the common case: one fixed-size form
        out += _SMALL_INT(b"j", v)
        return
    n = (v.bit_length() + 8) // 8  # room for the sign bit
    out += b"i"
    out += _LEN(n)
    out += v.to_bytes(n, "big", signed=True)


def _float(out: bytearray, v) -> None:
    out += b"f"
    out += _DOUBLE(v)


def _complex(out: bytearray, v) -> None:
    out += b"c"
    out += _DOUBLE2(v.real, v.imag)


def _str(out: bytearray, v) -> None:
    data = v.encode("utf-8", "surrogatepass")
    out += b"s"
    out += _LEN(len(data))
    out += data


def _bytes(out: bytearray, v) -> None:
    out += b"b"
    out += _LEN(len(v))
    out += v


class _EmptyCell:
    """Stands for a closure cell with no value yet."""


EMPTY_CELL = _EmptyCell()

_ATOMS = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    complex: _complex,
    str: _str,
    bytes: _bytes,
}

# only in code fingerprints
_CODE_ATOMS = dict(_ATOMS)
_CODE_ATOMS[type(Ellipsis)] = lambda out, v: out.extend(b"E")
_CODE_ATOMS[_EmptyCell] = lambda out, v: out.extend(b"e")

_SEQUENCES = {list: b"l", tuple: b"t"}
_DESCRIPTORS = (types.MethodDescriptorType, types.WrapperDescriptorType,
                types.ClassMethodDescriptorType)
_SETS = {set: b"S", frozenset: b"Z"}


# ---------------------------------------------------------------------------
# the walk


class _Op:
    """A control step on the walk's stack (values are never ``_Op``)."""

    __slots__ = ("kind", "obj")

    def __init__(self, kind: int, obj):
        self.kind = kind
        self.obj = obj  # keeps a container alive (and its id unique) while it is open


_LEAVE, _ITEM_BEGIN, _ITEM_END, _SET_END, _FN_LEAVE = range(5)


class _Walk:
    """One encoding: output buffers, open sets, open containers and functions."""

    __slots__ = ("bufs", "digests", "open", "fns", "stack", "code", "lenient", "atoms")

    def __init__(self, out: bytearray, code: bool, lenient: bool):
        self.bufs = [out]  # bufs[-1] takes the output; a set item gets its own
        self.digests: list[list[bytes]] = []  # per open set: its items' digests
        self.open: set[int] = set()  # ids of the containers being encoded
        self.fns: list = []  # functions being encoded (code mode), outermost first
        self.stack: list = []
        self.code = code
        self.lenient = lenient
        self.atoms = _CODE_ATOMS if code else _ATOMS

    def run(self, value) -> None:
        atoms = self.atoms
        stack = self.stack
        stack.append(value)
        while stack:
            v = stack.pop()
            t = type(v)
            atom = atoms.get(t)
            if atom is not None:
                atom(self.bufs[-1], v)
            elif t is _Op:
                self._control(v)
            elif t in _SEQUENCES or t is dict or t in _SETS:
                self._container(v, t)
            elif self.code:
                self._code_object(v, t)
            else:
                raise Unstable(t.__name__)

    def _control(self, op: _Op) -> None:
        kind = op.kind
        if kind == _LEAVE:
            self.open.discard(id(op.obj))
        elif kind == _ITEM_BEGIN:
            self.bufs.append(bytearray())
        elif kind == _ITEM_END:
            self.digests[-1].append(hashlib.sha256(self.bufs.pop()).digest())
        elif kind == _SET_END:
            self.open.discard(id(op.obj))
            digests = self.digests.pop()
            digests.sort()
            self.bufs[-1] += b"".join(digests)
        else:  # _FN_LEAVE
            self.fns.pop()

    def _container(self, v, t) -> None:
        i = id(v)
        if i in self.open:
            raise _Cyclic(f"cyclic {t.__name__} (it contains itself)")
        self.open.add(i)
        out = self.bufs[-1]
        stack = self.stack
        if t in _SETS:
            out += _SETS[t]
            out += _LEN(len(v))
            self.digests.append([])
            stack.append(_Op(_SET_END, v))
            begin, end = _Op(_ITEM_BEGIN, None), _Op(_ITEM_END, None)
            for item in v:
                stack.append(end)
                stack.append(item)
                stack.append(begin)
            return
        # atoms are written right away; from the first item that is not an atom
        # on, the rest goes on the stack
        atoms = self.atoms
        if t is dict:
            out += b"d"
            out += _LEN(len(v))
            items = list(v.items())
            for n, (k, item) in enumerate(items):
                atom_k, atom_v = atoms.get(type(k)), atoms.get(type(item))
                if atom_k is None or atom_v is None:
                    stack.append(_Op(_LEAVE, v))
                    for k2, item2 in reversed(items[n:]):
                        stack.append(item2)
                        stack.append(k2)
                    return
                atom_k(out, k)
                atom_v(out, item)
        else:
            out += _SEQUENCES[t]
            out += _LEN(len(v))
            for n, item in enumerate(v):
                atom = atoms.get(type(item))
                if atom is None:
                    stack.append(_Op(_LEAVE, v))
                    stack.extend(reversed(v[n:]))
                    return
                atom(out, item)
        self.open.discard(i)  # done already

    def _code_object(self, v, t) -> None:
        """Encode something code refers to (code mode only)."""
        if t is types.FunctionType:
            self._function(v)
            return
        if t is types.CodeType:
            self.bufs[-1] += _code_encoding(v)
            return
        tagged = _referent(v, t)
        if tagged is None:
            if not self.lenient:
                raise Unstable(t.__name__)
            tagged = (b"?", _type_name(t))
        tag, parts = tagged
        self.bufs[-1] += tag
        self._push_parts(parts)

    def _function(self, fn) -> None:
        fns = self.fns
        for depth, f in enumerate(reversed(fns)):
            if f is fn:  # recursion through a closure: refer back to the open function
                self.bufs[-1] += b"R"
                self.bufs[-1] += _LEN(depth)
                return
        fns.append(fn)
        self.bufs[-1] += b"P"
        self.stack.append(_Op(_FN_LEAVE, None))
        self._push_parts(function_parts(fn))

    def _push_parts(self, parts: tuple) -> None:
        # parts is a fresh tuple: _LEAVE keeps it alive while it is open
        self._container(parts, tuple)


# code object -> its encoding, by identity (a code object and its constants never change)
_CODE_MEMO: dict[int, tuple] = {}


def _code_encoding(code: types.CodeType) -> bytes:
    """The encoding of a code object, computed once per code object."""
    held = _CODE_MEMO.get(id(code))
    if held is not None and held[0]() is code:
        return held[1]
    out = bytearray(b"C")
    _Walk(out, True, False).run(code_parts(code))
    data = bytes(out)
    key = id(code)
    _CODE_MEMO[key] = (weakref.ref(code, lambda _, key=key: _CODE_MEMO.pop(key, None)), data)
    return data


def _type_name(t) -> str:
    return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"


def code_parts(code: types.CodeType) -> tuple:
    """What a code object's behaviour depends on (no line numbers, no local names)."""
    return (code.co_code, code.co_names, code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, code.co_flags, code.co_consts)


def cell_values(fn) -> tuple:
    """The values of ``fn``'s closure cells (``EMPTY_CELL`` for an empty one)."""
    out = []
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:
            out.append(EMPTY_CELL)
    return tuple(out)


def function_parts(fn) -> tuple:
    """A function's module, qualname, code, defaults, keyword defaults and closure values."""
    return (getattr(fn, "__module__", None) or "?", fn.__qualname__, fn.__code__,
            fn.__defaults__, fn.__kwdefaults__, cell_values(fn))


def _referent(v, t):
    """``(tag, parts)`` for a non-function object code may refer to, or None: unstable."""
    if t is types.MethodType:
        return b"M", (v.__func__, v.__self__)
    if t is types.BuiltinFunctionType:  # also builtin methods: then __self__ counts
        owner = v.__self__
        bound = () if owner is None or type(owner) is types.ModuleType else (owner,)
        return b"B", (_builtin_name(v),) + bound
    if t in _DESCRIPTORS:  # str.upper, object.__init__...
        return b"D", (_type_name(v.__objclass__), v.__name__)
    if t is types.ModuleType:
        return b"O", (v.__name__,)
    if isinstance(v, type):
        return b"Y", (_type_name(v),)
    if isinstance(v, enum.Enum):
        return b"n", (_type_name(t), v.name)
    if t is functools.partial:
        return b"p", (v.func, v.args, v.keywords)
    special = _special_types()
    if isinstance(v, special[0]):  # a Task: what it runs
        return b"K", (v.fn,)
    if t is special[1]:  # an inject() marker
        return b"I", (v.name,)
    return None


def _builtin_name(v) -> str:
    return f"{getattr(v, '__module__', None) or '?'}.{v.__qualname__}"


@functools.cache
def _special_types() -> tuple:
    from .lazy import Inject, Task  # lazy.py imports this package's modules

    return Task, Inject


def encode(value, out: bytearray, *, code: bool = False, lenient: bool = False) -> None:
    """Append the canonical encoding of ``value`` to ``out``.

    ``code=True`` also accepts what code refers to (functions, classes...);
    ``lenient=True`` (with ``code``) encodes any other object by its type's
    name instead of raising ``Unstable``.
    """
    atom = (_CODE_ATOMS if code else _ATOMS).get(type(value))
    if atom is not None:  # no walk needed
        atom(out, value)
        return
    _Walk(out, code, lenient).run(value)


def value_digest(value) -> bytes:
    """SHA-256 of the canonical encoding of a stable value (``Unstable`` if it has none)."""
    out = bytearray()
    encode(value, out)
    return hashlib.sha256(out).digest()


# ---------------------------------------------------------------------------
# the key of one call


def _root_parts(fn) -> list:
    """``(label, value)`` for each part of the task function's fingerprint, outermost first.

    Labels name the part in errors.
    """
    parts = []
    while type(fn) is types.MethodType:
        parts.append(("the object its method is bound to", fn.__self__))
        fn = fn.__func__
    if type(fn) is types.FunctionType:
        code = fn.__code__
        parts.append(("its code", code))
        parts.append(("its defaults", fn.__defaults__))
        parts.append(("its keyword defaults", fn.__kwdefaults__))
        for name, value in zip(code.co_freevars, cell_values(fn)):
            parts.append((f"its closure variable {name!r}", value))
    elif type(fn) is functools.partial:
        parts.append(("the function of its functools.partial", fn.func))
        parts.append(("the arguments of its functools.partial", (fn.args, fn.keywords)))
    elif _referent(fn, type(fn)) is not None:
        parts.append(("its callable", fn))
    else:  # an object with __call__: its class's method, bound to the object
        parts.append(("the object its method is bound to", fn))
        parts.append(("its callable", type(fn)))
        parts.append(("its __call__", type(fn).__call__))
    return parts


# id(function) -> (the function, lenient, its code, its defaults, its module and
# qualified name, the key's name and code parts): for a function with no closure whose
# defaults are atoms (None, numbers, strings, bytes), they depend on those objects
# alone, all of them immutable
_HEADS: dict[int, tuple] = {}
_HEADS_LIMIT = 4096  # entries; then emptied


def _head(task, fn, lenient: bool) -> bytes:
    """The name and code parts of a key of ``task``'s calls (remembered when they can be)."""
    held = _HEADS.get(id(fn))
    if (held is not None and held[0] is fn and held[1] is lenient
            and held[2] is fn.__code__ and held[3] is fn.__defaults__
            and fn.__kwdefaults__ is None and fn.__closure__ is None
            and held[4] == (fn.__module__, fn.__qualname__)):
        return held[5]
    out = bytearray(_PART_NAME)
    _str(out, f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', task.name)}")
    out += _PART_CODE
    _fingerprint(task, fn, lenient, out)
    head = bytes(out)
    if (type(fn) is types.FunctionType and fn.__closure__ is None and fn.__kwdefaults__ is None
            and all(type(d) in _ATOMS for d in fn.__defaults__ or ())):
        if len(_HEADS) >= _HEADS_LIMIT:
            _HEADS.clear()
        _HEADS[id(fn)] = (fn, lenient, fn.__code__, fn.__defaults__,
                          (fn.__module__, fn.__qualname__), head)
    return head


def _fingerprint(task, fn, lenient: bool, out: bytearray) -> None:
    for label, value in _root_parts(fn):
        try:
            encode(value, out, code=True, lenient=lenient)
        except _Cyclic as exc:
            raise TypeError(
                f"task {task.name!r}: {label} holds a {exc.args[0]}, which has no stable "
                "key for .with_cache(); keep values that contain themselves out of a cached "
                "task's closure and defaults"
            ) from None
        except Unstable as exc:
            raise TypeError(
                f"task {task.name!r}: {label} is or holds a value of type {exc.args[0]!r}, "
                "which has no stable value for the .with_cache() key (the key must be the same "
                "in every process and change when the value changes): give .with_cache(key=...) "
                "a string, or a function of the call's arguments returning one, that tells such "
                "values apart (then the value counts by its type only), or make it a plain value"
            ) from None


def _arguments(task, bound: dict, out: bytearray) -> None:
    out += _LEN(len(bound))
    for name, value in bound.items():
        _str(out, name)
        try:
            encode(value, out)
        except _Cyclic as exc:
            raise TypeError(
                f"task {task.name!r}: argument {name!r} is a {exc.args[0]}, which has no "
                "stable key for .with_cache(); pass a value without cycles"
            ) from None
        except Unstable as exc:
            raise TypeError(
                f"task {task.name!r}: argument {name!r} is a {exc.args[0]}, which has no stable "
                "hash for .with_cache(); pass None/bool/int/float/complex/str/bytes or builtin "
                "containers of them (convert the argument, e.g. to a str or a tuple)"
            ) from None


def _user_key(task, spec, bound: dict) -> str | None:
    if spec.key is None:
        return None
    k = spec.key(**bound) if callable(spec.key) else spec.key
    if not isinstance(k, str):
        raise TypeError(f"task {task.name!r}: cache key function returned {k!r}, not a str")
    return k


def cache_key(task, spec, bound: dict) -> str:
    """The key of one call of ``task`` with ``bound`` arguments (name -> value), hex SHA-256.

    Parts: the function's ``module.qualname``, its code fingerprint, the
    bound argument values (injected resources excluded by the caller) and
    ``key=`` when given.
    """
    user_key = _user_key(task, spec, bound)
    out = bytearray(_head(task, task.fn, user_key is not None))
    out += _PART_ARGS
    _arguments(task, bound, out)
    if user_key is None:
        out += _PART_NO_KEY
    else:
        out += _PART_KEY
        _str(out, user_key)
    return hashlib.sha256(out).hexdigest()
