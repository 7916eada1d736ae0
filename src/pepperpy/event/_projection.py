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

Over a store with encryption the state (derived from decrypted data) is saved sealed
under a data key of its own in the store's key store, bound to the projection's name and
position: a reader of the database sees no plaintext, and an edited state raises
:class:`EncryptionError`. Crypto-shredding a stream does not reach the state: after
``shred_stream``, :meth:`Projection.rebuild` the projections reading that stream (a
rebuild also shreds the keys of the states saved before).

Calls on one projection object take turns: ``run``, ``rebuild`` and ``load`` hold a
lock for their whole duration, ``follow`` for each live event, so overlapping runs (a
periodic catch-up and a manual one, say) never fold one event twice or commit each
other's uncommitted effects. The lock serves every event loop (thread) that uses the
projection: an ``asyncio.Lock`` belongs to one loop, and calls running at once on two
loops each took a lock of their own.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _json
from ._checkpoints import Checkpoint, CheckpointStore, open_checkpoint_store
from ._errors import ConfigurationError, EncryptionError, ReplayError
from ._event import Event
from ._frozen import check_plain_json
from ._handlers import check_handler, is_async_callable
from ._loops import resolve, settled, wake
from ._options import check_count
from ._patterns import PatternIndex, parse_pattern
from ._replay import (
    Patterns,
    ReplayReport,
    check_name,
    check_store,
    describe_checkpoints,
    handler_name,
    handlers_for,
    patterns_of,
    store_url,
)

if TYPE_CHECKING:
    from .store import EventStore

__all__ = ["Projection"]

H = TypeVar("H", bound=Callable[..., Any])


class _Apply:
    __slots__ = ("function", "is_async")

    def __init__(self, function: Callable[..., Any]) -> None:
        check_handler(function)
        self.function = function
        self.is_async = is_async_callable(function)


class Projection:
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
        self._streams = patterns_of(streams)
        self._types = patterns_of(types)
        self._state_store_given = state_store
        self._state_store: CheckpointStore | None = (
            state_store if isinstance(state_store, CheckpointStore) else None
        )
        self._handlers: PatternIndex[_Apply] = PatternIndex()
        self._state: Any = self._fresh_state()
        self._position: int | None = None  # last applied global position (committed)
        self._loaded = False
        self._turns = _Turns(on_abandoned=self._forget_loaded)

    # -- registration ---------------------------------------------------------------

    @overload
    def on(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, pattern: str, handler: H) -> H: ...

    def on(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler(state, event)`` (sync or async) for types matching ``pattern``."""
        parse_pattern(pattern)
        if handler is not None:
            self._handlers.add(pattern, _Apply(handler))
            return handler

        def decorator(function: H) -> H:
            self._handlers.add(pattern, _Apply(function))
            return function

        return decorator

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
    def state_store(self) -> CheckpointStore:
        """Where state and checkpoint are saved (opened on first use)."""
        if self._state_store is None:
            given = self._state_store_given
            url = given if isinstance(given, str) else store_url(self.store)
            self._state_store = open_checkpoint_store(url)
        return self._state_store

    @property
    def _key(self) -> str:
        return f"projection:{self.name}"

    def _fresh_state(self) -> Any:
        initial = self._initial
        if callable(initial):
            return initial()
        return copy.deepcopy(initial)

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """Hold the lock that runs, loads and live events take turns on (``async with``)."""
        return self._turns.hold()

    def _forget_loaded(self) -> None:
        """A call's loop closed while it held the turn: trust only the disk from now on."""
        self._loaded = False

    async def load(self) -> Any:
        """Load the committed state and position (a new projection starts fresh)."""
        async with self._turn():
            return await self._load()

    async def _load(self) -> Any:
        saved = await self.state_store.load(self._key)
        unsealed = False
        if saved is None:
            self._state, self._position = self._fresh_state(), None
        else:
            state, unsealed = await self._unseal(saved)
            self._state, self._position = state, saved.position
        self._loaded = True
        if unsealed:  # saved before the store had encryption: sealed from now on
            await self._commit(self._state, self._position)
        return self._state

    async def _unseal(self, saved: Checkpoint) -> tuple[Any, bool]:
        """The state of ``saved``, and whether it has to be sealed (saved in clear).

        Without encryption the state is as saved. With it, the state must be what
        :meth:`~pepperpy.event.security.StreamEncryption.encrypt_state` sealed for this
        projection at this position: anything else raises :class:`EncryptionError`. The
        one exception is a state in clear text of a projection that never sealed one
        (no key for it in the key store): saved before the store had encryption, it is
        taken once and sealed at once.
        """
        encryption = self.store.encryption
        if encryption is None:
            return saved.state, False
        if encryption.is_encrypted(saved.state):
            plaintext = await encryption.decrypt_state(self.name, saved.position, saved.state)
            return _json.loads(plaintext), False
        if await encryption.has_state_keys(self.name):
            raise EncryptionError(
                f"projection {self.name!r}: the state saved at position {saved.position} is"
                " not sealed, but this projection has sealed its state before: written"
                " around the library, refused as tampered; rebuild() the projection"
            )
        return saved.state, True

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
        async with self._turn():
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
        start = 0 if self._position is None else self._position + 1
        return await self._catch_up(self.store.read_all(start, **self._filters()))

    async def rebuild(self) -> ReplayReport:
        """Start over from the first event: forget the saved state, then :meth:`run`.

        With encryption the keys of the states saved so far are shredded first. Call it
        after shredding a stream this projection reads: its state still holds what it
        derived from the stream's events.
        """
        async with self._turn():
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
        encryption = self.store.encryption
        try:
            if encryption is not None:
                await encryption.shred_state(self.name)
            await self.state_store.delete(self._key)
        except BaseException as exc:
            await self._reload_after(exc)
            raise
        self._state, self._position, self._loaded = self._fresh_state(), None, True

    async def follow(self) -> None:
        """Catch up, then apply live appends as they commit, until cancelled.

        Live events are committed one by one (there is no batch to wait for), so the
        saved state never lags more than the event being applied. The lock is taken per
        live event, so a :meth:`run` called meanwhile gets its turn between two of them.
        """
        await self.run()
        start = 0 if self._position is None else self._position + 1
        await self._follow_live(self.store.subscribe(start, **self._filters()))

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
                position = _global_position(event)
                if last is not None and position <= last:
                    continue
                chosen = handlers_for(self._handlers, event.type)
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

    async def _follow_live(self, reader: AsyncIterable[Event]) -> None:
        """Apply and commit each event ``reader`` yields, taking the lock for each."""
        state: Any = None
        basis: Any = _NOTHING  # the committed state ``state`` was copied from
        async for event in reader:
            async with self._turn():
                position = _global_position(event)
                if self._position is not None and position <= self._position:
                    continue  # applied already (by the catch-up, or by a run meanwhile)
                if self._state is not basis:  # first event, or a run committed meanwhile
                    state = copy.deepcopy(self._state)
                try:
                    chosen = handlers_for(self._handlers, event.type)
                    if chosen:
                        state = await self._apply(chosen, state, event)
                    await self._commit(state, position)
                except BaseException as exc:
                    await self._reload_after(exc)
                    raise
                basis = self._state

    async def _apply(self, chosen: tuple[_Apply, ...], state: Any, event: Event) -> Any:
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
        check_plain_json(state, f"projection {self.name!r} state")
        serialized = _json.dumps(state)
        stored = _json.loads(serialized)
        encryption = self.store.encryption
        # with encryption the state (derived from decrypted data) is saved sealed
        saved = (
            stored
            if encryption is None
            else await encryption.encrypt_state(self.name, position, serialized)
        )
        # settled: a save cancelled half-way may still commit; state and position in
        # memory must follow whatever reached the disk
        await settled(self._save(stored, saved, position))

    async def _save(self, stored: Any, saved: Any, position: int) -> None:
        await self.state_store.save(self._key, position, saved, previous=self._position)
        self._state, self._position = stored, position

    async def close(self) -> None:
        """Close the state store if this projection opened it."""
        if self._state_store is not None and self._state_store is not self._state_store_given:
            await self._state_store.close()
            self._state_store = None

    async def __aenter__(self) -> Projection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


_NOTHING = object()

#: seconds between two looks, by a call waiting for its turn, for a holder whose event
#: loop was closed while it held the turn
CLOSED_LOOP_CHECK = 1.0


class _Turn:
    """One call's claim on a :class:`_Turns`: holding it, or waiting on ``loop``."""

    __slots__ = ("granted", "loop", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake: asyncio.Future[None] | None = None
        self.granted = False

    def wake_up(self) -> bool:
        """Resolve ``wake`` on its own loop, from any thread; False if that loop is closed."""
        assert self.wake is not None
        return wake(self.loop, self.wake)


class _Turns:
    """A first come, first served lock for calls on any event loop, in any thread.

    The turn passes straight to the first call in line, woken on its own loop. A turn
    held on a loop that was closed without finishing its task is abandoned: the next
    call takes it (one already waiting looks every :data:`CLOSED_LOOP_CHECK` seconds),
    after ``on_abandoned()``.
    """

    def __init__(self, *, on_abandoned: Callable[[], None]) -> None:
        self._on_abandoned = on_abandoned
        self._lock = threading.Lock()
        self._holder: _Turn | None = None
        self._line: deque[_Turn] = deque()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        turn = await self._acquire()
        try:
            yield
        finally:
            with self._lock:
                if self._holder is turn:  # not if taken over after its loop closed
                    self._pass_on()

    async def _acquire(self) -> _Turn:
        loop = asyncio.get_running_loop()
        turn = _Turn(loop)
        with self._lock:
            self._drop_abandoned()
            if self._holder is None:
                self._holder = turn
                return turn
            turn.wake = loop.create_future()
            self._line.append(turn)
        try:
            while True:
                timer = loop.call_later(CLOSED_LOOP_CHECK, resolve, turn.wake)
                try:
                    await turn.wake
                finally:
                    timer.cancel()
                with self._lock:
                    if not turn.granted:
                        self._drop_abandoned()  # woken to look: may hand the turn here
                    if turn.granted:
                        return turn
                    turn.wake = loop.create_future()
        except BaseException:
            with self._lock:
                if turn.granted:
                    if self._holder is turn:
                        self._pass_on()
                elif turn in self._line:
                    self._line.remove(turn)
            raise

    def _drop_abandoned(self) -> None:
        """Take the turn from a holder whose loop was closed (call with the lock)."""
        if self._holder is not None and self._holder.loop.is_closed():
            self._on_abandoned()
            self._pass_on()

    def _pass_on(self) -> None:
        """Hand the turn to the first call in line, or free it (call with the lock)."""
        self._holder = None
        while self._line:
            turn = self._line.popleft()
            if turn.wake_up():
                turn.granted = True
                self._holder = turn
                return
            # its loop is closed: it will never run again


def _global_position(event: Event) -> int:
    position = event.global_position
    if position is None:
        raise ReplayError(f"event {event.id} read from the store has no position")
    return position
