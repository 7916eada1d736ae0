"""Time-ordered event ids: UUIDv7 (RFC 9562) with a monotonic counter.

An id is fixed at creation as a wall-clock time in nanoseconds plus a counter, and
formatted lazily on first access. The 42-bit counter fills ``rand_a`` (12 bits) and the
top 30 bits of ``rand_b`` (RFC 9562 section 6.2, method 1); the remaining 32 bits are
random. The counter is one process-wide atomic sequence starting at a random value, and
the clock is clamped so it never steps backwards, so ids are unique across threads and
strictly increasing in creation order within a thread, also inside one millisecond.
"""

from __future__ import annotations

import itertools
import os
import random
import time

__all__ = [
    "CLOCK",
    "COUNTER",
    "format_event_id",
    "format_uuid",
    "format_uuid7",
    "new_id",
    "new_uuid7_texts",
    "next_counter",
    "now_ns",
]

_COUNTER_MASK = (1 << 42) - 1
_LOW_MASK = (1 << 30) - 1
_VERSION_BITS = 0x7 << 76
_VARIANT_BITS = 0b10 << 62

#: the id counter, one process-wide sequence (``_cevent`` steps it too)
COUNTER = itertools.count(random.getrandbits(40))
#: the next counter value (an atomic ``itertools.count`` step under the GIL)
next_counter = COUNTER.__next__
#: the latest wall-clock reading handed out, in ns: ``CLOCK[0]``
CLOCK = [0]
_time_ns = time.time_ns


def now_ns() -> int:
    """Wall-clock time in ns, clamped so that it never goes backwards in this process."""
    now = _time_ns()
    if now < CLOCK[0]:
        return CLOCK[0]
    CLOCK[0] = now
    return now


def format_uuid7(unix_ms: int, counter: int) -> str:
    """Format a UUIDv7 from its millisecond time and counter, adding 32 random bits.

    The first 23 characters depend only on the millisecond and the counter's bits above
    the lowest 16, so they are kept from the last call (a cache); only the last 12 are
    formatted each time.
    """
    counter &= _COUNTER_MASK
    cached_ms, cached_high, head = _HEAD[0]
    if unix_ms != cached_ms or counter >> 16 != cached_high:
        head = _head(unix_ms, counter)
    return f"{head}{((counter & 0xFFFF) << 32) | _getrandbits(32):012x}"


def _head(unix_ms: int, counter: int) -> str:
    """The first 23 characters of a UUIDv7 text, ``tttttttt-tttt-7ccc-vccc-``, cached."""
    h = f"{unix_ms & _MS_MASK:012x}"
    low = counter & _LOW_MASK
    head = f"{h[:8]}-{h[8:]}-7{counter >> 30:03x}-{0x8000 | (low >> 16):04x}-"
    _HEAD[0] = (unix_ms, counter >> 16, head)  # one assignment: threads never see half
    return head


#: the last (millisecond, counter >> 16) formatted and its text (see ``_head``)
_HEAD: list[tuple[int, int, str]] = [(-1, -1, "")]
_MS_MASK = (1 << 48) - 1
_getrandbits = random.getrandbits


def format_event_id(unix_ms: int, counter: int) -> str:
    """The text of an event's id kept as (millisecond, counter) until first read.

    As :func:`format_uuid7`, but its 32 low bits are not drawn when the text is made:
    they are a hash of ``counter`` and a random key of the process the counter was
    taken in (:func:`_key_for`). So the text is the same whoever makes it first: a
    second thread reading the id at the same moment, or a child made by ``os.fork()``
    (``multiprocessing``'s fork start method) that was handed the event before its id
    was ever read (drawn at the read, the parent and the child each gave it another id).
    """
    counter_bits = counter & _COUNTER_MASK
    cached_ms, cached_high, head = _HEAD[0]
    if unix_ms != cached_ms or counter_bits >> 16 != cached_high:
        head = _head(unix_ms, counter_bits)
    keys = _KEYS
    key = keys[0][1] if len(keys) == 1 else _key_for(counter)
    return f"{head}{((counter_bits & 0xFFFF) << 32) | (hash((key, counter)) & 0xFFFFFFFF):012x}"


def _new_key() -> int:
    return int.from_bytes(os.urandom(8), "big")


#: (first counter value, key) for the process ids are made in and each process it was
#: forked from: a counter value below the last start was taken before the last fork,
#: by the parent, whose key then makes its bits (see format_event_id)
_KEYS: list[tuple[int, int]] = [(0, _new_key())]


def _key_for(counter: int) -> int:
    """The key of the process that took ``counter`` (see :data:`_KEYS`): the same in
    every thread and in every child forked since; a child has a key of its own for
    what it takes after the fork, so its ids do not share their last bits with the
    parent's."""
    key = _KEYS[0][1]
    for start, forked_key in _KEYS:
        if counter >= start:
            key = forked_key
    return key


def _forked() -> None:
    """In a child made by ``os.fork()``: its counter values from now on get a key of
    its own, so that the parent's and the child's ids do not share their last bits."""
    _KEYS.append((next_counter(), _new_key()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def new_uuid7_texts(unix_ms: int, count: int) -> list[str]:
    """``count`` new UUIDv7 texts for one millisecond, as ``format_uuid7`` would make them."""
    out: list[str] = []
    append = out.append
    cached_ms, cached_high, head = _HEAD[0]
    for _ in range(count):
        counter = next_counter() & _COUNTER_MASK
        if unix_ms != cached_ms or counter >> 16 != cached_high:
            head = _head(unix_ms, counter)
            cached_ms, cached_high = unix_ms, counter >> 16
        append(f"{head}{((counter & 0xFFFF) << 32) | _getrandbits(32):012x}")
    return out


def format_uuid(value: int) -> str:
    """Format a 128-bit int as canonical ``8-4-4-4-12`` UUID text."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """Return a new UUIDv7 string for the current time."""
    return format_uuid7(now_ns() // 1_000_000, next_counter())
