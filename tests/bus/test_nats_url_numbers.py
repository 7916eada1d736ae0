"""NATS: a number in the URL is plain ASCII, as on Redis.

The query's numbers went through ``int()`` and ``float()``, which also take ``1_6`` (read
as 16), spaces around the digits, other scripts' digits (``١٦``, full-width ``１``) and,
for seconds, ``inf`` and ``nan``: ``?partitions=1_6`` made 16 partitions, ``?ack_wait=
%205%20`` five seconds. None of these is what a URL's author writes for a number. A whole
number is now digits 0-9 and seconds decimal notation (an exponent still taken), else a
ConfigurationError naming the option and the value. Nothing here connects.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.transports.nats import NatsTransport

pytest.importorskip("nats")

WHOLE = ["replicas", "max_deliveries", "max_deliver", "max_ack_pending", "partitions"]
WHOLE += ["max_outstanding_pings"]
SECONDS = ["ack_wait", "inactive_threshold", "publish_timeout", "connect_timeout"]
SECONDS += ["reconnect_wait", "ping_interval", "max_age", "lane_ack_wait"]


@pytest.mark.parametrize("name", WHOLE)
@pytest.mark.parametrize("raw", ["1_0", " 3", "3 ", "+3", "٣", "３", "3.0", "0x3"])
def test_a_whole_number_is_ascii_digits(name: str, raw: str) -> None:
    message = f"bad {name}={raw!r} in the NATS URL: {name} must be a whole number in digits 0-9"
    with pytest.raises(ConfigurationError) as refused:
        NatsTransport(f"nats://127.0.0.1:4222?{name}={quote(raw)}")
    assert str(refused.value) == message


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("raw", ["1_0", " 5", "5 ", "+5", "٥", "５", "inf", "nan", "Infinity"])
def test_seconds_are_decimal_notation(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        NatsTransport(f"nats://127.0.0.1:4222?{name}={quote(raw)}")
    assert str(refused.value) == (
        f"bad {name}={raw!r} in the NATS URL: {name} must be a number of seconds in "
        "decimal digits (30, 0.5)"
    )


@pytest.mark.parametrize(("raw", "value"), [("007", 7), ("12", 12)])
def test_plain_digits_are_still_taken(raw: str, value: int) -> None:
    assert NatsTransport(
        f"nats://127.0.0.1:4222?max_ack_pending={raw}"
    ).options.max_ack_pending == (value)


@pytest.mark.parametrize(("raw", "value"), [("5", 5.0), (".5", 0.5), ("3.", 3.0), ("2.5E-1", 0.25)])
def test_decimal_notation_is_still_taken(raw: str, value: float) -> None:
    assert NatsTransport(f"nats://127.0.0.1:4222?ack_wait={raw}").options.ack_wait == value
