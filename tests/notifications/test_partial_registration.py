"""A refused ``attach`` or ``on`` leaves nothing registered, so it can be made again.

attach() used to mark the bus attached before subscribing the handlers: one refused
subscription (AccessDenied, UnknownTopicError) left the bus marked, a retried attach()
was a silent no-op and the refused handler never got the bus's events. on() used to
register the handler for emit() before subscribing it on the attached buses: a refused
on() still ran the handler on emit(), and a retried one ran it twice.
"""

from __future__ import annotations

import pytest

from pepperpy.event import (
    AccessDenied,
    Event,
    EventBus,
    EventManager,
    ListenerLimitError,
    NotificationSystem,
    UnknownTopicError,
)
from pepperpy.event.security import AccessControl, acting_as
from tests.helpers import eventually, settle


async def test_an_attach_refused_by_access_can_be_made_again() -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.notify", "subscribe", "user.*")
    acl.allow("#", "publish", "#")
    notifications = NotificationSystem()
    seen: list[str] = []

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        seen.append(event.type)

    @notifications.on("order.placed")
    async def receipt(event: Event) -> None:
        seen.append(event.type)

    async with EventBus(access=acl) as bus:
        with acting_as("svc.notify"):
            with pytest.raises(AccessDenied, match="order.placed"):
                notifications.attach(bus)
            await bus.publish("user.signup", {})  # not attached: welcome is not subscribed
            await settle()
            assert seen == []
            acl.allow("svc.notify", "subscribe", "order.*")
            notifications.attach(bus)  # was a no-op: the bus was kept as attached
            await bus.publish("user.signup", {})
            await bus.publish("order.placed", {})
            await eventually(lambda: len(seen) == 2)
        assert sorted(seen) == ["order.placed", "user.signup"]
        await notifications.close()


async def test_an_attach_refused_for_an_undeclared_topic_subscribes_nothing() -> None:
    notifications = NotificationSystem()
    seen: list[str] = []

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        seen.append(event.type)

    @notifications.on("order.placed")
    async def receipt(event: Event) -> None:
        seen.append(event.type)

    async with EventBus(topics=["user.signup"]) as bus:
        with pytest.raises(UnknownTopicError, match="order.placed"):
            notifications.attach(bus)
        await bus.publish("user.signup", {})
        await settle()
        assert seen == []  # welcome was subscribed before receipt was refused
        assert await notifications.off("order.placed", receipt)
        notifications.attach(bus)
        await bus.publish("user.signup", {})
        await eventually(lambda: seen == ["user.signup"])
        await settle()
        assert seen == ["user.signup"]
        await notifications.close()


async def test_an_on_refused_by_an_attached_bus_is_not_registered() -> None:
    acl = AccessControl(default="deny")
    acl.allow("#", "publish", "#")
    notifications = NotificationSystem()
    calls: list[str] = []

    async def refund(event: Event) -> None:
        calls.append(event.type)

    async with EventBus(access=acl) as bus:
        notifications.attach(bus)
        with acting_as("svc.notify"):
            with pytest.raises(AccessDenied, match="order.refund"):
                notifications.on("order.refund", refund)
            assert notifications.handlers("order.refund") == []
            await notifications.emit("order.refund", {})
            assert calls == []
            acl.allow("svc.notify", "subscribe", "order.*")
            notifications.on("order.refund", refund)
        assert notifications.handlers("order.refund") == [refund]
        await notifications.emit("order.refund", {})
        assert calls == ["order.refund"]  # was run twice: once per on()
        await bus.publish("order.refund", {})
        await eventually(lambda: len(calls) == 2)
        await settle()
        assert calls == ["order.refund", "order.refund"]
        await notifications.close()


async def test_an_on_refused_by_an_attached_manager_is_undone_everywhere() -> None:
    """A manager refuses only when it records the handler (its max_listeners): the
    subscriptions made before are removed again."""
    first = EventManager()
    full = EventManager(max_listeners=1)
    full.on("order.refund", lambda event: None)
    notifications = NotificationSystem()
    notifications.attach(first)
    notifications.attach(full)
    calls: list[str] = []

    def refund(event: Event) -> None:
        calls.append(event.type)

    with pytest.raises(ListenerLimitError):
        notifications.on("order.refund", refund)
    assert notifications.handlers("order.refund") == []
    assert first.handlers("order.refund") == []
    await notifications.emit("order.refund", {})
    await first.emit("order.refund", {})
    assert calls == []
    await notifications.close()
