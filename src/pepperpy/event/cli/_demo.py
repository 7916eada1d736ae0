"""``pepperpy-event demo``: a small online shop, end to end, recorded in the store.

Customers sign up and place orders through an :class:`EventManager`; the shop's
services talk over an in-memory :class:`EventBus` (payments charge placed orders, the
warehouse ships paid ones); every domain event is appended to the store, one stream per
customer and per order. Then a :class:`Projection` is rebuilt from the whole history by
replay, and an :class:`EventReplay` looks at this run alone through a time window.

Each run gets the next run number: the position its ``demo.started`` event takes in
``shop.demo.runs``, which the store hands out once, so demos running at once never share
one. Every id includes it: running the demo twice adds a second history beside the
first. The projection keeps its state in memory and is rebuilt from the whole log on
every run, so concurrent demos share nothing but the log they append to (a projection
state saved under one name in the store would be a checkpoint they all fight over).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._bus import EventBus
from .._errors import EventError
from .._event import Event
from .._manager import EventManager
from .._projection import Projection
from .._replay import EventReplay
from .._retry import RetryPolicy
from ..store import EventStore
from ._shell import refuse_plain_into_encrypted
from ._urls import shown

__all__ = ["run_demo"]

Say = Callable[[str], None]
RUNS_STREAM = "shop.demo.runs"
OUT_OF_STOCK = frozenset({"filter-papers"})
#: domain event -> the bus topic other services listen on
INTEGRATION = {"order.placed": "shop.payments.requested", "order.paid": "shop.shipping.requested"}


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Order:
    customer: str
    items: tuple[tuple[str, int, int], ...]  # (sku, quantity, unit price in cents)
    card_ok: bool

    @property
    def total(self) -> int:
        return sum(quantity * price for _, quantity, price in self.items)


CUSTOMERS = (
    Customer("alice", "alice@example.com"),
    Customer("bob", "bob@example.com"),
    Customer("carol", "carol@example.com"),
)
ORDERS = (
    Order("alice", (("coffee-beans", 2, 1800), ("grinder", 1, 4500)), card_ok=True),
    Order("bob", (("kettle", 1, 3900),), card_ok=False),
    Order("carol", (("mug", 3, 1200),), card_ok=True),
    Order("alice", (("filter-papers", 1, 600),), card_ok=True),
)


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def stream_for(event: Event) -> str:
    """Where an event is recorded: one stream per customer and per order."""
    kind = event.type.split(".", 1)[0]
    key = event.data["user_id"] if kind == "user" else event.data["order_id"]
    return f"shop.{kind}.{key}"


async def claim_run(store: EventStore) -> int:
    """The next run number: one more than the position this run's event is given.

    The store assigns each position once (concurrent appends are serialised, and a
    deleted stream continues after its last position), so no two runs get the same
    number, however many start at once, and none has to retry.
    """
    result = await store.append(RUNS_STREAM, Event("demo.started", {}))
    return result.next_expected_version + 1


def sales_projection(store: EventStore) -> Projection:
    """Per-customer orders and spending, order statuses, revenue: the shop's dashboard."""
    projection = Projection(
        "shop.sales",
        store,
        initial=lambda: {"customers": {}, "orders": {}, "revenue": 0},
        streams="shop.order.*",
        state_store="memory://",  # rebuilt each run: nothing for concurrent demos to share
    )

    def move(state: dict[str, Any], order_id: str, status: str) -> None:
        state["orders"][order_id] = status

    @projection.on("order.placed")
    def placed(state: dict[str, Any], event: Event) -> None:
        customer = state["customers"].setdefault(event.data["customer"], {"orders": 0, "spent": 0})
        customer["orders"] += 1
        move(state, event.data["order_id"], "placed")

    @projection.on("order.paid")
    def paid(state: dict[str, Any], event: Event) -> None:
        state["customers"][event.data["customer"]]["spent"] += event.data["amount"]
        state["revenue"] += event.data["amount"]
        move(state, event.data["order_id"], "paid")

    @projection.on("order.shipped")
    @projection.on("order.cancelled")
    def finished(state: dict[str, Any], event: Event) -> None:
        move(state, event.data["order_id"], event.type.split(".")[1])

    return projection


async def run_demo(url: str, say: Say) -> None:
    """Run the scenario against the store at ``url``, narrating through ``say``."""
    began = time.perf_counter()
    async with EventStore(url) as store:
        await refuse_plain_into_encrypted(store, "shop.demo.runs", url)
        run = await claim_run(store)
        started = datetime.now(UTC)
        say(f"pepperpy-event demo, run {run}, store {shown(url)}")
        manager = EventManager()
        bus = EventBus(retry_policy=RetryPolicy.NONE)
        recorded: list[str] = []

        @manager.on("#", priority=10)
        async def record(event: Event) -> None:
            # record first, then tell the other services (they may read it back)
            stream = stream_for(event)
            await store.append(stream, event)
            recorded.append(stream)
            topic = INTEGRATION.get(event.type)
            if topic is not None:
                await bus.publish(topic, event.data, key=event.data["order_id"])

        @manager.on("user.signed_up")
        def welcome(event: Event) -> None:
            say(f"  {event.data['name']} signed up ({event.data['email']})")

        @manager.on("order.placed")
        def placed(event: Event) -> None:
            data = event.data
            say(f"  {data['order_id']}: {data['customer']} ordered {describe(data['items'])}")

        @bus.subscribe("shop.payments.requested", group="payments")
        async def charge(message: Event) -> None:
            data = message.data
            order = {"order_id": data["order_id"], "customer": data["customer"]}
            if data["card_ok"]:
                say(f"    payments: captured {money(data['amount'])} for {data['order_id']}")
                await manager.emit("order.paid", {**order, "amount": data["amount"]})
            else:
                say(f"    payments: card declined for {data['order_id']}, order cancelled")
                await manager.emit("order.cancelled", {**order, "reason": "card declined"})

        @bus.subscribe("shop.shipping.requested", group="warehouse")
        async def ship(message: Event) -> None:
            data = message.data
            # the order's items are in its first event: read them back from the store
            placed = await store.get_stream(f"shop.order.{data['order_id']}", 0, limit=1)
            missing = [sku for sku, _, _ in placed[0].data["items"] if sku in OUT_OF_STOCK]
            if missing:
                say(f"    warehouse: {data['order_id']} waits for {', '.join(missing)}")
                return
            tracking = f"TRK{run:04d}{data['order_id'].rsplit('-', 1)[-1]}"
            say(f"    warehouse: shipped {data['order_id']} (tracking {tracking})")
            await manager.emit(
                "order.shipped",
                {"order_id": data["order_id"], "customer": data["customer"], "tracking": tracking},
            )

        async with bus:
            say("customers sign up:")
            for customer in CUSTOMERS:
                await manager.emit(
                    "user.signed_up",
                    {
                        "user_id": f"{customer.name}-{run}",
                        "name": customer.name,
                        "email": customer.email,
                    },
                )
            say("orders flow through the EventManager and the EventBus:")
            for number, order in enumerate(ORDERS, start=1):
                await manager.emit(
                    "order.placed",
                    {
                        "order_id": f"o{run}-{number}",
                        "customer": order.customer,
                        "items": [list(item) for item in order.items],
                        "amount": order.total,
                        "card_ok": order.card_ok,
                    },
                )
        failures = list(manager.dead_letters) + list(bus.dead_letters)
        if failures:
            first = failures[0]
            raise EventError(f"demo handler failed on {first.event.type}: {first.exception}")

        streams = sorted(set(recorded))
        say(f"recorded {len(recorded)} events in {len(streams)} streams; one order's history:")
        async for event in store.get_stream(f"shop.order.o{run}-1"):
            say(f"  {event.position} {event.type} {short(event.data)}")

        say("projection 'shop.sales' rebuilt by replaying every run:")
        async with sales_projection(store) as projection:
            report = await projection.rebuild()
            state = projection.state
        for name, figures in sorted(state["customers"].items()):
            say(f"  {name:<6} {figures['orders']:>3} orders  {money(figures['spent']):>10} spent")
        counts = Counter(state["orders"].values())
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        say(f"  orders: {statuses}; revenue {money(state['revenue'])}")
        say(f"  ({report.replayed} events applied, up to global position {report.last_position})")

        say(f"replay of this run only (events since {started.isoformat(timespec='seconds')}):")
        per_type: Counter[str] = Counter()
        async with EventReplay(store) as replay:
            replay.handle("user.#", lambda event: per_type.update([event.type]))
            replay.handle("order.#", lambda event: per_type.update([event.type]))
            this_run = await replay.replay_all(
                start_time=started, streams=["shop.user.*", "shop.order.*"]
            )
        say("  " + ", ".join(f"{n} {kind}" for kind, n in sorted(per_type.items())))
        say(f"  {this_run.replayed} replayed, {this_run.skipped} earlier events skipped")
        say(
            f"done in {time.perf_counter() - began:.2f}s; try: pepperpy-event read "
            f"shop.order.o{run}-1 --store {shown(url)}"
        )


def describe(items: list[list[Any]]) -> str:
    return ", ".join(f"{quantity}x {sku}" for sku, quantity, _ in items)


def short(data: Any) -> str:
    keys = ("customer", "amount", "reason", "tracking")
    return " ".join(f"{key}={data[key]}" for key in keys if key in data)
