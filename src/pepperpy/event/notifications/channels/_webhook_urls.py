"""How a webhook URL is shown in errors, dead letters, logs and the repr.

A webhook URL is usually a credential: whoever has it can post. Well-known services put
the secret in the path (``hooks.slack.com/services/T0/B0/SECRET``), others in the query
(``?code=`` of an Azure function, ``?key=&token=`` of Google Chat). What is shown keeps
the scheme, the host and the path's shape, so an operator can still tell which hook
failed, and hides (as ``***``):

* the password of ``user:password@``, and a user part without one (a token);
* every query value;
* the path segments of a known service that hold its secret (:data:`_SERVICES`);
* any other path segment that looks like a key: a UUID, or 16 characters or more with
  a run of 8 or more letters and digits that mixes letters and digits, or upper and
  lower case about as often as random text does (``customer-notifications-v2`` and
  ``OrderShippedWebhook`` are shown; ``0e5f9a...`` and ``xwz9q8k4h7...`` are not).

The heuristic cannot know every secret: ``WebhookChannel(url, label=...)`` shows a name
of the user's choice instead of the URL.

httpx logs each request at INFO on the ``httpx`` logger with its whole URL; a filter on
that logger (:func:`show_in_httpx_log`) puts the channel's shown form in its place.
httpcore, under it, logs the answers' headers as received at DEBUG: a redirect's
``Location`` there often repeats the secret (the same hook with a slash, or on
``https://``); while a channel sends (:func:`hidden_in_httpcore_log`) a filter on those
loggers shows a ``Location`` or ``Content-Location`` as the channel shows a redirect.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from urllib.parse import unquote, urljoin, urlsplit

from ..._redact import redact_url

__all__ = [
    "HIDDEN",
    "looks_secret",
    "hidden_in_httpcore_log",
    "show_in_httpx_log",
    "shown_location",
    "shown_url",
]

HIDDEN = "***"

#: a UUID, hidden wherever it is in a path (``webhook.site/<uuid>``, Teams' ids)
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_RUN = re.compile(r"[A-Za-z0-9]{8,}")
#: segments shorter than this are shown unless a service rule hides them
_SECRET_LENGTH = 16


def shown_url(url: str) -> str:
    """``url`` with its credentials hidden (see the module docstring); otherwise as given."""
    shown = redact_url(url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return shown
    rest, hash_sign, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if at and ":" not in user:  # a user part without a password is a token
        authority = f"{HIDDEN}@{host}"
    if slash:
        path = "/".join(_hidden_segments(path.split("/"), _host(url)))
    if question:
        query = "&".join(
            f"{name}={HIDDEN}" if equals else name
            for name, equals, _ in (field.partition("=") for field in query.split("&"))
        )
    return f"{scheme}{sep}{authority}{slash}{path}{question}{query}{hash_sign}{fragment}"


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:  # a bad port or bracket: the URL is refused, shown all the same
        return ""


def _hidden_segments(segments: list[str], host: str) -> list[str]:
    decoded = [unquote(segment) for segment in segments]
    hidden = {index for index, text in enumerate(decoded) if looks_secret(text)}
    for suffixes, rule in _SERVICES:
        if host in suffixes or host.endswith(tuple(f".{suffix}" for suffix in suffixes)):
            hidden |= rule(decoded)
    return [HIDDEN if index in hidden else seg for index, seg in enumerate(segments)]


def looks_secret(text: str) -> bool:
    """Whether a path segment looks like a key rather than a name a person chose."""
    if _UUID.search(text):
        return True
    if len(text) < _SECRET_LENGTH:
        return False
    for run in _RUN.findall(text):
        if not run.isalpha() and not run.isdigit():
            return True  # letters and digits mixed
        switches = sum(a.isupper() != b.isupper() for a, b in zip(run, run[1:], strict=False))
        if run.isalpha() and switches * 3 >= len(run):
            return True  # upper and lower case mixed as in random text, not camelCase
    return False


# -- well-known services: which path segments hold the secret ---------------------------


def _last(segments: Sequence[str]) -> set[int]:
    """Slack: ``/services/T…/B…/SECRET``, ``/workflows/T…/A…/ID/SECRET``."""
    named = [index for index, segment in enumerate(segments) if segment]
    return {named[-1]} if len(named) >= 2 else set()


def _after(word: str, count: int = 1, skip: int = 0) -> Callable[[Sequence[str]], set[int]]:
    """The ``count`` segments after the first ``word`` segment, ``skip`` ones left out."""

    def rule(segments: Sequence[str]) -> set[int]:
        lowered = [segment.lower() for segment in segments]
        if word not in lowered:
            return set()
        start = lowered.index(word) + 1 + skip
        return set(range(start, min(start + count, len(segments))))

    return rule


def _teams(segments: Sequence[str]) -> set[int]:
    """Microsoft Teams (Office 365 connectors): ``/webhookb2/ID@TENANT/IncomingWebhook/
    KEY/OWNER/…``: everything after the first segment but the word ``IncomingWebhook``."""
    return {
        index
        for index, segment in enumerate(segments)
        if index > 0 and segment and segment.lower() != "incomingwebhook"
    }


#: (hosts, each also matching its subdomains) -> the path segments holding the secret;
#: segments are counted from the first after the host's ``/``
_SERVICES: tuple[tuple[tuple[str, ...], Callable[[Sequence[str]], set[int]]], ...] = (
    (("hooks.slack.com",), _last),
    # /api/webhooks/ID/TOKEN (also /api/v10/webhooks/..., and .../TOKEN/slack)
    (("discord.com", "discordapp.com"), _after("webhooks", skip=1)),
    (("webhook.office.com", "outlook.office.com", "outlook.office365.com"), _teams),
    # /hooks/catch/ACCOUNT/HOOK/
    (("hooks.zapier.com",), _after("catch", count=2)),
    # /trigger/EVENT/with/key/KEY (and /trigger/EVENT/json/with/key/KEY)
    (("maker.ifttt.com",), _after("key")),
    # /hooks/KEY of a self-hosted Mattermost or /hooks/ID/TOKEN of Rocket.Chat are
    # found by their look; /botTOKEN/sendMessage of Telegram's API too
    (("api.telegram.org",), lambda segments: {0} if segments[0][:3] == "bot" else set()),
)


# -- httpx's own request log ----------------------------------------------------------


class _HttpxRequestLog(logging.Filter):
    """Replaces a webhook channel's URL in httpx's ``HTTP Request: POST <url> ...`` INFO
    record by the channel's shown form (records of other URLs are left alone)."""

    def __init__(self) -> None:
        super().__init__("")
        self._lock = threading.Lock()
        self._shown: dict[str, str] = {}
        self._owners: Counter[str] = Counter()

    def add(self, owner: object, url: str, shown: str) -> None:
        with self._lock:
            self._shown[url] = shown
            self._owners[url] += 1
        weakref.finalize(owner, self._drop, url)

    def _drop(self, url: str) -> None:
        with self._lock:
            self._owners[url] -= 1
            if self._owners[url] <= 0:
                del self._owners[url]
                self._shown.pop(url, None)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if self._shown and isinstance(args, tuple) and len(args) >= 2:
            shown = self._shown.get(str(args[1]))
            if shown is not None and str(record.msg).startswith("HTTP Request:"):
                record.args = (args[0], shown, *args[2:])
        return True


_HTTPX_LOG = _HttpxRequestLog()


def show_in_httpx_log(owner: object, url: str, shown: str) -> None:
    """Have httpx's request log show ``shown`` for ``url`` (as httpx writes it) while
    ``owner`` lives."""
    _HTTPX_LOG.add(owner, url, shown)
    logging.getLogger("httpx").addFilter(_HTTPX_LOG)  # once: a filter is added only once


# -- httpcore's DEBUG log of the answers' headers ---------------------------------------

#: the URL and label of the channel sending in this context (strings, not the channel:
#: a task started meanwhile copies the context, and must not keep the channel alive)
_SENDING: ContextVar[tuple[str, str | None] | None] = ContextVar(
    "pepperpy_webhook_sending", default=None
)

#: a URL-valued header in httpcore's ``receive_response_headers.complete return_value=
#: (..., [(b'Location', b'...'), ...])``: both parts as ``repr(bytes)`` writes them
_URL_HEADER = re.compile(
    r"\(b(?P<q1>['\"])(?P<name>(?i:location|content-location))(?P=q1), "
    r"b(?P<value>(?P<q2>['\"])(?:\\.|(?!(?P=q2)).)*(?P=q2))\)"
)

#: the loggers httpcore writes answers' headers to (HTTP/1.1 and HTTP/2)
_HTTPCORE_LOGGERS = ("httpcore.http11", "httpcore.http2")


class _HttpcoreHeaderLog(logging.Filter):
    """In a webhook channel's send, shows the URL-valued headers of httpcore's DEBUG
    records of an answer as the channel shows a redirect; other records, and every
    record outside a send, are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        sending = _SENDING.get()
        if sending is None or "receive_response_headers" not in str(record.msg):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is logging's to report
            return True
        record.msg = _URL_HEADER.sub(lambda match: _shown_header(match, *sending), message)
        record.args = ()
        return True


def _shown_header(match: re.Match[str], url: str, label: str | None) -> str:
    try:
        value = ast.literal_eval(f"b{match['value']}")
        shown = shown_location(url, label, value.decode("latin-1"))
    except (ValueError, SyntaxError, UnicodeError):  # not what httpcore writes: all hidden
        shown = HIDDEN
    quote = match["q1"]
    return f"(b{quote}{match['name']}{quote}, {shown.encode('latin-1', 'replace')!r})"


_HTTPCORE_LOG = _HttpcoreHeaderLog("")


def shown_location(url: str, label: str | None, location: str) -> str:
    """A URL the receiver of webhook ``url`` answered with (a ``Location``), as errors
    and logs show it: resolved against ``url``, its credentials hidden; all hidden for a
    channel with a ``label`` (it is usually the same secret)."""
    if label is not None:
        return HIDDEN
    try:
        return shown_url(urljoin(url, location))
    except ValueError:  # not a URL urljoin can read: shown as the receiver sent it
        return shown_url(location)


@contextlib.contextmanager
def hidden_in_httpcore_log(url: str, label: str | None) -> Iterator[None]:
    """For the length of the block (a request of the channel of ``url`` and ``label``,
    in this task), httpcore's DEBUG records of answers' headers show ``Location`` and
    ``Content-Location`` as :func:`shown_location` does."""
    for name in _HTTPCORE_LOGGERS:
        logging.getLogger(name).addFilter(_HTTPCORE_LOG)  # once: a filter is added only once
    token = _SENDING.set((url, label))
    try:
        yield
    finally:
        _SENDING.reset(token)
