"""The event-store part of the soak: concurrent appenders, a subscription and a projection.

Appenders append to a few shared streams with ``expected_version`` (the version they last
saw), so they conflict with each other now and then; an append that fails is tried again
*with the same event* until it is acknowledged (the store skips an event whose id is
already in the stream, so a retry after a lost answer cannot store it twice). A
``subscribe()`` follower and a ``Projection.follow()`` run meanwhile. At the end the log
is read back directly (not through the fault proxy) and compared:

* every acknowledged append is in the log once (idempotent retries);
* the follower saw every event of the log once, in global order;
* the projection's saved state (a count, a sum and a sum of squares of the global
  positions it applied) equals the log's up to its saved position: exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.faultproxy import FaultProxy

from pepperpy.event import (
    NO_STREAM,
    ConcurrencyError,
    Event,
    EventStore,
    Projection,
    StoreError,
)

__all__ = ["StoreSoak"]

log = logging.getLogger("soak")

APPENDERS = 3
STREAMS = 6
PENDING, OK, GAVE_UP = 0, 1, 2


class StoreSoak:
    """One store backend's share of the soak."""

    def __init__(
        self,
        name: str,
        url: Callable[[int | None], str],
        direct_url: str,
        cleanup: Callable[[], Awaitable[list[str]]],
        rate: float,
        proxy: FaultProxy | None,
        rng: random.Random,
    ) -> None:
        self.name = name
        self._url = url  # proxy port (None: no proxy) -> the store's URL
        self.direct_url = direct_url
        self.cleanup = cleanup
        self.rate = rate
        self.proxy = proxy
        self.rng = rng
        self.proxies = {"store": proxy} if proxy is not None else {}
        self.store: EventStore | None = None
        self.projection: Projection | None = None
        self.streams = [f"acct.{n}" for n in range(STREAMS)]
        self.versions: dict[str, int] = {}
        self.status = [bytearray() for _ in range(APPENDERS)]
        self.next_n = [0] * APPENDERS
        self.acked = 0
        self.conflicts = 0
        self.errors: dict[str, int] = {"written_false": 0, "written_none": 0, "other": 0}
        self.error_examples: dict[str, str] = {}
        self.max_acked_position = -1
        self.follower_counts = bytearray()
        self.follower_seen = 0
        self.follower_out_of_order = 0
        self.follower_next = 0
        self.follower_restarts: list[str] = []
        self.projection_restarts: list[str] = []
        self._started = time.monotonic()
        self._stopping = asyncio.Event()
        self._appenders: list[asyncio.Task[None]] = []
        self._followers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._started = time.monotonic()
        if self.proxy is not None:
            await self.proxy.start()
        self.store = EventStore(self._url(None if self.proxy is None else self.proxy.port))
        projection = Projection(
            "soak_ledger",
            self.store,
            initial=lambda: {"n": 0, "sum": 0, "sq": 0},
            streams="acct.*",
        )

        @projection.on("acct.#")
        def apply(state: dict[str, int], event: Event) -> None:
            position = event.global_position
            assert position is not None
            state["n"] += 1
            state["sum"] += position
            state["sq"] += position * position

        self.projection = projection
        self._followers = [
            asyncio.create_task(self._follow(), name=f"soak-{self.name}-follower"),
            asyncio.create_task(self._project(), name=f"soak-{self.name}-projection"),
        ]
        self._appenders = [
            asyncio.create_task(self._append(index), name=f"soak-{self.name}-appender{index}")
            for index in range(APPENDERS)
        ]

    # -- appending ----------------------------------------------------------------

    async def _append(self, index: int) -> None:
        assert self.store is not None
        period = APPENDERS / self.rate
        status = self.status[index]
        while not self._stopping.is_set():
            n = self.next_n[index]
            self.next_n[index] = n + 1
            status.append(PENDING)
            stream = self.rng.choice(self.streams)
            event = Event("acct.moved", {"a": index, "n": n})
            status[n] = await self._append_until_acknowledged(stream, event)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.rng.uniform(0, 2 * period))

    async def _append_until_acknowledged(self, stream: str, event: Event) -> int:
        """Append ``event``, retrying the same event after any failure; GAVE_UP only when
        stopping and still failing after a minute of tries."""
        assert self.store is not None
        expected: Any = self.versions.get(stream, NO_STREAM)
        began = time.monotonic()
        backoff = 0.1
        while True:
            try:
                result = await self.store.append(stream, event, expected_version=expected)
            except ConcurrencyError as exc:
                self.conflicts += 1
                expected = NO_STREAM if exc.actual is None else exc.actual
                continue
            except StoreError as exc:
                kind = {False: "written_false", None: "written_none"}.get(exc.written, "other")
                self._error(kind, exc)
            except Exception as exc:  # a finding: record it, keep the soak going
                self._error("other", exc)
            else:
                self.acked += 1
                self.versions[stream] = result.next_expected_version
                self.max_acked_position = max(self.max_acked_position, result.global_position)
                return OK
            if self._stopping.is_set() and time.monotonic() - began > 60:
                return GAVE_UP
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _error(self, kind: str, exc: BaseException) -> None:
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, f"{type(exc).__name__}: {exc}"[:400])

    # -- following ----------------------------------------------------------------

    async def _follow(self) -> None:
        assert self.store is not None
        position = 0
        while True:
            subscription = self.store.subscribe(position)
            try:
                async for event in subscription:
                    gp = event.global_position
                    assert gp is not None
                    if gp < self.follower_next:
                        self.follower_out_of_order += 1
                    self.follower_next = gp + 1
                    if gp >= len(self.follower_counts):
                        self.follower_counts.extend(
                            bytes(max(4096, gp + 1 - len(self.follower_counts)))
                        )
                    if self.follower_counts[gp] < 255:
                        self.follower_counts[gp] += 1
                    self.follower_seen += 1
                    position = gp + 1
            except StoreError as exc:
                self.follower_restarts.append(f"{self._now()}s {type(exc).__name__}: {exc}"[:400])
                await asyncio.sleep(1.0)
            finally:
                await subscription.aclose()

    async def _project(self) -> None:
        assert self.projection is not None
        while True:
            try:
                await self.projection.follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # StoreError past retry_for, or a finding
                self.projection_restarts.append(f"{self._now()}s {type(exc).__name__}: {exc}"[:400])
                await asyncio.sleep(1.0)
            else:
                return  # the store was closed

    def _now(self) -> float:
        return round(time.monotonic() - self._started, 1)

    # -- ending -------------------------------------------------------------------

    async def stop_appending(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._appenders, return_exceptions=True)

    async def drain(self, limit: float) -> None:
        """Wait until the follower and the projection reached the last acknowledged
        append, or ``limit`` seconds passed."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            at = None if self.projection is None else self.projection.position
            projection_at = -1 if at is None else at
            if (
                self.follower_next > self.max_acked_position
                and projection_at >= self.max_acked_position
            ):
                return
            await asyncio.sleep(0.5)

    async def finish(self) -> tuple[dict[str, Any], list[str]]:
        """Stop following, catch the projection up, compare with the log; close and
        clean up. Returns the report and problems met while closing."""
        problems: list[str] = []
        self._stopping.set()
        for task in [*self._appenders, *self._followers]:
            task.cancel()
        await asyncio.gather(*self._appenders, *self._followers, return_exceptions=True)
        if self.proxy is not None:
            self.proxy.resume()
            self.proxy.heal()
        final_run_error = None
        if self.projection is not None:
            for _ in range(5):
                try:
                    await asyncio.wait_for(self.projection.run(), 60)
                    final_run_error = None
                    break
                except Exception as exc:
                    final_run_error = f"{type(exc).__name__}: {exc}"[:400]
                    await asyncio.sleep(2)
        report = await self._compare()
        report["projection"]["final_run_error"] = final_run_error
        try:
            if self.projection is not None:
                await asyncio.wait_for(self.projection.close(), 30)
            if self.store is not None:
                await asyncio.wait_for(self.store.close(), 30)
        except Exception as exc:
            problems.append(f"{self.name} close: {type(exc).__name__}: {exc}")
        if self.proxy is not None:
            await self.proxy.close()
        try:
            problems += await self.cleanup()
        except Exception as exc:
            problems.append(f"{self.name} cleanup: {type(exc).__name__}: {exc}")
        return report, problems

    async def _compare(self) -> dict[str, Any]:
        positions: list[int] = []
        seen: dict[tuple[int, int], int] = {}
        async with EventStore(self.direct_url) as truth:
            async for event in truth.read_all(0, streams="acct.*"):
                assert event.global_position is not None
                positions.append(event.global_position)
                mark = (event.data["a"], event.data["n"])
                seen[mark] = seen.get(mark, 0) + 1
        stored_twice = sum(1 for count in seen.values() if count > 1)
        missing_acked = [
            f"a{index}#{n}"
            for index, status in enumerate(self.status)
            for n, code in enumerate(status)
            if code == OK and (index, n) not in seen
        ]
        gave_up = sum(status.count(GAVE_UP) for status in self.status)
        in_log = set(positions)
        follower_missing = [
            p for p in positions if p >= len(self.follower_counts) or not self.follower_counts[p]
        ]
        follower_twice = [
            p for p in positions if p < len(self.follower_counts) and self.follower_counts[p] > 1
        ]
        follower_extra = [
            p for p, count in enumerate(self.follower_counts) if count and p not in in_log
        ]
        projection: dict[str, Any] = {}
        if self.projection is not None:
            at = self.projection.position
            upto = [p for p in positions if at is not None and p <= at]
            expected = {"n": len(upto), "sum": sum(upto), "sq": sum(p * p for p in upto)}
            state = self.projection.state
            projection = {
                "position": at,
                "state": state,
                "expected": expected,
                "exactly_once": state == expected,
                "restarts": len(self.projection_restarts),
                "restart_examples": self.projection_restarts[:10],
            }
        return {
            "appends_acknowledged": self.acked,
            "appends_given_up_at_stop": gave_up,
            "conflicts": self.conflicts,
            "append_errors": dict(self.errors),
            "append_error_examples": self.error_examples,
            "log_events": len(positions),
            "log_out_of_order": sum(
                1 for a, b in zip(positions, positions[1:], strict=False) if b <= a
            ),
            "acknowledged_missing_from_log": len(missing_acked),
            "missing_examples": missing_acked[:20],
            "stored_twice": stored_twice,
            "follower": {
                "seen": self.follower_seen,
                "missing": len(follower_missing),
                "missing_examples": follower_missing[:20],
                "twice": len(follower_twice),
                "not_in_log": len(follower_extra),
                "out_of_order": self.follower_out_of_order,
                "restarts": len(self.follower_restarts),
                "restart_examples": self.follower_restarts[:10],
            },
            "projection": projection,
        }

    def progress(self) -> str:
        errors = sum(self.errors.values())
        behind = self.max_acked_position + 1 - self.follower_next
        projected = None if self.projection is None else self.projection.position
        return (
            f"{self.name}: acked={self.acked} conflicts={self.conflicts} errors={errors} "
            f"follower_behind={behind} ooo={self.follower_out_of_order} "
            f"proj_at={projected} restarts(f/p)={len(self.follower_restarts)}/"
            f"{len(self.projection_restarts)}"
        )
