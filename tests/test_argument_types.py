"""A wrong argument *type* is a plain ``TypeError``; a right type out of range is not.

docs/errors.md promises it ("Wrong argument types stay plain TypeErrors, as in Python
itself"), yet the store, events, replay and projections raised ``ValueError`` (or
``ConfigurationError``, a ``ValueError``) for ``limit="5"``, ``Event(version="2")``,
``speed="fast"`` or ``retry_for=True``: an ``except TypeError`` around a call with a
value read from the environment missed them, and an ``except ValueError`` meant for a
bad value caught a programming error. A ``bool`` where an int or a number of seconds is
wanted is a wrong type too (``True`` would pass as 1). The messages still name the
parameter and what was given. A stream name that is no str is named as a stream name,
not as "a pattern or topic".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    EventReplay,
    EventStore,
    EventValidator,
    MemoryChannel,
    MetricsCollector,
    NotificationSystem,
    Projection,
)
from pepperpy.event._patterns import PatternIndex
from pepperpy.event.notifications import TemplateLibrary
from pepperpy.event.security import AuditLog, acting_as
from pepperpy.event.store.sqlite import SQLiteBackend


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"
    async with EventStore(url) as opened:
        await opened.append("a.1", {"type": "t.a"})
        yield opened


async def _call(result: object) -> None:
    if isinstance(result, Awaitable):
        await result


def _only(error: BaseException, cls: type[Exception]) -> None:
    """``error`` is a ``cls`` and not the other of TypeError/ValueError."""
    assert isinstance(error, cls)
    other = ValueError if cls is TypeError else TypeError
    assert not isinstance(error, other), f"{type(error).__name__} is a {other.__name__} too"


# -- reads: limit ------------------------------------------------------------------------

READS: dict[str, Callable[[EventStore, Any], object]] = {
    "get_stream": lambda store, limit: store.get_stream("a.1", limit=limit),
    "read_all": lambda store, limit: store.read_all(limit=limit),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("limit", ["5", 5.0, True, b"5"], ids=repr)
async def test_a_limit_of_a_wrong_type_is_a_type_error(
    store: EventStore, read: Callable[[EventStore, Any], object], limit: Any
) -> None:
    with pytest.raises(TypeError, match=r"^limit must be an int >= 0 or None, got ") as caught:
        await _call(read(store, limit))
    _only(caught.value, TypeError)
    assert repr(limit) in str(caught.value)


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
async def test_a_negative_limit_is_a_value_error(
    store: EventStore, read: Callable[[EventStore, Any], object]
) -> None:
    with pytest.raises(ValueError, match=r"^limit must be an int >= 0 or None, got -1$") as caught:
        await _call(read(store, -1))
    _only(caught.value, ValueError)
    assert len(await store.get_stream("a.1", limit=0)) == 0  # 0 is a limit


# -- stream names ------------------------------------------------------------------------

STREAM_CALLS: dict[str, Callable[[EventStore, Any], object]] = {
    "append": lambda store, stream: store.append(stream, {"type": "t.a"}),
    "get_stream": lambda store, stream: store.get_stream(stream),
    "stream_version": lambda store, stream: store.stream_version(stream),
    "save_snapshot": lambda store, stream: store.save_snapshot(stream, {}, 1),
    "load_snapshot": lambda store, stream: store.load_snapshot(stream),
    "delete_stream": lambda store, stream: store.delete_stream(stream),
}


@pytest.mark.parametrize("call", STREAM_CALLS.values(), ids=STREAM_CALLS.keys())
@pytest.mark.parametrize("stream", [123, None, b"a.1", ["a.1"]], ids=repr)
async def test_a_stream_name_that_is_no_str_is_a_type_error_naming_a_stream(
    store: EventStore, call: Callable[[EventStore, Any], object], stream: Any
) -> None:
    with pytest.raises(TypeError) as caught:
        await _call(call(store, stream))
    _only(caught.value, TypeError)
    message = str(caught.value)
    # it said "a pattern or topic must be a str, got int" (and a list, "unhashable")
    assert message.startswith(f"a stream name must be a str, got {type(stream).__name__} ")
    assert repr(stream) in message
    assert "pattern" not in message and "topic" not in message
    assert await store.streams() == ["a.1"]  # nothing was written or deleted


async def test_a_pattern_that_is_no_str_is_a_type_error(store: EventStore) -> None:
    with pytest.raises(TypeError, match=r"^streams must be a pattern \(str\) .*got 123$"):
        await store.streams(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^a pattern must be a str, got int$"):
        Projection("p", store, types=["t.a", 123])  # type: ignore[list-item]


# -- subscriptions: retry_for ------------------------------------------------------------


@pytest.mark.parametrize("retry_for", ["5", True, b"5"], ids=repr)
async def test_a_retry_for_of_a_wrong_type_is_a_type_error(
    store: EventStore, retry_for: Any
) -> None:
    with pytest.raises(TypeError, match=r"^retry_for must be a finite number") as caught:
        store.subscribe(retry_for=retry_for)
    _only(caught.value, TypeError)
    with pytest.raises(TypeError, match=r"^retry_for must be a finite number"):
        await Projection("p", store).follow(retry_for=retry_for)


@pytest.mark.parametrize("retry_for", [-1, float("nan"), float("inf")], ids=repr)
async def test_a_retry_for_out_of_range_is_a_value_error(
    store: EventStore, retry_for: float
) -> None:
    with pytest.raises(ValueError, match=r"^retry_for must be a finite number") as caught:
        store.subscribe(retry_for=retry_for)
    _only(caught.value, ValueError)


# -- events: version ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", 2.0, True, None], ids=repr)
def test_an_event_version_of_a_wrong_type_is_a_type_error(version: Any) -> None:
    message = rf"^event version must be an int from 1 to 2147483647, got {version!r}$"
    with pytest.raises(TypeError, match=message) as caught:
        Event("t.a", version=version)
    _only(caught.value, TypeError)
    with pytest.raises(TypeError, match=message):
        Event("t.a").replace(version=version)


@pytest.mark.parametrize("version", [0, -1, 2**31], ids=repr)
def test_an_event_version_out_of_range_is_a_value_error(version: int) -> None:
    with pytest.raises(ValueError, match=rf"got {version}$") as caught:
        Event("t.a", version=version)
    _only(caught.value, ValueError)
    with pytest.raises(ValueError, match=rf"got {version}$"):
        Event("t.a").replace(version=version)


# -- replay and projections --------------------------------------------------------------

REPLAYS: dict[str, Callable[[EventReplay, Any], Awaitable[object]]] = {
    "replay_stream": lambda replay, options: replay.replay_stream("a.1", **options),
    "replay_all": lambda replay, options: replay.replay_all(**options),
}

WRONG_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"start_pos": "0"}, "start_pos must be an int >= 0, got '0'"),
    ({"start_pos": True}, "start_pos must be an int >= 0, got True"),
    ({"speed": "fast"}, "speed must be a number > 0 or None, got 'fast'"),
    ({"speed": True}, "speed must be a number > 0 or None, got True"),
    ({"speed": 1.0, "max_gap": "1"}, "max_gap must be a finite number of seconds >= 0"),
    ({"progress_every": "10"}, "progress_every must be an int >= 1, got '10'"),
    ({"checkpoint_every": 1.0}, "checkpoint_every must be an int >= 1, got 1.0"),
    ({"checkpoint": 5}, "a checkpoint name must be a non-empty str, got 5"),
]
OUT_OF_RANGE: list[tuple[dict[str, Any], str]] = [
    ({"start_pos": -1}, "start_pos must be an int >= 0, got -1"),
    ({"speed": 0}, "speed must be a number > 0 or None, got 0"),
    ({"speed": float("nan")}, "speed must be a number > 0 or None, got nan"),
    ({"speed": 1.0, "max_gap": -1}, "max_gap must be a finite number of seconds >= 0"),
    ({"progress_every": 0}, "progress_every must be an int >= 1, got 0"),
    ({"checkpoint": ""}, "a checkpoint name must be a non-empty str, got ''"),
]


#: each case: the options, the error they raise (and not the other of TypeError and
#: ValueError: ConfigurationError is a ValueError), the start of its message
REPLAY_CASES = [(o, TypeError, m) for o, m in WRONG_TYPES] + [
    (o, ConfigurationError, m) for o, m in OUT_OF_RANGE
]


@pytest.mark.parametrize("replay_call", REPLAYS.values(), ids=REPLAYS.keys())
@pytest.mark.parametrize(
    ("options", "error", "message"), REPLAY_CASES, ids=[m for _, _, m in REPLAY_CASES]
)
async def test_a_replay_option_of_a_wrong_type_or_out_of_range_is_refused_as_such(
    store: EventStore,
    replay_call: Callable[[EventReplay, Any], Awaitable[object]],
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    ran: list[Event] = []
    async with EventReplay(store) as replay:
        replay.handle("#", ran.append)
        with pytest.raises(error) as caught:
            await replay_call(replay, options)
    _only(caught.value, TypeError if error is TypeError else ValueError)
    assert str(caught.value).startswith(message)
    assert ran == []


async def test_projection_arguments_of_a_wrong_type_are_type_errors(store: EventStore) -> None:
    with pytest.raises(TypeError, match=r"^a projection name must be a non-empty str, got 5$"):
        Projection(5, store)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^batch_size must be an int >= 1, got '100'$"):
        Projection("p", store, batch_size="100")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^batch_size must be an int >= 1, got True$"):
        Projection("p", store, batch_size=True)
    # the right type out of range stays a ConfigurationError
    with pytest.raises(ConfigurationError, match=r"^a projection name must be a non-empty str"):
        Projection("", store)
    with pytest.raises(ConfigurationError, match=r"^batch_size must be an int >= 1, got 0$"):
        Projection("p", store, batch_size=0)


# -- the SQLite backend's options --------------------------------------------------------


def test_sqlite_backend_options_of_a_wrong_type_are_type_errors() -> None:
    # a file never opened: the checks are the constructor's
    with pytest.raises(TypeError, match=r"^synchronous must be a str .*got 1$"):
        SQLiteBackend("never-opened.db", synchronous=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^busy_timeout must be a finite number"):
        SQLiteBackend("never-opened.db", busy_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown SQLite synchronous mode 'FAST'"):
        SQLiteBackend("never-opened.db", synchronous="FAST")
    with pytest.raises(ValueError, match=r"^busy_timeout must be a finite number"):
        SQLiteBackend("never-opened.db", busy_timeout=-1)


# -- versions of schemas and upcasters ---------------------------------------------------


@pytest.mark.parametrize("wrong", ["2", True, 2.0], ids=repr)
def test_a_schema_or_upcaster_version_of_a_wrong_type_is_a_type_error(wrong: Any) -> None:
    validator = EventValidator()
    with pytest.raises(TypeError, match=rf"^version must be an int >= 1, got {wrong!r}$"):
        validator.register("t.a", {"type": "object"}, version=wrong)
    with pytest.raises(TypeError, match=rf"^from_version must be an int >= 1, got {wrong!r}$"):
        validator.upcaster("t.a", wrong, lambda data: data)
    with pytest.raises(TypeError, match=rf"^from_version must be an int >= 1, got {wrong!r}$"):
        EventStore().upcaster("t.a", wrong, lambda data: data)
    assert validator._upcasters == {}  # True was registered as version 1


def test_a_schema_or_upcaster_version_below_1_is_a_configuration_error() -> None:
    validator = EventValidator()
    with pytest.raises(ConfigurationError, match=r"^version must be an int >= 1, got 0$"):
        validator.register("t.a", {"type": "object"}, version=0)
    with pytest.raises(ConfigurationError, match=r"^from_version must be an int >= 1, got 0$"):
        validator.upcaster("t.a", 0, lambda data: data)
    with pytest.raises(ConfigurationError, match=r"^from_version must be an int >= 1, got 0$"):
        EventStore().upcaster("t.a", 0, lambda data: data)


# -- names and counts elsewhere ----------------------------------------------------------


@pytest.mark.parametrize("wrong", [5, None, b"x"], ids=repr)
async def test_names_that_are_no_str_are_type_errors(wrong: Any) -> None:
    calls: list[tuple[str, Callable[[Any], object]]] = [
        ("group must be a non-empty str", lambda v: EventBus().subscribe("a.*", group=v)),
        ("channel name must be a non-empty str", lambda v: NotificationSystem().add_channel(v)),
        ("template name must be a non-empty str", lambda v: TemplateLibrary().add(v, "hi")),
        (
            "channel must be a non-empty str or None",
            lambda v: TemplateLibrary().add("t", "hi", channel=v),
        ),
        ("principal must be a non-empty str", lambda v: acting_as(v).__enter__()),
        ("metric name must be a non-empty str", lambda v: MetricsCollector().record(v, 1.0)),
    ]
    for message, call in calls:
        if wrong is None and message.startswith(("channel must", "group")):
            continue  # None is the generic variant, or no group
        with pytest.raises(TypeError) as caught:
            call(wrong)
        _only(caught.value, TypeError)
        assert str(caught.value).startswith(message), str(caught.value)
    # an empty str is the right type: a bad value
    for message, call in calls:
        with pytest.raises(ValueError, match=f"^{message}") as refused:
            call("")
        _only(refused.value, ValueError)


def test_counts_and_seconds_elsewhere_tell_a_wrong_type_from_a_bad_value() -> None:
    with pytest.raises(TypeError, match=r"^limit must be an int >= 1 or None, got '5'$"):
        MemoryChannel(limit="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limit must be an int >= 1 or None, got 0$"):
        MemoryChannel(limit=0)
    with pytest.raises(TypeError, match=r"^cache_size must be an int >= 0, got True$"):
        PatternIndex(cache_size=True)
    with pytest.raises(TypeError, match=r"^seconds must be a finite number from 0"):
        MetricsCollector().record("m", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^seconds must be a finite number from 0"):
        MetricsCollector().record("m", -1)


def test_an_audit_anchor_count_of_a_wrong_type_is_a_type_error(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.db"))
    try:
        with pytest.raises(TypeError, match=r"^expect_count must be an int >= 0, got '1'$"):
            log.verify(expect_count="1")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match=r"^expect_count must be an int >= 0"):
            log.verify(expect_count=-1)
    finally:
        log.close()
