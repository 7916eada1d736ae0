"""Count options (sizes, bounds, batches) follow one rule (``_options.check_count``).

A count is an int (never a bool, a float, NaN or a str) at least its least value, and
anything else is refused where it is given, naming the option: a value of another type
with ``TypeError`` (docs/errors.md: wrong argument types stay ``TypeError``), an int out
of range with ``ConfigurationError``. ``EventManager`` took
``buffer_size=nan`` (and every emit then waited for ever), ``1.5``, ``True``, and a str
read from the environment failed with a bare ``'<' not supported``; a notification
channel's ``rate_limit=nan`` made the first ``notify()`` wait for ever.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventManager,
    EventReplay,
    EventStore,
    MemoryChannel,
    NotificationSystem,
    Projection,
)
from pepperpy.event.notifications import RateLimit


def _replay(**options: Any) -> None:
    async def run() -> None:
        store = EventStore()
        await store.append("s", Event("a", 1))
        replay = EventReplay(store)
        replay.handle("#", lambda event: None)
        await replay.replay_stream("s", **options)

    asyncio.run(run())


#: (the option's name, a call given its value, whether None is allowed)
COUNTS: list[tuple[str, Callable[[Any], object], bool]] = [
    ("max_listeners", lambda v: EventManager(max_listeners=v), True),
    ("buffer_size", lambda v: EventManager(buffer_size=v), True),
    ("idempotency_size", lambda v: NotificationSystem(idempotency_size=v), False),
    ("burst", lambda v: RateLimit(1, burst=v), False),
    ("batch_size", lambda v: Projection("p", EventStore(), batch_size=v), False),
    ("progress_every", lambda v: _replay(progress_every=v), False),
    ("checkpoint_every", lambda v: _replay(checkpoint_every=v), False),
]

#: values of a wrong type (TypeError) and ints out of range (ConfigurationError)
WRONG_TYPE = [True, False, 1.0, 1.5, math.nan, math.inf, "10", b"10", [1]]
OUT_OF_RANGE = [0, -1, -(10**400)]


@pytest.mark.parametrize(("name", "make", "none_ok"), COUNTS, ids=[c[0] for c in COUNTS])
@pytest.mark.parametrize("value", WRONG_TYPE, ids=repr)
def test_a_count_that_is_not_an_int_is_a_type_error_naming_it(
    name: str, make: Callable[[Any], object], none_ok: bool, value: Any
) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be an int >= 1") as caught:
        make(value)
    assert not isinstance(caught.value, ValueError)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(("name", "make", "none_ok"), COUNTS, ids=[c[0] for c in COUNTS])
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=repr)
def test_an_int_count_below_1_is_a_configuration_error_naming_it(
    name: str, make: Callable[[Any], object], none_ok: bool, value: Any
) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{name} must be an int >= 1") as caught:
        make(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(("name", "make", "none_ok"), COUNTS, ids=[c[0] for c in COUNTS])
def test_a_count_takes_ints_and_none_where_it_means_no_bound(
    name: str, make: Callable[[Any], object], none_ok: bool
) -> None:
    make(1)
    make(10**6)
    if none_ok:
        make(None)
    else:
        with pytest.raises(TypeError, match=rf"^{name} must be an int >= 1, got None"):
            make(None)


def test_the_managers_message_says_none_means_unbounded() -> None:
    with pytest.raises(TypeError, match=r"buffer_size must be an int >= 1 or None"):
        EventManager(buffer_size="100")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"buffer_size must be an int >= 1 or None"):
        EventManager(buffer_size=0)
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError, as it was
        EventManager(max_listeners=0)


def test_max_listeners_1_lets_one_handler_in() -> None:
    manager = EventManager(max_listeners=1)
    manager.on("a", lambda event: None)
    assert manager.max_listeners == 1
    assert EventManager(buffer_size=3).buffer_size == 3


# -- rate limits: counts and seconds --------------------------------------------------

BAD_RATES = [math.nan, math.inf, -math.inf, -1, 0, 0.0, 10**400]


@pytest.mark.parametrize(
    ("rate", "error"),
    [(rate, ConfigurationError) for rate in BAD_RATES] + [(True, TypeError), (b"1", TypeError)],
    ids=repr,
)
def test_a_channels_rate_limit_that_paces_nothing_is_refused_naming_the_channel(
    rate: Any, error: type[Exception]
) -> None:
    notifications = NotificationSystem()
    with pytest.raises(error, match=r"^rate_limit of channel 'sms': ") as caught:
        notifications.add_channel("sms", MemoryChannel(), rate_limit=rate)
    assert type(caught.value) is error
    assert "sms" not in notifications.channels


@pytest.mark.parametrize("count", [*BAD_RATES, 5e-324], ids=repr)
def test_a_rate_limit_count_must_be_a_finite_number_above_0(count: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"rate limit"):
        RateLimit(count)


@pytest.mark.parametrize("count", [True, "10", None], ids=repr)
def test_a_rate_limit_count_that_is_no_number_is_a_type_error(count: Any) -> None:
    with pytest.raises(TypeError, match=r"^a rate limit's count must be a finite number > 0"):
        RateLimit(count)


@pytest.mark.parametrize("per", [math.nan, math.inf, 0, -1], ids=repr)
def test_a_rate_limit_per_is_seconds(per: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"per must be a finite number of seconds > 0"):
        RateLimit(1, per)


@pytest.mark.parametrize("per", [True, "1", None], ids=repr)
def test_a_rate_limit_per_that_is_no_number_is_a_type_error(per: Any) -> None:
    with pytest.raises(TypeError, match=r"per must be a finite number of seconds > 0"):
        RateLimit(1, per)


def test_rate_limits_that_pace_are_still_taken() -> None:
    assert RateLimit(2).interval == 0.5
    assert RateLimit(1.5, 3).interval == 2.0
    assert RateLimit.parse(10).interval == 0.1
    assert RateLimit.parse("100/min").interval == 0.6
    assert RateLimit(5, 1, burst=3).burst == 3


async def test_a_nan_rate_limit_no_longer_makes_notify_wait_for_ever() -> None:
    # the audit's repro: accepted before, and the first notify() never returned
    notifications = NotificationSystem()
    with pytest.raises(ConfigurationError):
        notifications.add_channel("sms", MemoryChannel(), rate_limit=math.nan)
    notifications.add_channel("sms", MemoryChannel(), rate_limit="10/s")
    await asyncio.wait_for(notifications.notify("sms", body="hi", to="+15550001111"), 10)
    await notifications.close()
