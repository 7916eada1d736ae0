"""Built-in :class:`~pepperpy.event.EventProcessor` middleware.

Each is a small class whose instances are ``async (event, next_handler)`` callables::

    processor.use(
        LogMiddleware(),
        DeadLetterMiddleware(),          # outermost: sees what retries did not fix
        RetryMiddleware(RetryPolicy.exponential(max_attempts=3)),
        TimeoutMiddleware(5.0),
        DeduplicateMiddleware(ttl=600),
        ValidateMiddleware(validator),
        collector.measure("processing"),
    )
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
