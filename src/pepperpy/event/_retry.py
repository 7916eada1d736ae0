"""How often and how far apart a failed handler is tried again."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ._errors import ValidationError
from ._options import check_count
from ._seconds import check_seconds

__all__ = ["RetryPolicy", "check_policy", "follow"]

Kind = Literal["none", "fixed", "linear", "exponential"]
_KINDS: tuple[Kind, ...] = ("none", "fixed", "linear", "exponential")
ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A retry schedule: ``max_attempts`` counts every try, the first included.

    Delays before try ``n + 1`` (``n`` = 1, 2, ...):

    * fixed: ``base_delay``
    * linear: ``min(max_delay, base_delay * n)``
    * exponential: ``min(max_delay, base_delay * 2 ** (n - 1))``; with ``jitter`` the
      delay is drawn uniformly from ``[base_delay, that value]`` ("equal jitter" kept
      within ``[base_delay, max_delay]``).

    Only exceptions that are instances of ``retry_on`` are retried; others fail at once.
    A :class:`~pepperpy.event.ValidationError` (data its schema refuses: the same data
    fails the same way every time) is retried only when ``retry_on`` names it (or a
    subclass of it); a broader class there (``Exception``, the default, ``ValueError``)
    does not retry it. A delay of ``0`` means no wait.
    """

    kind: Kind = "none"
    max_attempts: int = 1
    base_delay: float = 0.0
    max_delay: float = 0.0
    jitter: bool = False
    retry_on: ExceptionTypes = field(default=(Exception,))

    NONE: ClassVar[RetryPolicy]
    FIXED: ClassVar[RetryPolicy]
    LINEAR: ClassVar[RetryPolicy]
    EXPONENTIAL: ClassVar[RetryPolicy]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if not isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a bool, got {self.jitter!r}")
        check_count(self.max_attempts, "max_attempts", error=ValueError)
        for name in ("base_delay", "max_delay"):
            check_seconds(getattr(self, name), name, zero=True, error=ValueError)
        if self.kind == "none" and (
            self.max_attempts != 1 or self.base_delay != 0 or self.max_delay != 0
        ):
            # RetryPolicy(max_attempts=3, base_delay=2.0) read as 3 tries 2 s apart, and
            # silently made 3 tries at once: kind "none" has no schedule to follow
            raise ValueError(
                "a policy of kind 'none' makes one try and waits for nothing (got "
                f"max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
                f"max_delay={self.max_delay}): use RetryPolicy.fixed(), .linear() or "
                ".exponential() for retries"
            )
        if self.kind != "fixed" and self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})"
            )
        object.__setattr__(self, "retry_on", _types(self.retry_on))

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls()

    @classmethod
    def fixed(
        cls,
        max_attempts: int = 3,
        base_delay: float = 1.0,
        retry_on: ExceptionTypes | type[BaseException] = (Exception,),
    ) -> RetryPolicy:
        """``max_attempts`` tries, ``base_delay`` seconds apart."""
        return cls("fixed", max_attempts, base_delay, base_delay, False, _types(retry_on))

    @classmethod
    def linear(
        cls,
        max_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        retry_on: ExceptionTypes | type[BaseException] = (Exception,),
    ) -> RetryPolicy:
        """Delays grow by ``base_delay`` each try, capped at ``max_delay``."""
        return cls("linear", max_attempts, base_delay, max_delay, False, _types(retry_on))

    @classmethod
    def exponential(
        cls,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 30.0,
        jitter: bool = True,
        retry_on: ExceptionTypes | type[BaseException] = (Exception,),
    ) -> RetryPolicy:
        """Delays double each try from ``base_delay``, capped at ``max_delay``."""
        return cls("exponential", max_attempts, base_delay, max_delay, jitter, _types(retry_on))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if self.kind == "none":
            return 0.0
        if self.kind == "fixed":
            return self.base_delay
        if self.kind == "linear":
            return min(self.max_delay, self.base_delay * attempt)
        ceiling = self._ceiling(attempt)
        if self.jitter and ceiling > self.base_delay:
            return random.uniform(self.base_delay, ceiling)
        return ceiling

    def _ceiling(self, attempt: int) -> float:
        """The exponential delay after try ``attempt``, before jitter."""
        return min(self.max_delay, math.ldexp(self.base_delay, min(attempt - 1, 512)))

    def delays(self) -> Iterator[float]:
        """The waits between tries: ``max_attempts - 1`` values."""
        for attempt in range(1, self.max_attempts):
            yield self.delay(attempt)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True when try ``attempt`` failed with ``exc`` and another try is due.

        A ``ValidationError`` that ``retry_on`` does not name is never due (nor an
        ``ExceptionGroup`` holding one): refused data is refused again.
        """
        return (
            attempt < self.max_attempts
            and isinstance(exc, self.retry_on)
            and not _refused_again(exc, self.retry_on)
        )

    async def sleep(self, attempt: int) -> None:
        """Wait the delay due after failed try ``attempt``."""
        seconds = self.delay(attempt)
        await asyncio.sleep(seconds)


def check_policy(value: object, name: str = "retry_policy") -> RetryPolicy:
    """``value`` if it is a RetryPolicy; otherwise a ``TypeError`` saying what to pass
    for the usual slips: ``None`` for no retries, the factory not called
    (``RetryPolicy.exponential``), a preset's name as a string (``"exponential"``)."""
    if isinstance(value, RetryPolicy):
        return value
    hint = ""
    factory = getattr(value, "__func__", None)
    kind = getattr(factory, "__name__", None)
    if getattr(value, "__self__", None) is RetryPolicy and kind in _KINDS:
        hint = f": call it, RetryPolicy.{kind}(...), or use the preset RetryPolicy.{kind.upper()}"
    elif value is None:
        hint = ": RetryPolicy.NONE makes one try, no retries"
    elif isinstance(value, str) and value.lower() in _KINDS:
        hint = f": use RetryPolicy.{value.upper()}, or RetryPolicy.{value.lower()}(...)"
    raise TypeError(f"{name} must be a RetryPolicy, got {value!r}{hint}")


def describe_delay(policy: RetryPolicy, attempt: int) -> str:
    """The wait after failed try ``attempt``, for a log line (a range when jittered)."""
    if policy.kind == "exponential" and policy.jitter:
        ceiling = policy._ceiling(attempt)
        if ceiling > policy.base_delay:
            return f"{policy.base_delay:.3g} to {ceiling:.3g} s"
    return f"{policy.delay(attempt):.3g} s"


def _refused_again(exc: BaseException, retry_on: ExceptionTypes) -> bool:
    """Whether ``exc`` is (or an exception group holds) a ``ValidationError`` that no
    class of ``retry_on`` derived from ``ValidationError`` covers: a validator refuses
    the same data again, so retrying it only delays its dead letter."""
    if isinstance(exc, ValidationError):
        named = tuple(kind for kind in retry_on if issubclass(kind, ValidationError))
        return not isinstance(exc, named)
    if isinstance(exc, BaseExceptionGroup):
        return any(_refused_again(member, retry_on) for member in exc.exceptions)
    return False


def _types(retry_on: ExceptionTypes | type[BaseException]) -> ExceptionTypes:
    """``retry_on`` as a tuple of exception classes; anything else is refused clearly."""
    types = (retry_on,) if isinstance(retry_on, type) else retry_on
    if (
        not isinstance(types, tuple | list | set | frozenset)
        or not types
        or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types)
    ):
        raise TypeError(
            f"retry_on must be an exception class or a non-empty tuple of them, got {retry_on!r}"
        )
    for kind in types:
        # KeyboardInterrupt, SystemExit and the like always propagate (a handler's own
        # CancelledError is a failure, retried when named): a policy naming them would
        # claim retries that never happen
        if not issubclass(kind, Exception | asyncio.CancelledError) and kind is not BaseException:
            raise TypeError(
                f"retry_on: {kind.__name__} is never retried (KeyboardInterrupt, SystemExit"
                " and other BaseExceptions but CancelledError always propagate);"
                " retry_on=Exception retries every error"
            )
    return tuple(types)


RetryPolicy.NONE = RetryPolicy()
RetryPolicy.FIXED = RetryPolicy.fixed()
RetryPolicy.LINEAR = RetryPolicy.linear(max_attempts=3, base_delay=1.0, max_delay=2.0)
RetryPolicy.EXPONENTIAL = RetryPolicy.exponential()


def follow(failure: BaseException, earlier: list[BaseException]) -> None:
    """Chain a retry's ``failure`` to the try before it, so that a dead letter's
    traceback shows every try, the last first: the end of ``failure``'s own chain of
    ``__context__`` gets the previous try's failure as its context.

    Python chains what a retry raises to the exception being handled around it: the
    first try's on the one-handler path (so the tries between were missing), none where
    the retries run in a Task of their own. A context of the handler's own (raised in
    its ``except``) stays, before the previous try; nothing that makes a loop is set.
    """
    previous = earlier[-1]
    link = failure
    for _ in range(_LINKS):
        if any(link is e for e in earlier):
            return  # chained to a try already (or that try's exception raised again)
        context = link.__context__
        if context is None or context is earlier[0]:
            if not _reaches(previous, link):
                link.__context__ = previous
            return
        link = context


#: most links :func:`follow` walks in a chain (a chain built by hand may loop)
_LINKS = 1000


def _reaches(error: BaseException, target: BaseException) -> bool:
    """Whether ``target`` is in ``error``'s chain of ``__context__``."""
    link: BaseException | None = error
    for _ in range(_LINKS):
        if link is None:
            return False
        if link is target:
            return True
        link = link.__context__
    return True  # too long to tell: set nothing
