"""A projection run as a service: ``follow()``'s log lines, a second follower, ``serve()``.

An audit ran a follower as a process: ``follow()`` logged nothing when it started, caught
up or went live; an outage of its live read was logged as "subscription at global
position 100", which names no projection; a second replica died with a bare
``ConcurrencyError`` on the checkpoint stream; and SIGTERM killed it with status 143, no
log line. ``follow()`` now logs where it starts and when it is live, rides out the live
read's outages itself (its lines name the projection), and turns another follower's
commit into a ``ReplayError`` saying to run one follower per projection;
``Projection.serve()`` runs it until SIGINT/SIGTERM, as ``EventBus.serve()`` runs a bus.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    ConcurrencyError,
    Event,
    EventBus,
    EventStore,
    Projection,
    ReplayError,
)
from tests.conftest import unique_name
from tests.faultproxy import FaultProxy
from tests.helpers import delete_redis_keys, eventually
from tests.script_process import DEADLINE, ScriptProcess
from tests.store import conftest as store_fixtures
from tests.store.pgfaultproxy import PgFaultProxy, proxied

LOGGER = "pepperpy.event.replay"
WORKER = Path(__file__).with_name("serve_projection_worker.py")

#: the store tests' PostgreSQL fixtures: a database for the module, a schema per test
#: (``direct``), the fault proxy
database, direct, proxy = store_fixtures.database, store_fixtures.direct, store_fixtures.proxy


def ledger(store: EventStore) -> Projection:
    """Records every position it applies: a position applied twice shows, as does one
    skipped."""
    projection = Projection("ledger", store, initial=lambda: {"applied": []}, batch_size=3)

    @projection.on("acc.#")
    def record(state: dict[str, Any], event: Event) -> None:
        state["applied"].append(event.global_position)

    return projection


async def stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def messages(caplog: pytest.LogCaptureFixture, level: int, logger: str = LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == logger]


# -- follow()'s log lines -----------------------------------------------------------------


async def test_follow_logs_where_it_starts_and_when_it_is_live(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        await store.append("acc.1", [Event("acc.add") for _ in range(4)])
        projection = ledger(store)
        follower = asyncio.ensure_future(projection.follow())
        try:
            await eventually(lambda: len(messages(caplog, logging.INFO)) == 2)
            assert projection.position == 3
        finally:
            await stop(follower)
        again = ledger(store)  # a restart: from the position on disk
        follower = asyncio.ensure_future(again.follow())
        try:
            await eventually(lambda: len(messages(caplog, logging.INFO)) == 4)
        finally:
            await stop(follower)
            await projection.close()
            await again.close()
    assert messages(caplog, logging.INFO) == [
        "projection 'ledger' following from global position 0",
        "projection 'ledger' caught up at global position 3; applying live events",
        "projection 'ledger' following from global position 4",
        "projection 'ledger' caught up at global position 3; applying live events",
    ]


@pytest.mark.postgres
async def test_an_outage_of_the_live_read_is_logged_naming_the_projection(
    proxy: PgFaultProxy, direct: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole store behind the proxy, the follower live: its read of new events fails."""
    caplog.set_level(logging.INFO)
    async with (
        EventStore(direct) as writer,
        EventStore(proxied(direct, proxy.port, command_timeout=3, connect_timeout=2)) as store,
    ):
        await writer.append("acc.1", [Event("acc.add") for _ in range(5)])
        projection = ledger(store)
        follower = asyncio.ensure_future(projection.follow())
        try:
            await eventually(lambda: projection.position == 4, timeout=15)
            proxy.refuse()
            proxy.drop()
            await eventually(lambda: bool(messages(caplog, logging.WARNING)), timeout=15)
            assert not follower.done(), follower.exception()
            await writer.append("acc.1", Event("acc.add"))
            proxy.heal()
            await eventually(lambda: projection.position == 5, timeout=15)
            positions = [event.global_position async for event in writer.read_all()]
            assert projection.state["applied"] == positions
        finally:
            await stop(follower)
            await projection.close()
    [warning] = messages(caplog, logging.WARNING)
    assert warning.startswith("projection 'ledger' at global position 4: ")
    assert warning.endswith("trying again for up to 60 s")
    assert "subscription at" not in warning  # the backend's own words, not the wrapper's
    assert any(
        m.startswith("projection 'ledger': the store can be reached again")
        for m in messages(caplog, logging.INFO)
    )
    unnamed = [m for m in caplog.messages if m.startswith("subscription at global position")]
    assert unnamed == []


# -- a second follower ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("direct"))


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    async with EventStore(url) as events:
        await events.append("acc.1", [Event("acc.add") for _ in range(3)])
        yield events


async def test_a_second_follower_is_told_to_run_one_follower_per_projection(
    store: EventStore,
) -> None:
    first, second = ledger(store), ledger(store)  # two replicas of one service
    followers = [asyncio.ensure_future(p.follow()) for p in (first, second)]
    try:
        # both live at position 2, unless one lost the race to save the catch-up already
        await eventually(
            lambda: any(f.done() for f in followers) or first.position == second.position == 2,
            timeout=15,
        )
        await store.append("acc.1", Event("acc.add"))  # both apply it; one saves first
        done, _ = await asyncio.wait(
            followers, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED
        )
        [ended] = done
        loser, winner = (first, second) if ended is followers[0] else (second, first)
        with pytest.raises(ReplayError) as caught:
            ended.result()
        message = str(caught.value)
        assert message.startswith("projection 'ledger': another follower of this projection")
        assert "another process is running it" in message
        assert "Run one follower per projection: one replica, or a leader lock" in message
        assert isinstance(caught.value.__cause__, ConcurrencyError)
        running = followers[1] if ended is followers[0] else followers[0]
        assert not running.done()
        await store.append("acc.2", [Event("acc.add") for _ in range(2)])
        await eventually(lambda: winner.position == 5, timeout=15)
        assert winner.state["applied"] == [0, 1, 2, 3, 4, 5]  # each event once
        # the loser holds what was on disk when it lost: the winner's state, not its own
        assert loser.state["applied"] == list(range((loser.position or 0) + 1))
    finally:
        for follower in followers:
            await stop(follower)
        await first.close()
        await second.close()


async def test_run_keeps_its_concurrency_error(store: EventStore) -> None:
    """Two run() callers (a periodic catch-up in two processes) may race: the loser's
    next run() goes on from the winner's position, so its error stays the store's."""
    first, second = ledger(store), ledger(store)
    await second.load()
    await first.run()
    with pytest.raises(ConcurrencyError):
        await second.run()
    assert second.position == first.position == 2
    await first.close()
    await second.close()


# -- serve() in process ---------------------------------------------------------------------


async def test_closing_the_store_ends_serve_and_it_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    store = EventStore()
    await store.append("acc.1", [Event("acc.add") for _ in range(2)])
    projection = ledger(store)
    serving = asyncio.ensure_future(projection.serve(signals=()))
    await eventually(lambda: projection.position == 1)
    await store.close()
    await asyncio.wait_for(serving, DEADLINE)
    assert messages(caplog, logging.INFO) == [
        "projection 'ledger' serving: until the store is closed (signals=()); retry_for 60 s",
        "projection 'ledger' following from global position 0",
        "projection 'ledger' caught up at global position 1; applying live events",
        "projection 'ledger': the store was closed; stopped at global position 1, where "
        "its state is saved",
    ]


async def test_serve_raises_what_ends_follow_and_puts_the_handlers_back() -> None:
    def python_handler(signum: int, frame: Any) -> None:
        pass

    before = signal.signal(signal.SIGTERM, python_handler)
    try:
        async with EventStore() as store:
            await store.append("acc.1", Event("acc.add"))
            projection = Projection("failing", store)

            @projection.on("acc.#")
            def fail(state: dict[str, Any], event: Event) -> None:
                raise RuntimeError("bug")

            with pytest.raises(ReplayError, match="handler .*fail.* failed"):
                await asyncio.wait_for(projection.serve(), DEADLINE)
            assert signal.getsignal(signal.SIGTERM) is python_handler
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_a_cancelled_serve_stops_following_and_puts_the_handlers_back() -> None:
    def python_handler(signum: int, frame: Any) -> None:
        pass

    before = signal.signal(signal.SIGTERM, python_handler)
    try:
        async with EventStore() as store:
            projection = ledger(store)
            serving = asyncio.ensure_future(projection.serve())
            await eventually(lambda: signal.getsignal(signal.SIGTERM) is not python_handler)
            with pytest.raises(RuntimeError, match="already running on projection 'ledger'"):
                await projection.serve()
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
            assert signal.getsignal(signal.SIGTERM) is python_handler
            await store.append("acc.1", Event("acc.add"))
            await projection.run()  # on/off and runs are free again: nothing follows
            assert projection.state["applied"] == [0]
            await projection.close()
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_bad_arguments_are_refused() -> None:
    async with EventStore() as store:
        projection = ledger(store)
        with pytest.raises(TypeError, match=r"signals=\(signal.SIGTERM,\)"):
            await projection.serve(signals=signal.SIGTERM)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="retry_for must be a finite number of seconds"):
            await projection.serve(retry_for=-1)


# -- serve() in a process of its own, signalled -----------------------------------------------


async def on_disk(
    url: str, name: str = "tally", streams: str = "acc.*"
) -> tuple[int | None, dict[str, Any]]:
    async with EventStore(url) as store:
        projection = Projection(name, store, streams=streams)  # as the service saved it
        state = await projection.load()
        await projection.close()
        return projection.position, state


async def test_sigterm_mid_batch_exits_0_and_a_restart_applies_each_event_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    gate = tmp_path / "gate"
    async with EventStore(url) as store:
        await store.append("acc.1", [Event("acc.add", {"n": n}) for n in range(250)])
    # held at n=150: the batch of 100..199 is half-applied, in memory only
    async with ScriptProcess(WORKER, url, "150", str(gate)) as service:
        await service.wait_for("holding 150")
        service.process.send_signal(signal.SIGTERM)
        assert await service.exit_code() == 0
    assert service.lines[service.lines.index("holding 150") + 1 :] == [
        "projection 'tally': SIGTERM received; stopped at global position 99, where its "
        "state is saved",
        "exited",
    ]
    position, state = await on_disk(url)
    assert position == 99 and state == {"count": 100, "applied": list(range(100))}

    async with ScriptProcess(WORKER, url, "-1", str(gate)) as service:  # a restart
        await service.wait_for("following from global position 100")
        await service.wait_for("caught up at global position 249")
        async with EventStore(url) as store:  # live appends, committed one by one
            await store.append("acc.2", [Event("acc.add", {"n": n}) for n in range(250, 253)])
        async with asyncio.timeout(DEADLINE):
            while (await on_disk(url))[0] != 252:
                await asyncio.sleep(0.05)
        service.process.send_signal(signal.SIGINT)
        assert await service.exit_code() == 0
    assert service.saw("SIGINT received; stopped at global position 252")
    position, state = await on_disk(url)
    assert position == 252 and state == {"count": 253, "applied": list(range(253))}


async def test_the_docs_service_logs_what_the_docs_show_and_exits_0(tmp_path: Path) -> None:
    """docs/replay.md's service block, as a process: its log is the one shown below it."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "replay.md").read_text()
    code, shown = re.search(
        r"<!-- fragment -->\n```python\n(.*?await sales\.serve\(\).*?)```\n.*?```text\n(.*?)```",
        doc,
        re.DOTALL,
    ).groups()  # type: ignore[union-attr]
    script = tmp_path / "sales_service.py"
    script.write_text(code)
    async with EventStore(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        for n, customer in enumerate(["ann", "bob", "ann"]):
            placed = Event("order.placed", {"customer": customer, "amount": 10 + n})
            await store.append(f"order.{n}", placed)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(script),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(DEADLINE):
            while not any("applying live events" in line for line in lines):
                line = await process.stdout.readline()
                assert line, lines
                lines.append(line.decode().rstrip("\n"))
            process.send_signal(signal.SIGTERM)
            lines += (await process.stdout.read()).decode().splitlines()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert lines == shown.splitlines()
    position, state = await on_disk(f"sqlite:///{tmp_path / 'shop.db'}", "sales", "order.*")
    assert position == 2 and state == {"ann": 22, "bob": 11}


# -- docs/store.md's relay, as a service -------------------------------------------------------


@pytest.mark.redis
async def test_the_docs_relay_rides_out_a_broker_outage_and_stops_on_sigterm(
    redis_url: str, tmp_path: Path
) -> None:
    """The relay of docs/store.md "As a service", as a process, its bus behind a fault
    proxy with ``connect_timeout=1``: a broker outage of several connect_timeouts pauses
    it (the attachment alone stopped after one), and SIGTERM ends it with status 0."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    [code] = [
        block
        for block in re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
        if block.startswith('"""relay.py')
    ]
    namespace = unique_name("peprelay")
    received: list[str] = []
    async with FaultProxy(6379) as fault:
        url = f"redis://127.0.0.1:{fault.port}/0?namespace={namespace}&connect_timeout=1"
        shown = '"redis://127.0.0.1:6379/0?namespace=docs_example"'
        assert shown in code
        (tmp_path / "relay.py").write_text(code.replace(shown, repr(url)))
        store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
        consumer = EventBus(transport=f"{redis_url}?namespace={namespace}")
        try:

            @consumer.subscribe("order.#", group="shop")
            async def record(event: Event) -> None:
                received.append(event.id)

            await consumer.start()
            await store.append("order.1", [Event("order.placed"), Event("order.paid")])
            async with ScriptProcess(str(tmp_path / "relay.py"), cwd=tmp_path) as relay:
                await eventually(lambda: len(received) == 2, timeout=DEADLINE)
                fault.refuse()
                fault.drop()
                await store.append("order.2", [Event("order.placed"), Event("order.paid")])
                await relay.wait_for("attempt 2 of order.placed")  # 3 s at least
                fault.heal()
                await eventually(lambda: len(received) == 4, timeout=DEADLINE)
                relay.process.send_signal(signal.SIGTERM)
                assert await relay.exit_code() == 0
            assert relay.saw("relay: SIGTERM received; stopping after the publish in progress")
            assert relay.lines[-1].endswith("relay: stopped at global position 3")
            stored = [event.id async for event in store.read_all()]
            assert sorted(received) == sorted(stored)
        finally:
            await consumer.close()
            await store.close()
            await delete_redis_keys(redis_url, f"{namespace}:*")


async def test_following_an_empty_store_logs_it_caught_up_before_its_first_event(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    async with EventStore(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        projection = ledger(store)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            follower = asyncio.ensure_future(projection.follow())
            try:
                await eventually(lambda: bool(messages(caplog, logging.INFO)[1:]), timeout=15)
            finally:
                await stop(follower)
        assert messages(caplog, logging.INFO)[1] == (
            "projection 'ledger' caught up before its first event; applying live events"
        )  # it said "at global position None"
        await projection.close()
