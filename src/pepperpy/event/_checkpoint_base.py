"""Checkpoints' contract and the memory backend (see :mod:`._checkpoints`)."""

from __future__ import annotations

import inspect
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import _json
from ._closing import AsyncClosing
from ._errors import ConcurrencyError, ConfigurationError
from .store._states import encode_state

__all__ = [
    "TABLE",
    "Checkpoint",
    "CheckpointStore",
    "MemoryCheckpointStore",
    "check_checkpoint_name",
    "check_checkpoint_save",
    "new_revision",
    "save_checkpoint",
]

TABLE = "pepperpy_checkpoints"

#: the rows where projections record what their saved states were derived from
#: (``scope:projection:NAME``, ``scope:tables:NAME``; see ``_projection_scope``): kept
#: beside the states they describe, not consumers' checkpoints, so ``names()`` leaves
#: them out
SCOPE_RECORDS = ("scope:projection:", "scope:tables:")

logger = logging.getLogger("pepperpy.event.replay")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last position a named consumer finished, and its state (JSON-able or None).

    ``revision`` tells this save from every other one of the name, even one at the same
    position: each save writes a new one (random), so a checkpoint deleted and saved
    again (a rebuild, a reset) never has the revision it had before. None for a
    checkpoint saved before revisions were kept, or by a store that keeps none.
    """

    name: str
    position: int
    state: Any
    updated_at: datetime
    revision: str | None = None


class CheckpointStore(AsyncClosing, ABC):
    """Named checkpoints, each saved atomically together with its state."""

    #: the store only reads: ``load`` works, ``save`` and ``delete`` are refused (an
    #: SQLite store opened with ``mode=ro`` or ``immutable=1``). What saves checkpoints
    #: checks it before doing any work whose position it could not keep.
    read_only: bool = False

    @abstractmethod
    async def load(self, name: str) -> Checkpoint | None:
        """The checkpoint called ``name``, or None if there is none yet."""

    @abstractmethod
    async def save(
        self,
        name: str,
        position: int,
        state: Any = None,
        *,
        previous: int | None,
        revision: str | None = None,
    ) -> str | None:
        """Record ``position`` and ``state`` for ``name`` in one transaction; return the
        revision written (see :class:`Checkpoint`).

        ``previous`` is the position loaded before (None: no checkpoint existed), and
        ``revision`` the revision loaded with it (or the one the last save returned). If
        the stored checkpoint has moved on since, nothing is written and
        :class:`ConcurrencyError` is raised. With ``revision`` the stored checkpoint must
        also still be that save, so one deleted and saved again at the same position (a
        rebuild by another process) is noticed; without it (None) only the position is
        compared.
        """

    @abstractmethod
    async def delete(self, name: str) -> bool:
        """Forget the checkpoint ``name``; True if there was one."""

    @abstractmethod
    async def names(self) -> list[str]:
        """The names of the checkpoints saved, sorted (by code point).

        The rows where projections record the scope of their states
        (``scope:projection:NAME``, ``scope:tables:NAME``) are not listed.
        """

    async def close(self) -> None:
        """Release connections (the memory backend holds none)."""
        return None


#: the longest checkpoint name saved, in UTF-8: PostgreSQL's B-tree index on the name
#: holds at most 2,704 bytes a row; the keys replays and projections save (a prefix such
#: as ``scope:projection:`` and a name of at most 1,024 bytes) stay well below
MAX_CHECKPOINT_NAME_BYTES = 2048
#: what a position stored by every backend can be (SQLite's and PostgreSQL's 64-bit ints)
_LEAST, _GREATEST = -(2**63), 2**63 - 1


def check_checkpoint_name(name: object, *, saving: bool = False) -> None:
    """Refuse a checkpoint name that some backend cannot hold, the same on every backend.

    ``load``, ``save`` and ``delete`` of each :class:`CheckpointStore` call it: a name
    that is not a str (None was saved by SQLite as a NULL name, which ``names()`` then
    failed on for good), or holds a NUL or a lone surrogate (taken in memory and, for a
    NUL, by SQLite, a bare ``UnicodeEncodeError`` on SQLite and a ``StoreError`` reading
    like an outage on PostgreSQL), or, ``saving``, one longer than
    :data:`MAX_CHECKPOINT_NAME_BYTES` (past PostgreSQL's index row limit).
    """
    if not isinstance(name, str):
        raise TypeError(f"a checkpoint name must be a str, got {name!r}")
    problem = None
    if "\x00" in name:
        problem = "contains a NUL character ('\\x00')"
    else:
        try:
            size = len(name.encode())
        except UnicodeEncodeError as exc:
            problem = f"contains a lone surrogate ({name[exc.start]!r}), which is not valid UTF-8"
        else:
            if saving and size > MAX_CHECKPOINT_NAME_BYTES:
                problem = f"is longer than {MAX_CHECKPOINT_NAME_BYTES} bytes in UTF-8 ({size})"
    if problem is not None:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ConfigurationError(f"checkpoint name {shown!r} {problem}")


def _check_position(value: object, what: str, *, none: bool = False) -> None:
    if value is None and none:
        return
    if value.__class__ is not int:  # a bool, a float, a str: a wrong type
        raise TypeError(f"{what} must be an int{' or None' if none else ''}, got {value!r}")
    if not _LEAST <= value <= _GREATEST:
        raise ValueError(f"{what} must fit in 64 bits (-2**63 to 2**63 - 1), got {value!r}")


def check_checkpoint_save(
    name: object, position: object, previous: object, revision: object
) -> None:
    """Refuse what a save could not store, or compare, the same on every backend.

    A position that is not an int (True was stored as 1, 1.5 kept as a float by SQLite
    and cut to 1 by PostgreSQL, "3" taken by SQLite and refused by PostgreSQL) or does
    not fit in 64 bits is refused with ``TypeError`` or ``ValueError`` before anything is
    written; so is such a ``previous``, and a ``revision`` that is not a str or None.
    """
    check_checkpoint_name(name, saving=True)
    _check_position(position, "a checkpoint position")
    _check_position(previous, "previous", none=True)
    if revision is not None and not isinstance(revision, str):
        raise TypeError(f"revision must be a str or None, got {revision!r}")


def _encode_state(state: Any) -> bytes:
    """A checkpoint's state as JSON, under the rules for event data (no non-str keys,
    sets or NaN: what is saved loads back the same), and without bytes (see
    :mod:`.store._states`)."""
    return encode_state(state, "checkpoint state")


def _listed(names: Iterable[str]) -> list[str]:
    """``names`` as :meth:`CheckpointStore.names` gives them: sorted, without the rows
    of projections' scopes."""
    return sorted(name for name in names if not name.startswith(SCOPE_RECORDS))


def new_revision() -> str:
    """A revision for a save: random, so no save of a name ever repeats another's."""
    return uuid.uuid4().hex


def matches(
    previous: int | None,
    revision: str | None,
    actual: int | None,
    actual_revision: str | None,
) -> bool:
    """Whether a checkpoint stored at ``actual`` (with ``actual_revision``) is the one a
    save expecting ``previous`` (and ``revision``, if given) may replace."""
    if actual != previous:
        return False
    return previous is None or revision is None or actual_revision == revision


def _conflict(name: str, previous: int | None, actual: int | None) -> ConcurrencyError:
    error = ConcurrencyError(f"checkpoint {name}", previous, actual)
    if previous is not None and actual == previous:  # the same position, another save
        error.args = (
            f"checkpoint {name!r}: expected the save at position {previous} loaded before, "
            f"but it was saved again since (deleted and saved anew, by a rebuild or a "
            f"reset, say), at position {actual} again: nothing was written",
        )
    return error


def _takes_revision(store: CheckpointStore) -> bool:
    """Whether ``store.save`` takes ``revision=`` (a store of one's own written before
    revisions were kept may not)."""
    try:
        parameters = inspect.signature(store.save).parameters
    except (TypeError, ValueError):
        return False
    return "revision" in parameters or any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()
    )


async def save_checkpoint(
    store: CheckpointStore,
    name: str,
    position: int,
    state: Any = None,
    *,
    previous: int | None,
    revision: str | None,
) -> str | None:
    """``store.save(...)`` with ``revision`` when the store takes it; the revision written
    (None from a store that keeps none: its next save compares the position alone)."""
    if _takes_revision(store):
        return await store.save(name, position, state, previous=previous, revision=revision)
    await store.save(name, position, state, previous=previous)
    return None


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict: lost with the process, so consumers are at-least-once.

    A state is kept as the JSON the other backends store, and each ``load`` decodes it
    anew: what a caller does to the state it loaded changes nothing saved, as on disk.
    """

    def __init__(self) -> None:
        #: each checkpoint without its state, and its state's JSON (None: no state)
        self._rows: dict[str, tuple[Checkpoint, bytes | None]] = {}

    async def load(self, name: str) -> Checkpoint | None:
        check_checkpoint_name(name)
        row = self._rows.get(name)
        if row is None:
            return None
        saved, state = row
        return saved if state is None else replace(saved, state=_json.loads(state))

    async def save(
        self,
        name: str,
        position: int,
        state: Any = None,
        *,
        previous: int | None,
        revision: str | None = None,
    ) -> str:
        check_checkpoint_save(name, position, previous, revision)
        current = self._rows.get(name)
        actual = None if current is None else current[0].position
        actual_revision = None if current is None else current[0].revision
        if not matches(previous, revision, actual, actual_revision):
            raise _conflict(name, previous, actual)
        # JSON, so the memory backend accepts exactly what the others do and loads it back
        # as they do: a new object each time
        encoded = None if state is None else _encode_state(state)
        written = new_revision()
        self._rows[name] = (Checkpoint(name, position, None, datetime.now(UTC), written), encoded)
        return written

    async def delete(self, name: str) -> bool:
        check_checkpoint_name(name)
        return self._rows.pop(name, None) is not None

    async def names(self) -> list[str]:
        return _listed(self._rows)
