"""EventProcessor.middleware()/use() refuse, at registration, what cannot be middleware."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from pepperpy.event import (
    DeadLetterMiddleware,
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    EventValidator,
    LogMiddleware,
    MeasureMiddleware,
    MetricsCollector,
    RateLimitMiddleware,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
    TraceMiddleware,
    ValidateMiddleware,
)
from pepperpy.event._processor import NextHandler

collector = MetricsCollector()


async def with_config(config: str, event: Event, next_handler: NextHandler) -> None:
    event.metadata.setdefault("seen", []).append(config)
    await next_handler(event)


async def one_arg(event: Event) -> None:
    pass


async def keyword_only(event: Event, *, next_handler: NextHandler) -> None:
    await next_handler(event)


class CallableWithTwo:
    def __call__(self, event: Event, next_handler: NextHandler) -> Any:
        event.metadata.setdefault("seen", []).append("instance")
        return next_handler(event)


class CallableWithOne:
    async def __call__(self, event: Event) -> None:
        pass


class Methods:
    async def step(self, event: Event, next_handler: NextHandler) -> None:
        event.metadata.setdefault("seen", []).append("method")
        await next_handler(event)

    async def lonely(self, event: Event) -> None:
        pass


async def star_args(*args: Any) -> None:
    args[0].metadata.setdefault("seen", []).append("star")
    await args[1](args[0])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (DeduplicateMiddleware, r"instance, not the class DeduplicateMiddleware"),
        (LogMiddleware, r"pass LogMiddleware\(\.\.\.\)"),
        (CallableWithTwo, r"not the class CallableWithTwo"),
        (collector.measure, r"\(event, next_handler\).*measure"),
        (lambda e: None, r"\(event, next_handler\).*<lambda>"),
        (one_arg, r"\(event, next_handler\).*one_arg"),
        (keyword_only, r"\(event, next_handler\).*keyword_only"),
        (CallableWithOne(), r"\(event, next_handler\).*CallableWithOne"),
        (Methods().lonely, r"\(event, next_handler\).*lonely"),
        (functools.partial(with_config, "a", None), r"\(event, next_handler\)"),
        (functools.partial(LogMiddleware, "x"), r"\(event, next_handler\)"),
        (42, r"middleware must be callable, got 42"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_what_cannot_be_middleware_is_refused_at_registration(bad: Any, message: str) -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError, match=message):
        processor.middleware(bad)
    with pytest.raises(TypeError, match=message):
        processor.use(bad)
    assert processor._middleware == []


def test_use_registers_nothing_when_one_of_several_is_refused() -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError, match="not the class LogMiddleware"):
        processor.use(TimeoutMiddleware(1.0), LogMiddleware)
    assert processor._middleware == []


async def test_every_shape_of_real_middleware_still_registers_and_runs() -> None:
    validator = EventValidator()

    @validator.schema("job.run")
    class JobRun:
        n: int

    processor = EventProcessor().use(
        LogMiddleware(),
        DeadLetterMiddleware(),
        MeasureMiddleware(collector, "registration"),
        collector.measure("registration_too"),  # an object with as_middleware()
        ValidateMiddleware(validator),
        DeduplicateMiddleware(ttl=60),
        RetryMiddleware(RetryPolicy.exponential(max_attempts=2, base_delay=0.001)),
        TimeoutMiddleware(5.0),
        RateLimitMiddleware(1000.0),
        TraceMiddleware(TracerProvider()),
        functools.partial(with_config, "partial"),
        CallableWithTwo(),
        Methods().step,
        star_args,
    )

    @processor.middleware
    def sync_middleware(event: Event, next_handler: NextHandler) -> Any:
        event.metadata.setdefault("seen", []).append("sync")
        return next_handler(event)

    handled: list[Event] = []
    processor.handle("job.run", handled.append)
    event = Event("job.run", {"n": 1})
    await processor.process(event)
    assert [each.id for each in handled] == [event.id]
    # ValidateMiddleware hands on the validated event: the steps after it mark that one
    assert handled[0].metadata["seen"] == ["partial", "instance", "method", "star", "sync"]
    assert collector.get_metrics("registration").count == 1
    assert collector.get_metrics("registration_too").count == 1
