"""The event store: streams of events with a global log, on memory, SQLite or PostgreSQL.

``EventStore(url)`` is the API; :mod:`.base` is the small contract each backend
(:mod:`.memory`, :mod:`.sqlite`, :mod:`.postgres`) implements.
"""

from __future__ import annotations

from ._reader import EventReader, StoreSubscription
from ._store import EventStore
from ._store_copy import CopyProgress, CopyReport, copy_store
from ._store_export import export_store, import_store
from .base import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    MinuteCount,
    Snapshot,
    StoreBackend,
    StreamExpectation,
)
from .memory import MemoryBackend

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "CopyProgress",
    "CopyReport",
    "EventReader",
    "EventStore",
    "MemoryBackend",
    "MinuteCount",
    "Snapshot",
    "StoreBackend",
    "StreamExpectation",
    "StoreSubscription",
    "copy_store",
    "export_store",
    "import_store",
]
