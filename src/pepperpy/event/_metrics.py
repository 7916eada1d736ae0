"""MetricsCollector: call counts, errors, latency percentiles and throughput.

Latencies go into log-linear histograms (HDR style: 16 linear sub-buckets per power of
two, so any percentile is within 1/32 (3.125%) of the true value) rather than a list of
samples: memory stays bounded however many calls are measured, and histograms of
different names or processes merge by adding bucket counts. Throughput is counted in a
ring of time slots covering a sliding window.

Export paths: :meth:`MetricsCollector.to_prometheus` (text exposition, no dependency),
:meth:`MetricsCollector.register_prometheus` (a ``prometheus_client`` collector) and
:meth:`MetricsCollector.instrument_opentelemetry` (observable OpenTelemetry instruments).
Exporters run on other threads (a scrape server's, a periodic reader's) while the loop's
thread adds and resets names, so the table of names is changed and copied under a lock;
a measured call's recording, the hot path, takes no lock (``record`` by hand does).

Beside this module: the histogram (``_histogram``), what is kept per name and read
from it (``_series``), and the exporters (``_metrics_export``).
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import time
from asyncio import isfuture
from collections.abc import Callable
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._event import Event
from ._handlers import is_async_callable
from ._histogram import LatencyHistogram
from ._metrics_export import (
    INSTRUMENTS,
    OTEL_NAME_LIMIT,
    Exported,
    OpenTelemetryInstruments,
    opentelemetry_instruments,
    prometheus_collector,
    prometheus_text,
)
from ._series import SLOTS, MetricsSnapshot, Series

if TYPE_CHECKING:
    from ._processor import NextHandler

__all__ = [
    "LatencyHistogram",
    "MeasureMiddleware",
    "MetricsCollector",
    "MetricsSnapshot",
    "OpenTelemetryInstruments",
]

F = TypeVar("F", bound=Callable[..., Any])

#: a namespace is a Prometheus metric name prefix; starting with a letter also keeps it a
#: valid OpenTelemetry instrument name prefix
_NAMESPACE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
_MAX_NAMESPACE = OTEL_NAME_LIMIT - max(len(suffix) for suffix in INSTRUMENTS)
#: the longest duration ``record`` takes (a year): past it, nanoseconds overflow nothing
#: but such a value is a unit mistake
_MAX_SECONDS = 365 * 24 * 3600.0


class MetricsCollector:
    """Measures calls by name: ``@collector.measure("name")`` or as processor middleware.

    ``window`` is the span, in seconds (more than 0, at most a year), over which
    ``throughput`` is computed; ``namespace`` prefixes the exported metric names.
    """

    def __init__(self, *, window: float = 60.0, namespace: str = "pepperpy_event") -> None:
        if (
            not isinstance(window, int | float)
            or isinstance(window, bool)
            or not 0 < window <= _MAX_SECONDS  # NaN and infinities fail this too
        ):
            raise ValueError(
                "window must be a finite number of seconds, > 0 and at most 1 year "
                f"({_MAX_SECONDS:g}), got {window!r}"
            )
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                "namespace must be a valid metric name prefix (ASCII letters, digits and "
                f"underscores, starting with a letter), got {namespace!r}"
            )
        if len(namespace) > _MAX_NAMESPACE:
            raise ValueError(
                f"namespace must be at most {_MAX_NAMESPACE} characters, got {len(namespace)}: "
                f"OpenTelemetry instrument names are limited to {OTEL_NAME_LIMIT} characters "
                f"and the longest one adds {max(INSTRUMENTS, key=len)!r}"
            )
        self.window = float(window)
        self.namespace = namespace
        self._slot_ns = max(1, int(window * 1e9) // SLOTS)
        self._series: dict[str, Series] = {}
        # names reset and not recorded since: listed again once something is recorded
        self._forgotten: set[str] = set()
        # (calls, errors, latency ns) recorded before a reset, per name: exported
        # counters go on from them, since monitoring systems expect counters to only grow
        self._carried: dict[str, tuple[int, int, int]] = {}
        # held while names are added or reset, and while readers copy the table: an
        # exporter's thread never iterates a dict the loop's thread is changing
        self._lock = threading.Lock()

    # -- recording --------------------------------------------------------------------

    def _get(self, name: str) -> Series:
        series = self._series.get(name)
        if series is None:
            if not isinstance(name, str) or not name:
                message = f"metric name must be a non-empty str, got {name!r}"
                raise TypeError(message) if not isinstance(name, str) else ValueError(message)
            try:
                name.encode("utf-8")  # every exporter writes it so: one that cannot be
            except UnicodeEncodeError:  # broke every scrape, other names' metrics with it
                raise ValueError(
                    f"metric name must be text UTF-8 can encode (no lone surrogate), got {name!r}"
                ) from None
            created = Series(self._slot_ns)
            with self._lock:  # two threads' first calls: both record into one series
                series = self._series.setdefault(name, created)
        elif self._forgotten:
            self._forgotten.discard(name)
        return series

    def measure(self, name: str) -> Measure:
        """Measure calls under ``name``: a decorator, or middleware for a processor.

        ``@collector.measure("x")`` wraps sync and async callables (functions, methods,
        also above ``@staticmethod`` or ``@classmethod``): every call is counted, failed
        ones (any exception, ``BaseException`` such as cancellation and
        ``KeyboardInterrupt`` included) also as errors, and its duration recorded.
        Generator functions, sync or async, and classes are refused with ``TypeError``.
        ``processor.middleware(collector.measure("x"))`` measures the rest of the
        processing chain.
        """
        return Measure(self, name)

    def record(self, name: str, seconds: float, *, error: bool = False) -> None:
        """Record one call of ``seconds`` duration by hand."""
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            # a comparison, which NaN and infinities fail: math.isfinite raised
            # OverflowError on an int past the float range (10**400)
            or not 0 <= seconds <= _MAX_SECONDS
        ):
            message = f"seconds must be a finite number from 0 to {_MAX_SECONDS:g}, got {seconds!r}"
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise TypeError(message)  # a wrong type (docs/errors.md)
            raise ValueError(message)
        # rounded, not truncated: 1.5e-08 * 1e9 is 14.999999999999998, and 15 ns were meant
        elapsed, now = round(seconds * 1e9), time.perf_counter_ns()
        self._get(name)  # checks the name (and makes its series, outside the lock)
        # under the lock a reset holds: a reset from the loop's thread between _get and
        # observe, here on a worker thread, took the series away (carrying its totals
        # over) and the call went into that discarded series, lost to exported totals
        with self._lock:
            current = self._series.get(name)
            if current is None:  # reset away since _get: made again, as _get does
                current = self._series[name] = Series(self._slot_ns)
            current.observe(elapsed, now, error)
            self._forgotten.discard(name)

    def reset(self, name: str | None = None) -> None:
        """Forget what was recorded under ``name``, or everything.

        Functions decorated with ``measure`` and measure middleware keep counting: the
        next call is recorded under the same name, which ``names()`` lists again.

        A reset clears what :meth:`get_metrics`, :meth:`snapshots`, :meth:`names` and
        :meth:`histogram` show. Exported counters (Prometheus ``_calls_total``,
        ``_errors_total`` and the latency summary's ``_sum``/``_count``; OpenTelemetry
        ``calls``/``errors``) keep their totals and go on counting, because a counter
        that goes down breaks rates in Prometheus and OpenTelemetry; exported quantiles
        and throughput cover what was recorded since.
        """
        _check_query(name)
        with self._lock:
            self._reset(name)

    def _reset(self, name: str | None) -> None:
        selected = list(self._series) if name is None else [name]
        for each in selected:
            series = self._series.get(each)
            if series is None:
                continue
            if series.held:
                # in place: measured functions record into this object, maybe on a
                # worker thread without the lock; clear() reads what it forgets and
                # zeroes it at once (reading first, then clearing, lost a call
                # recorded in between)
                taken = series.clear()
                self._forgotten.add(each)
            else:
                # recorded into only by record(), under the lock
                del self._series[each]
                taken = (series.count, series.errors, series.total)
            if taken[0]:
                calls, errors, total = self._carried.get(each, (0, 0, 0))
                self._carried[each] = (calls + taken[0], errors + taken[1], total + taken[2])

    def names(self) -> list[str]:
        """The names measured so far (and not reset since without new calls), sorted."""
        return sorted(name for name, _ in self._listed())

    def _listed(self) -> list[tuple[str, Series]]:
        """The listed names and their series, copied under the lock (any thread)."""
        with self._lock:
            items = list(self._series.items())
        forgotten = self._forgotten
        return [(name, series) for name, series in items if series.count or name not in forgotten]

    def histogram(self, name: str | None = None) -> LatencyHistogram:
        """A copy of the latency histogram of ``name`` (or all names merged)."""
        merged = LatencyHistogram()
        for series in self._selected(name):
            merged.merge(series)
        return merged

    # -- reading ----------------------------------------------------------------------

    def _selected(self, name: str | None) -> list[Series]:
        _check_query(name)
        if name is None:
            return [series for _, series in self._listed()]
        series = self._series.get(name)
        return [] if series is None else [series]

    def get_metrics(self, name: str | None = None) -> MetricsSnapshot:
        """A frozen snapshot of ``name``'s metrics; with no name, all names aggregated.

        A name never measured gives a snapshot of zeros.
        """
        return self._snapshot(name, self._selected(name))

    @staticmethod
    def _snapshot(name: str | None, selected: list[Series]) -> MetricsSnapshot:
        histogram = LatencyHistogram()
        for series in selected:
            histogram.merge(series)
        now = time.perf_counter_ns()
        ms = 1e-6
        return MetricsSnapshot(
            name=name,
            count=histogram.count,
            errors=sum(s.errors for s in selected),
            avg_latency=histogram.mean * ms,
            p50=histogram.percentile(0.50) * ms,
            p95=histogram.percentile(0.95) * ms,
            p99=histogram.percentile(0.99) * ms,
            min_latency=histogram.min * ms,
            max_latency=histogram.max * ms,
            throughput=sum(s.throughput(now) for s in selected),
        )

    def snapshots(self) -> dict[str, MetricsSnapshot]:
        """One snapshot per measured name."""
        return {name: self.get_metrics(name) for name in self.names()}

    def _exported(self) -> list[Exported]:
        """What exporters report, per name: snapshots, and counters that never go down."""
        forgotten = self._forgotten
        # counters are read together with what a reset carried over, under the lock a
        # reset holds: a total never counts a call twice or loses it, so never goes down
        with self._lock:
            totals = dict(self._carried)
            listed: dict[str, Series] = {}
            for name, series in self._series.items():
                if series.count or name not in forgotten:
                    listed[name] = series
                calls, errors, total = totals.get(name, (0, 0, 0))
                totals[name] = (calls + series.count, errors + series.errors, total + series.total)
        rows = []
        for name in sorted(totals):  # every name, and the names reset away
            shown = listed.get(name)
            if shown is None and not totals[name][0]:
                continue  # created and reset, nothing ever recorded: not listed
            snap = self._snapshot(name, [] if shown is None else [shown])
            rows.append(Exported(name, snap, *totals[name]))
        return rows

    # -- exporting --------------------------------------------------------------------

    def to_prometheus(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every measured name.

        Per name (label ``name``): ``<ns>_calls_total`` and ``<ns>_errors_total``
        counters, a ``<ns>_latency_seconds`` summary (quantiles 0.5, 0.95, 0.99, sum,
        count) and a ``<ns>_throughput`` gauge (calls per second over the window).
        Counters, sum and count never go down, also across :meth:`reset`.
        """
        return prometheus_text(self.namespace, self._exported())

    def register_prometheus(self, registry: Any = None) -> Any:
        """Expose these metrics through a ``prometheus_client`` registry.

        Registers a custom collector (on ``registry``, default the global ``REGISTRY``)
        that reports fresh values at every scrape, and returns it (pass it to
        ``registry.unregister`` to stop). Needs ``prometheus-client`` (extra ``metrics``).

        The collector describes its four metric families, so the registry refuses it
        with ``prometheus_client``'s own ``ValueError`` ("Duplicated timeseries") when a
        family of that name is registered already: another collector with the same
        ``namespace``, or an application metric such as ``<namespace>_calls``.
        """
        return prometheus_collector(self, registry)

    def instrument_opentelemetry(self, meter_provider: Any = None) -> OpenTelemetryInstruments:
        """Report these metrics as observable OpenTelemetry instruments.

        Creates ``<prefix>.calls`` and ``<prefix>.errors`` (observable counters),
        ``<prefix>.latency`` (observable gauge in ms, attribute ``quantile`` = ``p50``,
        ``p95``, ``p99`` or ``avg``) and ``<prefix>.throughput`` (observable gauge), each
        with a ``name`` attribute; the prefix is the namespace with dots. Values are read
        at each collection; the counters never go down, also across :meth:`reset`.
        Needs ``opentelemetry-api`` (extra ``otel``).

        Returns the four instruments as an :class:`OpenTelemetryInstruments` list; its
        ``close()`` (or leaving ``with``) detaches them from this collector.
        """
        return opentelemetry_instruments(self, meter_provider)


def _check_query(name: object) -> None:
    """Refuse a name to read or reset that no measured name can equal: ``b"x"`` gave a
    snapshot of zeros (or reset nothing) without a word, a list an unhashable-type error."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"metric name must be a str (or None for every name), got {name!r}")


class Measure:
    """What ``collector.measure(name)`` returns: a decorator that is also middleware."""

    __slots__ = ("collector", "name")

    def __init__(self, collector: MetricsCollector, name: str) -> None:
        collector._get(name)
        self.collector = collector
        self.name = name

    def __call__(self, func: F) -> F:
        """Wrap a sync or async callable so each call is measured."""
        if isinstance(func, staticmethod | classmethod):
            # above ``@staticmethod``/``@classmethod``: the wrapper, a plain function,
            # would bind as a method and hand the function a stray ``self``
            return cast(F, type(func)(self(func.__func__)))
        if not callable(func):
            raise TypeError(f"measure() decorates callables, got {func!r}")
        if isinstance(func, type):
            # the wrapper, a plain function, would replace the class: isinstance,
            # subclassing and class attributes under that name would all break
            raise TypeError(
                f"measure() cannot decorate class {func.__qualname__}: it would replace the "
                "class with a function; decorate its methods (or __init__ to time "
                "construction) instead"
            )
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"measure() cannot time generator {func!r}: calling it only creates the "
                "generator; measure the function that consumes it"
            )
        series = self.collector._get(self.name)
        series.held = True
        record = series.observe
        clock = time.perf_counter_ns

        if is_async_callable(func):

            @functools.wraps(func)
            async def measured_async(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    end = clock()
                    record(end - start, end, True)
                    raise
                end = clock()
                record(end - start, end, False)
                return result

            return cast(F, measured_async)

        @functools.wraps(func)
        def measured(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                end = clock()
                record(end - start, end, True)
                raise
            if result is not None and isawaitable(result):
                # a sync function handing back the real work (``lambda e: charge(e)``):
                # the call is what that work takes, and fails when it fails
                return _measured_result(result, start, record, clock)
            end = clock()
            record(end - start, end, False)
            return result

        return cast(F, measured)

    def as_middleware(self) -> MeasureMiddleware:
        """This measurement as an :class:`~pepperpy.event.EventProcessor` middleware."""
        return MeasureMiddleware(self.collector, self.name)


class MeasureMiddleware:
    """Processor middleware measuring the rest of the chain under ``name``."""

    def __init__(self, collector: MetricsCollector, name: str = "event_processing") -> None:
        if not isinstance(collector, MetricsCollector):
            # MeasureMiddleware("orders") failed with "'str' object has no attribute '_get'"
            raise TypeError(f"MeasureMiddleware takes a MetricsCollector first, got {collector!r}")
        series = collector._get(name)
        series.held = True
        self._record = series.observe
        self.collector = collector
        self.name = name

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        clock = time.perf_counter_ns
        start = clock()
        try:
            await next_handler(event)
        except BaseException:
            end = clock()
            self._record(end - start, end, True)
            raise
        end = clock()
        self._record(end - start, end, False)


def _measured_result(
    result: Any, start: int, record: Callable[[int, int, bool], None], clock: Callable[[], int]
) -> Any:
    """``result`` (an awaitable a measured sync call returned), recorded once it is done:
    a future (a Task, say) stays itself and records when done, anything else comes back
    as a coroutine that awaits it and records."""
    if isfuture(result):

        def done(future: Any) -> None:
            end = clock()
            record(end - start, end, future.cancelled() or _raised(future))

        result.add_done_callback(done)
        return result

    async def awaited() -> Any:
        try:
            value = await result
        except BaseException:
            end = clock()
            record(end - start, end, True)
            raise
        end = clock()
        record(end - start, end, False)
        return value

    return awaited()


def _raised(future: Any) -> bool:
    """Whether done ``future`` ended in an exception, read without retrieving it:
    ``exception()`` would mark it retrieved, and asyncio would no longer log a failed
    Task that nobody awaited ("exception was never retrieved")."""
    if hasattr(future, "_exception"):  # asyncio's futures and Tasks, C and Python
        return future._exception is not None
    return future.exception() is not None
