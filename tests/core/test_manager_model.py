"""Model-based check of EventManager routing: random on/once/off/emit against a tiny model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import Event, EventManager, matches

PATTERNS = ["a", "a.*", "a.#", "#", "*.b", "a.b", "#.b"]
TOPICS = ["a", "a.b", "a.c", "x.b", "a.b.b"]


@dataclass
class Registration:
    pattern: str
    handler: int
    once: bool
    priority: int
    sequence: int


step = st.one_of(
    st.tuples(
        st.just("on"),
        st.sampled_from(PATTERNS),
        st.integers(0, 3),
        st.booleans(),
        st.integers(-2, 2),
    ),
    st.tuples(st.just("off"), st.sampled_from(PATTERNS), st.integers(0, 3)),
    st.tuples(st.just("emit"), st.sampled_from(TOPICS)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=30))
def test_manager_agrees_with_a_model(steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run(steps))


async def _run(steps: list[tuple[Any, ...]]) -> None:
    manager = EventManager()
    calls: list[int] = []

    def recorder(number: int) -> Any:
        return lambda event: calls.append(number)

    handlers = [recorder(n) for n in range(4)]
    model: list[Registration] = []
    for sequence, (op, *args) in enumerate(steps):
        if op == "on":
            pattern, handler, once, priority = args
            manager.on(pattern, handlers[handler], once=once, priority=priority)
            model.append(Registration(pattern, handler, once, priority, sequence))
        elif op == "off":
            pattern, handler = args
            keep = [r for r in model if not (r.pattern == pattern and r.handler == handler)]
            expected_removed = len(keep) != len(model)
            model = keep
            assert await manager.off(pattern, handlers[handler]) is expected_removed
        else:
            (topic,) = args
            due = [r for r in model if matches(r.pattern, topic)]
            due.sort(key=lambda r: (-r.priority, r.sequence))
            model = [r for r in model if not (r.once and r in due)]
            calls.clear()
            event = await manager.emit(topic, {"step": sequence})
            assert isinstance(event, Event)
            assert calls == [r.handler for r in due], (topic, due)
        for topic in TOPICS:
            expected = sorted(
                (r for r in model if matches(r.pattern, topic)),
                key=lambda r: (-r.priority, r.sequence),
            )
            assert manager.handlers(topic) == [handlers[r.handler] for r in expected]
