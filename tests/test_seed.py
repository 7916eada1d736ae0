"""The seed document's EventManager and EventBus snippets run exactly as written.

The snippets are copied verbatim from ``seed/event-module.md`` (top-level ``await``
included) and run inside ``async def main()``, as SPEC asks. Other areas keep their seed
snippets in their own test folders and can reuse :func:`run_snippet`.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from pepperpy.event import EventBus, EventManager, RetryPolicy

SEED_MANAGER = """
from pepperpy.event import EventManager

# Create event manager
manager = EventManager()

# Subscribe to event
@manager.on("user.created")
async def handle_user_created(event):
    print(f"New user: {event.data['name']}")

# Create advanced manager with configuration
manager = EventManager(
    max_listeners=100,
    buffer_size=1000,
    retry_policy=RetryPolicy.EXPONENTIAL
)

# Emit event
await manager.emit("user.created", {
    "id": "123",
    "name": "John"
})
"""

SEED_BUS = """
from pepperpy.event import EventBus

# Create bus with topics
bus = EventBus([
    "users.*",
    "orders.*",
    "system.*"
])

# Subscribe to pattern
@bus.subscribe("users.*")
async def handle_user_events(event):
    print(f"User event: {event.type}")

# Publish event
await bus.publish("users.login", {
    "user_id": "123",
    "timestamp": "2023-01-01T12:00:00Z"
})
"""


async def run_snippet(source: str, **names: Any) -> dict[str, Any]:
    """Run ``source`` as the body of ``async def main()``; return main's local variables.

    ``names`` are globals the snippet uses without importing them (the seed's manager
    snippet names ``RetryPolicy`` but only imports ``EventManager``).
    """
    body = textwrap.indent(textwrap.dedent(source).strip("\n"), "    ")
    code = f"async def main():\n{body}\n    return locals()\n"
    namespace: dict[str, Any] = {"__name__": "seed_snippet", **names}
    exec(compile(code, "<seed snippet>", "exec"), namespace)
    result: dict[str, Any] = await namespace["main"]()
    return result


async def test_seed_event_manager_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    scope = await run_snippet(SEED_MANAGER, RetryPolicy=RetryPolicy)
    manager = scope["manager"]
    assert isinstance(manager, EventManager)
    assert manager.max_listeners == 100
    assert manager.buffer_size == 1000
    assert manager.retry_policy is RetryPolicy.EXPONENTIAL
    # As written, the handler sits on the first manager and the emit goes to the second
    # (the name is rebound in between), so nothing is printed.
    assert capsys.readouterr().out == ""
    assert manager.handlers("user.created") == []


async def test_seed_event_manager_handler_prints_when_wired_to_the_emitting_manager(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the same lines with the rebinding removed: the handler receives the event
    wired = SEED_MANAGER.replace(
        "# Create advanced manager with configuration\nmanager = EventManager(",
        "# Create advanced manager with configuration\nadvanced = EventManager(",
    )
    scope = await run_snippet(wired, RetryPolicy=RetryPolicy)
    assert capsys.readouterr().out == "New user: John\n"
    assert scope["advanced"].buffer_size == 1000


async def test_seed_event_bus_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    scope = await run_snippet(SEED_BUS)
    assert capsys.readouterr().out == "User event: users.login\n"
    bus = scope["bus"]
    assert isinstance(bus, EventBus)
    assert bus.topics == ("users.*", "orders.*", "system.*")
    await bus.close()
