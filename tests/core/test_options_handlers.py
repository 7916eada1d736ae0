"""Generator functions are refused as handlers, at registration, everywhere.

A ``def`` or ``async def`` with a stray ``yield`` (copied from a FastAPI dependency or a
pytest fixture) returns a generator when called and runs none of its body. The manager,
the bus, the processor, replay, projections and notifications all took one, "called" it
for every event and did nothing: no error, no dead letter, no log line.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventReplay,
    EventStore,
    NotificationSystem,
    Projection,
)

ran: list[str] = []


def gen_handler(event: Event) -> Iterator[None]:
    ran.append("gen")
    yield


async def async_gen_handler(event: Event) -> AsyncIterator[None]:
    ran.append("async gen")
    yield


def gen_apply(state: Any, event: Event) -> Iterator[None]:
    ran.append("gen apply")
    yield


class GeneratorCall:
    def __call__(self, event: Event) -> Iterator[None]:
        ran.append("instance")
        yield


class AsyncGeneratorMethod:
    async def handle(self, event: Event) -> AsyncIterator[None]:
        ran.append("method")
        yield


GENERATORS: list[Any] = [
    gen_handler,
    async_gen_handler,
    functools.partial(gen_handler),
    GeneratorCall(),
    AsyncGeneratorMethod().handle,
]
IDS = ["def-yield", "async-def-yield", "partial", "__call__", "bound-method"]


def _manager_on(handler: Any) -> None:
    EventManager().on("a", handler)


def _manager_on_decorator(handler: Any) -> None:
    EventManager().on("a")(handler)


def _manager_once(handler: Any) -> None:
    EventManager().once("a", handler)


def _manager_on_error(handler: Any) -> None:
    EventManager().on_error(handler)


def _bus_subscribe(handler: Any) -> None:
    EventBus().subscribe("a.b")(handler)


def _bus_on_error(handler: Any) -> None:
    EventBus().on_error(handler)


def _processor_handle(handler: Any) -> None:
    EventProcessor().handle("a", handler)


def _processor_handle_decorator(handler: Any) -> None:
    EventProcessor().handle("a")(handler)


def _replay_handle(handler: Any) -> None:
    EventReplay(EventStore()).handle("a", handler)


def _replay_handle_decorator(handler: Any) -> None:
    EventReplay(EventStore()).handle("a")(handler)


def _notifications_on(handler: Any) -> None:
    NotificationSystem().on("a", handler)


def _notifications_on_decorator(handler: Any) -> None:
    NotificationSystem().on("a")(handler)


def _notifications_on_error(handler: Any) -> None:
    NotificationSystem().on_error(handler)


def _notifications_on_error_decorator(handler: Any) -> None:
    NotificationSystem().on_error()(handler)


REGISTRATIONS: list[Callable[[Any], None]] = [
    _manager_on,
    _manager_on_decorator,
    _manager_once,
    _manager_on_error,
    _bus_subscribe,
    _bus_on_error,
    _processor_handle,
    _processor_handle_decorator,
    _replay_handle,
    _replay_handle_decorator,
    _notifications_on,
    _notifications_on_decorator,
    _notifications_on_error,
    _notifications_on_error_decorator,
]


@pytest.mark.parametrize("register", REGISTRATIONS, ids=lambda r: r.__name__.lstrip("_"))
@pytest.mark.parametrize("handler", GENERATORS, ids=IDS)
def test_a_generator_function_is_refused_at_registration(
    register: Callable[[Any], None], handler: Any
) -> None:
    with pytest.raises(
        TypeError, match=r"is an? (async )?generator function \(it contains a yield\)"
    ):
        register(handler)
    assert ran == []


@pytest.mark.parametrize(
    "handler", [gen_apply, functools.partial(gen_apply)], ids=["def", "partial"]
)
def test_a_generator_function_is_refused_as_a_projection_handler(handler: Any) -> None:
    projection = Projection("p", EventStore())
    with pytest.raises(TypeError, match=r"is a generator function"):
        projection.on("a", handler)
    with pytest.raises(TypeError, match=r"is a generator function"):
        projection.on("a")(handler)


def test_the_message_names_the_handler() -> None:
    with pytest.raises(TypeError) as caught:
        EventManager().on("a", async_gen_handler)
    assert str(caught.value).startswith(
        "handler async_gen_handler is an async generator function (it contains a yield)"
    )


def test_a_refused_handler_is_not_registered() -> None:
    manager = EventManager()
    with pytest.raises(TypeError):
        manager.on("a", gen_handler)
    assert manager.handlers("a") == []


class AsyncCall:
    async def __call__(self, event: Event) -> None:
        ran.append("async instance")


def returns_a_generator(event: Event) -> Iterator[int]:  # no yield: it runs, and returns one
    ran.append("plain")
    return iter([1])


@pytest.mark.parametrize("register", REGISTRATIONS, ids=lambda r: r.__name__.lstrip("_"))
def test_ordinary_handlers_are_still_taken(register: Callable[[Any], None]) -> None:
    async def coroutine(event: Event) -> None:
        pass

    for handler in (
        coroutine,
        lambda event: None,
        AsyncCall(),
        functools.partial(coroutine),
        returns_a_generator,
        print,
    ):
        register(handler)


@pytest.mark.parametrize("register", REGISTRATIONS, ids=lambda r: r.__name__.lstrip("_"))
def test_a_non_callable_is_still_refused(register: Callable[[Any], None]) -> None:
    with pytest.raises(TypeError, match=r"must be callable, got 42"):
        register(42)


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    ran.clear()
    yield
    ran.clear()
