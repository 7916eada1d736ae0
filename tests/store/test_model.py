"""A model-based test of the EventStore contract (SPEC §6, docs/store.md) on every backend.

Hypothesis runs random programs of store operations (appends single and batched, as dicts
and ``Event`` objects, with every kind of ``expected_version``, retries by id, concurrent
groups, reads of streams and of the global log with filters, subscriptions' catch-up,
deletes and re-creations, snapshots, reopening the store, a second store on the same
file or database) against a real :class:`EventStore` and against :class:`Model`, a few
lines of plain Python that say what the docs promise. After every step the two must
agree: results, errors (with ``expected`` and ``actual``), what every read returns.

The alphabets are small on purpose (four streams, three types, five explicit ids), so
programs collide: ids come back in the same stream and in others, expectations are right
about as often as wrong, deleted streams are appended to and re-created.

In CI the programs are derandomized (the same every run), so a run can never fail by
chance on something nobody can reproduce. To explore more programs locally, set
``PEPPERPY_STORE_MODEL_EXAMPLES`` (examples per backend; the programs are then random and
a failure is printed as the program that produced it, its calls written out as code)::

    PEPPERPY_STORE_MODEL_EXAMPLES=500 .venv/bin/pytest -q --timeout=0 tests/store/test_model.py

``PEPPERPY_STORE_MODEL_STEPS`` sets the steps per program (default 30).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pepperpy.event import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    Event,
    EventStore,
    StreamDeletedError,
    ValidationError,
)
from pepperpy.event.store import _reader, _sqlite_log
from pepperpy.event.store.base import ExpectedVersion
from tests.conftest import fresh_postgres_database, require_service, unique_name

STREAMS = ("acct.a", "acct.b", "cart.a", "cart.b")
TYPES = ("item.added", "item.removed", "note")
IDS = tuple(f"id-{n}" for n in range(5))
STREAM_PATTERNS: tuple[str | tuple[str, ...] | None, ...] = (
    None,
    "#",
    "acct.*",
    "*.a",
    "cart.b",
    ("acct.a", "cart.#"),
)
TYPE_PATTERNS: tuple[str | tuple[str, ...] | None, ...] = (
    None,
    "item.*",
    "note",
    ("note", "item.removed"),
)

#: the greatest position a store takes
MAX = 2**63 - 1

EXAMPLES = int(os.environ.get("PEPPERPY_STORE_MODEL_EXAMPLES", "0"))
STEPS = int(os.environ.get("PEPPERPY_STORE_MODEL_STEPS", "30"))


# -- the model --------------------------------------------------------------------------


@dataclass
class MStream:
    next_position: int = 0
    first_visible: int = 0
    deleted: bool = False

    @property
    def version(self) -> int | None:
        if self.deleted or self.next_position <= self.first_visible:
            return None
        return self.next_position - 1


@dataclass
class MEvent:
    stream: str
    position: int
    global_position: int
    id: str | None  # None: minted by the store, learnt when first read
    type: str
    n: int  # data is {"n": n}, unique per event made
    #: the event's timestamp: an Event's own; None for a dict, stamped by the store
    #: on each append (and learnt when first read)
    timestamp: datetime | None = None


@dataclass(frozen=True)
class Item:
    """One event of an append, as the program shows it."""

    form: str  # "dict" (the seed's form), "dict+id" or "event"
    id: str | None  # an explicit id (from IDS) or None
    type: str

    def __repr__(self) -> str:
        return f"Item({self.form!r}, {self.id!r}, {self.type!r})"


@dataclass(frozen=True)
class Refused:
    """What the model says an append raises."""

    kind: type[Exception]
    expected: Any = None
    actual: Any = None


class Model:
    """What SPEC §6 and docs/store.md promise, in plain Python."""

    def __init__(self) -> None:
        #: n -> (metadata, version, source, subject, timestamp or None) of the events made
        self.attributes: dict[int, tuple[Any, ...]] = {}
        self.log: list[MEvent] = []
        self.streams: dict[str, MStream] = {}
        self.snapshots: dict[str, tuple[int, Any]] = {}

    def state(self, stream: str) -> MStream:
        return self.streams.get(stream) or MStream()

    def version(self, stream: str) -> int | None:
        return self.state(stream).version

    def visible(self, event: MEvent) -> bool:
        return event.position >= self.streams[event.stream].first_visible

    def stream_events(self, stream: str) -> list[MEvent]:
        return [e for e in self.log if e.stream == stream and self.visible(e)]

    def append(
        self, stream: str, batch: list[tuple[str | None, str, int]], expected: ExpectedVersion
    ) -> AppendResult | Refused:
        """(id or None, type, n) per event."""
        ids = [event_id for event_id, _, _ in batch if event_id is not None]
        if len(ids) != len(set(ids)):
            return Refused(ValidationError)
        state = self.state(stream)
        existing = {e.id: e for e in self.stream_events(stream) if e.id in ids}
        if existing and len(existing) == len(batch):
            # a retry: the original result, that of the append that wrote the last of them
            last = max(existing.values(), key=lambda e: e.position)
            return AppendResult(last.position, last.global_position)
        actual = state.version
        if state.deleted and expected is not NO_STREAM:
            return Refused(StreamDeletedError)
        if expected is NO_STREAM:
            ok = actual is None
        elif expected is STREAM_EXISTS:
            ok = actual is not None
        elif expected is ANY:
            ok = True
        else:
            ok = actual == expected
        if not ok:
            return Refused(ConcurrencyError, expected, actual)
        stream_state = self.streams.setdefault(stream, MStream())
        for event_id, event_type, n in batch:
            if event_id is not None and event_id in existing:
                continue
            position = stream_state.next_position
            timestamp = self.attributes[n][4]
            self.log.append(
                MEvent(stream, position, len(self.log), event_id, event_type, n, timestamp)
            )
            stream_state.next_position += 1
        stream_state.deleted = False
        return AppendResult(stream_state.next_position - 1, len(self.log) - 1)

    def get_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int | None
    ) -> list[MEvent]:
        events = self.stream_events(stream)
        if backwards:
            events = [e for e in reversed(events) if start is None or e.position <= start]
        else:
            events = [e for e in events if start is None or e.position >= start]
        return events if limit is None else events[:limit]

    def read_all(
        self,
        from_position: int | None,
        streams: str | tuple[str, ...] | None,
        types: str | tuple[str, ...] | None,
        limit: int | None,
        backwards: bool = False,
    ) -> list[MEvent]:
        if backwards:
            scanned = self.log[: None if from_position is None else from_position + 1][::-1]
        else:
            scanned = self.log[from_position or 0 :]
        events = [
            e
            for e in scanned
            if self.visible(e) and matches(streams, e.stream) and matches(types, e.type)
        ]
        return events if limit is None else events[:limit]

    def head(self) -> int | None:
        """The newest event's global position, hidden (deleted) ones included."""
        return len(self.log) - 1 if self.log else None

    def stream_names(self, pattern: str | tuple[str, ...] | None) -> list[str]:
        return sorted(
            name
            for name, state in self.streams.items()
            if state.version is not None and matches(pattern, name)
        )

    def delete(self, stream: str) -> bool:
        self.snapshots.pop(stream, None)
        state = self.streams.get(stream)
        if state is None or state.version is None:
            return False
        state.first_visible = state.next_position
        state.deleted = True
        return True

    def save_snapshot(self, stream: str, state: Any, version: int) -> bool:
        """False: refused (``ValueError``), nothing saved."""
        last = self.version(stream)
        if last is None or not self.state(stream).first_visible <= version <= last:
            return False
        self.snapshots[stream] = (version, state)
        return True


def matches(pattern: str | tuple[str, ...] | None, name: str) -> bool:
    """The few patterns the programs use, spelt out (not the library's matcher)."""
    if pattern is None:
        return True
    if isinstance(pattern, tuple):
        return any(matches(one, name) for one in pattern)
    if pattern == "#":
        return True
    if pattern.endswith(".#"):
        head = pattern[:-2]
        return name == head or name.startswith(head + ".")
    want, got = pattern.split("."), name.split(".")
    return len(want) == len(got) and all(w in ("*", g) for w, g in zip(want, got, strict=True))


# -- what programs are made of ----------------------------------------------------------

items = st.builds(
    Item,
    st.sampled_from(("dict", "dict+id", "event", "event")),
    st.one_of(st.none(), st.sampled_from(IDS)),
    st.sampled_from(TYPES),
).map(lambda item: item if item.form != "dict+id" or item.id else Item("dict", None, item.type))
batches = st.lists(items, min_size=1, max_size=3)
#: expectations: ANY, NO_STREAM, STREAM_EXISTS, the stream's version plus a delta (often
#: right), or a small absolute position (often wrong)
expectations = st.one_of(
    st.sampled_from(("ANY", "NO_STREAM", "STREAM_EXISTS")),
    st.tuples(st.just("version"), st.sampled_from((0, 0, 0, -1, 1))),
    st.tuples(st.just("at"), st.one_of(st.integers(0, 6), st.just(MAX))),
)
streams_ = st.sampled_from(STREAMS)
handles = st.integers(0, 1)


@dataclass
class Settings:
    backend: str  # memory, sqlite, sqlite-short-tail, postgres
    database: str | None = None  # postgres: the database holding one schema per program


class StoreMachine(RuleBasedStateMachine):
    """Runs one program against a real store and the model."""

    config: ClassVar[Settings]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.model = Model()
        self.made = 0  # data {"n": made} of the next event
        self.attributes = self.model.attributes
        self.directory: str | None = None
        self.schema: str | None = None
        backend = self.config.backend
        if backend == "memory":
            self.url = "memory://"
        elif backend.startswith("sqlite"):
            self.directory = tempfile.mkdtemp(prefix="pepperpy-model-")
            self.url = f"sqlite:///{self.directory}/events.db"
        else:
            assert self.config.database is not None
            self.schema = unique_name("model")
            self.url = f"{self.config.database}?schema={self.schema}"
        self.stores = [EventStore(self.url)]
        #: the last append that wrote or returned a result: (stream, events, expected)
        self.last_append: tuple[str, Any, ExpectedVersion] | None = None

    @property
    def durable(self) -> bool:
        return self.config.backend != "memory"

    def run(self, awaitable: Any) -> Any:
        async def wrapped() -> Any:
            return await asyncio.wait_for(awaitable, 30)

        return self.runner.run(wrapped())

    def store(self, handle: int) -> EventStore:
        return self.stores[handle % len(self.stores)]

    def name(self, handle: int) -> str:
        return f"store{handle % len(self.stores)}"

    def teardown(self) -> None:
        try:
            for store in self.stores:
                self.run(store.close())
            if self.schema is not None:
                self.run(self._drop_schema())
        finally:
            self.runner.close()
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    async def _drop_schema(self) -> None:
        assert self.config.database is not None
        connection = await asyncpg.connect(self.config.database)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await connection.close()

    # -- helpers ------------------------------------------------------------------------

    def expected(self, stream: str, spec: Any) -> ExpectedVersion:
        if spec == "ANY":
            return ANY
        if spec == "NO_STREAM":
            return NO_STREAM
        if spec == "STREAM_EXISTS":
            return STREAM_EXISTS
        kind, value = spec
        if kind == "at":
            return int(value)
        state = self.model.state(stream)
        base = state.version if state.version is not None else state.next_position - 1
        return max(0, base + value)

    def make(self, batch: list[Item]) -> tuple[list[Any], list[tuple[str | None, str, int]]]:
        """The events to append, and the model's view of them.

        Every event made gets ``data={"n": n}`` for a new ``n``; some carry metadata, a
        source, a subject, a version other than 1 (decided by ``n``), so rows with and
        without them mix in batches and groups. ``self.attributes[n]`` keeps what they
        must read back as.
        """
        events: list[Any] = []
        modelled: list[tuple[str | None, str, int]] = []
        for item in batch:
            n = self.made
            self.made += 1
            data = {"n": n}
            metadata = {"m": n} if n % 2 else {}
            if item.form in ("dict", "dict+id"):
                event: Any = {"type": item.type, "data": data}
                if metadata:
                    event["metadata"] = metadata
                if item.form == "dict+id":
                    event["id"] = item.id
                    if n % 3 == 1:
                        event["source"] = f"src-{n}"
                event_id = item.id if item.form == "dict+id" else None
                self.attributes[n] = (metadata, 1, event.get("source"), None, None)
            else:
                event = Event(
                    item.type,
                    data,
                    metadata,
                    id=item.id,
                    version=1 + n % 2,
                    source=f"src-{n}" if n % 3 == 1 else None,
                    subject=f"sub-{n}" if n % 3 == 2 else None,
                )
                event_id = event.id
                self.attributes[n] = (
                    metadata,
                    event.version,
                    event.source,
                    event.subject,
                    event.timestamp,
                )
            events.append(event)
            modelled.append((event_id, item.type, n))
        return events, modelled

    def snapshot_version(self, stream: str, at: Any) -> int:
        state = self.model.state(stream)
        if at == "last":
            return max(0, state.next_position - 1)
        if at == "first":
            return state.first_visible
        if at == "past":
            return state.next_position
        return int(at)

    def check_append(self, outcome: Any, wanted: AppendResult | Refused, call: str) -> None:
        if isinstance(wanted, AppendResult):
            if isinstance(outcome, BaseException):
                raise AssertionError(f"{call} raised {outcome!r}, the model says {wanted}")
            assert outcome == wanted, f"{call} returned {outcome}, the model says {wanted}"
            return
        assert isinstance(outcome, wanted.kind), (
            f"{call} gave {outcome!r}, the model says {wanted.kind.__name__}"
        )
        if wanted.kind is ConcurrencyError:
            assert isinstance(outcome, ConcurrencyError)
            got = (outcome.expected, outcome.actual)
            assert got == (wanted.expected, wanted.actual), (
                f"{call}: ConcurrencyError(expected, actual) = {got}, the model says "
                f"{(wanted.expected, wanted.actual)}"
            )

    def check_events(self, got: list[Event], wanted: list[MEvent], call: str) -> None:
        for event, model in zip(got, wanted, strict=False):
            if event.stream != model.stream or event.position != model.position:
                continue  # a mismatch: reported below
            if model.id is None:
                model.id = event.id  # minted by the store: the model learns it now
            if model.timestamp is None:  # stamped by the store: learnt too
                model.timestamp = event.timestamp
        seen = [
            (
                e.stream,
                e.position,
                e.global_position,
                e.id,
                e.type,
                dict(e.data),
                (dict(e.metadata), e.version, e.source, e.subject, e.timestamp),
            )
            for e in got
        ]
        expected = [
            (
                e.stream,
                e.position,
                e.global_position,
                e.id,
                e.type,
                {"n": e.n},
                (*self.model.attributes[e.n][:4], e.timestamp),
            )
            for e in wanted
        ]
        assert seen == expected, f"{call}:\n got    {seen}\n wanted {expected}"
        assert all(e.recorded_at is not None for e in got), call

    async def _read(self, reader: Any, iterate: bool) -> list[Event]:
        if iterate:
            return [event async for event in reader]
        return list(await reader)

    def _append(self, store: EventStore, stream: str, events: Any, expected: Any) -> Any:
        async def go() -> Any:
            try:
                return await store.append(stream, events, expected_version=expected)
            except (ConcurrencyError, StreamDeletedError, ValidationError) as exc:
                return exc

        return self.run(go())

    # -- appending ----------------------------------------------------------------------

    @rule(stream=streams_, batch=batches, single=st.booleans(), spec=expectations, handle=handles)
    def append(self, stream: str, batch: list[Item], single: bool, spec: Any, handle: int) -> None:
        expected = self.expected(stream, spec)
        events, modelled = self.make(batch)
        argument = events[0] if single and len(events) == 1 else events
        call = (
            f"{self.name(handle)}.append({stream!r}, {argument!r}, expected_version={expected!r})"
        )
        note(call)
        outcome = self._append(self.store(handle), stream, argument, expected)
        wanted = self.model.append(stream, modelled, expected)
        self.check_append(outcome, wanted, call)
        if isinstance(wanted, AppendResult):
            self.last_append = (stream, argument, expected)

    @rule(
        stream=streams_,
        batch=st.lists(
            st.builds(
                Item,
                st.sampled_from(("dict+id", "event")),
                st.sampled_from(IDS),
                st.sampled_from(TYPES),
            ),
            min_size=1,
            max_size=3,
        ),
        spec=expectations,
        handle=handles,
    )
    def append_by_id(self, stream: str, batch: list[Item], spec: Any, handle: int) -> None:
        """An append of events with ids from the small pool only: retries, partial
        retries and ids of other streams and of deleted incarnations."""
        self.append(stream, batch, False, spec, handle)

    @rule(stream=streams_, batch=batches, spec=expectations, handle=handles)
    def append_more(self, stream: str, batch: list[Item], spec: Any, handle: int) -> None:
        """Appends again (so that streams grow and collide more than they are read)."""
        self.append(stream, batch, True, spec, handle)

    @precondition(lambda self: self.last_append is not None)
    @rule(handle=handles)
    def retry_last_append(self, handle: int) -> None:
        """The same call again (a retry after a lost reply): events with ids are found."""
        assert self.last_append is not None
        stream, argument, expected = self.last_append
        events = argument if isinstance(argument, list) else [argument]
        modelled: list[tuple[str | None, str, int]] = []
        fresh = []  # dicts without id get new ids (and data) on every append
        for event in events:
            if isinstance(event, Event):
                modelled.append((event.id, event.type, event.data["n"]))
                fresh.append(event)
            elif "id" in event:
                modelled.append((event["id"], event["type"], event["data"]["n"]))
                fresh.append(event)
            else:
                copy = {"type": event["type"], "data": {"n": self.made}}
                self.attributes[self.made] = ({}, 1, None, None, None)
                modelled.append((None, event["type"], self.made))
                self.made += 1
                fresh.append(copy)
        again = fresh if isinstance(argument, list) else fresh[0]
        call = (
            f"{self.name(handle)}.append({stream!r}, {again!r}, "
            f"expected_version={expected!r})  # retry"
        )
        note(call)
        outcome = self._append(self.store(handle), stream, again, expected)
        self.check_append(outcome, self.model.append(stream, modelled, expected), call)

    @rule(appends=st.lists(st.tuples(streams_, batches, expectations), min_size=2, max_size=5))
    def append_concurrently(self, appends: list[tuple[str, list[Item], Any]]) -> None:
        """Appends started together on one store (one group commit): decided in order."""
        store = self.stores[0]
        calls = []
        for stream, batch, spec in appends:
            # expectations are taken before any of them runs, as concurrent callers would
            expected = self.expected(stream, spec)
            events, modelled = self.make(batch)
            calls.append((stream, events, modelled, expected))
        note(
            "await asyncio.gather("
            + ", ".join(
                f"store0.append({s!r}, {e!r}, expected_version={x!r})" for s, e, _, x in calls
            )
            + ", return_exceptions=True)"
        )

        async def go() -> list[Any]:
            await store.stream_version(STREAMS[0])  # opened: every append takes the fast path
            return await asyncio.gather(
                *(store.append(s, e, expected_version=x) for s, e, _, x in calls),
                return_exceptions=True,
            )

        outcomes = self.run(go())
        for (stream, events, modelled, expected), outcome in zip(calls, outcomes, strict=True):
            call = f"concurrent append({stream!r}, {events!r}, expected_version={expected!r})"
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, ConcurrencyError | StreamDeletedError | ValidationError
            ):
                raise outcome
            self.check_append(outcome, self.model.append(stream, modelled, expected), call)

    @precondition(lambda self: self.config.backend != "postgres")
    @rule(
        writes=st.lists(
            st.one_of(
                st.tuples(st.just("append"), streams_, batches, expectations),
                st.tuples(st.just("delete"), streams_),
                st.tuples(
                    st.just("snapshot"), streams_, st.sampled_from(("last", "first", "past"))
                ),
            ),
            min_size=2,
            max_size=6,
        )
    )
    def write_concurrently(self, writes: list[tuple[Any, ...]]) -> None:
        """Appends, deletes and snapshots started together on one store, decided in order.

        The memory backend runs each at once; SQLite's writer takes them as one group
        (the appends in runs, the other writes each in a savepoint). PostgreSQL writes
        deletes and snapshots on connections of their own, beside the group commit, so
        their order there is not the order they were started in: appends only there.
        """
        store = self.stores[0]
        planned: list[tuple[str, Any, Any]] = []
        for write in writes:
            if write[0] == "append":
                _, stream, batch, spec = write
                expected = self.expected(stream, spec)
                events, modelled = self.make(batch)
                planned.append(("append", stream, (events, modelled, expected)))
            elif write[0] == "delete":
                planned.append(("delete", write[1], None))
            else:
                version = self.snapshot_version(write[1], write[2])
                planned.append(("snapshot", write[1], (version, {"made": self.made})))
                self.made += 1
        note(f"await asyncio.gather({planned!r}, return_exceptions=True)")

        def start(kind: str, stream: str, args: Any) -> Any:
            if kind == "append":
                return store.append(stream, args[0], expected_version=args[2])
            if kind == "delete":
                return store.delete_stream(stream)
            return store.save_snapshot(stream, args[1], args[0])

        async def go() -> list[Any]:
            await store.stream_version(STREAMS[0])  # opened: nothing waits before its write
            return await asyncio.gather(*(start(*p) for p in planned), return_exceptions=True)

        outcomes = self.run(go())
        for (kind, stream, args), outcome in zip(planned, outcomes, strict=True):
            call = f"concurrent {kind} {stream!r} {args!r}"
            if kind == "append":
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, ConcurrencyError | StreamDeletedError | ValidationError
                ):
                    raise outcome
                self.check_append(outcome, self.model.append(stream, args[1], args[2]), call)
            elif kind == "delete":
                assert outcome == self.model.delete(stream), f"{call} returned {outcome!r}"
            else:
                if outcome is not None and not isinstance(outcome, ValueError):
                    raise outcome
                saved = self.model.save_snapshot(stream, args[1], args[0])
                assert (outcome is None) == saved, f"{call} gave {outcome!r}, model saves: {saved}"

    # -- reading ------------------------------------------------------------------------

    @rule(
        stream=streams_,
        start=st.one_of(st.none(), st.integers(0, 8), st.just(MAX)),
        backwards=st.booleans(),
        limit=st.one_of(st.none(), st.integers(0, 4)),
        iterate=st.booleans(),
        handle=handles,
    )
    def get_stream(
        self,
        stream: str,
        start: int | None,
        backwards: bool,
        limit: int | None,
        iterate: bool,
        handle: int,
    ) -> None:
        call = (
            f"{self.name(handle)}.get_stream({stream!r}, {start!r}, "
            f"backwards={backwards}, limit={limit})"
        )
        note(call)
        reader = self.store(handle).get_stream(stream, start, backwards=backwards, limit=limit)
        got = self.run(self._read(reader, iterate))
        self.check_events(got, self.model.get_stream(stream, start, backwards, limit), call)

    @rule(
        from_position=st.one_of(st.none(), st.integers(0, 12), st.just(MAX)),
        backwards=st.booleans(),
        streams=st.sampled_from(STREAM_PATTERNS),
        types=st.sampled_from(TYPE_PATTERNS),
        limit=st.one_of(st.none(), st.integers(0, 5)),
        iterate=st.booleans(),
        handle=handles,
    )
    def read_all(
        self,
        from_position: int | None,
        backwards: bool,
        streams: str | tuple[str, ...] | None,
        types: str | tuple[str, ...] | None,
        limit: int | None,
        iterate: bool,
        handle: int,
    ) -> None:
        call = (
            f"{self.name(handle)}.read_all({from_position}, backwards={backwards}, "
            f"streams={streams!r}, types={types!r}, limit={limit})"
        )
        note(call)
        reader = self.store(handle).read_all(
            from_position,
            backwards=backwards,
            streams=list(streams) if isinstance(streams, tuple) else streams,
            types=list(types) if isinstance(types, tuple) else types,
            limit=limit,
        )
        got = self.run(self._read(reader, iterate))
        wanted = self.model.read_all(from_position, streams, types, limit, backwards)
        self.check_events(got, wanted, call)

    @rule(
        from_position=st.one_of(st.integers(0, 12), st.just(MAX)),
        streams=st.sampled_from(STREAM_PATTERNS),
        types=st.sampled_from(TYPE_PATTERNS),
        handle=handles,
    )
    def subscribe(
        self,
        from_position: int,
        streams: str | tuple[str, ...] | None,
        types: str | tuple[str, ...] | None,
        handle: int,
    ) -> None:
        """A subscription's catch-up yields what read_all does, then its position is past it."""
        call = (
            f"{self.name(handle)}.subscribe({from_position}, streams={streams!r}, types={types!r})"
        )
        note(call)
        wanted = self.model.read_all(from_position, streams, types, None)
        subscription = self.store(handle).subscribe(
            from_position,
            streams=list(streams) if isinstance(streams, tuple) else streams,
            types=list(types) if isinstance(types, tuple) else types,
        )

        async def go() -> list[Event]:
            try:
                return [await anext(subscription) for _ in wanted]
            finally:
                await subscription.aclose()

        got = self.run(go())
        self.check_events(got, wanted, call)
        if wanted:
            assert subscription.position == wanted[-1].global_position + 1, call

    @rule(pattern=st.sampled_from(STREAM_PATTERNS), handle=handles)
    def streams(self, pattern: str | tuple[str, ...] | None, handle: int) -> None:
        if isinstance(pattern, tuple):
            return  # streams() takes one pattern
        call = f"{self.name(handle)}.streams({pattern!r})"
        note(call)
        store = self.store(handle)
        got = self.run(store.streams() if pattern is None else store.streams(pattern))
        assert got == self.model.stream_names(pattern), call

    @rule(stream=streams_, handle=handles)
    def stream_version(self, stream: str, handle: int) -> None:
        call = f"{self.name(handle)}.stream_version({stream!r})"
        note(call)
        got = self.run(self.store(handle).stream_version(stream))
        assert got == self.model.version(stream), (
            f"{call} = {got}, model {self.model.version(stream)}"
        )

    # -- deleting and snapshots ---------------------------------------------------------

    @rule(stream=streams_, handle=handles)
    def delete_stream(self, stream: str, handle: int) -> None:
        call = f"{self.name(handle)}.delete_stream({stream!r})"
        note(call)
        got = self.run(self.store(handle).delete_stream(stream))
        assert got == self.model.delete(stream), call

    @rule(
        stream=streams_,
        at=st.one_of(st.sampled_from(("last", "first", "past")), st.integers(0, 6)),
        handle=handles,
    )
    def save_snapshot(self, stream: str, at: Any, handle: int) -> None:
        version = self.snapshot_version(stream, at)
        value = {"made": self.made}
        call = f"{self.name(handle)}.save_snapshot({stream!r}, {value!r}, {version})"
        note(call)

        async def go() -> ValueError | None:
            try:
                await self.store(handle).save_snapshot(stream, value, version)
            except ValueError as exc:
                return exc
            return None

        refused = self.run(go())
        saved = self.model.save_snapshot(stream, value, version)
        assert (refused is None) == saved, f"{call}: refused={refused!r}, the model saves: {saved}"

    @rule(stream=streams_, handle=handles)
    def load_snapshot(self, stream: str, handle: int) -> None:
        call = f"{self.name(handle)}.load_snapshot({stream!r})"
        note(call)
        snapshot = self.run(self.store(handle).load_snapshot(stream))
        got = None if snapshot is None else (snapshot.version, snapshot.state)
        assert got == self.model.snapshots.get(stream), call
        if snapshot is not None:
            assert snapshot.stream == stream

    # -- the store's life ---------------------------------------------------------------

    @precondition(lambda self: self.durable)
    @rule()
    def reopen(self) -> None:
        """Close every store and open one again on the same file or database."""
        note("close every store; store0 = EventStore(url)")
        for store in self.stores:
            self.run(store.close())
        self.stores = [EventStore(self.url)]

    @precondition(lambda self: self.durable and len(self.stores) == 1)
    @rule()
    def open_second_store(self) -> None:
        """A second store on the same file or database (another process, as far as it
        knows): each sees the other's writes."""
        note("store1 = EventStore(url)")
        self.stores.append(EventStore(self.url))

    @precondition(lambda self: len(self.stores) == 2)
    @rule(which=handles)
    def close_one_store(self, which: int) -> None:
        note(f"close store{which}; the other becomes store0")
        self.run(self.stores.pop(which).close())

    # -- after every step ---------------------------------------------------------------

    @invariant()
    def the_log_and_the_streams_agree(self) -> None:
        store = self.stores[-1]
        got = self.run(self._read(store.read_all(), False))
        self.check_events(got, self.model.read_all(0, None, None, None), "read_all()")
        assert self.run(store.streams()) == self.model.stream_names(None), "streams()"
        assert self.run(store.head()) == self.model.head(), "head()"


# -- running it on every backend --------------------------------------------------------


@pytest.fixture(scope="module")
def model_database() -> Iterator[str]:
    """One PostgreSQL database for the module; each program gets its own schema in it."""
    require_service("postgres")
    with fresh_postgres_database("postgresql://postgres@127.0.0.1:5432") as url:
        yield url


#: examples per backend in CI (derandomized): bounded, about 60 s for all of them
CI_EXAMPLES = {"memory": 300, "sqlite": 100, "sqlite-short-tail": 60, "postgres": 40}


@pytest.mark.parametrize(
    "backend",
    [
        "memory",
        "sqlite",
        "sqlite-short-tail",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_the_store_behaves_like_its_model(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = request.getfixturevalue("model_database") if backend == "postgres" else None
    if backend == "sqlite-short-tail":
        # the tail indexed every 3 events: reads and id lookups cross the index's edge
        monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 3)

    # pages of a few events, so that readers and subscriptions page across deleted
    # (hidden) events, filters and limits even in short programs
    monkeypatch.setattr(_reader, "_ITERATE_PAGE", 2)
    monkeypatch.setattr(_reader, "_COLLECT_PAGE", 3)

    class Machine(StoreMachine):
        config = Settings(backend, database)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES or CI_EXAMPLES[backend],
            stateful_step_count=STEPS,
            derandomize=not EXAMPLES,
            database=None if not EXAMPLES else settings.default.database,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
