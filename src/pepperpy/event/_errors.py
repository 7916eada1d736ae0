"""The exception tree of pepperpy-event.

Every error the library raises derives from :class:`EventError`, so one ``except``
clause catches them all. Driver errors (asyncpg, redis, nats, aio-pika, SMTP, HTTP)
are re-raised as the library's own errors ``from`` the original. The tree is drawn in
docs/errors.md (a test keeps the drawing true to these classes).
"""

from __future__ import annotations

import ast
import copyreg
import re
from typing import Any

__all__ = [
    "AccessDenied",
    "BatchPublishError",
    "BufferFullError",
    "HandlerCancelledError",
    "ClosedError",
    "ConcurrencyError",
    "ConfigurationError",
    "EncryptionError",
    "EventError",
    "ListenerLimitError",
    "MissingDependencyError",
    "NotificationError",
    "PatternError",
    "RecipientError",
    "ReplayError",
    "SerializationError",
    "StoreError",
    "StreamDeletedError",
    "TemplateError",
    "TemplateNotFound",
    "TransportError",
    "UnknownTopicError",
    "ValidationError",
    "ValidationProblem",
]


class EventError(Exception):
    """Root of every error raised by pepperpy-event."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy rebuild an error from its state instead of calling the class
        # with ``args`` as Exception's own __reduce__ does: most errors take other
        # parameters than their message (ConcurrencyError(stream, expected, actual))
        rebuild = copyreg.__newobj__  # type: ignore[attr-defined]  # typeshed omits it
        return (rebuild, (type(self),), {"args": self.args, **vars(self)})


class PatternError(EventError, ValueError):
    """A topic pattern (or topic) is malformed.

    ``pattern`` is the offending text, ``position`` the 0-based character index of the
    problem and ``reason`` a short explanation; ``kind`` what the text was meant to be
    (``"pattern"``, ``"topic"``, ``"stream name"``), which the message names.
    """

    def __init__(self, pattern: str, position: int, reason: str, kind: str = "pattern") -> None:
        self.pattern = pattern
        self.position = position
        self.reason = reason
        self.kind = kind
        shown = pattern if len(pattern) <= 120 else f"{pattern[:60]}...{pattern[-20:]}"
        super().__init__(f"invalid {kind} {shown!r} at position {position}: {reason}")


class SerializationError(EventError, TypeError):
    """A value cannot be represented as JSON (the wire and storage format)."""


class ValidationProblem:
    """One problem found by validation: where, what was expected, what was found."""

    __slots__ = ("actual", "expected", "message", "path")

    def __init__(self, path: str, expected: str, actual: str, message: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        self.message = message

    def __repr__(self) -> str:
        return (
            f"ValidationProblem(path={self.path!r}, expected={self.expected!r}, "
            f"actual={self.actual!r}, message={self.message!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidationProblem):
            return NotImplemented
        return (self.path, self.expected, self.actual, self.message) == (
            other.path,
            other.expected,
            other.actual,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.expected, self.actual, self.message))

    def __reduce__(self) -> tuple[Any, ...]:  # protocols 0 and 1 refuse bare __slots__
        return (type(self), (self.path, self.expected, self.actual, self.message))

    def __str__(self) -> str:
        where = self.path or "$"
        return f"{where}: {self.message} (expected {self.expected}, got {self.actual})"

    @property
    def loc(self) -> tuple[str | int, ...]:
        """Where, as keys and indexes (``("addresses", 0, "zip")`` for
        ``addresses[0].zip``; empty for the whole), as pydantic's ``loc`` gives it."""
        return _location(self.path)

    def to_dict(self, *, actual: bool = False) -> dict[str, Any]:
        """The problem as JSON-able data for an API's error response: ``loc`` (a list),
        ``path``, ``message`` and ``expected``. ``actual`` (which shows the value
        refused, a password as well) is left out unless asked for."""
        shown: dict[str, Any] = {
            "loc": list(self.loc),
            "path": self.path,
            "message": self.message,
            "expected": self.expected,
        }
        if actual:
            shown["actual"] = self.actual
        return shown


#: one step of a problem's path: ``.name``/``name``, ``[3]`` or ``['a key']``
_STEP = re.compile(r"""\.?([^\W\d]\w*)|\[(-?\d+)\]|\[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]""")


def _location(path: str) -> tuple[str | int, ...]:
    """A problem's ``path`` back as keys and indexes (see ``join_path`` in validation)."""
    steps: list[str | int] = []
    at = 0
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None or match.end() == at:  # not a path this library wrote: as it is
            return (path,)
        name, index, quoted = match.groups()
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(ast.literal_eval(quoted))
        at = match.end()
    return tuple(steps)


class ValidationError(EventError, ValueError):
    """Data did not match its schema. ``errors`` lists every problem found."""

    def __init__(
        self,
        errors: list[ValidationProblem],
        *,
        event_type: str | None = None,
        subject: str = "data",
    ) -> None:
        self.errors = list(errors)
        self.event_type = event_type
        head = f"invalid {event_type!r} event" if event_type else f"invalid {subject}"
        count = len(self.errors)
        lines = "; ".join(str(p) for p in self.errors)
        plural = "s" if count != 1 else ""
        super().__init__(f"{head}: {count} problem{plural}: {lines}")

    def to_dicts(self, *, actual: bool = False) -> list[dict[str, Any]]:
        """Every problem as :meth:`ValidationProblem.to_dict` gives it: the body of an
        API's 422 response, without the values refused unless ``actual``."""
        return [problem.to_dict(actual=actual) for problem in self.errors]


class ListenerLimitError(EventError):
    """Registering another handler would exceed ``max_listeners`` for that event type."""


class BufferFullError(EventError):
    """The manager's buffer is full; ``emit_nowait`` cannot schedule another event, or a
    handler's ``emit`` would wait forever for a slot only its own emit could give back."""


class HandlerCancelledError(EventError):
    """A processor handler's own ``await`` was cancelled while nothing cancelled its caller.

    Raised from the ``CancelledError`` (its ``__cause__``). It is an ``Exception``, so the
    middleware see a failure: ``RetryMiddleware`` retries it per its policy's
    ``retry_on`` and ``DeadLetterMiddleware`` records it.
    """


class UnknownTopicError(EventError, LookupError):
    """A topic matches no declared pattern, or a pattern can match no declared topic."""


class AccessDenied(EventError, PermissionError):
    """An access-control rule refused the operation."""

    def __init__(self, principal: str | None, action: str, target: str) -> None:
        self.principal = principal
        self.action = action
        self.target = target
        super().__init__(f"principal {principal!r} may not {action} {target!r}")


class ConfigurationError(EventError, ValueError):
    """A URL, option or combination of options is invalid."""


class MissingDependencyError(EventError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs the {module!r} package: pip install 'pepperpy-event[{extra}]'",
            name=module,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild, args, state = super().__reduce__()
        # ImportError keeps these outside __dict__
        return (rebuild, args, {**state, "name": self.name, "path": self.path, "msg": self.msg})


class ClosedError(EventError):
    """The manager, bus, store or subscription was closed.

    ``stored`` has :attr:`TransportError.stored`'s meaning on a publish refused because
    its bus or transport is closed or closing: ``False`` when the refusal came before
    anything was sent, ``None`` (the default, and everywhere else) when it cannot tell.
    """

    stored: bool | None = None

    def __init__(self, *args: object, stored: bool | None = None) -> None:
        super().__init__(*args)
        if stored is not None:
            self.stored = stored


class StoreError(EventError):
    """An event store backend failed.

    ``written`` says what became of a write that failed: ``False`` when the backend knows
    that nothing of the call was written (SQLite rolled its transaction back; a version
    conflict; an append to a deleted stream), ``None`` when it cannot tell (a connection
    lost around a PostgreSQL ``COMMIT``: read back to find out).
    """

    written: bool | None = None


class ConcurrencyError(StoreError):
    """An append's ``expected_version`` did not match the stream's actual version."""

    written = False

    def __init__(self, stream: str, expected: Any, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        found = "the stream does not exist" if actual is None else f"actual version {actual!r}"
        super().__init__(f"stream {stream!r}: expected version {expected!r}, {found}")


class StreamDeletedError(StoreError):
    """The stream was deleted; an append refused for it wrote nothing."""

    written = False


class EncryptionError(StoreError):
    """Encrypted data cannot be read or written (missing, shredded or wrong key)."""


class TransportError(EventError):
    """A bus transport or its broker failed.

    ``stored`` says what became of an event whose publish failed, as
    :attr:`StoreError.written` does for a store: ``False`` when the transport knows the
    broker cannot have it (it was never sent: the broker refused every connection, or the
    event was too large; or the broker answered that it did not store it), ``None`` when
    it cannot tell (the publish went out and no answer came back: publishing the event
    again may deliver it twice), ``True`` when the broker stored it but something asked
    of it besides failed (Redis's ``replicas``). Errors other than a failed publish keep
    ``None``.
    """

    stored: bool | None = None


class BatchPublishError(TransportError):
    """Some events of a ``publish_many`` batch could not be published.

    ``outcomes[i]`` says what became of the batch's ``i``-th event, with ``stored``'s
    meaning: ``True`` stored (it stays published), ``False`` not stored (never sent once
    a publish had failed, or refused), ``None`` unknown (sent, no answer: publishing it
    again may deliver it twice). ``errors`` maps the index of each event whose publish
    failed to its error; ``events`` are the batch's events, to publish again those not
    stored. ``stored`` is ``False`` when no event of the batch can be stored, else ``None``.
    """

    def __init__(
        self,
        message: str,
        events: tuple[Any, ...],
        outcomes: tuple[bool | None, ...],
        errors: dict[int, BaseException],
    ) -> None:
        super().__init__(message)
        self.events = events
        self.outcomes = outcomes
        self.errors = errors
        self.stored = False if not any(o is not False for o in outcomes) else None


class NotificationError(EventError):
    """A notification channel failed to deliver."""


class TemplateNotFound(NotificationError, LookupError):
    """No template with that name (for that channel)."""


class TemplateError(NotificationError):
    """A template failed to render (the message names the template and the cause)."""


class RecipientError(NotificationError, ValueError):
    """The context gives no address for a channel."""


class ReplayError(EventError):
    """A replay was misconfigured or failed."""


# Tracebacks, reprs and pickles name these classes where users import them from
# (``pepperpy.event.ConcurrencyError``), not by this private module. Class-level
# annotations here must therefore resolve in that package's namespace too
# (typing.get_type_hints looks them up in sys.modules[cls.__module__]): builtins only.
for _name in __all__:
    globals()[_name].__module__ = "pepperpy.event"
del _name
