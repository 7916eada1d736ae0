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


def _cannot(name: str, parameters: str) -> str:
    """The message check_handler gives, the one every registration gives."""
    return (
        rf"^middleware {name} cannot be called as middleware\(event, next_handler\): "
        rf"it takes \({parameters}\) \(too many positional arguments\)$"
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (DeduplicateMiddleware, r"instance, not the class DeduplicateMiddleware"),
        (LogMiddleware, r"pass LogMiddleware\(\.\.\.\)"),
        (CallableWithTwo, r"not the class CallableWithTwo"),
        (collector.measure, _cannot("MetricsCollector.measure", "name")),
        (lambda e: None, _cannot("<lambda>", "e")),
        (one_arg, _cannot("one_arg", "event")),
        (keyword_only, _cannot("keyword_only", r"event, \*, next_handler")),
        (CallableWithOne(), _cannot("<.*CallableWithOne object at .*>", "event")),
        (Methods().lonely, _cannot("Methods.lonely", "event")),
        (
            functools.partial(with_config, "a", None),
            _cannot(r"functools\.partial.*", "next_handler"),
        ),
        (functools.partial(LogMiddleware, "x"), _cannot(r"functools\.partial.*", r"\*, level.*")),
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


def _generator_middleware(event: Event, next_handler: NextHandler) -> Any:
    yield next_handler(event)


async def _async_generator_middleware(event: Event, next_handler: NextHandler) -> Any:
    await next_handler(event)
    yield


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        (_generator_middleware, "a generator function"),
        (_async_generator_middleware, "an async generator function"),
    ],
)
def test_generator_function_middleware_is_refused(bad: Any, kind: str) -> None:
    # Calling it returns a generator and runs none of its body: next_handler was never
    # called, so every event was silently dropped before any handler (no error at all).
    processor = EventProcessor()
    with pytest.raises(TypeError, match=rf"^middleware {bad.__qualname__} is {kind} \(it"):
        processor.use(bad)
    assert processor._middleware == []


def _observer(func: Any) -> Any:
    """Turn a one-argument ``func(event)`` into a middleware: the wrapper takes two."""

    @functools.wraps(func)
    async def wrapper(event: Event, next_handler: NextHandler) -> None:
        func(event)
        await next_handler(event)

    return wrapper


async def test_decorated_middleware_is_checked_as_written_not_as_wrapped() -> None:
    # functools.wraps sets __wrapped__ to the one-argument function; what is called is the
    # wrapper, which takes (event, next_handler), so it is middleware (it was refused)
    seen: list[str] = []

    @_observer
    def note(event: Event) -> None:
        seen.append(event.type)

    handled: list[Event] = []
    processor = EventProcessor().use(note)
    processor.handle("job.*", handled.append)
    await processor.process(Event("job.run", {}))
    assert seen == ["job.run"]
    assert [event.type for event in handled] == ["job.run"]


class _Source:
    def __init__(self, step: Any) -> None:
        self.step = step

    def __repr__(self) -> str:
        return "Source()"

    def as_middleware(self) -> Any:
        return self.step


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            one_arg,
            r"^middleware from Source\(\)\.as_middleware\(\) cannot be called as "
            r"middleware\(event, next_handler\): it takes \(event\)",
        ),
        (
            _generator_middleware,
            r"^middleware from Source\(\)\.as_middleware\(\) is a generator function",
        ),
        (None, r"^Source\(\)\.as_middleware\(\) must return a middleware instance, got None$"),
        (
            LogMiddleware,
            r"^Source\(\)\.as_middleware\(\) must return a middleware instance, got <class ",
        ),
    ],
    ids=["one argument", "generator", "None", "class"],
)
def test_what_as_middleware_returns_is_checked_and_named(step: Any, message: str) -> None:
    processor = EventProcessor()
    with pytest.raises(TypeError, match=message):
        processor.use(_Source(step))
    assert processor._middleware == []
