"""Bytes in a template are bounded before the work is done, as strings are.

A template reaches bytes through ``str.encode`` or ``int.to_bytes``; their repetition,
padding, joins, replacements and ``%`` formatting made the whole value (hundreds of
megabytes here, gigabytes as easily) before the sandbox measured it and refused it. So
did a str method given its size by keyword (``expandtabs(tabsize=...)``).
"""

from __future__ import annotations

import tracemalloc

import pytest

from pepperpy.event import NotificationSystem, TemplateError

#: bytes the refused templates below would make: far past what a refusal may allocate
HUGE = 100_000_000
#: what a refusal may allocate at most, the template's own work included
ALLOWED = 20_000_000


def _system() -> NotificationSystem:
    notifications = NotificationSystem()
    notifications.add_channel("email", "memory://")
    return notifications


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ (b * n)|length }}", "repeating a bytes"),
        ("{{ (n * b)|length }}", "repeating a bytes"),
        ("{{ b.center(n)|length }}", "bytes.center()"),
        ("{{ b.ljust(n)|length }}", "bytes.ljust()"),
        ("{{ b.rjust(n)|length }}", "bytes.rjust()"),
        ("{{ b.zfill(n)|length }}", "bytes.zfill()"),
        ("{{ '\t'.encode().expandtabs(n)|length }}", "bytes.expandtabs()"),
        ("{{ (t.encode().replace(''.encode(), t.encode()))|length }}", "bytes.replace()"),
        ("{{ s.encode().join([b] * 1000)|length }}", "bytes.join()"),
        ("{{ (0).to_bytes(n, 'big')|length }}", "to_bytes()"),
        ("{{ (0).to_bytes(length=n, byteorder='big')|length }}", "to_bytes()"),
        ("{{ ('%*d'.encode() % (n, 1))|length }}", "formatting with %"),
        ("{{ ('%(w)s'.encode() * 1000 % {'w'.encode(): s.encode()})|length }}", "with %"),
        # keyword arguments are bounded as positional ones are, for str too
        ("{{ '\t'.encode().expandtabs(tabsize=n)|length }}", "bytes.expandtabs()"),
        ("{{ '\t'.expandtabs(tabsize=n)|length }}", "str.expandtabs()"),
    ],
)
def test_bytes_past_the_bounds_are_refused_before_they_are_made(source: str, refused: str) -> None:
    notifications = _system()
    notifications.add_template("bomb", source)
    values = {"b": b"a", "n": HUGE, "s": "x" * 100_000, "t": "x" * 10_000}

    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match="the sandbox refused") as caught:
            notifications.render("bomb", "email", **values)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < ALLOWED, f"{peak} bytes allocated before the refusal"
    assert refused in str(caught.value)


def test_bytes_within_the_bounds_still_render() -> None:
    notifications = _system()
    notifications.add_template(
        "fine",
        "{{ (b * 3).decode() }} {{ b.center(5, '-'.encode()).decode() }} {{ b.zfill(3).decode() }} "
        "{{ ','.encode().join([b, b]).decode() }} {{ (1).to_bytes(2, 'big')|list }} "
        "{{ ('%03d'.encode() % 7).decode() }} {{ b.replace(b, 'bc'.encode()).decode() }} "
        "{{ '\t'.encode().expandtabs(2)|length }}",
    )

    rendered = notifications.render("fine", "email", b=b"a")

    assert rendered.body == "aaa --a-- 00a a,a [0, 1] 007 bc 2"
