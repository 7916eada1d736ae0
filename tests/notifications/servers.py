"""Real servers on loopback for the notification tests: SMTP (aiosmtpd) and HTTP."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.tls_certs import self_signed_certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- SMTP -----------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    #: ``time.monotonic()`` when the message arrived
    at: float = field(default_factory=time.monotonic)


class MailSink:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.tls_used: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        self.tls_used.append(session.ssl is not None)
        return "250 OK"


class SlowSink(MailSink):
    """Takes its time: ``greeting`` seconds to answer the first session's EHLO, and
    ``data`` seconds to answer every DATA (``data_started`` is set when one begins)."""

    def __init__(self, *, greeting: float = 0.0, data: float = 0.0) -> None:
        super().__init__()
        self.greeting = greeting
        self.data = data
        self.data_started = asyncio.Event()  # on the server's loop: poll is_set() only

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        delay, self.greeting = self.greeting, 0.0
        await asyncio.sleep(delay)
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        await asyncio.sleep(self.data)
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def smtp_running(
    handler: Any, *, smtp_class: type[Any] | None = None, **options: Any
) -> Iterator[int]:
    """Runs an aiosmtpd server for ``handler`` on a free loopback port, yielding the port,
    and stops it on the way out. ``options`` go to aiosmtpd's ``Controller`` (TLS,
    authentication, SMTPUTF8...); ``smtp_class`` replaces its ``SMTP`` protocol class."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    protocol = SMTP if smtp_class is None else smtp_class

    class _Controller(Controller):
        def factory(self) -> Any:
            return protocol(self.handler, **self.SMTP_kwargs)

    port = free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class RejectingSink(MailSink):
    """Refuses every recipient permanently (550)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        return "550 5.1.1 no such user"


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost, made with ``cryptography``."""
    return self_signed_certificate(directory, "localhost", dns_names=["localhost"])


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# -- HTTP -----------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: ``time.monotonic()`` when the request (head and body) had arrived
    at: float = field(default_factory=time.monotonic)


#: writes a whole HTTP response (status line, headers, body) for a request
Reply = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class HttpSink:
    """A minimal HTTP/1.1 server on asyncio streams that records requests.

    ``statuses`` are answered in order (the last one repeats); one request per
    connection (``Connection: close``), which every client handles. ``reply`` replaces
    that answer with one of the test's own.
    """

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0
    reply: Reply | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> HttpSink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def answer(self, statuses: Iterable[int]) -> None:
        self.statuses = list(statuses)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(method, path, headers, body)
            self.requests.append(request)
            if self.reply is not None:
                await self.reply(request, writer)
                return
            index = min(len(self.requests), len(self.statuses)) - 1
            status = self.statuses[index]
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
                "Connection: close\r\n\r\nok".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # the test's loop is ending; a cancelled handler would be logged as an error
        finally:
            writer.close()
