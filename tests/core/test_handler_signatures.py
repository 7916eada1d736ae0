"""A handler that cannot take the arguments it is called with is refused at registration.

A handler with no parameter (the event forgotten), or with a second required one (a
projection's ``(state, event)`` given to a router), was taken by every registration point
and failed at each event: retried, then dead-lettered, for every event. The signature is
now bound, once, at registration; a callable whose signature cannot be read is taken.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


# -- handlers a router cannot call as handler(event) --------------------------------------


def no_args() -> None:
    ran.append("no_args")


def two_args(event: Event, extra: Any) -> None:
    ran.append("two_args")


async def async_no_args() -> None:
    ran.append("async_no_args")


def keyword_only(*, event: Event) -> None:  # called positionally, so never bindable
    ran.append("keyword_only")


class NoEventCall:
    def __call__(self) -> None:
        ran.append("NoEventCall")


class Service:
    def two(self, event: Event, extra: Any) -> None:
        ran.append("Service.two")

    def one(self, event: Event) -> None:
        ran.append("Service.one")


def three_args(a: Any, b: Any, c: Any) -> None:
    ran.append("three_args")


WRONG: list[tuple[Any, str]] = [
    (no_args, "no_args"),
    (two_args, "two_args"),
    (async_no_args, "async_no_args"),
    (keyword_only, "keyword_only"),
    (lambda: None, "<lambda>"),
    (NoEventCall(), "NoEventCall object"),
    (Service().two, "Service.two"),
    (functools.partial(three_args, 1), "functools.partial"),
]
WRONG_IDS = [
    "no-arg",
    "two-args",
    "async-no-arg",
    "kw-only",
    "lambda",
    "__call__",
    "method",
    "partial",
]


def _manager_on(handler: Any) -> None:
    EventManager().on("a", handler)


def _manager_on_decorator(handler: Any) -> None:
    EventManager().on("a")(handler)


def _manager_once(handler: Any) -> None:
    EventManager().once("a", handler)


def _bus_subscribe(handler: Any) -> None:
    EventBus().subscribe("a.b")(handler)


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


HANDLER_REGISTRATIONS: list[Callable[[Any], None]] = [
    _manager_on,
    _manager_on_decorator,
    _manager_once,
    _bus_subscribe,
    _processor_handle,
    _processor_handle_decorator,
    _replay_handle,
    _replay_handle_decorator,
    _notifications_on,
    _notifications_on_decorator,
]


def _manager_on_error(callback: Any) -> None:
    EventManager().on_error(callback)


def _bus_on_error(callback: Any) -> None:
    EventBus().on_error(callback)


def _notifications_on_error(callback: Any) -> None:
    NotificationSystem().on_error(callback)


def _notifications_on_error_decorator(callback: Any) -> None:
    NotificationSystem().on_error()(callback)


CALLBACK_REGISTRATIONS: list[Callable[[Any], None]] = [
    _manager_on_error,
    _bus_on_error,
    _notifications_on_error,
    _notifications_on_error_decorator,
]


def _id(register: Callable[[Any], None]) -> str:
    return register.__name__.lstrip("_")


@pytest.mark.parametrize("register", HANDLER_REGISTRATIONS, ids=_id)
@pytest.mark.parametrize(("handler", "name"), WRONG, ids=WRONG_IDS)
def test_a_handler_that_cannot_take_the_event_is_refused(
    register: Callable[[Any], None], handler: Any, name: str
) -> None:
    with pytest.raises(
        TypeError, match=r"cannot be called as handler\(event\): it takes \("
    ) as caught:
        register(handler)
    assert name in str(caught.value)
    assert ran == []  # the check binds the signature; it never calls the handler


@pytest.mark.parametrize("register", CALLBACK_REGISTRATIONS, ids=_id)
@pytest.mark.parametrize(("callback", "name"), WRONG, ids=WRONG_IDS)
def test_an_error_callback_that_cannot_take_the_dead_letter_is_refused(
    register: Callable[[Any], None], callback: Any, name: str
) -> None:
    with pytest.raises(TypeError, match=r"cannot be called as callback\(dead_letter\)") as caught:
        register(callback)
    assert name in str(caught.value)


def test_the_message_names_the_handler_the_call_and_the_signature() -> None:
    with pytest.raises(TypeError) as caught:
        EventManager().on("a", two_args)
    assert str(caught.value) == (
        "handler two_args cannot be called as handler(event): it takes (event, extra) "
        "(missing a required argument: 'extra')"
    )
    with pytest.raises(TypeError) as caught:
        EventBus().subscribe("a.b")(no_args)
    assert str(caught.value) == (
        "handler no_args cannot be called as handler(event): it takes () "
        "(too many positional arguments)"
    )


def test_a_refused_handler_is_not_registered() -> None:
    manager = EventManager()
    with pytest.raises(TypeError):
        manager.on("a", no_args)
    processor = EventProcessor()
    with pytest.raises(TypeError):
        processor.handle("a", two_args)
    assert manager.handlers("a") == []
    assert processor.handlers("a") == []


# -- what is taken -------------------------------------------------------------------------


async def async_one(event: Event) -> None:
    ran.append("async_one")


def star_args(*args: Any) -> None:
    ran.append("star_args")


def star_args_kwargs(*args: Any, **kwargs: Any) -> None:
    ran.append("star_args_kwargs")


def with_default(event: Event, extra: Any = None) -> None:
    ran.append("with_default")


class EventCall:
    def __call__(self, event: Event) -> None:
        ran.append("EventCall")


class AsyncEventCall:
    async def __call__(self, event: Event) -> None:
        ran.append("AsyncEventCall")


def injecting(function: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """A decorator that changes the arguments: the wrapper is what gets called."""

    @functools.wraps(function)
    def wrapper(event: Any) -> Any:
        return function(event, "injected")

    return wrapper


@injecting
def injected(event: Event, extra: Any) -> None:
    ran.append(f"injected {extra}")


@functools.lru_cache  # its signature cannot be read without __wrapped__: taken
def cached(event: Event) -> None:
    ran.append("cached")


seen: list[Any] = []

TAKEN: list[Any] = [
    lambda event: ran.append("lambda"),
    async_one,
    functools.partial(two_args, extra=1),
    functools.partial(three_args, 1, 2),
    Service().one,
    EventCall(),
    AsyncEventCall(),
    star_args,
    star_args_kwargs,
    with_default,
    injected,
    seen.append,  # a builtin bound method
    print,  # a C function whose signature cannot be read on every version
]
TAKEN_IDS = [
    "lambda",
    "async",
    "partial-kw",
    "partial-pos",
    "bound-method",
    "__call__",
    "async-__call__",
    "*args",
    "*args-**kwargs",
    "default",
    "wrapping-decorator",
    "list.append",
    "print",
]


@pytest.mark.parametrize("register", HANDLER_REGISTRATIONS + CALLBACK_REGISTRATIONS, ids=_id)
@pytest.mark.parametrize("handler", [*TAKEN, cached], ids=[*TAKEN_IDS, "lru_cache"])
def test_handlers_that_can_take_one_argument_are_taken(
    register: Callable[[Any], None], handler: Any
) -> None:
    register(handler)


async def test_the_handlers_taken_do_run() -> None:
    manager = EventManager()
    for handler in TAKEN[:-2]:  # leave out seen.append and print: they record nothing here
        manager.on("a", handler)
    await manager.emit("a")
    assert list(manager.dead_letters) == []
    assert sorted(ran) == sorted(
        [
            "lambda",
            "async_one",
            "two_args",
            "three_args",
            "Service.one",
            "EventCall",
            "AsyncEventCall",
            "star_args",
            "star_args_kwargs",
            "with_default",
            "injected injected",
        ]
    )


# -- projections: handler(state, event) ----------------------------------------------------


def apply(state: Any, event: Event) -> Any:
    return state


async def async_apply(state: Any, event: Event) -> Any:
    return state


class Apply:
    def __call__(self, state: Any, event: Event) -> Any:
        return state

    def method(self, state: Any, event: Event) -> Any:
        return state


PROJECTION_TAKEN: list[Any] = [
    apply,
    async_apply,
    lambda state, event: state,
    functools.partial(three_args, 1),
    Apply(),
    Apply().method,
    star_args,
    with_default,  # (event, extra=None): two positionals bind
]


@pytest.mark.parametrize("handler", PROJECTION_TAKEN)
def test_a_projection_takes_state_and_event_handlers(handler: Any) -> None:
    projection = Projection("p", EventStore())
    projection.on("a", handler)
    projection.on("b")(handler)


@pytest.mark.parametrize(
    ("handler", "name"),
    [
        (async_one, "async_one"),
        (lambda event: None, "<lambda>"),
        (EventCall(), "EventCall object"),
        (no_args, "no_args"),
        (three_args, "three_args"),
    ],
    ids=["one-arg", "one-arg-lambda", "one-arg-__call__", "no-arg", "three-args"],
)
def test_a_projection_refuses_what_cannot_take_state_and_event(handler: Any, name: str) -> None:
    projection = Projection("p", EventStore())
    expected = r"cannot be called as handler\(state, event\): it takes \("
    with pytest.raises(TypeError, match=expected) as caught:
        projection.on("a", handler)
    assert name in str(caught.value)
    with pytest.raises(TypeError, match=expected):
        projection.on("a")(handler)


async def test_a_projection_applies_a_two_argument_handler() -> None:
    store = EventStore()
    await store.append("s-1", [{"type": "a", "data": {"n": 2}}])
    projection = Projection("p", store, initial=lambda: {"total": 0})

    @projection.on("a")
    def add(state: dict[str, int], event: Event) -> dict[str, int]:
        return {"total": state["total"] + event.data["n"]}

    await projection.run()
    assert projection.state == {"total": 2}


@pytest.fixture(autouse=True)
def _clear() -> Any:
    ran.clear()
    seen.clear()
    yield
    ran.clear()
    seen.clear()
