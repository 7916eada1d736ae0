"""What becomes of an ``on`` handler that raises when ``emit`` runs it: retried by
``handler_retry_policy``, then a ``DeadLetter`` in ``dead_letters`` and passed to the
``on_error`` callbacks, beside the channels' ``NotificationDeadLetter``s."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from pepperpy.event import (
    Channel,
    ClosedError,
    DeadLetter,
    Event,
    EventManager,
    MemoryChannel,
    Notification,
    NotificationDeadLetter,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
)

Letter = NotificationDeadLetter | DeadLetter


class Down(Channel):
    async def send(self, notification: Notification) -> None:
        raise NotificationError("gateway unreachable")


async def test_a_failing_handler_reaches_on_error_and_dead_letters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The audit's repro: a handler reading a key the event lacks."""
    notifications = NotificationSystem()
    sync_seen: list[Letter] = []
    async_seen: list[Letter] = []
    notifications.on_error(sync_seen.append)

    @notifications.on_error
    async def record(letter: Letter) -> None:
        await asyncio.sleep(0)
        async_seen.append(letter)

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        event.data["user"]

    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        event = await notifications.emit("user.signup", {"name": "no user key"})

    assert sync_seen == async_seen == list(notifications.dead_letters)
    [letter] = sync_seen
    assert isinstance(letter, DeadLetter)
    assert letter.event is event
    assert letter.handler is welcome  # the function registered, not the system's wrapper
    assert isinstance(letter.exception, KeyError) and letter.exception.args == ("user",)
    assert letter.attempts == 1  # no retries by default, as on EventManager
    # logged once, by the manager that ran it, with the handler's name
    logged = [r for r in caplog.records if "welcome" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


async def test_one_callback_tells_handler_and_delivery_failures_apart() -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("sms", Down())
    seen: list[str] = []

    @notifications.on_error
    def page_someone(letter: Letter) -> None:
        if isinstance(letter, NotificationDeadLetter):
            seen.append(f"channel {letter.channel}: {letter.reason}")
        else:
            seen.append(f"handler {letter.handler.__name__}: {letter.exception!r}")

    @notifications.on("order.paid")
    async def receipt(event: Event) -> None:
        await notifications.notify(channels=["sms"], body="paid", to="+15550002222")
        raise RuntimeError("the ledger is down")

    await notifications.emit("order.paid", {})

    assert seen == [
        "channel sms: NotificationError: gateway unreachable",
        "handler receipt: RuntimeError('the ledger is down')",
    ]
    kinds = [type(letter) for letter in notifications.dead_letters]
    assert kinds == [NotificationDeadLetter, DeadLetter]


async def test_each_of_several_handlers_fails_on_its_own() -> None:
    notifications = NotificationSystem()
    inbox = notifications.add_channel("email", MemoryChannel())
    letters: list[Letter] = []
    notifications.on_error(letters.append)

    @notifications.on("user.*")
    async def broken(event: Event) -> None:
        raise ValueError("bug in broken")

    @notifications.on("user.signup")
    def also_broken(event: Event) -> None:
        raise LookupError("bug in also_broken")

    @notifications.on("user.signup")
    async def fine(event: Event) -> None:
        await notifications.notify(channels=["email"], body="hi", to="a@example.com")

    await notifications.emit("user.signup", {})

    assert isinstance(inbox, MemoryChannel) and len(inbox.outbox) == 1
    handlers = {letter.handler for letter in letters if isinstance(letter, DeadLetter)}
    assert handlers == {broken, also_broken} and len(letters) == 2


async def test_handler_retry_policy_retries_then_dead_letters() -> None:
    notifications = NotificationSystem(
        handler_retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0)
    )
    assert notifications.handler_retry_policy == RetryPolicy.fixed(max_attempts=3, base_delay=0)
    calls = {"flaky": 0, "broken": 0}

    @notifications.on("job.run")
    async def flaky(event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("blip")

    @notifications.on("job.fail")
    def broken(event: Event) -> None:
        calls["broken"] += 1
        raise ConnectionError("still down")

    await notifications.emit("job.run", {})
    assert calls["flaky"] == 3 and not notifications.dead_letters

    await notifications.emit("job.fail", {})
    [letter] = notifications.dead_letters
    assert isinstance(letter, DeadLetter)
    assert letter.handler is broken and letter.attempts == 3 and calls["broken"] == 3


async def test_retry_on_limits_which_handler_failures_are_retried() -> None:
    policy = RetryPolicy.fixed(max_attempts=5, base_delay=0, retry_on=ConnectionError)
    notifications = NotificationSystem(handler_retry_policy=policy)
    calls: list[int] = []

    @notifications.on("x")
    def bug(event: Event) -> None:
        calls.append(1)
        raise KeyError("user")  # a bug: retrying cannot fix it

    await notifications.emit("x", {})
    [letter] = notifications.dead_letters
    assert isinstance(letter, DeadLetter) and letter.attempts == 1 and calls == [1]


async def test_a_retried_handler_does_not_notify_twice() -> None:
    """The key derived from the event and the message makes the retry's notify a duplicate."""
    notifications = NotificationSystem(
        handler_retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0)
    )
    inbox = MemoryChannel()
    notifications.add_channel("email", inbox)
    statuses: list[str] = []

    @notifications.on("user.signup")
    async def welcome_then_fail_once(event: Event) -> None:
        result = await notifications.notify(channels=["email"], body="hi", to="a@example.com")
        statuses.append(result["email"].status)
        if len(statuses) == 1:
            raise RuntimeError("a later step failed")

    await notifications.emit("user.signup", {})
    assert statuses == ["sent", "duplicate"]
    assert len(inbox.outbox) == 1 and not notifications.dead_letters


@pytest.mark.parametrize("policy", [None, "fixed", RetryPolicy.fixed])
def test_handler_retry_policy_must_be_a_retry_policy(policy: Any) -> None:
    with pytest.raises(TypeError, match="handler_retry_policy must be a RetryPolicy"):
        NotificationSystem(handler_retry_policy=policy)


async def test_close_ends_a_handler_retry_wait_and_runs_it_no_more() -> None:
    notifications = NotificationSystem(
        handler_retry_policy=RetryPolicy.fixed(max_attempts=5, base_delay=30)
    )
    tries: list[int] = []
    letters: list[Letter] = []
    notifications.on_error(letters.append)

    @notifications.on("job.run")
    async def broken(event: Event) -> None:
        tries.append(1)
        raise ConnectionError("down")

    emitting = asyncio.ensure_future(notifications.emit("job.run", {}))
    await asyncio.sleep(0.05)  # the first try failed; now waiting 30 s to retry
    assert tries == [1] and not emitting.done()
    started = time.monotonic()
    await notifications.close()
    await asyncio.wait_for(emitting, 2)
    assert time.monotonic() - started < 2

    assert tries == [1]  # no try after close
    [letter] = letters
    assert isinstance(letter, DeadLetter) and letter.handler is broken
    assert isinstance(letter.exception, ClosedError) and "broken" in str(letter.exception)
    assert letter.attempts == 1  # the tries made
    assert list(notifications.dead_letters) == letters


async def test_handlers_run_by_an_attached_manager_fail_there() -> None:
    """An attached manager runs the handler under its own retry policy and dead letters."""
    notifications = NotificationSystem(
        handler_retry_policy=RetryPolicy.fixed(max_attempts=4, base_delay=0)
    )
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0))
    notifications.attach(manager)
    calls: list[int] = []

    @notifications.on("user.signup")
    def broken(event: Event) -> None:
        calls.append(1)
        raise KeyError("user")

    await manager.emit("user.signup", {})
    assert len(calls) == 2  # the manager's policy, not handler_retry_policy
    [letter] = manager.dead_letters
    assert letter.attempts == 2
    assert not notifications.dead_letters
