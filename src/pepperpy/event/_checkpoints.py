"""Checkpoints: where a replay or a projection stopped, optionally with its state.

A checkpoint is one row ``(name, position, state)``. Saving writes the position and
the state together in one transaction, which is what makes projections exactly-once on
SQLite and PostgreSQL: after a crash the state on disk always matches the position on
disk, so resuming neither loses nor repeats an event's effect.

Every save is a compare-and-set on the position last loaded (``previous``) and on the
revision of that save (``revision``: each save writes a new random one), so two
runners of the same projection cannot silently overwrite each other: the slower one
gets a :class:`ConcurrencyError`. The revision catches what the position alone cannot:
a checkpoint deleted and saved again at the same position (a rebuild or a reset by
another process) is not the save a runner loaded, so that runner is refused too.

Backends live side by side and have the same shape: :class:`MemoryCheckpointStore`,
:class:`SQLiteCheckpointStore` (its own ``sqlite3`` connection to the event store's
file) and :class:`PostgresCheckpointStore` (its own ``asyncpg`` connection to the event
store's database). :func:`open_checkpoint_store` picks one from a URL.

A save cannot be taken back half-way: SQLite's runs in a worker thread that goes on
after its caller is cancelled, and a PostgreSQL statement the server has received may
commit although its caller gave up and its connection was cut off. Callers therefore
await saves through :func:`~pepperpy.event._loops.settled`, so they always know
whether the checkpoint moved.
"""

from __future__ import annotations

import weakref
from typing import Any

from ._checkpoint_base import Checkpoint, CheckpointStore, MemoryCheckpointStore
from ._checkpoints_pg import PostgresCheckpointStore, opened_by
from ._checkpoints_sqlite import SQLiteCheckpointStore, of_url, sqlite_path
from ._errors import ConfigurationError
from ._redact import redact_url
from .store.sqlite import parse_access
from .store.sqlite import parse_url as parse_sqlite_url

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "MemoryCheckpointStore",
    "PostgresCheckpointStore",
    "SQLiteCheckpointStore",
    "open_checkpoint_store",
    "opened_by",
    "shared_in_memory",
    "sqlite_path",
]

#: one memory checkpoint store per event store (object): what a projection or an
#: attachment saves in memory is found by the next one of that name in the process (a
#: fresh store each would always start over, and never see another's commits)
_in_memory: weakref.WeakKeyDictionary[Any, MemoryCheckpointStore] = weakref.WeakKeyDictionary()


def shared_in_memory(store: object, opened: CheckpointStore) -> CheckpointStore:
    """``opened``, or if it is a memory checkpoint store, the one shared by everything
    that keeps its checkpoints in memory beside event store ``store``."""
    if not isinstance(opened, MemoryCheckpointStore):
        return opened
    try:
        return _in_memory.setdefault(store, opened)
    except TypeError:  # an event store that cannot be weakly referenced
        return opened


def open_checkpoint_store(url: str | None) -> CheckpointStore:
    """A checkpoint store for ``url``: the same database an event store of that URL uses.

    The scheme is matched without regard to case, as the event store matches it.
    """
    if url is None or url.lower() in ("memory://", "memory:", "memory"):
        return MemoryCheckpointStore()
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        return of_url(parse_sqlite_url(url), parse_access(url))
    if scheme in ("postgresql", "postgres"):
        return PostgresCheckpointStore(url)
    raise ConfigurationError(
        f"no checkpoint store for {redact_url(url)!r} (use memory://, sqlite:///file.db or postgresql://...)"
    )
