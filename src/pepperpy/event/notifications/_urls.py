"""URL query options for channel and store URLs (``smtp://...?from=ADDR``, ``redis://...?ttl=60``)."""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["query_options"]


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
