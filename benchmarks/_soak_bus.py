"""The bus part of the soak: one broker, four buses through fault proxies of their own.

A *producer* bus publishes, per key, a sequence number after another (one publish
awaited at a time, so the key's publish order is its sequence); two *members* share a
group (``soak.#``, group ``g``), and one *listener* subscribes ungrouped. Every bus
reaches the broker through a :class:`FaultProxy` of its own, so a fault can hit the
whole component or one bus (a member cut off while the other works).

Bookkeeping is compact (a byte per event and view, a 4-byte entry per first delivery),
so the harness's own memory grows by a few MB over hours, not by event objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

from tests.faultproxy import FaultProxy

from pepperpy.event import Event, EventBus, RetryPolicy, TransportError
from pepperpy.event.transports.base import Transport

__all__ = ["BusSoak", "STATUS_NAMES"]

log = logging.getLogger("soak")

TOPIC = "soak.ev"
KEYS = 8
#: a handler's await: long enough that two runs of one key could overlap, short enough
#: that a key's lane keeps up with its publisher
HANDLER_SECONDS = 0.002

# publish outcome per (key, seq)
PENDING, OK, STORED_FALSE, STORED_NONE, STORED_TRUE, OTHER = range(6)
STATUS_NAMES = {
    STORED_FALSE: "stored_false",
    STORED_NONE: "stored_none",
    STORED_TRUE: "stored_true",
    OTHER: "other_error",
}
_STORED = {False: STORED_FALSE, None: STORED_NONE, True: STORED_TRUE}

MakeTransport = Callable[[int], Transport]  # proxy port -> a transport through it


def _grow(counts: bytearray, seq: int) -> None:
    if seq >= len(counts):
        counts.extend(bytes(max(seq + 1 - len(counts), 4096)))


class View:
    """What one subscriber (the group as a whole, or the ungrouped listener) received."""

    def __init__(self, name: str, keys: list[str], began: float) -> None:
        self.name = name
        self.began = began
        self.counts = {key: bytearray() for key in keys}  # deliveries per seq (saturating)
        self.first_order = {key: array("I") for key in keys}  # seqs in first-delivery order
        self.max_first = dict.fromkeys(keys, -1)
        #: seqs below ``checked`` were looked at; those not delivered then are in ``gaps``
        #: (so a live count of what is missing costs the new seqs, not the whole run)
        self.checked = dict.fromkeys(keys, 0)
        self.gaps: dict[str, set[int]] = {key: set() for key in keys}
        self.delivered = 0
        self.repeats: list[str] = []  # the first deliveries past the first, with when
        self.late_firsts = 0  # first deliveries of a seq below one already delivered
        self.last_delivery = 0.0

    def record(self, key: str, seq: int) -> None:
        counts = self.counts[key]
        _grow(counts, seq)
        if counts[seq] == 0:
            self.first_order[key].append(seq)
            if seq < self.max_first[key]:
                self.late_firsts += 1
            else:
                self.max_first[key] = seq
        elif len(self.repeats) < 30:
            self.repeats.append(f"{key}#{seq} at t={time.monotonic() - self.began:.1f}s")
        if counts[seq] < 255:
            counts[seq] += 1
        self.delivered += 1
        self.last_delivery = time.monotonic()

    def bookkeeping_bytes(self) -> int:
        return sum(len(c) for c in self.counts.values()) + sum(
            4 * len(a) for a in self.first_order.values()
        )


class BusSoak:
    """One broker's share of the soak."""

    def __init__(
        self,
        name: str,
        make_transport: MakeTransport,
        upstream_port: int,
        cleanup: Callable[[], Awaitable[list[str]]],
        rate: float,
        notes: str,
        began: float,
    ) -> None:
        self.name = name
        self.make_transport = make_transport
        self.cleanup = cleanup
        self.rate = rate
        self.notes = notes  # what the transport's docs promise, for the report
        self.keys = [f"k{n}" for n in range(KEYS)]
        self.proxies = {
            role: FaultProxy(upstream_port)
            for role in ("producer", "member_a", "member_b", "listener")
        }
        self.buses: dict[str, EventBus] = {}
        self.status = {key: bytearray() for key in self.keys}
        self.next_seq = dict.fromkeys(self.keys, 0)
        self.published = 0
        self.failed: dict[str, int] = dict.fromkeys(STATUS_NAMES.values(), 0)
        self.failure_messages: dict[str, str] = {}
        self.slow_publishes = 0  # publishes that took over 5 s
        self.began = began
        self.group = View("group", self.keys, began)
        self.listener = View("ungrouped", self.keys, began)
        self.per_member = {"member_a": 0, "member_b": 0}
        self.in_handler: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.overlaps = 0
        self.overlap_examples: list[str] = []
        self._stopping = asyncio.Event()
        self._publishers: list[asyncio.Task[None]] = []
        self.started = 0.0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()
        for role in ("member_a", "member_b", "listener"):
            bus = EventBus(
                transport=self.make_transport(self.proxies[role].port),
                retry_policy=RetryPolicy.NONE,
            )
            self.buses[role] = bus
            if role == "listener":
                bus.subscribe("soak.#")(self._ungrouped_handler())
            else:
                bus.subscribe("soak.#", group="g")(self._group_handler(role))
            await asyncio.wait_for(bus.start(), 60)
        producer = EventBus(
            transport=self.make_transport(self.proxies["producer"].port),
            retry_policy=RetryPolicy.NONE,
        )
        self.buses["producer"] = producer
        await asyncio.wait_for(producer.start(), 60)
        self.started = time.monotonic()
        self._publishers = [
            asyncio.create_task(self._publish_key(key), name=f"soak-{self.name}-{key}")
            for key in self.keys
        ]

    async def stop_publishing(self) -> None:
        """Let every key finish the publish it is in, then stop."""
        self._stopping.set()
        await asyncio.gather(*self._publishers, return_exceptions=True)

    async def close(self) -> list[str]:
        """Close the buses and the proxies; delete what the soak made. Returns problems."""
        problems: list[str] = []
        self._stopping.set()
        for task in self._publishers:
            task.cancel()
        await asyncio.gather(*self._publishers, return_exceptions=True)
        for proxy in self.proxies.values():
            proxy.resume()
            proxy.heal()
        for role in ("producer", "listener", "member_a", "member_b"):
            bus = self.buses.get(role)
            if bus is None:
                continue
            try:
                await asyncio.wait_for(bus.close(), 90)
            except Exception as exc:  # report it, go on closing the rest
                problems.append(f"{self.name} {role} close: {type(exc).__name__}: {exc}")
        try:  # while the proxies still forward: a cleanup may go through a bus's transport
            problems += await self.cleanup()
        except Exception as exc:
            problems.append(f"{self.name} cleanup: {type(exc).__name__}: {exc}")
        for proxy in self.proxies.values():
            await proxy.close()
        return problems

    # -- producing ----------------------------------------------------------------

    async def _publish_key(self, key: str) -> None:
        bus = self.buses["producer"]
        period = len(self.keys) / self.rate
        status = self.status[key]
        next_at = time.monotonic()
        while not self._stopping.is_set():
            seq = self.next_seq[key]
            self.next_seq[key] = seq + 1
            _grow(status, seq)
            began = time.monotonic()
            try:
                await bus.publish(TOPIC, {"k": key, "s": seq}, key=key)
            except TransportError as exc:
                outcome = _STORED.get(exc.stored, OTHER)
                self._failed(outcome, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything else is a finding: record, go on
                self._failed(OTHER, exc)
                outcome = OTHER
            else:
                outcome = OK
                self.published += 1
            status[seq] = outcome
            if time.monotonic() - began > 5.0:
                self.slow_publishes += 1
            next_at = max(next_at + period, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), next_at - time.monotonic())

    def _failed(self, outcome: int, exc: BaseException) -> None:
        name = STATUS_NAMES[outcome]
        self.failed[name] += 1
        self.failure_messages.setdefault(name, f"{type(exc).__name__}: {exc}"[:400])

    # -- consuming ----------------------------------------------------------------

    def _group_handler(self, member: str) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            key, seq = event.data["k"], event.data["s"]
            if self.in_handler[key]:
                self.overlaps += 1
                if len(self.overlap_examples) < 10:
                    at = round(time.monotonic() - self.started, 1)
                    self.overlap_examples.append(f"t={at}s {key}#{seq} on {member}")
            self.in_handler[key] += 1
            self.group.record(key, seq)
            self.per_member[member] += 1
            try:
                await asyncio.sleep(HANDLER_SECONDS)
            finally:
                self.in_handler[key] -= 1

        return handle

    def _ungrouped_handler(self) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            self.listener.record(event.data["k"], event.data["s"])
            await asyncio.sleep(HANDLER_SECONDS)

        return handle

    # -- checking -----------------------------------------------------------------

    def missing(self, view: View, older_than: float | None = None) -> int:
        """Acknowledged publishes ``view`` has not got (all of them, or, with
        ``older_than``, those published before the last ``older_than`` seconds: a rough
        live figure, since seqs are published at a steady pace). Incremental: each call
        looks at the seqs published since the last one and at the gaps it left."""
        total = 0
        for key in self.keys:
            status, counts, gaps = self.status[key], view.counts[key], view.gaps[key]
            end = self.next_seq[key]
            if older_than is not None:
                end = max(0, end - int(older_than * self.rate / len(self.keys)))
            for seq in range(view.checked[key], end):
                if status[seq] in (OK, PENDING) and (seq >= len(counts) or counts[seq] == 0):
                    gaps.add(seq)
            view.checked[key] = max(view.checked[key], end)
            for seq in list(gaps):
                if (seq < len(counts) and counts[seq]) or status[seq] not in (OK, PENDING):
                    gaps.discard(seq)
                elif status[seq] == OK and seq < end:
                    total += 1
        return total

    def view_report(self, view: View) -> dict[str, Any]:
        missing: list[str] = []
        missing_count = duplicates = delivered_unique = 0
        failed_delivered: dict[str, int] = dict.fromkeys(STATUS_NAMES.values(), 0)
        never_published = 0
        for key in self.keys:
            status, counts = self.status[key], view.counts[key]
            for seq in range(len(counts)):
                if counts[seq]:
                    delivered_unique += 1
                    duplicates += counts[seq] - 1
                    code = status[seq] if seq < len(status) else PENDING
                    if code in STATUS_NAMES:
                        failed_delivered[STATUS_NAMES[code]] += 1
                    elif code == PENDING:
                        never_published += 1
            for seq in range(self.next_seq[key]):
                if status[seq] == OK and (seq >= len(counts) or counts[seq] == 0):
                    missing_count += 1
                    if len(missing) < 20:
                        missing.append(f"{key}#{seq}")
        return {
            "delivered": view.delivered,
            "delivered_unique": delivered_unique,
            "duplicates": duplicates,
            "duplicate_examples": view.repeats,
            "missing": missing_count,
            "missing_examples": missing,
            "failed_publish_but_delivered": failed_delivered,
            "delivered_while_publish_pending": never_published,
            **self._order(view),
        }

    def _order(self, view: View) -> dict[str, Any]:
        """First deliveries out of publish order: over every event, and over the
        acknowledged ones only (a failed publish of unknown outcome may be stored late)."""
        late_all = late_acked = 0
        examples: list[str] = []
        for key in self.keys:
            status = self.status[key]
            top_all = top_acked = -1
            for seq in view.first_order[key]:
                if seq < top_all:
                    late_all += 1
                top_all = max(top_all, seq)
                if seq < len(status) and status[seq] == OK:
                    if seq < top_acked:
                        late_acked += 1
                        if len(examples) < 10:
                            examples.append(f"{key}#{seq} after #{top_acked}")
                    top_acked = max(top_acked, seq)
        return {
            "order_violations_acked": late_acked,
            "order_violations_all": late_all,
            "order_examples": examples,
        }

    def report(self) -> dict[str, Any]:
        attempted = sum(self.next_seq.values())
        pending = sum(
            1
            for key in self.keys
            for seq in range(self.next_seq[key])
            if self.status[key][seq] == PENDING
        )
        return {
            "promises": self.notes,
            "publish_attempts": attempted,
            "published_ok": self.published,
            "failed": dict(self.failed),
            "failure_examples": self.failure_messages,
            "unfinished_publishes": pending,
            "publishes_over_5s": self.slow_publishes,
            "bookkeeping_mb": round(
                (
                    sum(len(s) for s in self.status.values())
                    + self.group.bookkeeping_bytes()
                    + self.listener.bookkeeping_bytes()
                )
                / 2**20,
                2,
            ),
            "group": {
                **self.view_report(self.group),
                "per_member": dict(self.per_member),
                "overlapping_handlers": self.overlaps,
                "overlap_examples": self.overlap_examples,
            },
            "ungrouped": self.view_report(self.listener),
        }

    def progress(self) -> str:
        failed = sum(self.failed.values())
        return (
            f"{self.name}: ok={self.published} fail={failed} "
            f"grp={self.group.delivered} ungr={self.listener.delivered} "
            f"miss60s(g/u)={self.missing(self.group, 60)}/{self.missing(self.listener, 60)} "
            f"late1st(g/u)={self.group.late_firsts}/{self.listener.late_firsts} ovl={self.overlaps}"
        )
