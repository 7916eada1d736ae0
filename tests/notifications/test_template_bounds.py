"""What a template may compute is bounded, and rendering never stalls the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pepperpy.event import ClosedError, NotificationSystem, TemplateError


def _system() -> NotificationSystem:
    notifications = NotificationSystem()
    notifications.add_channel("email", "memory://")
    return notifications


@pytest.mark.parametrize(
    ("source", "context", "refused"),
    [
        ("{{ (9 ** 9999999) > 0 }}", {}, "9 ** 9999999 would have over 16384 bits"),
        ("{{ (n ** e) > 0 }}", {"n": 7, "e": 20_000_000}, "over 16384 bits"),
        ("{{ (name * times)|length }}", {"name": "ab", "times": 300_000_000}, "repeating a str"),
        ("{{ ([1] * 100000000)|length }}", {}, "repeating a list"),
        ("{{ ('%0200000000d' % 1)|length }}", {}, "width"),
        ("{{ ('%*d' % (200000000, 1))|length }}", {}, "width"),
        ("{{ ('{:200000000}'.format(1))|length }}", {}, "width"),
        ("{{ ('x'|center(200000000))|length }}", {}, "center filter"),
        ("{{ ('x'.ljust(200000000))|length }}", {}, "str.ljust()"),
        ("{{ (s.replace('', s))|length }}", {"s": "x" * 100_000}, "str.replace()"),
        ("{{ (s|replace('', s))|length }}", {"s": "x" * 100_000}, "replace filter"),
        ("{{ (s|indent(900000))|length }}", {"s": "a\nb\nc"}, "indent filter"),
        ("{{ ('%0200000000d'|format(1))|length }}", {}, "width"),
        ("{% for i in range(100000) %}{{ '0123456789' * 2 }}{% endfor %}", {}, "output"),
        ("{{ big }}", {"big": "x" * 2_000_000}, "longer than 1000000"),
    ],
)
def test_work_past_the_bounds_is_refused(
    source: str, context: dict[str, object], refused: str
) -> None:
    notifications = _system()
    notifications.add_template("bomb", source)

    with pytest.raises(TemplateError, match="the sandbox refused") as caught:
        notifications.render("bomb", "email", **context)

    assert refused in str(caught.value)


def test_ordinary_arithmetic_and_formatting_still_render() -> None:
    notifications = _system()
    notifications.add_template(
        "fine",
        "{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ '%05d' % 42 }} {{ range(3)|list }} "
        "{{ range(5)|length }} [{{ 'x'|center(5) }}] {{ 'a-b'.replace('-', '+') }} "
        "{{ '{:>4}'.format(7) }} {{ '%.2f'|format(1.5) }} "
        "{% for i in range(2) %}{{ loop.length }}{% endfor %}",
    )

    body = notifications.render("fine", "email").body

    assert body == "1024 ababab 00042 [0, 1, 2] 5 [  x  ] a+b    7 1.50 22"


def test_a_render_past_its_deadline_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from pepperpy.event.notifications import _sandbox

    monkeypatch.setattr(_sandbox, "RENDER_TIMEOUT", 0.2)
    notifications = _system()
    # 10**10 steps, none of which outputs anything or reaches an operator
    notifications.add_template(
        "slow", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )

    with pytest.raises(TemplateError, match="took over 0.2s to render"):
        notifications.render("slow", "email")


async def _gated_render(
    notifications: NotificationSystem,
) -> tuple[asyncio.Task[object], asyncio.Event, threading.Event, threading.Event]:
    """A notify whose template blocks in ``gate()`` until the test opens it: in a render
    thread, since its first steps take longer than the inline budget."""
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    gate = threading.Event()
    left = threading.Event()

    def wait_at_gate() -> str:
        loop.call_soon_threadsafe(entered.set)
        opened = gate.wait(timeout=10)  # rendered on the loop, this would deadlock
        left.set()
        return "opened" if opened else "timed out"

    def tick() -> str:  # slow enough steps that the render leaves the loop for a thread
        time.sleep(0.002)
        return ""

    notifications.add_template(
        "gated", "{% for i in range(30) %}{{ tick() }}{% endfor %}{{ gate() }}"
    )
    task = asyncio.ensure_future(
        notifications.notify(template="gated", to="a@example.com", gate=wait_at_gate, tick=tick)
    )
    await asyncio.wait_for(entered.wait(), timeout=10)
    return task, entered, gate, left


async def test_the_event_loop_runs_while_a_template_renders() -> None:
    notifications = _system()
    task, _, gate, _ = await _gated_render(notifications)

    gate.set()  # only reachable while the render is still waiting at the gate
    result = await task

    assert result["email"].notification.body == "opened"  # type: ignore[index]
    await notifications.close()


async def test_close_does_not_wait_for_a_render_under_way() -> None:
    notifications = _system()
    task, _, gate, left = await _gated_render(notifications)

    await notifications.close(grace=0.1)
    still_rendering = not left.is_set()
    gate.set()
    result = await task

    assert still_rendering
    outcome = result["email"]  # type: ignore[index]
    assert not outcome.ok
    assert isinstance(outcome.error, ClosedError)  # rendered after close(): not sent


async def test_a_render_still_running_does_not_hold_up_the_next_one() -> None:
    first_system, second_system = _system(), _system()
    first, _, first_gate, _ = await _gated_render(first_system)

    # entered while the first render still waits at its gate: not queued behind it
    second, _, second_gate, _ = await _gated_render(second_system)

    second_gate.set()
    first_gate.set()
    assert (await first).ok and (await second).ok  # type: ignore[attr-defined]
    await first_system.close()
    await second_system.close()


async def test_a_render_that_reaches_no_check_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from pepperpy.event.notifications import _sandbox

    monkeypatch.setattr(_sandbox, "RENDER_TIMEOUT", 0.1)
    notifications = _system()
    task, _, gate, _ = await _gated_render(notifications)  # blocks inside one call

    result = await task
    gate.set()

    outcome = result["email"]  # type: ignore[index]
    assert isinstance(outcome.error, TemplateError)
    assert "'gated' for channel 'email' was still rendering after 1.1s" in str(outcome.error)
    await notifications.close()


async def test_a_quick_template_renders_on_the_loop_without_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pepperpy.event.notifications import _sandbox

    async def no_thread(function: object) -> object:
        raise AssertionError("a quick render was handed to a thread")

    monkeypatch.setattr(_sandbox, "in_thread", no_thread)
    notifications = _system()
    notifications.add_template("hello", "Hello {{ name }}!")
    result = await notifications.notify(template="hello", to="a@example.com", name="Ann")
    assert result["email"].notification.body == "Hello Ann!"  # type: ignore[index]
    await notifications.close()
