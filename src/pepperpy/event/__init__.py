"""pepperpy-event: asyncio events, topic pub/sub, an event store, processing and replay.

The public API is importable from here. Names are loaded on first use, so importing the
package stays cheap and optional drivers are only imported by the features that need
them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # events and patterns
    "Event": "._event",
    "PatternIndex": "._patterns",
    "matches": "._patterns",
    "RetryPolicy": "._retry",
    # errors
    "AccessDenied": "._errors",
    "BatchPublishError": "._errors",
    "BufferFullError": "._errors",
    "ClosedError": "._errors",
    "HandlerCancelledError": "._errors",
    "ConcurrencyError": "._errors",
    "ConfigurationError": "._errors",
    "EncryptionError": "._errors",
    "EventError": "._errors",
    "ListenerLimitError": "._errors",
    "MissingDependencyError": "._errors",
    "NotificationError": "._errors",
    "PatternError": "._errors",
    "RecipientError": "._errors",
    "ReplayError": "._errors",
    "SerializationError": "._errors",
    "StoreError": "._errors",
    "StreamDeletedError": "._errors",
    "TemplateError": "._errors",
    "TemplateNotFound": "._errors",
    "TransportError": "._errors",
    "UnknownTopicError": "._errors",
    "ValidationError": "._errors",
    "ValidationProblem": "._errors",
    # in-process
    "DeadLetter": "._manager",
    "EventManager": "._manager",
    # bus
    "BusHealth": "._bus_health",
    "EventBus": "._bus",
    "MemoryTransport": ".transports.memory",
    "NatsTransport": ".transports.nats",
    "RabbitMQTransport": ".transports.rabbitmq",
    "RedisTransport": ".transports.redis",
    "Subscription": ".transports.base",
    "Transport": ".transports.base",
    # event store
    "ANY": ".store",
    "AppendResult": ".store",
    "CopyProgress": ".store",
    "CopyReport": ".store",
    "EventReader": ".store",
    "EventStore": ".store",
    "NO_STREAM": ".store",
    "STREAM_EXISTS": ".store",
    "Snapshot": ".store",
    "StoreBackend": ".store",
    "StoreSubscription": ".store",
    "copy_store": ".store",
    "export_store": ".store",
    "import_store": ".store",
    # notifications
    "AppriseChannel": ".notifications",
    "Channel": ".notifications",
    "ChannelResult": ".notifications",
    "ConsoleChannel": ".notifications",
    "EmailChannel": ".notifications",
    "IdempotencyStore": ".notifications",
    "MemoryChannel": ".notifications",
    "MemoryIdempotencyStore": ".notifications",
    "Notification": ".notifications",
    "NotificationDeadLetter": ".notifications",
    "NotificationResult": ".notifications",
    "NotificationSystem": ".notifications",
    "RedisIdempotencyStore": ".notifications",
    "WebhookChannel": ".notifications",
    # processing, validation, metrics
    "Attachment": "._processor",
    "DeadLetterMiddleware": ".middleware",
    "DeduplicateMiddleware": ".middleware",
    "EventProcessor": "._processor",
    "EventValidator": ".validation",
    "LatencyHistogram": "._metrics",
    "LogMiddleware": ".middleware",
    "MeasureMiddleware": "._metrics",
    "MetricsCollector": "._metrics",
    "MetricsSnapshot": "._metrics",
    "OpenTelemetryInstruments": "._metrics",
    "RateLimitMiddleware": ".middleware",
    "RetryMiddleware": ".middleware",
    "TimeoutMiddleware": ".middleware",
    "TraceMiddleware": ".middleware",
    "ValidateMiddleware": ".middleware",
    "trace_headers": ".middleware",
    # replay and projections
    "Checkpoint": "._checkpoints",
    "CheckpointStore": "._checkpoints",
    "EventReplay": "._replay",
    "MemoryCheckpointStore": "._checkpoints",
    "PostgresCheckpointStore": "._checkpoints",
    "Projection": "._projection",
    "ReplayFailure": "._replay",
    "ReplayProgress": "._replay",
    "ReplayReport": "._replay",
    "ReplayStopped": "._replay",
    "SQLiteCheckpointStore": "._checkpoints",
    "TableProjection": "._projection_tables",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers
    from ._bus import EventBus as EventBus
    from ._bus_health import BusHealth as BusHealth
    from ._checkpoints import Checkpoint as Checkpoint
    from ._checkpoints import CheckpointStore as CheckpointStore
    from ._checkpoints import MemoryCheckpointStore as MemoryCheckpointStore
    from ._checkpoints import PostgresCheckpointStore as PostgresCheckpointStore
    from ._checkpoints import SQLiteCheckpointStore as SQLiteCheckpointStore
    from ._errors import AccessDenied as AccessDenied
    from ._errors import BatchPublishError as BatchPublishError
    from ._errors import BufferFullError as BufferFullError
    from ._errors import ClosedError as ClosedError
    from ._errors import ConcurrencyError as ConcurrencyError
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import EncryptionError as EncryptionError
    from ._errors import EventError as EventError
    from ._errors import HandlerCancelledError as HandlerCancelledError
    from ._errors import ListenerLimitError as ListenerLimitError
    from ._errors import MissingDependencyError as MissingDependencyError
    from ._errors import NotificationError as NotificationError
    from ._errors import PatternError as PatternError
    from ._errors import RecipientError as RecipientError
    from ._errors import ReplayError as ReplayError
    from ._errors import SerializationError as SerializationError
    from ._errors import StoreError as StoreError
    from ._errors import StreamDeletedError as StreamDeletedError
    from ._errors import TemplateError as TemplateError
    from ._errors import TemplateNotFound as TemplateNotFound
    from ._errors import TransportError as TransportError
    from ._errors import UnknownTopicError as UnknownTopicError
    from ._errors import ValidationError as ValidationError
    from ._errors import ValidationProblem as ValidationProblem
    from ._event import Event as Event
    from ._manager import DeadLetter as DeadLetter
    from ._manager import EventManager as EventManager
    from ._metrics import LatencyHistogram as LatencyHistogram
    from ._metrics import MeasureMiddleware as MeasureMiddleware
    from ._metrics import MetricsCollector as MetricsCollector
    from ._metrics import MetricsSnapshot as MetricsSnapshot
    from ._metrics import OpenTelemetryInstruments as OpenTelemetryInstruments
    from ._patterns import PatternIndex as PatternIndex
    from ._patterns import matches as matches
    from ._processor import Attachment as Attachment
    from ._processor import EventProcessor as EventProcessor
    from ._projection import Projection as Projection
    from ._projection_tables import TableProjection as TableProjection
    from ._replay import EventReplay as EventReplay
    from ._replay import ReplayFailure as ReplayFailure
    from ._replay import ReplayProgress as ReplayProgress
    from ._replay import ReplayReport as ReplayReport
    from ._replay import ReplayStopped as ReplayStopped
    from ._retry import RetryPolicy as RetryPolicy
    from .middleware import DeadLetterMiddleware as DeadLetterMiddleware
    from .middleware import DeduplicateMiddleware as DeduplicateMiddleware
    from .middleware import LogMiddleware as LogMiddleware
    from .middleware import RateLimitMiddleware as RateLimitMiddleware
    from .middleware import RetryMiddleware as RetryMiddleware
    from .middleware import TimeoutMiddleware as TimeoutMiddleware
    from .middleware import TraceMiddleware as TraceMiddleware
    from .middleware import ValidateMiddleware as ValidateMiddleware
    from .middleware import trace_headers as trace_headers
    from .notifications import AppriseChannel as AppriseChannel
    from .notifications import Channel as Channel
    from .notifications import ChannelResult as ChannelResult
    from .notifications import ConsoleChannel as ConsoleChannel
    from .notifications import EmailChannel as EmailChannel
    from .notifications import IdempotencyStore as IdempotencyStore
    from .notifications import MemoryChannel as MemoryChannel
    from .notifications import MemoryIdempotencyStore as MemoryIdempotencyStore
    from .notifications import Notification as Notification
    from .notifications import NotificationDeadLetter as NotificationDeadLetter
    from .notifications import NotificationResult as NotificationResult
    from .notifications import NotificationSystem as NotificationSystem
    from .notifications import RedisIdempotencyStore as RedisIdempotencyStore
    from .notifications import WebhookChannel as WebhookChannel
    from .store import ANY as ANY
    from .store import NO_STREAM as NO_STREAM
    from .store import STREAM_EXISTS as STREAM_EXISTS
    from .store import AppendResult as AppendResult
    from .store import CopyProgress as CopyProgress
    from .store import CopyReport as CopyReport
    from .store import EventReader as EventReader
    from .store import EventStore as EventStore
    from .store import Snapshot as Snapshot
    from .store import StoreBackend as StoreBackend
    from .store import StoreSubscription as StoreSubscription
    from .store import copy_store as copy_store
    from .store import export_store as export_store
    from .store import import_store as import_store
    from .transports.base import Subscription as Subscription
    from .transports.base import Transport as Transport
    from .transports.memory import MemoryTransport as MemoryTransport
    from .transports.nats import NatsTransport as NatsTransport
    from .transports.rabbitmq import RabbitMQTransport as RabbitMQTransport
    from .transports.redis import RedisTransport as RedisTransport
    from .validation import EventValidator as EventValidator


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
