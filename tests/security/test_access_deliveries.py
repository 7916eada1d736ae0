"""What a bus subscriber receives, and as whom its handler runs, under access control.

Dead letters carry the data of the event that failed (``deadletter.<topic>``), and error
callbacks get the failed event itself: both are checked when they are registered, like
any subscription. Handlers and error callbacks run as the principal that registered them,
not as whoever published the event or started the bus (no confused deputy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import (
    AccessDenied,
    Event,
    EventBus,
    EventStore,
    RetryPolicy,
)
from pepperpy.event._patterns import matches
from pepperpy.event.security import AccessControl, AuditLog, acting_as, current_principal
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually, settle

ONE_TRY = RetryPolicy.NONE


def mailer_rules(audit: AuditLog | None = None) -> AccessControl:
    """Everything allowed, except that the mailer may not see refunds."""
    acl = AccessControl(default="allow", audit=audit)
    acl.deny("svc.mailer", "subscribe", "orders.refund.#")
    return acl


# -- dead letters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "deadletter.#",
        "deadletter.orders.#",
        "deadletter.orders.refund.issued",
        "deadletter.*.refund.*",
        "*.orders.refund.*",
        "*.#",
        "#.refund.#",
    ],
)
def test_a_pattern_that_receives_denied_dead_letters_is_refused(pattern: str) -> None:
    bus = EventBus(access=mailer_rules(), retry_policy=ONE_TRY)
    with acting_as("svc.mailer"), pytest.raises(AccessDenied, match="refused by deny"):
        bus.subscribe(pattern)(lambda event: None)


@pytest.mark.parametrize(
    "pattern",
    ["deadletter", "deadletter.orders.created", "deadletter.orders.payment.#", "*", "users.#"],
)
def test_dead_letters_of_allowed_topics_stay_allowed(pattern: str) -> None:
    bus = EventBus(access=mailer_rules(), retry_policy=ONE_TRY)
    with acting_as("svc.mailer"):
        bus.subscribe(pattern)(lambda event: None)


def test_the_refusal_says_which_subscription_needs_the_denied_topic() -> None:
    audit = AuditLog()
    bus = EventBus(access=mailer_rules(audit), retry_policy=ONE_TRY)
    with acting_as("svc.mailer"), pytest.raises(AccessDenied) as denied:
        bus.subscribe("deadletter.#")(lambda event: None)
    message = str(denied.value)
    assert "may not subscribe '#'" in message
    assert "needed by subscribe('deadletter.#')" in message
    assert "refused by deny('svc.mailer', 'subscribe', 'orders.refund.#')" in message
    last = audit.entries()[-1]
    assert (last.principal, last.action, last.target, last.outcome) == (
        "svc.mailer",
        "subscribe",
        "#",
        "denied",
    )
    assert last.details["needed_by"].startswith("subscribe('deadletter.#')")
    assert last.details["rule"] == "deny('svc.mailer', 'subscribe', 'orders.refund.#')"


def test_a_dead_letter_subscription_needs_the_topics_it_carries_under_default_deny() -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.ops", "subscribe", "deadletter.#")
    acl.allow("svc.ops", "subscribe", "orders.#")
    bus = EventBus(access=acl, retry_policy=ONE_TRY)
    with acting_as("svc.ops"):
        bus.subscribe("deadletter.orders.#")(lambda event: None)
        with pytest.raises(AccessDenied, match="needed by subscribe"):
            bus.subscribe("deadletter.#")(lambda event: None)  # would carry users.* too


PATTERNS = ["#", "*", "*.#", "#.#", "a.#", "#.b", "*.b", "deadletter", "deadletter.#"]
PATTERNS += ["deadletter.*", "*.a.*", "#.deadletter.#", "#.a.#", "deadletter.a.b", "*.*.b"]
TOPICS = ["a", "b", "a.b", "b.a", "a.a.b", "deadletter", "deadletter.a", "x.deadletter.b"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_dead_letter_sources_are_exactly_the_topics_whose_dead_letters_match(
    pattern: str,
) -> None:
    from pepperpy.event._bus import _dead_letter_sources

    sources = _dead_letter_sources(pattern)
    for topic in TOPICS:
        carried = matches(pattern, "deadletter." + topic)
        assert carried == any(matches(s, topic) for s in sources), (pattern, topic, sources)


async def test_a_denied_principal_gets_no_data_of_a_denied_topic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The audit's scenario: a refund handler fails; the mailer must see none of it."""
    bus = EventBus(access=mailer_rules(), retry_policy=ONE_TRY)
    got: list[Any] = []
    with acting_as("svc.mailer"):
        for pattern in ("#", "deadletter.#", "deadletter.orders.refund.*"):
            with pytest.raises(AccessDenied):
                bus.subscribe(pattern)(got.append)
        with pytest.raises(AccessDenied, match=r"needed by on_error\(\)"):
            bus.on_error(got.append)
        bus.subscribe("deadletter.orders.created")(got.append)  # allowed, not a refund
    with acting_as("svc.refunds"):

        @bus.subscribe("orders.refund.*")
        def flaky(event: Event) -> None:
            raise RuntimeError("downstream timeout")

        with caplog.at_level(logging.CRITICAL, logger="pepperpy.event.bus"):
            async with bus:
                await bus.publish("orders.refund.issued", {"card": "4111", "amount": 42})
                await settle(0.05)
    assert got == []
    assert [letter.event.type for letter in bus.dead_letters] == ["orders.refund.issued"]


async def test_on_error_needs_subscribe_on_everything() -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.ops", "subscribe", "#")
    acl.allow("svc.orders", "subscribe", "orders.#")
    bus = EventBus(access=acl, retry_policy=ONE_TRY)
    with acting_as("svc.orders"), pytest.raises(AccessDenied):
        bus.on_error(lambda letter: None)
    with pytest.raises(AccessDenied):  # anonymous
        bus.on_error(lambda letter: None)
    with acting_as("svc.ops"):
        bus.on_error(lambda letter: None)
    EventBus().on_error(lambda letter: None)  # no access control, no check
    await bus.close()


# -- as whom handlers run ------------------------------------------------------------------


async def test_a_handler_runs_as_its_subscriber_not_as_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The audit's confused deputy: a mailer's handler appending where the mailer may not."""
    acl = AccessControl(default="deny")
    acl.allow("#", "subscribe", "orders.#")
    acl.allow("svc.admin", "*", "#")
    acl.allow("svc.mailer", "append", "mail.#")
    bus = EventBus(access=acl, retry_policy=ONE_TRY)
    denied: list[BaseException] = []
    ran_as: list[str | None] = []
    async with EventStore(access=acl) as store:
        with acting_as("svc.mailer"):

            @bus.subscribe("orders.*")
            async def handler(event: Event) -> None:
                ran_as.append(current_principal())
                await store.append("mail.outbox", {"type": "mail.queued", "data": {}})
                await store.append("payroll.run", {"type": "payroll.approved", "data": {}})

        with acting_as("svc.admin"):
            bus.on_error(lambda letter: denied.append(letter.exception))
            with caplog.at_level(logging.CRITICAL, logger="pepperpy.event.bus"):
                async with bus:
                    await bus.publish("orders.created", {"n": 1})
                assert current_principal() == "svc.admin"  # the publisher's is untouched
            assert await store.get_stream("payroll.run") == []
            assert len(await store.get_stream("mail.outbox")) == 1
    assert ran_as == ["svc.mailer"]
    assert len(denied) == 1 and isinstance(denied[0], AccessDenied)


async def test_a_handler_subscribed_anonymously_runs_anonymously() -> None:
    bus = EventBus(retry_policy=ONE_TRY)
    ran_as: list[str | None] = []
    bus.subscribe("a.*")(lambda event: ran_as.append(current_principal()))
    with acting_as("svc.admin"):
        await bus.publish("a.b", None)
    assert ran_as == [None]
    await bus.close()


async def test_each_handler_and_error_callback_runs_as_whoever_registered_it() -> None:
    bus = EventBus(retry_policy=ONE_TRY)
    ran_as: list[tuple[str, str | None]] = []

    def record(what: str) -> Callable[[Any], None]:
        return lambda _: ran_as.append((what, current_principal()))

    with acting_as("svc.a"):
        bus.subscribe("t.*")(record("a"))
        bus.on_error(record("errors"))
    with acting_as("svc.b"):

        @bus.subscribe("t.*", group="workers")
        def fails(event: Event) -> None:
            ran_as.append(("b", current_principal()))
            raise RuntimeError("no")

    with acting_as("svc.c"):
        logging.disable(logging.CRITICAL)
        try:
            await bus.publish("t.x", None)
        finally:
            logging.disable(logging.NOTSET)
        assert current_principal() == "svc.c"
    assert sorted(ran_as) == [("a", "svc.a"), ("b", "svc.b"), ("errors", "svc.a")]
    await bus.close()


@pytest.fixture
async def redis_bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("pep")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


async def test_on_a_broker_handlers_run_as_their_subscriber_not_as_the_starter(
    redis_bus_url: str,
) -> None:
    """Consumer tasks are started by ``start()``: their principal must not leak in."""
    bus = EventBus(transport=redis_bus_url, retry_policy=ONE_TRY)
    ran_as: list[str | None] = []
    with acting_as("svc.mailer"):
        bus.subscribe("orders.*")(lambda event: ran_as.append(current_principal()))
    with acting_as("svc.reader"):
        bus.subscribe("orders.*", group="g")(lambda event: ran_as.append(current_principal()))
    bus.subscribe("orders.#")(lambda event: ran_as.append(current_principal()))
    with acting_as("svc.admin"):
        async with bus:
            await bus.publish("orders.created", {"n": 1})
            await eventually(lambda: len(ran_as) == 3)
    assert sorted(ran_as, key=str) == sorted(["svc.mailer", "svc.reader", None], key=str)


def test_principals_do_not_leak_between_deliveries() -> None:
    """Many publishers and subscribers interleaved: each handler sees only its own."""

    async def main() -> None:
        bus = EventBus(retry_policy=ONE_TRY)
        wrong: list[tuple[str, str | None]] = []
        names = [f"svc.s{n}" for n in range(5)]
        for name in names:

            async def handler(event: Event, name: str = name) -> None:
                await asyncio.sleep(0)
                if current_principal() != name:
                    wrong.append((name, current_principal()))

            with acting_as(name):
                bus.subscribe("load.*")(handler)

        async def publisher(who: str) -> None:
            with acting_as(who):
                for n in range(20):
                    await bus.publish(f"load.{n}", None)
                    assert current_principal() == who

        await asyncio.gather(*(publisher(f"pub.{n}") for n in range(4)))
        await bus.close()
        assert wrong == []

    asyncio.run(main())
