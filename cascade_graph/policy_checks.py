"""Checks of policy arguments, made where the policy is given (``.with_retry(...)``,
``.with_timeout(...)``), never later when the task runs.

Each check returns the value in the form the policy keeps (an ``int``, a
``float``, a tuple of exception classes) or raises with a message naming the
policy method, the argument and what it accepts: ``TypeError`` for a value
of the wrong kind (a string, a bool, a class name instead of the class),
``ValueError`` for one of the right kind out of range (``nan``, ``inf``, a
negative delay).
"""

from __future__ import annotations

import math
import numbers


def shown(value) -> str:
    """``repr(value)``, or a placeholder when that raises (an error message never fails)."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not replace our error
        return f"<unprintable {type(value).__name__}>"


def _got(value) -> str:
    return f"got {shown(value)} (a {type(value).__name__})"


def whole(value, where: str, name: str, minimum: int) -> int:
    """An ``int`` >= ``minimum`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int >= {minimum}, {_got(value)}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {shown(value)}")
    return int(value)


def seconds(value, where: str, name: str, *, positive: bool = False) -> float:
    """A finite real number >= 0 (> 0 when ``positive``), as a ``float``."""
    if type(value) is float or type(value) is int:  # the common case, checked first
        if 0 < value < math.inf or (value == 0 and not positive):
            return float(value)
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a number {bound} (int or float), {_got(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where}: {name} must be a finite number {bound}, got {shown(value)}")
    if number < 0 or (positive and number == 0):
        raise ValueError(f"{where}: {name} must be {bound}, got {shown(value)}")
    return number


def exception_classes(value, where: str, name: str) -> tuple:
    """An exception class, or a tuple of them, as a tuple (what ``except`` accepts)."""
    items = value if type(value) is tuple else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(
                f"{where}: {name} must be an exception class or a tuple of exception classes "
                f"(e.g. {name}=(ConnectionError, TimeoutError)), {_got(item)}"
            )
    return items
