"""Notification overhead: what NotificationSystem adds on top of the work itself.

* rendering + delivering to an in-memory channel, against the floor of rendering the
  same sandboxed Jinja2 template and appending the result to a list;
* a signed webhook to a local keep-alive HTTP server, against a raw ``httpx`` POST of the
  same signed body on the same kind of client;
* an email to a local aiosmtpd server, against a raw ``aiosmtplib.send`` of a message
  with the same headers (From, To, Subject, Date, Message-ID); both open one SMTP
  connection per message.

Run: ``python -m benchmarks.bench_notifications`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from benchmarks._harness import Result, Runner, compare, machine, table
from pepperpy.event import (
    EmailChannel,
    MemoryChannel,
    NotificationSystem,
    RetryPolicy,
    WebhookChannel,
)

SUBJECT = "Order {{ order.id }} shipped"
BODY = "Hi {{ user.name }}, order {{ order.id }} ({{ order.total }} EUR) is on its way."
USER = {"name": "Ana", "email": "ana@example.com"}
ORDER = {"id": 42, "total": "19.90"}


def _memory_contenders() -> dict[str, Runner]:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined)
    subject_tpl, body_tpl = env.from_string(SUBJECT), env.from_string(BODY)

    async def floor(n: int) -> float:
        out: list[tuple[str, str, str]] = []
        start = time.perf_counter()
        for _ in range(n):
            context = {"user": USER, "order": ORDER}
            out.append((USER["email"], subject_tpl.render(context), body_tpl.render(context)))
        return time.perf_counter() - start

    def system(channels: int, keyed: bool) -> Runner:
        async def run(n: int) -> float:
            notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
            names = [f"email{i}" for i in range(channels)]
            for name in names:
                notifications.add_channel(name, MemoryChannel(kind="email", limit=None))
            notifications.add_template("shipped", BODY, subject=SUBJECT)
            start = time.perf_counter()
            for i in range(n):
                await notifications.notify(
                    channels=names,
                    template="shipped",
                    user=USER,
                    order=ORDER,
                    idempotency_key=f"k{i}" if keyed else None,
                )
            return (time.perf_counter() - start) / channels

        return run

    return {
        "sandboxed render + list append (floor)": floor,
        "notify, 1 memory channel": system(1, keyed=False),
        "notify, 1 memory channel, idempotency key": system(1, keyed=True),
        "notify, 3 memory channels (per delivery)": system(3, keyed=False),
    }


class KeepAliveServer:
    """Answers every HTTP/1.1 request with 200 on a persistent connection."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in self.handlers:  # idle keep-alive connections: end them quietly
                task.cancel()
            await asyncio.gather(*self.handlers, return_exceptions=True)
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the benchmark is over
        finally:
            self.handlers.discard(task)
            writer.close()


def _webhook_contenders(url: str) -> dict[str, Runner]:
    import httpx
    import orjson

    async def raw(n: int) -> float:
        async with httpx.AsyncClient(timeout=10) as client:
            start = time.perf_counter()
            for i in range(n):
                body = orjson.dumps({"id": i, "subject": "Order 42 shipped", "body": "Hi Ana"})
                stamp = str(int(time.time()))
                digest = hmac.new(b"secret", stamp.encode() + b"." + body, hashlib.sha256)
                headers = {
                    "Content-Type": "application/json",
                    "X-Pepperpy-Timestamp": stamp,
                    "X-Pepperpy-Signature": "sha256=" + digest.hexdigest(),
                }
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()
            return time.perf_counter() - start

    async def ours(n: int) -> float:
        async with NotificationSystem(retry_policy=RetryPolicy.NONE) as notifications:
            notifications.add_channel("hooks", WebhookChannel(url, secret="secret"))
            notifications.add_template("shipped", BODY, subject=SUBJECT)
            start = time.perf_counter()
            for _ in range(n):
                result = await notifications.notify(
                    channels=["hooks"], template="shipped", user=USER, order=ORDER
                )
                assert result.ok, result.failed
            return time.perf_counter() - start

    return {"raw httpx POST, signed": raw, "notify, signed webhook": ours}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _email_contenders(port: int) -> dict[str, Runner]:
    import aiosmtplib

    async def raw(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            message = EmailMessage()
            message["From"] = "noreply@example.com"
            message["To"] = USER["email"]
            message["Subject"] = "Order 42 shipped"
            # the headers a well-formed notification email carries (ours sets them too)
            message["Date"] = format_datetime(datetime.now(UTC))
            message["Message-ID"] = make_msgid(domain="example.com")
            message.set_content("Hi Ana, order 42 is on its way.")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False)
        return time.perf_counter() - start

    async def ours(n: int) -> float:
        notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
        notifications.add_channel(
            "email", EmailChannel("127.0.0.1", port, sender="noreply@example.com", starttls=False)
        )
        notifications.add_template("shipped", BODY, subject=SUBJECT)
        start = time.perf_counter()
        for _ in range(n):
            result = await notifications.notify(
                channels=["email"], template="shipped", user=USER, order=ORDER
            )
            assert result.ok, result.failed
        return time.perf_counter() - start

    return {"raw aiosmtplib.send": raw, "notify, email channel": ours}


async def main(quick: bool = False) -> str:
    n = 2_000 if quick else 20_000
    io_n = 100 if quick else 500
    passes = 3 if quick else 5
    io_passes = 3 if quick else 9  # network contenders are noisier: more passes
    sections = [f"## Notifications\n\nMachine: {machine()}.\n"]

    async def section(
        title: str, baseline: str, contenders: dict[str, Runner], ops: int, rounds: int = passes
    ) -> None:
        results: list[Result] = await compare(contenders, operations=ops, passes=rounds)
        sections.append(f"### {title}\n\n{table(results, baseline=baseline, unit='msgs/s')}\n")

    await section(
        "Render + deliver to memory",
        "sandboxed render + list append (floor)",
        _memory_contenders(),
        n,
    )
    server = KeepAliveServer()
    await server.start()
    try:
        await section(
            "Signed webhook to a local keep-alive HTTP server",
            "raw httpx POST, signed",
            _webhook_contenders(f"http://127.0.0.1:{server.port}/hook"),
            io_n,
            io_passes,
        )
    finally:
        await server.close()

    from aiosmtpd.controller import Controller

    port = _free_port()
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await section(
            "Email to a local aiosmtpd server (one connection per message)",
            "raw aiosmtplib.send",
            _email_contenders(port),
            io_n // 3,
            io_passes,
        )
    finally:
        controller.stop()
    return "\n".join(sections)


if __name__ == "__main__":
    print(asyncio.run(main(quick="--quick" in sys.argv)))
