"""``http://`` / ``https://``: POST each notification as JSON, signed with HMAC-SHA256.

Body: :meth:`Notification.to_dict` as JSON. Headers:

* ``X-Pepperpy-Timestamp``: Unix seconds when the request was signed;
* ``X-Pepperpy-Signature``: ``sha256=<hex>``, the HMAC-SHA256 of
  ``b"<timestamp>." + body`` under the shared secret (signing the timestamp too lets
  receivers reject replays of an old request);
* ``Idempotency-Key``: the notification's idempotency key (or id), stable across our
  retries, so receivers can drop duplicates.

Receivers check a request with :meth:`WebhookChannel.verify_signature`.

Redirects are not followed (a POST must not be re-sent to an address nobody configured):
a 3xx answer is a permanent failure whose message names its ``Location``. A 429 or 503
answer's ``Retry-After`` (seconds or an HTTP date) is kept on the error as
``retry_after`` (seconds), and the system waits at least that long before the next try.

The answer's body is read as a stream and only its first :data:`RESPONSE_LIMIT` bytes are
kept (an error message quotes the start of them), so a receiver answering with a huge
body cannot fill our memory. ``timeout`` bounds the whole request, however slowly the
receiver trickles its answer; once the status line has come, it is the answer, even if
the body then stalls past the timeout or breaks off (a 2xx is a delivery: trying it again
would send the message twice). Transport failures carry a builtin cause
(``ConnectionError`` or ``TimeoutError``), so ``RetryPolicy(retry_on=ConnectionError)``
means the same for webhooks as for email.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from ... import __version__
from ..._deps import require
from ..._errors import ConfigurationError, NotificationError
from ..._json import dumps
from ..._loops import LoopShares
from ..._seconds import check_seconds
from .._loopclients import LoopClients
from .._models import Notification
from .._urls import split_url
from ._webhook_urls import hidden_in_httpcore_log, show_in_httpx_log, shown_location, shown_url
from .base import PAUSE, Channel

__all__ = ["RESPONSE_LIMIT", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookChannel"]

SIGNATURE_HEADER = "X-Pepperpy-Signature"
TIMESTAMP_HEADER = "X-Pepperpy-Timestamp"
#: bytes of an answer's body read at most; the rest is dropped with the connection
RESPONSE_LIMIT = 64 * 1024
_RETRYABLE_STATUS = frozenset({408, 425, 429})
#: answers whose ``Retry-After`` says when to try again
_RETRY_AFTER_STATUS = frozenset({429, 503})
#: whitespace and control characters: never part of a URL (they would end a header line)
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f]")
#: a timestamp header: Unix seconds, as :meth:`WebhookChannel.sign` callers write them
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
#: an HTTP header name (RFC 9110 token) and value (printable ASCII, inner spaces and tabs)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[ \t]*[\x21-\x7e])*)?")
#: headers that frame the body, which the channel writes itself
_FRAMING = frozenset({"content-length", "transfer-encoding"})
#: headers a channel with a secret writes itself
_SIGNING = frozenset({SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower()})
#: how much of an error answer's body an error message quotes
_QUOTED = 200
#: requests one channel has under way on one event loop: its httpx pool's connections.
#: A try past them waits for a free one before its ``timeout`` starts. Left to httpx, it
#: waited inside the timeout (a burst of 150 alerts to a receiver answering in 1 s failed
#: its last 50 tries, which the receiver then got twice), and a few hundred waiting in
#: httpcore's pool kept any request from being written before its deadline
IN_FLIGHT = 100


class _Slots:
    """One event loop's slots for the requests a channel has under way there."""

    __slots__ = ("loop", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots = asyncio.Semaphore(IN_FLIGHT)

    def abandon(self) -> None:
        """Nothing to drop: its waiters went with their loop."""


class WebhookChannel(Channel):
    """POSTs notifications to ``url`` with httpx; 5xx, 408, 425, 429 and network errors
    are retried by the system, redirects (3xx, not followed) and other 4xx answers are
    permanent failures. ``url`` is checked here: no host, a bad port, whitespace or a
    control character in it is a :class:`~pepperpy.event.ConfigurationError`.

    ``secret`` (str or bytes) turns on the signature headers; ``timeout`` bounds each
    request as a whole (connecting, sending, and reading the answer; not the wait for a
    rate limit's slot); ``headers`` are added to every request (each checked here: an
    HTTP token as its name, printable ASCII as its value, not ``Content-Length`` or
    ``Transfer-Encoding``, no name twice in two cases, nor the signature headers when
    signed), a ``Content-Type``, ``User-Agent`` or ``Idempotency-Key`` among them, in
    any case, replacing the channel's own. The webhook's address is
    its URL, so it needs no recipient (a resolved one is still included in the body).

    Errors, dead letters, logs and the repr show the URL without its credentials: its
    password, every query value, and the path segments that hold a well-known service's
    secret or look like a key (see ``docs/notifications.md``). ``label`` shows that name
    instead, and nothing of the URL, for a URL whose secret the rules cannot tell.

    Each event loop sending through the channel gets its own httpx client (connections
    belong to the loop that opened them). A loop's client closes when ``asyncio.run``
    shuts that loop down, or on :meth:`close`; the channel stays usable afterwards.
    """

    kind = "webhook"
    needs_recipient = False
    paces_writes = True

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> None:
        _check_url(url)
        self.timeout = check_seconds(timeout, "timeout")
        # a channel that could never send is refused now, not at its first message
        httpx = require("httpx", extra="webhook", feature="the webhook channel")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigurationError(f"webhook label must be a non-empty str, got {label!r}")
        self.url = url
        self.label = label
        # for messages, logs and the repr: no credentials
        self._shown = shown_url(url) if label is None else repr(label)
        try:
            as_sent = httpx.URL(url)
        except httpx.InvalidURL as exc:  # a host that is not valid IDNA, for one
            raise ConfigurationError(f"webhook URL {shown_url(url)!r} is invalid: {exc}") from exc
        show_in_httpx_log(self, str(as_sent), self._shown)
        # an int failed every try (hmac's TypeError, retried); an empty secret, as
        # ``os.environ.get("HOOK_SECRET", "")`` gives when the variable is not set,
        # signed every request with a key anyone can sign with
        if secret is not None and not isinstance(secret, str | bytes):
            raise TypeError(
                f"webhook secret must be a str, bytes or None, got {type(secret).__name__}"
            )
        if secret is not None and not secret:
            raise ConfigurationError(
                f"webhook secret of {self._shown} is empty: its signatures could be forged "
                "by anyone; pass the shared secret, or secret=None to send unsigned requests"
            )
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.headers = _checked_headers(headers, signed=secret is not None)
        # names are case-insensitive: a configured one replaces the channel's default
        # (sent both, a receiver saw two Content-Types or Idempotency-Keys)
        self._configured = frozenset(name.lower() for name in self.headers)
        self._clients: LoopClients[Any] = LoopClients(self._new_client, _close_client, owner=self)
        self._slots: LoopShares[_Slots] = LoopShares(_Slots)

    @staticmethod
    def sign(secret: str | bytes, body: bytes, timestamp: str) -> str:
        """The signature header value for ``body`` sent at ``timestamp``."""
        key = secret.encode() if isinstance(secret, str) else secret
        digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    @classmethod
    def verify_signature(
        cls,
        secret: str | bytes,
        body: bytes,
        timestamp: str,
        signature: str,
        *,
        tolerance: float | None = 300.0,
        now: float | None = None,
    ) -> bool:
        """True when ``signature`` matches and ``timestamp`` is within ``tolerance`` seconds.

        Header values come from the network, so anything malformed (not a str, a
        timestamp that is not 1 to 15 ASCII digits, non-ASCII characters) is simply
        False, never an exception.
        """
        if not isinstance(signature, str) or not isinstance(timestamp, str):
            return False
        if not _TIMESTAMP.fullmatch(timestamp):  # digits only, and few enough for a float
            return False
        sent_at = int(timestamp)
        current = time.time() if now is None else now
        if tolerance is not None and abs(current - sent_at) > tolerance:
            return False
        expected = cls.sign(secret, body, timestamp).encode("ascii")
        # bytes, not str: compare_digest refuses non-ASCII str with a TypeError
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def _new_client(self) -> Any:
        httpx = require("httpx", extra="webhook", feature="the webhook channel")
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=20)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits)

    async def send(self, notification: Notification) -> None:
        httpx = require("httpx", extra="webhook", feature="the webhook channel")
        body = dumps(notification.to_dict())
        defaults = {
            "Content-Type": "application/json",
            "User-Agent": f"pepperpy-event/{__version__}",
            "Idempotency-Key": notification.key or notification.id,
        }
        headers = {k: v for k, v in defaults.items() if k.lower() not in self._configured}
        headers.update(self.headers)
        if self._secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = self.sign(self._secret, body, timestamp)
        client = self._clients.here()
        loop = asyncio.get_running_loop()
        answers: list[Any] = []  # the response, once its status line and headers came
        start = bytearray()  # the start of its body, as far as it came
        # a free connection first, outside the timeout (see IN_FLIGHT)
        slots = self._slots.here().slots
        pause = PAUSE.get()
        with contextlib.nullcontext() if pause is None else pause():
            await slots.acquire()  # close() ends this wait at once: nothing was sent
        try:
            async with asyncio.timeout(self.timeout) as deadline:

                async def trace(event: str, info: Mapping[str, Any]) -> None:
                    # the connection is ready and the request not yet written: take the
                    # rate limit's slot now; waiting for it does not count as the request
                    if not event.endswith(".send_request_headers.started") or deadline.expired():
                        return
                    left = (deadline.when() or loop.time()) - loop.time()
                    deadline.reschedule(None)
                    try:
                        await self.ready_to_write()
                    finally:
                        deadline.reschedule(loop.time() + left)

                with hidden_in_httpcore_log(self.url, self.label):
                    async with client.stream(
                        "POST",
                        self.url,
                        content=body,
                        headers=headers,
                        extensions={"trace": trace},
                    ) as response:
                        answers.append(response)
                        if response.is_success:  # a delivery, whatever becomes of the body
                            self.mark_accepted()  # (close() cutting it off, a cancellation)
                        await _read_start(response, start)
        except TimeoutError as exc:
            if not answers:
                raise NotificationError(
                    f"webhook {self._shown} did not answer within {self.timeout}s"
                ) from exc
        except httpx.HTTPError as exc:
            if not answers:
                raise NotificationError(
                    f"webhook {self._shown} failed: {exc!r}"
                ) from _builtin_cause(exc, httpx)
        finally:
            slots.release()
        # the status came: it is the answer, even if the body then stalled or broke off (a
        # 2xx is a delivery, and trying it again would send the message twice)
        response = answers[0]
        if not response.is_success:
            quoted = bytes(start[:_QUOTED]).decode("utf-8", "replace")
            status = response.status_code
            if 300 <= status < 400:
                error = NotificationError(
                    f"webhook {self._shown} answered {status}, {self._redirect(response)}; "
                    "webhooks do not follow redirects (a POST is not re-sent to an address "
                    "nobody configured): configure the final URL"
                )
            else:
                error = NotificationError(f"webhook {self._shown} answered {status}: {quoted!r}")
            if status in _RETRY_AFTER_STATUS:
                wait = _retry_after(response.headers.get("retry-after"))
                if wait is not None:
                    error.retry_after = wait  # type: ignore[attr-defined]
            # the cause is httpx's own error for the answer (what is_retryable and
            # retry_on=httpx.HTTPStatusError look at), its message without the URL's query
            raise error from httpx.HTTPStatusError(
                f"{status} {response.reason_phrase} from {self._shown}",
                request=response.request,
                response=response,
            )

    def _redirect(self, response: Any) -> str:
        """A redirect's target as a message shows it: its credentials hidden like the
        channel's own URL (usually the same secret, on ``https://`` or with a slash)."""
        if self.label is not None:
            return "a redirect (its Location is not shown: the channel has a label)"
        absolute = shown_location(self.url, None, response.headers.get("location", ""))
        return f"a redirect to {absolute[:_QUOTED]!r}"

    def is_retryable(self, error: Exception) -> bool:
        if not super().is_retryable(error):
            return False
        response = getattr(error.__cause__, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and 300 <= status < 500:  # a redirect, or a 4xx
            return status in _RETRYABLE_STATUS
        return True

    async def close(self) -> None:
        """Close this loop's client; other loops close theirs on their own loop."""
        await self._clients.close()

    def __repr__(self) -> str:
        signed = ", signed" if self._secret is not None else ""
        return f"WebhookChannel({self._shown}{signed})"


def _check_url(url: object) -> None:
    """Refuse a URL no request could go to, now rather than at the first delivery."""
    if not isinstance(url, str):
        raise ConfigurationError(f"webhook URL must be a str, got {url!r}")
    shown = shown_url(url)
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigurationError(f"webhook URL must start with http:// or https://: {shown!r}")
    if _UNSAFE_URL.search(url):
        raise ConfigurationError(
            f"webhook URL {shown!r} contains whitespace or a control character "
            "(percent-encode it: %20 for a space)"
        )
    parts = split_url(url, "webhook URL", shown)
    if not parts.hostname:
        raise ConfigurationError(f"webhook URL {shown!r} has no host")


def _checked_headers(headers: Mapping[str, str] | None, *, signed: bool) -> dict[str, str]:
    """``headers`` as a dict, each one refused now (ConfigurationError) if no request
    could carry it: httpx and h11 refuse it at every send, which the system took for a
    transient failure and retried. So is a name given twice (in another case: sent
    twice), and, on a ``signed`` channel, the signature headers it writes itself."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"webhook headers must be a mapping, got {headers!r}")
    checked: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(
                f"webhook header name {name!r} is not an HTTP token (letters, digits and "
                "!#$%&'*+-.^_`|~, no spaces or colons)"
            )
        if name.lower() in _FRAMING:
            raise ConfigurationError(
                f"webhook header {name!r} is set by the channel (it frames the body)"
            )
        if signed and name.lower() in _SIGNING:
            raise ConfigurationError(
                f"webhook header {name!r} is set by the channel (it signs each request "
                "with the secret)"
            )
        if name.lower() in seen:
            raise ConfigurationError(
                f"webhook header {name!r} is given twice ({seen[name.lower()]!r} too): "
                "header names are case-insensitive"
            )
        seen[name.lower()] = name
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ConfigurationError(
                f"webhook header {name!r} value {value!r} must be a str of printable ASCII "
                "(tabs inside allowed), without line breaks or leading or trailing spaces"
            )
        checked[name] = value
    return checked


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:12]))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # malformed: as if absent
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


async def _close_client(client: Any) -> None:
    await client.aclose()


async def _read_start(response: Any, start: bytearray, limit: int = RESPONSE_LIMIT) -> None:
    """Add the first ``limit`` bytes of the answer's body, as sent (not decompressed), to
    ``start`` as they come (what came is kept if the rest never does).

    A body that ends within the limit is read to its end, so the connection can be
    reused; a longer one is dropped with its connection when the stream closes.
    """
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            start += chunk[: limit - len(start)]
            if len(start) >= limit:
                break


def _builtin_cause(exc: Exception, httpx: Any) -> Exception:
    """What a failed request's :class:`NotificationError` is caused by: a builtin
    ``TimeoutError`` or ``ConnectionError`` (itself caused by httpx's exception) for
    timeouts and network failures, so ``retry_on=ConnectionError`` matches them as it
    does for email; any other httpx error as it is.
    """
    builtin: Exception
    if isinstance(exc, httpx.TimeoutException):
        builtin = TimeoutError(f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        builtin = ConnectionError(f"{type(exc).__name__}: {exc}")
    else:
        return exc
    builtin.__cause__ = exc
    return builtin
