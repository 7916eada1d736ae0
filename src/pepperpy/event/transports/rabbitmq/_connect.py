"""Why a connection to RabbitMQ failed or was lost, in words: the broker's own reason
where it gave one, the heartbeat timeout where the connection went silent."""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..._redact import redact_url
from ._heartbeat import grace_of

if TYPE_CHECKING:
    from yarl import URL

__all__ = [
    "Handshake",
    "connect_failure",
    "handshake_failure",
    "lost_reason",
    "may_come_up",
    "not_amqp",
    "tls_failure",
    "tls_reason",
    "vhost_refusal",
    "virtual_host",
]


def virtual_host(url: str) -> str:
    """The virtual host ``url`` opens, as aiormq reads it (no path: ``/``)."""
    path = urlsplit(url).path
    return "/" if path in ("", "/") else unquote(path[1:])


#: what reading a TLS file the URL names (``cafile``, ``certfile``...) fails with: a
#: mistake of this host's, which no retry mends (before, retried for connect_timeout
#: and reported as a bare "[Errno 2] No such file or directory")
_LOCAL_FILE = FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
#: the URL parameters naming files aio-pika reads to make the TLS context
_TLS_FILES = ("cafile", "capath", "certfile", "keyfile")


def may_come_up(exc: BaseException, aiormq: Any) -> bool:
    """Whether a first connection that failed with ``exc`` is worth trying again.

    True when the broker could not be reached or dropped the connection before it
    answered: refused (not running yet, as in a docker-compose start-up race), reset,
    unreachable, a name that does not resolve yet. False when the broker answered and
    said no (bad credentials: ``ACCESS_REFUSED``; a virtual host it refuses:
    ``NOT_ALLOWED``, which aiormq raises as a frame error), or when the TLS handshake
    failed for good (see :func:`tls_failure`), which no retry changes, and for a timeout
    (the time is up). ``aiormq`` is the module.
    """
    errors = aiormq.exceptions
    if isinstance(exc, TimeoutError | _LOCAL_FILE) or not isinstance(exc, OSError):
        return False
    if tls_failure(exc) is not None:
        return False
    return not isinstance(
        exc,
        errors.AuthenticationError | errors.ProbableAuthenticationError | errors.ConnectionClosed,
    )


class Handshake:
    """aiormq's transport factory for the connection of one ``start()`` try: makes the
    TCP (or TLS) connection as aiormq would, and records that it was made, to tell a
    server that accepted the connection but never answered the AMQP handshake (another
    service on that port: Redis, PostgreSQL, HTTP) from a host that could not be reached.
    It puts itself in the robust ``connection``'s ``kwargs``, which aio-pika passes to
    aiormq, which takes a ``transport_factory``."""

    def __init__(self, connection: Any, url: str) -> None:
        from aiormq.connection import TCPTransportFactory, TLSTransportFactory

        secure = urlsplit(url).scheme == "amqps"
        self._factory = TLSTransportFactory() if secure else TCPTransportFactory()
        #: whether the last connection made through it got as far as an open socket
        self.connected = False
        connection.kwargs["transport_factory"] = self

    async def create(self, url: URL, **kwargs: Any) -> tuple[Any, Any]:
        self.connected = False
        made = await self._factory.create(url, **kwargs)
        self.connected = True
        return made


def not_amqp(exc: BaseException, handshake: Handshake, aiormq: Any) -> bool:
    """Whether a first connection failed with ``exc`` because the server it reached
    (``handshake`` says the socket was open) does not speak AMQP 0-9-1: it said nothing
    until the time was up, or answered bytes that are not AMQP's ``Connection.Start``
    (the answer of another protocol, or of another AMQP version). A server that closed
    the connection without a byte (a broker starting up, a proxy with nothing behind it)
    is not counted: that may come up. ``aiormq`` is the module."""
    if not handshake.connected:
        return False
    if isinstance(exc, TimeoutError):
        return True  # the socket was open, and the handshake never ended
    if _started(exc):  # it answered Connection.Start: RabbitMQ, refusing (a vhost, say)
        return False
    if isinstance(exc, aiormq.exceptions.ProtocolSyntaxError):
        return True  # bytes that are no AMQP frame, or another AMQP version's header
    cause = exc.__cause__
    return isinstance(exc, aiormq.exceptions.AMQPConnectionError) and (
        isinstance(cause, asyncio.IncompleteReadError)
        and (bool(cause.partial) or cause.expected != 1)  # not the very first byte
    )


def _started(exc: BaseException) -> bool:
    """Whether aiormq had the broker's ``Connection.Start`` when ``exc`` was raised: its
    ``connect()``, among the frames ``exc`` went through, holds ``server_properties``."""
    traceback = exc.__traceback__
    while traceback is not None:
        if "server_properties" in traceback.tb_frame.f_locals:
            return True
        traceback = traceback.tb_next
    return False


def handshake_failure(url: str, exc: BaseException, waited: float) -> str:
    """The message of the TransportError for a server that does not speak AMQP (see
    :func:`not_amqp`), which ``exc`` shows and which ``start()`` waited ``waited`` s for."""
    parts = urlsplit(url)
    secure = parts.scheme == "amqps"
    where = f"{parts.hostname}:{parts.port or (5671 if secure else 5672)}"
    if isinstance(exc, TimeoutError):
        how = f"it accepted the connection but sent no AMQP frame in {waited:.1f}s"
    else:
        how = f"it answered with bytes that are not AMQP 0-9-1 ({str(exc) or repr(exc)})"
    return (
        f"cannot connect to RabbitMQ at {redact_url(url)}: the server at {where} did not"
        f" answer the AMQP handshake (is it RabbitMQ?); {how}"
    )


def connect_failure(url: str, exc: BaseException) -> str:
    """The message of the TransportError for a failed connect to ``url`` (password hidden).

    RabbitMQ refuses a virtual host (one that does not exist, or that the user has no
    permission for) by closing the connection in reply to ``Connection.Open``, with a
    reason (``NOT_ALLOWED - vhost shop not found``, ``ACCESS_REFUSED - access to vhost
    'shop' refused for user 'app'``). aiormq reports that close only as
    ``Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x...>``; the
    frame, with the broker's reason, is still among the locals of the frames the
    exception was raised through, so it is looked for there. Without it the message
    says what the refusal can mean.
    """
    where = f"cannot connect to RabbitMQ at {redact_url(url)}"
    refused = vhost_refusal(url, exc)
    if refused is not None:
        return f"{where}: {refused}"
    if isinstance(exc, _LOCAL_FILE):
        query = parse_qs(urlsplit(url).query)
        files = ", ".join(f"{name}={query[name][0]!r}" for name in _TLS_FILES if name in query)
        return (
            f"{where}: cannot read a file the URL names for TLS ({files or 'none given'}):"
            f" {exc.strerror or exc}"
        )
    tls = tls_reason(url, exc)
    if tls is not None:
        return f"{where}: the TLS handshake failed: {tls}"
    errors = sys.modules.get("aiormq.exceptions")
    if errors is not None and isinstance(exc, errors.AuthenticationError) and len(exc.args) == 2:
        # the broker does not offer the mechanism ?auth= asks for (aiormq's message is
        # an OSError's "[Errno PLAIN AMQPLAIN] [...]")
        offered = ", ".join(str(exc.args[0]).split())
        asked = (parse_qs(urlsplit(url).query).get("auth") or ["plain"])[0].upper()
        return (
            f"{where}: the broker does not offer the authentication mechanism {asked}"
            f" (?auth={asked.lower()}); it offers {offered}. EXTERNAL needs an amqps:// URL"
            " with a client certificate (certfile, keyfile) and the broker's"
            " rabbitmq_auth_mechanism_ssl plugin"
        )
    if errors is not None and isinstance(
        exc, errors.AuthenticationError | errors.ProbableAuthenticationError
    ):
        return f"{where}: {exc}; check the user and password in the URL"
    return f"{where}: {str(exc) or repr(exc)}"


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error a connection failed with for good, which aiormq raised as ``exc``
    (its ``AMQPConnectionError`` over the ``ssl`` module's error); None for any other
    failure. For good: the broker's certificate is not trusted or not for the host the
    URL names (``SSLCertVerificationError``), the server refused the client's
    certificate, or the two sides share no protocol or cipher, or the port does not
    speak TLS. Not the handshake a connection cut short (``SSLEOFError``,
    ``SSLZeroReturnError``, ``SSLSyscallError``: a broker restarting, a proxy with nothing
    behind it), which may come up."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLError):
            transient = ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
            return None if isinstance(error, transient) else error
        error = error.__cause__ or error.__context__
    return None


def tls_reason(url: str, exc: BaseException) -> str | None:
    """Why a connection to ``url`` failed for good in its TLS handshake (see
    :func:`tls_failure`), and what to change; None if ``exc`` is no such failure."""
    tls = tls_failure(exc)
    if tls is None:
        return None
    return f"{_tls_advice(url, tls)}; ssl said: {tls}"


def _tls_advice(url: str, error: ssl.SSLError) -> str:
    """What to change for the TLS handshake that failed with ``error``."""
    host = urlsplit(url).hostname or "the host"
    if isinstance(error, ssl.SSLCertVerificationError):
        said = error.verify_message or error.reason or str(error)
        if "mismatch" in said or "not valid for" in said:
            return (
                f"the broker's certificate is not for {host!r} ({said}): connect by a name "
                "it is for, or give the broker a certificate for this one"
            )
        return (
            f"the broker's certificate is not trusted ({said}): give the CA that signed "
            "it in the URL (?cafile=/path/ca.pem, capath= or cadata=)"
        )
    said = error.reason or str(error)
    return (
        f"{said}: the broker refused this client's certificate, or the two share no TLS "
        "version or cipher, or the port does not take TLS (amqps:// needs the broker's "
        "TLS listener, 5671 by default)"
    )


def vhost_refusal(url: str, exc: BaseException) -> str | None:
    """What the broker said in refusing to open ``url``'s virtual host, which aiormq
    raised as ``exc`` (see :func:`connect_failure`); None if ``exc`` is no such refusal.

    Told by class: aiormq's ``InvalidFrameError`` raised over the ``Connection.Close``
    the broker answered ``Connection.Open`` with (its reply code and text are the
    frame's). Only when that frame is no longer among the locals (another aiormq
    release, a traceback cleared) is aiormq's wording of the error looked at, and the
    message then says what the refusal can mean.
    """
    errors = sys.modules.get("aiormq.exceptions")
    if errors is None or not isinstance(exc, errors.InvalidFrameError):
        return None
    vhost = virtual_host(url)
    user = urlsplit(url).username
    whose = f"user {unquote(user)!r}" if user else "the user"
    close = _close_frame(exc)
    if close is None:
        text = str(exc) or repr(exc)
        if "Connection.OpenOk" not in text or "Connection.Close" not in text:
            return None
        return (
            f"the broker refused to open virtual host {vhost!r} (it does not "
            f"exist, or {whose} has no permission for it)"
        )
    code = getattr(close, "reply_code", None) or "?"
    reason = getattr(close, "reply_text", "") or "no reason given"
    return (
        f"the broker refused to open virtual host {vhost!r}: {reason} "
        f"(reply code {code}); check that the virtual host exists (rabbitmqctl list_vhosts) "
        f"and that {whose} has permissions for it (rabbitmqctl list_user_permissions)"
    )


def lost_reason(connection: Any, exc: BaseException | None) -> str:
    """Why the robust ``connection`` lost its connection, for the transport's warning.

    aiormq gives a connection up with a bare ``CancelledError`` when no frame came from
    the broker within its heartbeat grace (``2 * heartbeat`` seconds as ``_heartbeat``
    sets it, aiormq's own ``(heartbeat + 1) * 3`` otherwise): the link
    went silent (a network partition, a half-open connection) or this process's event
    loop was blocked that long. Logged as such a ``CancelledError`` read like a bug or a
    shutdown; aiormq's own record of it ("was stuck") is on another logger. Asked while
    the close callbacks run, the lost aiormq connection is still the robust one's.
    """
    if exc is None:
        return "closed"
    if not isinstance(exc, asyncio.CancelledError):
        return str(exc) or type(exc).__name__
    underlay = getattr(getattr(connection, "transport", None), "connection", None)
    grace = grace_of(underlay)
    if grace is not None and getattr(underlay, "is_connection_was_stuck", False) is True:
        timeout, reckoned = grace
        return (
            f"no frame from the broker within the heartbeat timeout, {timeout:g}s"
            f" ({reckoned}): the connection went silent (a network partition or a "
            "half-open connection), or this process's event loop was blocked that long"
        )
    return "given up by the driver without a reason (CancelledError)"


def _close_frame(exc: BaseException) -> Any:
    """The ``Connection.Close`` frame ``exc`` was raised over, if a frame still holds it."""
    try:
        from pamqp.commands import Connection
    except ImportError:  # pragma: no cover - aiormq depends on pamqp
        return None
    traceback = exc.__traceback__
    while traceback is not None:
        for value in traceback.tb_frame.f_locals.values():
            if isinstance(value, Connection.Close):
                return value
        traceback = traceback.tb_next
    return None
