"""A registration decorator written without its type: ``@manager.on`` above a function.

The function was taken for the type, and the error said "a pattern must be a str, got
function" (``bus.subscribe``: "pattern must be a str, got function"), naming neither the
mistake nor the fix. It now says that the type comes first and shows the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, EventManager, EventProcessor


def registrations() -> list[tuple[str, Callable[[Any], Any], str]]:
    manager = EventManager()
    return [
        ("manager.on", manager.on, "@manager.on('user.created')"),
        ("manager.once", manager.once, "@manager.once('user.created')"),
        ("bus.subscribe", EventBus().subscribe, "@bus.subscribe('orders.*')"),
        ("processor.handle", EventProcessor().handle, "@processor.handle('user.*')"),
    ]


@pytest.mark.parametrize(
    "call, register, fix", registrations(), ids=[case[0] for case in registrations()]
)
def test_a_bare_decorator_says_the_type_comes_first(
    call: str, register: Callable[[Any], Any], fix: str
) -> None:
    async def on_signup(event: Event) -> None: ...

    with pytest.raises(TypeError) as caught:
        register(on_signup)
    message = str(caught.value)
    assert message.startswith(f"{call}() takes the event type or pattern first")
    assert "on_signup" in message
    assert fix in message


def test_other_wrong_types_keep_their_message() -> None:
    with pytest.raises(TypeError, match="a pattern must be a str, got int"):
        EventManager().on(5, print)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="pattern must be a str, got int"):
        EventBus().subscribe(5, print)  # type: ignore[arg-type]
