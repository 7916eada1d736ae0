"""Time-ordered event ids: UUIDv7 (RFC 9562) with a monotonic counter.

An id is fixed at creation as ``(unix_ms, counter)`` and formatted lazily on first
access. The 42-bit counter fills ``rand_a`` (12 bits) and the top 30 bits of ``rand_b``
(RFC 9562 section 6.2, method 1); the remaining 32 bits are random. The counter is one
process-wide atomic sequence starting at a random value, so ids are unique across
threads and strictly increasing in creation order within a thread, also inside one
millisecond. If the clock steps backwards the last millisecond is kept, so order holds.
"""

from __future__ import annotations

import itertools
import random
import time

__all__ = ["format_uuid", "format_uuid7", "new_id", "next_sequence"]

_COUNTER_BITS = 42
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_LOW_MASK = (1 << 30) - 1
_VERSION_BITS = 0x7 << 76
_VARIANT_BITS = 0b10 << 62

_sequence = itertools.count(random.getrandbits(_COUNTER_BITS - 2))
_last_ms = 0


def next_sequence(now_ns: int) -> int:
    """Reserve the next ``(unix_ms << 42) | counter`` for wall-clock time ``now_ns``."""
    global _last_ms
    ms = now_ns // 1_000_000
    if ms < _last_ms:
        ms = _last_ms
    else:
        _last_ms = ms
    return (ms << _COUNTER_BITS) | (next(_sequence) & _COUNTER_MASK)


def format_uuid7(sequence: int) -> str:
    """Format a reserved sequence as UUIDv7 text, adding 32 random bits."""
    ms = sequence >> _COUNTER_BITS
    counter = sequence & _COUNTER_MASK
    value = (
        (ms << 80)
        | _VERSION_BITS
        | ((counter >> 30) << 64)
        | _VARIANT_BITS
        | ((counter & _LOW_MASK) << 32)
        | random.getrandbits(32)
    )
    return format_uuid(value)


def format_uuid(value: int) -> str:
    """Format a 128-bit int as canonical ``8-4-4-4-12`` UUID text."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """Return a new UUIDv7 string for the current time."""
    return format_uuid7(next_sequence(time.time_ns()))
