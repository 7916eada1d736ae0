"""Which ``Host`` headers the web console answers (DNS rebinding), and its safety headers.

A web page can rebind its own name to 127.0.0.1 (DNS rebinding) and then read a console
on loopback as if it were its own site: the browser sends that name in ``Host``, which
is refused here with a 421. An allowed host is a name or an IP address, alone (any
port: as Django's ``ALLOWED_HOSTS`` and Starlette's ``TrustedHostMiddleware`` compare
hosts, port aside) or with a port, ``proxy:8080``, which answers only a ``Host`` naming
that port (both of those took such an entry and never matched it). An IPv6 address
takes its port in brackets: ``[::1]:8080``. ``*`` answers any host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._console_pages import CONTENT_SECURITY_POLICY

__all__ = ["LOOPBACK_HOSTS", "SECURITY_HEADERS", "HostCheck", "allowed_host", "allowed_hosts"]

#: the host names a console on loopback answers to (and the default of console_app)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: on every response: no MIME sniffing; no script or style but the pages' own, no framing
#: by another site (``X-Frame-Options`` for browsers without CSP's ``frame-ancestors``);
#: no ``Referer`` sent from a page (its URL names streams) to a link elsewhere
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

#: a host as compared: its name (lower case; an IP address in its short form) and the
#: port it must name, None for any
Host = tuple[str, int | None]


def _host_key(name: str) -> str:
    """A host name as compared: lower case; an IP address in its short form (``::1``)."""
    name = name.strip().lower()
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def allowed_host(entry: str) -> Host:
    """An allowed host as written: ``name``, ``name:port``, ``::1`` or ``[::1]:8080``.

    Raises ``ValueError`` saying what is wrong with it (a port that is no port, a URL,
    a ``*`` in a name).
    """
    text = entry.strip()
    if "://" in text:
        raise ValueError("give a host name (with a port if you like), not a URL")
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address is written [address] or [address]:port")
        name = text[1:end]
        if rest:
            port = _port(rest[1:])
    elif text.count(":") == 1:  # more: an IPv6 address, which takes a port only in brackets
        name, _, number = text.partition(":")
        port = _port(number)
    else:
        name = text
    if "*" in name:
        raise ValueError("'*' stands alone, for any host: name each host otherwise")
    if not name:
        raise ValueError("the host name before the port is missing")
    key = _host_key(name)
    if text.startswith("[") and ":" not in key:
        raise ValueError(f"brackets hold an IPv6 address, got {name!r}")
    if ":" not in key and not _is_host_name(key):
        key = _idna(name)
    return key, port


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def _is_host_name(key: str) -> bool:
    """A host name or IPv4 address as a ``Host`` header carries it (letters, digits, '-',
    '.', '_'; lower case here); anything else (a space, '/', '@') could never match."""
    return key.isascii() and _NAME_CHARACTERS.issuperset(key)


def _idna(name: str) -> str:
    """A non-ASCII host name in the form browsers send it in ``Host`` (``xn--...``), or
    ``ValueError`` for a name no ``Host`` header could carry."""
    try:
        key = name.strip().encode("idna").decode("ascii").lower()
    except UnicodeError:
        key = ""
    if not key or not _is_host_name(key):
        raise ValueError(
            f"{name.strip()!r} is not a host name (letters, digits, '-' and '.'), so no "
            "request could name it"
        )
    return key


def allowed_hosts(entries: Collection[str]) -> frozenset[Host] | None:
    """Each entry parsed (:func:`allowed_host`); None (any host) if ``*`` is one of them."""
    if any(entry.strip() == "*" for entry in entries):
        return None
    return frozenset(map(allowed_host, entries))


def _shown(host: Host) -> str:
    name, port = host
    if port is None:
        return name
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def _host_of(header: str) -> Host | None:
    """The host and port of a ``Host`` header (``[::1]:8080``: ``("::1", 8080)``), or None.

    Not Starlette's ``TrustedHostMiddleware``: it answers a plain-text 400, keeps the
    brackets of an IPv6 literal (``[::1]``), so its allowed names would have to as well,
    and compares no port.
    """
    if header.startswith("["):
        end = header.find("]")
        host, port = header[1:end], header[end + 1 :]
        if end < 0 or ":" not in host:
            return None
    else:
        host, colon, number = header.partition(":")
        port = colon + number
    if not host or (port and not (port[0] == ":" and port[1:].isascii() and port[1:].isdigit())):
        return None
    return _host_key(host), int(port[1:]) if port else None


class HostCheck:
    """ASGI middleware: answer only requests for one of ``allowed_hosts``; secure headers.

    ``allowed_hosts`` comes from :func:`allowed_hosts`: ``None`` allows any host.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[Host] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    def allows(self, header: str | None) -> bool:
        if self.allowed_hosts is None:
            return True
        host = None if header is None else _host_of(header)
        if host is None:
            return False
        return (host[0], None) in self.allowed_hosts or (
            host[1] is not None and host in self.allowed_hosts
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        header = Headers(scope=scope).get("host")
        if not self.allows(header):
            shown = "(none)" if header is None else repr(header[:100])
            names = ", ".join(sorted(map(_shown, self.allowed_hosts or ())))
            error = (
                f"this console does not answer to Host {shown}: open it as one of {names} "
                "(serve --allow-host NAME adds a name)"
            )
            await JSONResponse({"error": error}, status_code=421)(scope, receive, secured)
            return
        await self.app(scope, receive, secured)
