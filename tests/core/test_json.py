"""The shared JSON loader: integers orjson would widen to floats are refused, not rounded."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event, SerializationError
from pepperpy.event._json import loads

TOO_WIDE = ["18446744073709551616", "-9223372036854775809", "99999999999999999999999", "9" * 300]


@pytest.mark.parametrize("number", TOO_WIDE)
@pytest.mark.parametrize("kind", [bytes, str, bytearray, memoryview])
def test_an_integer_beyond_64_bits_is_refused(number: str, kind: Any) -> None:
    text = f'{{"a": [1, {{"amount": {number}}}]}}'
    raw = text if kind is str else kind(text.encode())
    with pytest.raises(SerializationError, match="does not fit in 64 bits"):
        loads(raw)


def test_integers_at_the_limits_and_long_digit_runs_elsewhere_read_exactly() -> None:
    text = (
        '{"max": 18446744073709551615, "min": -9223372036854775808, '
        '"text": "12345678901234567890123", "float": 12345678901234567890123.5, "exp": 1e23}'
    )
    assert loads(text) == {
        "max": 2**64 - 1,
        "min": -(2**63),
        "text": "12345678901234567890123",
        "float": 1.2345678901234568e22,
        "exp": 1e23,
    }


def test_event_from_json_refuses_an_integer_the_constructor_refuses() -> None:
    raw = Event("acct.credited", {"amount": 1}, id="e-1").to_json()
    wide = raw.replace(b'"amount":1', b'"amount":99999999999999999999999')
    assert wide != raw
    with pytest.raises(SerializationError, match="99999999999999999999999 does not fit"):
        Event.from_json(wide)
    with pytest.raises(SerializationError, match="does not fit in 64 bits"):
        Event("acct.credited", {"amount": 99999999999999999999999})
    exact = raw.replace(b'"amount":1', b'"amount":18446744073709551615')
    assert Event.from_json(exact).data == {"amount": 2**64 - 1}
