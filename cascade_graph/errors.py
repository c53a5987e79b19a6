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


def add_task_note(exc: BaseException, task_name: str) -> None:
    """Name ``task_name`` on ``exc`` once (the innermost task that raised it wins)."""
    notes = getattr(exc, "__notes__", None)
    if notes:
        for note in notes:
            if note.startswith(_NOTE_PREFIX):
                return
    exc.add_note(f"{_NOTE_PREFIX}{task_name!r}")


def report_also(error: BaseException, other: BaseException) -> None:
    """Note ``other`` (and its notes) on ``error``, which is the one raised."""
    error.add_note(f"cascade: while cleaning up, also: {type(other).__name__}: {other}")
    for note in getattr(other, "__notes__", ()):
        error.add_note(f"  {note}")


def task_of(exc: BaseException) -> str | None:
    """The name of the task ``exc`` was raised by, read from its note, or None."""
    for note in getattr(exc, "__notes__", None) or ():
        if note.startswith(_NOTE_PREFIX):
            rest = note[len(_NOTE_PREFIX) :]
            return rest[1:-1] if len(rest) >= 2 and rest[0] in "'\"" else rest
    return None
