"""Checkpoints' contract and the memory backend (see :mod:`._checkpoints`)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _json
from ._closing import AsyncClosing
from ._errors import ConcurrencyError
from ._frozen import check_json

__all__ = ["TABLE", "Checkpoint", "CheckpointStore", "MemoryCheckpointStore"]

TABLE = "pepperpy_checkpoints"

#: the rows where projections record what their saved states were derived from
#: (``scope:projection:NAME``, ``scope:tables:NAME``; see ``_projection_scope``): kept
#: beside the states they describe, not consumers' checkpoints, so ``names()`` leaves
#: them out
SCOPE_RECORDS = ("scope:projection:", "scope:tables:")

logger = logging.getLogger("pepperpy.event.replay")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last position a named consumer finished, and its state (JSON-able or None)."""

    name: str
    position: int
    state: Any
    updated_at: datetime


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
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        """Record ``position`` and ``state`` for ``name`` in one transaction.

        ``previous`` is the position loaded before (None: no checkpoint existed). If the
        stored checkpoint has moved on since, nothing is written and
        :class:`ConcurrencyError` is raised.
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


def _encode_state(state: Any) -> bytes:
    """A checkpoint's state as JSON, under the rules for event data (no non-str keys,
    sets or NaN: what is saved loads back the same)."""
    check_json(state, "checkpoint state")
    return _json.dumps(state)


def _listed(names: Iterable[str]) -> list[str]:
    """``names`` as :meth:`CheckpointStore.names` gives them: sorted, without the rows
    of projections' scopes."""
    return sorted(name for name in names if not name.startswith(SCOPE_RECORDS))


def _conflict(name: str, previous: int | None, actual: int | None) -> ConcurrencyError:
    return ConcurrencyError(f"checkpoint {name}", previous, actual)


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict: lost with the process, so consumers are at-least-once."""

    def __init__(self) -> None:
        self._rows: dict[str, Checkpoint] = {}

    async def load(self, name: str) -> Checkpoint | None:
        return self._rows.get(name)

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        current = self._rows.get(name)
        actual = None if current is None else current.position
        if actual != previous:
            raise _conflict(name, previous, actual)
        # round-trip through JSON so the memory backend accepts exactly what the others do
        stored = None if state is None else _json.loads(_encode_state(state))
        self._rows[name] = Checkpoint(name, position, stored, datetime.now(UTC))

    async def delete(self, name: str) -> bool:
        return self._rows.pop(name, None) is not None

    async def names(self) -> list[str]:
        return _listed(self._rows)
