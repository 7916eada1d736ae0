"""URL query options for channel and store URLs (``smtp://...?from=ADDR``, ``redis://...?ttl=60``)."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from .._errors import ConfigurationError

__all__ = ["query_options", "split_url"]


def split_url(url: str, what: str, shown: str) -> SplitResult:
    """``url`` split, its port checked: a :class:`ConfigurationError` naming the URL (as
    ``what`` and ``shown``, its secrets hidden) for one no connection could use.

    ``urlsplit`` raises a bare ``ValueError("Invalid IPv6 URL")`` for an unclosed bracket,
    and takes port 0, which no server listens on (an email channel took it for "the
    default port"): both are refused here, with a port that is no number or past 65535.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket: "https://[::1/hook"
        raise ConfigurationError(f"bad {what} {shown!r}: {exc}") from exc
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad port in {what} {shown!r}: {exc}") from exc
    if port == 0:
        raise ConfigurationError(f"bad port in {what} {shown!r}: 0 (a port is from 1 to 65535)")
    return parts


def query_options(query: str) -> dict[str, str]:
    """The ``name=value`` pairs of a URL query, percent-decoded; the last of a name wins.

    These are URLs, not HTML form data, so ``+`` stays a plus sign (``from=alerts+ops@
    example.com`` is that address; ``urllib``'s ``parse_qs`` would make it a space). Write
    a space as ``%20``. A name without ``=`` has the value ``""``.
    """
    options: dict[str, str] = {}
    for piece in query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            options[unquote(name)] = unquote(value)
    return options
