"""Apprise URLs (``pover://``, ``twilio://``, ``json://``, ...): push and SMS for dozens of
services through one dependency, without a client per service.

A URL may contain ``{recipient}``: it is replaced, URL-quoted, by the address resolved
for each notification (``user.phone`` for an ``sms`` channel, ``user.device_token`` for
``push``), e.g. ``twilio://SID:TOKEN@+15550001111/{recipient}``. Without it the URL's
own targets receive every message and no recipient is needed.

apprise reads several targets from one URL (it splits on commas, semicolons, brackets
and whitespace, even URL-quoted ones), so a recipient must be exactly one target: a phone
number (``sms`` channels, or anything starting with ``+``) is ``+`` and digits only, and
any other recipient is letters, digits and ``@ . _ - : + ~``, and not only dots (``.``
and ``..`` are path segments that would move ``/users/{recipient}`` to another
endpoint). Anything else is a :class:`RecipientError`, never a second target.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..._deps import require
from ..._errors import ConfigurationError, NotificationError, RecipientError
from .._models import Notification
from ._webhook_urls import HIDDEN, looks_secret
from .base import Channel, check_kind

__all__ = ["AppriseChannel"]

PLACEHOLDER = "{recipient}"
#: one phone number: an optional ``+`` and 3 to 15 digits (E.164), no separators
_PHONE = re.compile(r"\+?[0-9]{3,15}")
#: one device token, user key, chat id or address: nothing apprise splits targets on
_TOKEN = re.compile(r"[A-Za-z0-9@._:+~-]{1,512}")


class AppriseChannel(Channel):
    """Delivers through one or more apprise URLs (all of them, for every message)."""

    def __init__(self, urls: str | Sequence[str], *, kind: str | None = None) -> None:
        check_kind(kind, "AppriseChannel", "the name the channel is added under")
        if isinstance(urls, bytes | bytearray) or not isinstance(urls, str | Iterable):
            # an int was "'int' object is not iterable", bytes a tuple of ints
            raise TypeError(f"AppriseChannel urls must be a str or a list of str, got {urls!r}")
        self.urls = (urls,) if isinstance(urls, str) else tuple(urls)
        for url in self.urls:
            if not isinstance(url, str):
                raise TypeError(f"AppriseChannel URLs must be str, got {url!r}")
        if not self.urls or not all(self.urls):
            raise ConfigurationError("AppriseChannel needs at least one URL")
        self.kind = kind
        self.needs_recipient = any(PLACEHOLDER in url for url in self.urls)
        self._fixed: Any = None
        apprise = require("apprise", extra="apprise", feature="an apprise channel")
        self._secrets = _secrets_of(self.urls)
        _APPRISE_LOG.add(self, self._secrets)  # before apprise reads (and logs) the URLs
        for url in self.urls:
            if PLACEHOLDER in url:
                continue
            with _quiet_plugin_loading():
                known = apprise.Apprise.instantiate(url)
            if known is None:
                raise ConfigurationError(f"apprise does not understand {_scheme(url)}:// URLs")

    def _target(self, recipient: str | None) -> Any:
        apprise = require("apprise", extra="apprise", feature="an apprise channel")
        if not self.needs_recipient and self._fixed is not None:
            return self._fixed
        if self.needs_recipient:
            self._check_recipient(recipient)
        target = apprise.Apprise()
        for url in self.urls:
            if PLACEHOLDER in url:
                url = url.replace(PLACEHOLDER, quote(recipient or "", safe="+"))
            with _quiet_plugin_loading():
                accepted = target.add(url)
            if not accepted:
                raise ConfigurationError(
                    f"apprise does not accept the {_scheme(url)}:// URL for {recipient!r}"
                )
        if not self.needs_recipient:
            self._fixed = target
        return target

    def _check_recipient(self, recipient: str | None) -> None:
        """Refuse a recipient that apprise could read as more (or other) than one target."""
        if not recipient:
            raise RecipientError("this apprise URL has a {recipient} slot but no recipient")
        if self.kind == "sms" or recipient.startswith("+"):
            if not _PHONE.fullmatch(recipient):
                raise RecipientError(
                    f"apprise channel: {recipient!r} is not one phone number "
                    "(write it as + and digits only, e.g. +15550001111)"
                )
        elif not _TOKEN.fullmatch(recipient):
            raise RecipientError(
                f"apprise channel: {recipient!r} is not one target "
                "(letters, digits and @ . _ - : + ~ only; no spaces, commas or slashes)"
            )
        elif not recipient.strip("."):
            raise RecipientError(
                f"apprise channel: {recipient!r} is not one target "
                "(only dots: a path segment that would reach another endpoint)"
            )

    async def send(self, notification: Notification) -> None:
        target = self._target(notification.recipient)
        result = await target.async_notify(body=notification.body, title=notification.subject or "")
        if not result:
            problems = [
                entry.message
                for entry in result.logs()
                if _level(getattr(entry, "level", logging.ERROR)) >= logging.WARNING
            ]
            reason = "; ".join(problems) or f"status {getattr(result, 'status', result)!r}"
            reason = hidden(reason, self._secrets)  # a plugin's warning may quote its URL
            schemes = ", ".join(sorted({_scheme(url) for url in self.urls}))
            raise NotificationError(f"apprise delivery via {schemes} failed: {reason}")

    def __repr__(self) -> str:
        schemes = ", ".join(f"{_scheme(url)}://" for url in self.urls)
        return f"AppriseChannel({schemes})"


@contextmanager
def _quiet_plugin_loading() -> Iterator[None]:
    """Apprise loads its plugins lazily; one of them imports the deprecated ``imghdr``.

    That warning is apprise's business, not our users' (and it breaks ``-W error``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*imghdr.*", category=DeprecationWarning)
        yield


def _level(level: object) -> int:
    """Apprise log levels may be ints or names (``"WARNING"``)."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    return value if isinstance(value, int) else logging.ERROR


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme or url.partition(":")[0]
    except ValueError:  # an unclosed IPv6 bracket
        return url.partition(":")[0]


# -- secrets in apprise's logs --------------------------------------------------------

#: query parameters whose value is a credential whatever it looks like
_SECRET_NAME = re.compile(r"(?i)token|key|secret|pass|pw|auth|sig|code|sid")
#: what separates the parts of an apprise URL (user, password, host, path, query)
_PARTS = re.compile(r"[/?&=@:,;#\s]+")
#: parts shorter than this are never hidden: they would blank out common words
_SHORTEST = 4


def _secrets_of(urls: Sequence[str]) -> frozenset[str]:
    """The parts of apprise ``urls`` that are credentials, as written and decoded.

    apprise URLs keep their keys anywhere: in the user part (``pover://USER_KEY@TOKEN``),
    in the host (``tgram://BOT_TOKEN/chat``), in the path (``json://host/hook/KEY``) or
    the query (``?apikey=``). Hidden are a password (or a user part without one, which
    is a key) and every query value under a credential's name, whatever they look like,
    and any other part that looks like a key (as webhook URLs are shown: a UUID, or a
    long run mixing letters and digits); user names, host names, words and plain
    numbers stay readable.
    """
    found: set[str] = set()
    for url in urls:
        rest = url.partition("://")[2].replace(PLACEHOLDER, "")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        user, at, _ = authority.rpartition("@")
        if at:  # user:password@, or a key alone (pover://USER_KEY@TOKEN)
            name, colon, password = user.partition(":")
            found.add(password if colon else name)
        query = rest.partition("?")[2]
        for field in query.split("&"):
            name, _, value = field.partition("=")
            if _SECRET_NAME.search(name):
                found.add(value)
        found.update(part for part in _PARTS.split(rest) if looks_secret(unquote(part)))
    found |= {unquote(part) for part in found}
    return frozenset(part for part in found if len(part) >= _SHORTEST)


def hidden(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every one of ``secrets`` in it replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):  # a longer one first
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return text


#: the loggers that write an apprise delivery's URLs as they are: apprise's own (every
#: plugin logs its request URL at DEBUG) and the HTTP clients under it
_LOGGERS = ("apprise", "urllib3.connectionpool", "httpx")


class _AppriseLog(logging.Filter):
    """Hides the credentials of every live :class:`AppriseChannel`'s URLs in the
    records of :data:`_LOGGERS`, at every level (apprise's DEBUG records carry a
    plugin's full request URL, ``.../bot<TOKEN>/sendMessage``; urllib3's its path).

    apprise runs a plugin in a worker thread, which does not know which channel sent
    it: every live channel's secrets are hidden in every such record.
    """

    def __init__(self) -> None:
        super().__init__("")
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._secrets: frozenset[str] = frozenset()

    def add(self, owner: object, secrets: frozenset[str]) -> None:
        if not secrets:
            return
        with self._lock:
            self._counts.update(secrets)
            self._secrets = frozenset(self._counts)
        weakref.finalize(owner, self._drop, secrets)
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self)  # once: a filter is added only once

    def _drop(self, secrets: frozenset[str]) -> None:
        with self._lock:
            self._counts.subtract(secrets)
            self._counts = +self._counts  # the ones no channel holds any more go
            self._secrets = frozenset(self._counts)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is logging's to report
            return True
        shown = hidden(message, secrets)
        if shown is not message:
            record.msg = shown
            record.args = ()
        return True


_APPRISE_LOG = _AppriseLog()
