"""RabbitMQ: a cancelled task of the transport ends, even when the driver lost the
cancellation.

aiormq waits for a channel's CloseOk (closing a consumer's channel, as a group's
rebalancing handover does) with ``asyncio.wait_for``, which on CPython 3.11 returns when
a cancellation arrives just as the answer does: the cancellation is lost, only
``Task.cancelling()`` remembers it. The fakes below lose the first cancellation they get,
as such a call can; the loop around them must still end (before, it went on, and
``close()``, waiting for it, never returned). Each test uses an exchange of its own and
deletes what it declared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[RabbitMQTransport]:
    made = RabbitMQTransport(
        amqp_url,
        exchange=unique_name("pep.cancel"),
        partitions=2,
        queue_type="classic",
        rebalance_interval=0.05,
    )
    await made.start()
    yield made
    await finishes(made.close(), 15)
    await finishes(made.delete_topology(), 15)


class LosesCancellation:
    """A driver call that loses the first cancellation it gets, returning ``result`` as
    ``asyncio.wait_for`` does when the awaited call completed at that moment; calls after
    that one wait, cancellably, for ever."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.entered = asyncio.Event()
        self.lost = 0
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.entered.set()
        if self.lost:
            await asyncio.Event().wait()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.lost += 1
        return self.result


async def _ignore(event: Event) -> None:
    return None


async def test_close_ends_a_rebalancer_whose_broker_call_lost_the_cancellation(
    transport: RabbitMQTransport,
) -> None:
    subscription = Subscription("cancel.*", _ignore, "workers", "rebalanced")
    await transport.subscribe(subscription)
    group = transport._groups["rebalanced"]
    count = LosesCancellation(result=1)
    group._count_members = count  # type: ignore[method-assign]
    await count.entered.wait()
    await finishes(transport.close(), 10)  # old code: counted members on, for ever
    assert count.lost == 1 and count.calls == 1
    assert group._rebalancer is None
