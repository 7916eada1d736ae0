"""A burst of deliveries on one webhook channel, more than its connections: the tries
past them wait for a free connection before their timeout starts.

Found sending an alert storm to a receiver on loopback: httpx's pool has 100
connections, and the tries past them waited for one *inside* their ``timeout``, so 150
alerts to a receiver answering in one second failed their last 50 tries ("did not
answer within ..."), which the receiver then got a second time on the retry; with a few
hundred waiting, httpcore's pool wrote no request at all before the deadlines.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import NotificationSystem, RetryPolicy, WebhookChannel
from tests.notifications.servers import HttpSink, Request

TIMEOUT = 1.0
#: a channel's connections on one loop (``webhook.IN_FLIGHT``, httpx's default pool before)
IN_FLIGHT = 100


async def test_tries_past_the_pool_wait_outside_their_timeout() -> None:
    """The first ``IN_FLIGHT`` requests hold every connection until their own deadline
    (the status line came, the body never ends: each is a delivery); the rest, waiting
    for a connection all along, still get their whole timeout once one is free."""
    finished = asyncio.Event()

    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        if len(sink.requests) > IN_FLIGHT:  # the ones that waited: answered at once
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\no")  # and then nothing
        await writer.drain()
        try:
            await asyncio.wait_for(finished.wait(), 30)
        except TimeoutError:
            pass

    sink = await HttpSink(reply=reply).start()
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("hook", WebhookChannel(sink.url + "/alerts", timeout=TIMEOUT))
    count = IN_FLIGHT + 50
    try:
        results = await asyncio.gather(
            *(notifications.notify(body=f"alert {n}") for n in range(count))
        )
    finally:
        finished.set()
        await notifications.close()
        await sink.close()

    failed = [str(result["hook"].error) for result in results if not result.ok]
    assert failed == [], f"{len(failed)} failed, e.g. {failed[0]}"
    assert len(sink.requests) == count  # each once
    assert len({request.body for request in sink.requests}) == count


async def test_close_ends_the_wait_for_a_connection_unsent() -> None:
    """A try waiting for a free connection when the system closes has sent nothing: it
    fails at once, "not sent", as one waiting for its rate-limit slot does, rather than
    waiting out the grace and being cut off as "the receiver may have got the message"."""
    finished = asyncio.Event()

    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\no")  # and then nothing
        await writer.drain()
        try:
            await asyncio.wait_for(finished.wait(), 30)
        except TimeoutError:
            pass

    sink = await HttpSink(reply=reply).start()
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("hook", WebhookChannel(sink.url + "/alerts", timeout=60))
    calls = [
        asyncio.create_task(notifications.notify(body=f"alert {n}")) for n in range(IN_FLIGHT + 10)
    ]
    try:
        for _ in range(1000):
            if len(sink.requests) >= IN_FLIGHT:
                break
            await asyncio.sleep(0.01)
        assert len(sink.requests) == IN_FLIGHT
        closing = asyncio.create_task(notifications.close(grace=30))
        # the waiting tries end at once, while close() still waits for those under way
        waiting = calls[IN_FLIGHT:]
        for _ in range(1000):
            if all(call.done() for call in waiting):
                break
            await asyncio.sleep(0.01)
        assert all(call.done() for call in waiting)
        assert not closing.done()
        finished.set()  # the receiver ends the answers under way: those were delivered
        await closing
        results = [(await call)["hook"] for call in calls]
    finally:
        finished.set()
        await sink.close()

    waited = [result for result in results if result.status == "failed"]
    assert len(waited) == 10
    for result in waited:
        assert result.attempts == 0
        assert str(result.error) == (
            "the notification system was closed before try 1 on channel 'hook'; not sent"
        )
    assert len(sink.requests) == IN_FLIGHT
