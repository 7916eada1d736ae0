"""TLS handshakes with Redis that fail for good, told from Redis being unreachable.

redis-py raises a failed handshake as a ``ConnectionError`` (``Error 1 connecting to
host:port. [SSL: CERTIFICATE_VERIFY_FAILED] ...``), the error of a server that is down,
so it was retried for the whole ``connect_timeout`` and reported as Redis unreachable.
A certificate the client does not trust, one for another host, a client certificate the
server requires or refuses, no TLS version or cipher both sides take: no retry mends
any of them. :func:`tls_refusal` finds such a failure behind redis-py's error, and says
what is wrong and what to change; a handshake cut off (an EOF, a reset) is not one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ..base import TLS_REFUSED  # the outage_reason, shared with NATS and RabbitMQ

__all__ = ["TLS_REFUSED", "answers_plain_text", "answers_tls", "plain_text_cut", "tls_refusal"]


#: OpenSSL's reasons for a handshake that fails the same way every time, with the fix
_HINTS = {
    # the server refused our certificate, or wanted one
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate: give "
    "ssl_certfile and ssl_keyfile in the transport's URL",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused the client certificate: check "
    "ssl_certfile and ssl_keyfile in the transport's URL",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server refused the client certificate: check "
    "ssl_certfile and ssl_keyfile in the transport's URL",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server refused the client certificate as "
    "expired: renew the one given as ssl_certfile",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's issuer: "
    "check ssl_certfile in the transport's URL",
    # no version or cipher in common
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version both sides take: check ssl_min_version "
    "in the transport's URL and the server's tls-protocols",
    "UNSUPPORTED_PROTOCOL": "no TLS version both sides take: check ssl_min_version in the "
    "transport's URL and the server's tls-protocols",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version both sides take: check ssl_min_version in "
    "the transport's URL and the server's tls-protocols",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "no cipher both sides take: check ssl_ciphers in the "
    "transport's URL and the server's tls-ciphers",
    "NO_SHARED_CIPHER": "no cipher both sides take: check ssl_ciphers in the transport's URL "
    "and the server's tls-ciphers",
    # not TLS at all on the other side
    "WRONG_VERSION_NUMBER": "the server does not answer in TLS at this port: use redis:// "
    "for a server without TLS, or the server's tls-port",
}

#: OpenSSL's verification errors of a certificate for another host than the URL's
_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def tls_refusal(exc: BaseException) -> str | None:
    """What is wrong, and what to change, when ``exc`` (or an error behind it) is a TLS
    handshake that fails for good; None for anything else."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return _unverified(seen)
        if isinstance(seen, ssl.SSLError) and seen.reason in _HINTS:
            return f"{seen.reason.lower().replace('_', ' ')}; {_HINTS[seen.reason]}"
        seen = seen.__cause__ or seen.__context__
    return None


def _unverified(error: ssl.SSLCertVerificationError) -> str:
    message = str(error.verify_message or "certificate verify failed").rstrip(".")
    if error.verify_code in _MISMATCH:
        return (
            f"the server's certificate is not for this host ({message}): connect by a "
            "name the certificate holds, or check the host in the transport's URL"
        )
    return (
        f"the server's certificate is not trusted ({message}): give the CA that signed it "
        "as ssl_ca_certs (a file) or ssl_ca_data (PEM text) in the transport's URL"
    )


def plain_text_cut(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error behind it) is a connection the server cut without a
    word: what a TLS port does with a plain-text command (``redis://`` at a ``rediss://``
    server's port), and also what a server or a proxy going away does."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionResetError) or "Connection closed by server" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def answers_tls(host: str, port: int, within: float) -> bool:
    """Whether the server at ``host:port`` answers a TLS ClientHello in TLS (asked for
    ``within`` seconds at most).

        A Redis TLS port resets a plain-text connection without a reply, which says no more
        than a server going away: redis-py raises it as ``Connection reset by peer``, retried
        for ``connect_timeout`` as an outage. So, after such a reset, this one probe: a
        TLS handshake record or alert (``0x16``/``0x15``, then version ``0x03``) in answer
        to a ClientHello is a TLS server. A plain-text Redis answers nothing (it waits for
        the rest of what it reads as an inline command), nor does a server gone: False for
        both, and for any failure to ask.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    handshake = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        handshake.do_handshake()
    hello = outgoing.read()
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(hello)
                await writer.drain()
                head = await reader.readexactly(3)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except (OSError, EOFError, TimeoutError):  # IncompleteReadError is an EOFError
        return False
    return head[0] in (0x15, 0x16) and head[1] == 0x03


async def answers_plain_text(host: str, port: int, within: float) -> bool:
    """Whether the server at ``host:port`` answers a plain-text ``PING`` as Redis does,
    with a RESP simple string or error (``+PONG``, ``-NOAUTH ...``), within ``within``
    seconds.

    A ``rediss://`` URL at a Redis port without TLS: Redis reads the ClientHello as the
    start of an inline command and waits for the rest, so the handshake gets no answer
    at all, which said no more than a silent server: it was retried for
    ``connect_timeout`` and reported as Redis unreachable with "no answer". A TLS port
    answers this probe with an alert or a reset, a server gone with nothing: False for
    both, and for any failure to ask.
    """
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except (OSError, EOFError, TimeoutError, ValueError):  # ValueError: a line past 64 KiB
        return False
    return line[:1] in (b"+", b"-") and line.endswith(b"\r\n")
