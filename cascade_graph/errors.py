"""The project's exceptions, and the note that names the task a user error came from.

User exceptions are never wrapped: they leave ``run()`` as the same object,
with one note (``add_note``) saying which task raised them. ``task_of`` reads
that note back (the CLI uses it to print one line naming the task).
"""

from __future__ import annotations

_NOTE_PREFIX = "cascade: raised by task "
TASK_NOTE_PREFIX = _NOTE_PREFIX  #: how the note naming the task begins


class CascadeError(Exception):
    """Base of the errors Cascade itself raises about a workflow."""


class ParameterError(CascadeError, ValueError):
    """A ``Param`` is missing, unknown or cannot be converted to its type."""


class RouteKeyError(ParameterError, KeyError):
    """A ``Param`` selects a ``Router`` key no route has: bad input, found when the
    run starts (a ``ParameterError``) and an unknown key (a ``KeyError``)."""

    __str__ = Exception.__str__  # the message as written, not quoted as KeyError's is


class ResourceError(CascadeError, LookupError):
    """An injected resource is not registered, or its set-up or teardown failed."""


class StoreError(CascadeError, RuntimeError):
    """A cache store's file cannot be used: corrupt, locked, foreign, or its key file unsafe."""


class CacheWarning(UserWarning):
    """A cache entry was dropped: it failed its integrity check or could not be read back."""


class InternalError(CascadeError, RuntimeError):
    """A bug in Cascade itself (never a user's error): please report it."""


def describe(exc: BaseException) -> str:
    """``'ValueError: message'`` for notes and one-line reports, never raising: an
    exception whose ``__str__`` raises is shown as ``'ValueError: <unprintable ValueError>'``
    (formatting an error must never replace it with another one)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ is the user's; keep their error
        text = f"<unprintable {name}>"
    return f"{name}: {text}" if text else name


def add_task_note(exc: BaseException, task_name: str) -> None:
    """Name ``task_name`` on ``exc`` once (the innermost task that raised it wins)."""
    notes = getattr(exc, "__notes__", None)
    if notes:
        for note in notes:
            if note.startswith(_NOTE_PREFIX):
                return
    exc.add_note(f"{_NOTE_PREFIX}{task_name!r}")


def report_also(error: BaseException, other: BaseException) -> None:
    """Note ``other`` (and its notes) on ``error``, which is the one raised.
    Never raises, whatever ``other``'s ``__str__`` does."""
    error.add_note(f"cascade: while cleaning up, also: {describe(other)}")
    for note in getattr(other, "__notes__", None) or ():
        error.add_note(f"  {note}")


def _weight(exc: BaseException) -> int:
    if isinstance(exc, Exception):
        return 0
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return 2
    return 1  # a cancellation, or another BaseException


def worse_error(error, other):
    """Which of ``error`` (a run's or a call's, or None) and ``other`` (raised later,
    while cleaning up) is raised; the other one is reported on it. The first
    error wins, except that a later ``BaseException`` that is not an
    ``Exception`` wins over it (a ``CancelledError`` over an error, a
    ``KeyboardInterrupt``/``SystemExit`` over both), as an exception raised in a
    ``finally`` block would."""
    if error is None or error is other:
        return other
    if _weight(other) > _weight(error):
        error, other = other, error
        if error.__context__ is None:
            error.__context__ = other
    report_also(error, other)
    return error


def task_of(exc: BaseException) -> str | None:
    """The name of the task ``exc`` was raised by, read from its note, or None."""
    for note in getattr(exc, "__notes__", None) or ():
        if note.startswith(_NOTE_PREFIX):
            rest = note[len(_NOTE_PREFIX) :]
            return rest[1:-1] if len(rest) >= 2 and rest[0] in "'\"" else rest
    return None


class Interruption(BaseException):
    """A ``KeyboardInterrupt`` or ``SystemExit`` raised inside one of the run's
    asyncio tasks, carried out of that task as its failure (``exc``): the run
    lifecycle raises ``exc`` itself after cleaning up. Never seen by users."""

    def __init__(self, exc: BaseException):
        super().__init__(exc)
        self.exc = exc
