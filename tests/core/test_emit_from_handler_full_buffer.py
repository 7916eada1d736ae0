"""A handler that awaits ``emit`` on its own manager holds its event's buffer slot while
it waits for another. When every slot is held by such an emit, none is ever given back:
the emit that would complete the deadlock raises ``BufferFullError`` saying so (it used
to wait forever). Emits that only have to wait for a slot an independent emit holds
still wait, and get it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from pepperpy.event import BufferFullError, Event, EventManager
from tests.helpers import LoopThread

#: bounds every wait: on the old code these emits never returned
BOUND = 10.0


def _relaying_refusals(manager: EventManager) -> list[BufferFullError]:
    """Subscribes a handler of ``order.paid`` that emits ``order.shipped`` on ``manager``;
    returns the list of the BufferFullError its emits raised (it catches them)."""
    refused: list[BufferFullError] = []

    async def relay(event: Event) -> None:
        try:
            await manager.emit("order.shipped")
        except BufferFullError as exc:
            refused.append(exc)

    manager.on("order.paid", relay)
    return refused


async def test_a_lone_handler_emitting_into_its_full_buffer_is_refused() -> None:
    manager = EventManager(buffer_size=1)
    refused = _relaying_refusals(manager)
    async with asyncio.timeout(BOUND):
        await manager.emit("order.paid")
    [error] = refused
    assert "would wait forever" in str(error)
    assert "buffer_size=1" in str(error) and "emit_nowait()" in str(error)
    assert manager.in_flight == 0


async def test_the_refusal_is_a_handler_failure_and_the_emit_goes_on() -> None:
    manager = EventManager(buffer_size=1)
    shipped: list[Event] = []

    async def relay(event: Event) -> None:
        await manager.emit("order.shipped")

    manager.on("order.paid", relay)
    manager.on("order.shipped", shipped.append)
    async with asyncio.timeout(BOUND):
        await manager.emit("order.paid")
        [letter] = manager.dead_letters
        assert isinstance(letter.exception, BufferFullError)
        await manager.emit("order.shipped")  # the slot was given back
    assert len(shipped) == 1


@pytest.mark.parametrize("first_step", [True, False])
async def test_a_handler_task_among_several_is_refused_too(first_step: bool) -> None:
    # in its first step (run eagerly on 3.12+, before the dispatch has the Task) or later
    manager = EventManager(buffer_size=1)
    refused: list[str] = []

    async def relay(event: Event) -> None:
        if not first_step:
            await asyncio.sleep(0)
        try:
            await manager.emit("order.shipped")
        except BufferFullError:
            refused.append("relay")

    async def other(event: Event) -> None:
        return None

    manager.on("order.paid", relay)
    manager.on("order.paid", other)
    async with asyncio.timeout(BOUND):
        await manager.emit("order.paid")
    assert refused == ["relay"]


async def test_the_last_of_several_blocked_emits_is_refused_and_frees_the_others() -> None:
    manager = EventManager(buffer_size=2)
    both_in = asyncio.Barrier(2)
    outcomes: list[str] = []

    async def relay(event: Event) -> None:
        await both_in.wait()  # both slots held before either emits
        try:
            await manager.emit("order.shipped", event.data)
            outcomes.append(f"{event.data} shipped")
        except BufferFullError:
            outcomes.append(f"{event.data} refused")

    manager.on("order.paid", relay)
    async with asyncio.timeout(BOUND):
        await asyncio.gather(manager.emit("order.paid", 1), manager.emit("order.paid", 2))
    # one nested emit found every slot held by a blocked emit; the other then got a slot
    assert sorted(o.split()[1] for o in outcomes) == ["refused", "shipped"]


async def test_a_chain_of_nested_emits_holding_every_slot_is_refused() -> None:
    manager = EventManager(buffer_size=2)
    reached: list[str] = []

    async def first(event: Event) -> None:
        await manager.emit("b")  # takes the second slot

    async def second(event: Event) -> None:
        reached.append("b")
        with pytest.raises(BufferFullError):
            await manager.emit("c")  # "a" awaits "b", which awaits this
        reached.append("refused")

    manager.on("a", first)
    manager.on("b", second)
    async with asyncio.timeout(BOUND):
        await manager.emit("a")
    assert reached == ["b", "refused"]


async def test_a_scheduled_delivery_emitting_into_its_full_buffer_is_refused() -> None:
    manager = EventManager(buffer_size=1)
    refused = _relaying_refusals(manager)
    async with asyncio.timeout(BOUND):
        await manager.emit_nowait("order.paid")
    assert len(refused) == 1


async def test_a_nested_emit_waits_for_a_slot_an_independent_emit_holds() -> None:
    manager = EventManager(buffer_size=2)
    release = asyncio.Event()
    holding = asyncio.Event()
    log: list[str] = []

    async def slow(event: Event) -> None:
        holding.set()
        await release.wait()
        log.append("slow done")

    async def relay(event: Event) -> None:
        release.set()  # the other emit will finish and give its slot back
        await manager.emit("order.shipped")
        log.append("relayed")

    async def shipped(event: Event) -> None:
        log.append("shipped")

    manager.on("job.slow", slow)
    manager.on("order.paid", relay)
    manager.on("order.shipped", shipped)
    async with asyncio.timeout(BOUND):
        other = asyncio.create_task(manager.emit("job.slow"))
        await holding.wait()
        await manager.emit("order.paid")
        await other
    assert log == ["slow done", "shipped", "relayed"]
    assert not manager.dead_letters


async def test_a_background_task_a_handler_started_waits_for_the_handlers_slot() -> None:
    # the handler's emit does not await that task: its slot is given back when the
    # handler returns, and the background emit gets it (no false deadlock)
    manager = EventManager(buffer_size=1)
    started = asyncio.Event()
    shipped: list[Event] = []
    background: list[asyncio.Task[Event]] = []

    async def relay(event: Event) -> None:
        background.append(asyncio.create_task(emit_shipped()))
        await started.wait()  # the background emit is waiting for this slot now

    async def emit_shipped() -> Event:
        started.set()
        return await manager.emit("order.shipped")

    manager.on("order.paid", relay)
    manager.on("order.shipped", shipped.append)
    async with asyncio.timeout(BOUND):
        await manager.emit("order.paid")
        await background[0]
    assert len(shipped) == 1
    assert not manager.dead_letters


def test_a_wait_left_on_a_loop_closed_since_blocks_nothing() -> None:
    # a handler's emit waiting on a loop that was then closed (its thread died) leaves
    # its wait behind; the slots were given back, and it must not count as a blocked
    # emit when a later one on another loop waits
    manager = EventManager(buffer_size=2)
    dead = LoopThread()
    reached = threading.Event()
    inner: list[str] = []

    async def relay_there(event: Event) -> None:
        reached.set()
        await manager.emit("there.inner")  # both slots held: it waits, and is left so

    async def relay_here(event: Event) -> None:
        asyncio.get_running_loop().call_soon(release.set)  # the holder will finish
        await manager.emit("here.inner")
        inner.append("here")

    async def hold(event: Event) -> None:
        holding.set()
        await release.wait()

    manager.on("there.outer", relay_there)
    manager.on("here.outer", relay_here)
    manager.on("here.hold", hold)

    async def main() -> None:
        async with asyncio.timeout(BOUND):
            holder = asyncio.create_task(manager.emit("here.hold"))
            await holding.wait()
            dead.submit(manager.emit("there.outer"))
            assert await asyncio.to_thread(reached.wait, BOUND)
            await asyncio.to_thread(dead.kill)
            await manager.emit("here.outer")  # takes the slot the dead loop held
            await holder

    holding = asyncio.Event()
    release = asyncio.Event()
    try:
        asyncio.run(main())
    finally:
        dead.bury()
    assert inner == ["here"]
    assert not manager.dead_letters
