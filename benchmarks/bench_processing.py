"""Validation, metrics and processing overhead.

* EventValidator against pydantic's ``TypeAdapter`` on the same dataclass schema, its
  constraints written with annotated-types so that both enforce them (valid data, and
  invalid data where both report every problem), with raw ``msgspec.convert`` as the
  floor (msgspec ignores annotated-types constraints, so it checks a little less);
* ``MetricsCollector.measure`` on a trivial async handler, as a ratio to the bare handler;
* ``EventProcessor.process`` with no middleware and with a typical stack.

Run: ``python -m benchmarks.bench_processing`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import sys
import time
from typing import Annotated, Any, Literal

import annotated_types
import msgspec
import pydantic

from benchmarks._harness import Result, Runner, compare, machine, table
from pepperpy.event import (
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    EventValidator,
    MetricsCollector,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
    ValidationError,
)


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


@dataclasses.dataclass
class Address:
    street: str
    city: str
    zip: Annotated[str, annotated_types.Len(5, 5)]


@dataclasses.dataclass
class Line:
    sku: str
    quantity: Annotated[int, annotated_types.Ge(1)]
    price: float


@dataclasses.dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    placed_at: dt.datetime
    status: Status
    channel: Literal["web", "shop"]
    address: Address
    lines: list[Line]
    coupon: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)


VALID = {
    "order_id": "o-1001",
    "customer_id": 42,
    "placed_at": "2024-05-01T10:00:00+00:00",
    "status": "new",
    "channel": "web",
    "address": {"street": "Rua A 1", "city": "Lisbon", "zip": "12345"},
    "lines": [
        {"sku": "A-1", "quantity": 1, "price": 9.5},
        {"sku": "B-2", "quantity": 2, "price": 3.25},
        {"sku": "C-3", "quantity": 1, "price": 20.0},
    ],
    "coupon": None,
}
INVALID = {
    "order_id": 1001,
    "customer_id": "42",
    "placed_at": "yesterday",
    "status": "lost",
    "channel": "mail",
    "address": {"street": "Rua A 1", "zip": "123"},
    "lines": [{"sku": "A-1", "quantity": 0, "price": "9.5"}],
}


def _timed(call: Any) -> Runner:
    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - start

    return run


def _timed_failing(call: Any, error: type[BaseException]) -> Runner:
    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            try:
                call()
            except error:
                pass
        return time.perf_counter() - start

    return run


def _validation_contenders(data: dict[str, Any]) -> dict[str, Runner]:
    validator = EventValidator()
    validator.register("order.placed", OrderPlaced)
    adapter = pydantic.TypeAdapter(OrderPlaced)

    async def pepperpy_event(n: int) -> float:
        validate = validator.validate
        start = time.perf_counter()
        for _ in range(n):
            await validate("order.placed", data)
        return time.perf_counter() - start

    async def pydantic_event(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            Event("order.placed", adapter.dump_python(adapter.validate_python(data)))
        return time.perf_counter() - start

    return {
        "pydantic validate_python + dump_python + Event": pydantic_event,
        "msgspec.convert (floor)": _timed(lambda: msgspec.convert(data, OrderPlaced, strict=True)),
        "pydantic TypeAdapter.validate_python": _timed(lambda: adapter.validate_python(data)),
        "pepperpy validator.check (data)": _timed(lambda: validator.check("order.placed", data)),
        "pepperpy await validator.validate (Event)": pepperpy_event,
    }


def _invalid_contenders() -> dict[str, Runner]:
    validator = EventValidator()
    validator.register("order.placed", OrderPlaced)
    adapter = pydantic.TypeAdapter(OrderPlaced)
    pydantic_errors = len(_pydantic_errors(adapter))
    ours = _our_errors(validator)
    assert ours >= pydantic_errors, (ours, pydantic_errors)
    return {
        "pydantic TypeAdapter (all errors)": _timed_failing(
            lambda: adapter.validate_python(INVALID), pydantic.ValidationError
        ),
        "pepperpy validator.check (all problems)": _timed_failing(
            lambda: validator.check("order.placed", INVALID), ValidationError
        ),
    }


def _pydantic_errors(adapter: pydantic.TypeAdapter[Any]) -> list[Any]:
    try:
        adapter.validate_python(INVALID)
    except pydantic.ValidationError as exc:
        return exc.errors()
    raise AssertionError("pydantic accepted invalid data")


def _our_errors(validator: EventValidator) -> int:
    try:
        validator.check("order.placed", INVALID)
    except ValidationError as exc:
        return len(exc.errors)
    raise AssertionError("invalid data accepted")


def _metrics_contenders() -> dict[str, Runner]:
    collector = MetricsCollector()

    async def handler(event: Any) -> None:
        return None

    measured = collector.measure("handler")(handler)
    event = Event("user.created", {"id": 1})

    def loop(target: Any) -> Runner:
        async def run(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await target(event)
            return time.perf_counter() - start

        return run

    return {"bare `await handler(e)`": loop(handler), "`@collector.measure`": loop(measured)}


def _processor_contenders() -> dict[str, Runner]:
    event = Event("user.created", {"id": 1})

    async def handler(event: Any) -> None:
        return None

    bare = EventProcessor()
    bare.handle("user.*", handler)
    stacked = EventProcessor().use(
        MetricsCollector().measure("processing"),
        RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0)),
        TimeoutMiddleware(5.0),
    )
    stacked.handle("user.*", handler)
    dedupe = EventProcessor().use(DeduplicateMiddleware())
    dedupe.handle("user.*", handler)
    fresh = [Event("user.created", {"id": n}) for n in range(1000)]

    def loop(target: Any, events: list[Event] | None = None) -> Runner:
        async def run(n: int) -> float:
            pool = events or [event]
            size = len(pool)
            start = time.perf_counter()
            for i in range(n):
                await target(pool[i % size])
            return time.perf_counter() - start

        return run

    return {
        "bare `await handler(e)`": loop(handler),
        "processor.process, no middleware": loop(bare.process),
        "processor.process, measure+retry+timeout": loop(stacked.process),
        "processor.process, deduplicate (repeats skipped)": loop(dedupe.process, fresh),
    }


async def main(quick: bool = False) -> str:
    n = 5_000 if quick else 50_000
    passes = 3 if quick else 5
    sections = [f"## Processing, validation and metrics\n\nMachine: {machine()}.\n"]

    async def section(title: str, baseline: str, contenders: dict[str, Runner], ops: int) -> None:
        results: list[Result] = await compare(contenders, operations=ops, passes=passes)
        sections.append(f"### {title}\n\n{table(results, baseline=baseline, unit='ops/s')}\n")

    await section(
        "Validating a valid 9-field order (nested object, list of 3 lines, datetime, enum)",
        "pydantic TypeAdapter.validate_python",
        _validation_contenders(VALID),
        n,
    )
    await section(
        "Validating an invalid order, reporting every problem",
        "pydantic TypeAdapter (all errors)",
        _invalid_contenders(),
        n // 5,
    )
    await section(
        "`measure` overhead on a trivial async handler",
        "bare `await handler(e)`",
        _metrics_contenders(),
        n * 4,
    )
    await section(
        "EventProcessor overhead, 1 trivial async handler",
        "bare `await handler(e)`",
        _processor_contenders(),
        n * 2,
    )
    return "\n".join(sections)


if __name__ == "__main__":
    print(asyncio.run(main(quick="--quick" in sys.argv)))
