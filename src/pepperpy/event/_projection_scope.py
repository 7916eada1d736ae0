"""What a projection's saved state was derived from: its scope, recorded beside it.

A projection's state is saved under its name (``projection:NAME``, ``tables:NAME``), so
two projections of one name over one state store would share it. The scope (the
``streams`` and ``types`` patterns, sorted and unique) is therefore recorded in a row of
its own in the same state store, ``scope:projection:NAME`` (``scope:tables:NAME``),
written before the first state is saved, and compared whenever the state is loaded,
waited on or rebuilt:

- the same scope: the state is this projection's;
- no scope recorded: a state saved before scopes were recorded (or none yet), adopted,
  and the scope recorded at the next save;
- another scope, whose streams the principal may read (or a store without
  ``access=``): :class:`ConfigurationError` naming both, since resuming would fold new
  events into a state derived from other ones (``rebuild()`` starts over, and records
  the new scope);
- another scope, whose streams the principal may not read: :class:`AccessDenied`,
  audited as any denial, which does not tell what the other scope is.

``CheckpointStore.names()`` does not list the scope rows (``SCOPE_RECORDS``). Over an
encrypted store the scope is saved in clear, beside the sealed state: it is patterns the
code names, not event data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from ._checkpoint_base import SCOPE_RECORDS, save_checkpoint
from ._errors import AccessDenied, ClosedError, ConcurrencyError, ConfigurationError
from ._loops import settled
from .security._principal import current_principal
from .store._store_security import _unaudited

if TYPE_CHECKING:
    from ._projection import Projection
    from .store import EventStore

__all__ = ["Scope", "check_scope", "record_scope", "scope_of"]

#: a recorded scope: {"streams": [...] or None, "types": [...] or None}
Scope = dict[str, list[str] | None]


def scope_of(streams: tuple[str, ...] | None, types: tuple[str, ...] | None) -> Scope:
    """The scope of a projection made with these patterns (from ``patterns_of``)."""
    return {
        "streams": None if streams is None else sorted(set(streams)),
        "types": None if types is None else sorted(set(types)),
    }


def describe(scope: object) -> str:
    """A scope in words: ``streams ['user.#'] and types (all)``."""
    if not isinstance(scope, dict):
        return f"an unreadable scope record ({scope!r})"
    streams, types = scope.get("streams"), scope.get("types")
    return (
        f"streams {'(all)' if streams is None else streams} and "
        f"types {'(all)' if types is None else types}"
    )


def _read_patterns(scope: object) -> list[str]:
    """The patterns reading what ``scope`` read needs ``read`` on (``#`` for all, or for
    a record that cannot be made out)."""
    if isinstance(scope, dict):
        streams = scope.get("streams")
        if streams is None:
            return ["#"]
        if isinstance(streams, list) and streams and all(isinstance(s, str) for s in streams):
            return streams
    return ["#"]


def may_read(store: EventStore, scope: object) -> bool:
    """Whether the acting principal may read what a projection of ``scope`` read
    (always, on a store without ``access=``)."""
    access = store.access
    if access is None:
        return True
    who = current_principal()
    return all(access.is_allowed(who, "read", pattern) for pattern in _read_patterns(scope))


async def refuse_other_scope(
    store: EventStore, what: str, key: str, theirs: object, ours: Scope, needed_by: str
) -> NoReturn:
    """Raise for a state saved by ``what`` (``projection 'users'``) with scope ``theirs``.

    :class:`ConfigurationError` naming both scopes to a principal that may read what
    ``theirs`` read; else :class:`AccessDenied`, written first to the audit logs a denial
    goes to (the entry names the pattern refused, for the auditor), whose message does
    not tell the other scope.
    """
    if may_read(store, theirs):
        raise ConfigurationError(
            f"{what} was saved with {describe(theirs)}, but this one reads "
            f"{describe(ours)}: its saved state was derived from other events, so nothing "
            "was loaded or applied; rebuild() it to start over with these filters (which "
            "deletes the saved state), or give this one another name or state_store="
        )
    access = store.access
    assert access is not None  # may_read is True without access=
    for pattern in _read_patterns(theirs):
        refusal = access._refusal("read", pattern, needed_by=needed_by)
        if refusal is None:
            continue
        who = refusal.error.principal
        denied = AccessDenied(who, "read", key)
        denied.args = (
            f"principal {who!r} may not read {what} (needed by {needed_by}): its state was "
            "saved by a projection of streams this principal may not read (which ones is "
            "withheld); nothing was loaded or deleted; use another name or state_store=",
        )
        for log, whose in store._denial_logs(access):
            try:
                await log.arecord(**refusal.entry)
            except ClosedError as exc:
                _unaudited(denied, whose, exc)
        raise denied
    # the rules changed between the two looks: refused all the same, unaudited
    raise AccessDenied(current_principal(), "read", key)


def scope_key(key: str) -> str:
    """The row the scope of the state saved under ``key`` is recorded in."""
    record = "scope:" + key
    assert record.startswith(SCOPE_RECORDS), record  # what names() leaves out
    return record


async def check_scope(projection: Projection, needed_by: str, *, rebuilding: bool) -> None:
    """Compare the scope recorded for ``projection``'s state with its own, noting what is
    on disk in ``projection._scope_disk``: raise (see :func:`refuse_other_scope`) for
    another scope, unless ``rebuilding`` and the principal may read what that one read
    (the record is replaced once the state is forgotten)."""
    record = await projection.state_store.load(scope_key(projection._key))
    found, theirs = (False, None) if record is None else (True, record.state)
    projection._scope_revision = None if record is None else record.revision
    if not found:
        projection._scope_disk = "absent"  # none yet, or saved before scopes were recorded
    elif theirs == projection._scope:
        projection._scope_disk = "ours"
    elif rebuilding and may_read(projection.store, theirs):
        projection._scope_disk = "other"
    else:
        await refuse_other_scope(
            projection.store,
            projection._what,
            projection._key,
            theirs,
            projection._scope,
            needed_by,
        )


async def record_scope(projection: Projection) -> None:
    """Record ``projection``'s scope beside its state: before its first save, and once a
    rebuild has forgotten a state of another scope (whose record it replaces)."""
    other = projection._scope_disk == "other"
    record = scope_key(projection._key)
    try:
        # settled: a save cancelled half-way may still reach the disk. Replacing another
        # scope's record compares its revision too: a record saved again since (another
        # rebuild) is not overwritten unseen
        projection._scope_revision = await settled(
            save_checkpoint(
                projection.state_store,
                record,
                0,
                projection._scope,
                previous=0 if other else None,
                revision=projection._scope_revision if other else None,
            )
        )
    except ConcurrencyError:
        # another object of this name recorded one meanwhile: it must be this scope
        await check_scope(projection, f"saving {projection._what}", rebuilding=False)
        if projection._scope_disk == "ours":
            return
        raise
    projection._scope_disk = "ours"
