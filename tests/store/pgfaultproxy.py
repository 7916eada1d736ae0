"""The loopback fault proxy (tests/faultproxy.py) for PostgreSQL: links are named by the
``application_name`` of their startup packet, so the store's ``pepperpy-event-listener``
can be told from its pool (``proxy.links(LISTENER)``). Hooks find the protocol's plain
text in the chunks, so the URL should say ``sslmode=disable`` (:func:`proxied` adds it).
A listener is named from its first bytes, while it still connects: to fault the LISTEN
connection itself, find it with :func:`mark_listening`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.faultproxy import FaultProxy, Link

__all__ = ["LISTENER", "Link", "PgFaultProxy", "mark_listening", "proxied"]

#: the ``application_name`` of a PostgreSQL store's LISTEN connection
LISTENER = "pepperpy-event-listener"
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


def mark_listening(proxy: PgFaultProxy) -> Callable[[], list[Link]]:
    """Mark each LISTEN connection once the server has answered its ``LISTEN``; returns
    a function giving the open ones so marked. Sets ``proxy.on_server``.

    The proxy names a link from the connection's first bytes, while it still connects:
    a listener paused then is not a silent LISTEN connection but a connect that gets no
    answer, and that takes ``connect_timeout`` (10 s by default) and a retry to end; a
    store closed then waits for that connect as long."""

    def server(link: Link, data: bytes) -> None:
        if link.application == LISTENER and b"LISTEN\x00" in data:  # its CommandComplete
            link.marks.add("listening")

    proxy.on_server = server
    return lambda: [link for link in proxy.links(LISTENER) if "listening" in link.marks]
