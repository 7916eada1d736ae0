"""Projections: named read models folded from the event log, with exactly-once state.

A :class:`Projection` applies events from the store's global log to a JSON-able state
with handlers ``(state, event) -> new state | None`` (return a new state, or mutate the
given one and return None). Its state and the global position it has reached are saved
*together*, in one transaction, every ``batch_size`` events and at the end of a run.

On SQLite and PostgreSQL that transaction lives in the event store's own database (a
table written through the projection's own connection), so a crash at any moment leaves
state and position consistent: resuming re-applies exactly the events whose effect was
not committed. That is exactly-once *state*, provided handlers only change the state
(side effects such as e-mails belong in an :class:`~pepperpy.event.EventReplay` or a
subscriber with idempotent handling). With a memory store nothing survives the process,
so projections there are at-least-once and handlers should be idempotent.

Events whose stored type is not a valid topic (written before the store refused such
types) match no handler and are skipped, as the store's own filters skip them.

Handlers work on a copy of the committed state, so :attr:`Projection.state` only ever
takes values a commit wrote. A handler that raises aborts the run with
:class:`ReplayError`: the half-applied batch is thrown away. After any failed run or
commit (a handler error, a lost connection, a :class:`ConcurrencyError` from another
runner, a cancellation) state and position are loaded from disk again: a failed commit
may still have reached it, and only the disk knows which state goes with the position.
``follow`` goes on from there after a failure that an outage caused, as a subscription
rides one out (the same backoff and ``retry_for``).

Over a store with encryption the state (derived from decrypted data) is saved sealed
under a data key of its own in the store's key store, bound to the projection's name and
position: a reader of the database sees no plaintext, and an edited state raises
:class:`EncryptionError`. Crypto-shredding a stream does not reach the state: after
``shred_stream``, :meth:`Projection.rebuild` the projections reading that stream (a
rebuild also shreds the keys of the states saved before).

A saved state remembers its scope (the ``streams`` and ``types`` it was folded from),
recorded beside it before its first save: loading, waiting on or running a projection
whose filters differ from the saved state's is refused (see :mod:`._projection_scope`),
so neither a changed filter nor another service's projection of the same name resumes a
state derived from other events.

Calls on one projection object take turns: ``run``, ``rebuild`` and ``load`` hold a
lock for their whole duration, ``follow`` for each live commit, so overlapping runs (a
periodic catch-up and a manual one, say) never fold one event twice or commit each
other's uncommitted effects. The lock serves every event loop (thread) that uses the
projection: an ``asyncio.Lock`` belongs to one loop, and calls running at once on two
loops each took a lock of their own.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._checkpoint_base import save_checkpoint
from ._checkpoint_head import check_not_past_head
from ._checkpoints import (
    Checkpoint,
    CheckpointStore,
    open_checkpoint_store,
    shared_in_memory,
)
from ._errors import (
    ClosedError,
    ConfigurationError,
    ReplayError,
    SerializationError,
)
from ._event import Event
from ._frozen import check_plain_json
from ._loops import settled
from ._options import check_count
from ._patterns import parse_pattern
from ._projection_follow import (
    Log,
    Stops,
    reached,
)
from ._projection_handlers import Apply, ProjectionHandlers
from ._projection_live import Following, global_position
from ._projection_scope import check_scope, record_scope, scope_of
from ._projection_seal import seal, unseal
from ._projection_serve import serve as serve_projection
from ._replay import (
    Patterns,
    ReplayReport,
    check_name,
    check_store,
    describe_checkpoints,
    handler_name,
    patterns_of,
    store_url,
)
from ._replay_run import UpTo
from ._replay_waits import run_in, wait_for_runs_here
from ._turns import Turns
from .store._reader import RETRY_FOR
from .store._store_checks import MAX_POSITION
from .store._waiters import LoopWaiters

if TYPE_CHECKING:
    from .store import EventStore
    from .store._reader import StoreSubscription

__all__ = ["Projection"]

H = TypeVar("H", bound=Callable[..., Any])


#: the marks of the projection turns the running code holds (see Projection._turn),
#: copied into the tasks it starts, as a context variable is
_HOLDING: ContextVar[frozenset[object]] = ContextVar(
    "pepperpy_projection_turns", default=frozenset()
)


class Projection(Following):
    """A named state derived from events, resumable and exactly-once on SQL stores.

    ``initial`` is the starting state: a factory (``dict``, a lambda) or a JSON-able
    value (copied). ``streams``/``types`` narrow what is read (patterns). ``state_store``
    is where state and checkpoint live: a :class:`CheckpointStore` or URL, by default the
    event store's own database. With ``store.encryption`` the state is saved sealed
    (see the module docs), wherever it lives.
    """

    def __init__(
        self,
        name: str,
        store: EventStore,
        *,
        initial: Any = dict,
        streams: Patterns = None,
        types: Patterns = None,
        state_store: CheckpointStore | str | None = None,
        batch_size: int = 100,
    ) -> None:
        check_name(name, "a projection name")
        check_store(store)
        if state_store is not None and not isinstance(state_store, CheckpointStore | str):
            raise TypeError(
                f"state_store must be a CheckpointStore, a URL or None, got {state_store!r}"
            )
        self.batch_size = check_count(batch_size, "batch_size")
        self.name = name
        self.store = store
        self._initial = initial
        self._streams = patterns_of(streams, "streams")
        self._types = patterns_of(types, "types")
        #: what the saved state is derived from, recorded beside it (see _projection_scope)
        self._scope = scope_of(self._streams, self._types)
        #: the scope record on disk as last seen: "ours", "other" (a rebuild replaces
        #: it), "absent" (none yet, or a state saved before scopes were recorded)
        self._scope_disk = "absent"
        self._state_store_given = state_store
        self._state_store: CheckpointStore | None = (
            state_store if isinstance(state_store, CheckpointStore) else None
        )
        self._handlers = ProjectionHandlers(name)
        self._state: Any = self._fresh_state()
        #: woken whenever the position changes (see :meth:`wait_until`)
        self._moved = LoopWaiters()
        self._at: int | None = None  # last applied global position (committed)
        #: the revision of the save that committed it (what the next save's
        #: compare-and-set expects with the position: see CheckpointStore.save)
        self._revision: str | None = None
        #: the revision of the scope record as last loaded or saved (see _projection_scope)
        self._scope_revision: str | None = None
        self._loaded = False
        self._turns = Turns(on_abandoned=self._forget_loaded)
        self._serving = False
        self._closings = 0
        #: how many times close() was called from a handler: a run(), rebuild() or load()
        #: called before, still waiting for its turn then, does not start (ClosedError)
        self._cuts = 0
        #: the state store a close() from a handler left to the call it was made from,
        #: closed as that call lets go of its turn (see close())
        self._closing_after: CheckpointStore | None = None
        #: the mark of the turn being held (see _turn), None while none is
        self._holder: object | None = None
        self._live: set[StoreSubscription] = set()
        self._followers: set[asyncio.Task[Any]] = set()
        #: how this object's last follow() ended with an error (None: it did not), for
        #: the note on a wait_until() that times out
        self._follow_failed: str | None = None
        self._stops = Stops(store)
        #: the tasks of the run(), rebuild() and load() calls under way (close() waits
        #: for them)
        self._runs: set[asyncio.Task[Any]] = set()

    # -- registration ---------------------------------------------------------------

    @overload
    def on(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, pattern: str, handler: H) -> H: ...

    def on(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler(state, event)`` (sync or async) for types matching ``pattern``.

        Refused with :class:`ReplayError` while a ``run``, ``rebuild`` or ``follow`` of
        this projection is under way (from a handler too; with the decorator, when it is
        applied): events applied before would have gone without the handler, later ones
        with it. Register handlers before running (then :meth:`rebuild` to fold the whole
        log with one added later).
        """
        parse_pattern(pattern)
        if handler is not None:
            self._handlers.add(pattern, handler)
            return handler

        def decorator(function: H) -> H:
            self._handlers.add(pattern, function)
            return function

        return decorator

    def off(self, pattern: str, handler: Callable[..., Any]) -> bool:
        """Remove ``handler``'s registrations under exactly ``pattern``; True if any was.

        The committed state keeps what ``handler`` did to it: removing a handler only
        changes how later events are applied (``off`` then :meth:`rebuild` folds the
        whole log without it). Refused with :class:`ReplayError` while a ``run``,
        ``rebuild`` or ``follow`` of this projection is under way (from a handler too):
        the state would be folded partly with the handler and partly without. A
        ``pattern`` that is not a str, or a ``handler`` that is not callable, is a
        ``TypeError``.
        """
        return self._handlers.remove(pattern, handler)

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """The handlers an event of ``event_type`` is applied with, in call order.

        Empty for a type that is not a valid topic: such stored events are skipped.
        """
        return [apply.function for apply in self._handlers.chosen(event_type)]

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> Any:
        """The committed state (as of :attr:`position`); a run changes it only by committing."""
        return self._state

    @property
    def position(self) -> int | None:
        """The global position of the last event applied and committed, or None."""
        return self._position

    @property
    def _position(self) -> int | None:
        return self._at

    @_position.setter
    def _position(self, position: int | None) -> None:
        self._at = position
        self._moved.wake()

    async def wait_until(self, global_position: int) -> int:
        """Wait until the projection has committed ``global_position`` (the event
        appended there is in its state or tables), and return the position it is at.

        For read-your-writes: append, then wait for the append's ``global_position``
        before reading the read model (bound it with ``asyncio.timeout``). Commits of
        this object (its ``follow()`` or ``run()``) wake it at once; the position saved
        by another process (the projection served elsewhere) is read from the state
        store meanwhile, every 10 ms at first, backing off to every 0.5 s.

        A projection with ``streams=`` or ``types=`` only moves with the events it
        reads, so the event at ``global_position`` may be one it never reaches: it is
        done once ``global_position`` is in the log and every event it reads up to there
        is committed (none lies between its position and ``global_position``), and then
        ``global_position`` is returned.

        A position it can never reach raises: the event store or this projection
        closed, before or during the wait (``ClosedError``), or a position past the head
        of a store nothing appends to (``immutable=1``: ``ValueError``). One past the
        head of an open store is waited for (another writer may append it); a wait
        cancelled while it is not in the log carries a note saying so (the
        ``TimeoutError`` of ``asyncio.timeout`` shows it as its cause): an append's own
        ``global_position`` always is.
        """
        check_count(global_position, "global_position", least=0, error=ValueError)
        if global_position > MAX_POSITION:  # no store reaches it: it would wait for ever
            raise ValueError(
                f"global_position must be an int from 0 to {MAX_POSITION}, got {global_position!r}"
            )
        await self._check_read()  # once, whether the position is reached here or on disk
        await self._check_scope(f"waiting on {self._what}")
        through = self._read_through if self._streams or self._types else None
        store, closings = self.store, self._closings

        def closed() -> str | None:
            if store.closed:
                return "the event store is closed"
            if self._closings != closings:
                return "the projection was closed"
            return None

        log = Log(
            self._what,
            closed,
            store.backend.head,
            frozen=getattr(store.backend, "immutable", False) is True,
            failed=lambda: self._follow_failed,
        )
        return await reached(
            global_position, self._moved, lambda: self._at, self._saved_position, log, through
        )

    async def _read_through(self, target: int, at: int | None) -> bool:
        """Whether this projection (with filters) has every event it reads up to
        ``target`` committed, being at ``at``: ``target`` is in the log, and the newest
        event the filters select at or below it is at or below ``at`` (or there is none).

        The head is the backend's (``EventStore.head()`` needs ``read`` on every stream):
        it is only compared with ``target``, a position the caller was given.
        """
        # made first: it checks that the store is open and the filters may be read
        reader = self.store.read_all(target, backwards=True, limit=1, **self._filters())
        head = await self.store.backend.head()
        if head is None or head < target:
            return False
        newest = await reader
        if not newest:
            return True
        found = newest[0].global_position
        return at is not None and found is not None and found <= at

    async def _saved_position(self) -> int | None:
        saved = await self.state_store.load(self._key)
        return None if saved is None else saved.position

    @property
    def state_store(self) -> CheckpointStore:
        """Where state and checkpoint are saved (opened on first use)."""
        if self._state_store is None:
            given = self._state_store_given
            url = given if isinstance(given, str) else store_url(self.store)
            # in memory: the one store of this event store's, so that Projection objects
            # of one name share state and position as on disk (load, wait_until, the
            # compare-and-set that keeps two runners apart)
            self._state_store = shared_in_memory(self.store, open_checkpoint_store(url))
        return self._state_store

    @property
    def _key(self) -> str:
        return f"projection:{self.name}"

    @property
    def _what(self) -> str:
        """The projection in words, for an error."""
        return f"projection {self.name!r}"

    def _fresh_state(self) -> Any:
        initial = self._initial
        if callable(initial):
            return initial()
        return copy.deepcopy(initial)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Hold the lock that runs, loads and live events take turns on (``async with``).

        A state store that ``close()`` from a handler left to the call holding the turn
        is closed as the turn is let go, before the next call takes it."""
        async with self._turns.hold():
            self._holder = turn = object()
            holding = _HOLDING.set(_HOLDING.get() | {turn})
            try:
                yield
            finally:
                _HOLDING.reset(holding)
                self._holder = None
                if self._closing_after is not None:
                    await self._close_after()

    async def _close_after(self) -> None:
        """Close the state store a close() from a handler left to the call holding the
        turn (letting go of it first: the next call opens a store of its own)."""
        state_store, self._closing_after = self._closing_after, None
        if state_store is None:
            return
        if self._state_store is state_store:
            self._state_store = None
        await state_store.close()

    def _check_not_cut(self, cuts: int, call: str) -> None:
        """Refuse to start ``call``, called when ``close()`` had been called from a handler
        ``cuts`` times, if it has been since: it waited for the turn of the call that
        handler was in, which that close() could not wait for."""
        if self._cuts != cuts:
            raise ClosedError(
                f"{self._what} was closed (by a handler) while this {call} waited for its "
                "turn: it did not start, and nothing was applied or loaded"
            )

    def _forget_loaded(self) -> None:
        """A call's loop closed while it held the turn: trust only the disk from now on."""
        self._loaded = False

    async def load(self) -> Any:
        """Load the committed state and position (a new projection starts fresh)."""
        cuts = self._cuts
        with run_in(self._runs):  # close() waits for it
            async with self._turn():
                self._check_not_cut(cuts, "load()")
                return await self._load()

    async def _check_read(self) -> None:
        """Refuse (``AccessDenied``, audited) a principal the store's ``access`` does not
        let read the projection's streams: the state is derived from their events, so
        loading it, waiting on it or forgetting it needs what reading them needs."""
        await self.store._acheck_read(self._filters()["streams"])

    async def _check_scope(self, needed_by: str, *, rebuilding: bool = False) -> None:
        """Refuse a state saved by a projection of other streams or types (see
        :func:`check_scope`); ``rebuilding`` lets a principal that may read it start over."""
        await check_scope(self, needed_by, rebuilding=rebuilding)

    async def _record_scope(self) -> None:
        """Record this projection's scope beside its state unless it is there already."""
        if self._scope_disk != "ours":
            await record_scope(self)

    async def _load(self) -> Any:
        await self._check_read()
        await self._check_scope(f"loading {self._what}")
        saved = await self.state_store.load(self._key)
        unsealed = False
        if saved is None:
            self._state, self._position, self._revision = self._fresh_state(), None, None
        else:
            # unsealed first: a sealed state binds its position, so one moved past the
            # head by an edit is refused as tampered with, the more precise diagnosis
            state, unsealed = await self._unseal(saved)
            await self._check_head(saved)
            self._state, self._position, self._revision = state, saved.position, saved.revision
        self._loaded = True
        if unsealed:  # saved before the store had encryption: sealed from now on
            await self._commit(self._state, self._position)
        return self._state

    async def _check_head(self, saved: Checkpoint | None) -> None:
        """Refuse a state saved at a position past the store's newest event (see
        :mod:`._checkpoint_head`): the events since, up to there, would never be applied."""
        if saved is not None:
            await check_not_past_head(
                self.store,
                f"the saved state of {self._what}",
                saved.position,
                "Call rebuild() to fold the log as it is now from its first event; if "
                "state_store= holds another event store's states, give it this store's.",
            )

    async def _unseal(self, saved: Checkpoint) -> tuple[Any, bool]:
        """The state of ``saved``, and whether it has to be sealed (see :func:`unseal`)."""
        return await unseal(self.store.encryption, self.name, saved)

    async def _reload_after(self, failure: BaseException) -> None:
        """Take state and position from disk again after ``failure`` ended a run."""
        try:
            await self._load()
        except Exception as reload_error:
            # the run's own error is what to report; the next run loads again
            self._loaded = False
            failure.add_note(f"reloading projection {self.name!r} failed too: {reload_error!r}")

    # -- running --------------------------------------------------------------------

    async def run(self) -> ReplayReport:
        """Apply every event after the committed position, up to the end of the log now.

        A call made while another ``run`` (or ``rebuild``, or a live event of
        ``follow``) is under way on this object waits for it, then applies what is left.
        """
        cuts = self._cuts
        # on/off refused meanwhile; close() waits for it
        with self._handlers.applying(), run_in(self._runs):
            async with self._turn():
                self._check_not_cut(cuts, "run()")
                return await self._run()

    def _check_writable(self) -> None:
        """Refuse to apply events whose state could not be saved (before any is applied)."""
        state_store = self.state_store
        if state_store.read_only:
            raise ConfigurationError(
                f"projection {self.name!r} cannot save its state: the state store "
                f"{describe_checkpoints(state_store)} is open read-only, so nothing was "
                "applied; give state_store= a writable store"
            )

    async def _run(self) -> ReplayReport:
        self._check_writable()
        if not self._loaded:
            await self._load()
        # before any event is applied (a state saved without one is adopted here), so
        # commits save the state alone
        await self._record_scope()
        start = 0 if self._position is None else self._position + 1
        reader = self.store.read_all(start, **self._filters())  # checks the store is open
        # the log's end as the run begins: a run returns once it is there, however fast
        # others append meanwhile (else a writer faster than the handlers kept it going
        # for ever, and a follow() never went live); what is appended since is the next
        # run's, or follow()'s live events
        end = await self.store.backend.head()
        return await self._catch_up(UpTo(reader, end, global_position))

    async def rebuild(self) -> ReplayReport:
        """Start over from the first event: forget the saved state, then :meth:`run`.

        With encryption the keys of the states saved so far are shredded first. Call it
        after shredding a stream this projection reads: its state still holds what it
        derived from the stream's events.
        """
        cuts = self._cuts
        # on/off refused meanwhile; close() waits for it
        with self._handlers.applying(), run_in(self._runs):
            async with self._turn():
                self._check_not_cut(cuts, "rebuild()")
                self._check_writable()
                # settled: a delete cancelled half-way may still reach the disk (SQLite's
                # runs in a thread, PostgreSQL may commit a statement it received), and
                # state and position in memory must follow whatever did
                await settled(self._forget_saved())
                return await self._run()

    async def _forget_saved(self) -> None:
        """Delete the saved state and checkpoint, then start afresh in memory.

        With encryption, the keys of the states sealed so far are shredded first, so no
        copy of them (a backup, a free page) can be read again: a rebuild after a
        ``shred_stream`` leaves nothing of the shredded data readable. Should the delete
        fail, it may have happened all the same: state and position are loaded from disk
        again before the error propagates.
        """
        await self._check_read()  # before anything is shredded or deleted
        await self._check_scope(f"rebuilding {self._what}", rebuilding=True)
        encryption = self.store.encryption

        async def forget() -> bool:
            if encryption is not None:
                await encryption.shred_state(self.name)
            return await self.state_store.delete(self._key)

        try:  # audited (checkpoint.delete) with the store's audit=
            await self._forget_checkpoint(forget)
        except BaseException as exc:
            await self._reload_after(exc)
            raise
        self._state, self._position, self._loaded = self._fresh_state(), None, True
        self._revision = None
        await self._record_scope()  # the state to come is this projection's

    async def _forget_checkpoint(self, forget: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``forget`` (which deletes the saved state), checked and audited by the
        store as any consumer's checkpoint deletion."""
        return await self.store._forget_checkpoint(
            forget, self._key, self._filters()["streams"], f"rebuilding projection {self.name!r}"
        )

    async def serve(
        self,
        *,
        signals: Iterable[signal.Signals | int] = (signal.SIGINT, signal.SIGTERM),
        retry_for: float | None = RETRY_FOR,
    ) -> None:
        """Run :meth:`follow` as a service: until one of ``signals`` arrives (or the store
        is closed), then stop following and :meth:`close` the projection.

        Logs (INFO) what ends it, where it starts and catches up, and where it stopped.
        The signals are handled as :meth:`EventBus.serve` handles them (a second one
        acts as without serve()). Stopping cancels ``follow()``: a commit in flight
        finishes, what was applied but not committed is applied again after a restart.
        ``follow()``'s errors end it (an outage past ``retry_for``, a handler error,
        another follower): the process should end, and its supervisor restart it.
        """
        await serve_projection(self, signals, retry_for)

    def _filters(self) -> dict[str, Any]:
        return {
            "streams": list(self._streams) if self._streams else None,
            "types": list(self._types) if self._types else None,
        }

    async def _catch_up(self, reader: AsyncIterable[Event]) -> ReplayReport:
        """Apply what ``reader`` yields, committing every ``batch_size`` events and at the
        end. The caller holds the lock."""
        started = time.perf_counter()
        applied = skipped = pending = 0
        state = copy.deepcopy(self._state)  # handlers may mutate it in place
        last: int | None = self._position
        try:
            async for event in reader:
                position = global_position(event)
                if last is not None and position <= last:
                    continue
                chosen = self._handlers.chosen(event.type)
                if chosen:
                    state = await self._apply(chosen, state, event)
                    applied += 1
                else:
                    skipped += 1
                last = position
                pending += 1
                if pending >= self.batch_size:
                    await self._commit(state, last)
                    pending = 0
            if pending:
                await self._commit(state, last)
        except BaseException as exc:
            await self._reload_after(exc)
            raise
        return ReplayReport(
            replayed=applied,
            skipped=skipped,
            failed=0,
            duration=time.perf_counter() - started,
            last_position=self._position,
            checkpoint=self.name,
        )

    async def _apply(self, chosen: tuple[Apply, ...], state: Any, event: Event) -> Any:
        for handler in chosen:
            try:
                result = handler.function(state, event)
                if handler.is_async or hasattr(result, "__await__"):
                    result = await result
            except Exception as exc:
                raise ReplayError(
                    f"projection {self.name!r}: handler {handler_name(handler.function)} failed on "
                    f"{event.type!r} at global position {event.global_position}: {exc}"
                ) from exc
            if result is not None:
                state = result
        return state

    async def _commit(self, state: Any, position: int | None) -> None:
        """Save ``state`` at ``position``; only then do :attr:`state` and :attr:`position`
        take them."""
        if position is None:
            return
        # state is stored as JSON; keep the in-memory copy identical to what a reload gives
        # (and the working copy too: only JSON's own types, which read back as they are)
        what = f"projection {self.name!r} state"
        try:
            check_plain_json(state, what)
            stored, saved = await seal(self.store.encryption, self.name, position, state)
        except SerializationError as exc:  # too deep, a lone surrogate: say whose state
            if str(exc).startswith(what):
                raise
            raise SerializationError(f"{what}: {exc}") from None
        await self._record_scope()  # (a run records it first: no await here then)
        # settled: a save cancelled half-way may still commit; state and position in
        # memory must follow whatever reached the disk
        await settled(self._save(stored, saved, position))

    async def _save(self, stored: Any, saved: Any, position: int) -> None:
        revision = await save_checkpoint(
            self.state_store,
            self._key,
            position,
            saved,
            previous=self._position,
            revision=self._revision,
        )
        self._state, self._position, self._revision = stored, position, revision

    async def close(self) -> None:
        """End this projection's ``follow()`` calls under way, wait for its ``run()``,
        ``rebuild()`` and ``load()`` calls under way, then close the state store if this
        projection opened it.

        Each ``follow()`` returns, as when the store is closed: a live batch being
        applied is committed first, a catch-up under way ends at the head it began with;
        each ``run()`` and ``rebuild()`` ends at the head it began with too (it used to
        go on after ``close()``, opening the state store again). ``close()`` waits for
        those on its event loop.

        Called from a handler, it waits for none of them: not the call it is called
        from, nor the others, which may wait for that one's turn (another ``follow()``
        of this projection would, and it used to wait for it for ever). The call the
        handler is in ends as above, its commits going to the state store still open,
        which is closed as that call lets go of its turn; the ``run()``, ``rebuild()``
        and ``load()`` calls then waiting for their turn do not start (they raise
        :class:`ClosedError`), and a ``follow()`` whose turn comes returns without
        applying. Nothing opens the state store again: they used to, once the handler's
        ``close()`` had closed it, leaving connections nothing closed. A call made
        after ``close()`` returned uses the projection again, as after any ``close()``.
        """
        self._closings += 1
        self._moved.wake()  # wait_until() calls under way end (ClosedError)
        self._stops.wake()  # follow() calls riding out an outage end their backoff
        for events in list(self._live):
            await events.aclose()
        current = asyncio.current_task()
        # a handler: in the task of a call, or in one that call started while holding
        # the turn (a table projection's handlers run in its commit's own task)
        calls = self._runs | self._followers
        holder = self._holder
        inside = current in calls or (holder is not None and holder in _HOLDING.get())
        state_store = self._state_store
        owned = state_store is not None and state_store is not self._state_store_given
        if inside:
            # a handler: its call holds the turn, and goes on committing to the state
            # store; the calls waiting for that turn must not start (ClosedError), and
            # the store is closed as the turn is let go (see _turn)
            self._cuts += 1
            if owned:
                self._closing_after = state_store
            return
        await wait_for_runs_here(self._followers | self._runs)
        state_store = self._state_store
        if state_store is not None and state_store is not self._state_store_given:
            # let go of it first: a call made while it closes opens its own (as in
            # EventReplay.close()), never the one being closed
            self._state_store = None
            await state_store.close()

    async def __aenter__(self) -> Projection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
