"""Store URLs as the command takes them in and shows them.

The scheme is matched without regard to case everywhere (``SQLITE://`` and
``MEMORY://`` alike), and a URL is never printed with its password: the library's
:func:`~pepperpy.event.store.base.redact_url` hides both the ``user:password@`` form and
a ``password=`` query option.
"""

from __future__ import annotations

from ..store.base import redact_url
from ._errors import redact_later

__all__ = ["normalized", "shown"]

#: ``url`` fit to print: its passwords, if any, replaced by ``***``
shown = redact_url


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
