"""The loopback fault proxy (tests/faultproxy.py) for PostgreSQL: links are named by the
``application_name`` of their startup packet, so the store's ``pepperpy-event-listener``
can be told from its pool (``proxy.links(LISTENER)``). Hooks find the protocol's plain
text in the chunks, so the URL should say ``sslmode=disable`` (:func:`proxied` adds it).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.faultproxy import FaultProxy, Link

__all__ = ["Link", "PgFaultProxy", "proxied"]

_NAME = b"application_name\x00"


class PgFaultProxy(FaultProxy):
    """Forwards 127.0.0.1:<port> to a PostgreSQL server on loopback, faults on demand."""

    def __init__(
        self,
        upstream_port: int = 5432,
        *,
        upstream_host: str = "127.0.0.1",
        max_connections: int = 64,
    ) -> None:
        super().__init__(
            upstream_port, upstream_host=upstream_host, max_connections=max_connections
        )

    def inspect(self, link: Link, data: bytes) -> None:
        if link.application is None and _NAME in data:
            name = data.split(_NAME, 1)[1].split(b"\x00", 1)[0]
            link.application = name.decode(errors="replace")


def proxied(url: str, port: int, **options: object) -> str:
    """``url`` (a ``postgresql://`` URL of a loopback server) through the proxy on ``port``,
    with ``sslmode=disable`` and ``options`` added to its query."""
    parts = urlsplit(url)
    user, _, _ = parts.netloc.rpartition("@")
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    query = [*parse_qsl(parts.query), ("sslmode", "disable")]
    query += [(name, str(value)) for name, value in options.items()]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))
