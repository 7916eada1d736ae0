"""Store URLs as the command takes them in and shows them.

The scheme is matched without regard to case everywhere (``SQLITE://`` and
``MEMORY://`` alike), and a URL is never printed with its password: the library's
:func:`~pepperpy.event.store.base.redact_url` hides the ``user:password@`` form, and a
``password=`` query parameter is hidden too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..store.base import redact_url
from ._errors import CommandError, redact_later

__all__ = ["check_url", "normalized", "shown"]

_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def normalized(url: str) -> str:
    """``url`` with its scheme in lower case (``MEMORY://`` -> ``memory://``).

    Both forms are remembered for redaction: an error quoting either never shows the
    password (see :func:`~pepperpy.event.cli._errors.scrub`).
    """
    scheme, sep, rest = url.partition("://")
    result = scheme.lower() + sep + rest if sep else url
    redact_later(url, shown(url))
    redact_later(result, shown(result))
    return result


def shown(url: str) -> str:
    """``url`` fit to print: its password, if any, replaced by ``***``."""
    return _QUERY_PASSWORD.sub(r"\1***", redact_url(url))


def check_url(url: str) -> None:
    """Refuse a server URL whose port is not a port, before a driver trips over it."""
    scheme = url.partition("://")[0]
    if scheme not in ("postgresql", "postgres"):
        return
    try:
        hosts = urlsplit(url).netloc.rpartition("@")[2]
        for host in hosts.split(","):  # asyncpg takes several, host1:5432,host2:5433
            urlsplit("//" + host).port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise CommandError(f"store URL {shown(url)}: {exc}") from None
