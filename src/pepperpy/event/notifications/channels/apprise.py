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
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

from ..._deps import require
from ..._errors import ConfigurationError, NotificationError, RecipientError
from .._models import Notification
from .base import Channel

__all__ = ["AppriseChannel"]

PLACEHOLDER = "{recipient}"
#: one phone number: an optional ``+`` and 3 to 15 digits (E.164), no separators
_PHONE = re.compile(r"\+?[0-9]{3,15}")
#: one device token, user key, chat id or address: nothing apprise splits targets on
_TOKEN = re.compile(r"[A-Za-z0-9@._:+~-]{1,512}")


class AppriseChannel(Channel):
    """Delivers through one or more apprise URLs (all of them, for every message)."""

    def __init__(self, urls: str | Sequence[str], *, kind: str | None = None) -> None:
        self.urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self.urls or not all(isinstance(u, str) and u for u in self.urls):
            raise ConfigurationError("AppriseChannel needs at least one URL")
        self.kind = kind
        self.needs_recipient = any(PLACEHOLDER in url for url in self.urls)
        self._fixed: Any = None
        apprise = require("apprise", extra="apprise", feature="an apprise channel")
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
    return urlsplit(url).scheme or url.partition(":")[0]
