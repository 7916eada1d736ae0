"""Store attachments with a checkpoint: ``processor.attach(store, checkpoint="name")``.

An attachment resumes after the position saved under its name and saves the position of
each event once the processor is done with it (at-least-once): on the memory store (per
store object), SQLite and PostgreSQL, through a stop, a cancellation, a killed process,
a failing handler and a checkpoint store that fails for a while.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    ConcurrencyError,
    ConfigurationError,
    DeadLetterMiddleware,
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventStore,
)
from tests.conftest import fresh_postgres_database, unique_name
from tests.helpers import eventually, settle
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(scope="module")
def database(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL database for the module (tests work in schemas of their own)."""
    with fresh_postgres_database(postgres_server, prefix="pepperpy_processor_cp") as url:
        yield url


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store's URL: memory, an SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    database = request.getfixturevalue("database")
    return f"{database}?schema={unique_name('s')}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    async with EventStore(store_url) as opened:
        yield opened


def ticks(count: int, first: int = 0) -> list[Event]:
    return [Event("tick", {"n": n}) for n in range(first, first + count)]


def recorder(processor: EventProcessor, pattern: str = "tick") -> list[int]:
    seen: list[int] = []
    processor.handle(pattern, lambda event: seen.append(event.data["n"]))
    return seen


# -- resuming ---------------------------------------------------------------------------


async def test_a_new_attachment_with_the_checkpoint_gets_only_what_is_new(
    store: EventStore,
) -> None:
    await store.append("s", ticks(5))
    processor = EventProcessor()
    seen = recorder(processor)
    first = processor.attach(store, checkpoint="mails")
    await eventually(lambda: len(seen) == 5)
    await first.stop()
    assert first.checkpoint_position == 4  # saved as it stopped
    await store.append("s", ticks(3, first=5))

    second = processor.attach(store, checkpoint="mails")
    await eventually(lambda: len(seen) == 8)
    await settle()
    await second.stop()
    assert seen == [0, 1, 2, 3, 4, 5, 6, 7]  # nothing of the first run again
    assert second.checkpoint_position == 7

    other = EventProcessor()  # another processor, the same name: the same checkpoint
    again = recorder(other)
    third = other.attach(store, checkpoint="mails")
    await settle()
    await third.stop()
    assert again == [] and third.checkpoint_position == 7


async def test_a_checkpoint_is_saved_every_n_events_and_after_a_quiet_interval(
    store: EventStore,
) -> None:
    processor = EventProcessor()
    seen = recorder(processor)
    counted = processor.attach(
        store, checkpoint="count", checkpoint_every=2, checkpoint_interval=3600
    )
    await store.append("s", ticks(5))
    await eventually(lambda: len(seen) == 5)
    await settle()
    assert counted.checkpoint_position == 3  # after the 2nd and the 4th; the 5th waits
    await counted.stop()
    assert counted.checkpoint_position == 4

    timed = processor.attach(store, checkpoint="time", checkpoint_interval=0.1)
    await eventually(lambda: timed.checkpoint_position == 4)  # idle: no 100 events came
    await store.append("s", ticks(1, first=5))
    await eventually(lambda: timed.checkpoint_position == 5)
    assert timed.running
    await timed.stop()


async def test_a_checkpoint_wins_over_an_earlier_from_position_not_a_later_one(
    store: EventStore,
) -> None:
    await store.append("s", ticks(10))
    processor = EventProcessor()
    seen = recorder(processor)
    first = processor.attach(store, checkpoint="c", from_position=3)  # no checkpoint yet
    await eventually(lambda: len(seen) == 7)
    await first.stop()
    assert seen == [3, 4, 5, 6, 7, 8, 9]
    await store.append("s", ticks(5, first=10))

    seen.clear()
    earlier = processor.attach(store, checkpoint="c", from_position=0)
    await eventually(lambda: len(seen) == 5)
    await earlier.stop()
    assert seen == [10, 11, 12, 13, 14]  # after the checkpoint, not from 0

    await store.append("s", ticks(5, first=15))
    seen.clear()
    later = processor.attach(store, checkpoint="c", from_position=18)
    await eventually(lambda: len(seen) == 2)
    await settle()
    await later.stop()
    assert seen == [18, 19] and later.checkpoint_position == 19


async def test_filters_of_an_attachment_are_kept_with_its_checkpoint(
    store: EventStore,
) -> None:
    await store.append("o.1", [Event("order.placed", {"n": 0}), Event("order.paid", {"n": 1})])
    processor = EventProcessor()
    seen = recorder(processor, "order.#")
    first = processor.attach(store, checkpoint="orders", types=["order.placed", "order.paid"])
    await eventually(lambda: len(seen) == 2)
    await first.stop()

    same = processor.attach(store, checkpoint="orders", types=["order.paid", "order.placed"])
    await settle()
    assert same.running  # the same filter, in another order
    await same.stop()

    wider = processor.attach(store, "order.*", checkpoint="orders")
    with pytest.raises(ConfigurationError) as caught:
        await wider.wait()
    message = str(caught.value)
    assert "checkpoint 'orders' (at global position 1) was saved by an attachment" in message
    assert "types ['order.paid', 'order.placed']" in message and "['order.*']" in message
    assert "from_position=2" in message and "reset_checkpoint" in message
    assert seen == [0, 1]  # nothing ran

    assert await processor.reset_checkpoint(store, "orders")
    assert not await processor.reset_checkpoint(store, "orders")
    fresh = processor.attach(store, "order.*", checkpoint="orders")
    await eventually(lambda: len(seen) == 4)
    await fresh.stop()
    assert seen == [0, 1, 0, 1]


async def test_checkpoints_given_elsewhere_are_used_and_not_closed(
    store: EventStore, tmp_path: Path
) -> None:
    from pepperpy.event._checkpoints import SQLiteCheckpointStore

    await store.append("s", ticks(3))
    checkpoints = SQLiteCheckpointStore(tmp_path / "elsewhere.db")
    try:
        processor = EventProcessor()
        seen = recorder(processor)
        first = processor.attach(store, checkpoint="c", checkpoints=checkpoints)
        await eventually(lambda: len(seen) == 3)
        await first.stop()
        saved = await checkpoints.load("processor:c")  # still open: the caller's to close
        assert saved is not None and saved.position == 2
        second = processor.attach(store, checkpoint="c", checkpoints=checkpoints)
        await settle()
        await second.stop()
        assert seen == [0, 1, 2]
    finally:
        await checkpoints.close()


# -- stopping early ------------------------------------------------------------------------


async def test_a_cancelled_attachment_saves_what_it_finished_and_not_the_event_in_hand(
    store: EventStore,
) -> None:
    await store.append("s", ticks(6))
    processor = EventProcessor()
    seen: list[int] = []
    stuck = asyncio.Event()

    @processor.handle("tick")
    async def handle(event: Event) -> None:
        if event.data["n"] == 3:
            stuck.set()
            await asyncio.Event().wait()  # until cancelled
        seen.append(event.data["n"])

    attachment = processor.attach(store, checkpoint="c", checkpoint_interval=3600)
    waiter = asyncio.ensure_future(attachment.wait())
    await asyncio.wait_for(stuck.wait(), 10)
    waiter.cancel()  # cancels the consumer too, as a shutdown does
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not attachment.running
    assert seen == [0, 1, 2] and attachment.checkpoint_position == 2

    processor.remove_handler("tick", handle)
    again = recorder(processor)
    resumed = processor.attach(store, checkpoint="c")
    await eventually(lambda: len(again) == 3)
    await resumed.stop()
    assert again == [3, 4, 5]  # the event in hand again, nothing skipped


async def test_an_attachment_stopped_before_it_loaded_its_checkpoint_processes_nothing(
    store: EventStore,
) -> None:
    await store.append("s", ticks(3))
    processor = EventProcessor()
    seen = recorder(processor)
    first = processor.attach(store, checkpoint="c", from_position=1)
    await eventually(lambda: len(seen) == 2)
    await first.stop()
    await store.append("s", ticks(2, first=3))
    for _ in range(3):
        early = processor.attach(store, checkpoint="c")
        await early.stop()  # before its task has run at all
        assert not early.running
    await settle()
    assert seen == [1, 2]
    resumed = processor.attach(store, checkpoint="c")
    await eventually(lambda: len(seen) == 4)
    await resumed.stop()
    assert seen == [1, 2, 3, 4]


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pepperpy.event import EventProcessor, EventStore

    async def main():
        store = EventStore(sys.argv[1])
        processor = EventProcessor()
        out = open(sys.argv[2], "a")

        @processor.handle("tick")
        async def handle(event):
            out.write(f"{event.data['n']}\\n")
            out.flush()
            os.fsync(out.fileno())
            await asyncio.sleep(0.005)

        attachment = processor.attach(
            store, checkpoint="crash", checkpoint_every=10, checkpoint_interval=3600
        )
        await attachment.wait()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_a_killed_process_resumes_within_the_unsaved_window(
    store: EventStore, store_url: str, tmp_path: Path
) -> None:
    """SIGKILL: no save on the way out. The next attachment gets the events handled
    since the last save again (at most checkpoint_every, plus the one in hand), and
    skips nothing."""
    total = 200
    await store.append("s", ticks(total))
    log = tmp_path / "handled.txt"
    log.touch()
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, str(log)])
    try:
        await eventually(lambda: len(log.read_text().split()) >= 45, timeout=30)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    before = [int(n) for n in log.read_text().split()]
    assert before == list(range(len(before))) and len(before) < total

    processor = EventProcessor()
    after = recorder(processor)
    resumed = processor.attach(store, checkpoint="crash", checkpoint_every=10)
    await eventually(lambda: after[-1:] == [total - 1], timeout=30)
    await resumed.stop()
    start = after[0]
    assert after == list(range(start, total))  # in order, nothing skipped
    again = len(before) - start
    assert 0 <= again <= 10 + 1, (len(before), start)
    assert start >= 30  # saves were made while the child ran


# -- failures ------------------------------------------------------------------------------


async def test_a_failed_event_stops_the_attachment_before_its_checkpoint_passes_it(
    store: EventStore,
) -> None:
    await store.append("s", ticks(5))
    processor = EventProcessor()
    seen: list[int] = []
    broken = True

    @processor.handle("tick")
    def handle(event: Event) -> None:
        if event.data["n"] == 2 and broken:
            raise ValueError("mail server said no")
        seen.append(event.data["n"])

    attachment = processor.attach(store, checkpoint="c", checkpoint_every=1)
    with pytest.raises(ValueError, match="mail server said no"):
        await attachment.wait()
    assert seen == [0, 1] and attachment.checkpoint_position == 1

    broken = False
    resumed = processor.attach(store, checkpoint="c")
    await eventually(lambda: len(seen) == 5)
    await resumed.stop()
    assert seen == [0, 1, 2, 3, 4]


async def test_a_dead_lettered_event_is_passed_by_the_checkpoint(store: EventStore) -> None:
    await store.append("s", ticks(4))
    letters = DeadLetterMiddleware()
    processor = EventProcessor().use(letters)
    seen: list[int] = []

    @processor.handle("tick")
    def handle(event: Event) -> None:
        if event.data["n"] == 1:
            raise ValueError("cannot")
        seen.append(event.data["n"])

    attachment = processor.attach(store, checkpoint="c")
    await eventually(lambda: len(seen) == 3)
    await attachment.stop()
    assert [letter.event.data["n"] for letter in letters.dead_letters] == [1]
    assert attachment.checkpoint_position == 3

    resumed = processor.attach(store, checkpoint="c")
    await settle()
    await resumed.stop()
    assert seen == [0, 2, 3] and len(letters.dead_letters) == 1


async def test_two_attachments_sharing_a_checkpoint_name_are_stopped_at_the_second_save(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    processor = EventProcessor()
    recorder(processor)
    first = processor.attach(store, checkpoint="shared", checkpoint_every=1)
    second = processor.attach(store, checkpoint="shared", checkpoint_every=1)
    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        # one event is enough once both have loaded; should one load after the other
        # saved, it resumes from there, and the next event's saves collide
        for n in range(50):
            await store.append("s", ticks(1, first=n))
            await settle(0.1)
            if not (first.running and second.running):
                break
    loser, winner = (first, second) if not first.running else (second, first)
    with pytest.raises(ConcurrencyError) as caught:
        await loser.wait()
    assert "checkpoint 'shared' was moved by another writer" in "\n".join(
        getattr(caught.value, "__notes__", [])
    )
    assert winner.running
    await winner.stop()
    assert winner.checkpoint_position == winner.last_global_position
    assert "processor stopped: checkpoint 'shared'" in caplog.text


# -- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "problem"),
    [
        ("", ConfigurationError, "a checkpoint name must be a non-empty str, got ''"),
        (5, TypeError, "a checkpoint name must be a non-empty str, got 5"),
        ("a\x00b", ConfigurationError, "a checkpoint name 'a\\x00b' contains"),
        ("mails-\udcff", ConfigurationError, "contains a lone surrogate"),
    ],
)
async def test_a_bad_checkpoint_name_is_refused_when_attaching(
    name: Any, error: type[Exception], problem: str
) -> None:
    async with EventStore() as store:
        processor = EventProcessor()
        with pytest.raises(error) as caught:
            processor.attach(store, checkpoint=name)
        assert problem in str(caught.value)
        with pytest.raises(error) as caught:
            await processor.reset_checkpoint(store, name)
        assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("options", "error", "problem"),
    [
        ({"checkpoint_every": 0}, ConfigurationError, "checkpoint_every must be an int >= 1"),
        ({"checkpoint_every": True}, TypeError, "checkpoint_every must be an int"),
        ({"checkpoint_interval": 0}, ConfigurationError, "checkpoint_interval must be a finite"),
        ({"checkpoint_interval": float("nan")}, ConfigurationError, "checkpoint_interval"),
        ({"checkpoint_interval": True}, TypeError, "checkpoint_interval"),
        ({"checkpoint_interval": "1"}, TypeError, "checkpoint_interval"),
        ({"checkpoints": 5}, TypeError, "checkpoints must be a CheckpointStore, a URL or None"),
        ({"checkpoints": "redis://x"}, ConfigurationError, "no checkpoint store for"),
    ],
)
async def test_bad_checkpoint_options_are_refused_when_attaching(
    options: dict[str, Any], error: type[Exception], problem: str
) -> None:
    async with EventStore() as store:
        with pytest.raises(error, match=problem):
            EventProcessor().attach(store, checkpoint="c", **options)


async def test_checkpoint_options_apply_to_a_store_with_a_checkpoint_only() -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError, match="apply to an event store only"):
        processor.attach(EventManager(), "a.*", checkpoint="c")
    with pytest.raises(TypeError, match="apply to an event store only"):
        processor.attach(EventBus(), "a.*", checkpoints="memory://")
    async with EventStore() as store:
        for options in ({"checkpoint_every": 5}, {"checkpoint_interval": 2}, {"checkpoints": "x"}):
            with pytest.raises(TypeError, match="apply with checkpoint= only"):
                processor.attach(store, **options)


async def test_a_read_only_checkpoint_store_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as writable:
        await writable.append("s", ticks(2))
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:
        processor = EventProcessor()
        seen = recorder(processor)
        with pytest.raises(ConfigurationError) as caught:
            processor.attach(store, checkpoint="c")
        assert "checkpoint 'c' cannot be saved" in str(caught.value)
        assert "(mode=ro) is open read-only, so nothing was attached" in str(caught.value)
        await settle()
        assert seen == []


# -- a checkpoint store that fails for a while (PostgreSQL through a fault proxy) ---------


@pytest.fixture
async def proxy() -> AsyncIterator[PgFaultProxy]:
    async with PgFaultProxy() as started:
        yield started


@pytest.fixture
def schema_url(database: str) -> str:
    return f"{database}?schema={unique_name('s')}"


def lose_reply(proxy: PgFaultProxy, reply: bytes, marked_by: bytes) -> list[Link]:
    """Reset the first connection that sent ``marked_by`` and then receives ``reply``: the
    statement ran, the client never hears of it."""
    fired: list[Link] = []

    def client(link: Link, data: bytes) -> None:
        if marked_by in data:
            link.marks.add("marked")

    def server(link: Link, data: bytes) -> Any:
        if not fired and reply in data and "marked" in link.marks:
            fired.append(link)
            return "drop"
        return None

    proxy.on_client = client
    proxy.on_server = server
    return fired


async def until(condition: Callable[[], bool]) -> None:
    await eventually(condition, timeout=30)


async def test_saves_that_fail_for_a_while_are_ridden_out(
    proxy: PgFaultProxy, schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = proxied(schema_url, proxy.port, command_timeout=1, connect_timeout=1)
    async with EventStore(schema_url) as store:
        processor = EventProcessor()
        seen = recorder(processor)
        attachment = processor.attach(
            store, checkpoint="c", checkpoints=checkpoints, checkpoint_every=1
        )
        await store.append("s", ticks(2))
        await until(lambda: attachment.checkpoint_position == 1)
        with caplog.at_level(logging.INFO, "pepperpy.event.processor"):
            proxy.refuse()
            proxy.drop()
            await store.append("s", ticks(3, first=2))
            await until(lambda: "saving checkpoint 'c' failed" in caplog.text)
            await until(lambda: len(seen) == 5)
            assert attachment.running and attachment.checkpoint_position == 1
            proxy.heal()
            await until(lambda: attachment.checkpoint_position == 4)
            await until(lambda: "checkpoint 'c' saved again, at global position 4" in caplog.text)
        await attachment.stop()
        resumed = processor.attach(store, checkpoint="c", checkpoints=checkpoints)
        await settle()
        await resumed.stop()
        assert seen == [0, 1, 2, 3, 4]


async def test_a_save_whose_answer_was_lost_is_read_back_and_the_attachment_goes_on(
    proxy: PgFaultProxy, schema_url: str
) -> None:
    checkpoints = proxied(schema_url, proxy.port)
    async with EventStore(schema_url) as store:
        processor = EventProcessor()
        seen = recorder(processor)
        attachment = processor.attach(
            store, checkpoint="c", checkpoints=checkpoints, checkpoint_every=1
        )
        await store.append("s", ticks(1))
        await until(lambda: attachment.checkpoint_position == 0)
        fired = lose_reply(proxy, b"UPDATE 1", marked_by=b"pepperpy_checkpoints")
        await store.append("s", ticks(1, first=1))
        await until(lambda: bool(fired))
        await store.append("s", ticks(3, first=2))
        await until(lambda: attachment.checkpoint_position == 4)
        assert attachment.running  # no ConcurrencyError against its own lost save
        await attachment.stop()
        assert seen == [0, 1, 2, 3, 4]
