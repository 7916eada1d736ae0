"""RabbitMQ: a dead letter the broker itself refuses as too large ends the message.

``give_up`` drops a dead letter over the limit the transport knows (its
``max_message_size`` option, or the default of the broker's version: see
tests/bus/test_rabbitmq_dead_letter_size.py). A broker whose own ``max_message_size`` is
lower (an operator lowered it, and the transport was not told, or was told a higher
number) stored the event but refuses its dead letter, larger by its metadata: it closes
the publisher channel (``PRECONDITION_FAILED - message size ... is larger than
configured max size ...``). That failed the dead letter's publish like an outage, so the
message was requeued, came straight back and failed again, for ever. Now the refusal
ends in the same ``dead_letter_dropped`` ERROR record, naming both sizes (the broker
names its limit), and the message is acknowledged; nothing is left in the queues.

On the real broker (3.10): its limit is lowered with ``rabbitmqctl eval
'application:set_env(rabbit, max_message_size, N).'``, which applies to channels opened
after it, only while the transport opens its channels, and restored at once (other
tests use the same broker).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name
from tests.helpers import eventually, settle

pytestmark = pytest.mark.rabbitmq

pytest.importorskip("aio_pika")

#: the broker's max_message_size during the test: the event fits, its dead letter not
LIMIT = 64 * 1024


async def _rabbitmqctl_eval(expression: str) -> str:
    """``rabbitmqctl eval expression`` on the local broker: what it printed."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "eval",
        expression,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"rabbitmqctl eval {expression!r}: {err.decode()}"
    return out.decode().strip()


@asynccontextmanager
async def broker_limit(limit: int) -> AsyncIterator[None]:
    """The broker's ``max_message_size`` is ``limit`` for the channels opened inside,
    and what it was again after (whatever happens)."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl for the local RabbitMQ broker")
    was = await _rabbitmqctl_eval("application:get_env(rabbit, max_message_size).")
    found = re.fullmatch(r"\{ok,([0-9]+)\}", was)
    assert found is not None, f"the broker's max_message_size: {was!r}"
    previous = int(found.group(1))
    try:
        await _rabbitmqctl_eval(f"application:set_env(rabbit, max_message_size, {limit}).")
        yield
    finally:
        await _rabbitmqctl_eval(f"application:set_env(rabbit, max_message_size, {previous}).")


@pytest.mark.parametrize("known", [None, 1024 * 1024], ids=["version-default", "option-higher"])
async def test_a_dead_letter_the_broker_refuses_drops_the_message_instead_of_looping(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
    known: int | None,
) -> None:
    transport = rabbitmq_transports(max_message_size=known, max_deliveries=1)
    topic = unique_name("t") + ".big"
    dead: list[Event] = []
    tries: list[str] = []

    async def fail(event: Event) -> None:
        tries.append(event.id)
        raise RuntimeError("boom")

    async def keep(event: Event) -> None:
        dead.append(event)

    event = Event(topic, "")
    event = Event(topic, "x" * (LIMIT - len(event.to_json()) - 40))  # its dead letter: not
    assert LIMIT - 100 < len(event.to_json()) <= LIMIT
    caplog.set_level(logging.ERROR, "pepperpy.event.transports.rabbitmq")
    dropped = lambda: [  # noqa: E731
        r for r in caplog.records if vars(r).get("kind") == "dead_letter_dropped"
    ]
    async with asyncio.timeout(90):
        async with broker_limit(LIMIT):  # the channels opened now have the lower limit
            await transport.start()
        await transport.subscribe(Subscription(topic, fail, "workers", "fail"))
        await transport.subscribe(Subscription("deadletter.#", keep, None, "keep"))
        await transport.publish(event)  # the broker stores it: it fits
        await eventually(lambda: bool(dropped()), timeout=20)
        [record] = dropped()
        assert vars(record)["event_id"] == event.id
        assert vars(record)["group"] == "workers"
        assert vars(record)["deliveries"] == 1
        assert vars(record)["limit"] == LIMIT  # the broker's, as it named it
        size = vars(record)["size"]
        assert size > LIMIT
        message = record.getMessage()
        assert f"is {size:,} bytes, over the broker's max_message_size of {LIMIT:,} bytes" in (
            message
        )
        assert message.endswith("the event is dropped")
        # one record for the event: not also one saying it was dead-lettered
        assert not [r for r in caplog.records if vars(r).get("kind") == "broker_dead_letter"]
        queues = [c.queue_name for c in transport._consumers if c.group == "workers"]
        await settle()
        assert tries == [event.id]  # delivered once, given up on once, never again
        assert len(dropped()) == 1
        assert dead == []
        # the publisher channel the broker closed was reopened: publishing works
        await transport.publish(Event(topic.replace(".big", ".small"), "y"))
        await transport.close()  # what was not acknowledged returns to the queue
        assert queues
        assert await _ready(transport.url, queues) == 0


async def _ready(url: str, queues: list[str | None]) -> int:
    """The messages ready in ``queues`` (the group's partitions), read on a connection
    of the test's own."""
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        ready = 0
        for name in queues:
            assert name is not None
            declared = await channel.declare_queue(name, passive=True)
            ready += declared.declaration_result.message_count or 0
        return ready
    finally:
        await connection.close()
