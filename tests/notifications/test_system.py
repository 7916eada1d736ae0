"""NotificationSystem behaviour on in-process channels: routing, isolation, retries,
idempotency, rate limits, and subscribing to managers and buses."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pepperpy.event import (
    Channel,
    ConfigurationError,
    ConsoleChannel,
    EmailChannel,
    Event,
    EventBus,
    EventManager,
    MemoryChannel,
    Notification,
    NotificationDeadLetter,
    NotificationError,
    NotificationResult,
    NotificationSystem,
    PatternError,
    RecipientError,
    RetryPolicy,
    WebhookChannel,
)
from pepperpy.event.notifications import MemoryIdempotencyStore, RateLimit

FAST_RETRY = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


class Flaky(Channel):
    """Fails its first ``failures`` sends with ``error``, then records."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("network blip")
        self.calls = 0
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.sent.append(notification)


@dataclass
class User:
    name: str
    email: str | None = None
    phone: str | None = None
    device_token: str | None = None


def test_construction_and_registration_need_no_event_loop() -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email")
    notifications.add_template("t", "x")

    @notifications.on("user.*")
    def handler(event: Event) -> None:
        pass

    assert notifications.on("a.b", handler) is handler
    notifications.attach(EventManager())
    notifications.attach(EventBus())


async def test_unconfigured_channel_writes_to_outbox_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email")
    caplog.set_level(logging.INFO, logger="pepperpy.event.notifications")

    for n in range(2):
        await notifications.notify(
            channels=["email"], subject=f"s{n}", body="b", user={"email": "a@b.c"}
        )

    assert [(n.channel, n.recipient, n.subject, n.body) for n in notifications.outbox] == [
        ("email", "a@b.c", "s0", "b"),
        ("email", "a@b.c", "s1", "b"),
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'email'" in warnings[0].getMessage()
    assert sum("outbox [email]" in r.getMessage() for r in caplog.records) == 2


async def test_recipients_resolved_per_channel_from_mappings_and_objects() -> None:
    notifications = NotificationSystem()
    for name in ("email", "sms", "push"):
        notifications.add_channel(name)
    user = User("Ana", email="ana@x.io", phone="+1555", device_token="tok-1")

    from_object = await notifications.notify(body="hi", user=user)
    from_mapping = await notifications.notify(channels=["sms"], body="hi", user={"phone": "+1666"})
    per_channel = await notifications.notify(
        channels=["email", "sms"], body="hi", to={"sms": "+1777"}, user=user
    )

    recipients = {n.channel: n.recipient for n in notifications.outbox[:3]}
    assert recipients == {"email": "ana@x.io", "sms": "+1555", "push": "tok-1"}
    assert from_object.ok and from_mapping.ok and per_channel.ok
    assert from_mapping["sms"].notification.recipient == "+1666"  # type: ignore[union-attr]
    assert per_channel["sms"].notification.recipient == "+1777"  # type: ignore[union-attr]
    assert per_channel["email"].notification.recipient == "ana@x.io"  # type: ignore[union-attr]


async def test_missing_address_fails_only_that_channel() -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email")
    notifications.add_channel("push")

    result = await notifications.notify(body="hi", user=User("Bo", email="bo@x.io"))

    assert result["email"].ok
    assert isinstance(result["push"].error, RecipientError)
    assert "device_token" in str(result["push"].error)
    assert result.sent == ["email"] and list(result.failed) == ["push"]
    assert not result.ok
    no_user = await notifications.notify(channels=["email"], body="hi")
    assert "no user in the context" in str(no_user["email"].error)


async def test_failing_channel_never_blocks_the_others() -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    broken = Flaky(failures=99, error=RuntimeError("boom"))
    good = MemoryChannel()
    notifications.add_channel("broken", broken)
    notifications.add_channel("good", good)

    result = await notifications.notify(body="x")

    assert result["good"].status == "sent" and len(good.outbox) == 1
    error = result["broken"].error
    assert isinstance(error, NotificationError) and isinstance(error.__cause__, RuntimeError)
    assert "boom" in str(error)


async def test_channels_run_concurrently() -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    class Meeting(Channel):
        needs_recipient = False

        async def send(self, notification: Notification) -> None:
            started.append(notification.channel)
            if len(started) == 2:
                both_started.set()
            await asyncio.wait_for(both_started.wait(), timeout=5)

    notifications = NotificationSystem()
    notifications.add_channel("a", Meeting())
    notifications.add_channel("b", Meeting())

    result = await notifications.notify(body="x")

    assert result.ok and sorted(started) == ["a", "b"]


async def test_retries_then_success_and_per_channel_policy() -> None:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    flaky = Flaky(failures=2)
    stubborn = Flaky(failures=5)
    notifications.add_channel("flaky", flaky)
    notifications.add_channel(
        "stubborn", stubborn, retry_policy=RetryPolicy.fixed(max_attempts=5, base_delay=0)
    )

    result = await notifications.notify(body="x")

    assert result["flaky"].status == "sent" and result["flaky"].attempts == 3
    assert result["stubborn"].status == "failed" and result["stubborn"].attempts == 5
    assert len(flaky.sent) == 1 and stubborn.calls == 5


async def test_retry_on_filters_by_the_original_exception() -> None:
    policy = RetryPolicy.fixed(max_attempts=3, base_delay=0, retry_on=ConnectionError)
    notifications = NotificationSystem(retry_policy=policy)
    transient = Flaky(failures=1)
    fatal = Flaky(failures=1, error=ValueError("bad"))
    notifications.add_channel("transient", transient)
    notifications.add_channel("fatal", fatal)

    result = await notifications.notify(body="x")

    assert result["transient"].ok and result["transient"].attempts == 2
    assert not result["fatal"].ok and result["fatal"].attempts == 1


async def test_dead_letters_reach_sync_and_async_callbacks() -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("broken", Flaky(failures=9))
    sync_seen: list[NotificationDeadLetter] = []
    async_seen: list[NotificationDeadLetter] = []

    @notifications.on_error
    async def record(letter: NotificationDeadLetter) -> None:
        await asyncio.sleep(0)
        async_seen.append(letter)

    notifications.on_error(sync_seen.append)

    @notifications.on_error
    def explode(letter: NotificationDeadLetter) -> None:
        raise RuntimeError("callback bug")  # logged, never breaks notify

    result = await notifications.notify(body="x", template=None)

    assert not result.ok
    assert sync_seen == async_seen == list(notifications.dead_letters)
    letter = sync_seen[0]
    assert letter.channel == "broken" and "network blip" in letter.reason
    assert letter.notification is not None and letter.notification.body == "x"


async def test_a_sync_error_callback_returning_an_awaitable_is_awaited() -> None:
    """Dead-letter callbacks are called as handlers are (``_handlers.call``): what a sync
    callback returns is awaited if it is awaitable."""
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("broken", Flaky(failures=9))
    seen: list[NotificationDeadLetter] = []

    async def later(letter: NotificationDeadLetter) -> None:
        await asyncio.sleep(0)
        seen.append(letter)

    notifications.on_error(lambda letter: later(letter))
    await notifications.notify(body="x", template=None)
    assert seen == list(notifications.dead_letters) and len(seen) == 1


async def test_idempotency_key_prevents_a_second_send() -> None:
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("email", memory)

    first = await notifications.notify(body="x", to="a@b.c", idempotency_key="order-1")
    again = await notifications.notify(body="x", to="a@b.c", idempotency_key="order-1")
    other_recipient = await notifications.notify(body="x", to="z@b.c", idempotency_key="order-1")
    other_key = await notifications.notify(body="x", to="a@b.c", idempotency_key="order-2")

    assert first["email"].status == "sent"
    assert again["email"].status == "duplicate" and again["email"].ok
    assert again["email"].notification.key == first["email"].notification.key  # type: ignore[union-attr]
    assert other_recipient["email"].status == "sent" and other_key["email"].status == "sent"
    assert len(memory.outbox) == 3


async def test_failed_delivery_is_not_remembered_as_done() -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    flaky = Flaky(failures=1)
    notifications.add_channel("chat", flaky)

    failed = await notifications.notify(body="x", idempotency_key="k")
    retried = await notifications.notify(body="x", idempotency_key="k")

    assert failed["chat"].status == "failed" and retried["chat"].status == "sent"
    assert len(flaky.sent) == 1


async def test_concurrent_calls_with_one_key_send_once() -> None:
    release = asyncio.Event()

    class Slow(MemoryChannel):
        async def send(self, notification: Notification) -> None:
            await release.wait()
            await super().send(notification)

    slow = Slow()
    notifications = NotificationSystem()
    notifications.add_channel("chat", slow)

    calls = [notifications.notify(body="x", idempotency_key="same") for _ in range(5)]
    gathered = asyncio.gather(*calls)
    await asyncio.sleep(0.01)
    release.set()
    results: list[NotificationResult] = await gathered

    assert sorted(r["chat"].status for r in results) == ["duplicate"] * 4 + ["sent"]
    assert len(slow.outbox) == 1


def test_one_key_from_two_event_loops_sends_once() -> None:
    # the in-process store's waiters were futures of the holder's loop: a call with the
    # same key on another loop (thread) failed with "attached to a different loop"
    sending = threading.Event()
    waiting = threading.Event()

    class Watched(MemoryIdempotencyStore):
        async def wait(self, key: str) -> None:
            waiting.set()  # the second call found the key busy and waits for it
            await super().wait(key)

    class HeldUntilWaitedFor(MemoryChannel):
        async def send(self, notification: Notification) -> None:
            sending.set()  # the first call holds the key now
            await asyncio.to_thread(waiting.wait, 10)
            await super().send(notification)

    inbox = HeldUntilWaitedFor()
    notifications = NotificationSystem(idempotency=Watched())
    notifications.add_channel("chat", inbox)
    statuses: dict[str, str] = {}

    def call(name: str) -> None:
        async def notify() -> str:
            result = await notifications.notify(body="once", idempotency_key="order-42")
            return result["chat"].status

        try:
            statuses[name] = asyncio.run(notify())
        except Exception as exc:  # reported below, with the other thread's outcome
            statuses[name] = repr(exc)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    sending.wait(10)
    second = threading.Thread(target=call, args=("second",))
    second.start()
    for thread in (first, second):
        thread.join(20)

    assert statuses == {"first": "sent", "second": "duplicate"}
    assert len(inbox.outbox) == 1


async def test_retried_event_does_not_notify_twice() -> None:
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0))
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("email", memory)
    notifications.add_template("welcome", "Hi {{ user.name }}")
    statuses: list[str] = []

    @notifications.on("user.signup")
    async def welcome_then_fail_once(event: Event) -> None:
        result = await notifications.notify(
            channels=["email"], template="welcome", user=event.data["user"]
        )
        statuses.append(result["email"].status)
        if len(statuses) == 1:
            raise RuntimeError("a later step failed; the manager retries the handler")

    notifications.attach(manager)
    await manager.emit("user.signup", {"user": {"name": "Ana", "email": "a@x.io"}})
    await manager.emit("user.signup", {"user": {"name": "Ana", "email": "a@x.io"}})

    assert statuses == ["sent", "duplicate", "sent"]  # a new event is a new notification
    assert len(memory.outbox) == 2
    assert not manager.dead_letters

    redelivered = Event("user.signup", {"user": {"name": "Bo", "email": "b@x.io"}})
    await notifications.emit(redelivered)
    await notifications.emit(redelivered)  # the same event id again, e.g. a broker retry
    assert statuses[-2:] == ["sent", "duplicate"]


async def test_one_handler_sending_different_messages_sends_each_once() -> None:
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0))
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("email", memory)
    notifications.add_template("shipped", "Order {{ order }} shipped", subject="{{ order }}")
    statuses: list[str] = []

    @notifications.on("orders.shipped")
    async def tell_each_order(event: Event) -> None:
        for order in event.data["orders"]:
            result = await notifications.notify(
                channels=["email"], template="shipped", user={"email": "a@x.io"}, order=order
            )
            statuses.append(result["email"].status)
        if len(statuses) == 2:
            raise RuntimeError("a later step failed; the manager retries the handler")

    notifications.attach(manager)
    await manager.emit("orders.shipped", {"orders": ["A-1", "B-2"]})

    # two different messages both go out; the retried event sends neither again
    assert statuses == ["sent", "sent", "duplicate", "duplicate"]
    assert [n.subject for n in memory.outbox] == ["A-1", "B-2"]
    keys = [n.key for n in memory.outbox]
    assert all(keys) and len(set(keys)) == 2


async def test_emit_with_patterns_and_sync_handlers() -> None:
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("chat", memory)
    seen: list[str] = []

    @notifications.on("order.#")
    def sync_handler(event: Event) -> None:
        seen.append(event.type)

    @notifications.on("order.*")
    def returns_awaitable(event: Event) -> object:
        return notifications.notify(channels=["chat"], body=f"order {event.data['id']}")

    await notifications.emit("order.paid", {"id": 5})
    await notifications.emit("order", {"id": 6})
    await notifications.emit("invoice.paid", {"id": 7})

    assert seen == ["order.paid", "order"]
    assert [n.body for n in memory.outbox] == ["order 5"]
    with pytest.raises(PatternError):
        notifications.on("a..b")


async def test_attach_to_a_bus_with_one_call() -> None:
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("email", memory)
    notifications.add_template("welcome", "Welcome {{ user.name }}", subject="Hi")

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        await notifications.notify(channels=["email"], template="welcome", **event.data)

    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        notifications.attach(bus)
        notifications.attach(bus)  # attaching twice changes nothing
        await bus.publish("user.signup", {"user": {"name": "Cy", "email": "c@x.io"}})

    assert [(n.recipient, n.subject, n.body) for n in memory.outbox] == [
        ("c@x.io", "Hi", "Welcome Cy")
    ]


async def test_handlers_added_after_attach_also_subscribe() -> None:
    manager = EventManager()
    notifications = NotificationSystem()
    notifications.attach(manager)
    seen: list[str] = []

    notifications.on("late.event", lambda event: seen.append(event.type))
    await manager.emit("late.event", None)

    assert seen == ["late.event"]
    with pytest.raises(TypeError):
        notifications.attach(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        notifications.attach(EventManager(), group="bad group!")


async def test_rate_limit_paces_a_channel() -> None:
    notifications = NotificationSystem()
    memory = MemoryChannel()
    notifications.add_channel("sms", memory, rate_limit="20/s")
    notifications.add_channel("free", MemoryChannel())
    loop = asyncio.get_running_loop()

    start = loop.time()
    for n in range(5):
        await notifications.notify(channels=["sms"], body=str(n), to="+1")
    paced = loop.time() - start

    assert paced >= 4 * 0.05 * 0.95  # the first goes at once, four more 50 ms apart
    assert [n.body for n in memory.outbox] == ["0", "1", "2", "3", "4"]


def test_rate_limit_specs() -> None:
    assert RateLimit.parse("10/s").interval == pytest.approx(0.1)
    assert RateLimit.parse("120/min").interval == pytest.approx(0.5)
    assert RateLimit.parse("3600 / hours").interval == pytest.approx(1.0)
    assert RateLimit.parse(4).interval == pytest.approx(0.25)
    limit = RateLimit(5, 1, burst=3)
    assert RateLimit.parse(limit) is limit
    for bad in ("10", "10/fortnight", "-1/s", "0/s"):
        with pytest.raises(ConfigurationError):
            RateLimit.parse(bad)
    for wrong in (True, b"10/s", None):  # a wrong type (docs/errors.md)
        with pytest.raises(TypeError):
            RateLimit.parse(wrong)  # type: ignore[arg-type]


async def test_slots_with_a_burst() -> None:
    limit = RateLimit(2, 1, burst=3)  # one per 0.5 s, three back to back

    times = [await limit.acquire() for _ in range(4)]

    # a slot never comes early, so the lower bound is exact; "at once" has a wide margin
    assert times[2] - times[0] < 0.4
    assert times[3] - times[0] >= 0.5
    assert RateLimit(2).interval == 0.5


async def test_cancelled_waiters_give_their_rate_limit_slots_back() -> None:
    # cancelled notify calls kept the slots they had reserved: twenty of them made the
    # next real send wait ten intervals for sends that never happened
    notifications = NotificationSystem()
    inbox = MemoryChannel()
    notifications.add_channel("sms", inbox, rate_limit="2/s")
    await notifications.notify(body="first", to="+15550001111")
    waiting = [
        asyncio.ensure_future(notifications.notify(body=f"w{n}", to="+15550001111"))
        for n in range(20)
    ]
    await asyncio.sleep(0.05)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)

    after = await asyncio.wait_for(notifications.notify(body="after", to="+15550001111"), 3)

    assert after.ok and [n.body for n in inbox.outbox] == ["first", "after"]


class SlowToConnect(Channel):
    """Takes ``setups`` seconds to "connect" (one per send, in order), then waits for its
    rate-limit slot right before writing, and records when it got it."""

    paces_writes = True

    def __init__(self, setups: list[float]) -> None:
        self.setups = setups
        self.written: list[float] = []

    async def send(self, notification: Notification) -> None:
        await asyncio.sleep(self.setups.pop(0) if self.setups else 0.0)
        await self.ready_to_write()
        self.written.append(time.monotonic())


async def test_the_rate_limit_slot_is_taken_when_the_connection_is_ready() -> None:
    # the slot used to be taken when a try started: the first message's slow set-up
    # came out of the interval, so the second was written 0.1 s after it, not 0.5 s
    channel = SlowToConnect([0.4])
    notifications = NotificationSystem()
    notifications.add_channel("hook", channel, kind="webhook", rate_limit="2/s")

    results = await asyncio.gather(*(notifications.notify(body=str(n)) for n in range(3)))

    assert all(result.ok for result in results)
    gaps = [b - a for a, b in zip(channel.written, channel.written[1:], strict=False)]
    assert len(gaps) == 2 and min(gaps) >= 0.5 - 0.01  # what the limiter granted, exactly


async def test_a_try_that_writes_nothing_gives_its_start_back() -> None:
    class Unreachable(Channel):
        paces_writes = True

        async def send(self, notification: Notification) -> None:
            raise ConnectionError("refused")  # before it ever got to write

    reachable = SlowToConnect([])
    limit = RateLimit(1, 60)  # one message a minute, shared by both channels
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("down", Unreachable(), kind="webhook", rate_limit=limit)
    notifications.add_channel("up", reachable, kind="webhook", rate_limit=limit)
    await notifications.notify(channels="down", body="x")

    result = await asyncio.wait_for(notifications.notify(channels="up", body="y"), 5)

    assert result.ok and len(reachable.written) == 1


async def test_default_channel_and_console(capsys: pytest.CaptureFixture[str]) -> None:
    notifications = NotificationSystem(default_channel="console://")
    notifications.add_channel("sms")
    notifications.add_channel("alerts", ConsoleChannel())

    result = await notifications.notify(body="code 42", subject="Code", to="+1555")

    assert result.ok and notifications.outbox == []
    out = capsys.readouterr().out
    assert "[sms] to +1555\nSubject: Code\ncode 42" in out
    assert "[alerts] to +1555" in out


async def test_console_stderr_and_memory_urls(capsys: pytest.CaptureFixture[str]) -> None:
    notifications = NotificationSystem()
    memory = notifications.add_channel("memo", "memory://", kind="sms")
    notifications.add_channel("err", "console://stderr")

    result = await notifications.notify(body="b", user={"phone": "+1"})

    assert result.ok
    assert isinstance(memory, MemoryChannel) and memory.outbox[0].recipient == "+1"
    assert "[err]" in capsys.readouterr().err


async def test_usage_errors_are_raised_not_reported() -> None:
    notifications = NotificationSystem()
    with pytest.raises(ConfigurationError, match="no channels"):
        await notifications.notify(body="x")
    notifications.add_channel("email")
    with pytest.raises(ConfigurationError, match="unknown notification channel 'fax'"):
        await notifications.notify(channels=["fax"], body="x")
    with pytest.raises(TypeError, match="template= or body="):
        await notifications.notify(channels=["email"])
    with pytest.raises(TypeError, match="not both"):
        await notifications.notify(channels=["email"], template="welcome", body="x")
    with pytest.raises(ValueError):
        await notifications.notify(channels=[], body="x")
    with pytest.raises(ValueError):
        notifications.add_channel("", "memory://")
    with pytest.raises(ConfigurationError):
        notifications.add_channel("x", "not a url")
    with pytest.raises(ConfigurationError):
        notifications.add_channel("x", "console://printer")
    with pytest.raises(TypeError):
        notifications.add_channel("x", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NotificationSystem(retry_policy="fast")  # type: ignore[arg-type]


async def test_close_closes_each_channel_once() -> None:
    closed: list[str] = []

    class Closing(MemoryChannel):
        async def close(self) -> None:
            closed.append("x")

    shared = Closing()
    async with NotificationSystem() as notifications:
        notifications.add_channel("a", shared)
        notifications.add_channel("b", shared)
        assert notifications.channels == {"a": shared, "b": shared}
    assert closed == ["x"]


def test_notification_to_dict_is_json_ready() -> None:
    notification = Notification("email", "a@b.c", "S", "B", key="k")
    data = notification.to_dict()
    assert data["channel"] == "email" and data["key"] == "k" and data["html"] is None
    assert data["created_at"].endswith("+00:00")
    assert Notification("x", None, None, "b").id != notification.id


async def test_configuration_problems_inside_a_channel_are_not_retried() -> None:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    misconfigured = Flaky(failures=9, error=ConfigurationError("no API key"))
    notifications.add_channel("chat", misconfigured)

    result = await notifications.notify(body="x")

    assert isinstance(result["chat"].error, ConfigurationError)
    assert result["chat"].attempts == 1 and misconfigured.calls == 1


@pytest.mark.parametrize(
    ("module", "make", "extra"),
    [
        ("aiosmtplib", lambda: EmailChannel("127.0.0.1", 25, sender="a@b.c"), "email"),
        ("aiosmtplib", lambda: "smtp://127.0.0.1:25?from=a@b.c", "email"),
        ("httpx", lambda: WebhookChannel("http://127.0.0.1:9/hook"), "webhook"),
        ("httpx", lambda: "https://example.com/hook", "webhook"),
    ],
)
def test_a_channel_without_its_driver_is_refused_when_added(
    monkeypatch: pytest.MonkeyPatch, module: str, make: Callable[[], Any], extra: str
) -> None:
    """Not at its first message: a channel that could never send fails where it is
    configured, naming the install command (as an apprise channel always did)."""
    import sys

    from pepperpy.event import MissingDependencyError

    monkeypatch.setitem(sys.modules, module, None)
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'pepperpy-event\[{extra}\]'"):
        notifications.add_channel("out", make())
    assert "out" not in notifications.channels


async def test_missing_extras_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pepperpy.event import MissingDependencyError

    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(MissingDependencyError, match=r"pepperpy-event\[templates\]"):
        NotificationSystem().add_template("t", "x")
