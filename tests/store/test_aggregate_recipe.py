"""The aggregate recipe of docs/store.md ("Aggregates: a recipe") on every backend.

The recipe's code is taken from the doc itself (all of its block but the last line,
``asyncio.run(main())``), so what runs here is what readers copy; tests/store/test_docs.py
runs the whole block, ``main()`` included, on the memory store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConcurrencyError, Event, EventStore, ValidationError
from tests.conftest import unique_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "store.md"
SECTION = "## Aggregates: a recipe"


def _recipe() -> dict[str, Any]:
    text = DOC.read_text()
    assert SECTION in text, f"docs/store.md has no section {SECTION!r}"
    block = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, text.index(SECTION))
    assert block is not None, f"{SECTION!r} has no python block"
    code, last = block.group(1).rstrip().rsplit("\n", 1)
    assert last == "asyncio.run(main())", f"the recipe's block ends with {last!r}"
    # blank lines up front, so that a traceback names the doc's own line
    code = "\n" * text.count("\n", 0, block.start(1)) + code
    namespace: dict[str, Any] = {"__name__": "aggregate_recipe"}
    exec(compile(code, str(DOC), "exec", dont_inherit=True), namespace)
    return namespace


RECIPE = _recipe()
BankAccount = RECIPE["BankAccount"]
AccountRepository = RECIPE["AccountRepository"]
InsufficientFunds = RECIPE["InsufficientFunds"]
run_command: Callable[..., Any] = RECIPE["run_command"]
SNAPSHOT_EVERY: int = RECIPE["SNAPSHOT_EVERY"]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    direct: str = request.getfixturevalue("direct")  # a schema of its own: conftest.py
    return direct


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    async with EventStore(store_url) as opened:
        RECIPE["register_upcasters"](opened)
        yield opened


@pytest.fixture
def account_id() -> str:
    return unique_name("acc")


def stream_of(account_id: str) -> str:
    return f"account.{account_id}"


async def replayed(store: EventStore, account_id: str, until: int | None = None) -> Any:
    """The account folded from its events (up to position ``until``), without snapshots."""
    account = BankAccount(account_id)
    events = await store.get_stream(stream_of(account_id))
    for event in events if until is None else events[: until + 1]:
        account.apply(event)
        account.version = event.position
    return account


async def open_with(repository: Any, account_id: str, balance: int) -> None:
    await run_command(repository, account_id, lambda account: account.open("Ada"))
    await run_command(repository, account_id, lambda account: account.deposit(balance))


class GatedRepository(AccountRepository):  # type: ignore[misc, valid-type]
    """The recipe's repository, whose first ``writers`` loads wait for each other.

    So that many writers load the same version of the account before any of them saves,
    on every backend: all but one must then meet a ConcurrencyError.
    """

    def __init__(self, store: EventStore, writers: int) -> None:
        super().__init__(store)
        self.gated = writers
        self.barrier = asyncio.Barrier(writers)

    async def load(self, account_id: str) -> Any:
        account = await super().load(account_id)
        if self.gated > 0:
            self.gated -= 1
            await self.barrier.wait()
        return account


def withdrawal(calls: dict[str, int], writer: str, amount: int) -> Callable[[Any], None]:
    """A command withdrawing ``amount``, counting its runs in ``calls[writer]``."""

    def command(account: Any) -> None:
        calls[writer] += 1
        account.withdraw(amount)

    return command


async def test_load_starts_from_the_snapshot_and_reads_the_events_after_it(
    store: EventStore, account_id: str
) -> None:
    repository = AccountRepository(store)
    await open_with(repository, account_id, 10)
    for amount in (20, 30, 40, 50):
        await run_command(repository, account_id, lambda account, n=amount: account.deposit(n))
    await run_command(repository, account_id, lambda account: account.withdraw(5))
    # positions 0..6: a snapshot each time the stream reached a multiple of SNAPSHOT_EVERY
    assert SNAPSHOT_EVERY <= 7
    snapshot = await store.load_snapshot(stream_of(account_id))
    assert snapshot is not None
    assert snapshot.version == 7 // SNAPSHOT_EVERY * SNAPSHOT_EVERY - 1
    at_snapshot = await replayed(store, account_id, until=snapshot.version)
    assert snapshot.state["balance"] == at_snapshot.balance

    account = await repository.load(account_id)
    full = await replayed(store, account_id)
    assert (account.is_open, account.balance, account.version) == (True, 145, 6)
    assert (full.is_open, full.balance, full.version) == (True, 145, 6)

    # with a snapshot saying 1000 at that version, load() starts from it and adds the
    # events after it only (none counted twice)
    state = {**snapshot.state, "balance": 1000}
    await store.save_snapshot(stream_of(account_id), state, snapshot.version)
    account = await repository.load(account_id)
    assert (account.balance, account.version) == (1000 + 145 - at_snapshot.balance, 6)

    # a snapshot of another schema is ignored: the events alone rebuild the account
    stale = {**state, "schema": RECIPE["SNAPSHOT_SCHEMA"] + 1}
    await store.save_snapshot(stream_of(account_id), stale, snapshot.version)
    account = await repository.load(account_id)
    assert (account.balance, account.version) == (145, 6)


async def append_as_release_1(store: EventStore, stream: str, events: list[Event]) -> None:
    """Write ``events`` as release 1 did: through a store with no upcasters (``store``
    has them, and refuses a version-1 deposit). ``memory://`` keeps its data in the
    backend object: there it is a second store over that object, left open (closing it
    would close the backend under ``store``)."""
    if store.url == "memory://":
        await EventStore(store.backend).append(stream, events)
        return
    async with EventStore(store.url) as release_1:
        await release_1.append(stream, events)


async def test_old_events_are_upcast_so_apply_sees_only_the_latest_shape(
    store: EventStore, account_id: str
) -> None:
    stream = stream_of(account_id)
    await append_as_release_1(
        store,
        stream,
        [Event("account.opened", {"owner": "Ada"}), Event("account.deposited", {"value": 100})],
    )
    with pytest.raises(ValidationError, match=r"version=2"):
        await store.append(stream, Event("account.deposited", {"amount": 1}))
    repository = AccountRepository(store)
    await run_command(repository, account_id, lambda account: account.deposit(50))
    assert (await repository.load(account_id)).balance == 150
    versions = [(event.version, dict(event.data)) for event in await store.get_stream(stream)]
    assert versions[1:] == [(2, {"amount": 100}), (2, {"amount": 50})]


async def test_two_writers_at_once_both_succeed_one_after_the_other(
    store: EventStore, account_id: str
) -> None:
    await open_with(AccountRepository(store), account_id, 100)  # positions 0 and 1
    repository = GatedRepository(store, writers=2)
    calls = {"a": 0, "b": 0}
    amounts = {"a": 70, "b": 20}
    done = await asyncio.gather(
        *(run_command(repository, account_id, withdrawal(calls, w, n)) for w, n in amounts.items())
    )
    # both loaded version 1; one appended first, the other met ConcurrencyError, loaded
    # again and ran its command once more, on the first one's result
    assert sorted(calls.values()) == [1, 2], calls
    first = next(name for name, count in calls.items() if count == 1)
    second = next(name for name, count in calls.items() if count == 2)
    events = await store.get_stream(stream_of(account_id))
    assert [(e.position, e.type, e.data["amount"]) for e in events[2:]] == [
        (2, "account.withdrawn", amounts[first]),
        (3, "account.withdrawn", amounts[second]),
    ]
    retried = done[list(amounts).index(second)]
    assert (retried.balance, retried.version) == (10, 3)
    account = await AccountRepository(store).load(account_id)
    assert (account.balance, account.version) == (10, 3)


async def test_a_command_run_again_after_a_conflict_is_checked_again(
    store: EventStore, account_id: str
) -> None:
    await open_with(AccountRepository(store), account_id, 100)
    repository = GatedRepository(store, writers=2)
    done = await asyncio.gather(
        run_command(repository, account_id, lambda account: account.withdraw(70)),
        run_command(repository, account_id, lambda account: account.withdraw(50)),
        return_exceptions=True,
    )
    # both fitted 100 when loaded; the one that ran again found 30 or 50 left, and refused
    refused = [result for result in done if isinstance(result, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], InsufficientFunds), done
    events = await store.get_stream(stream_of(account_id))
    assert [event.type for event in events[2:]] == ["account.withdrawn"]
    assert (await AccountRepository(store).load(account_id)).balance in (30, 50)


async def test_the_retries_are_bounded(store: EventStore, account_id: str) -> None:
    await open_with(AccountRepository(store), account_id, 100)

    class Overtaken(AccountRepository):  # type: ignore[misc, valid-type]
        """Another writer appends between every load and save."""

        saves = 0

        async def save(self, account: Any) -> None:
            self.saves += 1
            overtaking = Event("account.deposited", {"amount": 1}, version=2)
            await store.append(stream_of(account.id), overtaking)
            await super().save(account)

    repository = Overtaken(store)
    with pytest.raises(ConcurrencyError) as raised:
        await run_command(repository, account_id, lambda account: account.withdraw(5), 3)
    assert repository.saves == 3
    assert (raised.value.expected, raised.value.actual) == (3, 4)
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        await run_command(repository, account_id, lambda account: account.withdraw(5), 0)


async def test_saving_again_after_a_lost_reply_writes_nothing_twice(
    store: EventStore, account_id: str
) -> None:
    repository = AccountRepository(store)
    await open_with(repository, account_id, 100)
    account = await repository.load(account_id)
    account.deposit(5)
    # the append went through but its reply was lost: the caller saves the same events again
    await store.append(stream_of(account_id), account.pending, expected_version=account.version)
    await repository.save(account)
    assert account.version == 2 and not account.pending
    assert len(await store.get_stream(stream_of(account_id))) == 3
    assert (await repository.load(account_id)).balance == 105
