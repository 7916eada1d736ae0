"""notify() checks its arguments' types at the call: a wrong one is the caller's bug."""

from __future__ import annotations

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem


def _system() -> tuple[NotificationSystem, MemoryChannel]:
    notifications = NotificationSystem()
    inbox = MemoryChannel()
    notifications.add_channel("email", inbox)
    notifications.add_channel("sms", "memory://")
    return notifications, inbox


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"subject": 456, "body": "hi"}, "subject must be a str or None, got 456"),
        ({"body": 123}, "body must be a str or None, got 123"),
        ({"body": b"bytes"}, "body must be a str or None, got b'bytes'"),
        ({"body": "hi", "to": ["a@example.com"]}, "to must be a str, a mapping"),
        ({"body": "hi", "to": {"email": ["a@example.com"]}}, "to must map channel names"),
        ({"body": "hi", "to": {1: "a@example.com"}}, "to must map channel names"),
    ],
)
async def test_a_wrong_type_is_a_type_error_before_anything_is_sent(
    arguments: dict[str, object], named: str
) -> None:
    notifications, inbox = _system()

    with pytest.raises(TypeError, match="notify\\(\\) ") as caught:
        await notifications.notify(**arguments)  # type: ignore[arg-type]

    assert named in str(caught.value)
    assert inbox.outbox == []
    assert list(notifications.dead_letters) == []
    await notifications.close()


async def test_right_types_are_sent() -> None:
    notifications, inbox = _system()

    result = await notifications.notify(
        subject="Hi", body="hello", to={"email": "a@example.com", "sms": "+15550002222"}
    )

    assert result.ok
    assert [(n.recipient, n.subject, n.body) for n in inbox.outbox] == [
        ("a@example.com", "Hi", "hello")
    ]
    await notifications.close()
