"""``make_event`` in C (``_cevent``) against the Python ``make_event`` it replaces.

The two must be indistinguishable: for any input, the same exception with the same
message, or an event in the same state (the same slots holding equal values of the same
types, ids from the one counter, times from the one clamped clock). Every other test of
the library runs on whichever one ``make_event`` is; this module runs both side by side.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import Event, EventManager, _ids
from pepperpy.event import _event as event_module
from pepperpy.event._event_checks import LONG_TYPE
from pepperpy.event._frozen import FrozenDict, FrozenList

Make = Callable[[str, Any, Mapping[str, Any] | None], Event]
#: the C version, bound also where PEPPERPY_EVENT_PURE_PYTHON keeps make_event in Python;
#: None where the extension was not built (no C compiler at install)
c_make_event: Make | None = event_module._c_make_event()
needs_c = pytest.mark.skipif(c_make_event is None, reason="the _cevent extension is not built")
SLOTS = ("_type", "_data", "_metadata", "_id", "_ts", "_version", "_extra")


def test_the_extension_is_in_use_where_it_was_built() -> None:
    """CI builds the extension (setup.py, gcc): a build that silently fell back to Python
    there would leave the emit path three times slower and this comparison unrun."""
    if os.environ.get("CI"):
        assert c_make_event is not None, "the _cevent extension did not build"
    if c_make_event is not None and not os.environ.get("PEPPERPY_EVENT_PURE_PYTHON"):
        assert event_module.make_event is c_make_event
    else:
        assert event_module.make_event is event_module._make_event_py


def _outcome(make: Make, kind: Any, data: Any, metadata: Any) -> tuple[str, Any]:
    try:
        event = make(kind, data, metadata)
    except Exception as exc:  # the comparison is the point: any exception, both sides
        return "raised", (type(exc), str(exc))
    return "made", event


def _shape(value: Any) -> Any:
    """``value`` with the exact type of every container and leaf, for comparison."""
    if isinstance(value, dict):
        return (type(value), [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value), [_shape(v) for v in value])
    if isinstance(value, float) and value != value:
        return (float, "nan")
    return (type(value), value)


def _assert_same(kind: Any, data: Any, metadata: Any) -> None:
    assert c_make_event is not None
    clock_before = _ids.CLOCK[0]
    py = _outcome(event_module._make_event_py, kind, data, metadata)
    c = _outcome(c_make_event, kind, data, metadata)
    assert py[0] == c[0], (py, c)
    if py[0] == "raised":
        assert py[1] == c[1]
        return
    made_py, made_c = py[1], c[1]
    assert type(made_c) is Event
    assert type(made_c._type) is str
    for name in ("_type", "_version", "_extra"):
        assert getattr(made_c, name) == getattr(made_py, name)
        assert type(getattr(made_c, name)) is type(getattr(made_py, name))
    assert _shape(made_c._data) == _shape(made_py._data)
    assert _shape(made_c._metadata) == _shape(made_py._metadata)
    if metadata is not None:
        assert made_c._metadata is not metadata, "metadata is copied, never shared"
    if type(data) is dict:
        assert made_c._data is not data, "a caller's dict is copied, never shared"
    # one counter and one clock: the C event came after the Python one
    assert type(made_c._id) is int and made_c._id > made_py._id
    assert type(made_c._ts) is int and clock_before <= made_py._ts <= made_c._ts
    assert _ids.CLOCK[0] == made_c._ts
    assert made_c.id > made_py.id
    # and the rest of Event reads it alike
    assert made_c.type == made_py.type and made_c.data == made_py.data
    assert made_c.to_dict().keys() == made_py.to_dict().keys()


class _Types(StrEnum):
    CREATED = "user.created"
    EMPTY = ""


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.integers(),
    st.sampled_from([-(2**63), -(2**63) - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=4),
    st.just(datetime(2024, 5, 1, tzinfo=UTC)),
    st.just(date(2024, 5, 1)),
    st.just(UUID(int=7)),
    st.just(Decimal("1.5")),
    st.just(object()),
    st.just({1, 2}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.dictionaries(st.integers(0, 3), inner, min_size=1, max_size=2),
    ),
    max_leaves=8,
)
data = st.one_of(
    st.dictionaries(st.text(max_size=4), scalars, max_size=5),  # the common, flat payload
    values,
    st.builds(FrozenDict, st.dictionaries(st.text(max_size=3), scalars, max_size=2)),
    st.builds(FrozenList, st.lists(scalars, max_size=2)),
    st.builds(OrderedDict, st.dictionaries(st.text(max_size=3), scalars, max_size=2)),
)
types = st.one_of(
    st.sampled_from(["user.created", "a", "orders.*.x", "", "x" * LONG_TYPE]),
    st.just("é" * (LONG_TYPE + 1)),
    st.just("a." * (LONG_TYPE // 2 + 1)),
    st.text(max_size=6),
    st.integers(),
    st.none(),
    st.just(b"user.created"),
    st.sampled_from(list(_Types)),  # str subclasses: both keep the plain str
)
metadata = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=3), values, max_size=3),
    st.builds(OrderedDict, st.dictionaries(st.text(max_size=3), scalars, max_size=2)),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
)


@needs_c
@settings(max_examples=600, deadline=None)
@given(kind=types, payload=data, meta=metadata)
def test_c_and_python_make_the_same_event_or_the_same_error(
    kind: Any, payload: Any, meta: Any
) -> None:
    _assert_same(kind, payload, meta)


@needs_c
@pytest.mark.parametrize(
    ("kind", "payload", "meta"),
    [
        ("user.created", {"user_id": 42, "email": "a@example.com"}, None),
        ("t", None, {"trace": "x"}),
        ("t", "text", None),
        ("t", {"n": 2**64 - 1, "m": -(2**63)}, None),
        ("t", {"n": 2**64}, None),  # past what JSON numbers carry here: refused
        ("t", {"n": -(2**63) - 1}, None),
        ("t", {"x": float("inf")}, None),
        ("t", {"x": float("nan")}, None),
        ("t", {1: "a"}, None),
        ("t", {"a": {"b": [1, 2, {"c": None}]}}, None),
        ("t", {"a": object()}, None),
        ("t", {"a": 1}, ["not", "a", "mapping"]),
        ("", None, None),
        (None, None, None),
        ("x" * (LONG_TYPE + 1), None, None),
        ("é" * LONG_TYPE, None, None),  # over the byte limit, under the length check
        ("a\x00b", None, None),
    ],
)
def test_c_and_python_agree_on_the_edges(kind: Any, payload: Any, meta: Any) -> None:
    _assert_same(kind, payload, meta)


@needs_c
def test_a_cycle_and_data_too_deep_fail_alike() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    _assert_same("t", {"loop": cyclic}, None)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    _assert_same("t", {"deep": deep}, None)


@needs_c
def test_the_c_version_reads_the_modules_clock_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing ``_event._time_ns`` (as tests freezing time do) reaches both versions,
    and both clamp a clock that steps back to the latest reading handed out."""
    assert c_make_event is not None
    # not ahead of the real clock: the clamp would hold later tests' times there
    readings = [max(time.time_ns(), _ids.CLOCK[0])]
    monkeypatch.setattr(event_module, "_time_ns", lambda: readings[0])
    first = c_make_event("t", None, None)
    assert first._ts == readings[0] == _ids.CLOCK[0]
    readings[0] -= 5_000_000_000  # NTP steps the clock back
    second = c_make_event("t", None, None)
    third = event_module._make_event_py("t", None, None)
    assert second._ts == third._ts == first._ts
    assert first.id < second.id < third.id


@needs_c
def test_a_failing_clock_fails_the_event_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    assert c_make_event is not None

    def broken() -> int:
        raise OSError("no clock")

    monkeypatch.setattr(event_module, "_time_ns", broken)
    for make in (c_make_event, event_module._make_event_py):
        with pytest.raises(OSError, match="no clock"):
            make("t", {"a": 1}, None)
    monkeypatch.setattr(event_module, "_time_ns", lambda: "soon")
    for make in (c_make_event, event_module._make_event_py):
        with pytest.raises(TypeError):
            make("t", None, None)


@needs_c
def test_the_c_version_keeps_no_memory_on_success_or_failure() -> None:
    """Every reference the C code takes is given back: a leak on any path (a half-built
    event dropped after a refusal, a copy not released) would grow traced memory with
    the number of calls."""
    assert c_make_event is not None
    make = c_make_event
    cases: list[tuple[Any, Any, Any]] = [
        ("user.created", {"user_id": 42, "email": "a@example.com"}, {"trace": "t"}),
        ("t", {"a": [1, {"b": 2}]}, None),
        ("t", {"n": 2**64}, None),
        ("t", {"a": object()}, None),
        ("t", {"a": 1}, ["bad"]),
        ("", None, None),
        ("x" * (LONG_TYPE + 1), None, None),
    ]

    def run(times: int) -> None:
        for kind, payload, meta in cases:
            for _ in range(times):
                try:
                    make(kind, payload, meta)
                except (TypeError, ValueError):
                    pass

    # 35,000 calls: a leak of even one small object per call is over 1 MB
    assert _traced_growth(run, 5_000) < 64_000


def _traced_growth(run: Callable[[int], None], times: int) -> int:
    """Bytes still allocated after ``run(times)``, past a warm-up (interned strings, free
    lists, the id text cache) and a cycle collection."""
    run(200)
    gc.collect()
    tracemalloc.start()
    try:
        run(200)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run(times)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@needs_c
def test_the_ids_stay_unique_across_both_versions_and_threads() -> None:
    import threading

    assert c_make_event is not None
    made: list[Event] = []
    lock = threading.Lock()

    def work(make: Make) -> None:
        mine = [make("t", {"n": n}, None) for n in range(2_000)]
        with lock:
            made.extend(mine)

    threads = [
        threading.Thread(target=work, args=(make,))
        for make in itertools.islice(
            itertools.cycle([c_make_event, event_module._make_event_py]), 6
        )
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [event.id for event in made]
    assert len(set(ids)) == len(ids) == 12_000


async def test_emit_builds_its_events_with_make_event() -> None:
    """The manager's emit(type, data) goes through make_event (so through C where built):
    its event is in the state make_event leaves, with data frozen and read-only."""
    manager = EventManager()
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    manager.on("user.*", handler)
    payload = {"user_id": 1}
    event = await manager.emit("user.created", payload, {"trace": "t"})
    payload["user_id"] = 2
    assert seen == [event]
    assert event.data == {"user_id": 1} and type(event.data) is FrozenDict
    with pytest.raises(TypeError):
        event.data["user_id"] = 3  # type: ignore[index]
    assert event.metadata == {"trace": "t"}
    assert event.version == 1 and event.source is None and event.stream is None
    assert [getattr(event, name) is not None for name in SLOTS].count(False) == 1  # _extra


# -- the store's read path: restore() and freeze_parsed() -----------------------------------

c_module = event_module._c_module()


def _parsed_outcome(freeze: Callable[[Any], Any], value: Any) -> tuple[str, Any]:
    try:
        return "made", _shape(freeze(value))
    except Exception as exc:  # the comparison is the point: any exception, both sides
        return "raised", (type(exc), str(exc))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@needs_c
@settings(max_examples=400, deadline=None)
@given(document=json_values)
def test_c_and_python_freeze_parsed_json_alike(document: Any) -> None:
    """What orjson reads from a stored row: the same frozen copy (FrozenDict/FrozenList
    all the way down, never the parsed object itself where it is a container)."""
    import orjson

    from pepperpy.event._frozen import freeze_parsed

    assert c_module is not None
    parsed = orjson.loads(orjson.dumps(document))
    python = _parsed_outcome(freeze_parsed, parsed)
    c = _parsed_outcome(c_module.freeze_parsed, parsed)
    assert python == c
    if isinstance(parsed, dict | list):
        assert c_module.freeze_parsed(parsed) is not parsed


@needs_c
def test_c_freeze_parsed_refuses_data_too_deep_as_python_does() -> None:
    from pepperpy.event._frozen import MAX_DEPTH, freeze_parsed

    assert c_module is not None
    for depth in (MAX_DEPTH, MAX_DEPTH + 1, 600):
        deep: Any = {"leaf": 1}
        for _ in range(depth - 1):
            deep = {"x": deep}
        assert _parsed_outcome(c_module.freeze_parsed, deep) == _parsed_outcome(freeze_parsed, deep)
    assert _parsed_outcome(c_module.freeze_parsed, deep)[0] == "raised"


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    kind=st.text(min_size=1, max_size=5),
    payload=json_values,
    meta=st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    # a stored id is text (an int is a new event's counter, formatted with random bits)
    event_id=st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=5)),
    ts=st.one_of(st.integers(0, 2**62), st.datetimes(timezones=st.just(UTC)).map(lambda d: d)),
    version=st.integers(1, 10),
    extra=st.one_of(
        st.none(),
        st.tuples(
            st.none() | st.text(max_size=3),
            st.none() | st.text(max_size=3),
            st.text(max_size=3),
            st.integers(0, 100),
            st.integers(1, 1000),
            st.just(datetime(2024, 1, 1, tzinfo=UTC)),
        ),
    ),
)
def test_c_and_python_restore_the_same_event(
    kind: str,
    payload: Any,
    meta: dict[str, Any] | None,
    event_id: int | str,
    ts: int | datetime,
    version: int,
    extra: tuple[Any, ...] | None,
) -> None:
    assert c_module is not None
    args = (kind, payload, meta, event_id, ts, version, extra)
    python = event_module._restore_event_py(*args)
    c = c_module.restore(*args)
    assert type(c) is Event
    for name, given_value in zip(SLOTS, args, strict=True):
        assert getattr(c, name) is given_value is getattr(python, name)
    assert c == python and c.id == python.id and c.timestamp == python.timestamp
    assert c.to_dict() == python.to_dict() and repr(c) == repr(python)


@needs_c
def test_c_restore_checks_its_arity_and_keeps_no_memory() -> None:
    assert c_module is not None
    with pytest.raises(TypeError, match="7 arguments"):
        c_module.restore("t", None)  # type: ignore[call-arg]
    args = ("t", FrozenDict({"a": 1}), None, "id-1", 10**18, 1, None)

    def run(times: int) -> None:
        for _ in range(times):
            c_module.restore(*args)
            c_module.freeze_parsed({"a": 1, "b": "x"})
            c_module.freeze_parsed({"a": [1, {"b": 2}]})

    assert _traced_growth(run, 10_000) < 64_000


async def test_a_store_reads_events_through_the_read_path_in_use(tmp_path: Any) -> None:
    """A SQLite store's events read back (with the C restore where built, the inlined
    Python one under PEPPERPY_EVENT_PURE_PYTHON) equal to what was appended, positioned."""
    from pepperpy.event import EventStore

    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        written = [
            Event("user.created", {"id": n, "tags": ["a", {"b": n}]}, {"trace": str(n)})
            for n in range(3)
        ]
        await store.append("user-1", written)
        read = await store.get_stream("user-1")
    assert read == written
    for position, (event, original) in enumerate(zip(read, written, strict=True)):
        assert event.stream == "user-1" and event.position == position
        assert event.global_position is not None and event.recorded_at is not None
        assert event.metadata == original.metadata and event.timestamp == original.timestamp
        assert type(event.data) is FrozenDict and type(event.data["tags"]) is FrozenList
        assert type(event.data["tags"][1]) is FrozenDict


@needs_c
def test_the_c_version_reads_the_system_clock_itself_and_clamps_it() -> None:
    """While ``_event._time_ns`` is still ``time.time_ns``, C reads the same clock
    directly: a reading behind the latest one handed out (CLOCK) is clamped to it, as
    the Python version does, and one ahead of it becomes the latest."""
    assert c_make_event is not None
    assert event_module._time_ns is time.time_ns
    saved = _ids.CLOCK[0]
    ahead = time.time_ns() + 3_600_000_000_000  # an hour ahead: every reading is behind
    try:
        _ids.CLOCK[0] = ahead
        clamped = [c_make_event("t", None, None) for _ in range(3)]
        python = event_module._make_event_py("t", None, None)
        assert [event._ts for event in clamped] == [ahead] * 3 == [python._ts] * 3
        assert _ids.CLOCK[0] == ahead
        assert clamped[0].id < clamped[1].id < clamped[2].id < python.id  # the counter
        _ids.CLOCK[0] = 0
        before = time.time_ns()
        fresh = c_make_event("t", None, None)
        assert before <= fresh._ts <= time.time_ns() and _ids.CLOCK[0] == fresh._ts
    finally:  # not an hour ahead for the tests after this one
        _ids.CLOCK[0] = max(saved, time.time_ns())
