"""``append_streams`` in the store conformance suite: atomic appends to several streams.

:class:`MultiConformance` is mixed into :class:`~tests.store.conformance.StoreConformance`,
so every backend runs it; :func:`run_transfers` is shared with the tests that run it over
several stores on one database.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pepperpy.event import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    Event,
    EventStore,
    StreamDeletedError,
    ValidationError,
)
from tests.helpers import eventually

MakeStore = Callable[[], EventStore]

ACCOUNTS = [f"account.{n}" for n in range(4)]
OPENING = 1000


def moved(amount: int) -> dict[str, Any]:
    return {"type": "money.moved", "data": {"amount": amount}}


async def run_transfers(stores: Sequence[EventStore], workers: int = 8, rounds: int = 15) -> None:
    """Workers move money between four accounts with ``append_streams`` (expected versions
    read first, retried on ``ConcurrencyError``) over ``stores`` (which share one log)
    while a subscriber follows; then check what the brief promises: the total is
    conserved, each stream's positions are contiguous, the subscriber saw every event
    once, in global order, and each transfer's two events next to each other."""
    first = stores[0]
    opened = await first.append_streams(
        {account: moved(OPENING) for account in ACCOUNTS},
        expected_versions=dict.fromkeys(ACCOUNTS, NO_STREAM),
    )
    start = next(iter(opened.values())).global_position
    seen: list[Event] = []

    async def follow() -> None:
        async for event in stores[-1].subscribe(start, streams="account.*"):
            seen.append(event)

    follower = asyncio.create_task(follow())
    conflicts = 0

    async def worker(number: int) -> None:
        nonlocal conflicts
        store = stores[number % len(stores)]
        chance = random.Random(number)
        for _ in range(rounds):
            source, target = chance.sample(ACCOUNTS, 2)
            amount = chance.randint(1, 20)
            while True:
                versions = {name: await store.stream_version(name) for name in (source, target)}
                try:
                    await store.append_streams(
                        {source: moved(-amount), target: moved(amount)},
                        expected_versions=versions,  # type: ignore[arg-type]
                    )
                    break
                except ConcurrencyError:
                    conflicts += 1

    await asyncio.gather(*(worker(number) for number in range(workers)))
    wanted = len(ACCOUNTS) + 2 * workers * rounds
    await eventually(lambda: len(seen) >= wanted, timeout=30)
    await asyncio.sleep(0.05)
    for store in stores:
        await store.close()
    await asyncio.wait_for(follower, 10)
    assert len(seen) == wanted
    positions = [event.global_position for event in seen]
    assert positions == sorted(set(positions))
    assert sum(event.data["amount"] for event in seen) == OPENING * len(ACCOUNTS)
    for account in ACCOUNTS:
        mine = [event.position for event in seen if event.stream == account]
        assert mine == list(range(len(mine)))
    transfers = seen[len(ACCOUNTS) :]
    for debit, credit in zip(transfers[::2], transfers[1::2], strict=True):
        # one call's events are consecutive in the log, its streams in the call's order
        assert credit.global_position == debit.global_position + 1
        assert debit.data["amount"] == -credit.data["amount"] < 0


class MultiConformance:
    """``append_streams`` on one backend (the suite gives ``store`` and ``make_store``)."""

    async def test_append_streams_writes_every_stream_in_order(self, store: EventStore) -> None:
        await store.append("other.1", {"type": "t"})
        results = await store.append_streams(
            {
                "account.2": [moved(-5), moved(-1)],
                "account.1": moved(6),
                "ledger.1": Event("entry", {"n": 1}),
            },
        )
        assert list(results) == ["account.2", "account.1", "ledger.1"]
        assert results == {
            "account.2": AppendResult(1, 2),
            "account.1": AppendResult(0, 3),
            "ledger.1": AppendResult(0, 4),
        }
        log = await store.read_all()
        assert [(e.stream, e.position, e.global_position) for e in log] == [
            ("other.1", 0, 0),
            ("account.2", 0, 1),
            ("account.2", 1, 2),
            ("account.1", 0, 3),
            ("ledger.1", 0, 4),
        ]
        again = await store.append_streams(
            {"account.1": moved(1), "account.2": moved(2)},
            expected_versions={"account.1": 0, "account.2": STREAM_EXISTS},
        )
        assert again == {"account.1": AppendResult(1, 5), "account.2": AppendResult(2, 6)}

    async def test_a_conflict_on_one_stream_writes_nothing_on_any(self, store: EventStore) -> None:
        await store.append("account.1", moved(10))
        await store.append("account.2", [moved(1), moved(2)])
        head = await store.head()
        cases: list[tuple[dict[str, Any], type[Exception]]] = [
            ({"account.1": 0, "account.2": 0}, ConcurrencyError),
            ({"account.1": 3, "account.2": 1}, ConcurrencyError),
            ({"account.1": NO_STREAM}, ConcurrencyError),
            ({"account.3": STREAM_EXISTS}, ConcurrencyError),
        ]
        for expected, error in cases:
            with pytest.raises(error) as caught:
                await store.append_streams(
                    {"account.1": moved(-1), "account.2": moved(1), "account.3": moved(0)},
                    expected_versions=expected,
                )
            assert await store.head() == head, expected
        assert await store.stream_version("account.3") is None
        # the error names the stream that failed, as append's does
        with pytest.raises(ConcurrencyError) as caught:
            await store.append_streams(
                {"account.1": moved(-1), "account.2": moved(1)},
                expected_versions={"account.1": 0, "account.2": 0},
            )
        assert (caught.value.stream, caught.value.expected, caught.value.actual) == (
            "account.2",
            0,
            1,
        )

    async def test_a_retry_returns_the_same_results_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        events = {
            "account.1": [Event("money.moved", {"amount": -3})],
            "account.2": [Event("money.moved", {"amount": 3}), Event("note", {"n": 1})],
        }
        expected: dict[str, Any] = {"account.1": NO_STREAM, "account.2": NO_STREAM}
        first = await store.append_streams(events, expected_versions=expected)
        await store.append("other.1", {"type": "t"})
        head = await store.head()
        again = await store.append_streams(events, expected_versions=expected)
        assert again == first
        assert await store.head() == head
        # a stream whose ids are all stored is a retry; a new stream with it is written
        mixed = await store.append_streams(
            {"account.2": events["account.2"], "account.3": Event("money.moved", {"amount": 0})}
        )
        assert mixed["account.2"] == first["account.2"]
        assert head is not None
        assert mixed["account.3"] == AppendResult(0, head + 1)

    async def test_deleted_streams_need_no_stream_and_refuse_the_whole_call(
        self, store: EventStore
    ) -> None:
        await store.append_streams({"account.1": moved(1), "account.2": moved(2)})
        await store.delete_stream("account.1")
        head = await store.head()
        for expected in (ANY, STREAM_EXISTS, 0):
            with pytest.raises(StreamDeletedError, match="account.1"):
                await store.append_streams(
                    {"account.2": moved(1), "account.1": moved(1)},
                    expected_versions={"account.1": expected},
                )
        assert await store.head() == head
        results = await store.append_streams(
            {"account.2": moved(1), "account.1": moved(5)},
            expected_versions={"account.1": NO_STREAM, "account.2": 0},
        )
        assert results["account.1"].next_expected_version == 1  # positions go on
        assert [e.data["amount"] for e in await store.get_stream("account.1")] == [5]

    @pytest.mark.parametrize(
        ("events", "expected", "error", "message"),
        [
            ({}, None, ValueError, "at least one stream"),
            ({"a.1": [], "b.1": moved(1)}, None, ValueError, "no events for stream 'a.1'"),
            ({"a.1": moved(1)}, {"b.1": 0}, ValueError, "expected_versions names 'b.1'"),
            ([("a.1", moved(1))], None, TypeError, "a mapping of stream name"),
            ({"a.1": moved(1)}, [("a.1", 0)], TypeError, "expected_versions must be a mapping"),
            ({1: moved(1)}, None, TypeError, "stream name must be a str"),
            ({"a.1": moved(1)}, {"a.1": "0"}, TypeError, "expected_version must be"),
            ({"a.1": moved(1)}, {"a.1": -1}, ValueError, "expected_version must be"),
            ({"a.*": moved(1)}, None, ValueError, "stream name"),
            ({"a.1": moved(1), "b.1": {"data": 1}}, None, ValueError, "type"),
        ],
    )
    async def test_bad_arguments_are_refused_and_nothing_written(
        self,
        store: EventStore,
        events: Any,
        expected: Any,
        error: type[Exception],
        message: str,
    ) -> None:
        with pytest.raises(error, match=message):
            await store.append_streams(events, expected_versions=expected)
        assert await store.head() is None

    async def test_a_bad_event_is_named_with_its_stream(self, store: EventStore) -> None:
        with pytest.raises(ValidationError) as caught:
            await store.append_streams({"a.1": moved(1), "b.1": [moved(1), {"data": 1}]})
        assert caught.value.errors[0].path == "$[1].type"
        assert "in the events for stream 'b.1' (nothing was written)" in caught.value.__notes__
        assert await store.head() is None

    async def test_in_one_group_a_failing_call_fails_alone(self, store: EventStore) -> None:
        await store.append_streams({"account.1": moved(1), "account.2": moved(1)})
        outcomes = await asyncio.gather(
            store.append("single.1", {"type": "t"}),
            store.append_streams(
                {"account.1": moved(-1), "account.2": moved(1)},
                expected_versions={"account.1": 0, "account.2": 7},
            ),
            store.append_streams(
                {"account.1": moved(-2), "account.3": moved(2)},
                expected_versions={"account.1": 0, "account.3": NO_STREAM},
            ),
            store.append_streams(  # loses to the one before: account.1 is at 1 now
                {"account.1": moved(-4), "account.2": moved(4)},
                expected_versions={"account.1": 0},
            ),
            store.append("single.2", {"type": "t"}),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], AppendResult)
        assert isinstance(outcomes[1], ConcurrencyError) and outcomes[1].stream == "account.2"
        assert isinstance(outcomes[2], dict)
        assert isinstance(outcomes[3], ConcurrencyError) and outcomes[3].stream == "account.1"
        assert isinstance(outcomes[4], AppendResult)
        amounts = {
            name: [e.data["amount"] for e in await store.get_stream(name)]
            for name in ("account.1", "account.2", "account.3")
        }
        assert amounts == {"account.1": [1, -2], "account.2": [1], "account.3": [2]}
        log = await store.read_all()
        assert [e.global_position for e in log] == list(range(len(log)))

    async def test_a_call_next_to_a_delete_and_a_snapshot_in_one_group(
        self, store: EventStore
    ) -> None:
        await store.append_streams({"account.1": moved(1), "account.2": moved(1)})
        was_deleted, refused, snapshot, restarted = await asyncio.gather(
            store.delete_stream("account.1"),
            store.append_streams({"account.2": moved(2), "account.1": moved(-2)}),
            store.save_snapshot("account.2", {"balance": 1}, 0),
            store.append_streams(
                {"account.2": moved(3), "account.1": moved(-3)},
                expected_versions={"account.1": NO_STREAM, "account.2": 0},
            ),
            return_exceptions=True,
        )
        assert was_deleted is True
        assert isinstance(refused, StreamDeletedError)  # it came after the delete
        assert snapshot is None
        assert isinstance(restarted, dict)
        assert [e.data["amount"] for e in await store.get_stream("account.1")] == [-3]
        assert [e.data["amount"] for e in await store.get_stream("account.2")] == [1, 3]
        assert [e.global_position for e in await store.read_all()] == [1, 2, 3]

    async def test_transfers_under_contention_conserve_the_total(
        self, make_store: MakeStore
    ) -> None:
        await run_transfers([make_store()])
