"""UUIDv7 text from (millisecond, counter): the fast formatter against the bit layout."""

from __future__ import annotations

import random
import threading
import uuid

from hypothesis import given
from hypothesis import strategies as st

from pepperpy.event._ids import format_uuid7


def _reference(unix_ms: int, counter: int, random_bits: int) -> str:
    counter &= (1 << 42) - 1
    value = (
        (unix_ms << 80)
        | (0x7 << 76)
        | ((counter >> 30) << 64)
        | (0b10 << 62)
        | ((counter & ((1 << 30) - 1)) << 32)
        | random_bits
    )
    return str(uuid.UUID(int=value))


@given(
    unix_ms=st.integers(0, (1 << 48) - 1),
    counter=st.integers(0, 1 << 64),
    seed=st.integers(0, 1 << 32),
)
def test_the_text_is_the_rfc_9562_layout_of_time_counter_and_random_bits(
    unix_ms: int, counter: int, seed: int
) -> None:
    random.seed(seed)
    expected = _reference(unix_ms, counter, random.getrandbits(32))
    random.seed(seed)
    text = format_uuid7(unix_ms, counter)
    assert text == expected
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_threads_formatting_different_milliseconds_never_mix_their_times() -> None:
    # the formatter caches the text of the last millisecond; a thread must never see
    # another thread's millisecond in its own id
    errors: list[str] = []

    def work(unix_ms: int) -> None:
        expected = f"{unix_ms:012x}"
        for counter in range(20_000):
            text = format_uuid7(unix_ms + (counter & 1), counter)
            got = text[:8] + text[9:13]
            if got not in (expected, f"{unix_ms + 1:012x}"):
                errors.append(text)
                return

    threads = [threading.Thread(target=work, args=(base,)) for base in (1 << 40, 1 << 44)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@given(
    unix_ms=st.integers(0, (1 << 48) - 1),
    start=st.integers(0, (1 << 43)),
    count=st.integers(0, 40),
    seed=st.integers(0, 1 << 32),
)
def test_a_batch_of_ids_reads_as_the_same_ids_made_one_by_one(
    unix_ms: int, start: int, count: int, seed: int
) -> None:
    from pepperpy.event import _ids

    # counters that cross the 16-bit and 30-bit boundaries the batch formatter caches on
    counters = [start + step * step * 4099 for step in range(count)]
    original = _ids.next_counter
    try:
        _ids.next_counter = iter(counters).__next__
        random.seed(seed)
        batch = _ids.new_uuid7_texts(unix_ms, count)
    finally:
        _ids.next_counter = original
    random.seed(seed)
    assert batch == [format_uuid7(unix_ms, counter) for counter in counters]
