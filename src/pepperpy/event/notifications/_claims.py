"""Each message once: the idempotency key of a delivery, and its claim while it is sent.

A ``notify`` call's deliveries are keyed by its ``idempotency_key``, or, inside an ``on``
handler (wrapped by :func:`in_context`), by the event being handled and the message
rendered (:func:`key_base`, :func:`delivery_key`). A keyed delivery claims its key on the
:class:`~pepperpy.event.notifications.IdempotencyStore` (:func:`claim_key`), renews the
claim while it is under way (:func:`hold_claim`), then records it as delivered or gives it
back (:func:`end_claim`), even when its caller is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .._errors import NotificationError
from .._event import Event
from .._handlers import call, is_async_callable
from .._loops import settled
from ._idempotency import Claim, IdempotencyStore
from ._templates import Rendered

__all__ = [
    "KeyBase",
    "claim_key",
    "delivery_key",
    "end_claim",
    "hold_claim",
    "in_context",
    "key_base",
    "settled_soon",
]

T = TypeVar("T")

logger = logging.getLogger("pepperpy.event.notifications")

#: the event (and handler name) being handled, so ``notify`` can derive idempotency keys
_handling: contextvars.ContextVar[tuple[Event, str] | None] = contextvars.ContextVar(
    "pepperpy_event_notification_handling", default=None
)


@dataclass(frozen=True, slots=True)
class KeyBase:
    """What a ``notify`` call's deliveries are keyed by, before channel and recipient.

    ``by_content`` (keys derived from the event being handled) adds the rendered
    message, so one handler sending different messages sends each of them, while the
    same event handled again renders the same messages and sends none twice.
    """

    text: str
    by_content: bool


def key_base(explicit: str | None, template: str | None) -> KeyBase | None:
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit:
            message = f"idempotency_key must be a non-empty str, got {explicit!r}"
            raise TypeError(message) if not isinstance(explicit, str) else ValueError(message)
        return KeyBase(f"key:{_part(explicit)}", by_content=False)
    handling = _handling.get()
    if handling is None:
        return None
    event, handler = handling
    what = f"template:{template}" if template is not None else "text"
    return KeyBase(f"event:{_part(event.id)}|{_part(handler)}|{_part(what)}", by_content=True)


def delivery_key(
    base: KeyBase | None, channel: str, recipient: str | None, rendered: Rendered
) -> str | None:
    """The key of one delivery: a digest, so no address or code path reaches Redis or headers."""
    if base is None:
        return None
    raw = f"{base.text}|{_part(channel)}|{_part(recipient or '')}"
    if base.by_content:
        content = json.dumps([rendered.subject, rendered.body, rendered.html])
        raw += "|" + hashlib.sha256(content.encode()).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _part(text: str) -> str:
    """One part of a key's text, its ``|`` (which joins the parts) and ``\\`` escaped.

    ``|`` is valid in an email address, so unescaped, key ``A|email`` for ``x@y`` and key
    ``A`` for ``email|x@y`` on channel ``email`` made one text, one digest: the second
    notification was a "duplicate", never sent. A part holding neither character is as
    it was, so the usual keys did not change (nothing already delivered is sent again).
    """
    if "|" not in text and "\\" not in text:
        return text
    return text.replace("\\", "\\\\").replace("|", "\\|")


def in_context(
    handler: Callable[..., Any], *, refuse: Callable[[str], Exception | None] | None = None
) -> Callable[[Event], Any]:
    """Wrap a handler so ``notify`` calls inside it know which event they serve.

    ``refuse``, if given, is asked (with the handler's name) before each call: an
    exception it returns is raised instead of calling the handler.
    """
    is_async = is_async_callable(handler)
    name = f"{getattr(handler, '__module__', '')}.{getattr(handler, '__qualname__', handler)}"
    qualname = getattr(handler, "__qualname__", None) or repr(handler)

    async def handle(event: Event) -> None:
        if refuse is not None and (refused := refuse(qualname)) is not None:
            raise refused
        token = _handling.set((event, name))
        try:
            await call(handler, is_async, event)
        finally:
            _handling.reset(token)

    functools.update_wrapper(handle, handler)
    return handle


async def hold_claim(store: IdempotencyStore, key: str) -> None:
    """Renew the claim on ``key`` while its delivery is under way (cancelled when it ends),
    so a live holder keeps it however long rate limits and retries make it wait."""
    every = store.lease / 3
    while True:
        await asyncio.sleep(every)
        try:
            held = await store.renew(key)
        except Exception as exc:  # the store is down: keep trying while the lease lasts
            logger.warning("could not renew the idempotency claim on %r: %s", key, exc)
            continue
        if not held:
            logger.warning(
                "the idempotency claim on %r expired before it could be renewed; another "
                "process may deliver it too",
                key,
            )
            return


async def claim_key(store: IdempotencyStore, key: str) -> Claim:
    """``store.claim(key)``, given back if the caller is cancelled while it runs.

    The claim runs to its end (a claim that reached the store unseen would stay pending
    until its lease ends, for ever in memory, and block every retry); if it was taken
    for a caller cancelled meanwhile, it is released before the cancellation goes on.
    """
    taken: list[Claim] = []

    async def claim() -> Claim:
        taken.append(await store.claim(key))
        return taken[0]

    try:
        return await settled_soon(claim())
    except asyncio.CancelledError:
        if taken == ["claimed"]:
            await settled_soon(end_claim(store, key, None, delivered=False))
        raise


async def end_claim(
    store: IdempotencyStore, key: str, keeper: asyncio.Future[None] | None, *, delivered: bool
) -> None:
    """End a delivery's claim: stop renewing it, then complete or release it."""
    await _stop(keeper)
    try:
        if delivered:
            await store.complete(key)
        else:
            await store.release(key)
    except NotificationError:
        logger.exception("could not record idempotency key %r", key)


async def _stop(task: asyncio.Future[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.wait((task,))


async def settled_soon(operation: Coroutine[Any, Any, T]) -> T:
    """:func:`~pepperpy.event._loops.settled`, without its task when ``operation``
    finishes without waiting for anything.

    A claim on the in-memory store, and its completion, never wait: run here they cost
    a step of the coroutine, where ``settled`` costs a task and several turns of the
    event loop (the keyed notify path took 2.5 times the unkeyed one). Nothing can
    cancel an operation that never gives the loop a turn, so running it here keeps
    ``settled``'s promise; one that does wait is handed, as it stands, to ``settled``.
    """
    try:
        waiting_for = operation.send(None)
    except StopIteration as finished:
        result: T = finished.value
        return result
    except BaseException:
        operation.close()
        raise
    return await settled(_resumed(operation, waiting_for))


async def _resumed(operation: Coroutine[Any, Any, T], waiting_for: Any) -> T:
    return await _go_on(operation, waiting_for)


@types.coroutine
def _go_on(operation: Coroutine[Any, Any, T], waiting_for: Any) -> Generator[Any, Any, T]:
    """Drive ``operation`` on from its first wait, as ``await operation`` would have."""
    while True:
        try:
            sent = yield waiting_for
        except GeneratorExit:
            operation.close()
            raise
        except BaseException as exc:  # thrown in by the task (a cancellation): passed on
            try:
                waiting_for = operation.throw(exc)
            except StopIteration as finished:
                result: T = finished.value
                return result
        else:
            try:
                waiting_for = operation.send(sent)
            except StopIteration as finished:
                result = finished.value
                return result
