"""The shared JSON loader: integers orjson would widen to floats are refused, not rounded."""

from __future__ import annotations

from datetime import time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, SerializationError, _json
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


async def test_a_time_with_a_utc_offset_is_written_as_rfc3339_text_everywhere(
    tmp_path: Path,
) -> None:
    # orjson refuses a time with tzinfo; Event() accepts one, so every encoder must write it
    import datetime as dt

    from pepperpy.event import EventStore

    offset = dt.timezone(dt.timedelta(hours=2))
    data = {"opens": dt.time(9, 30, tzinfo=offset), "at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}
    event = Event("shop.opened", data)
    assert Event.from_json(event.to_json()).data == {
        "opens": "09:30:00+02:00",
        "at": "2024-01-02T00:00:00+00:00",
    }
    for url in ("memory://", f"sqlite:///{tmp_path / 'shop.db'}"):
        async with EventStore(url) as store:
            await store.append("shop.1", event)
            (stored,) = await store.get_stream("shop.1")
        assert stored.data["opens"] == "09:30:00+02:00", url  # stores hold the JSON form


def test_a_time_with_an_offset_encodes_with_the_older_orjson_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # orjson before 3.12 refuses a time with tzinfo saying "datetime's timezone library
    # is not supported" (no "tzinfo" in it); the fallback must recognise both wordings
    real = _json.orjson

    class OlderOrjson:
        JSONEncodeError = real.JSONEncodeError
        OPT_PASSTHROUGH_DATETIME = real.OPT_PASSTHROUGH_DATETIME

        @staticmethod
        def dumps(value: Any, default: Any = None, option: int = 0) -> bytes:
            times = value.values() if isinstance(value, dict) else ()
            offset_time = any(isinstance(v, time) and v.tzinfo is not None for v in times)
            if offset_time and not option & real.OPT_PASSTHROUGH_DATETIME:
                raise real.JSONEncodeError(
                    "datetime's timezone library is not supported: use datetime.timezone.utc"
                )
            return real.dumps(value, default=default, option=option)

    monkeypatch.setattr(_json, "orjson", OlderOrjson)
    offset = timezone(timedelta(hours=2))
    assert _json.dumps({"v": time(9, 30, tzinfo=offset)}) == b'{"v":"09:30:00+02:00"}'
