"""RabbitMQ: a number in the URL is plain ASCII, as on Redis.

The transport's own numbers in the query went through ``int()`` and ``float()``, which
also take ``1_6`` (read as 16), spaces around the digits, other scripts' digits (``١٦``,
full-width ``１``) and, for seconds, ``inf`` and ``nan`` (``inf`` then refused later as
not finite, with no word of the URL); aio-pika's ``happy_eyeballs_delay`` alike. A whole
number is now digits 0-9 and seconds decimal notation (an exponent still taken), else a
ConfigurationError naming the option and the value. Nothing here connects.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport

pytest.importorskip("aio_pika")

URL = "amqp://guest:guest@127.0.0.1:5672/"
WHOLE = ["prefetch", "partitions", "max_deliveries", "delivery_limit", "max_message_size"]
SECONDS = ["rebalance_interval", "ungrouped_expiry", "connect_timeout", "reconnect_interval"]
SECONDS += ["handover_grace"]


@pytest.mark.parametrize("name", WHOLE)
@pytest.mark.parametrize("raw", ["1_0", " 3", "3 ", "+3", "٣", "３", "3.0"])
def test_a_whole_number_is_ascii_digits(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RabbitMQTransport(f"{URL}?{name}={quote(raw)}")
    assert str(refused.value) == (
        f"bad {name}={raw!r} in the RabbitMQ URL: {name} must be a whole number in digits 0-9"
    )


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("raw", ["1_0", " 5", "5 ", "+5", "٥", "５", "inf", "nan", "Infinity"])
def test_seconds_are_decimal_notation(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RabbitMQTransport(f"{URL}?{name}={quote(raw)}")
    assert str(refused.value) == (
        f"bad {name}={raw!r} in the RabbitMQ URL: {name} must be a number of seconds in "
        "decimal digits (30, 0.5)"
    )


@pytest.mark.parametrize("raw", ["1_0", " 0.5", "٥", "inf", "1e999"])
def test_the_drivers_seconds_are_decimal_notation(raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RabbitMQTransport(f"{URL}?happy_eyeballs_delay={quote(raw)}")
    assert str(refused.value) == (
        f"URL option happy_eyeballs_delay={raw!r} must be a finite number of seconds >= 0, "
        "in decimal digits (0.25)"
    )


def test_plain_numbers_are_still_taken() -> None:
    transport = RabbitMQTransport(
        f"{URL}?prefetch=007&connect_timeout=.5&reconnect_interval=2.5E-1&happy_eyeballs_delay=0.25"
    )
    assert transport.prefetch == 7
    assert transport.connect_timeout == 0.5
    assert transport.reconnect_interval == 0.25
