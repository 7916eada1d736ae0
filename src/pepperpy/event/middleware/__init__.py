"""Built-in :class:`~pepperpy.event.EventProcessor` middleware.

Each is a small class whose instances are ``async (event, next_handler)`` callables::

    processor.use(
        LogMiddleware(),
        DeadLetterMiddleware(),          # sees only what retries did not fix
        collector.measure("processing"),
        ValidateMiddleware(validator),   # outside the retry: invalid stays invalid
        DeduplicateMiddleware(ttl=600),  # outside the retry: one event, many tries
        RetryMiddleware(RetryPolicy.exponential(max_attempts=3)),
        TimeoutMiddleware(5.0),          # inside the retry: limits each attempt
    )

The first registered is the outermost. ``TraceMiddleware`` and ``trace_headers`` carry
an OpenTelemetry trace across hops; ``RateLimitMiddleware`` slows a source down.
"""

from __future__ import annotations

from .._metrics import MeasureMiddleware
from .dedupe import DeduplicateMiddleware
from .observability import LogMiddleware, TraceMiddleware, trace_headers
from .resilience import (
    DeadLetterMiddleware,
    RateLimitMiddleware,
    RetryMiddleware,
    TimeoutMiddleware,
)
from .validate import ValidateMiddleware

__all__ = [
    "DeadLetterMiddleware",
    "DeduplicateMiddleware",
    "LogMiddleware",
    "MeasureMiddleware",
    "RateLimitMiddleware",
    "RetryMiddleware",
    "TimeoutMiddleware",
    "TraceMiddleware",
    "ValidateMiddleware",
    "trace_headers",
]
