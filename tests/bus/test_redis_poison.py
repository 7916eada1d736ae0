"""One unreadable stream entry never stops a Redis reader.

Entries written by any client (``XADD``) may hold anything. Whatever reading one raises,
its topic, its pattern match or its event, the shared listener, a lane catching up by
itself and a group worker log it with its stream and id, skip it (a group acknowledges
it) and deliver the entries after it. ``Event.from_json`` raises only
``SerializationError`` for malformed input; the entries that make it raise something
else stand for a bug below the transport (before that was fixed, a ``time`` near the
limits of ``datetime`` raised ``OverflowError``), which must not end a reader either.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"

DOCUMENT = {"specversion": "1.0", "id": "ok", "source": "urn:plain", "type": "p.x", "data": {}}


def document(**changes: Any) -> bytes:
    """The CloudEvents JSON of ``DOCUMENT`` with ``changes`` (None removes an attribute)."""
    merged = {**DOCUMENT, **changes}
    return json.dumps({k: v for k, v in merged.items() if v is not None}).encode()


HUGE_DATA = b', "data": ' + b"9" * 5000 + b"}"

#: entries broken in as many ways, as raw stream fields
POISON: dict[str, dict[str, bytes]] = {
    "bad JSON": {b"topic": b"p.x", b"event": b"{not json"},
    "a field of the wrong type": {b"topic": b"p.x", b"event": document(time=5)},
    "a missing field": {b"topic": b"p.x", b"event": document(id=None)},
    "no event field": {b"topic": b"p.x"},
    "non-UTF-8 bytes": {b"topic": b"p.x", b"event": b'{"id": "\xff\xfe", "type": "p.x"}'},
    "a huge digit string": {b"topic": b"p.x", b"event": document(pepperpyversion="9" * 5000)},
    "a huge number": {b"topic": b"p.x", b"event": document(data=None)[:-1] + HUGE_DATA},
    "a malformed topic": {b"topic": b"p..x", b"event": document()},
    "no topic field and bad JSON": {b"event": b"[1, 2"},
    "an unexpected decoding error": {b"topic": b"p.x", b"event": document(id="explode-1")},
    "no topic field, unexpected error": {b"event": document(id="explode-2")},
}


@pytest.fixture
async def plain(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def exploding_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Event.from_json`` raises OverflowError for documents whose id starts 'explode'."""
    original = Event.from_json

    def from_json(cls: type[Event], raw: bytes | bytearray | memoryview | str) -> Event:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
        if '"explode' in text:
            raise OverflowError("date value out of range")
        return original(raw)

    monkeypatch.setattr(Event, "from_json", classmethod(from_json))


def collector(into: list[Any]) -> Callable[[Event], None]:
    return lambda event: into.append(event.data)


def logged(caplog: pytest.LogCaptureFixture, reader: str, stream: str, entry_id: bytes) -> bool:
    """True if ``reader`` logged the entry at ERROR, naming its stream and id."""
    return any(
        record.levelno == logging.ERROR
        and record.getMessage().startswith(reader)
        and stream in record.getMessage()
        and entry_id.decode() in record.getMessage()
        for record in caplog.records
    )


async def test_every_reader_skips_an_unreadable_entry_and_delivers_the_next(
    redis_url: str, namespace: str, plain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    listened: list[Any] = []
    grouped: list[Any] = []
    bus.subscribe("p.#")(collector(listened))
    bus.subscribe("p.#", group="g")(collector(grouped))
    async with asyncio.timeout(30), bus:
        stream = transport.stream_for("p.x")
        ids = {name: await plain.xadd(stream, fields) for name, fields in POISON.items()}
        for n in range(3):
            await bus.publish("p.x", n)
        await eventually(lambda: listened == [0, 1, 2] and grouped == [0, 1, 2])
        group = next(iter(transport._members)).group
        # acknowledged: nothing left pending for a next member to trip over again
        await eventually_async(lambda: pending(plain, stream, group), 0)
        assert transport._listener is not None and transport._listener._task is not None
        assert not transport._listener._task.done()
    for name, entry_id in ids.items():
        assert logged(caplog, "listener:", stream, entry_id), name
        if name != "a malformed topic":  # no group takes it: nothing to read for one
            assert logged(caplog, f"group {group!r}:", stream, entry_id), name
    # malformed input is logged without a traceback; the unexpected errors with theirs
    # (two entries, each logged by the listener and the group)
    tracebacks = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert tracebacks == [OverflowError] * 4


async def test_a_lane_catching_up_skips_an_unreadable_entry_and_reads_on(
    redis_url: str, namespace: str, plain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, batch_size=2, trim_interval=None
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    gate = asyncio.Event()
    got: list[Any] = []

    @bus.subscribe("p.#")
    async def slow(event: Event) -> None:
        await gate.wait()
        got.append(event.data)

    async with asyncio.timeout(30), bus:
        listener: Any = transport._listener
        feed = listener._feeds[0]
        for n in range(4):  # one in the handler, two in the lane, and one too many
            await bus.publish("p.x", n)
        await eventually(lambda: bool(feed._behind))  # the lane reads by itself from now on
        stream = transport.stream_for("p.x")
        ids = {name: await plain.xadd(stream, fields) for name, fields in POISON.items()}
        for n in range(4, 7):
            await bus.publish("p.x", n)
        gate.set()
        await eventually(lambda: got == list(range(7)))
    reader = "ungrouped subscription 'p.#':"
    for name, entry_id in ids.items():
        if name != "a malformed topic":  # its pattern filter skips it, with a warning
            assert logged(caplog, reader, stream, entry_id), name


async def pending(client: Any, stream: str, group: str) -> int:
    return int((await client.xpending(stream, group))["pending"])


async def eventually_async(probe: Callable[[], Any], expected: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (value := await probe()) != expected:
            await asyncio.sleep(0.02)
    assert value == expected
