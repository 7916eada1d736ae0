"""EventProcessor: the middleware chain, pattern routing and attachment to sources."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventStore,
    MemoryTransport,
    PatternError,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)
from tests.helpers import eventually


async def test_seed_snippet_runs_as_written() -> None:
    updated: list[tuple[str, Any]] = []

    async def update_user(user_id: str, data: Any) -> None:
        updated.append((user_id, data))

    # --- the seed's "Event Processing" snippet, verbatim ---
    processor = EventProcessor()

    @processor.middleware
    async def add_timestamp(event, next_handler):  # type: ignore[no-untyped-def]
        event.metadata["processed_at"] = time.time()
        await next_handler(event)

    @processor.handle("user.*")
    async def process_user_events(event):  # type: ignore[no-untyped-def]
        user_id = event.data["user_id"]
        await update_user(user_id, event.data)

    # --- end of snippet ---
    event = Event("user.updated", {"user_id": "42", "name": "Ann"})
    await processor.process(event)
    assert updated == [("42", {"user_id": "42", "name": "Ann"})]
    assert isinstance(event.metadata["processed_at"], float)


async def test_first_registered_middleware_is_outermost() -> None:
    processor = EventProcessor()
    trail: list[str] = []

    def make(name: str) -> Any:
        async def middleware(event: Event, next_handler: Any) -> None:
            trail.append(f"{name}>")
            await next_handler(event)
            trail.append(f"<{name}")

        return middleware

    processor.middleware(make("a"))
    processor.middleware(make("b"))
    processor.handle("x", lambda event: trail.append("handler"))
    await processor.process(Event("x"))
    assert trail == ["a>", "b>", "handler", "<b", "<a"]


async def test_sync_middleware_and_sync_handlers_work() -> None:
    processor = EventProcessor()
    seen: list[str] = []

    @processor.middleware
    def tag(event: Event, next_handler: Any) -> Any:
        event.metadata["tagged"] = True
        return next_handler(event)

    @processor.handle("a.b")
    def sync_handler(event: Event) -> None:
        seen.append(f"sync {event.metadata['tagged']}")

    @processor.handle("a.*")
    async def async_handler(event: Event) -> None:
        seen.append("async")

    await processor.process(Event("a.b"))
    assert sorted(seen) == ["async", "sync True"]


async def test_middleware_can_stop_the_chain() -> None:
    processor = EventProcessor()
    handled: list[Event] = []

    @processor.middleware
    async def only_even(event: Event, next_handler: Any) -> None:
        if event.data % 2 == 0:
            await next_handler(event)

    processor.handle("n", handled.append)
    for n in range(4):
        await processor.process(Event("n", n))
    assert [e.data for e in handled] == [0, 2]


async def test_patterns_route_events() -> None:
    processor = EventProcessor()
    got: dict[str, list[str]] = {"one": [], "many": [], "exact": []}
    processor.handle("user.*", lambda e: got["one"].append(e.type))
    processor.handle("user.#", lambda e: got["many"].append(e.type))
    processor.handle("user.login", lambda e: got["exact"].append(e.type))
    for kind in ("user.login", "user.login.failed", "user", "order.placed"):
        await processor.process(Event(kind))
    assert got == {
        "one": ["user.login"],
        "many": ["user.login", "user.login.failed", "user"],
        "exact": ["user.login"],
    }
    assert processor.handlers("user.login") != []
    with pytest.raises(PatternError):
        processor.handle("user..x")


async def test_unmatched_events_still_pass_through_middleware() -> None:
    processor = EventProcessor()
    seen: list[str] = []

    @processor.middleware
    async def record(event: Event, next_handler: Any) -> None:
        seen.append(event.type)
        await next_handler(event)

    await processor.process(Event("nobody.listens"))
    assert seen == ["nobody.listens"]


async def test_handler_error_propagates_through_the_chain() -> None:
    processor = EventProcessor()
    observed: list[BaseException] = []

    @processor.middleware
    async def watch(event: Event, next_handler: Any) -> None:
        try:
            await next_handler(event)
        except Exception as exc:
            observed.append(exc)
            raise

    @processor.handle("boom")
    async def fail(event: Event) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await processor.process(Event("boom"))
    assert len(observed) == 1 and isinstance(observed[0], KeyError)


async def test_several_failing_handlers_raise_an_exception_group() -> None:
    processor = EventProcessor()
    ran: list[str] = []

    def fails(exc: Exception) -> Any:
        def handler(event: Event) -> None:
            raise exc

        return handler

    processor.handle("x", fails(ValueError("a")))
    processor.handle("x", fails(KeyError("b")))
    processor.handle("x", lambda e: ran.append("ok"))
    with pytest.raises(ExceptionGroup) as info:
        await processor.process(Event("x"))
    assert {type(e) for e in info.value.exceptions} == {ValueError, KeyError}
    assert ran == ["ok"]


async def test_retry_reruns_only_the_handlers_that_failed() -> None:
    processor = EventProcessor()
    processor.middleware(RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0)))
    calls = {"steady": 0, "flaky": 0}

    @processor.handle("job")
    async def steady(event: Event) -> None:
        calls["steady"] += 1

    @processor.handle("job")
    async def flaky(event: Event) -> None:
        calls["flaky"] += 1
        await asyncio.sleep(0)
        if calls["flaky"] < 3:
            raise ConnectionError("try again")

    await processor.process(Event("job"))
    assert calls == {"steady": 1, "flaky": 3}
    # a new event runs every handler again
    await processor.process(Event("job"))
    assert calls == {"steady": 2, "flaky": 4}


async def test_a_retry_after_a_timeout_skips_the_handlers_that_had_finished() -> None:
    # the timeout cancels the attempt while one handler is still running: the one that had
    # already finished (the card charge) must not run again on the retry
    processor = EventProcessor().use(
        RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0)),
        TimeoutMiddleware(0.05),
    )
    calls = {"charge": 0, "email": 0}
    overran = asyncio.Event()

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        calls["charge"] += 1

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        calls["email"] += 1
        if calls["email"] == 1:
            try:
                await asyncio.sleep(10)
            finally:
                overran.set()

    async with asyncio.timeout(5):
        await processor.process(Event("order.placed"))
    assert overran.is_set()
    assert calls == {"charge": 1, "email": 2}


async def test_a_nested_processor_cannot_mark_outer_handlers_as_done() -> None:
    """The "already succeeded" record belongs to one processor: a processor run from
    inside a handler (its handler numbers are its own) must not touch it."""
    audit = EventProcessor()  # no middleware
    audit.handle("order.*", lambda e: None)
    audit.handle("order.*", lambda e: None)
    main = EventProcessor().use(RetryMiddleware(RetryPolicy.fixed(3, base_delay=0)))
    charged: list[str] = []

    @main.handle("order.*")
    async def forward(event: Event) -> None:
        await audit.process(event)

    @main.handle("order.*")
    async def charge(event: Event) -> None:
        charged.append("try")
        if len(charged) == 1:
            raise ConnectionError("gateway blip")
        charged.append("charged")

    await asyncio.wait_for(main.process(Event("order.placed", {"id": 1})), 5)
    assert charged == ["try", "try", "charged"]


async def test_a_nested_processor_with_middleware_keeps_its_own_record() -> None:
    inner = EventProcessor().use(RetryMiddleware(RetryPolicy.fixed(3, base_delay=0)))
    inner_calls = {"ok": 0, "flaky": 0}

    @inner.handle("job")
    def ok(event: Event) -> None:
        inner_calls["ok"] += 1

    @inner.handle("job")
    def flaky(event: Event) -> None:
        inner_calls["flaky"] += 1
        if inner_calls["flaky"] == 1:
            raise ConnectionError("blip")

    outer = EventProcessor().use(RetryMiddleware(RetryPolicy.fixed(3, base_delay=0)))
    outer_calls = {"forward": 0, "other": 0}

    @outer.handle("job")
    async def forward(event: Event) -> None:
        outer_calls["forward"] += 1
        await inner.process(event)

    @outer.handle("job")
    def other(event: Event) -> None:
        outer_calls["other"] += 1
        if outer_calls["other"] == 1:
            raise ConnectionError("blip")

    await asyncio.wait_for(outer.process(Event("job")), 5)
    assert inner_calls == {"ok": 1, "flaky": 2}
    assert outer_calls == {"forward": 1, "other": 2}


async def test_process_rejects_non_events_and_bad_registrations() -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError):
        await processor.process({"type": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        processor.middleware(42)
    with pytest.raises(TypeError):
        processor.handle("x", 42)  # type: ignore[call-overload]


async def test_remove_handler() -> None:
    processor = EventProcessor()
    seen: list[str] = []

    def handler(event: Event) -> None:
        seen.append(event.type)

    processor.handle("a", handler)
    assert processor.remove_handler("a", handler)
    assert not processor.remove_handler("a", handler)
    await processor.process(Event("a"))
    assert seen == []


def test_registration_needs_no_running_loop() -> None:
    processor = EventProcessor()
    processor.handle("a.*", lambda e: None)
    processor.use(RetryMiddleware(RetryPolicy.NONE))


# -- attaching to sources -------------------------------------------------------------


async def test_attach_to_a_manager() -> None:
    manager = EventManager()
    processor = EventProcessor()
    seen: list[str] = []
    processor.handle("user.*", lambda e: seen.append(e.type))
    attachment = processor.attach(manager, "user.*")
    await manager.emit("user.created", {"id": 1})
    await manager.emit("order.placed", {"id": 2})
    assert seen == ["user.created"]
    assert attachment.running
    await attachment.stop()
    assert not attachment.running
    await attachment.stop()  # idempotent
    await manager.emit("user.deleted", {"id": 1})
    assert seen == ["user.created"]


async def test_a_failure_reaches_the_managers_dead_letters() -> None:
    manager = EventManager()
    processor = EventProcessor()

    @processor.handle("user.*")
    def fail(event: Event) -> None:
        raise RuntimeError("no database")

    processor.attach(manager, "user.*")
    await manager.emit("user.created", {})
    assert len(manager.dead_letters) == 1
    assert isinstance(manager.dead_letters[0].exception, RuntimeError)


async def test_a_processor_with_middleware_beside_another_manager_handler() -> None:
    """The processor's per-call state lives in a context variable: with several
    handlers for the event, the manager must run it in one context from start to end."""
    manager = EventManager()
    processor = EventProcessor()

    @processor.middleware
    async def passthrough(event: Event, next_handler: Any) -> None:
        await next_handler(event)

    done: list[str] = []

    @processor.handle("user.*")
    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        done.append(event.type)

    processor.attach(manager, "user.*")
    manager.on("user.created", lambda e: None)
    await asyncio.wait_for(manager.emit("user.created", {"id": 1}), 3)
    assert done == ["user.created"]
    assert list(manager.dead_letters) == []


async def test_attach_to_a_bus_subscription_with_a_group() -> None:
    bus = EventBus(["orders.*"], retry_policy=RetryPolicy.NONE)
    first, second = EventProcessor(), EventProcessor()
    seen: list[tuple[str, int]] = []
    first.handle("orders.*", lambda e: seen.append(("first", e.data["n"])))
    second.handle("orders.*", lambda e: seen.append(("second", e.data["n"])))
    first.attach(bus, "orders.*", group="billing")
    detach = second.attach(bus, "orders.*", group="billing")
    async with bus:
        for n in range(4):
            await bus.publish("orders.placed", {"n": n})
        assert sorted(n for _, n in seen) == [0, 1, 2, 3]
        assert {who for who, _ in seen} == {"first", "second"}
        await detach.stop()
        assert not detach.running
        seen.clear()
        for n in range(4):
            await bus.publish("orders.placed", {"n": n})
        # the detached member left the group: every later event reaches the other one
        assert sorted(n for who, n in seen if who == "first") == [0, 1, 2, 3]


async def test_stopping_a_bus_attachment_hands_its_group_share_to_a_replacement() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    old, new = EventProcessor(), EventProcessor()
    got_old: list[int] = []
    got_new: list[int] = []
    old.handle("#", lambda e: got_old.append(e.data))
    new.handle("#", lambda e: got_new.append(e.data))
    async with bus:
        attachment = old.attach(bus, "orders.#", group="billing")
        await bus.start()
        await attachment.stop()
        new.attach(bus, "orders.#", group="billing")
        for n in range(10):
            await bus.publish("orders.created", n, key=str(n))
    assert got_old == []
    assert got_new == list(range(10))


async def test_attach_and_stop_cycles_leave_no_bus_subscriptions() -> None:
    bus = EventBus()
    transport = bus.transport
    assert isinstance(transport, MemoryTransport)
    async with bus:
        for _ in range(300):
            attachment = EventProcessor().attach(bus, "x.#")
            await attachment.stop()
            assert not attachment.running
        assert bus._subscriptions == [] and len(transport._index) == 0


async def test_two_attachments_of_one_processor_stop_independently() -> None:
    bus = EventBus()
    processor = EventProcessor()
    seen: list[int] = []
    processor.handle("#", lambda e: seen.append(e.data))
    first = processor.attach(bus, "x.#")
    second = processor.attach(bus, "x.#")
    async with bus:
        await bus.publish("x.y", 1)
        await first.stop()
        await bus.publish("x.y", 2)
        await second.stop()
        await bus.publish("x.y", 3)
    assert seen == [1, 1, 2]


async def test_attach_to_a_store_subscription_follows_live_appends() -> None:
    store = EventStore()
    processor = EventProcessor()
    seen: list[tuple[str, Any]] = []
    processor.handle("user.#", lambda e: seen.append((e.type, e.data["n"])))
    await store.append("user.1", {"type": "user.created", "data": {"n": 0}})
    attachment = processor.attach(store, "user.*", from_position=0)
    await store.append("user.1", {"type": "user.renamed", "data": {"n": 1}})
    await store.append("order.9", {"type": "order.placed", "data": {"n": 2}})
    await eventually(lambda: len(seen) == 2)
    assert seen == [("user.created", 0), ("user.renamed", 1)]
    assert attachment.processed == 2
    assert attachment.last_global_position is not None
    await attachment.stop()
    assert not attachment.running
    await store.append("user.1", {"type": "user.deleted", "data": {"n": 3}})
    await asyncio.sleep(0.05)
    assert len(seen) == 2
    await store.close()


async def test_store_attachment_resumes_from_a_checkpoint() -> None:
    store = EventStore()
    for n in range(5):
        await store.append("s", {"type": "tick", "data": {"n": n}})
    processor = EventProcessor()
    seen: list[int] = []
    processor.handle("tick", lambda e: seen.append(e.data["n"]))
    first = processor.attach(store, from_position=0)
    await eventually(lambda: len(seen) == 5)
    await first.stop()
    checkpoint = first.last_global_position
    assert checkpoint is not None
    await store.append("s", {"type": "tick", "data": {"n": 5}})
    second = processor.attach(store, from_position=checkpoint + 1)
    await eventually(lambda: len(seen) == 6)
    assert seen == [0, 1, 2, 3, 4, 5]
    await second.stop()
    await store.close()


async def test_store_attachment_stops_on_an_unhandled_error() -> None:
    store = EventStore()
    processor = EventProcessor()

    @processor.handle("bad")
    def fail(event: Event) -> None:
        raise ValueError("cannot handle")

    await store.append("s", {"type": "bad", "data": {}})
    attachment = processor.attach(store)
    with pytest.raises(ValueError, match="cannot handle"):
        await attachment.wait()
    assert not attachment.running
    with pytest.raises(ValueError):
        await attachment.stop()
    await store.close()


async def test_run_consumes_any_async_iterable() -> None:
    processor = EventProcessor()
    seen: list[int] = []
    processor.handle("n", lambda e: seen.append(e.data))

    async def source() -> Any:
        for n in range(3):
            yield Event("n", n)

    assert await processor.run(source()) == 3
    assert seen == [0, 1, 2]


async def test_attach_rejects_unknown_sources_and_misplaced_options() -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError):
        processor.attach(object())
    with pytest.raises(TypeError, match="group"):
        processor.attach(EventManager(), "a.*", group="g")
    with pytest.raises(TypeError, match="event store"):
        processor.attach(EventBus(), "a.*", from_position=5)
    store = EventStore()
    with pytest.raises(TypeError, match="group"):
        processor.attach(store, group="g")
    await store.close()
