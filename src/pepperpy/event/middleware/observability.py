"""Middleware that make processing visible: structured logs and OpenTelemetry traces."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from .._deps import require
from .._event import Event
from .._processor import NextHandler

__all__ = ["LogMiddleware", "TraceMiddleware", "trace_headers"]

#: W3C Trace Context keys carried in ``event.metadata`` (also valid CloudEvents
#: extension names, so they travel as the CloudEvents distributed-tracing extension);
#: read whatever the configured propagators are, beside the keys those propagators use
#: (``baggage`` with OpenTelemetry's default ones)
TRACE_KEYS = ("traceparent", "tracestate")


#: attribute names a ``logging.LogRecord`` owns: ``extra`` may not set them
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

#: where LogMiddleware reports a record it could not log (its logger or adapter failed)
_fallback = logging.getLogger(__name__)


class LogMiddleware:
    """Log one structured record per processed event: type, id, outcome, duration.

    Records carry ``event_type``, ``event_id``, ``outcome`` (``"ok"``, ``"error"`` or
    ``"cancelled"``),
    ``duration_ms`` and, for events read from a store, ``event_stream`` and
    ``event_position`` as attributes (``extra``), so JSON log formatters can emit them as
    fields; ``fields(event)`` may add more (a tenant, a correlation id from metadata),
    one named like a field of these (``outcome``, ``duration_ms``, ...) as
    ``field_<name>``.
    Logging never changes the outcome: a ``fields`` that raises is logged and skipped,
    and a field named like a ``LogRecord`` attribute (``name``, ``module``, ...) is
    emitted as ``field_<name>``. Failures are logged at ``error_level`` with the
    traceback and re-raised. An event cancelled from outside (a ``TimeoutMiddleware``
    further out, a shutdown) is logged at ``error_level`` too, as ``"cancelled"`` and
    without a traceback, and the cancellation goes on.

    ``logger`` is a logger, a logger name or a ``logging.LoggerAdapter``: the adapter's
    ``process`` runs and its own fields are kept beside these (which win on a clash),
    renamed as ``fields`` are. A log call that fails anyway (a raising filter) is
    reported on this module's logger, and the event keeps its outcome.
    """

    logger: logging.Logger | logging.LoggerAdapter[Any]
    level: int
    error_level: int
    fields: Callable[[Event], Mapping[str, Any]] | None

    def __init__(
        self,
        logger: logging.Logger | str = "pepperpy.event.processor",
        *,
        level: int = logging.INFO,
        error_level: int = logging.ERROR,
        fields: Callable[[Event], Mapping[str, Any]] | None = None,
    ) -> None:
        self.logger = logger  # type: ignore[assignment]  # a name becomes its logger
        self.level = level
        self.error_level = error_level
        self.fields = fields

    def __setattr__(self, name: str, value: Any) -> None:
        # each option may be set later, checked as the constructor checks it: unchecked,
        # a level of "INFO" or a logger given by name failed every event after its
        # handlers had run (so a retry further out ran them again), where logging never
        # may. Plain attributes, read as such on every event.
        if name == "logger":
            _check_logger(value)
            if isinstance(value, str):
                value = logging.getLogger(value)
        elif name in ("level", "error_level"):
            _check_level(name, value)
        elif name == "fields":
            _check_fields(value)
        super().__setattr__(name, value)

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        start = time.perf_counter()
        try:
            await next_handler(event)
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000.0
            self._log(
                self.error_level,
                "failed %s (%s) in %.3f ms: %r",
                (event.type, event.id, elapsed, exc),
                self._extra(event, "error", elapsed),
                exc,
            )
            raise
        except asyncio.CancelledError:
            elapsed = (time.perf_counter() - start) * 1000.0
            self._log(
                self.error_level,
                "cancelled %s (%s) after %.3f ms",
                (event.type, event.id, elapsed),
                self._extra(event, "cancelled", elapsed),
            )
            raise
        if self.logger.isEnabledFor(self.level):
            elapsed = (time.perf_counter() - start) * 1000.0
            self._log(
                self.level,
                "processed %s (%s) in %.3f ms",
                (event.type, event.id, elapsed),
                self._extra(event, "ok", elapsed),
            )

    def _log(
        self,
        level: int,
        msg: str,
        args: tuple[Any, ...],
        extra: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        """Log one record with ``extra`` as attributes, through adapters too.

        ``LoggerAdapter.process`` replaces ``extra`` with the adapter's own dict (unless
        ``merge_extra``), which dropped every structured field. Each adapter's
        ``process`` still runs (nested ones in turn, outermost first), and what it
        returns is merged under what is there already: the adapters' own fields stay
        (one named like a ``LogRecord`` attribute as ``field_<name>``, as ``fields=``
        gives it: ``makeRecord`` raised KeyError on it), ours win, and an outer
        adapter's win over an inner one's.

        Logging never changes the outcome: anything that fails here (an adapter's
        ``process``, a logger's filter) is reported through this module's logger and
        the event's outcome stays what it was.
        """
        try:
            kwargs: MutableMapping[str, Any] = {"extra": extra}
            if exc is not None:
                kwargs["exc_info"] = exc
            target: logging.Logger | logging.LoggerAdapter[Any] = self.logger
            while isinstance(target, logging.LoggerAdapter):
                if not target.isEnabledFor(level):
                    return
                msg, kwargs = target.process(msg, kwargs)
                extra = {**_renamed(kwargs.get("extra") or {}), **extra}
                kwargs["extra"] = extra
                target = target.logger
            target.log(level, msg, *args, **kwargs)
        except Exception:
            try:
                _fallback.exception(
                    "LogMiddleware could not log %s (%s) through %r",
                    extra.get("event_type"),
                    extra.get("event_id"),
                    self.logger,
                )
            except Exception:  # nowhere left to report it; the outcome stands
                pass

    def _extra(self, event: Event, outcome: str, elapsed_ms: float) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "event_type": event.type,
            "event_id": event.id,
            "outcome": outcome,
            "duration_ms": round(elapsed_ms, 3),
        }
        if event.stream is not None:
            extra["event_stream"] = event.stream
            extra["event_position"] = event.position
        fields = self.fields
        if fields is not None:
            try:
                custom = dict(fields(event))
            except Exception:  # a log field must never turn processing into a failure
                _fallback.exception(
                    "LogMiddleware fields() failed for %s (%s)", event.type, event.id
                )
                return extra
            for key, value in _renamed(custom).items():
                # one of ours (``outcome``, ``duration_ms``, ``event_id``...) stays ours:
                # a business field {"outcome": "paid"} made a failed event's record read
                # outcome "paid"; it is kept as ``field_outcome``
                extra["field_" + key if key in extra else key] = value
        return extra


def _check_logger(logger: object) -> None:
    if not isinstance(logger, str | logging.Logger | logging.LoggerAdapter):
        raise TypeError(
            f"logger must be a logging.Logger, a LoggerAdapter or a name, got {logger!r}"
        )


def _check_level(option: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{option} must be a logging level (an int), got {value!r}")


def _check_fields(fields: object) -> None:
    if fields is not None and not callable(fields):
        raise TypeError(f"fields must be a callable (event -> mapping), got {fields!r}")


def _renamed(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """``fields`` with string keys, one named like a ``LogRecord`` attribute (``name``,
    ``module``, ...) as ``field_<name>``: ``extra`` may not set those."""
    renamed: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key)
        renamed["field_" + name if name in _RESERVED else name] = value
    return renamed


class TraceMiddleware:
    """Wrap processing in an OpenTelemetry span that continues the producer's trace.

    The parent context is read from ``event.metadata`` with the application's
    configured propagators (OpenTelemetry's global text map: W3C Trace Context
    ``traceparent``/``tracestate`` and W3C ``baggage`` by default, B3 or Jaeger where
    ``OTEL_PROPAGATORS`` or ``set_global_textmap`` says so), so a trace started by
    whoever published the event continues across a bus or store hop, and the handler
    runs with the publisher's baggage current. Producers add those entries with
    :func:`trace_headers` (``bus.publish(topic, data, headers=trace_headers())``).
    Without them, or when they are malformed (ignored, as W3C Trace Context says), the
    span is a child of the current span, or the root of a new trace when there is none.
    Failures are recorded on the span (status ERROR plus the exception) and re-raised.
    A cancellation (a ``TimeoutMiddleware`` further out, a shutdown) sets status ERROR
    ``"cancelled"`` and ``error.type`` = ``"cancelled"``, and goes on.
    Needs ``opentelemetry-api`` (extra ``otel``).
    """

    def __init__(self, tracer_provider: Any = None, *, name: str = "pepperpy.event") -> None:
        trace = require("opentelemetry.trace", extra="otel", feature="TraceMiddleware")
        self._trace = trace
        self._context = require("opentelemetry.context", extra="otel", feature="TraceMiddleware")
        # the global text map is looked up per event: an application may configure it
        # after making the middleware
        self._propagate = require(
            "opentelemetry.propagate", extra="otel", feature="TraceMiddleware"
        )
        self._tracer = trace.get_tracer(name, tracer_provider=tracer_provider)
        self._consumer = trace.SpanKind.CONSUMER
        status = require("opentelemetry.trace.status", extra="otel", feature="TraceMiddleware")
        self._cancelled = status.Status(status.StatusCode.ERROR, "cancelled")

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        textmap = self._propagate.get_global_textmap()
        carrier = _carrier(event.metadata, textmap)
        parent = None
        if carrier:
            try:
                # extracted into the current context: an invalid traceparent is ignored
                # (W3C Trace Context), which leaves the caller's span, if any, the parent
                parent = textmap.extract(carrier, context=self._context.get_current())
            except Exception:  # a malformed carrier must not fail processing
                parent = None
        if parent is None:
            await self._process(event, next_handler)
            return
        # current while the handler runs, not only the span's parent: baggage with it
        token = self._context.attach(parent)
        try:
            await self._process(event, next_handler)
        finally:
            self._context.detach(token)

    async def _process(self, event: Event, next_handler: NextHandler) -> None:
        attributes = {
            "messaging.operation": "process",
            "messaging.destination.name": event.type,
            "messaging.message.id": event.id,
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
        }
        with self._tracer.start_as_current_span(
            f"process {event.type}",
            kind=self._consumer,
            attributes=attributes,
        ) as span:
            try:
                await next_handler(event)
            except asyncio.CancelledError:
                # OpenTelemetry records only an Exception: without this, the span of an
                # event cut off from outside ended UNSET and looked successful
                span.set_status(self._cancelled)
                span.set_attribute("error.type", "cancelled")
                raise


def _carrier(metadata: Mapping[str, Any], textmap: Any) -> dict[str, str]:
    """The entries of ``metadata`` the propagators of ``textmap`` read (and the W3C
    Trace Context ones), as text (bytes from broker headers are decoded); anything else
    is no context to propagate and is left out."""
    try:
        keys = {*TRACE_KEYS, *textmap.fields}
    except Exception:  # a propagator's fields property failing must not fail processing
        keys = set(TRACE_KEYS)
    carrier: dict[str, str] = {}
    for key in sorted(keys):
        value = metadata.get(key)
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("ascii", "replace")
        if isinstance(value, str):
            carrier[key] = value
    return carrier


def trace_headers() -> dict[str, str]:
    """The current context's propagation entries, to put in event metadata.

    Written by the application's configured propagators (OpenTelemetry's global text
    map: W3C ``traceparent``/``tracestate`` and ``baggage`` by default; B3 or Jaeger
    headers where configured). ``await bus.publish("orders.paid", data,
    headers=trace_headers())`` lets the consumer's :class:`TraceMiddleware` continue
    this trace, with this baggage. Empty when no span is active and no baggage is set.
    Needs ``opentelemetry-api`` (extra ``otel``).
    """
    propagate = require("opentelemetry.propagate", extra="otel", feature="trace_headers")
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
