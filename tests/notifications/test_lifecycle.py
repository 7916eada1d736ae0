"""Closing a NotificationSystem, and webhook clients across event loops."""

from __future__ import annotations

import asyncio
import gc
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pepperpy.event import (
    Channel,
    ClosedError,
    Notification,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
    WebhookChannel,
)


class Recording(Channel):
    """Records what happens: each send (after ``delay`` seconds, failing if told to) and close."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.log: list[str] = []
        self.started = asyncio.Event()

    async def send(self, notification: Notification) -> None:
        self.log.append("send")
        self.started.set()
        await asyncio.sleep(self.delay)
        if self.fail:
            self.log.append("failed")
            raise NotificationError("the service is down")
        self.log.append("sent")

    async def close(self) -> None:
        self.log.append("close")


def _system(channel: Channel, *, attempts: int = 5, delay: float = 30.0) -> NotificationSystem:
    notifications = NotificationSystem(
        retry_policy=RetryPolicy.fixed(max_attempts=attempts, base_delay=delay)
    )
    notifications.add_channel("hook", channel, kind="webhook")
    return notifications


async def test_close_ends_a_retry_wait_at_once_and_dead_letters_it() -> None:
    channel = Recording(fail=True)
    notifications = _system(channel)
    pending = asyncio.ensure_future(notifications.notify("hook", body="hi"))
    await asyncio.wait_for(channel.started.wait(), 5)
    await asyncio.sleep(0.05)  # the first try failed; now waiting 30 s to retry
    started = time.monotonic()
    await notifications.close()
    assert time.monotonic() - started < 2
    assert pending.done()  # close() did not return under a delivery still retrying
    result = (await pending)["hook"]
    assert result.status == "failed" and isinstance(result.error, ClosedError)
    assert result.attempts == 1
    assert channel.log == ["send", "failed", "close"]  # no try after close
    assert isinstance(notifications.dead_letters[-1].exception, ClosedError)


async def test_close_waits_for_a_try_under_way_before_closing_channels() -> None:
    channel = Recording(delay=0.3)
    notifications = _system(channel)
    pending = asyncio.ensure_future(notifications.notify("hook", body="hi"))
    await asyncio.wait_for(channel.started.wait(), 5)
    await notifications.close()
    assert channel.log == ["send", "sent", "close"]
    assert (await pending)["hook"].status == "sent"


async def test_close_cuts_off_a_try_that_outlasts_the_grace() -> None:
    # the try used to run on after close() returned (a hung one forever); it is now cut
    # off once the grace is over, fails with ClosedError and is not retried
    channel = Recording(delay=60)
    notifications = _system(channel)
    pending = asyncio.ensure_future(notifications.notify("hook", body="hi"))
    await asyncio.wait_for(channel.started.wait(), 5)
    started = time.monotonic()
    await notifications.close(grace=0.2)
    assert 0.15 < time.monotonic() - started < 5
    assert pending.done()
    result = (await pending)["hook"]
    assert result.status == "failed" and isinstance(result.error, ClosedError)
    assert "cut off" in str(result.error) and result.attempts == 1
    assert channel.log == ["send", "close"]  # cut, not retried
    assert notifications.dead_letters[-1].exception is result.error
    with pytest.raises(ValueError, match="grace"):
        await NotificationSystem().close(grace=float("inf"))


async def test_close_ends_a_rate_limit_wait_at_once_without_sending() -> None:
    # a delivery queued behind the limit used to wait for its turn (a minute here) and
    # close() gave up on it after the grace; there is no try to wait for, so it fails now
    channel = Recording()
    notifications = _system(channel)
    notifications.add_channel("hook", channel, kind="webhook", rate_limit="1/min")
    await notifications.notify("hook", body="first")
    queued = asyncio.ensure_future(notifications.notify("hook", body="second"))
    await asyncio.sleep(0.05)
    started = time.monotonic()

    await notifications.close(grace=30)

    assert time.monotonic() - started < 5
    result = (await queued)["hook"]
    assert result.status == "failed" and isinstance(result.error, ClosedError)
    assert result.attempts == 0 and "not sent" in str(result.error)
    assert channel.log == ["send", "sent", "close"]


async def test_a_try_still_connecting_at_close_does_not_write() -> None:
    connecting = asyncio.Event()

    class SlowToConnect(Channel):
        paces_writes = True

        def __init__(self) -> None:
            self.written: list[str] = []

        async def send(self, notification: Notification) -> None:
            connecting.set()
            await asyncio.sleep(0.3)  # still connecting when close() is called
            await self.ready_to_write()
            self.written.append(notification.body)

    channel = SlowToConnect()
    notifications = _system(channel)
    pending = asyncio.ensure_future(notifications.notify("hook", body="hi"))
    await asyncio.wait_for(connecting.wait(), 5)

    await notifications.close(grace=30)

    result = (await pending)["hook"]
    assert result.status == "failed" and isinstance(result.error, ClosedError)
    assert result.attempts == 0 and "not sent" in str(result.error)
    assert channel.written == []


async def test_notify_and_emit_after_close_raise_closed_error() -> None:
    channel = Recording()
    notifications = _system(channel)
    await notifications.close()
    await notifications.close()  # idempotent
    assert notifications.closed
    with pytest.raises(ClosedError):
        await notifications.notify("hook", body="late")
    with pytest.raises(ClosedError):
        await notifications.emit("user.created", {})
    assert channel.log == ["close"]


# -- the webhook client, one per event loop ----------------------------------------------


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    """Answers 200 and keeps the connection open (HTTP/1.1), counting open connections."""

    protocol_version = "HTTP/1.1"
    open_connections = 0
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with self.lock:
            type(self).open_connections += 1

    def finish(self) -> None:
        with self.lock:
            type(self).open_connections -= 1
        super().finish()

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class KeepAliveServer:
    url: str
    handler: type[_KeepAlive]

    def open_connections(self, expected: int = 0) -> int:
        """Connections open on the server, once it saw closed ones go (waits up to 5 s)."""
        deadline = time.monotonic() + 5
        while self.handler.open_connections != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.handler.open_connections


@pytest.fixture
def keep_alive() -> Iterator[KeepAliveServer]:
    handler = type("Handler", (_KeepAlive,), {"open_connections": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield KeepAliveServer(f"http://127.0.0.1:{server.server_address[1]}/in", handler)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_each_event_loop_closes_its_webhook_client_as_it_ends(
    keep_alive: KeepAliveServer,
) -> None:
    notifications = NotificationSystem()
    notifications.add_channel("hook", keep_alive.url)

    async def send() -> str:
        return (await notifications.notify("hook", body="hi"))["hook"].status

    for _ in range(5):
        assert asyncio.run(send()) == "sent"
        # the loop's keep-alive connection went with the loop, not with the garbage collector
        assert keep_alive.open_connections(0) == 0
    gc.collect()  # nothing left for it to find (an unclosed socket would warn: an error here)

    async def send_and_close() -> None:
        assert await send() == "sent"
        assert keep_alive.handler.open_connections == 1
        await notifications.close()

    asyncio.run(send_and_close())
    assert keep_alive.open_connections(0) == 0


async def test_webhook_close_closes_this_loops_client_and_the_channel_stays_usable(
    keep_alive: KeepAliveServer,
) -> None:
    channel = WebhookChannel(keep_alive.url)
    await channel.send(Notification("hook", None, None, "one"))
    assert await asyncio.to_thread(keep_alive.open_connections, 1) == 1
    await channel.close()
    assert await asyncio.to_thread(keep_alive.open_connections, 0) == 0
    await channel.send(Notification("hook", None, None, "two"))  # a new client
    await channel.close()
    assert await asyncio.to_thread(keep_alive.open_connections, 0) == 0


def test_webhook_close_from_one_loop_closes_another_running_loops_client(
    keep_alive: KeepAliveServer,
) -> None:
    channel = WebhookChannel(keep_alive.url)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(
            channel.send(Notification("hook", None, None, "there")), other
        ).result(10)
        assert keep_alive.open_connections(1) == 1

        async def close_here() -> None:
            await channel.close()

        asyncio.run(close_here())
        assert keep_alive.open_connections(0) == 0  # closed on its own loop
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


@pytest.mark.parametrize("group", [None, "notifications"])
async def test_close_leaves_the_attached_manager_and_bus(group: str | None) -> None:
    # the handlers used to stay subscribed: later events reached a closed system and
    # every one of them failed with ClosedError inside the bus's and manager's handlers
    from pepperpy.event import Event, EventBus, EventManager

    notifications = NotificationSystem()
    seen: list[str] = []
    notifications.on("user.*", lambda event: seen.append(event.type))
    manager = EventManager()
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        notifications.attach(manager)
        notifications.attach(bus, group=group)
        await manager.emit("user.one")
        await bus.publish("user.two")
        assert seen == ["user.one", "user.two"]
        await notifications.close()
        await manager.emit("user.three")
        await bus.publish("user.four")
        assert seen == ["user.one", "user.two"]
        assert not manager.dead_letters and not bus.dead_letters
        assert manager.handlers("user.three") == []
        assert isinstance(await manager.emit("user.five"), Event)
