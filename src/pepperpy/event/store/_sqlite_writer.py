"""The SQLite store's writer thread: group commit over a queue of jobs.

One thread owns the write connection. It takes every job waiting in its queue (appends
from one event-loop pass arrive together), writes them in one transaction, commits once
(one fsync with ``synchronous=FULL``), and only then resolves each caller's future on its
event loop.

Two groups overlap: a committed group's callers are answered once the next group is
written, just before that group's commit, so the event loop runs them (and they submit
their next appends) while the commit waits for the disk. A big group that finds nothing
in flight is committed in two halves to start this pipeline. See ``docs/store.md``,
"SQLite: group commit".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from .._errors import ClosedError, StoreError
from .._sqlite import write_transaction
from ._sqlite_log import LogWriter, TransactionLost
from ._sqlite_schema import (
    BUSY_TIMEOUT,
    NOTHING_WRITTEN,
    READ_IT_IMMUTABLE,
    check_file,
    connect,
    file_identity,
    migrate,
    named_error,
    read_only_file,
)
from .base import MultiAppend, PendingAppend, parts, settle

__all__ = ["Writer"]

logger = logging.getLogger("pepperpy.event.store")

T = TypeVar("T")

#: most appends written in one group transaction
MAX_GROUP = 1024
#: a group this big, with nothing else in flight, is committed in two halves
SPLIT_AT = 16
#: the last group's callers wait for the next group's write only if it is this short
MAX_ROWS_AHEAD = 256
#: longest a group waits for stragglers before committing (seconds)
MAX_GATHER_WAIT = 0.002


class _Job(NamedTuple):
    """A queued write: an append (planned together with its neighbours) or any other work."""

    work: Callable[[sqlite3.Connection], Any] | None
    #: an append, or one caller's appends to several streams (all or none)
    append: PendingAppend | MultiAppend | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: the stream whose state a non-append job changes (the writer re-reads it); True:
    #: the job wrote events and streams of its own (``write_stored``), all is re-read
    changes: str | bool | None


_new_job = tuple.__new__  # a _Job without NamedTuple's slower ``__new__`` (hot path)


def _settle_all(
    futures: list[asyncio.Future[Any]],
    outcomes: list[Any],
    on_commit: Callable[[int], None] | None,
    head: int | None,
) -> None:
    """On a loop: resolve futures with their outcomes, then report the commit, if any."""
    for future, outcome in zip(futures, outcomes, strict=True):
        settle(future, outcome)
    if on_commit is not None and head is not None:
        on_commit(head)


def _uncancelled(group: list[_Job]) -> list[_Job]:
    """The group without the jobs whose callers were cancelled before the writer took them.

    Reading a future's state from this thread is safe; a cancellation that comes later
    is too late (the job may be written, and its caller never learns the outcome).
    """
    for job in group:
        if job.future.cancelled():
            return [job for job in group if not job.future.cancelled()]
    return group


def _rows(group: list[_Job]) -> int:
    """How many events the group appends."""
    appends = [job.append for job in group if job.append is not None]
    return sum(len(append.records) for append in parts(appends))


def _busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (the busy timeout ran out)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.OperationalError) and code is not None and code & 0xFF == 5


class _WriteAgain(Exception):
    """The quick write of a group failed: it is rolled back and written again with each
    append in a savepoint (never raised out of the writer)."""


class Writer(threading.Thread):
    """The one thread that writes: group commit over a queue of jobs.

    Jobs submitted from one event loop during one pass of that loop travel together: the
    first schedules a flush for the end of the pass, so a burst of appends costs the
    writer one wake-up and reaches it as one group.
    """

    def __init__(
        self,
        path: str,
        synchronous: str,
        on_commit: Callable[[int], None],
        busy_timeout: float = BUSY_TIMEOUT,
        gate: threading.Lock | None = None,
    ) -> None:
        super().__init__(name="pepperpy-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        #: held around every use of the connection: a fork() waits for it (``.._sqlite``),
        #: so the child never inherits a transaction under way
        self._gate = threading.Lock() if gate is None else gate
        #: the write connection, once open (a forked child abandons it)
        self.connection: sqlite3.Connection | None = None
        #: the file opened (an absolute path) and its (device, inode): every commit
        #: checks the path still names that file
        self.file = os.path.abspath(path)
        self.identity: tuple[int, int] | None = None
        #: a write found the file read-only: the connection is opened again before the
        #: next group (SQLite opened it read-only, and it stays so once the file is not)
        self._reopen = False
        #: the old file's write-ahead log was emptied once the file was found removed or
        #: replaced (see ``_let_go``)
        self._let_go_of_log = False
        #: called after each durable commit, with the next global position, on the loop
        #: of every caller the commit answers (thread-safe: callers may use several loops).
        #: Never a method of the backend: this thread would keep a backend dropped without
        #: close() alive for ever (``_sqlite_held.Commits``)
        self._on_commit = on_commit
        self.jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._batch: list[_Job] | None = None
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False
        #: what every later job is refused with once the thread died of an unexpected
        #: error (see ``_died``)
        self.dead: StoreError | None = None
        #: the jobs taken from the queue and neither committed nor answered yet: those
        #: a death of the thread fails
        self._taken: list[_Job] = []
        #: what we know of the log between transactions, and the appends it writes
        self.log = LogWriter()
        #: the group committed last, answered only once the next one is written
        self._unanswered: tuple[list[_Job], list[Any], int | None] | None = None
        #: resolved by this thread once the file is open and migrated (or could not be):
        #: a thread-safe future, so callers on any event loop can wait for it
        self.opened: concurrent.futures.Future[None] = concurrent.futures.Future()

    def submit(
        self,
        work: Callable[[sqlite3.Connection], T] | None,
        append: PendingAppend | MultiAppend | None = None,
        changes: str | bool | None = None,
    ) -> asyncio.Future[T]:
        """Queue ``work`` (or an append); ``changes`` names a stream whose state it alters."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _new_job(_Job, (work, append, loop, future, changes))
        if self._batch_loop is None:
            self._batch_loop = loop
        if loop is not self._batch_loop:  # another loop (thread): no batching across loops
            with self._stop_lock:
                if not self._stopped:
                    self.jobs.put([job])
                    return future
            future.set_exception(self._refusal())
            return future
        batch = self._batch
        if batch is None:
            batch = self._batch = []
            loop.call_soon(self.flush)
        batch.append(job)
        return future

    def flush(self) -> None:
        """Hand the jobs batched on the loop to the writer (runs on that loop)."""
        batch, self._batch = self._batch, None
        if not batch:
            return
        with self._stop_lock:
            if not self._stopped:
                self.jobs.put(batch)
                return
        closed = self._refusal()
        for job in batch:  # stopped meanwhile (from another thread): never leave one hanging
            settle(job.future, closed)

    def _refusal(self) -> BaseException:
        """What a job submitted after the stop (or the thread's death) is refused with."""
        return ClosedError("the event store is closed") if self.dead is None else self.dead

    def stop(self) -> None:
        """Finish what is queued, then end; later jobs fail with ClosedError."""
        try:
            on_batch_loop = asyncio.get_running_loop() is self._batch_loop
        except RuntimeError:
            on_batch_loop = False
        if on_batch_loop:
            self.flush()  # this pass's appends still go in
        with self._stop_lock:
            self._stopped = True
            self.jobs.put(None)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self._died(exc)

    def _died(self, error: BaseException) -> None:
        """The thread met an unexpected error outside a commit (a ``MemoryError``, a
        bug): answer the group committed last, fail the jobs taken and everything queued
        with :class:`StoreError` (none of them was written), and refuse every later job
        with it, rather than leave their callers waiting for ever. The store must be
        closed and opened again (its next writer is a new thread).
        """
        dead = StoreError(
            f"SQLite: {self.file!r}: the store's writer thread died of an unexpected error "
            f"({type(error).__name__}: {error}); nothing of this call was written; close "
            "the store and open it again"
        )
        dead.written = False
        dead.__cause__ = error
        with contextlib.suppress(BaseException):
            logger.error("SQLite: %r: the writer thread died", self.file, exc_info=error)
        with self._stop_lock:
            self.dead = dead
            self._stopped = True
        try:
            self._answer_previous()  # committed: their callers learn it
        except BaseException:
            pass
        refused = list(self._taken)
        while True:  # nothing is queued after _stopped was set
            try:
                late = self.jobs.get_nowait()
            except queue.Empty:
                break
            refused.extend(late or ())
        for job in refused:  # one by one: a loop that is gone does not stop the others
            with contextlib.suppress(BaseException):
                job.loop.call_soon_threadsafe(settle, job.future, dead)
        if not self.opened.done():
            self.opened.set_exception(dead)
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(BaseException), self._gate:
                if connection.in_transaction:
                    connection.rollback()
                self._let_go(connection)
                connection.close()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        stopping = False
        last_size, last_commit = 1, 0.0
        carry: list[_Job] = []  # the second half of a group split in two
        while carry or not stopping:  # a group split just before the stop is written whole
            if carry:
                group, carry = self._take(carry), []
            else:
                first = self._next()
                if first is None:
                    break
                self._taken = first
                group, stopping = self._gather(first, last_size, last_commit)
            group = _uncancelled(group)
            if not group:
                self._taken = []
                continue
            if self._unanswered is None:
                if len(group) >= SPLIT_AT:
                    half = len(group) // 2
                    group, carry = group[:half], group[half:]
            elif _rows(group) > MAX_ROWS_AHEAD:  # a long write: answer the others first
                self._answer_previous()
            started = time.monotonic()
            try:
                with self._gate:
                    if self._reopen and connection is not None:
                        self._let_go(connection)
                        self._reopen = False
                        self.connection = None
                        connection.close()
                        connection = None
                    if connection is None:
                        connection = self._open()
                    outcomes, committed = self._commit_group(connection, group)
            except BaseException as exc:  # the whole group failed (BEGIN or COMMIT)
                self._answer_previous()
                self.log.forget()
                # rolled back whole: no append of the group is half written
                failure = self._failure(exc)
                if connection is not None and connection.in_transaction:
                    # its ROLLBACK failed too: every later BEGIN would fail ("cannot start
                    # a transaction within a transaction"); closing the connection ends it
                    self._reopen = True
                if connection is not None:
                    with self._gate:
                        self._let_go(connection)
                if carry and _busy(exc):
                    # the other half of the burst came in with this one and has waited
                    # the whole busy timeout already: it fails now too, not a timeout later
                    group, carry = group + carry, []
                # a failed group is answered at once: there is no commit to overlap
                self._answer(group, [failure] * len(group), None)
                self._taken = carry
                last_size, last_commit = len(group), time.monotonic() - started
                continue
            self._unanswered = (group, outcomes, committed)
            self._taken = carry
            last_size, last_commit = len(group), time.monotonic() - started
        self._answer_previous()
        if connection is not None:
            with self._gate:
                self._let_go(connection)
                connection.close()
        if not self.opened.done():  # stopped before anything asked for the file
            self.opened.set_exception(ClosedError("the event store is closed"))
        while True:  # anything queued after stop() is refused, never left hanging
            try:
                late = self.jobs.get_nowait()
            except queue.Empty:
                break
            for job in late or ():
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(
                        settle, job.future, ClosedError("the event store is closed")
                    )

    def _open(self) -> sqlite3.Connection:
        """Open the file and migrate it; report the outcome to ``opened`` (any loop).

        Opened again after a write found the file read-only: then it must still be the
        file first opened.
        """
        try:
            self.file = os.path.abspath(self._path)  # as SQLite resolves it just now
            connection = connect(self._path, self._synchronous, self._busy_timeout)
            try:
                if self.identity is None:
                    migrate(connection, self.file)
                    self.identity = file_identity(self.file)
                else:
                    check_file(self.file, self.identity)
            except BaseException:
                connection.close()
                raise
            self.connection = connection
        except BaseException as exc:
            if not self.opened.done():
                self.opened.set_exception(named_error(exc, self.file, hint=READ_IT_IMMUTABLE))
            raise
        if not self.opened.done():
            self.opened.set_result(None)
        return connection

    def _let_go(self, connection: sqlite3.Connection) -> None:
        """If the file was removed or replaced (a restore renamed over it): empty the old
        file's write-ahead log, through this connection, before it is closed.

        SQLite finds the ``-wal`` and ``-shm`` by the file's name, not by the file: the
        old file's ``-wal`` stays at the path (SQLite neither checkpoints nor deletes it on
        close once the file moved), and the next connection to open the path would apply
        its frames to the new file, undoing the restore or corrupting it.
        ``wal_checkpoint(TRUNCATE)`` copies them into the old file (an orphan, or the copy
        moved aside) under SQLite's own locks, and truncates the ``-wal`` to nothing. Done
        at the first failure after the change and when the writer ends; should another
        connection hold a read of the log meanwhile (busy), it is tried again then.
        """
        if self._let_go_of_log or self.identity is None or connection.in_transaction:
            return
        if file_identity(self.file) == self.identity:
            return
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:  # a read-only connection, say: tried again with the next
            return
        self._let_go_of_log = not busy

    def _next(self) -> list[_Job] | None:
        """The next item of the queue; the last group is answered before any wait."""
        if self._unanswered is not None:
            try:
                return self.jobs.get_nowait()
            except queue.Empty:
                self._answer_previous()
        return self.jobs.get()

    def _take(self, carry: list[_Job]) -> list[_Job]:
        """``carry`` and whatever else is queued (no waiting); a stop is queued again."""
        group = self._taken = list(carry)
        while len(group) < MAX_GROUP:
            try:
                more = self.jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self.jobs.put(None)
                break
            group.extend(more)
        return group

    def _answer_previous(self) -> None:
        """Answer the group committed last, if not done yet (its commit is durable).

        Forgotten only once answered: should answering fail (the thread dying), ``_died``
        answers it again (a future already resolved is left alone).
        """
        unanswered = self._unanswered
        if unanswered is not None:
            self._answer(*unanswered)
            self._unanswered = None

    def _answer(self, group: list[_Job], outcomes: list[Any], committed: int | None) -> None:
        """Resolve the group's futures and report the commit: one wake-up per event loop."""
        wake = self._on_commit if committed is not None else None
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[Any], list[Any]]] = {}
        loop = group[0].loop
        if all(job.loop is loop for job in group):
            by_loop[loop] = ([job.future for job in group], outcomes)
        else:
            for job, outcome in zip(group, outcomes, strict=True):
                futures, answers = by_loop.setdefault(job.loop, ([], []))
                futures.append(job.future)
                answers.append(outcome)
        for loop, (futures, answers) in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is gone
                loop.call_soon_threadsafe(_settle_all, futures, answers, wake, committed)

    def _gather(
        self, first: list[_Job], last_size: int, last_commit: float
    ) -> tuple[list[_Job], bool]:
        """Collect a group: what is queued, and briefly wait for the previous group's size.

        Callers whose appends were just committed come back within microseconds; starting
        the next commit with only the first of them would split every later group in
        two. The wait is bounded by a fraction of the last commit's duration (the idea of
        PostgreSQL's ``commit_delay``), and a lone sequential caller never waits.
        """
        group = self._taken = list(first)
        if self._unanswered is not None:  # the stragglers may be the unanswered callers
            last_size = 0
        deadline = time.monotonic() + min(MAX_GATHER_WAIT, last_commit / 2)
        while len(group) < MAX_GROUP:
            try:
                more = self.jobs.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if len(group) >= last_size or remaining <= 0:
                    break
                try:
                    more = self.jobs.get(timeout=remaining)
                except queue.Empty:
                    break
            if more is None:
                return group, True
            group.extend(more)
        return group, False

    def _commit_group(
        self, connection: sqlite3.Connection, group: list[_Job]
    ) -> tuple[list[Any], int | None]:
        """Write and commit a group: its outcomes, and the head its commit reached (None:
        nothing committed)."""
        appends = [job.append for job in group if job.append is not None]
        if len(appends) == len(group):
            # the usual group, appends only: no savepoint; should the write fail, the
            # transaction is rolled back and the group written again the careful way
            log = self.log
            head = log.head
            try:
                with write_transaction(connection):
                    try:
                        log.revalidate(connection)
                        head = log.head
                        outcomes: list[Any] = log.write_appends(connection, appends)
                        log.index_tail(connection)
                        log.summarize(connection, head)
                    except BaseException as exc:
                        log.head = head
                        log.forget()
                        if isinstance(exc, Exception):
                            raise _WriteAgain from exc
                        raise
                    self._before_commit()
            except _WriteAgain as again:
                if connection.in_transaction:  # its ROLLBACK failed too: no second try
                    assert again.__cause__ is not None
                    raise again.__cause__ from None
            else:
                return outcomes, self.log.head
        try:
            return self._commit_carefully(connection, group), self.log.head
        except TransactionLost as lost:
            self.log.forget()
            if len(group) == 1:
                raise lost.error from None  # the real cause (SQLITE_FULL, SQLITE_IOERR_...)
            return self._commit_one_by_one(connection, group)

    def _commit_one_by_one(
        self, connection: sqlite3.Connection, group: list[_Job]
    ) -> tuple[list[Any], int | None]:
        """Commit each job of a group in a transaction of its own, after SQLite rolled
        back the whole group's (a full disk, an I/O error met in the middle of a
        statement: nothing of the group was written, and no savepoint was left to retry
        each job in). The job that meets the error again fails with it, the others are
        written. Should a transaction fail at ``BEGIN`` or ``COMMIT`` (not a job's own
        doing: the lock, a disk that filled up meanwhile), that job and the rest of the
        group fail with that error, nothing of theirs written.
        """
        outcomes: list[Any] = []
        committed: int | None = None
        for index, job in enumerate(group):
            try:
                outcomes.extend(self._commit_carefully(connection, [job]))
            except TransactionLost as lost:
                self.log.forget()
                outcomes.append(self._failure(lost.error))
                continue
            except BaseException as exc:
                self.log.forget()
                failure = self._failure(exc)
                outcomes.extend([failure] * (len(group) - index))
                break
            committed = self.log.head
        return outcomes, committed

    def _before_commit(self) -> None:
        """The last of a group's transaction: refuse to commit to a file removed or
        replaced (raising rolls the transaction back), then answer the previous group,
        whose callers go on while this COMMIT waits for the disk."""
        check_file(self.file, self.identity, write=True)
        self._answer_previous()

    def _commit_carefully(self, connection: sqlite3.Connection, group: list[_Job]) -> list[Any]:
        """Commit a group with each run of appends and each other job in a savepoint."""
        with write_transaction(connection):
            self.log.revalidate(connection)
            began = self.log.head
            outcomes = []
            index = 0
            while index < len(group):
                if group[index].append is None:
                    outcomes.append(self._run_alone(connection, group[index]))
                    index += 1
                    continue
                end = index
                while end < len(group) and group[end].append is not None:
                    end += 1
                appends = [job.append for job in group[index:end] if job.append is not None]
                ran = self.log.append_run(connection, appends)
                outcomes.extend(self._named(outcome) for outcome in ran)
                index = end
            self.log.index_tail(connection)
            self.log.summarize(connection, began)
            self._before_commit()
        return outcomes

    def _named(self, outcome: Any) -> Any:
        """An append's outcome, a failure of SQLite's named with the file and its cause.

        ``append_run`` rolled that append back to its savepoint: nothing of it is written.
        """
        return self._failure(outcome) if isinstance(outcome, sqlite3.Error) else outcome

    def _failure(self, error: BaseException) -> BaseException:
        """What a call that ``error`` failed is answered: a ``sqlite3`` error as a
        :class:`StoreError` naming the file, its cause and that nothing was written.

        The one place the writer names them. A read-only file has the connection opened
        again before the next group (see ``_reopen``).
        """
        if read_only_file(error):
            self._reopen = True
        return named_error(error, self.file, NOTHING_WRITTEN)

    def _run_alone(self, connection: sqlite3.Connection, job: _Job) -> Any:
        """Run one non-append job inside its own savepoint."""
        assert job.work is not None
        connection.execute("SAVEPOINT job")
        try:
            result = job.work(connection)
        except BaseException as exc:
            if not connection.in_transaction and isinstance(exc, Exception):
                # SQLite rolled back the whole transaction: no savepoint left (see
                # ``LogWriter.append_run``)
                raise TransactionLost(exc) from exc
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return self._failure(exc)
        connection.execute("RELEASE job")
        if job.changes is True:  # stored events written: the head and every state moved
            self.log.forget()
            self.log.revalidate(connection)
        elif isinstance(job.changes, str):  # a delete: what we know of that stream is stale
            self.log.reread(connection, job.changes)
        return result
